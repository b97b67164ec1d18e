"""Cross-track batches carry their rows' identities; tracks are released only when complete."""

from __future__ import annotations

import numpy as np
import pytest

from catalogue_tagger.aggregate import Aggregator, ModelInfo
from catalogue_tagger.batching import Batcher


def test_batcher_packs_segments_of_many_tracks() -> None:
    batcher = Batcher("m", window=4, batch_size=3)
    full = [batcher.add(t, i, np.full(4, t * 10 + i, np.float32)) for t, i in [(1, 0), (2, 0), (1, 1), (3, 0)]]
    assert full[0] is None and full[1] is None and full[3] is None
    batch = full[2]
    assert batch is not None and len(batch) == 3
    assert batch.track_ids.tolist() == [1, 2, 1] and batch.indices.tolist() == [0, 0, 1]
    assert batch.samples[2].tolist() == [11.0] * 4
    rest = batcher.flush()
    assert rest is not None and rest.track_ids.tolist() == [3]
    assert batcher.flush() is None


def test_batcher_rejects_wrong_window() -> None:
    with pytest.raises(ValueError):
        Batcher("m", window=4, batch_size=2).add(1, 0, np.zeros(5, np.float32))


def test_aggregator_waits_for_decode_end_and_every_model() -> None:
    models = {"a": ModelInfo("a", "sha-a", 2, 3), "b": ModelInfo("b", "sha-b", 2, 0)}
    agg = Aggregator(models, keep_segments=True)
    agg.open(7, "file:///x.mp3")
    assert agg.add("a", 7, 1, np.array([0.2, 0.8], np.float32), np.ones(3, np.float32)) is None
    assert agg.add("a", 7, 0, np.array([0.4, 0.6], np.float32), np.zeros(3, np.float32)) is None
    assert agg.close(7, {"a": 2, "b": 1}, 12.5, ("padded",)) is None  # model b still missing
    result = agg.add("b", 7, 0, np.array([0.1, 0.9], np.float32))
    assert result is not None and result.duration_s == 12.5 and result.flags == ("padded",)
    out_a, out_b = result.outputs
    np.testing.assert_allclose(out_a.mean, [0.3, 0.7])
    np.testing.assert_allclose(out_a.max, [0.4, 0.8])
    np.testing.assert_allclose(out_a.embedding, [0.5, 0.5, 0.5])
    np.testing.assert_allclose(out_a.segments, [[0.4, 0.6], [0.2, 0.8]])  # in segment order
    assert out_b.embedding is None and out_b.n_segments == 1
    assert len(agg) == 0


def test_discarded_track_ignores_late_segments() -> None:
    agg = Aggregator({"a": ModelInfo("a", "s", 1, 0)})
    agg.open(1, "u")
    agg.discard(1)
    assert agg.add("a", 1, 0, np.array([0.5], np.float32)) is None
