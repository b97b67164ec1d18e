"""Where compiled artifacts (ONNX graphs, TensorRT engines) live, and how they are written safely.

An artifact's file name states everything that invalidates it. An ONNX graph: model name, weights sha256,
precision (fp32, or the fp16/bf16 graph made from it), opset and :data:`GRAPH_REVISION`. A TensorRT engine:
the same, plus max batch, TensorRT version and GPU compute capability. Writes go to a temporary file renamed
into place under an exclusive file lock, so concurrent builders never leave a half-written artifact.

Nothing here builds anything: :mod:`compile` does, and the runtimes only ask where an artifact is.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from catalogue_tagger.errors import BackendUnavailable
from catalogue_tagger.inference.device import cuda_index

# Bumped whenever the export or the reduced-precision rewrite changes the graphs it writes, so that graphs and
# engines cached by an older catalogue-tagger are rebuilt rather than reused.
GRAPH_REVISION = 2
# An engine's optimization profiles by purpose (one: batches 1 .. max batch, tuned for the run's batch size)
PROFILES = {"batch": 0}


def artifact_path(cache: Path, name: str) -> Path:
    """``cache / name``, the cache folder created when missing."""
    cache.mkdir(parents=True, exist_ok=True)
    return cache / name


def onnx_name(model: str, weights_sha256: str, precision: str, opset: int, revision: int = GRAPH_REVISION) -> str:
    return f"{model}-{weights_sha256[:16]}-{precision}-opset{opset}-g{revision}.onnx"


def engine_name(
    model: str, weights_sha256: str, precision: str, max_batch: int, trt_version: str, compute_capability: str,
    revision: int = GRAPH_REVISION,
) -> str:
    return (f"{model}-{weights_sha256[:16]}-{precision}-b{max_batch}-trt{trt_version}-sm{compute_capability}"
            f"-g{revision}.engine")


def tensorrt_identity(device: str) -> tuple[str, str]:
    """TensorRT's version and the compute capability (``"90"``) of ``device``; raises when either is missing."""
    try:
        import tensorrt as trt
    except ImportError as exc:
        raise BackendUnavailable("TensorRT is not installed (pip install tensorrt on a CUDA machine)") from exc
    import torch

    if not torch.cuda.is_available():
        raise BackendUnavailable("TensorRT needs a CUDA device; none is visible")
    index = cuda_index(device)
    if index >= torch.cuda.device_count():
        raise BackendUnavailable(f"device {device!r}: only {torch.cuda.device_count()} CUDA device(s) visible")
    major, minor = torch.cuda.get_device_capability(index)
    return trt.__version__, f"{major}{minor}"


def engine_path(cache: Path, model: str, weights_sha256: str, precision: str, max_batch: int, device: str) -> Path:
    """Where the engine of ``model`` for this precision, max batch, TensorRT and GPU lives in ``cache``."""
    version, capability = tensorrt_identity(device)
    return artifact_path(cache, engine_name(model, weights_sha256, precision, max_batch, version, capability))


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    with open(path.with_name(path.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def get_or_build(path: Path, build: Callable[[Path], None]) -> Path:
    """Return ``path``, building it with ``build(tmp_path)`` first if absent (once, under a lock)."""
    if path.exists():
        return path
    with _locked(path):
        if path.exists():  # another process built it while we waited
            return path
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            build(tmp)
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
    return path
