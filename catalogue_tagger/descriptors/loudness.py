"""EBU R128 loudness of the decoded source frames, by libavfilter's ``ebur128`` in a PyAV filter graph.

The meter sees the original channels at the original sample rate, before the downmix and resampling that feed
the taggers: decoded frames go through ``abuffer → ebur128=peak=true:metadata=1 → abuffersink``. The filter
updates integrated loudness (I), loudness range (LRA) and the per-channel true peaks on every 100 ms block and
writes them into each frame's metadata; the last frame's values are the track's — the same numbers
``ffmpeg -af ebur128=peak=true`` prints in its summary. Memory is the filter's own gating histograms (fixed).

Frames whose format, rate or layout changes mid-stream stop the measurement (values become ``None``).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

import av
import av.filter

logger = logging.getLogger(__name__)

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
        self._drain()

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
        peaks = [_number(v) for k, v in self._metadata.items() if k.startswith("lavfi.r128.true_peaks_ch")]
        linear = max((p for p in peaks if p is not None), default=None)
        if integrated is not None and integrated < SILENCE_LUFS:
            integrated, lra = None, None
        true_peak = 20 * math.log10(linear) if linear else None
        return LoudnessEstimate(integrated, lra, true_peak)

    def _build(self, frame: Any, signature: tuple[int, str, str]) -> None:
        graph = av.filter.Graph()
        source = graph.add_abuffer(
            format=frame.format.name, sample_rate=frame.sample_rate, layout=frame.layout.name, time_base=frame.time_base
        )
        meter = graph.add("ebur128", "peak=true:metadata=1")
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
