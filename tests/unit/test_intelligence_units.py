"""Pure parts of catalogue intelligence: filters, plain words, labels files, thresholds, the taggram figure."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from catalogue_tagger.calibrate import BAND_PRECISION, BAND_RECALL, choose_threshold, parse_objective
from catalogue_tagger.errors import InvalidQuery, LabelsFileError, TooFewLabels
from catalogue_tagger.families import normalize_family, parse_text
from catalogue_tagger.labelsets import read_labels
from catalogue_tagger.models.labels import MTT_LABELS
from catalogue_tagger.plots import taggram
from catalogue_tagger.similar import TagFilter, parse_filter

VOCABULARY = [
    ("female", "female vocals", "vocals"), ("woman", "female vocals", "vocals"), ("female vocal", "female vocals", "vocals"),
    ("piano", "piano", "instrument"), ("soft", "soft", "mood"), ("new age", "new age", "genre"),
    ("no vocals", "no vocals", "vocals"), ("Hip-Hop", "hip-hop", "genre"), ("Mellow", "mellow", "mood"),
]


@pytest.mark.parametrize(("text", "expected"), [
    ("piano>=0.3", TagFilter("piano", lo=0.3)),
    ("piano > .3", TagFilter("piano", lo=0.3)),
    ("no vocals<0.2", TagFilter("no vocals", hi=0.2)),
    ("0.2<=slow<=0.6", TagFilter("slow", 0.2, 0.6)),
])
def test_parse_filter(text: str, expected: TagFilter) -> None:
    assert parse_filter(text) == expected


@pytest.mark.parametrize("text", ["piano", "piano = 0.3", ">=0.3", "piano>=lots"])
def test_parse_filter_refuses(text: str) -> None:
    with pytest.raises(InvalidQuery):
        parse_filter(text)


def test_plain_words_map_onto_canonical_tags() -> None:
    terms = parse_text("calm female piano", VOCABULARY)
    assert [(t.text, t.tags) for t in terms] == [
        ("calm", ("soft", "mellow", "chill")), ("female", ("female vocals",)), ("piano", ("piano",))]
    # longest phrase first; stop words dropped; plurals; unknown words kept, with no tags
    terms = parse_text("some new age music with a female vocal and pianos, hip hop glockenspiel", VOCABULARY)
    assert [(t.text, t.tags) for t in terms] == [
        ("new age", ("new age",)), ("female vocal", ("female vocals",)), ("pianos", ("piano",)),
        ("hip-hop", ("hip-hop",)), ("glockenspiel", ())]


def test_families_have_names_and_aliases() -> None:
    assert normalize_family("Mood") == "mood" and normalize_family("era") == "era/other"
    with pytest.raises(InvalidQuery):
        normalize_family("tempo")


def test_labels_file_and_one_vs_rest_targets(tmp_path: Path) -> None:
    path = tmp_path / "labels.csv"
    path.write_text("uri,label,value\na,rock,1\nb,rock,no\nc,jazz\n# comment\nd,jazz,yes\n")
    labels = read_labels(path)
    assert labels.uris == ("a", "b", "c", "d") and labels.labels == ("rock", "jazz")
    assert labels.targets("rock", ["a", "b", "c", "d", "e"]).tolist() == [1, 0, 0, 0, -1]
    assert labels.targets("jazz", ["a", "c", "d"]).tolist() == [0, 1, 1]
    path.write_text("a,rock,maybe\n")
    with pytest.raises(LabelsFileError, match="line 1"):
        read_labels(path)
    with pytest.raises(LabelsFileError):
        read_labels(tmp_path / "missing.csv")


def test_threshold_of_a_perfect_ranking_has_no_ambiguous_band() -> None:
    y = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    s = np.array([0.1, 0.2, 0.3, 0.35, 0.6, 0.7, 0.8, 0.9])
    t = choose_threshold("x", y, s)
    assert t.threshold == t.lower == t.upper == pytest.approx(0.6)
    assert (t.precision, t.recall, t.n_positive, t.n_negative) == (1.0, 1.0, 4, 4)


def test_threshold_band_properties_on_noisy_scores() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 400)
    s = np.clip(0.5 * y + rng.normal(0.25, 0.2, 400), 0, 1)
    for objective in ("f1", "precision>=0.8"):
        t = choose_threshold("x", y, s, objective)
        assert t.lower <= t.threshold <= t.upper
        yes, no = s >= t.upper, s < t.lower
        assert y[yes].mean() >= BAND_PRECISION  # a "yes" is right at least 90% of the time on the sample
        assert y[no].sum() <= (1 - BAND_RECALL) * y.sum() + 1  # "no" holds at most ~10% of the positives
        predicted = s >= t.threshold
        assert t.precision == pytest.approx(y[predicted].mean()) and t.recall == pytest.approx(y[predicted].sum() / y.sum())
    assert choose_threshold("x", y, s, "precision>=0.8").precision >= 0.8


def test_threshold_needs_both_classes_and_a_known_objective() -> None:
    with pytest.raises(TooFewLabels):
        choose_threshold("x", np.ones(5), np.linspace(0, 1, 5))
    assert parse_objective("f1") is None and parse_objective("precision>=0.95") == 0.95
    with pytest.raises(InvalidQuery):
        parse_objective("recall>=0.9")


def test_taggram_is_a_png(tmp_path: Path) -> None:
    segments = np.random.default_rng(0).random((20, len(MTT_LABELS)), dtype=np.float32)
    path = taggram(segments, MTT_LABELS, tmp_path / "t.png", hop_s=3.0, title="synthetic")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError):
        taggram(segments[:, :10], MTT_LABELS, tmp_path / "bad.png", hop_s=3.0)
