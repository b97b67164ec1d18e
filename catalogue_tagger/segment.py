"""Cut a stream of 16 kHz mono samples into the fixed windows of one model.

A model declares ``window``, ``hop`` and ``pad``. The track is conceptually reflect-padded by ``pad``
samples at both ends (numpy ``mode="reflect"``, which does not repeat the edge sample: the centred STFT of
musicnn's librosa 0.7), and window ``k`` is ``padded[k * hop : k * hop + window]``. A last partial window is
dropped. For musicnn (window 48128, hop 47872, pad 256) window ``k`` is samples ``[47872k − 256,
47872k + 47872)`` and its 187 STFT frames are exactly frames ``[187k, 187k + 187)`` of the whole track.

A track with no full window is padded to one (zeros after the reflected head) and flagged ``padded``.
The segmenter is fed chunk by chunk and holds at most about one window of samples.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Windowing:
    window: int
    hop: int
    pad: int

    def n_windows(self, n_samples: int) -> int:
        """Number of full windows of a track of ``n_samples`` (0 means: too short, pad to one)."""
        padded = n_samples + 2 * self.pad
        return 0 if padded < self.window else (padded - self.window) // self.hop + 1


def _reflect_head(samples: np.ndarray, pad: int) -> np.ndarray:
    """``pad`` samples mirrored around the first sample (not repeating it)."""
    head = samples[1 : pad + 1][::-1]
    return np.concatenate([np.zeros(pad - len(head), np.float32), head]) if len(head) < pad else head


def _reflect_tail(samples: np.ndarray, pad: int) -> np.ndarray:
    """``pad`` samples mirrored around the last sample (not repeating it)."""
    tail = samples[-pad - 1 : -1][::-1] if len(samples) > 1 else samples[:0]
    return np.concatenate([tail, np.zeros(pad - len(tail), np.float32)]) if len(tail) < pad else tail


class Segmenter:
    """Streaming windowing of one track for one model.

    ``push(chunk)`` returns the windows completed by that chunk; ``finish()`` returns the rest. After
    ``finish``, ``padded`` tells whether the track was shorter than one window.
    """

    def __init__(self, windowing: Windowing) -> None:
        self.w = windowing
        self._buf = np.zeros(0, np.float32)  # padded-coordinate samples not yet fully consumed
        self._head_done = windowing.pad == 0
        self._skip = 0  # samples still to drop before the next window starts (hop > window)
        self._tail = np.zeros(0, np.float32)  # last pad + 1 original samples, for the end reflection
        self.n_samples = 0
        self.n_windows = 0
        self.padded = False

    def push(self, chunk: np.ndarray) -> list[np.ndarray]:
        chunk = np.asarray(chunk, np.float32)
        if chunk.size == 0:
            return []
        self.n_samples += len(chunk)
        if self.w.pad:
            self._tail = np.concatenate([self._tail, chunk])[-(self.w.pad + 1) :]
        self._buf = np.concatenate([self._buf, chunk])
        if not self._head_done:
            if len(self._buf) <= self.w.pad:
                return []  # the reflection needs pad + 1 samples
            self._buf = np.concatenate([_reflect_head(self._buf, self.w.pad), self._buf])
            self._head_done = True
        return self._cut()

    def _cut(self) -> list[np.ndarray]:
        out: list[np.ndarray] = []
        while True:
            if self._skip:
                dropped = min(self._skip, len(self._buf))
                self._buf = self._buf[dropped:]
                self._skip -= dropped
                if self._skip:
                    return out
            if len(self._buf) < self.w.window:
                return out
            out.append(self._buf[: self.w.window].copy())
            self.n_windows += 1
            dropped = min(self.w.hop, len(self._buf))
            self._buf = self._buf[dropped:]
            self._skip = self.w.hop - dropped

    def finish(self) -> list[np.ndarray]:
        if self.w.pad:
            if not self._head_done:
                self._buf = np.concatenate([_reflect_head(self._buf, self.w.pad), self._buf])
                self._head_done = True
            self._buf = np.concatenate([self._buf, _reflect_tail(self._tail, self.w.pad)])
        out = self._cut()
        if self.n_windows == 0:
            self.padded = True
            window = np.zeros(self.w.window, np.float32)
            keep = self._buf[: self.w.window]
            if self.w.pad and self.n_samples:
                keep = keep[: self.w.pad + self.n_samples]  # head reflection + real audio, no tail
            window[: len(keep)] = keep
            out.append(window)
            self.n_windows = 1
        self._buf = np.zeros(0, np.float32)
        return out


def segment_track(samples: np.ndarray, windowing: Windowing) -> tuple[np.ndarray, bool]:
    """All windows of a whole in-memory track, ``[n, window]``, and whether it was padded."""
    return segment_chunks([samples], windowing)


def segment_chunks(chunks: Iterable[np.ndarray], windowing: Windowing) -> tuple[np.ndarray, bool]:
    seg = Segmenter(windowing)
    windows = [w for chunk in chunks for w in seg.push(chunk)]
    windows += seg.finish()
    return np.stack(windows), seg.padded
