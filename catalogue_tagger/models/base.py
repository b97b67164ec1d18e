"""The module contract every tagger implements (what each declares about itself: :mod:`.specs`).

A tagger takes **waveform segments** (16 kHz mono float32, ``[batch, spec.window]``) and computes its own
front-end, so that the whole graph exports to ONNX/TensorRT. ``forward`` returns a tuple in the order
``spec.output_names``: ``probs`` (sigmoid tags), ``logits``, and ``embedding`` when ``embedding_size > 0``.
"""

from __future__ import annotations

import torch
from torch import nn

from catalogue_tagger.models.layers import fold_batchnorm
from catalogue_tagger.models.specs import ModelSpec


class Tagger(nn.Module):
    """Base class of the torch taggers: ``forward(wave[B, window]) -> (probs, logits[, embedding])``."""

    spec: ModelSpec

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__()
        self.spec = spec

    def forward(self, wave: torch.Tensor) -> tuple[torch.Tensor, ...]:  # pragma: no cover - abstract
        raise NotImplementedError

    def for_cpu_inference(self) -> Tagger:
        """This tagger as CPU inference runs it (changed in place, inference only): each BN folded into the
        convolution before it (:func:`~catalogue_tagger.models.layers.fold_batchnorm`); a tagger whose
        activations run faster in another layout changes that too. The same outputs, to float rounding."""
        return fold_batchnorm(self)
