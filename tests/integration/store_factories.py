"""Builders of records for store tests (deterministic; scores are valid probabilities)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timezone

import numpy as np

from catalogue_tagger.records import ModelOutput, ObjectInfo, TrackResult, TrackTask
from catalogue_tagger.store.store import RunLease, Store

LABELS = ("rock", "pop", "jazz", "piano", "vocal")
DAY = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)
PARTITION = "2026-03-01"


def objects(n: int, prefix: str = "file:///catalogue/", etag: str = "e1") -> list[ObjectInfo]:
    return [ObjectInfo(f"{prefix}{i:05d}.mp3", etag, 1000 + i, DAY) for i in range(n)]


def output(model: str, seed: int, labels: tuple[str, ...] = LABELS, embedding_dim: int | None = 4,
           n_segments: int = 3, weights: str = "w1") -> ModelOutput:
    rng = np.random.default_rng(seed)
    segments = rng.random((n_segments, len(labels)), dtype=np.float32)
    embedding = rng.standard_normal(embedding_dim).astype(np.float32) if embedding_dim else None
    return ModelOutput(model, weights, n_segments, segments.mean(axis=0), segments.max(axis=0), embedding, segments)


def result(task: TrackTask, models: tuple[str, ...] = ("m1",), seed: int = 0, **kwargs: object) -> TrackResult:
    outs = tuple(output(m, seed * 1000 + task.track_id * 10 + i, **kwargs) for i, m in enumerate(models))  # type: ignore[arg-type]
    return TrackResult(task.track_id, task.uri, 12.5, outs, ("padded",))


#: Leases of the runs tests start; tests/integration/conftest.py gives them back after each test.
LEASES: list[RunLease] = []


def start_run(store: Store, source: str, models: Sequence[str], partition_key: str | None = None) -> int:
    """A run with its lease, held until the test ends."""
    lease = store.open_run(source, models, partition_key)
    LEASES.append(lease)
    return lease.run_id
