"""TensorRT runtime: open an engine built by ``catalogue-tagger compile`` and run batches on it.

Nothing here builds: a missing engine is :class:`BackendUnavailable` naming the compile command. Buffers
are torch tensors (no extra CUDA binding): on the engine's device, one input and one buffer per output sized
for the engine's max batch, and pinned host twins, all allocated once and bound once with
``set_tensor_address``. A batch is: copy into the pinned input, one async upload, ``set_input_shape``,
``execute_async_v3`` on a private stream, async downloads of the outputs, one synchronize. Output dtypes
are read from the engine and converted to float32 on the host.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from catalogue_tagger.errors import BackendUnavailable, InferenceError
from catalogue_tagger.inference.base import Backend
from catalogue_tagger.inference.device import cuda_index
from catalogue_tagger.inference.engine_cache import PROFILES, engine_path
from catalogue_tagger.models.specs import get_spec

if TYPE_CHECKING:
    import tensorrt as trt

INPUT = "wave"


class TensorRTBackend(Backend):
    def __init__(self, model: str, engine_bytes: bytes, max_batch: int, device: str = "cuda") -> None:
        try:
            import tensorrt as trt
        except ImportError as exc:
            raise BackendUnavailable("TensorRT is not installed") from exc
        if not torch.cuda.is_available():
            raise BackendUnavailable("TensorRT needs a CUDA device; none is visible")
        self.spec = get_spec(model)
        self.max_batch = max_batch
        self.device = torch.device("cuda", cuda_index(device))
        with torch.cuda.device(self.device):
            self._logger = trt.Logger(trt.Logger.WARNING)
            self._runtime = trt.Runtime(self._logger)
            self._engine = self._runtime.deserialize_cuda_engine(engine_bytes)
            if self._engine is None:
                raise BackendUnavailable(f"{model}: the TensorRT engine could not be deserialized (built by "
                                         "another TensorRT version or for another GPU?)")
            self._context = self._engine.create_execution_context()
            self._stream = torch.cuda.Stream(device=self.device)  # type: ignore[no-untyped-call]
            self._allocate()

    def _allocate(self) -> None:
        """Device and pinned host buffers for ``max_batch`` rows, bound to the context once."""
        import tensorrt as trt

        names = [self._engine.get_tensor_name(i) for i in range(self._engine.num_io_tensors)]
        inputs = [n for n in names if self._engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outputs = sorted(set(names) - set(inputs))
        if inputs != [INPUT] or outputs != sorted(self.spec.output_names):
            raise BackendUnavailable(f"{self.spec.name}: engine has inputs {inputs} and outputs {outputs}, "
                                     f"expected ['{INPUT}'] and {sorted(self.spec.output_names)}")
        low, _, high = self._engine.get_tensor_profile_shape(INPUT, PROFILES["batch"])
        if not low[0] <= self.max_batch <= high[0] or high[1] != self.spec.window:
            raise BackendUnavailable(f"{self.spec.name}: engine takes batches {low[0]}..{high[0]} of "
                                     f"{high[1]} samples, not {self.max_batch} of {self.spec.window}")
        self._set_shape(self.max_batch)  # every output shape at max batch: the size of its buffers
        self._device: dict[str, torch.Tensor] = {}
        self._host: dict[str, torch.Tensor] = {}
        for name in [INPUT, *self.spec.output_names]:
            dtype = _torch_dtype(self._engine.get_tensor_dtype(name))
            shape = _dims(self._context.get_tensor_shape(name))
            self._device[name] = torch.empty(shape, dtype=dtype, device=self.device)
            self._host[name] = torch.empty(shape, dtype=dtype, pin_memory=True)
            if not self._context.set_tensor_address(name, self._device[name].data_ptr()):
                raise BackendUnavailable(f"{self.spec.name}: TensorRT refused the buffer of {name}")
        if self._host[INPUT].dtype != torch.float32:
            raise BackendUnavailable(f"{self.spec.name}: engine input is {self._host[INPUT].dtype}, not float32")

    @classmethod
    def from_cache(
        cls, model: str, cache: Path, precision: str, max_batch: int, device: str = "cuda"
    ) -> "TensorRTBackend":
        """The engine that ``catalogue-tagger compile`` built for these settings; the runtime never builds one."""
        if precision == "int8":
            raise BackendUnavailable(f"{model}: TensorRT runs fp32, fp16 and bf16 engines; int8 runs on the onnx "
                                     "backend")
        path = engine_path(cache, model, get_spec(model).weights_sha256, precision, max_batch, device)
        if not path.exists():
            raise BackendUnavailable(
                f"{model}: no TensorRT engine for precision {precision}, max batch {max_batch} on {device} in "
                f"{cache}; build it with `catalogue-tagger compile --model {model} --precision {precision} "
                f"--max-batch {max_batch} --device {device}`"
            )
        return cls(model, path.read_bytes(), max_batch, device)

    def run(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        batch = self._check(batch)
        if not len(batch):
            return {name: np.zeros((0, *self._host[name].shape[1:]), np.float32) for name in self.spec.output_names}
        results: dict[str, list[np.ndarray]] = {name: [] for name in self.spec.output_names}
        for start in range(0, len(batch), self.max_batch):
            for name, value in self._run_chunk(batch[start : start + self.max_batch]).items():
                results[name].append(value)
        return {name: np.concatenate(parts) for name, parts in results.items()}

    def _run_chunk(self, chunk: np.ndarray) -> dict[str, np.ndarray]:
        n = len(chunk)
        self._host[INPUT][:n].numpy()[...] = chunk
        with torch.cuda.device(self.device), torch.cuda.stream(self._stream):
            self._device[INPUT][:n].copy_(self._host[INPUT][:n], non_blocking=True)
            self._set_shape(n)
            if not self._context.execute_async_v3(self._stream.cuda_stream):
                raise InferenceError(f"{self.spec.name}: TensorRT execution failed (batch of {n})")
            for name in self.spec.output_names:
                self._host[name][:n].copy_(self._device[name][:n], non_blocking=True)
        self._stream.synchronize()
        return {name: self._host[name][:n].float().numpy().copy() for name in self.spec.output_names}

    def _set_shape(self, n: int) -> None:
        if not self._context.set_input_shape(INPUT, (n, self.spec.window)):
            raise InferenceError(f"{self.spec.name}: TensorRT refused input shape ({n}, {self.spec.window})")

    def close(self) -> None:
        self._stream.synchronize()
        del self._context, self._engine, self._device, self._host
        with torch.cuda.device(self.device):
            torch.cuda.empty_cache()


def _dims(dims: "trt.Dims") -> tuple[int, ...]:
    return tuple(dims[i] for i in range(len(dims)))


def _torch_dtype(dtype: "trt.DataType") -> torch.dtype:
    """The torch dtype of a TensorRT I/O tensor type."""
    import tensorrt as trt

    table = {trt.float32: torch.float32, trt.float16: torch.float16, trt.bfloat16: torch.bfloat16,
             trt.int32: torch.int32, trt.int64: torch.int64, trt.int8: torch.int8, trt.uint8: torch.uint8,
             trt.bool: torch.bool}
    try:
        return table[dtype]
    except KeyError:
        raise BackendUnavailable(f"TensorRT I/O tensor of type {dtype} has no torch equivalent") from None
