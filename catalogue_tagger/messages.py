"""What decode workers send to the inference loop: small frozen records of builtins (cheap to pickle).

Segment samples travel through shared memory (:mod:`catalogue_tagger.segment_ring`): a worker sends a
:class:`SegmentShared` naming its slot, and the pool hands the loop a :class:`SegmentReady` over that slot.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from catalogue_tagger.records import Descriptors


@dataclass(frozen=True)
class SegmentReady:
    track_id: int
    model: str
    index: int
    samples: np.ndarray = field(repr=False)


@dataclass(frozen=True)
class SegmentShared:
    """A segment whose samples wait in a shared-memory slot: ``length`` samples of ``slot``, written by
    decode worker ``worker`` (the pool gives the slot back to that worker once the loop has copied it)."""

    track_id: int
    model: str
    index: int
    worker: int
    slot: int
    length: int


@dataclass(frozen=True)
class TrackDecoded:
    """Decoding finished: how many segments each model got, and what was learnt about the audio."""

    track_id: int
    uri: str
    n_segments: dict[str, int]
    duration_s: float
    flags: tuple[str, ...]
    descriptors: Descriptors | None = None


@dataclass(frozen=True)
class TrackStarted:
    track_id: int
    uri: str


@dataclass(frozen=True)
class TrackFailed:
    track_id: int
    uri: str
    kind: str
    detail: str


Message = TrackStarted | SegmentReady | TrackDecoded | TrackFailed
"""What the inference loop consumes."""

WorkerMessage = TrackStarted | SegmentReady | SegmentShared | TrackDecoded | TrackFailed
"""What a decode worker puts on the pool's queue (``SegmentReady`` only when it has no shared ring)."""
