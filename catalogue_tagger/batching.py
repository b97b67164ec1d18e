"""Pack segments of many tracks into fixed-size batches, one batcher per model.

Cross-track batching is what keeps an accelerator busy on a catalogue of short tracks: a batch holds
whatever segments arrived, from any track. Each batch row carries its (track_id, segment index).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Batch:
    model: str
    track_ids: np.ndarray  # [n] int64
    indices: np.ndarray  # [n] int64, segment index within its track
    samples: np.ndarray = field(repr=False)  # [n, window] float32

    def __len__(self) -> int:
        return len(self.track_ids)


class Batcher:
    """Collects segments of one model into batches of ``batch_size`` rows."""

    def __init__(self, model: str, window: int, batch_size: int) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        self.model = model
        self.window = window
        self.batch_size = batch_size
        self._new_buffer()

    def _new_buffer(self) -> None:
        self._samples = np.empty((self.batch_size, self.window), np.float32)
        self._track_ids = np.empty(self.batch_size, np.int64)
        self._indices = np.empty(self.batch_size, np.int64)
        self._n = 0

    def __len__(self) -> int:
        return self._n

    def add(self, track_id: int, index: int, samples: np.ndarray) -> Batch | None:
        """Add one segment; returns a full batch when this segment completes one."""
        if samples.shape != (self.window,):
            raise ValueError(f"{self.model}: segment of shape {samples.shape}, expected ({self.window},)")
        self._samples[self._n] = samples
        self._track_ids[self._n] = track_id
        self._indices[self._n] = index
        self._n += 1
        return self.flush() if self._n == self.batch_size else None

    def flush(self) -> Batch | None:
        """The rows collected so far as a (possibly partial) batch, or None when empty."""
        if self._n == 0:
            return None
        n = self._n
        batch = Batch(self.model, self._track_ids[:n], self._indices[:n], self._samples[:n])
        self._new_buffer()
        return batch
