"""The catalogue job: discover what is new in a source, then tag it into Postgres.

    ObjectStore.list ─► discover ─► claim ─► decode workers ─► InferenceLoop ─► ResultWriter ─► Store

Decoding runs in worker processes (or inline with ``workers=0``), inference in this process (the one owner
of the accelerator), writes in a writer thread that owns its database connection; every queue between them
is bounded. This is the one place where a failing track becomes a recorded failure and the run goes on.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from catalogue_tagger.feeder import DecodePool, FeedOptions, decode_track, windowings_for
from catalogue_tagger.inference.base import Backend, open_backend
from catalogue_tagger.messages import Message
from catalogue_tagger.models.registry import get_spec
from catalogue_tagger.records import TrackFailure, TrackResult, TrackTask
from catalogue_tagger.scoring import Finished, InferenceLoop
from catalogue_tagger.sources import ObjectStore
from catalogue_tagger.store.store import DiscoverCounts, Store
from catalogue_tagger.writer import ResultWriter

logger = logging.getLogger(__name__)

CLAIM_CHUNK = 64
SEGMENTS_IN_FLIGHT = 256  # bound of the decode → inference queue (≈ 50 MB of musicnn windows)


@dataclass(frozen=True)
class TagOptions:
    models: tuple[str, ...] = ("musicnn-mtt",)
    batch_size: int = 64
    workers: int = 1  # decode processes; 0 decodes inline (no subprocesses)
    device: str = "cpu"
    backend: str = "torch"
    force: bool = False  # re-tag the selection even if already tagged
    max_duration_s: float | None = None
    keep_segments: bool = False  # store the per-segment taggram too
    s3_endpoint_url: str | None = None
    discover: bool = True  # list the source first; False when discovery already ran (e.g. its own Dagster asset)
    descriptors: bool = True  # tempo, key and loudness from the same decode, stored in track_descriptors


@dataclass(frozen=True)
class RunReport:
    run_id: int
    tagged: int
    failed: dict[str, int]
    skipped: int  # tracks of the selection already tagged (not re-tagged)
    audio_s: float
    wall_s: float
    models: dict[str, str]  # name -> weights sha256
    flags: dict[str, int] = field(default_factory=dict)
    segments: int = 0

    @property
    def xrealtime(self) -> float:
        return self.audio_s / self.wall_s if self.wall_s > 0 else 0.0

    @property
    def n_failed(self) -> int:
        return sum(self.failed.values())

    def as_dict(self) -> dict[str, object]:
        return {
            "run_id": self.run_id,
            "tagged": self.tagged,
            "failed": self.failed,
            "skipped": self.skipped,
            "audio_s": round(self.audio_s, 3),
            "wall_s": round(self.wall_s, 3),
            "xrealtime": round(self.xrealtime, 2),
            "models": self.models,
            "flags": self.flags,
            "segments": self.segments,
        }


def discover(source: ObjectStore, store: Store, *, partition_key: str | None = None) -> DiscoverCounts:
    """Record the source's new or changed objects (of one upload day when ``partition_key`` is given)."""
    objects = source.list()
    if partition_key is not None:
        objects = (o for o in objects if o.partition_key == partition_key)
    return store.record_objects(objects)


ProgressHook = Callable[[Finished, InferenceLoop], None]


def tag(
    source: ObjectStore,
    store: Store,
    options: TagOptions,
    *,
    partition_key: str | None = None,
    progress: ProgressHook | None = None,
) -> RunReport:
    """Discover (unless ``options.discover`` is off), then tag every pending track of the source (of
    ``partition_key`` when given)."""
    started = time.perf_counter()
    counts = discover(source, store, partition_key=partition_key) if options.discover else DiscoverCounts()
    if options.force:
        store.mark_pending(partition_key=partition_key)
    before = store.partition_status(partition_key) if partition_key else None
    specs = {name: get_spec(name) for name in options.models}
    model_ids = {
        name: store.register_model(name, s.weights_sha256, s.labels, s.kind, s.embedding_size or None)
        for name, s in specs.items()
    }
    run_id = store.start_run(source.uri, list(options.models), partition_key)
    backends = {name: open_backend(name, options.backend, options.device, max_batch=options.batch_size) for name in specs}
    writer = ResultWriter(store, run_id, model_ids, keep_segments=options.keep_segments)
    loop = InferenceLoop(backends, options.batch_size, keep_segments=options.keep_segments)
    feed = FeedOptions(windowings_for(specs), options.max_duration_s, descriptors=options.descriptors)
    status = "failed"
    try:
        claims = _claims(store, run_id, partition_key)
        if options.workers > 0:
            _run_pooled(source, claims, feed, loop, writer, options, progress)
        else:
            _run_inline(source, claims, feed, loop, writer, progress)
        writer.close()  # raises if a write failed: then the run is recorded as failed
        status = "completed"
    finally:
        for backend in backends.values():
            backend.close()
        try:
            writer.close()
        finally:
            report = RunReport(
                run_id=run_id,
                tagged=writer.tagged,
                failed=dict(writer.failed),
                skipped=(before or {}).get("tagged", 0) if partition_key else counts.unchanged,
                audio_s=writer.audio_s,
                wall_s=time.perf_counter() - started,
                models={name: s.weights_sha256 for name, s in specs.items()},
                flags=dict(writer.flags),
                segments=loop.segments_scored,
            )
            store.finish_run(run_id, report.as_dict(), status)
    return report


def _claims(store: Store, run_id: int, partition_key: str | None) -> Iterator[TrackTask]:
    while batch := store.claim_pending(run_id, CLAIM_CHUNK, partition_key):
        yield from batch


def _emit(finished: list[Finished], writer: ResultWriter, loop: InferenceLoop, progress: ProgressHook | None) -> None:
    for item in finished:
        writer.put(item)
        if progress is not None:
            progress(item, loop)


def _run_inline(
    source: ObjectStore,
    claims: Iterator[TrackTask],
    feed: FeedOptions,
    loop: InferenceLoop,
    writer: ResultWriter,
    progress: ProgressHook | None,
) -> None:
    for task in claims:
        for message in decode_track(source, task, feed):
            _emit(loop.feed(message), writer, loop, progress)
    _emit(loop.flush(), writer, loop, progress)


def _run_pooled(
    source: ObjectStore,
    claims: Iterator[TrackTask],
    feed: FeedOptions,
    loop: InferenceLoop,
    writer: ResultWriter,
    options: TagOptions,
    progress: ProgressHook | None,
) -> None:
    pool = DecodePool(source.uri, options.s3_endpoint_url, feed, options.workers, SEGMENTS_IN_FLIGHT)
    submitted: dict[int, TrackTask] = {}
    target = max(8, 4 * options.workers)  # tracks decoding or queued ahead of the workers
    pending = iter(claims)
    exhausted = False
    try:
        while True:
            while not exhausted and len(submitted) < target:
                task = next(pending, None)
                if task is None:
                    exhausted = True
                    pool.no_more_tasks()
                else:
                    submitted[task.track_id] = task
                    pool.submit(task)
            try:
                message: Message | None = pool.get(timeout=0.2)
            except EOFError:
                break
            if message is None:  # decoders quiet: score partial batches rather than wait
                finished = loop.flush()
            else:
                finished = loop.feed(message)
            for item in finished:
                submitted.pop(item.track_id, None)
            _emit(finished, writer, loop, progress)
        finished = loop.flush()
        for item in finished:
            submitted.pop(item.track_id, None)
        _emit(finished, writer, loop, progress)
        lost = [TrackFailure(t.track_id, t.uri, "decode_crash", "the decode worker died") for t in submitted.values()]
        _emit(lost, writer, loop, progress)  # type: ignore[arg-type]
    finally:
        pool.close()


__all__ = ["RunReport", "TagOptions", "TrackResult", "discover", "tag", "Backend"]
