"""Key from a streamed, harmonically weighted pitch-class profile (HPCP-style) and key-profile correlation.

Each 16 kHz chunk is cut into back-to-back 256 ms frames. Spectral peaks between 80 Hz and
5 kHz (local maxima above a per-frame floor) are folded onto 36 pitch-class bins (a third of a semitone) by
one constant matrix that also credits each peak to the sub-harmonics it may be the 2nd…4th harmonic of
(weights 0.6ʰ⁻¹, as HPCP's harmonic weighting) and spreads it over ±⅔ bin (cos²). Each frame's profile is
normalised to a maximum of 1 and added to a running sum: 36 numbers are all that is kept of a track.

At the end the tuning is taken as the sub-semitone phase holding the most energy, the 36 bins fold to 12, and the
profile is correlated (Pearson) with each of the 24 rotations of a key profile — the mean of Temperley's
(Kostka–Payne) and Sha'ath's profiles, which weigh the triad and the scale as pop and game music use them.
The best key and the runner-up are reported with their correlations (clipped to [0, 1]) as confidences.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import scipy.fft

from catalogue_tagger.descriptors.frames import FrameStream
from catalogue_tagger.descriptors.keys import Key, all_keys

SAMPLE_RATE = 16_000
N_FFT = 4096
HOP = 4096  # 256 ms: a key needs no finer time resolution, and half the frames halve the cost
BINS_PER_SEMITONE = 3
N_BINS = 12 * BINS_PER_SEMITONE
MIN_HZ, MAX_HZ = 80.0, 5000.0
HARMONICS = 4
HARMONIC_DECAY = 0.6
PEAK_FLOOR_DB = 60.0  # peaks more than this below the frame's loudest bin are ignored
SILENT_FRAME_RMS = 1e-4

_TEMPERLEY_MAJOR = (0.748, 0.060, 0.488, 0.082, 0.670, 0.460, 0.096, 0.715, 0.104, 0.366, 0.057, 0.400)
_TEMPERLEY_MINOR = (0.712, 0.084, 0.474, 0.618, 0.049, 0.460, 0.105, 0.747, 0.404, 0.067, 0.133, 0.330)
_SHAATH_MAJOR = (6.6, 2.0, 3.5, 2.3, 4.6, 4.0, 2.5, 5.2, 2.4, 3.7, 2.3, 3.4)
_SHAATH_MINOR = (6.5, 2.7, 3.5, 5.4, 2.6, 3.5, 2.5, 5.2, 4.0, 2.7, 4.3, 3.2)

Array = npt.NDArray[np.float32]


def _unit(profile: tuple[float, ...]) -> npt.NDArray[np.float64]:
    values = np.asarray(profile, np.float64)
    return np.asarray(values / values.sum())


MAJOR_PROFILE = (_unit(_TEMPERLEY_MAJOR) + _unit(_SHAATH_MAJOR)) / 2
MINOR_PROFILE = (_unit(_TEMPERLEY_MINOR) + _unit(_SHAATH_MINOR)) / 2


@dataclass(frozen=True)
class KeyEstimate:
    key: Key
    confidence: float
    alt: Key
    alt_confidence: float


def hpcp_matrix() -> npt.NDArray[np.float32]:
    """``(N_BINS, N_FFT // 2 + 1)``: FFT bin magnitude → pitch-class bins, with harmonic weighting.

    Bin 0 is C (A4 = 440 Hz); a peak at ``f`` adds to the bins of ``f / h`` for ``h = 1 … HARMONICS``.
    """
    freqs = np.fft.rfftfreq(n=N_FFT, d=1.0 / SAMPLE_RATE)  # librosa.fft_frequencies
    matrix = np.zeros((N_BINS, len(freqs)), np.float64)
    usable = (freqs >= MIN_HZ) & (freqs <= MAX_HZ)
    centres = np.arange(N_BINS)
    for h in range(1, HARMONICS + 1):
        midi = 12 * (np.log2(freqs[usable] / h) - np.log2(440.0)) + 69  # librosa.hz_to_midi
        position = (midi % 12) * BINS_PER_SEMITONE  # in pitch-class bins
        distance = (position[None, :] - centres[:, None] + N_BINS / 2) % N_BINS - N_BINS / 2
        spread = np.where(np.abs(distance) < 2 / 3 * 1.5, np.cos(np.pi / 2 * distance / (2 / 3 * 1.5)) ** 2, 0.0)
        matrix[:, usable] += HARMONIC_DECAY ** (h - 1) * spread
    return matrix.astype(np.float32)


class KeyTracker:
    """Feed 16 kHz mono chunks with :meth:`push`; :meth:`finish` gives the key (or ``None`` for silence)."""

    def __init__(self) -> None:
        self._matrix = hpcp_matrix()
        self._window = np.hanning(N_FFT).astype(np.float32)
        self._frames_of = FrameStream(N_FFT, HOP)
        self._sum = np.zeros(N_BINS, np.float64)
        self._frames = 0

    def push(self, chunk: Array) -> None:
        frames = self._frames_of.push(chunk)
        rms = np.sqrt(np.mean(frames**2, axis=1))
        frames = frames[rms > SILENT_FRAME_RMS]
        if frames.shape[0] == 0:
            return
        magnitude = np.abs(scipy.fft.rfft(frames * self._window, axis=1)).T  # (N_FFT // 2 + 1, frames)
        peaks = np.zeros_like(magnitude, dtype=bool)
        peaks[1:-1] = (magnitude[1:-1] > magnitude[:-2]) & (magnitude[1:-1] >= magnitude[2:])
        peaks &= magnitude >= magnitude.max(axis=0, keepdims=True) * 10 ** (-PEAK_FLOOR_DB / 20)
        profile = self._matrix @ np.where(peaks, magnitude, 0.0).astype(np.float32)  # (N_BINS, frames)
        top = profile.max(axis=0)
        keep = top > 0
        self._sum += (profile[:, keep] / top[keep]).sum(axis=1)
        self._frames += int(keep.sum())

    def finish(self) -> KeyEstimate | None:
        if self._frames == 0:
            return None
        return estimate_key(self._sum / self._frames)


def fold(hpcp: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """36 bins → 12 pitch classes, after moving the tuning phase with the most energy to the centre bins."""
    phases = hpcp.reshape(12, BINS_PER_SEMITONE).sum(axis=0)
    shift = int(np.argmax(phases))  # 0: in tune; 1: sharp by a third of a semitone; 2: flat by a third
    shifted = np.roll(hpcp, -shift if shift != 2 else 1)
    by_class = shifted.reshape(12, BINS_PER_SEMITONE)
    return np.asarray(by_class[:, 0] + 0.5 * (by_class[:, 1] + np.roll(by_class[:, 2], 1)))


def key_scores(chroma: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Pearson correlation of a 12-bin chroma (C first) with the 24 keys, in :func:`all_keys` order."""
    scores = [np.corrcoef(chroma, np.roll(MAJOR_PROFILE, tonic))[0, 1] for tonic in range(12)]
    scores += [np.corrcoef(chroma, np.roll(MINOR_PROFILE, tonic))[0, 1] for tonic in range(12)]
    return np.nan_to_num(np.asarray(scores, np.float64), nan=-1.0)


def estimate_key(hpcp: npt.NDArray[np.float64]) -> KeyEstimate | None:
    chroma = fold(hpcp)
    if not np.any(chroma > 0) or np.ptp(chroma) == 0:
        return None
    scores = key_scores(chroma)
    order = np.argsort(scores)[::-1]
    keys = all_keys()
    return KeyEstimate(
        key=keys[int(order[0])],
        confidence=round(float(np.clip(scores[order[0]], 0.0, 1.0)), 4),
        alt=keys[int(order[1])],
        alt_confidence=round(float(np.clip(scores[order[1]], 0.0, 1.0)), 4),
    )
