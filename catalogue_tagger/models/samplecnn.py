"""SampleCNN (Lee et al., 2017): a sample-level waveform tagger, 3^9 model, 59049 samples in.

A strided conv (kernel 3, stride 3) turns the waveform into 19683 frames of 128 channels; nine blocks of
conv3 (padding 1) + BN + ReLU + max-pool 3 bring the length down to 1 while the channels grow
128, 128, 256, 256, 256, 256, 256, 256, 512; a 1x1 conv (512) + BN + ReLU gives the 512-d embedding, then
dropout and a linear layer to the tags. Optionally a linear projection of that 512-d feature (trained to predict
a teacher's embedding, e.g. musicnn's 200-d penultimate layer) is the embedding the tagger outputs instead, so
similarity and heads read a space shaped like the teacher's. About 1.9 M parameters; every op exports to ONNX with a TensorRT
importer (Conv, BatchNormalization, Relu, MaxPool, Flatten/Reshape, Gemm, Sigmoid).
"""

from __future__ import annotations

from typing import cast

import torch
import torch.nn.functional as F
from torch import nn

from catalogue_tagger.models.base import Tagger
from catalogue_tagger.models.specs import SAMPLECNN_EMBEDDING_SIZE, SAMPLECNN_WINDOW, ModelSpec
from catalogue_tagger.models.winograd import input_transform, transformed_kernels, winograd_matrices

WINDOW = SAMPLECNN_WINDOW
BLOCK_CHANNELS = (128, 128, 256, 256, 256, 256, 256, 256, 512)
EMBEDDING_SIZE = SAMPLECNN_EMBEDDING_SIZE
DROPOUT = 0.5
# The float32 CPU path computes the 3-tap convolutions as Winograd's F(m, 3): m outputs from m + 2 products
# instead of 3m (m = 4: half the multiply-adds), WINOGRAD_VALUES / (m + 2) / channels runs at a time so that
# their transformed input and products stay in cache.
WINOGRAD_OUTPUTS = 4
WINOGRAD_VALUES = 131_072
# Shorter activations (the last four blocks: 81 samples and fewer) run faster as plain convolutions.
WINOGRAD_MIN_LENGTH = 200


def _conv_bn_relu(c_in: int, c_out: int, kernel: int, stride: int = 1, padding: int = 0) -> list[nn.Module]:
    return [nn.Conv1d(c_in, c_out, kernel, stride=stride, padding=padding, bias=False),
            nn.BatchNorm1d(c_out), nn.ReLU()]


class SampleCnnNet(nn.Module):
    """``wave[B, 59049] -> (logits[B, n_labels], embedding[B, E])``; E is ``projection_size`` when it is > 0
    (the projected feature), else 512 (the pooled feature itself)."""

    projection: nn.Linear | None

    def __init__(self, n_labels: int = 50, projection_size: int = 0) -> None:
        super().__init__()
        layers: list[nn.Module] = _conv_bn_relu(1, BLOCK_CHANNELS[0], 3, stride=3)
        c_in = BLOCK_CHANNELS[0]
        for c_out in BLOCK_CHANNELS:
            layers += _conv_bn_relu(c_in, c_out, 3, padding=1) + [nn.MaxPool1d(3)]
            c_in = c_out
        layers += _conv_bn_relu(c_in, EMBEDDING_SIZE, 1)
        self.features = nn.Sequential(*layers)
        self.dropout = nn.Dropout(DROPOUT)
        self.output = nn.Linear(EMBEDDING_SIZE, n_labels)
        self.projection = nn.Linear(EMBEDDING_SIZE, projection_size) if projection_size else None

    def embed(self, wave: torch.Tensor) -> torch.Tensor:
        """The pooled 512-d feature of each window, ``[B, 512]`` (time axis is 1 after the last pool). Training on
        a CPU computes it channels-last (:func:`train_features_channels_last`)."""
        if self.training and wave.device.type == "cpu" and isinstance(self.features, nn.Sequential):
            return train_features_channels_last(self.features, wave)
        features: torch.Tensor = self.features(wave.unsqueeze(1))
        return features.flatten(1)

    def forward(self, wave: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.embed(wave)
        logits = self.output(self.dropout(features))
        return logits, self.projection(features) if self.projection is not None else features


def train_features_channels_last(features: nn.Sequential, wave: torch.Tensor) -> torch.Tensor:
    """``features(wave.unsqueeze(1)).flatten(1)`` of the training network (BN layers in training mode), computed on
    ``[N, length, channels]`` activations: the same layers, parameters and batch statistics; a bf16 training
    step of 16 windows ran 2.5 times as fast on an AMX CPU (10 -> 25 windows/s; float32 1.1 times).

    On ``[N, C, L]`` tensors oneDNN reorders every convolution's input and output to channels-last and back (in a
    bf16 training step on an AMX CPU the reorders took 30 % of the time, the first block's 128 x 19683 activations
    most of it). Here the first layer is a matrix product of the wave seen as ``[N, 19683, 3]``; each 3-tap
    convolution a ``Conv2d`` over a channels-last ``[N, C, 1, L]`` view; each BN layer runs on the activations seen
    as ``[N x L, C]`` rows (its own forward: the same statistics over batch and time, the same running-statistics
    updates); each max-pool is a ``max_pool2d`` over the same view, taken before its ReLU (they commute), which then
    touches a third of the values. Results match the ``[N, C, L]`` network to float rounding (the statistics sum
    in another order); a max-pool's gradient goes to one element of each window, as ``MaxPool1d``'s does.
    """
    layers = list(features)
    n = wave.shape[0]
    y = wave.unsqueeze(2)  # [N, samples, 1]
    i = 0
    while i < len(layers):
        layer = layers[i]
        if isinstance(layer, nn.Conv1d):
            y = _conv_channels_last(layer, y)
        elif isinstance(layer, nn.BatchNorm1d):
            y = layer(y.reshape(-1, y.shape[2])).view(y.shape)
        elif isinstance(layer, nn.ReLU) and i + 1 < len(layers) and isinstance(layers[i + 1], nn.MaxPool1d):
            y = _max_pool_channels_last(cast(nn.MaxPool1d, layers[i + 1]), y).relu()
            i += 1
        elif isinstance(layer, nn.ReLU):
            y = y.relu()
        elif isinstance(layer, nn.MaxPool1d):
            y = _max_pool_channels_last(layer, y)
        else:
            raise ValueError(f"train_features_channels_last: unexpected layer {layer}")
        i += 1
    return y.reshape(n, -1) if y.shape[1] == 1 else y.transpose(1, 2).reshape(n, -1)


def _conv_channels_last(conv: nn.Conv1d, y: torch.Tensor) -> torch.Tensor:
    """``conv`` of ``y[N, L, C_in]`` -> ``[N, L_out, C_out]``."""
    n, length, c_in = y.shape
    kernel, stride, padding = int(conv.kernel_size[0]), int(conv.stride[0]), int(cast(tuple[int], conv.padding)[0])
    if c_in == 1 and kernel == stride and padding == 0:  # the first layer: frames of the wave times the kernel
        frames = length // kernel
        return F.linear(y[:, : frames * kernel].reshape(n, frames, kernel), conv.weight.reshape(-1, kernel), conv.bias)
    if kernel == 1 and stride == 1 and padding == 0:
        return F.linear(y, conv.weight[:, :, 0], conv.bias)
    z = F.conv2d(y.transpose(1, 2).unsqueeze(2), conv.weight.unsqueeze(2), conv.bias, (1, stride), (0, padding),
                 (1, int(conv.dilation[0])), conv.groups)
    return z.squeeze(2).transpose(1, 2)


def _max_pool_channels_last(pool: nn.MaxPool1d, y: torch.Tensor) -> torch.Tensor:
    """``pool`` of ``y[N, L, C]`` -> ``[N, L_out, C]``."""
    kernel, stride = cast(int, pool.kernel_size), cast(int, pool.stride)
    padding, dilation = cast(int, pool.padding), cast(int, pool.dilation)
    z = F.max_pool2d(y.transpose(1, 2).unsqueeze(2), (1, kernel), (1, stride), (0, padding), (1, dilation),
                     pool.ceil_mode)
    return z.squeeze(2).transpose(1, 2)


class WaveformTagger(Tagger):
    """``wave[B, spec.window] -> (probs, logits, embedding)``: the network on raw samples, no front end."""

    net: SampleCnnNet

    def __init__(self, spec: ModelSpec, net: SampleCnnNet) -> None:
        super().__init__(spec)
        self.net = net

    def for_cpu_inference(self) -> WaveformTagger:
        """BN folded, and the features computed channels-last (:class:`ChannelsLastFeatures`)."""
        super().for_cpu_inference()
        self.net.features = ChannelsLastFeatures(self.net.features)  # type: ignore[assignment]
        return self

    def forward(self, wave: torch.Tensor) -> tuple[torch.Tensor, ...]:
        logits, embedding = self.net(wave)
        outputs = (torch.sigmoid(logits), logits)
        return outputs + (embedding,) if self.spec.embedding_size else outputs


class ChannelsLastFeatures(nn.Module):
    """``features`` of a BN-folded SampleCNN (:func:`~catalogue_tagger.models.layers.fold_batchnorm`) for CPU
    inference, computed on ``[N, length, channels]`` activations: the same values, several times faster.

    oneDNN's 1-D convolutions on ``[N, C, L]`` tensors reorder every input and output to a channels-last layout
    and back (in bfloat16 that copying was 60 % of the network's time, and bf16 ran slower than fp32). Here the
    activations stay channels-last from end to end: the first layer (one input channel, kernel = stride 3) is a
    matrix product of the waveform seen as ``[N, 19683, 3]`` with the ``[3, 128]`` kernel; each later conv is a
    ``Conv2d`` over a channels-last ``[N, C, 1, L]`` view; a max-pool of 3 is a max over a ``[N, L/3, 3, C]``
    view, and comes before its ReLU (the two commute: ReLU is monotone), which then touches a third of the
    values. Inference only (in-place ReLUs, no BN). One segment of 59049 samples, one torch thread: fp32 1.5×,
    bf16 5.8× faster than the ``[N, C, L]`` network on an AMX CPU; bf16 results bit-identical, fp32 within 2e-6.

    In float32 the 3-tap convolutions over 200 samples or more (the first five blocks, nearly all the products)
    run as Winograd's F(4, 3) with their max-pool (:func:`conv3_winograd`): half the multiply-adds; 8 segments
    on one thread of an AVX2 CPU 0.50 → 0.38 s, logits within 2e-6 of the plain network as before.
    """

    def __init__(self, features: nn.Sequential) -> None:
        super().__init__()
        layers = list(features)
        first = layers[0]
        if not (isinstance(first, nn.Conv1d) and first.in_channels == 1 and first.stride == first.kernel_size
                and first.padding == (0,) and first.bias is not None):
            raise ValueError("ChannelsLastFeatures: the first layer must be a strided Conv1d on the wave with a bias "
                             "(fold the BN layers first)")
        self.frame = int(first.kernel_size[0])
        self.first_weight = nn.Parameter(first.weight.detach().reshape(first.out_channels, self.frame),
                                         requires_grad=False)
        self.first_bias = nn.Parameter(first.bias.detach(), requires_grad=False)
        self.convs = nn.ModuleList()
        self.pools: list[int] = []  # per conv: the max-pool after it (0: none)
        self.winograd: list[torch.Tensor | None] = []  # per conv: its F(m, 3) kernels (3 taps, padding 1), or None
        convs = [i for i, layer in enumerate(layers) if isinstance(layer, nn.Conv1d)]
        if not all(i + 1 < len(layers) and isinstance(layers[i + 1], nn.ReLU) for i in convs):
            raise ValueError("ChannelsLastFeatures: every convolution must be followed by its ReLU")
        for layer in layers[1:]:
            if isinstance(layer, nn.Conv1d) and layer.bias is not None and layer.stride == (1,) and layer.groups == 1:
                conv2d = nn.Conv2d(layer.in_channels, layer.out_channels, (1, int(layer.kernel_size[0])),
                                   padding=(0, int(layer.padding[0])))
                conv2d.weight = nn.Parameter(layer.weight.detach().unsqueeze(2).contiguous(
                    memory_format=torch.channels_last), requires_grad=False)
                conv2d.bias = nn.Parameter(layer.bias.detach(), requires_grad=False)
                self.convs.append(conv2d)
                self.pools.append(0)
                taps = int(layer.kernel_size[0])
                self.winograd.append(transformed_kernels(layer.weight.detach(), WINOGRAD_OUTPUTS)
                                     if taps == 3 and layer.padding == (1,) else None)
            elif isinstance(layer, nn.MaxPool1d) and self.pools and layer.kernel_size == layer.stride:
                self.pools[-1] = int(layer.kernel_size)  # type: ignore[arg-type]
            elif not isinstance(layer, nn.ReLU):  # each conv's ReLU (checked above) is applied in forward
                raise ValueError(f"ChannelsLastFeatures: unexpected layer {layer} (fold the BN layers first)")

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        """``wave[N, 1, samples] -> [N, channels, 1]``, as ``features(wave)``."""
        n = wave.shape[0]
        y = F.linear(wave.reshape(n, -1, self.frame), self.first_weight, self.first_bias).relu_()  # [N, L, C]
        exact = y.device.type == "cpu" and y.dtype == torch.float32 and not torch.is_autocast_enabled("cpu")
        for conv, pool, kernels in zip(self.convs, self.pools, self.winograd):
            if exact and kernels is not None and y.shape[1] >= WINOGRAD_MIN_LENGTH:
                y = conv3_winograd(y, kernels, cast(nn.Conv2d, conv).bias, pool or 1).relu_()  # pooled too
                continue
            z = conv(y.transpose(1, 2).unsqueeze(2)).squeeze(2).transpose(1, 2)  # channels-last in and out
            if pool:
                length = z.shape[1] // pool
                z = z[:, : length * pool].reshape(n, length, pool, z.shape[2]).amax(dim=2)
            y = z.relu_()
        return y.transpose(1, 2)


def conv3_winograd(y: torch.Tensor, kernels: torch.Tensor, bias: torch.Tensor | None, pool: int = 1) -> torch.Tensor:
    """A 3-tap convolution with padding 1 of ``y[N, L, C_in]`` (channels-last) by Winograd's F(m, 3) along ``L``,
    ``m`` = :data:`WINOGRAD_OUTPUTS`, then the max-pool of ``pool`` after it: ``[N, L // pool, C_out]``.

    ``kernels`` are the conv weight's :func:`~catalogue_tagger.models.winograd.transformed_kernels`. Each run of
    ``m + 2`` input rows is transformed (``B^T``), multiplies the ``m + 2`` kernels as that many GEMMs of
    ``K = C_in`` in one ``bmm``, and ``A^T`` turns the products into ``m`` output rows: ``m + 2`` products where
    the convolution has ``3 m``. A group of runs is pooled while in cache and the bias added after the max (they
    commute), so the unpooled output is never written out: the pages of so large a tensor, faulted in on first
    write, cost as much as the transforms. Only the first and the last group copy their input to add the
    padding rows."""
    n, length, c_in = y.shape
    points, _, c_out = kernels.shape
    m = points - 2
    a_t, _, _ = winograd_matrices(m, 3)
    runs = -(-length // m)
    pooled = length // pool
    step = max(pool, WINOGRAD_VALUES // (points * max(c_in, c_out)) // pool * pool)  # runs per GEMM
    out = torch.empty(n, pooled, c_out, dtype=y.dtype)
    for i in range(n):
        for r0 in range(0, runs, step):
            r1 = min(runs, r0 + step)
            first, last = r0 * m - 1, r1 * m + 1  # the input rows of these runs, padding included
            rows = y[i, max(0, first) : min(length, last)]
            if first < 0 or last > length:
                rows = F.pad(rows, (0, 0, max(0, -first), max(0, last - length)))
            transformed = input_transform(rows, m, 3)  # [points, r1 - r0, C_in]
            products = torch.bmm(transformed, kernels).view(points, -1)  # [points, (r1 - r0) x C_out]
            outputs = torch.mm(a_t, products).view(m, r1 - r0, c_out).transpose(0, 1).reshape(-1, c_out)
            o0, o1 = r0 * m // pool, min(pooled, r1 * m // pool)  # r0 * m is a multiple of pool
            block = outputs[: (o1 - o0) * pool].view(o1 - o0, pool, c_out).amax(dim=1)
            if bias is not None:
                torch.add(block, bias, out=out[i, o0:o1])
            else:
                out[i, o0:o1] = block
    return out


def build(spec: ModelSpec) -> WaveformTagger:
    """A SampleCNN tagger for ``spec`` with freshly initialised weights."""
    projection = spec.embedding_size if spec.embedding_size != EMBEDDING_SIZE else 0
    return WaveformTagger(spec, SampleCnnNet(spec.n_labels, projection))
