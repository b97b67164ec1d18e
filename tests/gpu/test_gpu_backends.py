"""GPU paths: torch CUDA and TensorRT give the CPU numbers. Run on a machine with an NVIDIA GPU."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from catalogue_tagger.config import Settings
from catalogue_tagger.inference import open_backend
from catalogue_tagger.inference.compile import compile_model

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


@pytest.fixture
def engine_dir(tmp_path: Path) -> Path:
    return tmp_path / "engines"


def _waves(window: int) -> np.ndarray:
    return (np.random.default_rng(0).standard_normal((8, window)) * 0.1).astype(np.float32)


# samplecnn-mtt: ten stacked convolutions, which cuDNN and TensorRT may run in TF32
# sota taggers: TF32 convolutions; 5e-3 is the reference set's suggested bound for reduced-precision runs
@pytest.mark.parametrize(("model", "atol"), [("musicnn-mtt", 1e-4), ("vgg-msd", 1e-4), ("samplecnn-mtt", 1e-3),
                                             ("musicnn-sota-mtt", 5e-3), ("fcn-mtt", 5e-3), ("crnn-mtt", 5e-3)])
def test_torch_cuda_matches_cpu(model: str, atol: float) -> None:
    with open_backend(model, Settings(device="cpu")) as cpu, open_backend(model, Settings(device="cuda")) as gpu:
        waves = _waves(cpu.spec.window)
        np.testing.assert_allclose(gpu.run(waves)["probs"], cpu.run(waves)["probs"], atol=atol)


@pytest.mark.parametrize(("model", "precision", "atol"), [
    ("musicnn-mtt", "fp32", 1e-4), ("musicnn-mtt", "fp16", 2e-2), ("samplecnn-mtt", "fp32", 1e-3),
    ("fcn-mtt", "fp32", 5e-3), ("crnn-mtt", "fp32", 5e-3),
])
def test_tensorrt_matches_cpu(model: str, precision: str, atol: float, engine_dir: Path) -> None:
    pytest.importorskip("tensorrt")
    settings = Settings(backend="tensorrt", device="cuda", precision=precision, batch_size=16, engine_cache=engine_dir)
    compile_model(model, engine_dir, precision, 16)  # build apart from run: the backend only opens engines
    with open_backend(model, Settings(device="cpu")) as cpu, open_backend(model, settings) as trt:
        waves = _waves(cpu.spec.window)
        np.testing.assert_allclose(trt.run(waves)["probs"], cpu.run(waves)["probs"], atol=atol)
