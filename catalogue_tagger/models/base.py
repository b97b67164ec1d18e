"""What every tagger declares about itself, and the module contract every tagger implements.

A tagger takes **waveform segments** (16 kHz mono float32, ``[batch, spec.window]``) and computes its own
front-end, so that the whole graph exports to ONNX/TensorRT. ``forward`` returns a tuple in the order
``spec.output_names``: ``probs`` (sigmoid tags), ``logits``, and ``embedding`` when ``embedding_size > 0``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from catalogue_tagger.models.layers import fold_batchnorm

ModelKind = Literal["spectrogram", "waveform"]


@dataclass(frozen=True)
class ModelSpec:
    name: str  # registry name, stable: "musicnn-mtt"
    kind: ModelKind
    architecture: str  # "musicnn", "vgg", "samplecnn"
    labels: tuple[str, ...]
    window: int  # samples per segment fed to the network
    hop: int  # samples between the starts of consecutive segments
    pad: int  # reflect context (samples) added before the first and after the last sample of a track
    embedding_size: int  # 0: no embedding output
    weights_file: str  # file name under catalogue_tagger/models/weights/
    weights_sha256: str  # sha256 of that file; a different hash is a different model version
    licence: str
    attribution: str
    source: str  # where the weights came from
    roc_auc: float | None = None  # published figures of the weights
    pr_auc: float | None = None
    default: bool = False  # tagged by `catalogue-tagger tag` when no --models is given
    sample_rate: int = 16000

    @property
    def output_names(self) -> tuple[str, ...]:
        return ("probs", "logits", "embedding") if self.embedding_size else ("probs", "logits")

    @property
    def n_labels(self) -> int:
        return len(self.labels)


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
