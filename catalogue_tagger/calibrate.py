"""Calibrated yes/no tags: an operating point per (model version, tag) from a labelled sample.

Given scores and true labels of a sample, :func:`choose_threshold` picks

- ``threshold``: the operating point — the score maximising F1 (``objective="f1"``, the default), or
  the lowest score whose precision reaches a target (``objective="precision>=0.90"``: most recall at
  that precision);
- ``upper``: from here up the sample's precision stays at or above :data:`BAND_PRECISION` (0.9) — a
  confident *yes*; never below ``threshold``;
- ``lower``: below it lie at most 1 − :data:`BAND_RECALL` (10 %) of the sample's positives — a
  confident *no*; never above ``threshold``.

The view ``track_labels`` says ``yes`` at or above ``upper``, ``no`` below ``lower``, ``ambiguous``
between. A tag whose sample separates perfectly gets no ambiguous band.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from catalogue_tagger.errors import InvalidQuery, TooFewLabels
from catalogue_tagger.labelsets import LabelSet

BAND_PRECISION = 0.9
BAND_RECALL = 0.9
MIN_PER_CLASS = 5  # positives and negatives a tag needs before anything is stored


@dataclass(frozen=True)
class Threshold:
    """The calibrated operating point of one tag (the ``tag_thresholds`` columns)."""

    tag: str
    threshold: float
    lower: float
    upper: float
    precision: float
    recall: float
    objective: str
    n_positive: int
    n_negative: int

    def as_row(self) -> dict[str, Any]:
        return asdict(self)


def roc_auc(y: npt.NDArray[Any], scores: npt.NDArray[Any]) -> float:
    """Area under the ROC curve (ties count half); NaN without both classes."""
    from sklearn.metrics import roc_auc_score

    if len(set(np.asarray(y).tolist())) < 2:
        return float("nan")
    return float(roc_auc_score(y, scores))


def pr_auc(y: npt.NDArray[Any], scores: npt.NDArray[Any]) -> float:
    """Average precision (the step-wise area under the precision-recall curve); NaN without positives."""
    from sklearn.metrics import average_precision_score

    if not np.any(np.asarray(y) == 1):
        return float("nan")
    return float(average_precision_score(y, scores))


def parse_objective(objective: str) -> float | None:
    """``f1`` → None; ``precision>=P`` → P."""
    if objective == "f1":
        return None
    prefix = "precision>="
    if objective.startswith(prefix):
        try:
            target = float(objective[len(prefix):])
        except ValueError:
            target = -1.0
        if 0 < target <= 1:
            return target
    raise InvalidQuery(f"objective {objective!r}: use f1 or precision>=P with 0 < P <= 1")


def choose_threshold(tag: str, y: npt.NDArray[Any], scores: npt.NDArray[Any], objective: str = "f1") -> Threshold:
    """The operating point and ambiguous band of one tag, from true labels ``y`` (1/0) and ``scores``."""
    y = np.asarray(y).astype(bool)
    s = np.asarray(scores, dtype=np.float64)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos < 1 or n_neg < 1:
        raise TooFewLabels(f"{tag}: need positives and negatives, got {n_pos} and {n_neg}")
    target = parse_objective(objective)
    order = np.argsort(-s, kind="stable")
    s_sorted, y_sorted = s[order], y[order]
    # one candidate per distinct score: predict yes for s >= candidate
    last_of_run = np.r_[s_sorted[1:] != s_sorted[:-1], True]
    tp = np.cumsum(y_sorted)[last_of_run].astype(np.float64)
    fp = np.cumsum(~y_sorted)[last_of_run].astype(np.float64)
    cuts = s_sorted[last_of_run]
    precision = tp / (tp + fp)
    recall = tp / n_pos
    f1 = np.where(tp > 0, 2 * precision * recall / np.maximum(precision + recall, 1e-12), 0.0)
    if target is None:
        best = int(np.argmax(f1))  # first maximum: the highest such cut
    else:
        reaching = np.flatnonzero(precision >= target)
        best = int(reaching[-1]) if reaching.size else int(np.argmax(precision))
    threshold = float(cuts[best])
    # upper: lowest cut from which precision stays >= BAND_PRECISION for every higher cut
    stays = np.minimum.accumulate(precision) >= BAND_PRECISION
    upper = float(cuts[np.flatnonzero(stays)[-1]]) if stays.any() else float(cuts[0])
    # lower: highest cut that still keeps BAND_RECALL of the positives at or above it
    keeps = np.flatnonzero(recall >= BAND_RECALL)
    lower = float(cuts[keeps[0]])
    return Threshold(
        tag=tag,
        threshold=threshold,
        lower=min(lower, threshold),
        upper=max(upper, threshold),
        precision=float(precision[best]),
        recall=float(recall[best]),
        objective=objective,
        n_positive=n_pos,
        n_negative=n_neg,
    )


@dataclass(frozen=True)
class Calibration:
    thresholds: tuple[Threshold, ...]
    skipped: dict[str, str]  # tag -> why


def calibrate_scores(
    labels: LabelSet,
    scores: dict[tuple[str, str], float],
    tags: Sequence[str],
    objective: str = "f1",
    min_per_class: int = MIN_PER_CLASS,
) -> Calibration:
    """Thresholds for every tag of ``labels`` the model has (``tags``), from stored ``{(uri, tag): score}``."""
    chosen: list[Threshold] = []
    skipped: dict[str, str] = {}
    uris = labels.uris
    for tag in labels.labels:
        if tag not in tags:
            skipped[tag] = "not a label of this model"
            continue
        y = labels.targets(tag, uris)
        keep = np.array([y[i] >= 0 and (uri, tag) in scores for i, uri in enumerate(uris)], dtype=bool)
        y_known = y[keep]
        n_pos, n_neg = int((y_known == 1).sum()), int((y_known == 0).sum())
        if n_pos < min_per_class or n_neg < min_per_class:
            skipped[tag] = f"too few labelled tracks: {n_pos} positive, {n_neg} negative (need {min_per_class} each)"
            continue
        s = np.array([scores[(uri, tag)] for i, uri in enumerate(uris) if keep[i]])
        chosen.append(choose_threshold(tag, y_known, s, objective))
    return Calibration(tuple(chosen), skipped)
