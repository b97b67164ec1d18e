"""The VGG-like spectrogram baseline of musicnn 0.1.0: five 3x3 conv blocks with max pooling, one dense layer.

``POOLS["musicnn"]`` is what ``musicnn/models.py`` builds for every vgg model. The MSD checkpoint was
trained with a different pool1/pool2 (its saved graph says so) and musicnn restores it into the MTT shape
without complaint; ``POOLS["as_trained_msd"]`` is the network those weights were actually trained in.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from catalogue_tagger.models.layers import FrozenBatchNorm, tf_batchnorm, tf_conv2d, tf_dense

N_FILTERS = 128
# (kernel, stride) of the five max-pool layers, (time, mel), TF 'valid' = floor
POOLS: dict[str, tuple[tuple[tuple[int, int], tuple[int, int]], ...]] = {
    "musicnn": (((4, 1), (2, 2)), ((2, 2), (2, 2)), ((2, 2), (2, 2)), ((2, 2), (2, 2)), ((4, 4), (4, 4))),
    "as_trained_msd": (((4, 1), (4, 1)), ((1, 4), (1, 4)), ((2, 2), (2, 2)), ((2, 2), (2, 2)), ((4, 4), (4, 4))),
}


class VggNet(nn.Module):
    """``log-mel[N, 187, 96] -> (logits[N, n_labels],)``."""

    def __init__(self, n_labels: int = 50, pools: str = "musicnn") -> None:
        super().__init__()
        self.input_bn = FrozenBatchNorm(1)
        self.convs = nn.ModuleList(nn.Conv2d(1 if i == 0 else N_FILTERS, N_FILTERS, 3, padding=1) for i in range(5))
        self.bns = nn.ModuleList(FrozenBatchNorm(N_FILTERS) for _ in range(5))
        self.pools = nn.ModuleList(nn.MaxPool2d(kernel, stride) for kernel, stride in POOLS[pools])
        self.output = nn.Linear(2 * 1 * N_FILTERS, n_labels)

    def pool5(self, mel: torch.Tensor) -> torch.Tensor:
        """The last pooling output, ``[N, 128, 2, 1]``."""
        x = self.input_bn(mel.unsqueeze(1))
        for conv, bn, pool in zip(self.convs, self.bns, self.pools):
            x = pool(bn(F.relu(conv(x))))
        out: torch.Tensor = x
        return out

    def forward(self, mel: torch.Tensor) -> tuple[torch.Tensor]:
        flat = self.pool5(mel).permute(0, 2, 3, 1).flatten(1)  # TF flattens (time, mel, channel)
        return (self.output(flat),)


def state_dict_from_tf(variables: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """Map the inference variables of a vgg checkpoint onto :class:`VggNet`'s state dict."""
    state = tf_batchnorm(variables, "batch_normalization", "input_bn")
    for i in range(5):
        state |= tf_conv2d(variables, f"{i + 1}CNN", f"convs.{i}")
        state |= tf_batchnorm(variables, f"batch_normalization_{i + 1}", f"bns.{i}")
    return state | tf_dense(variables, "dense", "output")
