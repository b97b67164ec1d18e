"""Winograd's minimal filtering along one axis: F(m, r) computes ``m`` outputs of an ``r``-tap correlation from
``m + r - 1`` products instead of ``m r`` (Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks",
2016). The CPU inference paths of musicnn's timbral branches (F(6, 7) along time) and of SampleCNN's 3-tap
convolutions (F(4, 3)) multiply by it; exports and CUDA keep the plain convolutions.

    a_t, g, b_t = winograd_matrices(4, 3)
    y = a_t @ ((g @ kernel) * (b_t @ frames))      # frames[m + r - 1] -> y[m], y[i] = sum_k kernel[k] frames[i + k]
"""

from __future__ import annotations

import functools
from fractions import Fraction

import numpy as np
import torch

#: The finite interpolation points, in the order they are used (F(m, r) takes the first ``m + r - 2`` and
#: infinity). They are the usual small ones; ±3/2 rather than ±3 halves the float32 error of F(4, 7) (random
#: inputs, a 7 x 38 kernel, |y| ~ 10: 4e-5 against 9e-5; direct float32 6e-6). F(6, 7) adds ±3/4 (8e-5): ±2/3
#: did a little better (7e-5) but is not a binary fraction, so its matrices would be rounded in float32; ±1/4
#: gave 1.8e-4, ±3 or ±4/3 4e-4. Every point is a binary fraction: A^T and B^T are exact in float32.
POINTS = (Fraction(0), Fraction(1), Fraction(-1), Fraction(2), Fraction(-2), Fraction(1, 2), Fraction(-1, 2),
          Fraction(3, 2), Fraction(-3, 2), Fraction(3, 4), Fraction(-3, 4))


@functools.lru_cache(maxsize=8)
def winograd_matrices(m: int, r: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(A^T[m, n], G[n, r], B^T[n, n])``, ``n = m + r - 1``, of F(m, r) for correlation at the first ``n - 1``
    :data:`POINTS` and infinity: for frames ``d[n]`` and a kernel ``g[r]``, ``A^T ((G g) * (B^T d))[i] =
    sum_k g[k] d[i + k]`` for ``i < m``.

    Built exactly in rationals: ``A^T[i, j] = a_j^i``, ``G[j, k] = a_j^k / prod_(l != j) (a_j - a_l)``, row ``j``
    of ``B^T`` the coefficients of ``prod_(l != j) (x - a_l)``; infinity adds the last row of ``G`` and of ``B^T``
    (the coefficients of ``prod_l (x - a_l)``) and the last column of ``A^T``. ``G`` is float64 (it transforms
    the weights, once), the others float32.
    """
    n = m + r - 1
    points = POINTS[: n - 1]
    if len(points) != n - 1:
        raise ValueError(f"F({m}, {r}) needs {n - 1} finite points; {len(POINTS)} are defined")
    a_t = np.zeros((m, n))
    g = np.zeros((n, r))
    b_t = np.zeros((n, n))
    for j, a in enumerate(points):
        others = [b for i, b in enumerate(points) if i != j]
        scale = Fraction(1)
        for b in others:
            scale *= a - b
        a_t[:, j] = [float(a**i) for i in range(m)]
        g[j] = [float(a**k / scale) for k in range(r)]
        b_t[j, : n - 1] = [float(c) for c in _polynomial(others)]
    a_t[m - 1, n - 1] = g[n - 1, r - 1] = 1.0
    b_t[n - 1] = [float(c) for c in _polynomial(list(points))]
    return torch.from_numpy(a_t).float(), torch.from_numpy(g), torch.from_numpy(b_t).float()


def _polynomial(roots: list[Fraction]) -> list[Fraction]:
    """The coefficients of ``prod (x - root)``, lowest degree first."""
    coefficients = [Fraction(1)]
    for root in roots:
        shifted = [Fraction(0), *coefficients]
        coefficients = [shifted[i] - root * (coefficients[i] if i < len(coefficients) else 0)
                        for i in range(len(shifted))]
    return coefficients


def transformed_kernels(weight: torch.Tensor, m: int) -> torch.Tensor:
    """``G`` applied to each tap sequence of ``weight[C_out, C_in, r]``: ``[m + r - 1, C_in, C_out]`` float32, the
    right-hand sides of F(m, r)'s ``m + r - 1`` GEMMs (computed in float64)."""
    _, g, _ = winograd_matrices(m, weight.shape[2])
    return torch.einsum("jt,oit->jio", g, weight.double()).float().contiguous()


def input_transform(frames: torch.Tensor, m: int, r: int) -> torch.Tensor:
    """``B^T`` over every run of ``m + r - 1`` consecutive rows of ``frames[rows, ...]`` (runs ``m`` rows apart;
    ``rows - r + 1`` a multiple of ``m``): ``[m + r - 1, runs, ...]``, as one GEMM of ``K = m + r - 1``."""
    _, _, b_t = winograd_matrices(m, r)
    n = m + r - 1
    windows = frames.unfold(0, n, m)  # [runs, ..., n] (a view)
    runs = windows.shape[0]
    stacked = windows.movedim(-1, 0).reshape(n, -1)  # [n, runs x ...] (one copy)
    return torch.mm(b_t, stacked).view(n, runs, *frames.shape[1:])
