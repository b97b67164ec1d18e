"""Whole analysis frames out of a stream of chunks: what a streaming descriptor keeps between two chunks is the
tail that does not fill a frame yet."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

Array = npt.NDArray[np.float32]


class FrameStream:
    """``push(chunk)`` → the complete frames of ``n_fft`` samples, ``hop`` apart, that the stream now holds
    (``(n_frames, n_fft)``, possibly none); the same frames as framing the whole signal at once
    (``librosa.util.frame``, no centring; numpy's sliding windows here, so a decode worker need not import
    librosa)."""

    def __init__(self, n_fft: int, hop: int) -> None:
        self.n_fft = n_fft
        self.hop = hop
        self._tail = np.zeros(0, np.float32)

    @property
    def pending(self) -> int:
        """Samples held that do not fill a frame yet (always fewer than ``n_fft``)."""
        return len(self._tail)

    def push(self, chunk: Array) -> Array:
        y = np.concatenate([self._tail, chunk]) if len(self._tail) else chunk
        if len(y) < self.n_fft:
            self._tail = np.asarray(y, np.float32)
            return np.zeros((0, self.n_fft), np.float32)
        n_frames = 1 + (len(y) - self.n_fft) // self.hop
        self._tail = np.asarray(y[n_frames * self.hop :], np.float32)
        used = y[: (n_frames - 1) * self.hop + self.n_fft]
        frames: Array = np.lib.stride_tricks.sliding_window_view(used, self.n_fft)[:: self.hop]
        return frames
