"""musicnn (Pons & Serra, 2019): musically motivated front end, dense mid end, temporal pooling back end.

Layer for layer the network of ``musicnn/models.py`` (0.1.0) in inference mode. Tensors are
``[N, C, time, mel]``; TF's layout is NHWC with H = time, W = mel. Every block is conv -> ReLU -> BN.
"""

from __future__ import annotations

import math
import threading
from typing import cast

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from catalogue_tagger.models.layers import FrozenBatchNorm, tf_batchnorm, tf_conv2d, tf_dense
from catalogue_tagger.models.specs import MUSICNN_EMBEDDING_SIZE
from catalogue_tagger.models.winograd import POINTS, input_transform, transformed_kernels, winograd_matrices

N_MELS = 96
EMBEDDING_SIZE = MUSICNN_EMBEDDING_SIZE
# temporal kernels (time frames); TF 'SAME' pads (k - 1) // 2 before and the rest after
TEMPORAL_KERNELS = (128, 64, 32)
# timbral kernels (time, mel): 7 x int(0.4 * 96) and 7 x int(0.7 * 96)
TIMBRAL_KERNELS = ((7, int(0.4 * N_MELS)), (7, int(0.7 * N_MELS)))


# Output frames per tile of the CPU front end: the tile's conv output (frames x mel x filters, ~0.8 MB for a
# 7x38 kernel) stays in the core's cache between the GEMM that writes it and the max that reads it.
CPU_TILE_FRAMES = 16
# ... and in bfloat16, whose values take half the bytes and whose AMX products gain from taller GEMMs: a whole
# segment (187 frames) per GEMM ran 6 % faster than 48 frames (AMX CPU, one thread: 142 against 152 segments/s).
CPU_TILE_FRAMES_BF16 = 192
# bfloat16 GEMMs pad K (the im2col width) to a multiple of this: AMX multiplies bfloat16 in steps of 32 along K,
# and K = 288 ran faster than K = 266 (the 7 x 38 kernel's own width) on an AMX CPU.
BF16_K_MULTIPLE = 32
# ... and for the float32 temporal kernels' plain GEMMs (musicnn's 32 frames), whose products are [filters, frames
# x mel]: 48-96 frames ran 22-26 % faster than 16 (AVX2, one thread, 24 segments: 39.8 against 29.4-31.1 ms).
CPU_TIME_TILE_FRAMES = 64

# The float32 timbral kernels (7 frames) run as Winograd's F(m, 7) along time (catalogue_tagger.models.winograd):
# m = 6 output frames from 12 products instead of 42 (F(4, 7), 10 for 28, ran the network 5-8 % slower on AVX2).
WINOGRAD_FRAMES = 6
# Output rows (runs x mel positions) per GEMM: their products (12 x rows x filters) are combined and reduced over
# mel right away; ~180 rows ran fastest for both kernels (AVX2, one thread).
WINOGRAD_ROWS = 180
# The float32 temporal kernels of 64 frames and more run as sums of F(4, 4) over chunks of 4 frames (7 products
# for 16); shorter ones run faster as plain GEMMs. Runs per GEMM:
TEMPORAL_WINOGRAD_MIN = 64
TEMPORAL_WINOGRAD_FRAMES = 4
TEMPORAL_WINOGRAD_TILES = 16


def conv_max_over_mel(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """``amax(conv2d(x, weight, bias), dim=3)`` for ``x[N, 1, time, mel]`` and a one-input-channel ``weight``.

    On CPU (eager) the convolution runs tile by tile, a few output frames at a time, each tile's product computed
    by GEMMs and reduced over mel while it is still in cache: the full ``[N, C, time, mel]`` output (~0.6 GB for
    64 segments of the larger timbral conv) never exists. The max is exact and the bias commutes with it (rounding
    is monotone). Exports (ONNX, TensorRT) and CUDA keep ``conv2d`` + ``ReduceMax``. By kernel and precision:

    - ``k × 1`` in float32 (the temporal branches): :func:`_max_over_mel_of_time_kernel`, GEMMs over whole
      frames; kernels of 64 frames and more as sums of F(4, 4) (:func:`_max_over_mel_of_time_kernel_winograd`);
    - ``7 × k`` in float32 (the timbral branches, 90 % of the front end's products):
      :func:`_max_over_mel_winograd`, Winograd's F(6, 7) along time, 12 products where the convolution has 42
      (3.5 times fewer; about 1e-5 relative of float64, musicnn's probabilities move by under 1e-6);
    - otherwise, and every kernel under a bf16 autocast: :func:`_max_over_mel_of_tiles`, im2col GEMMs, which only
      the GEMMs' summation order distinguishes from ``conv2d``.

    Outside autograd, each tile's im2col and products go to work buffers the thread reuses (:func:`_scratch`).
    Under a CPU autocast (bf16) every tile's product is bfloat16 (AMX / AVX512-BF16): the input and the kernel
    are cast once here rather than by autocast at each of the ~100 GEMMs per segment, where the casts cost as
    much as the products. Casting is elementwise, so the im2col of the cast input is the cast of the im2col:
    the same operands and results as casting per GEMM, with half the bytes copied.
    """
    tracing = torch.jit.is_tracing()  # type: ignore[attr-defined,no-untyped-call]
    if x.device.type != "cpu" or torch.onnx.is_in_onnx_export() or tracing:
        return F.conv2d(x, weight, bias).amax(dim=3)
    channels, _, kt, km = weight.shape
    kernel = weight.reshape(channels, kt * km)  # [C, kt * km], columns in im2col order
    if torch.is_autocast_enabled("cpu"):
        operands = _autocast_operands(x, kernel)
        maxed = _max_over_mel_of_tiles(*operands, kt, km)
    elif km == 1 and kt >= TEMPORAL_WINOGRAD_MIN and kt % TEMPORAL_WINOGRAD_FRAMES == 0:  # temporal 64 and 128
        maxed = _max_over_mel_of_time_kernel_winograd(x, weight, kt)
    elif km == 1:
        maxed = _max_over_mel_of_time_kernel(x, kernel, kt)
    elif kt + WINOGRAD_FRAMES - 2 <= len(POINTS):  # short kernels: musicnn's timbral (7 frames)
        maxed = _max_over_mel_winograd(x, weight, kt, km)
    else:
        maxed = _max_over_mel_of_tiles(x, kernel, kt, km)
    return maxed + bias.reshape(1, -1, 1) if bias is not None else maxed


def _autocast_operands(x: torch.Tensor, kernel: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``x`` and ``kernel`` in the CPU autocast's type when one is active (see :func:`conv_max_over_mel`)."""
    if not torch.is_autocast_enabled("cpu"):
        return x, kernel
    low = torch.get_autocast_dtype("cpu")
    return x.to(low), kernel.to(low)


def _tile_frames(x: torch.Tensor) -> int:
    return CPU_TILE_FRAMES if x.dtype == torch.float32 else CPU_TILE_FRAMES_BF16


_SCRATCH = threading.local()


def _scratch(name: str, shape: tuple[int, ...], dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """A work buffer of ``shape`` that this thread reuses from call to call (its contents are whatever the
    last call left). The front end's per-tile products are megabytes each; taken fresh for every tile, they
    cycle through new memory (page faults, cold cache lines), and fresh buffers made the Winograd branches 20-30 %
    slower than reused ones (one thread, AVX2). With autograd recording, a fresh tensor (``out=`` is not
    differentiable)."""
    size = math.prod(shape)
    if torch.is_grad_enabled():
        return torch.empty(shape, dtype=dtype)
    key = (name, dtype, torch.is_inference_mode_enabled())
    pool: dict[tuple[str, torch.dtype, bool], torch.Tensor] = _SCRATCH.__dict__.setdefault("pool", {})
    buffer = pool.get(key)
    if buffer is None or buffer.numel() < size:
        buffer = pool[key] = torch.empty(size, dtype=dtype)
    return buffer[:size].view(shape)


def _max_over_mel_winograd(x: torch.Tensor, weight: torch.Tensor, kt: int, km: int) -> torch.Tensor:
    """The float32 ``kt × km`` kernel by Winograd's F(m, kt) along time (m = :data:`WINOGRAD_FRAMES`): each run
    of ``m + kt - 1`` input frames is transformed (``B^T``, on the ``[time, mel]`` input before its mel positions
    are unfolded), the ``m + kt - 1`` transformed kernels (``G``, once) multiply it as that many GEMMs of
    ``K = km``, and ``A^T`` turns their products into ``m`` output frames, reduced over mel while in cache. For
    the 7 × 38 and 7 × 67 kernels and m = 6 that is 12 GEMM products where direct convolution has 42 (one
    thread, AVX2, 32 segments: F(4, 7) took 0.61 s for both branches against 1.1 s by the float32 GEMM tiles it
    replaced; F(6, 7) runs the whole network 5-8 % faster again). Error: about 1e-5 relative of float64 (random
    inputs, |y| up to 8.4: 8e-5 for F(6, 7), 5e-5 for F(4, 7), ~6e-6 direct); musicnn's output probabilities
    move by under 1e-6."""
    n, _, t_in, n_mel = x.shape
    channels = weight.shape[0]
    m = WINOGRAD_FRAMES
    points = m + kt - 1
    t_out, m_out = t_in - kt + 1, n_mel - km + 1
    runs = -(-t_out // m)
    a_t, _, _ = winograd_matrices(m, kt)
    kernels = transformed_kernels(weight[:, 0].transpose(1, 2), m)  # [points, km, C]
    padding = runs * m + kt - 1 - t_in
    step = max(1, WINOGRAD_ROWS // m_out)  # runs per GEMM
    out = torch.empty(n, t_out, channels, dtype=torch.float32)
    for i in range(n):
        transformed = input_transform(F.pad(x[i, 0], (0, 0, 0, padding)), m, kt)  # [points, runs, mel]
        positions = transformed.unfold(2, km, 1)  # view [points, runs, m_out, km]
        for r0 in range(0, runs, step):
            tiles = min(step, runs - r0)
            rows = _scratch("rows", (points, tiles, m_out, km))
            rows.copy_(positions[:, r0 : r0 + tiles])  # this tile's im2col
            products = torch.bmm(rows.view(points, tiles * m_out, km), kernels,
                                 out=_scratch("products", (points, tiles * m_out, channels)))
            frames_out = torch.mm(a_t, products.view(points, -1), out=_scratch("combined", (m, products[0].numel())))
            maxed = frames_out.view(m, tiles, m_out, channels).amax(dim=2)
            f0 = r0 * m
            f1 = min(t_out, f0 + m * tiles)
            out[i, f0:f1] = maxed.transpose(0, 1).reshape(m * tiles, channels)[: f1 - f0]
    return out.transpose(1, 2)


def _max_over_mel_of_time_kernel_winograd(x: torch.Tensor, weight: torch.Tensor, kt: int) -> torch.Tensor:
    """The float32 ``kt × 1`` kernel (``kt`` a multiple of 4) as a sum of F(4, 4) over its ``kt / 4`` chunks of
    4 frames. Chunk ``c`` of the output run ``p`` reads the input run ``p + c``, so every run of 7 input frames is
    transformed once (``B^T``), and each of the 7 products is one GEMM summing over the chunks: ``[C, kt / 4]`` by
    ``[kt / 4, runs × mel]``, whose rows are the transformed runs ``c, c + 1, …`` side by side. ``A^T`` then gives
    4 output frames per run, reduced over mel (contiguous) while in cache. 7 products where the convolution has
    16 (one thread, 32 segments: 128 frames 0.14-0.18 -> 0.10-0.11 s, 64 frames 0.08-0.09 -> 0.06-0.08 s;
    within 1e-6 of float64, as the plain GEMMs)."""
    n, _, t_in, n_mel = x.shape
    channels = weight.shape[0]
    m = r = TEMPORAL_WINOGRAD_FRAMES
    points, chunks = m + r - 1, kt // r
    t_out = t_in - kt + 1
    runs = -(-t_out // m)
    windows = runs + chunks - 1  # input runs read
    a_t, _, _ = winograd_matrices(m, r)
    kernels = transformed_kernels(weight[:, 0, :, 0].reshape(channels, chunks, r), m).permute(0, 2, 1).contiguous()
    padding = (windows - 1) * m + points - t_in
    out = torch.empty(n, channels, t_out, dtype=torch.float32)
    for i in range(n):
        transformed = input_transform(F.pad(x[i, 0], (0, 0, 0, padding)), m, r).contiguous()  # [points, windows, mel]
        for p0 in range(0, runs, TEMPORAL_WINOGRAD_TILES):
            tiles = min(TEMPORAL_WINOGRAD_TILES, runs - p0)
            width = tiles * n_mel
            # row c of GEMM j: the transformed runs p0 + c ... p0 + c + tiles - 1 (overlapping views, one copy)
            rows = _scratch("rows", (points, chunks, width))
            rows.copy_(transformed.as_strided((points, chunks, width), (windows * n_mel, n_mel, 1),
                                              transformed.storage_offset() + p0 * n_mel))
            products = torch.bmm(kernels, rows, out=_scratch("products", (points, channels, width)))
            frames_out = torch.mm(a_t, products.view(points, -1), out=_scratch("combined", (m, channels * width)))
            maxed = frames_out.view(m, channels, tiles, n_mel).amax(dim=3)
            f0 = p0 * m
            f1 = min(t_out, f0 + m * tiles)
            out[i, :, f0:f1] = maxed.permute(1, 2, 0).reshape(channels, m * tiles)[:, : f1 - f0]
    return out


def _max_over_mel_of_tiles(x: torch.Tensor, kernel: torch.Tensor, kt: int, km: int) -> torch.Tensor:
    """A ``kt × km`` kernel by im2col GEMMs whose rows are (mel position, frame) and whose products are
    ``[positions, frames, C]``, reduced over mel across whole ``[frames, C]`` planes.

    Each segment is unfolded over mel once, mel position first: ``U[m, t, b] = x[t, m + b]``. The im2col row of
    output ``(m, t)`` is then the ``kt · km`` consecutive values of ``U`` from ``[m, t, 0]`` (the window's ``kt``
    frames of ``km`` bins, one after another), so a tile's im2col copies runs of ``kt · km`` contiguous values; the
    layout of rows (frame, mel position) copied runs of ``km``, and that copy took 70 % as long as the bfloat16
    GEMM of the 7 x 38 branch on an AMX CPU. In bfloat16, K is padded to a multiple of :data:`BF16_K_MULTIPLE` by
    zero kernel rows (K = 288 ran faster than K = 266): a padded row reads the finite values that follow it in
    ``U``, times zero."""
    n, _, t_in, n_mel = x.shape
    channels = kernel.shape[0]
    t_out, m_out = t_in - kt + 1, n_mel - km + 1
    taps = kt * km
    width = -(-taps // BF16_K_MULTIPLE) * BF16_K_MULTIPLE if x.dtype == torch.bfloat16 else taps
    weights = kernel.new_zeros(width, channels)
    weights[:taps] = kernel.t()
    plane = t_in * km  # values of U per mel position
    unfolded = _scratch("tiles.unfolded", (m_out * plane + width - taps,), x.dtype)
    unfolded[m_out * plane :].zero_()  # what the last rows' padding reads
    out = torch.empty(n, t_out, channels, dtype=torch.float32)
    step = _tile_frames(x)
    for i in range(n):
        unfolded[: m_out * plane].view(m_out, t_in, km).copy_(x[i, 0].unfold(1, km, 1).permute(1, 0, 2))
        for t0 in range(0, t_out, step):
            frames = min(step, t_out - t0)
            rows = unfolded[t0 * km :].as_strided((m_out, frames, width), (plane, km, 1))  # overlapping rows
            tile = _scratch("tiles.im2col", (m_out, frames, width), x.dtype)
            tile.copy_(rows)
            product = torch.mm(tile.view(-1, width), weights,
                               out=_scratch("tiles.products", (m_out * frames, channels), x.dtype))
            out[i, t0 : t0 + frames] = _max_over(product.view(m_out, frames, channels), dim=0)
    return out.transpose(1, 2)


def _max_over(values: torch.Tensor, dim: int) -> torch.Tensor:
    """``values.amax(dim)``; for bfloat16, the same values from the bits read as ``int16``, which torch reduces
    3-4 times faster than bfloat16 (a tile of the 7 x 38 branch: 45 against 156 us on one thread).

    A non-negative bfloat16 orders like its bits, and every negative one (sign bit set) reads as a negative
    integer, so the integer max is the float max wherever a group holds a value >= +0. Where every value of a
    group is negative, the integer max picks the one of largest magnitude instead; the float max is then the
    integer min (the smallest magnitude; -0.0 reads as the smallest integer of all).
    """
    if values.dtype != torch.bfloat16:
        return values.amax(dim=dim)
    bits = values.view(torch.int16)
    top = bits.amax(dim=dim)
    negative = top < 0
    if bool(negative.any()):
        top = torch.where(negative, bits.amin(dim=dim), top)
    return top.view(torch.bfloat16)


def _max_over_mel_of_time_kernel(x: torch.Tensor, kernel: torch.Tensor, kt: int) -> torch.Tensor:
    """A float32 ``kt × 1`` kernel (musicnn's temporal branches; bfloat16 ones take
    :func:`_max_over_mel_of_tiles`): the tile's im2col is ``kt`` rows of consecutive whole
    frames (``[kt, frames × mel]``, copied a frame at a time), the product ``[C, frames × mel]``, and its max over
    mel is a reduction over contiguous memory: in float32 on an AVX2 CPU, twice as fast for these 51 filters as
    the (frame, mel position) rows :func:`_max_over_mel_of_tiles` had then."""
    n, _, t_in, n_mel = x.shape
    channels = kernel.shape[0]
    t_out = t_in - kt + 1
    out = torch.empty(n, channels, t_out, dtype=torch.float32)
    step = CPU_TIME_TILE_FRAMES
    for i in range(n):
        rows = x[i, 0].unfold(0, kt, 1).permute(2, 0, 1)  # view [kt, t_out, mel]
        for t0 in range(0, t_out, step):
            tile = rows[:, t0 : t0 + step]
            frames = tile.shape[1]
            product = torch.mm(kernel, tile.reshape(kt, frames * n_mel),
                               out=_scratch("products", (channels, frames * n_mel), x.dtype))  # [C, frames x mel]
            out[i, :, t0 : t0 + frames] = product.view(channels, frames, n_mel).amax(dim=2)
    return out


def conv_max_over_mel_after_bn(conv: nn.Conv2d, x: torch.Tensor, bn: FrozenBatchNorm) -> torch.Tensor:
    """``max over mel of bn(relu(conv(x)))`` for ``x[N, 1, time, mel]``, reducing before the elementwise ops.

    ReLU is monotone and BN is a per-channel affine map, increasing or (gamma < 0) decreasing, so the max
    over mel commutes with both once decreasing channels take the min instead (as ``-max(-y)``). The sign
    is folded into the convolution's weights, which negates its output exactly, so the large conv output
    is read once, by the max. Same values as the literal order (float rounding is monotone and symmetric).
    """
    sign = torch.where(bn.scale() < 0, -1.0, 1.0)  # constant-folded on export
    bias = conv.bias * sign if conv.bias is not None else None
    maxed = conv_max_over_mel(x, conv.weight * sign.reshape(-1, 1, 1, 1), bias)
    out: torch.Tensor = bn(F.relu(maxed * sign.reshape(1, -1, 1)))
    return out


class MusicnnNet(nn.Module):
    """``log-mel[N, 187, 96] -> (logits[N, n_labels], penultimate[N, 200])``."""

    def __init__(self, n_labels: int = 50) -> None:
        super().__init__()
        self.input_bn = FrozenBatchNorm(1)
        self.timbral = nn.ModuleList(nn.Conv2d(1, 204, kernel) for kernel in TIMBRAL_KERNELS)
        self.timbral_bn = nn.ModuleList(FrozenBatchNorm(204) for _ in TIMBRAL_KERNELS)
        self.temporal = nn.ModuleList(nn.Conv2d(1, 51, (k, 1)) for k in TEMPORAL_KERNELS)
        self.temporal_bn = nn.ModuleList(FrozenBatchNorm(51) for _ in TEMPORAL_KERNELS)
        front_channels = 204 * len(TIMBRAL_KERNELS) + 51 * len(TEMPORAL_KERNELS)  # 561
        self.mid = nn.ModuleList(nn.Conv1d(c, 64, 7, padding=3) for c in (front_channels, 64, 64))
        self.mid_bn = nn.ModuleList(FrozenBatchNorm(64) for _ in range(3))
        features = front_channels + 3 * 64  # 753
        self.pool_bn = FrozenBatchNorm(2 * features)
        self.dense = nn.Linear(2 * features, EMBEDDING_SIZE)
        self.dense_bn = FrozenBatchNorm(EMBEDDING_SIZE)
        self.output = nn.Linear(EMBEDDING_SIZE, n_labels)

    def front_end(self, mel: torch.Tensor) -> torch.Tensor:
        """``[N, 561, time]``: each block's BN output maxed over the mel axis (after BN: gamma can be < 0)."""
        x = self.input_bn(mel.unsqueeze(1))  # zero padding below applies to the normalised input
        branches = []
        for conv, bn, (k, _) in zip(self.timbral, self.timbral_bn, TIMBRAL_KERNELS):
            branches.append(conv_max_over_mel_after_bn(cast(nn.Conv2d, conv), F.pad(x, (0, 0, k // 2, k // 2)),
                                                       cast(FrozenBatchNorm, bn)))
        for conv, bn, k in zip(self.temporal, self.temporal_bn, TEMPORAL_KERNELS):
            branches.append(conv_max_over_mel_after_bn(cast(nn.Conv2d, conv), F.pad(x, (0, 0, (k - 1) // 2, k // 2)),
                                                       cast(FrozenBatchNorm, bn)))
        return torch.cat(branches, dim=1)

    def mid_end(self, front: torch.Tensor) -> torch.Tensor:
        """``[N, 753, time]``: the front end and three 1-D convolutions over time, the last two residual."""
        outputs = [front]
        x = front
        for i, (conv, bn) in enumerate(zip(self.mid, self.mid_bn)):
            y = bn(F.relu(conv(x)))
            x = y + x if i else y
            outputs.append(x)
        return torch.cat(outputs, dim=1)

    def pooled(self, mel: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Max and mean over time of the mid-end features, ``[N, 753]`` each."""
        features = self.mid_end(self.front_end(mel))
        return features.amax(dim=2), features.mean(dim=2)

    def forward(self, mel: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        max_pool, mean_pool = self.pooled(mel)
        flat = torch.stack([max_pool, mean_pool], dim=2).flatten(1)  # interleaved: max_0, mean_0, max_1, ...
        penultimate = self.dense_bn(F.relu(self.dense(self.pool_bn(flat))))
        return self.output(penultimate), penultimate


def state_dict_from_tf(variables: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """Map the inference variables of a musicnn checkpoint onto :class:`MusicnnNet`'s state dict."""
    state = tf_batchnorm(variables, "batch_normalization", "input_bn")
    for i in range(len(TIMBRAL_KERNELS)):
        state |= tf_conv2d(variables, f"conv2d_{i}" if i else "conv2d", f"timbral.{i}")
        state |= tf_batchnorm(variables, f"batch_normalization_{1 + i}", f"timbral_bn.{i}")
    for i in range(len(TEMPORAL_KERNELS)):
        state |= tf_conv2d(variables, f"conv2d_{2 + i}", f"temporal.{i}")
        state |= tf_batchnorm(variables, f"batch_normalization_{3 + i}", f"temporal_bn.{i}")
    for i in range(3):
        # a [7, C, 1, 64] kernel spanning all channels is a Conv1d(C, 64, 7)
        kernel = variables[f"conv2d_{5 + i}/kernel"]
        state[f"mid.{i}.weight"] = torch.from_numpy(kernel[:, :, 0, :].transpose(2, 1, 0).copy())
        state[f"mid.{i}.bias"] = torch.from_numpy(variables[f"conv2d_{5 + i}/bias"])
        state |= tf_batchnorm(variables, f"batch_normalization_{6 + i}", f"mid_bn.{i}")
    state |= tf_batchnorm(variables, "batch_normalization_9", "pool_bn")
    state |= tf_dense(variables, "dense", "dense")
    state |= tf_batchnorm(variables, "batch_normalization_10", "dense_bn")
    state |= tf_dense(variables, "dense_1", "output")
    return state
