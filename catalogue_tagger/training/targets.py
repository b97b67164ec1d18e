"""Teacher targets: the spectrogram taggers' taggrams of every corpus track, computed once and cached.

A teacher's taggram is its sigmoid output for each of its windows (musicnn patches: 48128 samples every 47872,
reflect-padded by 256 at the track ends, see :mod:`catalogue_tagger.segment`). The soft target of a student
window ``[start, start + length)`` is the mean, over the teachers, of the mean of the patches that overlap it;
patch ``k`` covers samples ``[47872 k - 256, 47872 k + 47872)``. Taggrams are stored per teacher as float32
``.npy`` under ``CACHE/targets/<teacher>/``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt
import torch

from catalogue_tagger.models.registry import get_spec, load_model
from catalogue_tagger.segment import Windowing, segment_track
from catalogue_tagger.training.corpus import Corpus, CorpusTrack, _save_npy

logger = logging.getLogger(__name__)

TEACHERS: tuple[str, ...] = ("musicnn-mtt", "vgg-mtt")
TEACHER_BATCH = 16

Taggram = npt.NDArray[np.float32]


def taggram_path(corpus: Corpus, teacher: str, track: CorpusTrack) -> Path:
    return corpus.cache_dir / "targets" / teacher / f"{track.cache_name}.npy"


@torch.inference_mode()
def teacher_taggram(model: torch.nn.Module, wave: npt.NDArray[np.float32], windowing: Windowing,
                    batch: int = TEACHER_BATCH) -> Taggram:
    """``(n_patches, n_labels)`` sigmoid outputs of ``model`` over the whole track."""
    windows, _ = segment_track(wave, windowing)
    probs = [model(torch.from_numpy(windows[i : i + batch]))[0] for i in range(0, len(windows), batch)]
    return torch.cat(probs).numpy().astype(np.float32)


def compute_targets(corpus: Corpus, teachers: Sequence[str] = TEACHERS, device: str = "cpu",
                    on_track: Callable[[str, str], None] | None = None) -> None:
    """Run each teacher over every track whose taggram is not cached yet."""
    for teacher in teachers:
        missing = [t for t in corpus.tracks if not taggram_path(corpus, teacher, t).exists()]
        if not missing:
            continue
        spec = get_spec(teacher)
        windowing = Windowing(spec.window, spec.hop, spec.pad)
        model = load_model(teacher, device="cpu")
        for track in missing:
            wave = np.asarray(corpus.waveform(track), dtype=np.float32)
            _save_npy(taggram_path(corpus, teacher, track), teacher_taggram(model, wave, windowing))
            if on_track:
                on_track(teacher, track.track_id)
        logger.info("%s: taggrams of %d tracks computed", teacher, len(missing))


class TrackTargets:
    """The teacher ensemble's taggram of one track, with fast window means (prefix sums over patches)."""

    def __init__(self, taggram: Taggram, patch_hop: int, patch_pad: int) -> None:
        if taggram.ndim != 2 or len(taggram) == 0:
            raise ValueError(f"taggram of shape {taggram.shape}, expected (n_patches >= 1, n_labels)")
        self.taggram = taggram
        self.patch_hop = patch_hop
        self.patch_pad = patch_pad
        self._prefix = np.concatenate([np.zeros((1, taggram.shape[1])), np.cumsum(taggram, axis=0, dtype=np.float64)])

    @classmethod
    def load(cls, corpus: Corpus, track: CorpusTrack, teachers: Sequence[str] = TEACHERS) -> TrackTargets:
        taggrams = [np.load(taggram_path(corpus, t, track)) for t in teachers]
        spec = get_spec(teachers[0])
        if any((get_spec(t).hop, get_spec(t).pad) != (spec.hop, spec.pad) for t in teachers):
            raise ValueError(f"teachers {teachers} do not share one patch grid")
        n = min(len(g) for g in taggrams)
        return cls(np.mean([g[:n] for g in taggrams], axis=0).astype(np.float32), spec.hop, spec.pad)

    @property
    def track_mean(self) -> npt.NDArray[np.float32]:
        mean: npt.NDArray[np.float32] = self.taggram.mean(axis=0)
        return mean

    def patch_range(self, start: int, length: int) -> tuple[int, int]:
        """``[k_lo, k_hi)``: the patches overlapping samples ``[start, start + length)``, at least one."""
        n = len(self.taggram)
        k_lo = min(max(start, 0) // self.patch_hop, n - 1)
        k_hi = -(-(start + length + self.patch_pad) // self.patch_hop)  # ceil
        return k_lo, min(max(k_hi, k_lo + 1), n)

    def window(self, start: int, length: int) -> npt.NDArray[np.float32]:
        """Mean teacher sigmoid over the patches overlapping ``[start, start + length)``, ``(n_labels,)``."""
        k_lo, k_hi = self.patch_range(start, length)
        mean: npt.NDArray[np.float32] = ((self._prefix[k_hi] - self._prefix[k_lo]) / (k_hi - k_lo)).astype(np.float32)
        return mean
