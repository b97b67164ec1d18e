"""Records that flow through the pipeline. All frozen; change with ``dataclasses.replace``."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

import numpy as np


@dataclass(frozen=True)
class ObjectInfo:
    """An object as listed by an object store."""

    uri: str
    etag: str
    size: int
    last_modified: datetime  # timezone-aware, UTC

    @property
    def partition_key(self) -> str:
        """Upload day (UTC) of the object, ``YYYY-MM-DD``."""
        return self.last_modified.strftime("%Y-%m-%d")


@dataclass(frozen=True)
class TrackTask:
    """A track claimed for tagging in a run."""

    track_id: int
    uri: str
    etag: str = ""


@dataclass(frozen=True)
class ModelOutput:
    """A model's per-track aggregate."""

    model: str
    weights_sha256: str
    n_segments: int
    mean: np.ndarray = field(repr=False, compare=False)  # [n_labels] mean of segment sigmoids
    max: np.ndarray = field(repr=False, compare=False)  # [n_labels] max of segment sigmoids
    embedding: np.ndarray | None = field(default=None, repr=False, compare=False)  # mean segment embedding
    segments: np.ndarray | None = field(default=None, repr=False, compare=False)  # [n_segments, n_labels]


@dataclass(frozen=True)
class Descriptors:
    """Tempo, key and loudness of a track, measured in the same decode pass as its tags.

    ``version`` is the descriptor algorithm's version (stored like a model version). Any value is ``None`` when
    it could not be measured (silence, a track too short for a tempo). Keys read ``"A minor"``; ``camelot``
    is the DJ wheel code (``"8A"``). See :mod:`catalogue_tagger.descriptors`.
    """

    version: int
    tempo_bpm: float | None = None
    tempo_confidence: float | None = None  # [0, 1]
    tempo_alt_bpm: float | None = None  # the competing octave (half or double tempo)
    tempo_alt_confidence: float | None = None  # [0, 1], the same scale as tempo_confidence
    key: str | None = None
    key_confidence: float | None = None  # [0, 1]: profile correlation of the key
    key_alt: str | None = None  # the runner-up key
    key_alt_confidence: float | None = None
    camelot: str | None = None
    loudness_lufs: float | None = None  # EBU R128 integrated loudness
    loudness_range_lu: float | None = None  # EBU R128 loudness range (LRA)
    true_peak_dbtp: float | None = None

    def as_dict(self) -> dict[str, float | int | str | None]:
        """The descriptors as JSON-ready values (floats rounded), ``version`` included."""
        out: dict[str, float | int | str | None] = {}
        for name in self.__dataclass_fields__:
            value = getattr(self, name)
            out[name] = round(value, 3) if isinstance(value, float) else value
        return out


@dataclass(frozen=True)
class TrackResult:
    """A tagged track: one :class:`ModelOutput` per model, plus what was learnt while decoding."""

    track_id: int
    uri: str
    duration_s: float
    outputs: tuple[ModelOutput, ...]
    flags: tuple[str, ...] = ()  # e.g. "padded", "silent", "truncated", "capped"
    descriptors: Descriptors | None = None  # None when the run measured none


@dataclass(frozen=True)
class TrackFailure:
    """A track that could not be tagged, and why."""

    track_id: int
    uri: str
    kind: str
    detail: str
