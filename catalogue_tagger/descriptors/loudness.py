"""EBU R128 loudness of the decoded source frames: libavfilter's ``ebur128`` in a PyAV filter graph, and a true
peak by soxr oversampling.

The meters see the original channels at the original sample rate, before the downmix and resampling that feed
the taggers. Decoded frames go through ``abuffer → ebur128=metadata=1 → abuffersink``: the filter updates
integrated loudness (I) and loudness range (LRA) on every 100 ms block and writes them into each frame's metadata;
the last frame's values are the track's — the numbers ``ffmpeg -af ebur128`` prints in its summary.

True peak (BS.1770-4 annex 2: the peak of the 4× oversampled signal) is measured beside it rather than by the
filter's ``peak=true``, which oversamples every sample of every channel and costs twice the rest of the meter. We
oversample (``soxr.resample`` ×4, HQ, with 256 samples of context on each side) only the sub-blocks of 1024
samples whose sample peak is within 3 dB of the running true peak — inter-sample peaks of music exceed the sample
peak by well under that — each run of consecutive candidates in one call, so a track costs a few percent of its
samples. Memory is the filter's gating histograms, the sink's few blocks and under 100,000 samples held for the
true peak (fixed).

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
TRUE_PEAK_MARGIN_DB = 3.0  # sub-blocks whose sample peak is further below the running true peak are not oversampled
TRUE_PEAK_CONTEXT = 256  # samples of the stream given to the resampler on each side of what it measures
TRUE_PEAK_BLOCK = 1024  # samples per candidate test (23 ms at 44.1 kHz)
TRUE_PEAK_MEASURE = 65_536  # samples measured together (fewer, longer runs of candidates; ~1.5 s at 44.1 kHz)

#: Frames pushed into the meter between two drains of its sink. Each drain ends in PyAV raising "try again", which
#: cost as much as the meter itself when done per codec frame; the decoder's blocks (16,384 samples) are pushed,
#: the sink holds the few in between (~0.5 MB), and their metadata is read in the same order: the same figures.
DRAIN_EVERY = 4
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
    """The running true peak (linear) of a stream of blocks ``(channels, samples)``, of any sizes.

    The stream is cut into fixed sub-blocks of :data:`TRUE_PEAK_BLOCK` samples, whatever the decoder's framing.
    A sub-block is a candidate when its sample peak is within :data:`TRUE_PEAK_MARGIN_DB` of the running peak
    (which is at least the running sample peak); each run of consecutive candidates is oversampled in one call,
    with :data:`TRUE_PEAK_CONTEXT` samples of the stream on each side. Samples are measured once
    :data:`TRUE_PEAK_CONTEXT` samples after them have arrived, :data:`TRUE_PEAK_MEASURE` at a time; what is held
    is less than that and one pushed block.
    """

    def __init__(self) -> None:
        self.peak = 0.0
        self._pending: list[npt.NDArray[np.float32]] = []  # received, not yet measured
        self._held = 0
        self._left: npt.NDArray[np.float32] | None = None  # the last measured samples: left context
        self._rate = 0

    def push(self, samples: npt.NDArray[np.float32], rate: int) -> None:
        self._rate = rate
        if samples.shape[1] == 0:
            return
        self._pending.append(samples)
        self._held += samples.shape[1]
        if self._held < TRUE_PEAK_MEASURE + TRUE_PEAK_CONTEXT:
            return
        pending = np.concatenate(self._pending, axis=1) if len(self._pending) > 1 else self._pending[0]
        ready = (pending.shape[1] - TRUE_PEAK_CONTEXT) // TRUE_PEAK_BLOCK * TRUE_PEAK_BLOCK
        self._measure(pending[:, :ready], pending[:, ready : ready + TRUE_PEAK_CONTEXT])
        self._pending, self._held = [pending[:, ready:]], pending.shape[1] - ready

    def finish(self) -> float:
        if self._pending:
            self._measure(np.concatenate(self._pending, axis=1), None)
        self._pending, self._held = [], 0
        return self.peak

    def _measure(self, signal: npt.NDArray[np.float32], right: npt.NDArray[np.float32] | None) -> None:
        """Measure ``signal`` (whole sub-blocks, but for the stream's last), ``right`` being what follows it."""
        n = signal.shape[1]
        blocks = -(-n // TRUE_PEAK_BLOCK)
        magnitudes = np.abs(signal).max(axis=0)
        padded = np.zeros(blocks * TRUE_PEAK_BLOCK, np.float32)
        padded[:n] = magnitudes
        peaks = padded.reshape(blocks, TRUE_PEAK_BLOCK).max(axis=1)
        margin = 10 ** (TRUE_PEAK_MARGIN_DB / 20)
        # The running peak is at least the running sample peak: sub-blocks this rules out are not candidates,
        # whatever the oversampled peaks before them.
        floor = np.maximum.accumulate(np.maximum(peaks, self.peak))
        candidate = (peaks > 0) & (peaks * margin >= floor)
        for first, last in _runs(candidate):
            if float(peaks[first:last].max()) * margin < self.peak:
                continue  # the oversampled peaks of the runs before this one rule it out
            start, stop = first * TRUE_PEAK_BLOCK, min(n, last * TRUE_PEAK_BLOCK)
            self.peak = max(self.peak, self._oversampled_peak(signal, start, stop, right))
        self.peak = max(self.peak, float(floor[-1]))
        if n < TRUE_PEAK_CONTEXT and self._left is not None:
            signal = np.concatenate([self._left, signal], axis=1)
        self._left = signal[:, -TRUE_PEAK_CONTEXT:]

    def _oversampled_peak(self, signal: npt.NDArray[np.float32], start: int, stop: int,
                          right: npt.NDArray[np.float32] | None) -> float:
        """The peak of ``signal[:, start:stop]`` oversampled, with the stream's context on both sides."""
        before = signal[:, max(0, start - TRUE_PEAK_CONTEXT) : start]
        short = TRUE_PEAK_CONTEXT - before.shape[1]
        left = self._left[:, max(0, self._left.shape[1] - short) :] if short and self._left is not None else None
        after = signal[:, stop : stop + TRUE_PEAK_CONTEXT]
        missing = TRUE_PEAK_CONTEXT - after.shape[1]
        beyond = right[:, :missing] if missing and right is not None else None
        parts = [p for p in (left, before, signal[:, start:stop], after, beyond) if p is not None and p.shape[1]]
        offset = (left.shape[1] if left is not None else 0) + before.shape[1]
        joined = np.ascontiguousarray(np.concatenate(parts, axis=1).T)  # soxr takes (samples, channels)
        up = soxr.resample(joined, self._rate, self._rate * TRUE_PEAK_OVERSAMPLING, quality="HQ")
        inside = up[offset * TRUE_PEAK_OVERSAMPLING : (offset + stop - start) * TRUE_PEAK_OVERSAMPLING]
        return float(np.abs(inside).max()) if len(inside) else 0.0


def _runs(flags: npt.NDArray[np.bool_]) -> list[tuple[int, int]]:
    """``[(first, last + 1), ...]`` of the runs of True in ``flags``."""
    edges = np.diff(np.concatenate([[0], flags.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(edges == 1).tolist(), np.flatnonzero(edges == -1).tolist()))
