"""Teacher targets: the taggers' taggrams (and embeddings) of every corpus track, computed once and cached.

A teacher's taggram is its sigmoid output for each of its windows on its own grid (musicnn patches: 48128
samples every 47872, reflect-padded by 256 at the track ends; the Won et al. FCN/CRNN: 29.1 s windows, no
overlap; see :mod:`catalogue_tagger.segment`): window ``k`` covers samples ``[hop k - pad, hop k - pad + window)``.
The soft target of a student window ``[start, start + length)`` is the mean, over the teachers, of the mean of
that teacher's windows overlapping it. A teacher with an embedding output (``musicnn-mtt``: its 200-d
penultimate layer) has it cached beside the taggram, and the embedding target of a student window is its mean
over the same overlapping windows. Stored as float32 ``.npy`` under ``CACHE/targets/<teacher>/`` and
``CACHE/targets/<teacher>.embedding/``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt
import torch

from catalogue_tagger.models.registry import load_model
from catalogue_tagger.models.specs import ModelSpec, get_spec
from catalogue_tagger.segment import Windowing, segment_track
from catalogue_tagger.training.corpus import Corpus, CorpusTrack, _save_npy

logger = logging.getLogger(__name__)

TEACHERS: tuple[str, ...] = ("musicnn-mtt", "vgg-mtt")
TEACHER_BATCH = 16

Taggram = npt.NDArray[np.float32]


def taggram_path(corpus: Corpus, teacher: str, track: CorpusTrack) -> Path:
    return corpus.cache_dir / "targets" / teacher / f"{track.cache_name}.npy"


def embedding_path(corpus: Corpus, teacher: str, track: CorpusTrack) -> Path:
    return corpus.cache_dir / "targets" / f"{teacher}.embedding" / f"{track.cache_name}.npy"


@torch.inference_mode()
def teacher_outputs(model: torch.nn.Module, wave: npt.NDArray[np.float32], windowing: Windowing,
                    batch: int = TEACHER_BATCH) -> tuple[Taggram, Taggram | None]:
    """``(n_windows, n_labels)`` sigmoid outputs of ``model`` over the whole track, and its
    ``(n_windows, embedding_size)`` embeddings when the model has them."""
    windows, _ = segment_track(wave, windowing)
    outputs = [model(torch.from_numpy(windows[i : i + batch])) for i in range(0, len(windows), batch)]
    probs = torch.cat([o[0] for o in outputs]).numpy().astype(np.float32)
    has_embedding = len(outputs[0]) > 2
    embedding = torch.cat([o[2] for o in outputs]).numpy().astype(np.float32) if has_embedding else None
    return probs, embedding


def teacher_taggram(model: torch.nn.Module, wave: npt.NDArray[np.float32], windowing: Windowing,
                    batch: int = TEACHER_BATCH) -> Taggram:
    """``(n_windows, n_labels)`` sigmoid outputs of ``model`` over the whole track."""
    return teacher_outputs(model, wave, windowing, batch)[0]


def compute_targets(corpus: Corpus, teachers: Sequence[str] = TEACHERS, device: str = "cpu",
                    on_track: Callable[[str, str], None] | None = None,
                    tracks: Sequence[CorpusTrack] | None = None) -> None:
    """Run each teacher over every track (of ``tracks``, default all) whose outputs are not cached yet."""
    for teacher in teachers:
        spec = get_spec(teacher)
        missing = [t for t in (corpus.tracks if tracks is None else tracks)
                   if not taggram_path(corpus, teacher, t).exists()
                   or (spec.embedding_size and not embedding_path(corpus, teacher, t).exists())]
        if not missing:
            continue
        windowing = Windowing(spec.window, spec.hop, spec.pad)
        model = load_model(teacher, device=device)
        for track in missing:
            wave = np.asarray(corpus.waveform(track), dtype=np.float32)
            probs, embedding = teacher_outputs(model, wave, windowing)
            if embedding is not None:
                _save_npy(embedding_path(corpus, teacher, track), embedding)
            _save_npy(taggram_path(corpus, teacher, track), probs)
            if on_track:
                on_track(teacher, track.track_id)
        logger.info("%s: outputs of %d tracks computed", teacher, len(missing))


class WindowMeans:
    """Per-window outputs of one teacher on one track, with fast means over sample ranges (prefix sums)."""

    def __init__(self, values: Taggram, hop: int, pad: int, window: int | None = None) -> None:
        if values.ndim != 2 or len(values) == 0:
            raise ValueError(f"outputs of shape {values.shape}, expected (n_windows >= 1, n_values)")
        self.values = values
        self.hop = hop
        self.pad = pad
        self.window = hop + pad if window is None else window  # samples window k covers, from hop k - pad
        self._prefix = np.concatenate([np.zeros((1, values.shape[1])), np.cumsum(values, axis=0, dtype=np.float64)])

    @classmethod
    def of(cls, values: Taggram, spec: ModelSpec) -> WindowMeans:
        return cls(values, spec.hop, spec.pad, spec.window)

    @property
    def mean(self) -> npt.NDArray[np.float32]:
        mean: npt.NDArray[np.float32] = self.values.mean(axis=0)
        return mean

    def patch_range(self, start: int, length: int) -> tuple[int, int]:
        """``[k_lo, k_hi)``: the windows overlapping samples ``[start, start + length)``, at least one."""
        n = len(self.values)
        k_lo = min(max(0, (start + self.pad - self.window) // self.hop + 1), n - 1)
        k_hi = -(-(start + length + self.pad) // self.hop)  # ceil
        return k_lo, min(max(k_hi, k_lo + 1), n)

    def range_mean(self, start: int, length: int) -> npt.NDArray[np.float32]:
        """Mean over the windows overlapping ``[start, start + length)``, ``(n_values,)``."""
        k_lo, k_hi = self.patch_range(start, length)
        mean: npt.NDArray[np.float32] = ((self._prefix[k_hi] - self._prefix[k_lo]) / (k_hi - k_lo)).astype(np.float32)
        return mean


class TrackTargets:
    """The teacher ensemble's targets of one track: tag scores (mean over teachers) and, optionally, one teacher's
    embedding, each as a mean over the teacher windows overlapping a student window."""

    def __init__(self, taggrams: Sequence[WindowMeans], embedding: WindowMeans | None = None) -> None:
        if not taggrams:
            raise ValueError("no teacher taggram")
        self.taggrams = tuple(taggrams)
        self.embedding = embedding

    @classmethod
    def single(cls, taggram: Taggram, patch_hop: int, patch_pad: int) -> TrackTargets:
        """One teacher's (or a pre-averaged) taggram on a musicnn-like grid."""
        return cls([WindowMeans(taggram, patch_hop, patch_pad)])

    @classmethod
    def load(cls, corpus: Corpus, track: CorpusTrack, teachers: Sequence[str] = TEACHERS,
             embedding_teacher: str | None = None) -> TrackTargets:
        taggrams = [WindowMeans.of(np.load(taggram_path(corpus, t, track)), get_spec(t)) for t in teachers]
        embedding = None
        if embedding_teacher:
            values = np.load(embedding_path(corpus, embedding_teacher, track))
            embedding = WindowMeans.of(values, get_spec(embedding_teacher))
        return cls(taggrams, embedding)

    @property
    def taggram(self) -> Taggram:
        """The first teacher's taggram (the only one for a single-teacher target)."""
        return self.taggrams[0].values

    @property
    def track_mean(self) -> npt.NDArray[np.float32]:
        """Mean over teachers of each teacher's mean over its windows, ``(n_labels,)``."""
        mean: npt.NDArray[np.float32] = np.mean([g.mean for g in self.taggrams], axis=0).astype(np.float32)
        return mean

    def patch_range(self, start: int, length: int) -> tuple[int, int]:
        """The first teacher's windows overlapping ``[start, start + length)``."""
        return self.taggrams[0].patch_range(start, length)

    def window(self, start: int, length: int) -> npt.NDArray[np.float32]:
        """Mean over teachers of their mean sigmoid over the windows overlapping ``[start, start + length)``."""
        if len(self.taggrams) == 1:
            return self.taggrams[0].range_mean(start, length)
        mean: npt.NDArray[np.float32] = np.mean([g.range_mean(start, length) for g in self.taggrams],
                                                axis=0).astype(np.float32)
        return mean

    def embedding_window(self, start: int, length: int) -> npt.NDArray[np.float32]:
        """The embedding teacher's mean embedding over the windows overlapping ``[start, start + length)``."""
        if self.embedding is None:
            raise ValueError("these targets have no embedding teacher")
        return self.embedding.range_mean(start, length)
