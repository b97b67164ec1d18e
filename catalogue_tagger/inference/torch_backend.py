"""PyTorch backend: CPU always works; CUDA when a GPU is present.

On CPU a batch is cut into micro-batches of :data:`CPU_MICRO_BATCH` segments, run side by side on
``threads`` Python threads with one torch thread each: a micro-batch's activations stay in the core's cache
(musicnn's tiled front end, SampleCNN's 128 x 19683 first blocks) and the cores never wait on each other
inside one small operator; BN is folded into the convolution before it, and SampleCNN's activations stay
channels-last (:class:`~catalogue_tagger.models.samplecnn.ChannelsLastFeatures`), where oneDNN needs no reorders.

Precision is explicit: ``fp32`` runs the network as converted; ``bf16`` (CPU with native bfloat16, or CUDA) and
``fp16`` (CUDA) run the network's convolutions and matrix products in that type (fp32 accumulation) under
autocast, while the log-mel front ends stay float32.

On CUDA the host side never waits on the device more than once per batch. The batcher fills page-locked
(pinned) host buffers that this backend hands out (:meth:`TorchBackend.host_buffer`); :meth:`TorchBackend.submit`
queues the batch's host→device copy on a copy stream, the model and the device→host copy of its outputs on a
compute stream that waits for that copy (an event), and returns at once. The inference loop leaves one batch
running (``in_flight = 1``): batch n+1 is copied while batch n computes, and ``result()`` — one event
synchronisation — is asked of batch n only after n+1 was queued. Float32 matmuls and convolutions stay IEEE
float32 (no TF32): the scores keep their 1e-4 parity with the CPU.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch

from catalogue_tagger.errors import BackendUnavailable
from catalogue_tagger.inference.base import CPU_MICRO_BATCH, Backend, Done, Pending
from catalogue_tagger.models.registry import load_model
from catalogue_tagger.models.specs import get_spec

PINNED_BUFFERS = 3  # one being filled, one being copied, one spare
AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def cpu_supports_bf16() -> bool:
    """Whether oneDNN runs bfloat16 natively on this CPU (AVX512-BF16 or AMX); emulated bf16 is slower than fp32."""
    onednn = torch.backends.mkldnn.is_available()  # type: ignore[no-untyped-call]
    return bool(onednn and torch.ops.mkldnn._is_mkldnn_bf16_supported())


def ieee_fp32() -> None:
    """Float32 matmuls (cuBLAS) and convolutions (cuDNN) computed in IEEE float32, never TF32 (no tagger uses
    cuDNN's RNNs: the GRU of ``crnn-mtt`` is made of matmuls).

    ``fp32_precision`` is the API since torch 2.9 (setting the old ``allow_tf32`` flags as well would mix the
    two, which torch refuses); older releases only have ``allow_tf32``.
    """
    matmul = torch.backends.cuda.matmul
    cudnn = torch.backends.cudnn
    if hasattr(matmul, "fp32_precision") and hasattr(cudnn, "conv"):
        matmul.fp32_precision = "ieee"
        cudnn.conv.fp32_precision = "ieee"
    else:
        matmul.allow_tf32 = False
        cudnn.allow_tf32 = False


def cuda_device(device: str) -> torch.device:
    """``cuda`` or ``cuda:N`` as a device with its index (``cuda`` is the current device); raises
    :class:`BackendUnavailable` when torch sees no such GPU."""
    if not torch.cuda.is_available():
        raise BackendUnavailable(f"device {device!r} requested but torch sees no CUDA device")
    try:
        parsed = torch.device(device)
    except RuntimeError as exc:
        raise BackendUnavailable(f"{device!r} is not a device torch knows: {exc}") from exc
    index = parsed.index if parsed.index is not None else torch.cuda.current_device()
    count = torch.cuda.device_count()
    if not 0 <= index < count:
        raise BackendUnavailable(f"device {device!r} requested but torch sees {count} CUDA device(s)")
    return torch.device("cuda", index)


@dataclass(eq=False)
class _Pinned:
    tensor: torch.Tensor  # (rows, window) float32, page-locked
    lent: bool = False  # handed to the batcher, not yet submitted
    copy: torch.cuda.Event | None = None  # the host→device copy reading it, once queued
    queued: int = 0  # when that copy was queued (oldest first)


class _PinnedBuffers:
    """Page-locked ``(rows, window)`` float32 host buffers: each is lent to the batcher, read by one
    host→device copy, and lent again once that copy has completed (its event)."""

    def __init__(self, window: int, device: torch.device) -> None:
        self.window = window
        self.device = device
        self._buffers: list[_Pinned] = []
        self._queued = 0

    def take(self, rows: int) -> np.ndarray:
        """A buffer nothing reads or writes any more: a free one, else a new one while there are fewer than
        ``PINNED_BUFFERS``, else the one whose copy was queued first, after that copy completes."""
        sized = [b for b in self._buffers if b.tensor.shape[0] == rows]
        idle = [b for b in sized if not b.lent]
        chosen = next((b for b in idle if b.copy is None or b.copy.query()), None)  # type: ignore[no-untyped-call]
        if chosen is None and idle and len(sized) >= PINNED_BUFFERS:
            chosen = min(idle, key=lambda b: b.queued)
            if chosen.copy is not None:
                chosen.copy.synchronize()  # only when the device is batches behind the batcher
        if chosen is None:
            with torch.cuda.device(self.device):
                chosen = _Pinned(torch.empty((rows, self.window), dtype=torch.float32, pin_memory=True))
            self._buffers.append(chosen)
        chosen.lent, chosen.copy = True, None
        return chosen.tensor.numpy()

    def owner(self, batch: np.ndarray) -> _Pinned | None:
        """The lent buffer ``batch`` is the first rows of, if any."""
        if not batch.flags.c_contiguous or batch.ndim != 2 or batch.shape[1] != self.window:
            return None
        address = batch.ctypes.data
        for buffer in self._buffers:
            if buffer.lent and buffer.tensor.data_ptr() == address and len(batch) <= buffer.tensor.shape[0]:
                return buffer
        return None

    def copying(self, buffer: _Pinned, event: torch.cuda.Event) -> None:
        """``buffer`` is read by the copy ``event`` follows; it is free again once the event has completed."""
        self._queued += 1
        buffer.lent, buffer.copy, buffer.queued = False, event, self._queued

    def give_back(self, buffer: _Pinned) -> None:
        """``buffer`` was lent but will not be read: free at once."""
        buffer.lent, buffer.copy = False, None

    def clear(self) -> None:
        self._buffers.clear()


class _OnDevice:
    """A batch queued on the device: its outputs land in pinned host tensors once ``done`` has completed."""

    def __init__(self, done: torch.cuda.Event, outputs: dict[str, torch.Tensor]) -> None:
        self._done = done
        self._outputs = outputs

    def result(self) -> dict[str, np.ndarray]:
        self._done.synchronize()  # the batch's one synchronisation
        return {name: tensor.numpy().copy() for name, tensor in self._outputs.items()}


class TorchBackend(Backend):
    def __init__(self, model: str, device: str = "cpu", precision: str = "fp32", threads: int = 1) -> None:
        self.spec = get_spec(model)
        self.precision = precision
        self._autocast = AUTOCAST_DTYPES.get(precision)
        if precision not in ("fp32", *AUTOCAST_DTYPES):
            raise BackendUnavailable(f"torch backend: no precision {precision!r}; choose fp32, bf16 or fp16 "
                                     "(int8 runs on the onnx backend)")
        self._pool: ThreadPoolExecutor | None = None
        if device.startswith("cuda"):
            self.device = cuda_device(device)
            # TF32 convolutions/matmuls would move scores past the 1e-4 parity with the reference
            ieee_fp32()
            with torch.cuda.device(self.device):
                self.model = load_model(model, device=self.device)
                self._copy_stream = torch.cuda.Stream(self.device)  # type: ignore[no-untyped-call]
                self._compute_stream = torch.cuda.Stream(self.device)  # type: ignore[no-untyped-call]
                # the weights were copied on the default stream: compute waits for them once
                self._compute_stream.wait_stream(torch.cuda.current_stream(self.device))
            self._pinned = _PinnedBuffers(self.spec.window, self.device)
            self.in_flight = 1
            return
        if precision == "fp16":
            raise BackendUnavailable("torch backend: fp16 runs on CUDA only; on CPU choose fp32 or bf16")
        if precision == "bf16" and not cpu_supports_bf16():
            raise BackendUnavailable("torch backend: this CPU has no native bfloat16 (AVX512-BF16 or AMX); choose fp32")
        self.device = torch.device(device)
        self.model = load_model(model, device=self.device).for_cpu_inference()
        torch.set_num_threads(1)  # parallel across micro-batches instead (module docstring)
        if threads > 1:
            self._pool = ThreadPoolExecutor(threads, thread_name_prefix=f"infer-{model}")

    def _forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The model's outputs as float32; inference mode and autocast are thread-local, so they are entered on
        the thread that runs the micro-batch."""
        with torch.inference_mode(), torch.autocast(
            self.device.type, dtype=self._autocast or torch.float32, enabled=self._autocast is not None
        ):
            return tuple(out.float() for out in self.model(x))

    def host_buffer(self, rows: int) -> np.ndarray:
        if self.device.type != "cuda":
            return super().host_buffer(rows)
        return self._pinned.take(rows)

    def run(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        if self.device.type == "cuda":
            return self.submit(batch).result()
        chunks = torch.split(torch.from_numpy(self._check(batch)), CPU_MICRO_BATCH)
        parts = list(self._pool.map(self._forward, chunks)) if self._pool else [self._forward(c) for c in chunks]
        return {name: torch.cat(column).numpy() for name, column in zip(self.spec.output_names, zip(*parts))}

    def submit(self, batch: np.ndarray) -> Pending:
        if self.device.type != "cuda":
            return Done(self.run(batch))
        return self._submit_cuda(self._check(batch))

    @torch.inference_mode()
    def _submit_cuda(self, batch: np.ndarray) -> Pending:
        buffer = self._pinned.owner(batch)
        with torch.cuda.device(self.device):
            # a batch filled elsewhere (predict, bench) is staged through torch's own pinned memory
            host = buffer.tensor[: len(batch)] if buffer is not None else torch.from_numpy(batch).pin_memory()
            try:
                with torch.cuda.stream(self._copy_stream):
                    wave = host.to(self.device, non_blocking=True)
                    copied = torch.cuda.Event()  # type: ignore[no-untyped-call]
                    copied.record(self._copy_stream)
            except BaseException:
                if buffer is not None:
                    self._pinned.give_back(buffer)  # no copy reads it: lend it again
                raise
            if buffer is not None:
                self._pinned.copying(buffer, copied)
            self._compute_stream.wait_event(copied)
            # ``wave`` was allocated on the copy stream: keep its memory from reuse until compute is done with it
            wave.record_stream(self._compute_stream)
            with torch.cuda.stream(self._compute_stream):
                outputs: dict[str, torch.Tensor] = {}
                for name, out in zip(self.spec.output_names, self._forward(wave)):
                    pinned = torch.empty(out.shape, dtype=torch.float32, pin_memory=True)
                    outputs[name] = pinned.copy_(out, non_blocking=True)
                done = torch.cuda.Event()  # type: ignore[no-untyped-call]
                done.record(self._compute_stream)
        return _OnDevice(done, outputs)

    def close(self) -> None:
        if self.device.type != "cuda":
            if self._pool is not None:
                self._pool.shutdown()
            del self.model
            return
        try:
            torch.cuda.synchronize(self.device)  # nothing queued still reads the buffers freed below
        finally:
            self._pinned.clear()
            del self.model
            torch.cuda.empty_cache()
