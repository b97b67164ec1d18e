"""Validation of a student against its teachers, on tracks it never trained on.

- **macro ROC-AUC**: a tag is positive for a track when it is among the top 3 of the teacher ensemble's
  track mean; the student's track-mean score ranks the tracks, one AUC per tag that has both positive and
  negative tracks, averaged.
- **median Spearman**: per track, the rank correlation of the student's and the teachers' 50 track means.
- **loss**: BCE of the student's window sigmoids against the windows' soft targets.
- with a log-odds scale: **logit_loss**, the mean squared error of the student's window log-odds against the
  teachers' (clipped, :func:`~catalogue_tagger.training.data.logit_targets`), divided by that scale.
- with an embedding teacher: **embedding_loss**, the mean squared error of the student's window embeddings
  against the teacher's (divided by the given scale, the teacher's mean per-dimension variance), and
  **median_embedding_cosine**, per track the cosine of the student's and the teacher's track-mean embeddings.

A track mean is the mean over the track's non-overlapping windows, as ``predict`` computes it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import torch
from scipy.stats import rankdata, spearmanr

from catalogue_tagger.models.samplecnn import SampleCnnNet
from catalogue_tagger.training.data import Floats, TrackSet, crop, log_odds, logit_targets, window_rows

TOP_K = 3
#: acceptance thresholds on validation tracks, against the teacher ensemble (0.85 and 0.7 until the version with
#: embedding distillation)
MIN_MACRO_ROC_AUC = 0.93
MIN_MEDIAN_SPEARMAN = 0.93

# waves[B, window] -> probs[B, n_labels], or (probs, embedding[B, E]) from a scorer that also embeds
WindowScorer = Callable[[Floats], "Floats | tuple[Floats, Floats]"]


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


def tag_metrics(student_means: npt.NDArray[np.floating], teacher_means: Floats, k: int = TOP_K) -> dict[str, float]:
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


def cosine(a: npt.NDArray[np.floating], b: npt.NDArray[np.floating]) -> npt.NDArray[np.float64]:
    """Row-wise cosine similarity of ``a`` and ``b`` (``(n, d)`` each)."""
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    norms = np.linalg.norm(a64, axis=1) * np.linalg.norm(b64, axis=1)
    result: npt.NDArray[np.float64] = (a64 * b64).sum(axis=1) / np.maximum(norms, 1e-12)
    return result


def _track_means(values: npt.NDArray[np.floating], track_of: npt.NDArray[np.int64], n: int) -> npt.NDArray[np.float64]:
    # float64: the mean of equal float32 scores is then exactly that score (ties stay ties)
    return np.stack([values[track_of == i].astype(np.float64).mean(axis=0) for i in range(n)])


@dataclass(frozen=True)
class WindowScores:
    """A scorer's outputs on the windows of a track set: ``rows`` (track index, start), probs ``(n, labels)``,
    embeddings ``(n, E)`` when the scorer embeds."""

    rows: tuple[tuple[int, int], ...]
    probs: Floats
    embeddings: Floats | None

    @property
    def track_of(self) -> npt.NDArray[np.int64]:
        return np.array([i for i, _ in self.rows], dtype=np.int64)


def score_windows(score: WindowScorer, data: TrackSet, window: int, *, max_windows: int = 0,
                  batch_size: int = 16) -> WindowScores:
    """``score`` on each track's non-overlapping windows (``max_windows`` > 0: a spread subset)."""
    rows = tuple(window_rows(data, window, max_windows))
    outputs = [score(np.stack([crop(data.waves[i], s, window) for i, s in rows[b : b + batch_size]]))
               for b in range(0, len(rows), batch_size)]
    probs = np.concatenate([o[0] if isinstance(o, tuple) else o for o in outputs])
    embeds = [o[1] for o in outputs if isinstance(o, tuple)]
    return WindowScores(rows, probs, np.concatenate(embeds) if len(embeds) == len(outputs) else None)


def scores_metrics(scores: WindowScores, data: TrackSet, window: int, embedding_scale: float | None = None,
                   logit_scale: float | None = None) -> dict[str, float]:
    """Metrics of window scores against the targets of ``data`` (the track set they were computed on, or the
    same tracks with other teachers)."""
    targets = np.stack([data.targets[i].window(s, window) for i, s in scores.rows])
    track_of = scores.track_of
    student = _track_means(scores.probs, track_of, len(data))
    teacher = np.stack([t.track_mean for t in data.targets])
    metrics = {"loss": bce(scores.probs, targets), "n_windows": len(scores.rows), **tag_metrics(student, teacher)}
    if logit_scale is not None:
        # the student's log-odds back from its float32 sigmoids, clipped only where float32 saturates
        error = (log_odds(scores.probs, 1e-7) - logit_targets(targets)) ** 2
        metrics["logit_loss"] = float(np.mean(error) / logit_scale)
    if embedding_scale is not None and data.has_embeddings and scores.embeddings is not None:
        wanted = np.stack([data.targets[i].embedding_window(s, window) for i, s in scores.rows])
        if scores.embeddings.shape == wanted.shape:
            error = (scores.embeddings.astype(np.float64) - wanted) ** 2
            metrics["embedding_loss"] = float(np.mean(error) / embedding_scale)
            teacher_embedding = np.stack([t.embedding.mean for t in data.targets if t.embedding is not None])
            cosines = cosine(_track_means(scores.embeddings, track_of, len(data)), teacher_embedding)
            metrics["median_embedding_cosine"] = float(np.median(cosines))
    return metrics


def evaluate_scorer(score: WindowScorer, data: TrackSet, window: int, *, max_windows: int = 0,
                    batch_size: int = 16, embedding_scale: float | None = None,
                    logit_scale: float | None = None) -> dict[str, float]:
    """Metrics of ``score`` on ``data`` (window sigmoids over each track's windows, ``max_windows`` > 0: a spread
    subset); the embedding metrics too when ``embedding_scale`` is given, the scorer embeds and the data has the
    teacher's embeddings; the log-odds loss when ``logit_scale`` is given."""
    scores = score_windows(score, data, window, max_windows=max_windows, batch_size=batch_size)
    return scores_metrics(scores, data, window, embedding_scale, logit_scale)


def prior_scorer(train_data: TrackSet) -> WindowScorer:
    """The tag prior: every window scored with the training tracks' mean teacher output (no audio used).

    It ranks no track above another (macro ROC-AUC 0.5), but the tags' overall order is shared by most tracks,
    so it shows how much of the per-track Spearman is the prior alone.
    """
    prior = np.mean([t.track_mean for t in train_data.targets], axis=0).astype(np.float32)

    def score(waves: Floats) -> Floats:
        return np.tile(prior, (len(waves), 1))

    return score


@torch.inference_mode()
def embed_rows(net: SampleCnnNet, data: TrackSet, rows: Sequence[tuple[int, int]], window: int, *,
               batch_size: int = 32, device: str = "cpu") -> Floats:
    """``(len(rows), features)``: SampleCNN's pooled feature (``net.embed``, in the mode the caller set) of the
    windows ``rows`` (track index, start) of ``data``."""
    out = []
    for b in range(0, len(rows), batch_size):
        x = np.stack([crop(data.waves[i], s, window) for i, s in rows[b : b + batch_size]])
        out.append(net.embed(torch.from_numpy(x).to(device)).float().cpu().numpy())
    features: Floats = np.concatenate(out)
    return features


def torch_scorer(model: torch.nn.Module, device: str = "cpu") -> WindowScorer:
    """Window sigmoids (and embeddings, when it has them) of a
    :class:`~catalogue_tagger.models.base.Tagger` (in eval mode)."""

    @torch.inference_mode()
    def score(waves: Floats) -> Floats | tuple[Floats, Floats]:
        outputs = model(torch.from_numpy(waves).to(device))
        probs: Floats = outputs[0].float().cpu().numpy()
        return (probs, outputs[2].float().cpu().numpy()) if len(outputs) > 2 else probs

    return score


def evaluate_model(model: torch.nn.Module, data: TrackSet, window: int, device: str = "cpu", *,
                   max_windows: int = 0, batch_size: int = 16, embedding_scale: float | None = None,
                   logit_scale: float | None = None) -> dict[str, float]:
    was_training = model.training
    model.eval()
    try:
        return evaluate_scorer(torch_scorer(model, device), data, window, max_windows=max_windows,
                               batch_size=batch_size, embedding_scale=embedding_scale, logit_scale=logit_scale)
    finally:
        model.train(was_training)
