"""ONNX Runtime backend: runs the exported graph (CUDA execution provider when asked and present)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort

from catalogue_tagger.errors import BackendUnavailable
from catalogue_tagger.inference.base import Backend
from catalogue_tagger.inference.compile import onnx_path_for
from catalogue_tagger.models.registry import get_spec


class OnnxBackend(Backend):
    def __init__(self, model: str, device: str, cache: Path) -> None:
        self.spec = get_spec(model)
        providers = ["CPUExecutionProvider"]
        if device.startswith("cuda"):
            if "CUDAExecutionProvider" not in ort.get_available_providers():
                raise BackendUnavailable("onnxruntime has no CUDAExecutionProvider here")
            providers.insert(0, "CUDAExecutionProvider")
        path = onnx_path_for(model, cache)  # exported on first use, cached by weights hash
        self.session = ort.InferenceSession(str(path), providers=providers)

    def run(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        outputs = self.session.run(list(self.spec.output_names), {"wave": self._check(batch)})
        return {name: np.asarray(out) for name, out in zip(self.spec.output_names, outputs)}
