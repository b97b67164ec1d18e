"""Tag individual files without a database: decode, segment, score, aggregate — the pipeline's own stages."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from catalogue_tagger.feeder import FeedOptions, decode_track, windowings_for
from catalogue_tagger.inference.base import open_backend
from catalogue_tagger.models.registry import get_spec
from catalogue_tagger.records import TrackFailure, TrackResult, TrackTask
from catalogue_tagger.scoring import InferenceLoop
from catalogue_tagger.sources import FolderStore


@dataclass(frozen=True)
class Prediction:
    path: str
    outcome: TrackResult | TrackFailure


def predict_files(
    paths: Sequence[str | Path],
    models: Sequence[str],
    *,
    batch_size: int = 64,
    backend: str = "torch",
    device: str = "cpu",
    keep_segments: bool = False,
    max_duration_s: float | None = None,
    descriptors: bool = True,
) -> Iterator[Prediction]:
    """One :class:`Prediction` per file, in order; each file is decoded once for all ``models`` (and, with
    ``descriptors``, measured for tempo, key and loudness in the same pass)."""
    specs = {name: get_spec(name) for name in models}
    backends = {name: open_backend(name, backend, device, max_batch=batch_size) for name in specs}
    feed = FeedOptions(windowings_for(specs), max_duration_s, descriptors=descriptors)
    try:
        for track_id, raw in enumerate(paths):
            path = Path(raw).absolute()
            loop = InferenceLoop(backends, batch_size, keep_segments=keep_segments)
            task = TrackTask(track_id, path.as_uri())
            finished = loop.feed_all(decode_track(FolderStore(path.parent), task, feed)) + loop.flush()
            yield Prediction(str(raw), finished[0])
    finally:
        for b in backends.values():
            b.close()
