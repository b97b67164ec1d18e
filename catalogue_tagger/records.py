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
class TrackResult:
    """A tagged track: one :class:`ModelOutput` per model, plus what was learnt while decoding."""

    track_id: int
    uri: str
    duration_s: float
    outputs: tuple[ModelOutput, ...]
    flags: tuple[str, ...] = ()  # e.g. "padded", "silent", "truncated", "capped"


@dataclass(frozen=True)
class TrackFailure:
    """A track that could not be tagged, and why."""

    track_id: int
    uri: str
    kind: str
    detail: str
