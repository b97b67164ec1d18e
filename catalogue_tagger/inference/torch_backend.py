"""PyTorch backend: CPU always works; CUDA when a GPU is present.

On CPU a batch is cut into micro-batches of :data:`CPU_MICRO_BATCH` segments, run side by side on
``threads`` Python threads with one torch thread each: a micro-batch's activations stay in the core's cache
(musicnn's tiled front end, SampleCNN's 128 x 19683 first blocks) and the cores never wait on each other
inside one small operator. Precision is explicit: ``fp32`` runs the network as converted; ``bf16`` runs the
network's convolutions and matrix products in bfloat16 (fp32 accumulation) under autocast, while the
log-mel front end stays float32; ``fp16`` is CUDA only.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

from catalogue_tagger.errors import BackendUnavailable
from catalogue_tagger.inference.base import CPU_MICRO_BATCH, Backend
from catalogue_tagger.models.layers import fold_batchnorm
from catalogue_tagger.models.registry import get_spec, load_model

AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def cpu_supports_bf16() -> bool:
    """Whether oneDNN runs bfloat16 natively on this CPU (AVX512-BF16 or AMX); emulated bf16 is slower than fp32."""
    onednn = torch.backends.mkldnn.is_available()  # type: ignore[no-untyped-call]
    return bool(onednn and torch.ops.mkldnn._is_mkldnn_bf16_supported())


class TorchBackend(Backend):
    def __init__(self, model: str, device: str = "cpu", precision: str = "fp32", threads: int = 1) -> None:
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise BackendUnavailable(f"device {device!r} requested but torch sees no CUDA device")
        self.spec = get_spec(model)
        self.device = torch.device(device)
        self.precision = precision
        self._autocast = AUTOCAST_DTYPES.get(precision)
        if precision not in ("fp32", *AUTOCAST_DTYPES):
            raise BackendUnavailable(f"torch backend: no precision {precision!r}; choose fp32, bf16 or fp16")
        if self.device.type == "cpu" and precision == "fp16":
            raise BackendUnavailable("torch backend: fp16 runs on CUDA only; on CPU choose fp32 or bf16")
        if self.device.type == "cpu" and precision == "bf16" and not cpu_supports_bf16():
            raise BackendUnavailable("torch backend: this CPU has no native bfloat16 (AVX512-BF16 or AMX); choose fp32")
        if self.device.type == "cuda":
            # TF32 convolutions/matmuls would move scores past the 1e-4 parity with the reference
            torch.backends.cudnn.allow_tf32 = False
            torch.backends.cuda.matmul.allow_tf32 = False
        self.model = fold_batchnorm(load_model(model, device=str(self.device)))
        self._pool: ThreadPoolExecutor | None = None
        if self.device.type == "cpu":
            torch.set_num_threads(1)  # parallel across micro-batches instead (module docstring)
            if threads > 1:
                self._pool = ThreadPoolExecutor(threads, thread_name_prefix=f"infer-{model}")

    def _forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        # inference mode and autocast are thread-local: entered on the thread that runs the micro-batch
        with torch.inference_mode(), torch.autocast(
            self.device.type, dtype=self._autocast or torch.float32, enabled=self._autocast is not None
        ):
            return tuple(out.float() for out in self.model(x))

    def run(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        x = torch.from_numpy(self._check(batch))
        if self.device.type == "cuda":
            x = x.pin_memory().to(self.device, non_blocking=True)
            outputs = self._forward(x)
        else:
            chunks = torch.split(x, CPU_MICRO_BATCH)
            parts = list(self._pool.map(self._forward, chunks)) if self._pool else [self._forward(c) for c in chunks]
            outputs = tuple(torch.cat(column) for column in zip(*parts))
        return {name: out.cpu().numpy() for name, out in zip(self.spec.output_names, outputs)}

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown()
        del self.model
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
