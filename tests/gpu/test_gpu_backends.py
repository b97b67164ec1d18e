"""GPU paths give the CPU numbers: torch CUDA, ONNX Runtime's CUDA provider, TensorRT engines (each where present).

fp32 is held to 1e-4 of the CPU (TF32 off everywhere); fp16 to 2e-3 of fp32 on the reference clips, the bound the
fp16 graphs meet in ONNX Runtime on the CPU (tests/unit/test_mixed_precision.py).
"""

from __future__ import annotations

import json
from dataclasses import replace
from functools import cache
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from catalogue_tagger.config import Settings
from catalogue_tagger.inference import open_backend
from catalogue_tagger.inference.compile import compile_model
from catalogue_tagger.models.specs import get_spec
from catalogue_tagger.segment import Windowing, segment_track

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]

FIXTURES = Path(__file__).parents[1] / "fixtures" / "musicnn"
CLIPS = sorted(json.loads((FIXTURES / "clips.json").read_text())["clips"])
FP32 = 1e-4
FP16 = 2e-3


@pytest.fixture(scope="module")
def engine_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("engines")


def _noise(window: int, n: int = 8) -> np.ndarray:
    return (np.random.default_rng(0).standard_normal((n, window)) * 0.1).astype(np.float32)


@cache
def _clip_windows(model: str) -> np.ndarray:
    """Every window of every reference clip, cut for ``model``: ``(n, spec.window)``."""
    spec = get_spec(model)
    windows = []
    for clip in CLIPS:
        with av.open(str(FIXTURES / f"{clip}.flac")) as container:
            samples = np.concatenate([f.to_ndarray().reshape(-1) for f in container.decode(audio=0)])
        windows.append(segment_track(samples.astype(np.float32) / 32768, Windowing(spec.window, spec.hop, spec.pad))[0])
    return np.concatenate(windows)


def _cpu(model: str, waves: np.ndarray) -> dict[str, np.ndarray]:
    with open_backend(model, Settings(backend="torch", device="cpu")) as cpu:
        return cpu.run(waves)


def _max_diff(got: dict[str, np.ndarray], expected: dict[str, np.ndarray]) -> float:
    assert got.keys() == expected.keys()
    assert all(value.dtype == np.float32 for value in got.values())
    return float(np.abs(got["probs"] - expected["probs"]).max())


@pytest.mark.parametrize("model", ["musicnn-mtt", "vgg-msd", "samplecnn-mtt", "musicnn-sota-mtt", "fcn-mtt",
                                   "crnn-mtt"])
def test_torch_cuda_matches_cpu(model: str) -> None:
    waves = _noise(get_spec(model).window)
    with open_backend(model, Settings(backend="torch", device="cuda")) as gpu:
        assert _max_diff(gpu.run(waves), _cpu(model, waves)) <= FP32


def _onnx_cuda() -> bool:
    import onnxruntime as ort

    return "CUDAExecutionProvider" in ort.get_available_providers()


@pytest.mark.skipif(not _onnx_cuda(), reason="ONNX Runtime without CUDAExecutionProvider (install onnxruntime-gpu)")
@pytest.mark.parametrize("model", ["musicnn-mtt", "samplecnn-mtt"])
def test_onnx_runtime_cuda_provider_is_active_and_matches_cpu(model: str, engine_dir: Path) -> None:
    settings = Settings(backend="onnx", device="cuda", engine_cache=engine_dir)
    waves = _noise(get_spec(model).window, 11)  # not the size of the previous batch: a new device input
    with open_backend(model, settings) as gpu, open_backend(model, replace(settings, device="cpu")) as cpu:
        assert gpu.session.get_providers()[0] == "CUDAExecutionProvider"  # type: ignore[attr-defined]
        expected = cpu.run(waves)
        assert _max_diff(gpu.run(waves[:8]), {k: v[:8] for k, v in expected.items()}) <= FP32
        assert _max_diff(gpu.run(waves), expected) <= FP32
    clips = _clip_windows(model)
    with open_backend(model, replace(settings, precision="fp16")) as half:
        assert _max_diff(half.run(clips), _cpu(model, clips)) <= FP16


def _tensorrt(model: str, precision: str, engine_dir: Path, batch: int = 16) -> Settings:
    pytest.importorskip("tensorrt")
    compile_model(model, engine_dir, precision, batch, "cuda")  # build apart from run: the backend only opens
    return Settings(backend="tensorrt", device="cuda", precision=precision, batch_size=batch, engine_cache=engine_dir)


@pytest.mark.parametrize("model", ["musicnn-mtt", "samplecnn-mtt"])
def test_tensorrt_fp32_engine_matches_cpu(model: str, engine_dir: Path) -> None:
    waves = _noise(get_spec(model).window, 19)  # more than the engine's max batch: run in two chunks
    with open_backend(model, _tensorrt(model, "fp32", engine_dir)) as engine:
        got = engine.run(waves)
        assert _max_diff(got, _cpu(model, waves)) <= FP32
        alone = engine.run(waves[5:6])  # buffers sized for max batch serve a batch of one
    np.testing.assert_allclose(alone["probs"][0], got["probs"][5], atol=1e-5)


@pytest.mark.parametrize("model", ["musicnn-mtt", "samplecnn-mtt"])
def test_tensorrt_fp16_engine_agrees_with_fp32(model: str, engine_dir: Path) -> None:
    clips = _clip_windows(model)
    with open_backend(model, _tensorrt(model, "fp16", engine_dir)) as engine:
        assert _max_diff(engine.run(clips), _cpu(model, clips)) <= FP16


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two CUDA devices")
def test_tensorrt_runs_on_the_configured_device(engine_dir: Path) -> None:
    pytest.importorskip("tensorrt")
    compile_model("samplecnn-mtt", engine_dir, "fp32", 8, "cuda:1")
    settings = Settings(backend="tensorrt", device="cuda:1", batch_size=8, engine_cache=engine_dir)
    with open_backend("samplecnn-mtt", settings) as engine:
        assert engine.device == torch.device("cuda", 1)  # type: ignore[attr-defined]
        waves = _noise(get_spec("samplecnn-mtt").window)
        assert _max_diff(engine.run(waves), _cpu("samplecnn-mtt", waves)) <= FP32
