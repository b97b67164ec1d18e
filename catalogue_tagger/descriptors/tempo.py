"""Tempo from a streamed onset envelope: a running tempogram, multi-level comb salience, a perceptual prior.

Streaming, constant memory: each 16 kHz chunk becomes a log-mel spectral-flux onset envelope at 100 frames/s
(an STFT by ``scipy.fft`` + librosa's mel filters, shipped by :mod:`catalogue_tagger.filterbanks`); every 12 s
Hann window of the envelope (hop 6 s) adds its autocorrelation (:func:`autocorrelate`, librosa's, normalised at
lag 0 and unbiased by the window's own autocorrelation) to one running sum — the mean autocorrelation tempogram,
which is all that is kept of the track (a few KB whatever its length).

At the end, every tempo on a fine log grid (30–300 BPM, 0.3 % steps) gets a *comb salience*: the mean
autocorrelation at its beat period and at 2, 3 and 4 beats (a bar), so one metrical level is supported by the
periodicities of the levels above it. The tempo is the maximum of the salience times a log-normal perceptual
prior (centred on 130 BPM, σ = 1.1 octave). The comb weights and the prior were chosen on a development set of
rendered MIDI (benchmarks/descriptors_bench.py --seed 0); the published figures use a fresh set (--seed 1). The competing octave is the
better of half and double that tempo. Confidences are the salience of each, scaled into [0, 1] by the share of
that octave pair each holds and by how periodic the envelope is at all (the comb salience itself, 1 for a
perfectly periodic envelope).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import scipy.fft

from catalogue_tagger import filterbanks
from catalogue_tagger.descriptors.frames import FrameStream

SAMPLE_RATE = 16_000
HOP = 160  # 10 ms: 100 envelope frames per second
FPS = SAMPLE_RATE / HOP
N_FFT = 512
N_MELS = 40
WINDOW_FRAMES = 1200  # 12 s tempogram windows ...
WINDOW_HOP = 600  # ... every 6 s
MAX_LAG = 800  # 8 s: a 4-beat bar at 30 BPM
MIN_WINDOW_OVERLAP = 0.1  # lags where the window overlaps itself less than this are not used
MIN_FRAMES = 400  # a track shorter than 4 s gets no tempo
MIN_BPM, MAX_BPM = 30.0, 300.0
REPORT_MIN_BPM, REPORT_MAX_BPM = 40.0, 240.0  # the reported tempo and its octave stay in this range
PRIOR_BPM, PRIOR_OCTAVES = 130.0, 1.1
COMB = ((1, 1.0), (2, 1.0), (3, 1.0), (4, 1.0))
GRID_STEPS_PER_OCTAVE = 240

Array = npt.NDArray[np.float32]


@dataclass(frozen=True)
class TempoEstimate:
    bpm: float
    confidence: float
    alt_bpm: float
    alt_confidence: float


class TempoTracker:
    """Feed 16 kHz mono chunks with :meth:`push`; :meth:`finish` gives the tempo (or ``None``)."""

    def __init__(self) -> None:
        self._mel = filterbanks.mel("tempo")  # librosa.filters.mel(sr=16000, n_fft=512, n_mels=40, 30-8000 Hz)
        self._fft_window = np.hanning(N_FFT + 1)[:-1].astype(np.float32)  # periodic Hann: librosa.stft's window
        self._frames_of = FrameStream(N_FFT, HOP)
        self._prev: Array | None = None  # last log-mel frame, for the flux across chunk boundaries
        self._envelope = np.zeros(0, np.float32)  # onset envelope not yet consumed by a full window
        self._acf = np.zeros(MAX_LAG + 1, np.float64)
        self._windows = 0
        self._frames = 0
        self._window = np.hanning(WINDOW_FRAMES)
        overlap = autocorrelate(self._window, MAX_LAG + 1)
        overlap = overlap / overlap[0]
        # Dividing by the window's own autocorrelation unbiases the lags: a periodic envelope then scores the
        # same at one beat and at four, so slower metrical levels are not penalised by the window's taper.
        self._unbias = np.where(overlap >= MIN_WINDOW_OVERLAP, 1.0 / np.maximum(overlap, MIN_WINDOW_OVERLAP), 0.0)

    def push(self, chunk: Array) -> None:
        raw = self._frames_of.push(chunk)
        n_frames = raw.shape[0]
        if n_frames == 0:
            return
        # librosa.stft(center=False), computed as one scipy.fft call over contiguous frames: 3× faster here.
        frames = raw * self._fft_window
        spectrum = scipy.fft.rfft(frames, axis=1)  # (n_frames, N_FFT // 2 + 1)
        power = spectrum.real**2 + spectrum.imag**2
        logmel = (10.0 * np.log10(np.maximum(1e-10, self._mel @ power.T))).astype(np.float32)  # power_to_db, ref 1
        previous = logmel[:, :1] if self._prev is None else self._prev[:, None]
        flux = np.maximum(0.0, np.diff(np.concatenate([previous, logmel], axis=1), axis=1)).mean(axis=0)
        self._prev = logmel[:, -1]
        self._frames += n_frames
        self._envelope = np.concatenate([self._envelope, flux.astype(np.float32)])
        while len(self._envelope) >= WINDOW_FRAMES:
            self._add_window(self._envelope[:WINDOW_FRAMES])
            self._envelope = self._envelope[WINDOW_HOP:]

    def _add_window(self, envelope: Array) -> None:
        centred = (envelope - envelope.mean()) * self._window
        acf = autocorrelate(centred, MAX_LAG + 1)
        if acf[0] > 1e-9:
            self._acf += acf / acf[0] * self._unbias
            self._windows += 1

    def finish(self) -> TempoEstimate | None:
        """The tempo of what was pushed; ``None`` for silence or less than 4 s of audio."""
        if self._windows == 0 and len(self._envelope) >= MIN_FRAMES:
            padded = np.zeros(WINDOW_FRAMES, np.float32)
            padded[: len(self._envelope)] = self._envelope
            self._add_window(padded)
        if self._windows == 0:
            return None
        return estimate_tempo(self._acf / self._windows)


def autocorrelate(y: npt.NDArray[np.floating], max_size: int) -> npt.NDArray[np.float64]:
    """``librosa.autocorrelate(y, max_size=max_size)`` of a real 1-d ``y``, as librosa computes it (numpy's FFT
    over ``y`` padded to a fast length of at least ``2 len(y) - 1``), without importing librosa into the decode
    workers (~1 s and ~110 MB each)."""
    n_pad = scipy.fft.next_fast_len(2 * len(y) - 1, real=True)
    spectrum = np.fft.rfft(y, n=n_pad)
    return np.asarray(np.fft.irfft(spectrum.real**2 + spectrum.imag**2, n=n_pad)[: min(max_size, len(y))])


def _grid() -> npt.NDArray[np.float64]:
    octaves = np.log2(MAX_BPM / MIN_BPM)
    return np.asarray(MIN_BPM * 2.0 ** (np.arange(int(octaves * GRID_STEPS_PER_OCTAVE) + 1) / GRID_STEPS_PER_OCTAVE))


def comb_salience(acf: npt.NDArray[np.float64], bpm: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Mean autocorrelation at the beat period of each tempo and its multiples up to a bar (0 beyond the lags)."""
    lags = np.arange(len(acf), dtype=np.float64)
    total = np.zeros_like(bpm)
    for multiple, weight in COMB:
        lag = multiple * 60.0 * FPS / bpm
        total += weight * np.interp(lag, lags, acf, right=0.0)
    return np.asarray(total / sum(w for _, w in COMB))


def prior(bpm: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    return np.asarray(np.exp(-0.5 * (np.log2(bpm / PRIOR_BPM) / PRIOR_OCTAVES) ** 2))


def estimate_tempo(acf: npt.NDArray[np.float64]) -> TempoEstimate | None:
    """Tempo, its competing octave and both confidences from a mean normalised autocorrelation (lag 0 = 1)."""
    grid = _grid()
    salience = np.maximum(comb_salience(acf, grid), 0.0)
    # Only local maxima of the salience are tempo candidates (a slope next to a strong peak is not a tempo).
    peaks = np.zeros_like(salience, dtype=bool)
    peaks[1:-1] = (salience[1:-1] >= salience[:-2]) & (salience[1:-1] > salience[2:])
    reportable = (grid >= REPORT_MIN_BPM) & (grid <= REPORT_MAX_BPM)
    score = np.where(peaks & reportable, salience * prior(grid), 0.0)
    if not np.any(score > 0):
        return None
    best = int(np.argmax(score))
    bpm = _refine(grid, salience, best)
    candidates = [bpm / 2.0, bpm * 2.0]
    alt_scores = [float(_local_max(grid, salience, c) * prior(np.array([c]))[0]) for c in candidates]
    in_range = [REPORT_MIN_BPM / 1.05 <= c <= REPORT_MAX_BPM * 1.05 for c in candidates]
    order = sorted(range(2), key=lambda i: (in_range[i], alt_scores[i]), reverse=True)
    alt = candidates[order[0]]
    alt_score = alt_scores[order[0]] if in_range[order[0]] else 0.0
    best_score = float(score[best])
    periodicity = float(np.clip(salience[best], 0.0, 1.0))
    share = best_score / (best_score + alt_score) if best_score + alt_score > 0 else 0.0
    alt_share = 1.0 - share if alt_score > 0 else 0.0
    return TempoEstimate(
        bpm=round(bpm, 2),
        confidence=round(float(np.clip(2.0 * periodicity * share, 0.0, 1.0)), 4),
        alt_bpm=round(alt, 2),
        alt_confidence=round(float(np.clip(2.0 * periodicity * alt_share, 0.0, 1.0)), 4),
    )


def _local_max(grid: npt.NDArray[np.float64], salience: npt.NDArray[np.float64], bpm: float) -> float:
    """The salience peak within ±3 % of ``bpm`` (0 outside the grid)."""
    near = (grid >= bpm / 1.03) & (grid <= bpm * 1.03)
    return float(salience[near].max()) if np.any(near) else 0.0


def _refine(grid: npt.NDArray[np.float64], salience: npt.NDArray[np.float64], index: int) -> float:
    """Parabolic interpolation of the salience peak on the log grid."""
    if 0 < index < len(grid) - 1:
        left, mid, right = salience[index - 1 : index + 2]
        denom = left - 2 * mid + right
        shift = 0.5 * (left - right) / denom if denom < 0 else 0.0
        return float(grid[index] * 2.0 ** (float(np.clip(shift, -0.5, 0.5)) / GRID_STEPS_PER_OCTAVE))
    return float(grid[index])
