"""Tempo, key and loudness of a track, measured while it is decoded for tagging (no second read of the file).

- :mod:`.tempo` — BPM with a confidence and the competing octave, from a streamed onset-envelope tempogram;
- :mod:`.key` — tonic and mode (24 keys) with a confidence and the runner-up, from a harmonically weighted
  pitch-class profile;
- :mod:`.loudness` — EBU R128 integrated loudness and loudness range by libavfilter's ``ebur128``, true peak by soxr oversampling,
  both on the original channels and rate;
- :mod:`.keys` — key names, Camelot codes and compatible keys.

Each keeps a constant-size accumulator per track; :class:`DescriptorAnalyzer` drives all three.
"""

from catalogue_tagger.descriptors.analyzer import DESCRIPTORS_VERSION, DescriptorAnalyzer
from catalogue_tagger.descriptors.keys import Key, UnknownKey, all_keys

__all__ = ["DESCRIPTORS_VERSION", "DescriptorAnalyzer", "Key", "UnknownKey", "all_keys"]
