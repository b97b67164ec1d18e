"""The embedding check's figures on embeddings whose answer is known."""

from __future__ import annotations

import numpy as np
import pytest

from catalogue_tagger.training.embedding_check import (chance_precision, embedding_figures, logistic_accuracy,
                                                       precision_at_k)


def clusters(spread: float, seed: int = 0) -> tuple[np.ndarray, list[str]]:
    """Three packages of 12 tracks around three directions, with noise of ``spread``."""
    rng = np.random.default_rng(seed)
    centres = np.eye(3, 16) * 5 + 1  # positive like post-ReLU features, apart in direction
    x = np.concatenate([c + spread * rng.standard_normal((12, 16)) for c in centres])
    return x, [p for p in ("a", "b", "c") for _ in range(12)]


def test_separated_packages_score_one_and_noise_scores_chance() -> None:
    x, labels = clusters(0.1)
    assert precision_at_k(x, labels, 5) == 1.0 and logistic_accuracy(x, labels) == 1.0
    noise = np.random.default_rng(1).standard_normal((36, 16))
    assert abs(precision_at_k(noise, labels, 5) - chance_precision(labels)) < 0.15
    assert chance_precision(labels) == pytest.approx(11 / 35)


def test_the_track_is_never_its_own_neighbour() -> None:
    x = np.array([[1.0, 0.0], [1.0, 0.01], [0.0, 1.0], [0.01, 1.0]])
    assert precision_at_k(x, ["a", "a", "b", "b"], 1) == 1.0
    assert precision_at_k(x, ["a", "b", "a", "b"], 1) == 0.0


def test_figures_record() -> None:
    x, labels = clusters(3.0)
    figures = embedding_figures(x, labels)
    assert figures["n_tracks"] == 36 and figures["dims"] == 16 and figures["logistic_accuracy_majority"] == 1 / 3
    assert figures["precision_at_5_chance"] < figures["precision_at_5"] <= 1.0
