"""The backend interface: load once, run one batch of waveform segments, free on exit.

``run(batch)`` takes ``[n, spec.window]`` float32 and returns ``{output name: [n, ...] float32}`` with the
names of ``spec.output_names`` (``probs``, ``logits``, ``embedding``). Returned arrays belong to the caller.

The inference loop feeds a backend in two steps so that an accelerator can work on one batch while the next is
filled and copied: it fills the array :meth:`Backend.host_buffer` gives (page-locked memory on CUDA), calls
:meth:`Backend.submit` with it, and collects the outputs with ``result()`` of what ``submit`` returned, leaving
at most :attr:`Backend.in_flight` batches running meanwhile. The defaults run the batch at once in ``submit``.
"""

from __future__ import annotations

import importlib.util
from abc import ABC, abstractmethod
from types import TracebackType
from typing import Protocol

import numpy as np

from catalogue_tagger.config import BACKENDS, Settings
from catalogue_tagger.errors import BackendUnavailable
from catalogue_tagger.models.specs import ModelSpec

# Segments per micro-batch on CPU: a micro-batch's activations stay small enough for the caches, and peak
# memory no longer grows with the batch (ONNX Runtime's SampleCNN at batch 64: 3.1 GB whole, 0.6 GB in 8s).
CPU_MICRO_BATCH = 8


class Pending(Protocol):
    """A submitted batch: ``result()`` waits for its outputs (what ``run`` would have returned)."""

    def result(self) -> dict[str, np.ndarray]: ...


class Done:
    """A batch that already ran."""

    def __init__(self, outputs: dict[str, np.ndarray]) -> None:
        self._outputs = outputs

    def result(self) -> dict[str, np.ndarray]:
        return self._outputs


class Backend(ABC):
    spec: ModelSpec
    in_flight: int = 0  # batches the loop may leave running while it fills the next one

    @abstractmethod
    def run(self, batch: np.ndarray) -> dict[str, np.ndarray]: ...

    def host_buffer(self, rows: int) -> np.ndarray:
        """A ``(rows, spec.window)`` float32 array for the batcher to fill and pass to :meth:`submit`."""
        return np.empty((rows, self.spec.window), np.float32)

    def submit(self, batch: np.ndarray) -> Pending:
        """Start ``batch`` (``[n, spec.window]`` float32); the default runs it now. The caller writes no more into
        ``batch`` after this: a buffer from :meth:`host_buffer` comes back from it once the backend has read it."""
        return Done(self.run(batch))

    def close(self) -> None:
        """Release the model and its device memory."""

    def __enter__(self) -> "Backend":
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _check(self, batch: np.ndarray) -> np.ndarray:
        if batch.ndim != 2 or batch.shape[1] != self.spec.window:
            raise ValueError(f"{self.spec.name}: batch of shape {batch.shape}, expected [n, {self.spec.window}]")
        return np.ascontiguousarray(batch, dtype=np.float32)


def resolve_backend(settings: Settings, model: str, *, measure_again: bool = False) -> tuple[str, str]:
    """The backend that runs ``model`` under ``settings``, and why. ``auto`` picks the fastest one present for
    the device and precision: on CUDA TensorRT when it is importable (its engines come from
    ``catalogue-tagger compile``), else torch CUDA; on CPU torch for bfloat16 (autocast on oneDNN), ONNX Runtime
    for int8, and for float32 the one measured fastest on this machine (:mod:`.cpu_choice`: timed on first use,
    recorded in the artifact folder)."""
    if settings.backend != "auto":
        return settings.backend, "chosen"
    if settings.precision == "int8":
        return "onnx", "auto: int8 is a static QDQ graph that ONNX Runtime runs"
    if settings.device.startswith("cuda"):
        if importlib.util.find_spec("tensorrt") is not None:
            return "tensorrt", "auto: CUDA device and TensorRT is importable"
        return "torch", "auto: CUDA device, TensorRT not installed"
    if settings.precision != "fp32":
        return "torch", f"auto: CPU {settings.precision} runs in torch (autocast on oneDNN)"
    if importlib.util.find_spec("onnxruntime") is None:
        return "torch", "auto: CPU, ONNX Runtime not installed"
    from catalogue_tagger.inference.cpu_choice import cpu_verdict

    verdict = cpu_verdict(model, settings, refresh=measure_again)
    return verdict.backend, verdict.reason()


def open_backend(model: str, settings: Settings) -> Backend:
    """Open ``model`` on the settings' backend (``auto``: see :func:`resolve_backend`) and device (ONNX Runtime:
    the graph of the settings' precision; TensorRT: the engine of its precision, batch size and device). Raises
    :class:`BackendUnavailable` when it cannot run here."""
    backend, _ = resolve_backend(settings, model)
    if backend == "torch":
        from catalogue_tagger.inference.torch_backend import TorchBackend

        return TorchBackend(model, settings.device, settings.precision, settings.threads)
    if backend == "onnx":
        from catalogue_tagger.inference.onnx_backend import OnnxBackend

        return OnnxBackend(model, settings.device, settings.engine_dir, settings.precision, settings.threads)
    if backend == "tensorrt":
        from catalogue_tagger.inference.tensorrt_backend import TensorRTBackend

        return TensorRTBackend.from_cache(
            model, settings.engine_dir, settings.precision, settings.batch_size, settings.device
        )
    raise BackendUnavailable(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
