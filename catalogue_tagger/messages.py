"""What decode workers send to the inference loop (plain tuples of builtins and arrays: cheap to pickle)."""

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
