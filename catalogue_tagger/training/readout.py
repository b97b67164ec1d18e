"""Refit a student's tag layer on its frozen features: ridge least squares on the teachers' log-odds.

The features are the 512-d pooled features inference computes (eval mode, float32, the training tracks'
non-overlapping windows, up to ``windows_per_track`` evenly spread ones per track); the targets are the
teachers' clipped log-odds of the same windows (:func:`~catalogue_tagger.training.data.logit_targets`). Features
are standardised, the ridge (on the standardised weights, never on the intercept) is chosen by cross-validation
over folds of whole training tracks, and the solution is folded back into the network's own ``output`` layer, so
the result is an ordinary SampleCNN state dict: the trunk, the embedding and the projection are untouched.
With fewer training tracks than ``FOLDS``, there is one fold per track.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import torch

from catalogue_tagger.models import samplecnn
from catalogue_tagger.training.data import TrackSet, logit_targets, window_rows
from catalogue_tagger.training.evaluate import embed_rows

RIDGES = (1.0, 10.0, 100.0, 1000.0)
FOLDS = 5

Doubles = npt.NDArray[np.float64]


@dataclass(frozen=True)
class ReadoutFit:
    ridge: float  # the chosen one
    cv_errors: dict[str, float]  # ridge -> mean squared log-odds error on held-out tracks
    windows: int
    tracks: int


@torch.no_grad()
def window_features(model: samplecnn.WaveformTagger, data: TrackSet,
                    windows_per_track: int) -> tuple[Doubles, Doubles, npt.NDArray[np.int64]]:
    """``(features[n, 512], log-odds targets[n, labels], track index[n])`` of the spread windows of ``data``."""
    rows = window_rows(data, samplecnn.WINDOW, windows_per_track)
    was_training = model.training
    model.eval()
    try:
        features = embed_rows(model.net, data, rows, samplecnn.WINDOW).astype(np.float64)
    finally:
        model.train(was_training)
    targets = logit_targets(np.stack([data.targets[i].window(s, samplecnn.WINDOW) for i, s in rows]))
    return features, targets.astype(np.float64), np.array([i for i, _ in rows], dtype=np.int64)


def ridge_solve(z: Doubles, y: Doubles, ridge: float) -> Doubles:
    """``(d + 1, labels)``: least squares of ``y`` on ``[z, 1]`` with ``ridge`` on the ``d`` weights."""
    a = np.c_[z, np.ones(len(z))]
    penalty = ridge * np.eye(a.shape[1])
    penalty[-1, -1] = 0.0
    solution: Doubles = np.linalg.solve(a.T @ a + penalty, a.T @ y)
    return solution


@torch.no_grad()
def refit_readout(model: samplecnn.WaveformTagger, data: TrackSet, *, windows_per_track: int = 20,
                  ridges: tuple[float, ...] = RIDGES, folds: int = FOLDS) -> ReadoutFit:
    """Replace ``model.net.output`` by the ridge fit on ``data`` (the training tracks); returns what was chosen."""
    if len(data) < 2:
        raise ValueError(f"{len(data)} training tracks: cross-validation needs two or more")
    folds = min(folds, len(data))
    x, y, track = window_features(model, data, windows_per_track)
    mean, scale = x.mean(axis=0), x.std(axis=0)
    scale[scale == 0] = 1.0
    z = (x - mean) / scale
    fold = track % folds
    errors = {}
    for ridge in ridges:
        held_out = []
        for k in range(folds):
            coef = ridge_solve(z[fold != k], y[fold != k], ridge)
            held_out.append(np.mean((np.c_[z[fold == k], np.ones(int((fold == k).sum()))] @ coef - y[fold == k]) ** 2))
        errors[ridge] = float(np.mean(held_out))
    best = min(ridges, key=lambda r: errors[r])
    coef = ridge_solve(z, y, best)
    weight = coef[:-1] / scale[:, None]  # (512, labels) on the raw features
    bias = coef[-1] - mean @ weight
    model.net.output.weight.copy_(torch.from_numpy(weight.T).float())
    model.net.output.bias.copy_(torch.from_numpy(bias).float())
    return ReadoutFit(best, {str(r): e for r, e in errors.items()}, len(x), len(data))
