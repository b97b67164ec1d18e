"""Training examples: random crops of the cached waveforms with their soft teacher targets.

An epoch's plan (which track, where to crop, gain, polarity) is drawn from a generator seeded by
``(seed, epoch)`` alone, so a run resumed at epoch ``e`` sees exactly the examples an uninterrupted run would.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from catalogue_tagger.training.corpus import Corpus, CorpusTrack
from catalogue_tagger.training.targets import TEACHERS, TrackTargets

Floats = npt.NDArray[np.float32]

#: teacher probabilities are clipped to ``[LOGIT_EPS, 1 - LOGIT_EPS]`` before their log-odds are taken
LOGIT_EPS = 1e-3


def log_odds(probs: Floats, eps: float) -> npt.NDArray[np.float64]:
    """``log(p / (1 - p))`` in float64, with ``p`` clipped to ``[eps, 1 - eps]``."""
    p = np.clip(probs.astype(np.float64), eps, 1 - eps)
    result: npt.NDArray[np.float64] = np.log(p / (1 - p))
    return result


def logit_targets(probs: Floats) -> Floats:
    """Log-odds of soft targets, clipped at ``LOGIT_EPS`` (a tag the teachers rule out is -6.9, not -inf)."""
    result: Floats = log_odds(probs, LOGIT_EPS).astype(np.float32)
    return result


@dataclass(frozen=True)
class TrackSet:
    """The tracks of one split, their waveforms (float16, ``(samples,)``) and teacher targets."""

    tracks: tuple[CorpusTrack, ...]
    waves: tuple[npt.NDArray[np.float16], ...]
    targets: tuple[TrackTargets, ...]

    @classmethod
    def load(cls, corpus: Corpus, split: str, teachers: Sequence[str] = TEACHERS,
             embedding_teacher: str | None = None) -> TrackSet:
        tracks = tuple(corpus.split(split))
        return cls(tracks, tuple(np.asarray(corpus.waveform(t)) for t in tracks),
                   tuple(TrackTargets.load(corpus, t, teachers, embedding_teacher) for t in tracks))

    @property
    def has_embeddings(self) -> bool:
        return all(t.embedding is not None for t in self.targets) and len(self) > 0

    def embedding_stats(self) -> tuple[Floats, float]:
        """Mean teacher embedding over every teacher window of these tracks, ``(E,)``, and the mean per-dimension
        variance (the scale the embedding loss is divided by)."""
        values = np.concatenate([t.embedding.values for t in self.targets if t.embedding is not None])
        return values.mean(axis=0).astype(np.float32), float(values.var(axis=0).mean())

    def tag_logit_scale(self, window: int) -> float:
        """Mean per-tag variance of the teachers' log-odds targets over every non-overlapping window of these
        tracks (the scale the log-odds tag loss is divided by)."""
        values = np.stack([self.targets[i].window(s, window) for i, s in window_rows(self, window)])
        return float(logit_targets(values).astype(np.float64).var(axis=0).mean())

    def __len__(self) -> int:
        return len(self.tracks)


@dataclass(frozen=True)
class EpochPlan:
    """One example per row: track index, crop start (samples), gain (linear), polarity (+1/-1)."""

    track: npt.NDArray[np.int64]
    start: npt.NDArray[np.int64]
    gain: Floats
    sign: Floats

    def __len__(self) -> int:
        return len(self.track)

    def batches(self, batch_size: int, drop_last: bool = False) -> Iterator[slice]:
        """Consecutive row slices; ``drop_last`` skips a final short batch (batch norm needs more than one)."""
        end = len(self) - len(self) % batch_size if drop_last else len(self)
        for i in range(0, end, batch_size):
            yield slice(i, min(i + batch_size, len(self)))


def n_windows(samples: int, window: int) -> int:
    """Non-overlapping windows in a track, at least one (a short track is zero-padded to one)."""
    return max(1, samples // window)


def plan_epoch(data: TrackSet, window: int, seed: int, epoch: int, *, crops_per_track: int = 0,
               gain_db: float = 6.0) -> EpochPlan:
    """A shuffled epoch: per track, one random crop per window of audio, at most ``crops_per_track`` (> 0)."""
    rng = np.random.default_rng([seed, epoch])
    counts = [min(n_windows(len(w), window), crops_per_track or np.iinfo(np.int64).max) for w in data.waves]
    track = np.repeat(np.arange(len(data), dtype=np.int64), counts)
    room = np.array([max(len(w) - window, 0) for w in data.waves], dtype=np.int64)[track]
    start = (rng.random(len(track)) * (room + 1)).astype(np.int64)
    gain = (10.0 ** (rng.uniform(-gain_db, gain_db, len(track)) / 20.0)).astype(np.float32)
    sign = rng.choice(np.array([-1.0, 1.0], dtype=np.float32), len(track))
    order = rng.permutation(len(track))
    return EpochPlan(track[order], start[order], gain[order], sign[order])


def crop(wave: npt.NDArray[np.float16], start: int, window: int) -> Floats:
    """``wave[start : start + window]`` as float32, zero-padded at the end when the track is shorter."""
    out = np.zeros(window, np.float32)
    piece = wave[start : start + window]
    out[: len(piece)] = piece
    return out


def make_batch(data: TrackSet, plan: EpochPlan, rows: slice, window: int) -> tuple[Floats, Floats]:
    """``(waves[B, window], targets[B, n_labels])`` for the plan rows ``rows``, augmentation applied."""
    idx = range(*rows.indices(len(plan)))
    x = np.stack([crop(data.waves[plan.track[i]], int(plan.start[i]), window) for i in idx])
    x *= (plan.gain[rows] * plan.sign[rows])[:, None]
    y = np.stack([data.targets[plan.track[i]].window(int(plan.start[i]), window) for i in idx])
    return x, y


def embedding_batch(data: TrackSet, plan: EpochPlan, rows: slice, window: int) -> Floats:
    """``(B, E)``: the embedding teacher's mean embedding over each planned crop (gain and polarity do not apply:
    the teacher's embedding of a louder or inverted crop is taken to be the same)."""
    idx = range(*rows.indices(len(plan)))
    return np.stack([data.targets[plan.track[i]].embedding_window(int(plan.start[i]), window) for i in idx])


def window_rows(data: TrackSet, window: int, max_windows: int = 0) -> list[tuple[int, int]]:
    """``(track index, start)`` of every track's non-overlapping windows (``max_windows`` > 0: that many, evenly
    spread, per track; :func:`eval_starts`)."""
    return [(i, int(s)) for i, w in enumerate(data.waves) for s in eval_starts(len(w), window, max_windows)]


def eval_starts(samples: int, window: int, max_windows: int = 0) -> npt.NDArray[np.int64]:
    """Starts of a track's non-overlapping windows (the segmenter's, hop = window); ``max_windows`` > 0 keeps
    that many, evenly spread."""
    n = n_windows(samples, window)
    keep = np.arange(n) if not max_windows or n <= max_windows else np.linspace(0, n - 1, max_windows).round()
    return keep.astype(np.int64) * window
