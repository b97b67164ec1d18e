"""Heads: a catalogue's own tags, learnt from its labels on the embeddings already stored.

One L2-regularised logistic regression per label (scikit-learn, balanced class weights, standardised
features, the regularisation strength chosen by an inner cross-validation), evaluated by an outer
stratified k-fold: the ROC-AUC and PR-AUC reported are on tracks each fold never saw. Those out-of-fold
scores also calibrate the head's yes/no thresholds (:mod:`catalogue_tagger.calibrate`). The final
model is refit on every labelled track; the standardisation is folded into its weights, so scoring is
``sigmoid(bias + weights · embedding)`` over ``track_embeddings`` read by binary COPY — no decode.

A label with fewer than ``min_per_class`` positives or negatives is refused with the reason, and a
head none of whose labels qualify is not stored at all (:class:`TooFewLabels`).
"""

from __future__ import annotations

import hashlib
import logging
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from catalogue_tagger.calibrate import MIN_PER_CLASS, Threshold, choose_threshold, pr_auc, roc_auc
from catalogue_tagger.errors import TooFewLabels
from catalogue_tagger.labelsets import LabelSet
from catalogue_tagger.store import intelligence as db
from catalogue_tagger.store.store import Store

logger = logging.getLogger(__name__)

L2_GRID = (0.001, 0.01, 0.1, 1.0, 10.0)  # inverse regularisation strengths (scikit-learn's C) tried
OUTER_FOLDS = 5
INNER_FOLDS = 3


@dataclass(frozen=True)
class LabelFit:
    """One label's regression on raw embeddings, and how it did on held-out tracks."""

    tag: str
    weights: npt.NDArray[np.float32]  # (embedding_dim,), standardisation folded in
    bias: float
    c: float  # chosen inverse L2 strength
    n_positive: int
    n_negative: int
    cv_roc_auc: float
    cv_pr_auc: float
    threshold: Threshold  # from the out-of-fold scores


@dataclass(frozen=True)
class HeadFit:
    fits: tuple[LabelFit, ...]
    skipped: dict[str, str]  # label -> why it was refused


@dataclass(frozen=True)
class HeadReport:
    name: str
    model_id: int
    weights_sha256: str
    source_model: str
    n_tracks: int  # labelled tracks with a stored embedding
    missing: tuple[str, ...]  # labelled uris without one
    fit: HeadFit
    scored_tracks: int
    score_s: float


def _fit_one(x: npt.NDArray[np.float32], y: npt.NDArray[np.int8], seed: int) -> tuple[npt.NDArray[np.float64], float, float]:
    """Fit on ``x (n, d)`` / ``y (n,)``; weights and bias on the raw features, and the chosen C."""
    from sklearn.linear_model import LogisticRegression, LogisticRegressionCV
    from sklearn.model_selection import StratifiedKFold

    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    scale[scale < 1e-8] = 1.0
    z = (x - mean) / scale
    n_min = int(min((y == 1).sum(), (y == 0).sum()))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # convergence chatter on tiny folds
        if n_min >= 2:
            inner = StratifiedKFold(n_splits=min(INNER_FOLDS, n_min), shuffle=True, random_state=seed)
            model = LogisticRegressionCV(
                Cs=list(L2_GRID), cv=inner, scoring="roc_auc", class_weight="balanced", max_iter=2000
            ).fit(z, y)
            c = float(model.C_[0])
        else:
            c = 1.0
            model = LogisticRegression(C=c, class_weight="balanced", max_iter=2000).fit(z, y)
    w = model.coef_[0] / scale
    b = float(model.intercept_[0] - np.dot(model.coef_[0], mean / scale))
    return w, b, c


def _sigmoid(z: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    return 1.0 / (1.0 + np.exp(-np.clip(z, -50, 50)))


def fit_head(
    x: npt.NDArray[np.float32],
    labels: LabelSet,
    uris: Sequence[str],
    *,
    min_per_class: int = MIN_PER_CLASS,
    objective: str = "f1",
    seed: int = 0,
) -> HeadFit:
    """Train one regression per label of ``labels`` on ``x`` (rows: ``uris``), cross-validated."""
    from sklearn.model_selection import StratifiedKFold

    fits: list[LabelFit] = []
    skipped: dict[str, str] = {}
    for tag in labels.labels:
        y_all = labels.targets(tag, uris)
        keep = y_all >= 0
        xs, y = x[keep], y_all[keep]
        n_pos, n_neg = int((y == 1).sum()), int((y == 0).sum())
        if n_pos < min_per_class or n_neg < min_per_class:
            skipped[tag] = f"too few labelled tracks: {n_pos} positive, {n_neg} negative (need {min_per_class} each)"
            continue
        outer = StratifiedKFold(n_splits=min(OUTER_FOLDS, n_pos, n_neg), shuffle=True, random_state=seed)
        held_out = np.zeros(len(y), dtype=np.float64)
        for train, test in outer.split(xs, y):
            w, b, _ = _fit_one(xs[train], y[train], seed)
            held_out[test] = _sigmoid(xs[test].astype(np.float64) @ w + b)
        w, b, c = _fit_one(xs, y, seed)
        fits.append(
            LabelFit(
                tag=tag,
                weights=w.astype(np.float32),
                bias=b,
                c=c,
                n_positive=n_pos,
                n_negative=n_neg,
                cv_roc_auc=roc_auc(y, held_out),
                cv_pr_auc=pr_auc(y, held_out),
                threshold=choose_threshold(tag, y, held_out, objective),
            )
        )
    return HeadFit(tuple(fits), skipped)


def head_sha256(source_sha256: str, fits: Sequence[LabelFit]) -> str:
    """The head's version: a hash of its source model version, labels and float32 weights."""
    digest = hashlib.sha256(source_sha256.encode())
    for f in fits:
        digest.update(f.tag.encode() + b"\0")
        digest.update(np.ascontiguousarray(f.weights, dtype="<f4").tobytes())
        digest.update(np.float32(f.bias).astype("<f4").tobytes())
    return digest.hexdigest()


def train_head(
    store: Store,
    labels: LabelSet,
    name: str,
    from_model: str = "musicnn-mtt",
    *,
    min_per_class: int = MIN_PER_CLASS,
    objective: str = "f1",
    seed: int = 0,
) -> HeadReport:
    """Fit a head on the stored embeddings of ``from_model``, store it as a model version, score every track."""
    source = db.current_model(store, from_model)
    if source.embedding_dim is None:
        raise TooFewLabels(f"model {from_model!r} stores no embeddings to learn from")
    embeddings = db.embeddings_for_uris(store, source.model_id, labels.uris)
    uris = [u for u in labels.uris if u in embeddings]
    missing = tuple(u for u in labels.uris if u not in embeddings)
    if not uris:
        raise TooFewLabels(f"none of the {len(labels.uris)} labelled tracks has a stored {from_model} embedding")
    x = np.stack([embeddings[u] for u in uris])
    fit = fit_head(x, labels, uris, min_per_class=min_per_class, objective=objective, seed=seed)
    if not fit.fits:
        reasons = "; ".join(f"{tag}: {why}" for tag, why in fit.skipped.items())
        raise TooFewLabels(f"head {name!r} not stored: no label has enough tracks ({reasons})")
    sha = head_sha256(source.weights_sha256, fit.fits)
    rows = [
        db.HeadLabelRow(f.tag, f.weights, f.bias, 1.0 / f.c, f.n_positive, f.n_negative, f.cv_roc_auc, f.cv_pr_auc)
        for f in fit.fits
    ]
    model_id = db.save_head(store, name, sha, source, labels.source, rows)
    db.save_thresholds(store, model_id, [f.threshold.as_row() for f in fit.fits], source="cross-validation")
    started = time.perf_counter()
    _, tracks = db.score_heads(store, head_id=model_id)
    score_s = time.perf_counter() - started
    logger.info("head %s (model_id %d): %d labels, scored %d tracks in %.2f s", name, model_id, len(rows), tracks, score_s)
    return HeadReport(name, model_id, sha, from_model, len(uris), missing, fit, tracks, score_s)


def score_after_run(store: Store, run_id: int) -> int:
    """Score what a tagging run tagged with every current head (from the stored embeddings); tracks scored."""
    _, tracks = db.score_heads(store, head_id=None, run_id=run_id)
    if tracks:
        logger.info("run %d: heads scored %d track(s) from stored embeddings", run_id, tracks)
    return tracks
