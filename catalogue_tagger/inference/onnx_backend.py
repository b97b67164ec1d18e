"""ONNX Runtime backend: the exported graph of a precision on the CPU, or on CUDA through the CUDA provider.

CPU: ``session.run`` on micro-batches of :data:`PARALLEL_MICRO_BATCH` segments, run side by side on ``threads``
Python threads (the cores the decode workers leave free) with one ONNX Runtime thread each. Beside a busy decode
worker this ran musicnn 14 % faster than one run at a time on ``threads`` intra-op threads (69 → 79 segments/s on
2 cores), whose every operator waits for its slowest thread; alone, both ran the same. Runs side by side each
hold their activations, so the smaller the micro-batch, the smaller the peak: micro-batches of 4 kept two of them
below one run of 8 (musicnn 553 against 826 MB, SampleCNN 573 against 854 MB, same speed), and single segments
halve it again while musicnn runs faster (AVX-512 CPU, 2 threads: 131-134 against 124-127 segments/s; SampleCNN
the same speed). Peak RSS of `tag` with both default models on a 3-minute MP3: 732 → 311-324 MB; a 1-hour MP3
810 → 371-377 MB, 27.0 → 25.4 s.
CUDA: the CUDA execution provider on the settings' device, TF32 off (it would break the 1e-4 parity); ONNX
Runtime quietly falls back to the CPU when the provider cannot load (missing CUDA or cuDNN libraries), so the
session's providers are checked and a fallback is :class:`BackendUnavailable`. Batches go through an I/O
binding: the input is an ``OrtValue`` on the device (reused while the batch size repeats), the outputs are
bound to host memory, and ``run_with_iobinding`` copies them back with one synchronization per batch.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from onnxruntime.capi import onnxruntime_pybind11_state as ort_state

from catalogue_tagger.errors import BackendUnavailable, InferenceError
from catalogue_tagger.inference.base import CPU_MICRO_BATCH, Backend
from catalogue_tagger.inference.compile import onnx_path_for
from catalogue_tagger.inference.device import cuda_index
from catalogue_tagger.models.specs import get_spec

CUDA = "CUDAExecutionProvider"
PARALLEL_MICRO_BATCH = 1  # segments per run when runs go side by side on threads (see the module docstring)
INPUT = "wave"
# ONNX Runtime's own error types (each derives from Exception directly), and what its Python layer raises
ORT_ERRORS: tuple[type[Exception], ...] = (RuntimeError, ValueError, *(
    error for name in ("Fail", "InvalidArgument", "NoSuchFile", "NoModel", "EngineError", "RuntimeException",
                       "InvalidProtobuf", "NotImplemented", "InvalidGraph", "EPFail")
    if isinstance(error := getattr(ort_state, name, None), type) and issubclass(error, Exception)
))


class OnnxBackend(Backend):
    def __init__(
        self, model: str, device: str, cache: Path, precision: str = "fp32", threads: int = 0
    ) -> None:
        """``threads``: CPU threads running micro-batches side by side (0: every core)."""
        self.spec = get_spec(model)
        self.precision = precision
        options = ort.SessionOptions()
        options.intra_op_num_threads = max(0, threads) if device.startswith("cuda") else 1
        options.inter_op_num_threads = 1
        # Idle intra-op threads sleep instead of spinning: a spinning thread takes the core a decode worker needs.
        # Whole 2-core tag runs took 39 s without spinning against 43-46 s with it; inference alone ran the same.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        providers: list[Any] = ["CPUExecutionProvider"]
        self._device_id: int | None = None
        if device.startswith("cuda"):
            if CUDA not in ort.get_available_providers():
                raise BackendUnavailable(f"{model}: this ONNX Runtime has no {CUDA} (install the gpu extra: "
                                         "onnxruntime-gpu)")
            self._device_id = cuda_index(device)
            providers.insert(0, (CUDA, {"device_id": self._device_id, "use_tf32": 0}))
        path = onnx_path_for(model, cache, precision)  # made on first use, cached by weights hash and precision
        try:
            self.session = ort.InferenceSession(str(path), options, providers=providers)
        except ORT_ERRORS as exc:  # e.g. no bfloat16 kernels in the CPU provider
            raise BackendUnavailable(f"{model}: ONNX Runtime cannot run the {precision} graph on {device}: "
                                     f"{exc}") from exc
        if self._device_id is not None and self.session.get_providers()[:1] != [CUDA]:
            raise BackendUnavailable(
                f"{model}: ONNX Runtime fell back to {self.session.get_providers()} instead of {CUDA} on {device} "
                "(are the CUDA and cuDNN libraries it was built for installed?)"
            )
        self._binding = self.session.io_binding() if self._device_id is not None else None
        self._input: Any = None  # the device OrtValue of the last batch shape
        threads = threads or os.cpu_count() or 1
        self._pool = ThreadPoolExecutor(threads, f"infer-{model}") if self._binding is None and threads > 1 else None

    def run(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        batch = self._check(batch)
        if self._binding is None:  # CPU: micro-batches side by side on the threads (module docstring)
            names = list(self.spec.output_names)
            size = PARALLEL_MICRO_BATCH if self._pool is not None else CPU_MICRO_BATCH
            chunks = [batch[i : i + size] for i in range(0, len(batch), size)]

            def run(chunk: np.ndarray) -> list[Any]:
                return list(self.session.run(names, {INPUT: chunk}))

            parts = list(self._pool.map(run, chunks)) if self._pool is not None else [run(c) for c in chunks]
            return {name: np.concatenate([np.asarray(p[k]) for p in parts]) for k, name in enumerate(names)}
        return self._run_bound(self._binding, batch)

    def _run_bound(self, binding: Any, batch: np.ndarray) -> dict[str, np.ndarray]:
        """One batch on CUDA: upload into the device input, run, outputs copied to host once."""
        if self._input is None or tuple(self._input.shape()) != batch.shape:
            self._input = ort.OrtValue.ortvalue_from_numpy(batch, "cuda", self._device_id)
        else:
            self._input.update_inplace(batch)
        binding.bind_ortvalue_input(INPUT, self._input)
        for name in self.spec.output_names:
            binding.bind_output(name, "cpu")
        try:
            self.session.run_with_iobinding(binding)
        except ORT_ERRORS as exc:
            raise InferenceError(f"{self.spec.name}: ONNX Runtime failed on a batch of {len(batch)}: {exc}") from exc
        outputs = binding.copy_outputs_to_cpu()
        binding.clear_binding_outputs()
        return {name: np.asarray(out, dtype=np.float32) for name, out in zip(self.spec.output_names, outputs)}

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown()
        self._input = None
        self._binding = None
        del self.session
