"""PyTorch backend: CPU always works; CUDA when a GPU is present."""

from __future__ import annotations

import numpy as np
import torch

from catalogue_tagger.errors import BackendUnavailable
from catalogue_tagger.inference.base import Backend
from catalogue_tagger.models.registry import get_spec, load_model


class TorchBackend(Backend):
    def __init__(self, model: str, device: str = "cpu") -> None:
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise BackendUnavailable(f"device {device!r} requested but torch sees no CUDA device")
        self.spec = get_spec(model)
        self.device = torch.device(device)
        if self.device.type == "cuda":
            # TF32 convolutions/matmuls would move scores past the 1e-4 parity with the reference
            torch.backends.cudnn.allow_tf32 = False
            torch.backends.cuda.matmul.allow_tf32 = False
        self.model = load_model(model, device=str(self.device))

    @torch.inference_mode()
    def run(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        x = torch.from_numpy(self._check(batch))
        if self.device.type == "cuda":
            x = x.pin_memory().to(self.device, non_blocking=True)
        outputs = self.model(x)
        return {name: out.float().cpu().numpy() for name, out in zip(self.spec.output_names, outputs)}

    def close(self) -> None:
        del self.model
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
