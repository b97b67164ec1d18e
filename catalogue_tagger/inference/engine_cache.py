"""Where compiled artifacts (ONNX graphs, TensorRT engines) live, and how they are written safely.

An artifact's file name states everything that invalidates it: model name, weights sha256, precision,
max batch, TensorRT version and GPU compute capability. Writes go to a temporary file renamed into place
under an exclusive file lock, so concurrent builders never leave a half-written artifact.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path


def artifact_path(cache: Path, name: str) -> Path:
    """``cache / name``, the cache folder created when missing."""
    cache.mkdir(parents=True, exist_ok=True)
    return cache / name


def onnx_name(model: str, weights_sha256: str, opset: int) -> str:
    return f"{model}-{weights_sha256[:16]}-opset{opset}.onnx"


def engine_name(
    model: str, weights_sha256: str, precision: str, max_batch: int, trt_version: str, compute_capability: str
) -> str:
    return f"{model}-{weights_sha256[:16]}-{precision}-b{max_batch}-trt{trt_version}-sm{compute_capability}.engine"


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
