"""A spectrogram tagger: the log-mel front end and a network, as one waveform-in module."""

from __future__ import annotations

import torch
from torch import nn

from catalogue_tagger.models.base import Tagger
from catalogue_tagger.models.frontend import LogMel
from catalogue_tagger.models.specs import ModelSpec


class SpectrogramTagger(Tagger):
    """``wave[B, 48128] -> (probs, logits[, embedding])``: ``LogMel`` then ``net``.

    ``net`` maps log-mel patches ``[B, 187, 96]`` to ``(logits,)`` or ``(logits, embedding)``;
    :meth:`forward_mel` runs it alone (reference inputs, or a front end computed elsewhere).
    """

    def __init__(self, spec: ModelSpec, net: nn.Module) -> None:
        super().__init__(spec)
        self.frontend = LogMel()
        self.net = net

    def forward_mel(self, mel: torch.Tensor) -> tuple[torch.Tensor, ...]:
        logits, *embedding = self.net(mel)
        return (torch.sigmoid(logits), logits, *embedding)

    def forward(self, wave: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return self.forward_mel(self.frontend(wave))
