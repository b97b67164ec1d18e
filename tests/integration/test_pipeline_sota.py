"""``tag`` with the sota MTAT taggers: one decode, each model its own windows, reference scores in Postgres."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from catalogue_tagger.models.labels import MTT_LABELS
from catalogue_tagger.config import Settings
from catalogue_tagger.pipeline import tag
from catalogue_tagger.sources import FolderStore
from catalogue_tagger.store.store import Store

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
# registry name -> reference of a 10 s clip: three 3 s musicnn windows, one padded 29 s window for fcn/crnn
REFERENCE = {"musicnn-sota-mtt": "musicnn/consec", "fcn-mtt": "fcn/padded", "crnn-mtt": "crnn/padded"}


def test_catalogue_is_tagged_with_the_sota_taggers(store: Store, tmp_path: Path) -> None:
    folder = tmp_path / "catalogue"
    folder.mkdir()
    shutil.copy2(FIXTURES / "musicnn" / "pub_speech.flac", folder / "pub_speech.flac")
    report = tag(FolderStore(folder), store, Settings(models=tuple(REFERENCE), workers=0, batch_size=4))
    assert report.tagged == 1 and not report.failed and report.flags.get("padded") == 1
    reference = np.load(FIXTURES / "sota" / "pub_speech.npz")
    uri = (folder / "pub_speech.flac").as_uri()
    for model, key in REFERENCE.items():
        stored = {row["tag"]: row["score"] for row in store.tags_for_track(uri, model)}
        assert set(stored) == set(MTT_LABELS)
        scores = np.array([stored[label] for label in MTT_LABELS])
        np.testing.assert_allclose(scores, reference[f"{key}/track_mean"], atol=1e-4)
