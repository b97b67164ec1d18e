"""Tag individual files without a database: decode, segment, score, aggregate — the pipeline's own stages."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from catalogue_tagger.config import Settings
from catalogue_tagger.decode_pool import decode_options, decode_track
from catalogue_tagger.inference.base import open_backend
from catalogue_tagger.records import TrackFailure, TrackResult, TrackTask
from catalogue_tagger.inference_loop import InferenceLoop
from catalogue_tagger.sources import FolderStore


@dataclass(frozen=True)
class Prediction:
    path: str
    outcome: TrackResult | TrackFailure


def predict_files(paths: Sequence[str | Path], settings: Settings) -> Iterator[Prediction]:
    """One :class:`Prediction` per file, in order; each file is decoded once for all ``settings.models``
    (``settings.keep_segments``: keep the taggram)."""
    feed = decode_options(settings)  # an unknown model name raises here, before a backend opens
    with ExitStack() as stack:
        backends = {name: stack.enter_context(open_backend(name, settings)) for name in settings.models}
        for track_id, raw in enumerate(paths):
            path = Path(raw).absolute()
            loop = InferenceLoop(backends, settings.batch_size, keep_segments=settings.keep_segments)
            task = TrackTask(track_id, path.as_uri())
            finished = loop.feed_all(decode_track(FolderStore(path.parent), task, feed)) + loop.flush()
            yield Prediction(str(raw), finished[0])
