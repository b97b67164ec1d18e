"""Does an embedding group music the way its sources do? Two figures on tracks labelled by their source package.

- **precision@k by label**: for every track, the share of its ``k`` nearest other tracks (cosine of track-mean
  embeddings, as ``similar`` ranks them) that carry its label, averaged over tracks;
- **logistic-regression accuracy**: a multinomial logistic regression on the standardised track embeddings,
  accuracy of its predictions on held-out folds (stratified k-fold, seeded).

Both take a ``(tracks, dims)`` array, so the student's embedding and a teacher's are measured on the same tracks
the same way.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

Embeddings = npt.NDArray[np.floating]


def precision_at_k(embeddings: Embeddings, labels: Sequence[str], k: int = 5) -> float:
    """Mean over tracks of the share of their ``k`` cosine-nearest other tracks with the same label."""
    x = embeddings.astype(np.float64)
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    similarity = x @ x.T
    np.fill_diagonal(similarity, -np.inf)  # the track itself is never its own neighbour
    nearest = np.argsort(-similarity, axis=1, kind="stable")[:, :k]
    label_array = np.asarray(labels)
    return float((label_array[nearest] == label_array[:, None]).mean())


def chance_precision(labels: Sequence[str]) -> float:
    """What a random neighbour list scores: per track, (same-label tracks - 1) / (tracks - 1), averaged."""
    label_array = np.asarray(labels)
    counts = {label: int((label_array == label).sum()) for label in set(labels)}
    return float(np.mean([(counts[label] - 1) / (len(labels) - 1) for label in labels]))


def logistic_accuracy(embeddings: Embeddings, labels: Sequence[str], *, folds: int = 5, seed: int = 0) -> float:
    """Cross-validated accuracy of a logistic regression (standardised features, L2, C = 1) predicting ``labels``."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000))
    splits = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # convergence chatter on small folds
        scores = cross_val_score(model, embeddings.astype(np.float64), np.asarray(labels), cv=splits,
                                 scoring="accuracy")
    return float(np.mean(scores))


def embedding_figures(embeddings: Embeddings, labels: Sequence[str], *, k: int = 5, folds: int = 5,
                      seed: int = 0) -> dict[str, float]:
    """Precision@k, its chance level and the cross-validated logistic-regression accuracy, in one record."""
    majority = max(list(labels).count(label) for label in set(labels)) / len(labels)
    return {
        f"precision_at_{k}": precision_at_k(embeddings, labels, k),
        f"precision_at_{k}_chance": chance_precision(labels),
        "logistic_accuracy": logistic_accuracy(embeddings, labels, folds=folds, seed=seed),
        "logistic_accuracy_majority": majority,
        "n_tracks": len(labels),
        "dims": int(embeddings.shape[1]),
    }
