"""Static int8: `compile --precision int8 --calibration DIR` builds a QDQ graph calibrated on real music, the onnx
backend runs it, and nothing else builds or runs one."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest

from catalogue_tagger.config import Settings
from catalogue_tagger.decode import decode_all
from catalogue_tagger.errors import BackendUnavailable
from catalogue_tagger.inference import open_backend, resolve_backend
from catalogue_tagger.inference.compile import compile_int8, compile_model
from catalogue_tagger.inference.quantize import CalibrationError, calibration_files
from catalogue_tagger.models.specs import get_spec
from catalogue_tagger.segment import Windowing, segment_track

AUDIO = Path(__file__).resolve().parents[1] / "fixtures" / "audio"
MODEL = "samplecnn-mtt"


@pytest.fixture(scope="module")
def int8_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An engine cache holding the int8 graph of samplecnn-mtt, calibrated on the real music excerpts."""
    cache = tmp_path_factory.mktemp("engines")
    compile_int8(MODEL, cache, AUDIO)
    return cache


def _real_windows(model: str) -> np.ndarray:
    spec = get_spec(model)
    with (AUDIO / "excerpt.mp3").open("rb") as fh:
        wave, _ = decode_all(fh)
    windows, _ = segment_track(np.concatenate([wave, wave[::-1], wave]), Windowing(spec.window, spec.hop, spec.pad))
    return windows


def test_int8_graph_quantizes_the_network_and_keeps_the_ends_float(int8_cache: Path) -> None:
    (path,) = int8_cache.glob(f"{MODEL}-*-int8-*.onnx")
    graph = onnx.load(str(path)).graph
    ops = [n.op_type for n in graph.node]
    assert ops.count("QuantizeLinear") >= 8 and ops.count("DequantizeLinear") >= 8
    dequantized = {o for n in graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    convs = [n for n in graph.node if n.op_type in ("Conv", "Gemm", "MatMul")]
    quantized = [n for n in convs if n.input[1] in dequantized]  # weights come through DequantizeLinear
    assert len(quantized) == len(convs) - 2  # all but the first and the last weighted layer
    assert convs[0] not in quantized and convs[-1] not in quantized
    record = json.loads(path.with_name(path.name + ".json").read_text())
    assert {f["file"] for f in record["calibration_files"]} >= {"excerpt.mp3", "excerpt.ogg"}
    assert record["calibration_windows"] >= 4 and len(record["calibration_sha256"]) == 64


def test_int8_runs_on_the_onnx_backend_close_to_fp32(int8_cache: Path) -> None:
    waves = _real_windows(MODEL)
    fp32 = Settings(backend="onnx", engine_cache=int8_cache)
    int8 = Settings(precision="int8", engine_cache=int8_cache)  # auto: int8 runs on the onnx backend
    assert resolve_backend(int8, MODEL)[0] == "onnx"
    with open_backend(MODEL, fp32) as exact, open_backend(MODEL, int8) as quantized:
        expected, got = exact.run(waves), quantized.run(waves)
    assert got["probs"].dtype == np.float32 and got["probs"].shape == expected["probs"].shape
    delta = np.abs(got["probs"].mean(axis=0) - expected["probs"].mean(axis=0))
    assert 0 < delta.max() <= 0.05  # quantized (not the float graph), and close to it
    top = np.argsort(expected["probs"].mean(axis=0))[-3:]
    assert set(np.argsort(got["probs"].mean(axis=0))[-3:]) == set(top)


def test_compiling_again_on_the_same_music_keeps_the_graph(int8_cache: Path) -> None:
    (path,) = int8_cache.glob(f"{MODEL}-*-int8-*.onnx")
    before = path.stat().st_mtime_ns
    assert compile_int8(MODEL, int8_cache, AUDIO) == path
    assert path.stat().st_mtime_ns == before


def test_a_missing_int8_graph_names_the_compile_command(tmp_path: Path) -> None:
    with pytest.raises(BackendUnavailable) as caught:
        open_backend(MODEL, Settings(precision="int8", engine_cache=tmp_path))
    assert f"catalogue-tagger compile --model {MODEL} --precision int8 --calibration DIR" in str(caught.value)
    assert not list(tmp_path.glob("*int8*"))


def test_int8_is_onnx_runtime_only(tmp_path: Path) -> None:
    for backend in ("torch", "tensorrt"):
        with pytest.raises(BackendUnavailable, match="onnx"):
            open_backend(MODEL, Settings(backend=backend, precision="int8", engine_cache=tmp_path))
    with pytest.raises(BackendUnavailable, match="onnx backend"):
        compile_model(MODEL, tmp_path, "int8", 64)


def test_calibration_needs_audio(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("no music here")
    with pytest.raises(CalibrationError):
        calibration_files(tmp_path)
    run = subprocess.run([sys.executable, "-m", "catalogue_tagger", "compile", "--model", MODEL, "--precision", "int8",
                          "--onnx-only"], capture_output=True, text=True,
                         env={"CATALOGUE_TAGGER_ENGINE_CACHE": str(tmp_path), "PATH": ""})
    assert run.returncode != 0 and "--calibration" in run.stderr
