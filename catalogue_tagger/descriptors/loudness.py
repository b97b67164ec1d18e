"""EBU R128 loudness of the decoded source frames: libavfilter's ``ebur128`` in a PyAV filter graph, and a true
peak by soxr oversampling.

The meters see the original channels at the original sample rate, before the downmix and resampling that feed
the taggers. Decoded frames go through ``abuffer → ebur128=metadata=1 → abuffersink``: the filter updates
integrated loudness (I) and loudness range (LRA) on every 100 ms block and writes them into each frame's metadata;
the last frame's values are the track's — the numbers ``ffmpeg -af ebur128`` prints in its summary.

True peak (BS.1770-4 annex 2: the peak of the 4× oversampled signal) is measured beside it rather than by the
filter's ``peak=true``, which oversamples every sample of every channel and costs twice the rest of the meter. We
oversample (``soxr.resample`` ×4, HQ, with 256 samples of context on each side) only frames whose sample peak is
within 3 dB of the running true peak — inter-sample peaks of music exceed the sample peak by well under that — so a
track costs a few percent of its frames. Memory is the filter's gating histograms and up to 33 frames (fixed).

Frames whose format, rate or layout changes mid-stream stop the measurement (values become ``None``).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

import av
import av.filter
import numpy as np
import numpy.typing as npt
import soxr

logger = logging.getLogger(__name__)

TRUE_PEAK_OVERSAMPLING = 4
TRUE_PEAK_MARGIN_DB = 3.0  # frames whose sample peak is further below the running true peak are not oversampled
TRUE_PEAK_CONTEXT = 256  # samples of the neighbouring frames given to the resampler on each side

#: Frames pushed into the meter between two drains of its sink. Each drain ends in PyAV raising "try again", which
#: cost as much as the meter itself when done per frame; the sink holds the frames in between (~0.25 MB), and
#: their metadata is read in the same order, so the figures are the same.
DRAIN_EVERY = 32
#: ebur128 reports -70 LUFS (its absolute gate) for silence; below this, integrated loudness is "none".
SILENCE_LUFS = -69.9


@dataclass(frozen=True)
class LoudnessEstimate:
    integrated_lufs: float | None
    range_lu: float | None
    true_peak_dbtp: float | None


class LoudnessMeter:
    """Push decoded PyAV audio frames with :meth:`push`; :meth:`finish` gives the EBU R128 figures."""

    def __init__(self) -> None:
        self._graph: Any = None
        self._signature: tuple[int, str, str] | None = None
        self._metadata: dict[str, str] = {}
        self._broken = False
        self._true_peak = TruePeakMeter()
        self._pushed = 0
        self.name = ""

    def push(self, frame: Any, samples: npt.NDArray[np.float32]) -> None:
        """A decoded PyAV frame and its samples, float32 ``(channels, samples)``
        (:func:`catalogue_tagger.decode.frame_samples`)."""
        if self._broken:
            return
        signature = (int(frame.sample_rate), str(frame.format.name), str(frame.layout.name))
        if self._graph is None:
            self._build(frame, signature)
        elif signature != self._signature:
            logger.debug("%s: audio format changed mid-stream (%s → %s): no loudness", self.name, self._signature, signature)
            self._broken = True
            return
        self._graph.push(frame)
        self._pushed += 1
        if self._pushed % DRAIN_EVERY == 0:
            self._drain()
        self._true_peak.push(samples, int(frame.sample_rate))

    def finish(self) -> LoudnessEstimate | None:
        if self._graph is None or self._broken:
            return None
        try:
            self._graph.push(None)
        except (av.error.FFmpegError, ValueError):
            pass
        self._drain()
        integrated = _number(self._metadata.get("lavfi.r128.I"))
        lra = _number(self._metadata.get("lavfi.r128.LRA"))
        if integrated is not None and integrated < SILENCE_LUFS:
            integrated, lra = None, None
        linear = self._true_peak.finish()
        true_peak = 20 * math.log10(linear) if linear > 0 else None
        return LoudnessEstimate(integrated, lra, true_peak)

    def _build(self, frame: Any, signature: tuple[int, str, str]) -> None:
        graph = av.filter.Graph()
        source = graph.add_abuffer(
            format=frame.format.name, sample_rate=frame.sample_rate, layout=frame.layout.name, time_base=frame.time_base
        )
        meter = graph.add("ebur128", "metadata=1")
        sink = graph.add("abuffersink")
        source.link_to(meter)
        meter.link_to(sink)
        graph.configure()
        self._graph, self._signature = graph, signature

    def _drain(self) -> None:
        while True:
            try:
                out = self._graph.pull()
            except (av.error.BlockingIOError, av.error.EOFError):
                return
            if out.metadata:
                self._metadata = dict(out.metadata)


def _number(text: str | None) -> float | None:
    if text is None:
        return None
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


class TruePeakMeter:
    """The running true peak (linear) of frames ``(channels, samples)``, oversampling only candidate frames.

    Frames are measured :data:`DRAIN_EVERY` at a time (their sample peaks in one pass), each once the frame after it
    has arrived, so the resampler sees context on both sides of it. Which frames are oversampled, and with what
    context, is the same as measuring frame by frame: the candidate test runs in order against the running peak.
    """

    def __init__(self) -> None:
        self.peak = 0.0
        self._left: npt.NDArray[np.float32] | None = None  # the tail of the frame before the first held one
        self._held: list[npt.NDArray[np.float32]] = []
        self._rate = 0

    def push(self, samples: npt.NDArray[np.float32], rate: int) -> None:
        self._held.append(samples)
        self._rate = rate
        if len(self._held) > DRAIN_EVERY:
            self._measure(final=False)

    def finish(self) -> float:
        if self._held:
            self._measure(final=True)
        return self.peak

    def _measure(self, final: bool) -> None:
        """Measure the held frames, all of them when ``final``, else all but the last (it has no right context)."""
        held = self._held
        ready = held if final else held[:-1]
        lengths = np.fromiter((f.shape[1] for f in ready), np.int64, len(ready))
        peaks = np.zeros(len(ready))
        filled = lengths > 0
        if filled.any():
            magnitudes = np.abs(np.concatenate([f for f in ready if f.shape[1]], axis=1)).max(axis=0)
            starts = np.concatenate([[0], np.cumsum(lengths[filled])[:-1]])
            peaks[filled] = np.maximum.reduceat(magnitudes, starts)
        margin = 10 ** (TRUE_PEAK_MARGIN_DB / 20)
        # The running peak is at least the running sample peak: frames this rules out are not candidates, whatever
        # the oversampled peaks before them (the test below then sees only the few that remain).
        floor = np.maximum.accumulate(np.maximum(peaks, self.peak))
        maybe = np.flatnonzero((peaks > 0) & (peaks * margin >= floor))
        for i in maybe.tolist():
            self.peak = max(self.peak, float(floor[i]))  # the running peak as frame by frame, up to frame i
            if peaks[i] * margin < self.peak:
                continue
            left = ready[i - 1][:, -TRUE_PEAK_CONTEXT:] if i > 0 else self._left
            right = held[i + 1][:, :TRUE_PEAK_CONTEXT] if i + 1 < len(held) else None
            self.peak = max(self.peak, self._oversampled_peak(left, ready[i], right))
        if ready:
            self.peak = max(self.peak, float(floor[-1]))
            self._left = ready[-1][:, -TRUE_PEAK_CONTEXT:]
        self._held = [] if final else held[-1:]

    def _oversampled_peak(self, left: npt.NDArray[np.float32] | None, middle: npt.NDArray[np.float32],
                          right: npt.NDArray[np.float32] | None) -> float:
        parts = [p for p in (left, middle, right) if p is not None and p.shape[1]]
        signal = np.ascontiguousarray(np.concatenate(parts, axis=1).T)  # soxr takes (samples, channels)
        up = soxr.resample(signal, self._rate, self._rate * TRUE_PEAK_OVERSAMPLING, quality="HQ")
        start = (left.shape[1] if left is not None else 0) * TRUE_PEAK_OVERSAMPLING
        inside = up[start : start + middle.shape[1] * TRUE_PEAK_OVERSAMPLING]
        return float(np.abs(inside).max()) if len(inside) else 0.0
