"""Validation of a student against its teachers, on tracks it never trained on.

- **macro ROC-AUC**: a tag is positive for a track when it is among the top 3 of the teacher ensemble's
  track mean; the student's track-mean score ranks the tracks, one AUC per tag that has both positive and
  negative tracks, averaged.
- **median Spearman**: per track, the rank correlation of the student's and the teachers' 50 track means.
- **loss**: BCE of the student's window sigmoids against the windows' soft targets.

A track mean is the mean over the track's non-overlapping windows, as ``predict`` computes it.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import numpy.typing as npt
import torch
from scipy.stats import rankdata, spearmanr

from catalogue_tagger.training.data import Floats, TrackSet, crop, eval_starts

TOP_K = 3
#: acceptance thresholds on validation tracks
MIN_MACRO_ROC_AUC = 0.85
MIN_MEDIAN_SPEARMAN = 0.7

WindowScorer = Callable[[Floats], Floats]  # waves[B, window] -> probs[B, n_labels]


def roc_auc(scores: npt.NDArray[np.floating], positive: npt.NDArray[np.bool_]) -> float:
    """Area under the ROC curve (Mann-Whitney U with mid-ranks for ties)."""
    n_pos = int(positive.sum())
    n_neg = len(positive) - n_pos
    ranks = rankdata(scores)
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def top_k_labels(teacher_means: Floats, k: int = TOP_K) -> npt.NDArray[np.bool_]:
    """``(tracks, labels)``: True for each track's ``k`` highest teacher scores."""
    labels = np.zeros(teacher_means.shape, dtype=bool)
    top = np.argsort(-teacher_means, axis=1, kind="stable")[:, :k]
    np.put_along_axis(labels, top, True, axis=1)
    return labels


def tag_metrics(student_means: Floats, teacher_means: Floats, k: int = TOP_K) -> dict[str, float]:
    """Macro ROC-AUC against the teachers' top-``k`` labels and the per-track Spearman correlations."""
    labels = top_k_labels(teacher_means, k)
    scored = [j for j in range(labels.shape[1]) if 0 < labels[:, j].sum() < len(labels)]
    aucs = [roc_auc(student_means[:, j], labels[:, j]) for j in scored]
    rhos = [float(spearmanr(s, t).statistic) for s, t in zip(student_means, teacher_means)]
    rhos = [r for r in rhos if np.isfinite(r)]
    return {
        "macro_roc_auc": float(np.mean(aucs)) if aucs else float("nan"),
        "n_tags_scored": len(scored),
        "median_spearman": float(np.median(rhos)) if rhos else float("nan"),
        "mean_spearman": float(np.mean(rhos)) if rhos else float("nan"),
        "n_tracks": len(student_means),
    }


def passes(metrics: dict[str, float]) -> bool:
    return metrics["macro_roc_auc"] >= MIN_MACRO_ROC_AUC and metrics["median_spearman"] >= MIN_MEDIAN_SPEARMAN


def bce(probs: Floats, targets: Floats) -> float:
    p = np.clip(probs.astype(np.float64), 1e-7, 1 - 1e-7)
    return float(-np.mean(targets * np.log(p) + (1 - targets) * np.log1p(-p)))


def evaluate_scorer(score: WindowScorer, data: TrackSet, window: int, *, max_windows: int = 0,
                    batch_size: int = 16) -> dict[str, float]:
    """Metrics of ``score`` on ``data`` (window sigmoids over each track's windows, ``max_windows`` > 0: a spread
    subset)."""
    rows = [(i, int(s)) for i, w in enumerate(data.waves) for s in eval_starts(len(w), window, max_windows)]
    probs = np.concatenate([
        score(np.stack([crop(data.waves[i], s, window) for i, s in rows[b : b + batch_size]]))
        for b in range(0, len(rows), batch_size)
    ])
    targets = np.stack([data.targets[i].window(s, window) for i, s in rows])
    track_of = np.array([i for i, _ in rows])
    # float64: the mean of equal float32 scores is then exactly that score (ties stay ties)
    student = np.stack([probs[track_of == i].astype(np.float64).mean(axis=0) for i in range(len(data))])
    teacher = np.stack([t.track_mean for t in data.targets])
    return {"loss": bce(probs, targets), "n_windows": len(rows), **tag_metrics(student, teacher)}


def prior_scorer(train_data: TrackSet) -> WindowScorer:
    """The tag prior: every window scored with the training tracks' mean teacher output (no audio used).

    It ranks no track above another (macro ROC-AUC 0.5), but the tags' overall order is shared by most tracks,
    so it shows how much of the per-track Spearman is the prior alone.
    """
    prior = np.mean([t.track_mean for t in train_data.targets], axis=0).astype(np.float32)

    def score(waves: Floats) -> Floats:
        return np.tile(prior, (len(waves), 1))

    return score


def torch_scorer(model: torch.nn.Module, device: str = "cpu") -> WindowScorer:
    """Window sigmoids of a :class:`~catalogue_tagger.models.base.Tagger` (in eval mode)."""

    @torch.inference_mode()
    def score(waves: Floats) -> Floats:
        probs: Floats = model(torch.from_numpy(waves).to(device))[0].float().cpu().numpy()
        return probs

    return score


def evaluate_model(model: torch.nn.Module, data: TrackSet, window: int, device: str = "cpu", *,
                   max_windows: int = 0, batch_size: int = 16) -> dict[str, float]:
    was_training = model.training
    model.eval()
    try:
        return evaluate_scorer(torch_scorer(model, device), data, window, max_windows=max_windows,
                               batch_size=batch_size)
    finally:
        model.train(was_training)
