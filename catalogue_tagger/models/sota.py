"""Pretrained MagnaTagATune taggers of Won et al., "Evaluation of CNN-based automatic music tagging models"
(SMC 2020; ``minzwon/sota-music-tagging-models``, MIT): their PyTorch musicnn, FCN and CRNN.

Layer for layer the networks of the repo's ``training/model.py`` in inference mode (dropout off, batch
norm on running statistics), behind the dB-mel front end of :mod:`sota_frontend`. Every block is
conv -> BN -> ReLU (-> max-pool); every batch norm has epsilon 1e-5. State-dict keys are the
checkpoint's own under ``net.`` (``spec_bn`` becomes ``frontend.bn``), so conversion is a rename.

Windows: musicnn takes 3 s (48000 samples), FCN and CRNN 29 s (464000 samples), consecutive and not
overlapping (``hop = window``, no context padding: each window is reflect-padded on its own, as the
reference computed it). A track shorter than one window is zero-padded to one and flagged ``padded``.

The CRNN's two-layer GRU is unrolled over its 18 time steps (the sequence length is fixed by the
window), so the exported graph has MatMul/Sigmoid/Tanh instead of an ONNX ``GRU`` node.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from catalogue_tagger.models.base import Tagger
from catalogue_tagger.models.layers import FrozenBatchNorm
from catalogue_tagger.models.sota_frontend import BN_EPSILON, N_MELS, DbMel
from catalogue_tagger.models.specs import SOTA_SHAPES, ModelSpec

MUSICNN_EMBEDDING_SIZE = SOTA_SHAPES["sota-musicnn"][1]
# musicnn's timbral (vertical) filters span int(0.7 * 96) and int(0.4 * 96) mel bands, 7 frames
VERTICAL_HEIGHTS = (int(0.7 * N_MELS), int(0.4 * N_MELS))
HORIZONTAL_LENGTHS = (129, 65, 33)  # temporal filters, frames
FCN_POOLS = ((2, 4), (2, 4), (2, 4), (3, 5), (4, 4))
FCN_CHANNELS = (64, 128, 128, 128, 64)
CRNN_POOLS = ((2, 2), (3, 3), (4, 4), (4, 4))
CRNN_CHANNELS = (64, 128, 128, 128)
GRU_HIDDEN = 32
GRU_LAYERS = 2


def _bn(channels: int) -> FrozenBatchNorm:
    return FrozenBatchNorm(channels, eps=BN_EPSILON)


class ConvBlock2d(nn.Module):
    """The repo's ``Conv_2d``: 3x3 conv (padding 1) -> BN -> ReLU -> max-pool ``pool`` (floor).

    The batch norm is folded into the convolution's weights at run time (exact up to float rounding) and
    the ReLU works in place, so a 29 s batch holds one full-resolution activation, not three: FCN's first
    block outputs 64 x 96 x 1813 floats (45 MB) per window.
    """

    def __init__(self, c_in: int, c_out: int, pool: tuple[int, int]) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.bn = _bn(c_out)
        self.pool = pool

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = self.bn.scale()
        weight = self.conv.weight * scale.reshape(-1, 1, 1, 1)
        bias = (self.conv.bias if self.conv.bias is not None else 0.0) * scale
        bias = bias + self.bn.bias - self.bn.running_mean * scale
        y = F.relu(F.conv2d(x, weight, bias, padding=1), inplace=True)
        return F.max_pool2d(y, self.pool)


class ConvBlock1d(nn.Module):
    """The repo's ``Conv_1d`` with pooling 1: conv over time (padding k // 2) -> BN -> ReLU."""

    def __init__(self, c_in: int, c_out: int, kernel: int) -> None:
        super().__init__()
        self.conv = nn.Conv1d(c_in, c_out, kernel, padding=kernel // 2)
        self.bn = _bn(c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)))


class VerticalConv(nn.Module):
    """``Conv_V``: a ``height x 7`` filter over ``[B, 1, 96, T]``, BN, ReLU, max over the mel axis."""

    def __init__(self, height: int, channels: int = 204) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, channels, (height, 7), padding=(0, 3))
        self.bn = _bn(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x))).amax(dim=2)  # [B, channels, T]


class HorizontalConv(nn.Module):
    """``Conv_H``: mean over the mel axis, then a temporal filter, BN, ReLU."""

    def __init__(self, length: int, channels: int = 51) -> None:
        super().__init__()
        self.conv = nn.Conv1d(1, channels, length, padding=length // 2)
        self.bn = _bn(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x.mean(dim=2))))  # [B, 1, T] -> [B, channels, T]


class MusicnnSotaNet(nn.Module):
    """``spec[B, 1, 96, 188] -> (logits[B, 50], embedding[B, 200])``: Pons' front end, residual back end."""

    def __init__(self, n_labels: int = 50) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            [VerticalConv(h) for h in VERTICAL_HEIGHTS] + [HorizontalConv(k) for k in HORIZONTAL_LENGTHS]
        )
        front = 204 * len(VERTICAL_HEIGHTS) + 51 * len(HORIZONTAL_LENGTHS)  # 561
        self.layer1 = ConvBlock1d(front, 64, 7)
        self.layer2 = ConvBlock1d(64, 64, 7)
        self.layer3 = ConvBlock1d(64, 64, 7)
        self.dense1 = nn.Linear(2 * (front + 3 * 64), MUSICNN_EMBEDDING_SIZE)
        self.bn = _bn(MUSICNN_EMBEDDING_SIZE)
        self.dense2 = nn.Linear(MUSICNN_EMBEDDING_SIZE, n_labels)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        front = torch.cat([layer(x) for layer in self.layers], dim=1)  # [B, 561, T]
        res1 = self.layer1(front)
        res2 = self.layer2(res1) + res1
        res3 = self.layer3(res2) + res2
        features = torch.cat([front, res1, res2, res3], dim=1)  # [B, 753, T]
        pooled = torch.cat([features.amax(dim=2), features.mean(dim=2)], dim=1)  # max pool, then mean pool
        embedding = F.relu(self.bn(self.dense1(pooled)))
        return self.dense2(embedding), embedding


class FcnNet(nn.Module):
    """``spec[B, 1, 96, 1813] -> (logits[B, 50], features[B, 64])``: five conv blocks pool to 1 x 1."""

    def __init__(self, n_labels: int = 50) -> None:
        super().__init__()
        c_in = 1
        for i, (c_out, pool) in enumerate(zip(FCN_CHANNELS, FCN_POOLS), start=1):
            self.add_module(f"layer{i}", ConvBlock2d(c_in, c_out, pool))
            c_in = c_out
        self.dense = nn.Linear(c_in, n_labels)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        for i in range(1, len(FCN_POOLS) + 1):
            x = getattr(self, f"layer{i}")(x)
        features = x.flatten(1)  # [B, 64, 1, 1] -> [B, 64]
        return self.dense(features), features


class UnrolledGru(nn.Module):
    """``nn.GRU(input_size, hidden, num_layers, batch_first=True)`` from a zero state, returning the top
    layer's last hidden state ``[B, hidden]``; the loop over time is unrolled when traced.

    Parameters have ``nn.GRU``'s names and layouts (gates r, z, n), so its state dict loads as is.
    """

    def __init__(self, input_size: int, hidden: int, num_layers: int) -> None:
        super().__init__()
        self.hidden = hidden
        self.num_layers = num_layers
        for layer in range(num_layers):
            size = input_size if layer == 0 else hidden
            self.register_parameter(f"weight_ih_l{layer}", nn.Parameter(torch.empty(3 * hidden, size)))
            self.register_parameter(f"weight_hh_l{layer}", nn.Parameter(torch.empty(3 * hidden, hidden)))
            self.register_parameter(f"bias_ih_l{layer}", nn.Parameter(torch.empty(3 * hidden)))
            self.register_parameter(f"bias_hh_l{layer}", nn.Parameter(torch.empty(3 * hidden)))
        bound = hidden**-0.5  # nn.GRU's initialisation
        for p in self.parameters():
            nn.init.uniform_(p, -bound, bound)

    def _layer(self, x: torch.Tensor, layer: int) -> list[torch.Tensor]:
        """Hidden states ``[B, hidden]`` at every step of one layer over ``x[B, T, size]``."""
        h_size = self.hidden
        w_hh: torch.Tensor = getattr(self, f"weight_hh_l{layer}")
        b_hh: torch.Tensor = getattr(self, f"bias_hh_l{layer}")
        gates_x = F.linear(x, getattr(self, f"weight_ih_l{layer}"), getattr(self, f"bias_ih_l{layer}"))
        states: list[torch.Tensor] = []
        for t in range(x.shape[1]):
            gx = gates_x[:, t]
            gh = F.linear(states[-1], w_hh, b_hh) if states else b_hh  # h0 = 0: W_hh h0 vanishes
            r = torch.sigmoid(gx[:, :h_size] + gh[..., :h_size])
            z = torch.sigmoid(gx[:, h_size : 2 * h_size] + gh[..., h_size : 2 * h_size])
            n = torch.tanh(gx[:, 2 * h_size :] + r * gh[..., 2 * h_size :])
            states.append((1 - z) * n + z * states[-1] if states else (1 - z) * n)
        return states

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in range(self.num_layers):
            states = self._layer(x, layer)
            x = torch.stack(states, dim=1)
        return states[-1]


class CrnnNet(nn.Module):
    """``spec[B, 1, 96, 1813] -> (logits[B, 50], last GRU state[B, 32])``: four conv blocks, a GRU."""

    def __init__(self, n_labels: int = 50) -> None:
        super().__init__()
        c_in = 1
        for i, (c_out, pool) in enumerate(zip(CRNN_CHANNELS, CRNN_POOLS), start=1):
            self.add_module(f"layer{i}", ConvBlock2d(c_in, c_out, pool))
            c_in = c_out
        self.layer5 = UnrolledGru(c_in, GRU_HIDDEN, GRU_LAYERS)
        self.dense = nn.Linear(GRU_HIDDEN, n_labels)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        for i in range(1, len(CRNN_POOLS) + 1):
            x = getattr(self, f"layer{i}")(x)
        sequence = x.squeeze(2).transpose(1, 2)  # [B, 128, 1, 18] -> [B, 18, 128]
        last = self.layer5(sequence)
        return self.dense(last), last


class SotaTagger(Tagger):
    """``wave[B, spec.window] -> (probs, logits[, embedding])``: :class:`DbMel` then the network."""

    def __init__(self, spec: ModelSpec, net: nn.Module) -> None:
        super().__init__(spec)
        self.frontend = DbMel(spec.window)
        self.net = net

    def forward_spec(self, spec: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The network alone on a normalised dB-mel ``[B, 1, 96, frames]``."""
        logits, embedding = self.net(spec)
        outputs = (torch.sigmoid(logits), logits)
        return outputs + (embedding,) if self.spec.embedding_size else outputs

    def forward(self, wave: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return self.forward_spec(self.frontend(wave))


# architecture -> network (windows and embedding sizes: specs.SOTA_SHAPES)
NETWORKS: dict[str, type[nn.Module]] = {"sota-musicnn": MusicnnSotaNet, "sota-fcn": FcnNet, "sota-crnn": CrnnNet}


def build(spec: ModelSpec) -> SotaTagger:
    """The tagger of ``spec`` (one of :data:`NETWORKS`) with untrained weights."""
    network = NETWORKS[spec.architecture]
    return SotaTagger(spec, network(spec.n_labels))
