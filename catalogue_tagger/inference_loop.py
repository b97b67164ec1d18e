"""The inference loop: decode messages in, finished tracks out.

It owns the backends (one per model), a batcher per model and the aggregator. Segments of many tracks
share batches; a track leaves as a ``TrackResult`` once its decode finished and all its segments are scored,
or as a ``TrackFailure`` as soon as decoding fails (segments of it already batched are then ignored).

A full batch is submitted to its backend and, where the backend allows (``Backend.in_flight``, 1 for torch on
CUDA), left running while the next batch fills: its outputs are collected when the following batch is
submitted, or by :meth:`InferenceLoop.flush`. Segment order does not matter to the aggregator, so results are
the same whatever the depth.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping

import numpy as np

from catalogue_tagger.aggregate import Aggregator, ModelInfo
from catalogue_tagger.batching import Batch, Batcher
from catalogue_tagger.errors import InferenceError, failure_of
from catalogue_tagger.inference.base import Backend, Pending
from catalogue_tagger.messages import Message, SegmentReady, TrackDecoded, TrackFailed, TrackStarted
from catalogue_tagger.records import TrackFailure, TrackResult

Finished = TrackResult | TrackFailure


class InferenceLoop:
    def __init__(self, backends: Mapping[str, Backend], batch_size: int, keep_segments: bool = False) -> None:
        self.backends = dict(backends)
        self.batchers = {
            name: Batcher(name, backend.spec.window, batch_size, allocate=backend.host_buffer)
            for name, backend in self.backends.items()
        }
        self._running: dict[str, deque[tuple[Batch, Pending]]] = {name: deque() for name in self.backends}
        infos = {
            name: ModelInfo(name, b.spec.weights_sha256, b.spec.n_labels, b.spec.embedding_size)
            for name, b in self.backends.items()
        }
        self.aggregator = Aggregator(infos, keep_segments=keep_segments)
        self.segments_scored = 0

    @property
    def in_flight(self) -> int:
        return len(self.aggregator)

    def feed(self, message: Message) -> list[Finished]:
        if isinstance(message, SegmentReady):
            batch = self.batchers[message.model].add(message.track_id, message.index, message.samples)
            return self._score(batch) if batch is not None else []
        if isinstance(message, TrackStarted):
            self.aggregator.open(message.track_id, message.uri)
            return []
        if isinstance(message, (TrackDecoded, TrackFailed)) and self.aggregator.uri_of(message.track_id) is None:
            return []  # the track already failed here (its batch could not be scored): one failure is enough
        if isinstance(message, TrackDecoded):
            result = self.aggregator.close(
                message.track_id, message.n_segments, message.duration_s, message.flags, message.descriptors
            )
            return [result] if result is not None else []
        if isinstance(message, TrackFailed):
            self.aggregator.discard(message.track_id)
            return [TrackFailure(message.track_id, message.uri, message.kind, message.detail)]
        raise TypeError(f"unexpected message {message!r}")

    def feed_all(self, messages: Iterable[Message]) -> list[Finished]:
        return [done for message in messages for done in self.feed(message)]

    def flush(self) -> list[Finished]:
        """Score every partial batch and collect every running one (at the end of a run, or when the decoders
        have gone quiet)."""
        finished: list[Finished] = []
        for name, batcher in self.batchers.items():
            batch = batcher.flush()
            if batch is not None:
                finished += self._score(batch)
            running = self._running[name]
            while running:
                finished += self._collect(*running.popleft())
        return finished

    def ready(self, min_segments: int) -> bool:
        """Whether :meth:`score_ready` has a batch to score."""
        return any(self._is_ready(name, min_segments) for name in self.batchers)

    def score_ready(self, min_segments: int) -> list[Finished]:
        """Score the partial batches that hold at least ``min_segments``, of backends that run a batch in
        ``submit`` (CPU: they gain nothing from a fuller batch once their threads are busy). The pipeline asks
        while the decoders are behind, so that inference does not idle until a whole batch has filled."""
        finished: list[Finished] = []
        for name, batcher in self.batchers.items():
            batch = batcher.flush() if self._is_ready(name, min_segments) else None
            if batch is not None:
                finished += self._score(batch)
        return finished

    def _is_ready(self, name: str, min_segments: int) -> bool:
        return self.backends[name].in_flight == 0 and len(self.batchers[name]) >= min_segments

    def _score(self, batch: Batch) -> list[Finished]:
        """Submit ``batch``; collect the oldest batches of its model beyond the backend's ``in_flight``."""
        backend = self.backends[batch.model]
        try:
            pending = backend.submit(batch.samples)
        except Exception as exc:  # the backend's boundary: fail the tracks of this batch, keep going
            kind, detail = failure_of(exc, InferenceError)
            return self._fail_batch(batch, kind, f"{batch.model}: {detail}")
        running = self._running[batch.model]
        running.append((batch, pending))
        finished: list[Finished] = []
        while len(running) > max(0, backend.in_flight):
            finished += self._collect(*running.popleft())
        return finished

    def _collect(self, batch: Batch, pending: Pending) -> list[Finished]:
        try:
            outputs = pending.result()
        except Exception as exc:  # the backend's boundary, as in _score
            kind, detail = failure_of(exc, InferenceError)
            return self._fail_batch(batch, kind, f"{batch.model}: {detail}")
        self.segments_scored += len(batch)
        probs = outputs["probs"]
        embeddings = outputs.get("embedding")
        if not np.all(np.isfinite(probs)):
            bad = sorted({int(t) for t, row in zip(batch.track_ids, probs) if not np.all(np.isfinite(row))})
            finished = self._fail_tracks(bad, InferenceError.kind, f"{batch.model}: non-finite scores")
        else:
            finished = []
        for row, (track_id, index) in enumerate(zip(batch.track_ids, batch.indices)):
            emb = embeddings[row] if embeddings is not None else None
            result = self.aggregator.add(batch.model, int(track_id), int(index), probs[row], emb)
            if result is not None:
                finished.append(result)
        return finished

    def _fail_batch(self, batch: Batch, kind: str, detail: str) -> list[Finished]:
        return self._fail_tracks(sorted({int(t) for t in batch.track_ids}), kind, detail)

    def _fail_tracks(self, track_ids: list[int], kind: str, detail: str) -> list[Finished]:
        failures: list[Finished] = []
        for track_id in track_ids:
            uri = self.aggregator.uri_of(track_id)
            if uri is not None:
                self.aggregator.discard(track_id)
                failures.append(TrackFailure(track_id, uri, kind, detail))
        return failures
