"""TensorRT runtime: deserialize a cached engine (built by ``catalogue-tagger compile``) and run batches.

Device buffers are torch CUDA tensors, so no extra CUDA binding is needed; the engine's I/O tensors are
found by name and bound with ``set_tensor_address``, and inference is ``execute_async_v3`` on torch's
current stream.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from catalogue_tagger.errors import BackendUnavailable, InferenceError
from catalogue_tagger.inference.base import Backend
from catalogue_tagger.inference.compile import engine_path_for
from catalogue_tagger.models.registry import get_spec


class TensorRTBackend(Backend):
    def __init__(self, model: str, engine_bytes: bytes, max_batch: int) -> None:
        try:
            import tensorrt as trt
        except ImportError as exc:
            raise BackendUnavailable("TensorRT is not installed") from exc
        self.spec = get_spec(model)
        self.max_batch = max_batch
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)
        self._engine = self._runtime.deserialize_cuda_engine(engine_bytes)
        if self._engine is None:
            raise BackendUnavailable(f"{model}: the cached TensorRT engine could not be deserialized")
        self._context = self._engine.create_execution_context()
        names = [self._engine.get_tensor_name(i) for i in range(self._engine.num_io_tensors)]
        self._outputs = [n for n in names if self._engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        missing = set(self.spec.output_names) - set(self._outputs)
        if missing:
            raise BackendUnavailable(f"{model}: engine lacks outputs {sorted(missing)}")
        self._stream = torch.cuda.Stream()  # type: ignore[no-untyped-call]

    @classmethod
    def from_cache(cls, model: str, cache: Path, precision: str, max_batch: int) -> "TensorRTBackend":
        """The engine that ``catalogue-tagger compile`` built for these settings; the runtime never builds one."""
        path = engine_path_for(model, cache, precision, max_batch)
        if not path.exists():
            raise BackendUnavailable(
                f"{model}: no TensorRT engine for precision {precision}, max batch {max_batch} in {cache}; build it "
                f"with `catalogue-tagger compile --model {model} --precision {precision} --max-batch {max_batch}`"
            )
        return cls(model, path.read_bytes(), max_batch)

    def run(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        batch = self._check(batch)
        results: dict[str, list[np.ndarray]] = {name: [] for name in self.spec.output_names}
        for start in range(0, len(batch), self.max_batch):
            for name, value in self._run_chunk(batch[start : start + self.max_batch]).items():
                results[name].append(value)
        return {name: np.concatenate(parts) for name, parts in results.items()}

    def _run_chunk(self, chunk: np.ndarray) -> dict[str, np.ndarray]:
        with torch.cuda.stream(self._stream):
            wave = torch.from_numpy(chunk).pin_memory().cuda(non_blocking=True)
            self._context.set_input_shape("wave", tuple(wave.shape))
            self._context.set_tensor_address("wave", wave.data_ptr())
            buffers: dict[str, torch.Tensor] = {}
            for name in self._outputs:
                dims = self._context.get_tensor_shape(name)
                shape = tuple(dims[i] for i in range(len(dims)))
                buffers[name] = torch.empty(shape, dtype=torch.float32, device="cuda")
                self._context.set_tensor_address(name, buffers[name].data_ptr())
            if not self._context.execute_async_v3(self._stream.cuda_stream):
                raise InferenceError(f"{self.spec.name}: TensorRT execution failed")
            out = {name: buffers[name].cpu().numpy() for name in self.spec.output_names}
        self._stream.synchronize()
        return out

    def close(self) -> None:
        del self._context, self._engine
        torch.cuda.empty_cache()
