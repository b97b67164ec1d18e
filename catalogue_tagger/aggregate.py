"""Turn per-segment model outputs into per-track results.

Track score = mean of the segment sigmoids (what musicnn ranks); the max is kept too. The embedding of a
track is the mean of its segment embeddings. A track is final when its decode has finished and every
model has scored every one of its segments; segments may arrive in any order.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from catalogue_tagger.records import Descriptors, ModelOutput, TrackResult


@dataclass(frozen=True)
class ModelInfo:
    """What the aggregator needs to know of a model."""

    name: str
    weights_sha256: str
    n_labels: int
    embedding_size: int


def aggregate(info: ModelInfo, probs: np.ndarray, embeddings: np.ndarray | None, keep_segments: bool) -> ModelOutput:
    """Aggregate ``probs [n_segments, n_labels]`` (and embeddings ``[n_segments, E]``) of one track."""
    probs = np.asarray(probs, np.float32)
    return ModelOutput(
        model=info.name,
        weights_sha256=info.weights_sha256,
        n_segments=len(probs),
        mean=probs.mean(axis=0),
        max=probs.max(axis=0),
        embedding=None if embeddings is None else np.asarray(embeddings, np.float32).mean(axis=0),
        segments=probs if keep_segments else None,
    )


@dataclass
class _Pending:
    uri: str
    probs: dict[str, dict[int, np.ndarray]] = field(default_factory=dict)
    embeddings: dict[str, dict[int, np.ndarray]] = field(default_factory=dict)
    expected: dict[str, int] | None = None  # per model, known once decoding finished
    duration_s: float = 0.0
    flags: tuple[str, ...] = ()
    descriptors: Descriptors | None = None


class Aggregator:
    """Collects segment outputs of many tracks in flight and releases each track when it is complete."""

    def __init__(self, models: Mapping[str, ModelInfo], keep_segments: bool = False) -> None:
        self.models = dict(models)
        self.keep_segments = keep_segments
        self._tracks: dict[int, _Pending] = {}

    def __len__(self) -> int:
        return len(self._tracks)

    def open(self, track_id: int, uri: str) -> None:
        self._tracks[track_id] = _Pending(uri, {m: {} for m in self.models}, {m: {} for m in self.models})

    def uri_of(self, track_id: int) -> str | None:
        pending = self._tracks.get(track_id)
        return pending.uri if pending is not None else None

    def discard(self, track_id: int) -> None:
        """Forget a track (it failed); late segment outputs for it are ignored."""
        self._tracks.pop(track_id, None)

    def add(
        self, model: str, track_id: int, index: int, probs: np.ndarray, embedding: np.ndarray | None = None
    ) -> TrackResult | None:
        pending = self._tracks.get(track_id)
        if pending is None:
            return None
        pending.probs[model][index] = probs
        if embedding is not None:
            pending.embeddings[model][index] = embedding
        return self._release_if_complete(track_id)

    def close(
        self,
        track_id: int,
        n_segments: Mapping[str, int],
        duration_s: float,
        flags: tuple[str, ...] = (),
        descriptors: Descriptors | None = None,
    ) -> TrackResult | None:
        """Decoding of the track finished: ``n_segments`` per model is now known."""
        pending = self._tracks[track_id]
        pending.expected = dict(n_segments)
        pending.duration_s = duration_s
        pending.flags = flags
        pending.descriptors = descriptors
        return self._release_if_complete(track_id)

    def _release_if_complete(self, track_id: int) -> TrackResult | None:
        pending = self._tracks[track_id]
        if pending.expected is None:
            return None
        if any(len(pending.probs[m]) < pending.expected[m] for m in self.models):
            return None
        del self._tracks[track_id]
        outputs = []
        for name, info in self.models.items():
            order = sorted(pending.probs[name])
            probs = np.stack([pending.probs[name][i] for i in order])
            emb = pending.embeddings[name]
            embeddings = np.stack([emb[i] for i in order]) if info.embedding_size and emb else None
            outputs.append(aggregate(info, probs, embeddings, self.keep_segments))
        return TrackResult(track_id, pending.uri, pending.duration_s, tuple(outputs), pending.flags, pending.descriptors)
