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
track costs a few percent of its frames. Memory is the filter's gating histograms and two frames (fixed).

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
_INT_SCALE = {"u8": 128.0, "s16": 32768.0, "s32": 2147483648.0, "s64": 9223372036854775808.0}

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

    def push(self, frame: Any) -> None:
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
        self._true_peak.push(frame_channels(frame), int(frame.sample_rate))

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
    """The running true peak (linear) of frames ``(samples, channels)``, oversampling only candidate frames.

    A frame is measured when the next one arrives, so the resampler sees context on both sides of it.
    """

    def __init__(self) -> None:
        self.peak = 0.0
        self._left: npt.NDArray[np.float32] | None = None  # the tail of the frame before the pending one
        self._pending: npt.NDArray[np.float32] | None = None
        self._rate = 0

    def push(self, samples: npt.NDArray[np.float32], rate: int) -> None:
        if self._pending is not None:
            self._measure(samples[:TRUE_PEAK_CONTEXT])
        self._pending, self._rate = samples, rate

    def finish(self) -> float:
        if self._pending is not None:
            self._measure(None)
            self._pending = None
        return self.peak

    def _measure(self, right: npt.NDArray[np.float32] | None) -> None:
        middle = self._pending
        assert middle is not None
        left = self._left
        self._left = middle[-TRUE_PEAK_CONTEXT:]
        if not len(middle):
            return
        sample_peak = float(np.abs(middle).max())
        self.peak = max(self.peak, sample_peak)
        if sample_peak == 0.0 or sample_peak * 10 ** (TRUE_PEAK_MARGIN_DB / 20) < self.peak:
            return
        parts = [p for p in (left, middle, right) if p is not None and len(p)]
        up = soxr.resample(np.concatenate(parts), self._rate, self._rate * TRUE_PEAK_OVERSAMPLING, quality="HQ")
        start = (len(left) if left is not None else 0) * TRUE_PEAK_OVERSAMPLING
        inside = up[start : start + len(middle) * TRUE_PEAK_OVERSAMPLING]
        if len(inside):
            self.peak = max(self.peak, float(np.abs(inside).max()))


def frame_channels(frame: Any) -> npt.NDArray[np.float32]:
    """A PyAV audio frame as float32 ``(samples, channels)``, integers scaled by a power of two."""
    data = frame.to_ndarray()
    channels = frame.layout.nb_channels
    data = data.T if frame.format.is_planar else data.reshape(-1, channels)
    base = frame.format.name.rstrip("p")
    if base == "u8":
        return np.ascontiguousarray((data.astype(np.float32) - np.float32(128.0)) / np.float32(128.0))
    if base in _INT_SCALE:
        return np.ascontiguousarray(data.astype(np.float32) / np.float32(_INT_SCALE[base]))
    return np.ascontiguousarray(data, dtype=np.float32)
