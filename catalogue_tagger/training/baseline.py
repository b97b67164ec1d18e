"""The random-weights baseline (Pons & Serra, 2019): the same SampleCNN, front-end frozen at its random
initialisation, with only a linear back-end trained on the teachers' soft targets.

The student's initial weights (same seed) are kept; batch-norm statistics are set from a pass over training
windows (random convolutions have no meaningful running statistics), then the 512-d pooled features of the
training windows are extracted once, standardised, and a 512 -> 50 logistic layer is fitted full-batch. It is
validated exactly like the student, on the same tracks and windows.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from catalogue_tagger.models.samplecnn import SampleCnnNet
from catalogue_tagger.training.data import Floats, TrackSet, crop, window_rows
from catalogue_tagger.training.evaluate import embed_rows, evaluate_scorer
from catalogue_tagger.training.train import WINDOW, new_student

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class BaselineConfig:
    seed: int = 0
    windows_per_track: int = 16  # training windows per track for the linear fit (0: all)
    calibration_windows: int = 256  # windows through the net in train mode to set batch-norm statistics
    steps: int = 2000  # full-batch optimizer steps of the linear layer
    lr: float = 1e-2
    weight_decay: float = 1e-4
    batch_size: int = 16
    val_windows_per_track: int = 16
    device: str = "cpu"


def _features(net: SampleCnnNet, data: TrackSet, rows: list[tuple[int, int]], config: BaselineConfig) -> Floats:
    return embed_rows(net, data, rows, WINDOW, batch_size=config.batch_size, device=config.device)


def calibrate_batchnorm(net: SampleCnnNet, data: TrackSet, rows: list[tuple[int, int]], config: BaselineConfig) -> None:
    """Running statistics of every batch-norm layer = their average over ``rows`` (weights untouched)."""
    for module in net.modules():
        if isinstance(module, nn.BatchNorm1d):
            module.reset_running_stats()
            module.momentum = None  # cumulative average
    net.train()
    with torch.no_grad():
        for b in range(0, len(rows), config.batch_size):
            x = np.stack([crop(data.waves[i], s, WINDOW) for i, s in rows[b : b + config.batch_size]])
            net.embed(torch.from_numpy(x).to(config.device))
    net.eval()


def fit_linear(features: Floats, targets: Floats, config: BaselineConfig) -> nn.Linear:
    """A logistic layer on (standardised) features, fitted full-batch with BCE on soft targets."""
    torch.manual_seed(config.seed)
    x, y = torch.from_numpy(features), torch.from_numpy(targets)
    linear = nn.Linear(x.shape[1], y.shape[1])
    optimizer = torch.optim.AdamW(linear.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    for _ in range(config.steps):
        loss = F.binary_cross_entropy_with_logits(linear(x), y)
        optimizer.zero_grad()
        loss.backward()  # type: ignore[no-untyped-call]
        optimizer.step()
    logger.info("baseline linear layer: final training loss %.5f", float(loss.detach()))
    return linear


def random_weights_baseline(train_data: TrackSet, val_data: TrackSet, config: BaselineConfig) -> dict[str, float]:
    """Validation metrics of the frozen random SampleCNN + trained linear back-end."""
    net = new_student(config.seed).net.to(config.device)
    rows = window_rows(train_data, WINDOW, config.windows_per_track)
    rng = np.random.default_rng(config.seed)
    calibration = [rows[i] for i in sorted(rng.permutation(len(rows))[: config.calibration_windows])]
    calibrate_batchnorm(net, train_data, calibration, config)
    features = _features(net, train_data, rows, config)
    mean, std = features.mean(axis=0), features.std(axis=0) + 1e-6
    targets = np.stack([train_data.targets[i].window(s, WINDOW) for i, s in rows])
    linear = fit_linear((features - mean) / std, targets, config)

    @torch.inference_mode()
    def score(waves: Floats) -> Floats:
        feats = net.embed(torch.from_numpy(waves).to(config.device)).float().cpu().numpy()
        return torch.sigmoid(linear(torch.from_numpy((feats - mean) / std))).numpy()

    metrics = evaluate_scorer(score, val_data, WINDOW, max_windows=config.val_windows_per_track,
                              batch_size=config.batch_size)
    return {**metrics, "train_windows": len(rows)}
