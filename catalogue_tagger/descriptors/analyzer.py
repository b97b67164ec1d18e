"""One track's descriptors from the decode pass: source frames feed the loudness meter, 16 kHz chunks feed the
tempo and key trackers, and :meth:`DescriptorAnalyzer.finish` turns the small accumulators into a record.

    analyzer = DescriptorAnalyzer(name=uri)
    with decode_stream(fileobj, on_frame=analyzer.push_frame) as audio:
        for chunk in audio:
            analyzer.push(chunk)
    descriptors = analyzer.finish()          # Descriptors (values None where nothing could be measured)

Memory is constant in the track's length: a 12 s onset-envelope buffer and an 801-lag tempogram, a 36-bin
pitch-class sum, the ``ebur128`` filter's histograms and a few dozen source frames for the true peak.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from catalogue_tagger.descriptors.key import KeyTracker
from catalogue_tagger.descriptors.loudness import LoudnessMeter
from catalogue_tagger.descriptors.tempo import TempoTracker
from catalogue_tagger.records import Descriptors

#: The descriptor algorithm's version, stored with every row (like a model's weights hash): bump it whenever a
#: change to tempo, key or loudness could change a stored value.
DESCRIPTORS_VERSION = 1


class DescriptorAnalyzer:
    """Accumulates one track; not reusable (make one per track)."""

    def __init__(self, *, name: str = "") -> None:
        self.name = name
        self._tempo = TempoTracker()
        self._key = KeyTracker()
        self._loudness = LoudnessMeter()
        self._loudness.name = name

    def push_frame(self, frame: Any, samples: npt.NDArray[np.float32]) -> None:
        """A decoded PyAV audio frame and its float32 ``(channels, samples)``, original channels and rate (for
        loudness): :func:`catalogue_tagger.decode.decode_stream`'s ``on_frame``."""
        self._loudness.push(frame, samples)

    def push(self, chunk: npt.NDArray[np.float32]) -> None:
        """A chunk of the 16 kHz mono stream the taggers get (for tempo and key)."""
        if len(chunk):
            self._tempo.push(chunk)
            self._key.push(chunk)

    def finish(self) -> Descriptors:
        tempo = self._tempo.finish()
        key = self._key.finish()
        loudness = self._loudness.finish()
        return Descriptors(
            version=DESCRIPTORS_VERSION,
            tempo_bpm=tempo.bpm if tempo else None,
            tempo_confidence=tempo.confidence if tempo else None,
            tempo_alt_bpm=tempo.alt_bpm if tempo else None,
            tempo_alt_confidence=tempo.alt_confidence if tempo else None,
            key=key.key.name if key else None,
            key_confidence=key.confidence if key else None,
            key_alt=key.alt.name if key else None,
            key_alt_confidence=key.alt_confidence if key else None,
            camelot=key.key.camelot if key else None,
            loudness_lufs=_rounded(loudness.integrated_lufs) if loudness else None,
            loudness_range_lu=_rounded(loudness.range_lu) if loudness else None,
            true_peak_dbtp=_rounded(loudness.true_peak_dbtp) if loudness else None,
        )


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 3)
