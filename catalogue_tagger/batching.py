"""Pack segments of many tracks into fixed-size batches, one batcher per model.

Cross-track batching is what keeps an accelerator busy on a catalogue of short tracks: a batch holds
whatever segments arrived, from any track. Each batch row carries its (track_id, segment index). Samples are
copied into a buffer the batcher gets from ``allocate`` (the backend's page-locked host memory on CUDA), so a
segment lent from shared memory can be given back as soon as :meth:`Batcher.add` returns.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Batch:
    model: str
    track_ids: np.ndarray  # [n] int64
    indices: np.ndarray  # [n] int64, segment index within its track
    samples: np.ndarray = field(repr=False)  # [n, window] float32, a view of the buffer it was filled in

    def __len__(self) -> int:
        return len(self.track_ids)


def _plain(rows: int, window: int) -> np.ndarray:
    return np.empty((rows, window), np.float32)


class Batcher:
    """Collects segments of one model into batches of ``batch_size`` rows.

    ``allocate(rows)`` gives each batch its ``(rows, window)`` float32 buffer (default: plain memory), asked for
    when the batch's first segment arrives; a batch handed out is not written again.
    """

    def __init__(
        self, model: str, window: int, batch_size: int, allocate: Callable[[int], np.ndarray] | None = None
    ) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        self.model = model
        self.window = window
        self.batch_size = batch_size
        self._allocate = allocate if allocate is not None else (lambda rows: _plain(rows, window))
        self._samples: np.ndarray | None = None
        self._new_batch()

    def _new_batch(self) -> None:
        self._samples = None  # the next batch's buffer comes with its first segment
        self._track_ids = np.empty(self.batch_size, np.int64)
        self._indices = np.empty(self.batch_size, np.int64)
        self._n = 0

    def _buffer(self) -> np.ndarray:
        if self._samples is None:
            samples = self._allocate(self.batch_size)
            if samples.shape != (self.batch_size, self.window) or samples.dtype != np.float32:
                raise ValueError(f"{self.model}: batch buffer of {samples.shape} {samples.dtype}, "
                                 f"expected ({self.batch_size}, {self.window}) float32")
            self._samples = samples
        return self._samples

    def __len__(self) -> int:
        return self._n

    def add(self, track_id: int, index: int, samples: np.ndarray) -> Batch | None:
        """Add one segment; returns a full batch when this segment completes one."""
        if samples.shape != (self.window,):
            raise ValueError(f"{self.model}: segment of shape {samples.shape}, expected ({self.window},)")
        self._buffer()[self._n] = samples
        self._track_ids[self._n] = track_id
        self._indices[self._n] = index
        self._n += 1
        return self.flush() if self._n == self.batch_size else None

    def flush(self) -> Batch | None:
        """The rows collected so far as a (possibly partial) batch, or None when empty."""
        if self._n == 0 or self._samples is None:
            return None
        n = self._n
        batch = Batch(self.model, self._track_ids[:n], self._indices[:n], self._samples[:n])
        self._new_batch()
        return batch
