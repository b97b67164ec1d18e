"""Every backend runs the same tagger to the same numbers; exported graphs stay TensorRT-buildable."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import pytest

from catalogue_tagger.config import Settings
from catalogue_tagger.errors import BackendUnavailable, SettingsError
from catalogue_tagger.inference import engine_cache, open_backend
from catalogue_tagger.inference.compile import TENSORRT_OPS, export_onnx, onnx_path_for, reduced_onnx


@pytest.fixture
def engine_dir(tmp_path: Path) -> Path:
    return tmp_path / "engines"


@pytest.fixture
def on(engine_dir: Path) -> Callable[..., Settings]:
    """``on("onnx")`` → settings running that backend on the CPU, with artifacts in ``engine_dir``."""

    def settings(backend: str, device: str = "cpu") -> Settings:
        return Settings(backend=backend, device=device, engine_cache=engine_dir)

    return settings


def _waves(window: int, n: int = 3) -> np.ndarray:
    return (np.random.default_rng(0).standard_normal((n, window)) * 0.1).astype(np.float32)


@pytest.mark.parametrize("model", ["musicnn-mtt", "vgg-mtt", "samplecnn-mtt"])
def test_onnx_runtime_backend_matches_torch(model: str, on: Callable[..., Settings]) -> None:
    with open_backend(model, on("torch")) as torch_backend, open_backend(model, on("onnx")) as onnx_backend:
        waves = _waves(torch_backend.spec.window)
        expected, got = torch_backend.run(waves), onnx_backend.run(waves)
    assert expected.keys() == got.keys() == set(torch_backend.spec.output_names)
    np.testing.assert_allclose(got["probs"], expected["probs"], atol=1e-4)
    if "embedding" in expected:
        np.testing.assert_allclose(got["embedding"], expected["embedding"], atol=1e-3)


@pytest.mark.parametrize("model", ["musicnn-mtt", "musicnn-msd", "vgg-mtt", "vgg-msd", "samplecnn-mtt",
                                   "musicnn-sota-mtt", "fcn-mtt", "crnn-mtt"])
def test_exported_graphs_use_only_tensorrt_ops(model: str, tmp_path: Path) -> None:
    exported = onnx.load(str(export_onnx(model, tmp_path / f"{model}.onnx")))
    for graph in (exported.graph, reduced_onnx(exported, "fp16").graph, reduced_onnx(exported, "bf16").graph):
        ops = {node.op_type for node in graph.node}
        assert ops <= TENSORRT_OPS, ops - TENSORRT_OPS
        assert not ops & {"STFT", "DFT", "Loop", "If", "Scan"}
        assert [i.name for i in graph.input] == ["wave"]


def test_onnx_export_is_cached_by_weights_hash(engine_dir: Path) -> None:
    first = onnx_path_for("vgg-mtt", engine_dir)
    mtime = first.stat().st_mtime_ns
    assert onnx_path_for("vgg-mtt", engine_dir) == first and first.stat().st_mtime_ns == mtime
    assert first.parent == engine_dir and not list(engine_dir.glob("*.tmp"))


def test_batch_rows_are_independent(on: Callable[..., Settings]) -> None:
    with open_backend("musicnn-mtt", on("torch")) as backend:
        waves = _waves(backend.spec.window, 6)
        alone = backend.run(waves[2:3])["probs"][0]
        together = backend.run(waves)["probs"][2]
    np.testing.assert_allclose(alone, together, atol=1e-5)


def _has_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


@pytest.mark.skipif(_has_cuda(), reason="a CUDA device is present here")
def test_cuda_without_a_gpu_is_unavailable(on: Callable[..., Settings]) -> None:
    with pytest.raises(BackendUnavailable, match="CUDA"):
        open_backend("musicnn-mtt", on("torch", "cuda"))


def test_unknown_backend_is_a_settings_error() -> None:
    with pytest.raises(SettingsError, match="no-such-backend"):
        Settings(backend="no-such-backend")


def test_engine_names_change_with_everything_that_invalidates_an_engine() -> None:
    base = ("musicnn-mtt", "a" * 64, "fp16", 64, "10.8.0", "90", 2)
    names = {engine_cache.engine_name(*base)}
    for i, other in enumerate(("vgg-mtt", "b" * 64, "fp32", 128, "11.0.0", "100", 3)):
        changed = list(base)
        changed[i] = other
        names.add(engine_cache.engine_name(*changed))  # type: ignore[arg-type]
    assert len(names) == 8


def test_onnx_graph_names_change_with_precision_weights_opset_and_revision() -> None:
    base = ("musicnn-mtt", "a" * 64, "fp32", 17, 2)
    names = {engine_cache.onnx_name(*base)}
    for i, other in enumerate(("vgg-mtt", "b" * 64, "fp16", 22, 3)):
        changed = list(base)
        changed[i] = other
        names.add(engine_cache.onnx_name(*changed))  # type: ignore[arg-type]
    assert len(names) == 6


def test_reduced_precision_graphs_are_cached_beside_the_export(engine_dir: Path) -> None:
    fp32, fp16 = onnx_path_for("vgg-mtt", engine_dir), onnx_path_for("vgg-mtt", engine_dir, "fp16")
    assert fp32 != fp16 and fp16.parent == engine_dir and "-fp16-" in fp16.name
    mtime = fp16.stat().st_mtime_ns
    assert onnx_path_for("vgg-mtt", engine_dir, "fp16").stat().st_mtime_ns == mtime
    with pytest.raises(ValueError, match="int4"):
        onnx_path_for("vgg-mtt", engine_dir, "int4")


def test_tensorrt_backend_never_builds_an_engine(on: Callable[..., Settings], engine_dir: Path) -> None:
    with pytest.raises(BackendUnavailable):
        open_backend("musicnn-mtt", on("tensorrt"))
    assert not engine_dir.exists() or not list(engine_dir.glob("*.engine"))


def test_a_missing_engine_names_the_compile_command(engine_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Where TensorRT and a GPU are present but no engine was built, the error says how to build it."""
    monkeypatch.setattr(engine_cache, "tensorrt_identity", lambda device: ("10.8.0.43", "90"))
    settings = Settings(backend="tensorrt", device="cuda:1", precision="fp16", batch_size=48, engine_cache=engine_dir)
    with pytest.raises(BackendUnavailable) as caught:
        open_backend("samplecnn-mtt", settings)
    assert ("catalogue-tagger compile --model samplecnn-mtt --precision fp16 --max-batch 48 --device cuda:1"
            in str(caught.value))
    assert not list(engine_dir.glob("*.engine"))


def test_cuda_device_indices() -> None:
    from catalogue_tagger.inference.device import cuda_index

    assert (cuda_index("cuda"), cuda_index("cuda:0"), cuda_index("cuda:3")) == (0, 0, 3)
    for bad in ("cpu", "cuda:x", "cuda:-1"):
        with pytest.raises(BackendUnavailable):
            cuda_index(bad)


def test_auto_picks_the_fastest_backend_present_for_the_device() -> None:
    from catalogue_tagger.inference import resolve_backend

    assert Settings().backend == "auto"  # the default everywhere
    # CPU: float32 is measured (the tests below), bf16 runs by torch autocast only
    assert resolve_backend(Settings(precision="bf16"), "samplecnn-mtt")[0] == "torch"
    on_gpu, why = resolve_backend(Settings(device="cuda"), "samplecnn-mtt")
    assert on_gpu == "torch" and "TensorRT not installed" in why  # no TensorRT on this machine
    assert resolve_backend(Settings(backend="torch"), "samplecnn-mtt") == ("torch", "chosen")


def test_auto_on_a_cpu_runs_the_backend_measured_fastest_here_and_records_it(engine_dir: Path) -> None:
    from catalogue_tagger.inference import resolve_backend
    from catalogue_tagger.inference.cpu_choice import VERDICTS_FILE, verdict_key

    record = engine_dir / VERDICTS_FILE
    two = Settings(engine_cache=engine_dir, inference_threads=2)
    backend, why = resolve_backend(two, "vgg-mtt")
    verdicts = json.loads(record.read_text())
    verdict = verdicts[verdict_key("vgg-mtt", 2)]
    speeds = verdict["segments_per_s"]
    assert set(speeds) == {"torch", "onnx"} and min(speeds.values()) > 0  # both really ran
    assert backend == verdict["backend"] == max(speeds, key=speeds.__getitem__)
    assert why.startswith("auto: fastest measured on this CPU") and f"{backend} {speeds[backend]:.1f}" in why

    # later runs read the record instead of measuring: edited to name the slower one, that is what auto picks
    slower = min(speeds, key=speeds.__getitem__)
    verdict["backend"] = slower
    record.write_text(json.dumps(verdicts))
    assert resolve_backend(two, "vgg-mtt")[0] == slower
    # another thread count is another verdict, measured and added beside the first
    resolve_backend(Settings(engine_cache=engine_dir, inference_threads=1), "vgg-mtt")
    verdicts = json.loads(record.read_text())
    assert set(verdicts) == {verdict_key("vgg-mtt", 2), verdict_key("vgg-mtt", 1)}
    assert verdicts[verdict_key("vgg-mtt", 2)]["backend"] == slower
    # bench measures again: the record becomes the new measurement
    again, _ = resolve_backend(two, "vgg-mtt", measure_again=True)
    remeasured = json.loads(record.read_text())[verdict_key("vgg-mtt", 2)]
    assert remeasured["measured_at"] >= verdict["measured_at"]
    assert again == remeasured["backend"] == max(remeasured["segments_per_s"], key=remeasured["segments_per_s"].get)


def test_auto_on_a_cpu_runs_the_backend_that_opens_when_the_other_cannot(tmp_path: Path) -> None:
    from catalogue_tagger.inference import resolve_backend

    not_a_folder = tmp_path / "engines"
    not_a_folder.write_text("")  # ONNX Runtime's graph cannot be exported there; torch needs no artifact
    settings = Settings(engine_cache=not_a_folder, inference_threads=1)
    backend, why = resolve_backend(settings, "vgg-mtt")
    assert backend == "torch" and "onnx failed" in why
    # nothing could be recorded there, yet the run's next resolution reuses this measurement (same time stamp)
    assert resolve_backend(settings, "vgg-mtt") == (backend, why)


def test_onnx_runtime_threads_sleep_when_idle_on_a_cpu(on: Callable[..., Settings]) -> None:
    """Spinning intra-op threads would take the cores the decode workers need between ONNX Runtime's ops."""
    with open_backend("vgg-mtt", on("onnx")) as backend:
        options = backend.session.get_session_options()  # type: ignore[attr-defined]
        assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"


def test_running_a_built_graph_imports_neither_onnx_nor_torch(engine_dir: Path) -> None:
    """``onnx`` (~0.5 s to import) and torch (~0.8 s) are for building graphs and for the torch backend: the
    pipeline and a run whose ONNX graph is built start without them."""
    onnx_path_for("musicnn-mtt", engine_dir)  # built here, as a first run would
    script = textwrap.dedent("""
        import sys
        from pathlib import Path
        import numpy as np
        import catalogue_tagger.pipeline
        from catalogue_tagger.config import Settings
        from catalogue_tagger.inference import open_backend
        with open_backend("musicnn-mtt", Settings(backend="onnx", engine_cache=Path(sys.argv[1]))) as backend:
            backend.run(np.zeros((1, backend.spec.window), np.float32))
        print(sorted({name.split(".")[0] for name in sys.modules} & {"onnx", "torch"}))
    """)
    done = subprocess.run([sys.executable, "-c", script, str(engine_dir)], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
