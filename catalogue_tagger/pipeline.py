"""The catalogue job: discover what is new in a source, then tag it into Postgres.

    ObjectStore.list ─► discover ─► claim ─► decode workers ─► InferenceLoop ─► ResultWriter ─► Store

Decoding runs in worker processes (or inline with ``workers=0``), inference in this process (the one owner
of the accelerator), writes in a writer thread that owns its database connection; every queue between them
is bounded. Workers hand segments over through shared memory; the queue carries only which slot to read. This
is the one place where a failing track becomes a recorded failure and the run goes on.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, nullcontext
from dataclasses import dataclass, field

from catalogue_tagger.config import Settings

from catalogue_tagger.errors import BackendUnavailable, DecodeCrash, RunError, TaggerError, failure_of
from catalogue_tagger.decode_pool import (
    DecodeOptions, DecodePool, decode_options, decode_track, segments_in_flight, start_decoders,
)
from catalogue_tagger.heads import score_after_run
from catalogue_tagger.inference.base import CPU_MICRO_BATCH, Backend, open_backend, resolve_backend
from catalogue_tagger.messages import Message
from catalogue_tagger.models.specs import get_spec
from catalogue_tagger.records import TrackFailure, TrackTask
from catalogue_tagger.inference_loop import Finished, InferenceLoop
from catalogue_tagger.sources import ObjectStore
from catalogue_tagger.models.specs import ModelSpec
from catalogue_tagger.store.store import DiscoverCounts, RunLease, Store
from catalogue_tagger.writer import ResultWriter

logger = logging.getLogger(__name__)

CLAIM_CHUNK = 64


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


def discover_objects(source: ObjectStore, store: Store, *, partition_key: str | None = None) -> DiscoverCounts:
    """Record the source's new or changed objects (of one upload day when ``partition_key`` is given)."""
    objects = source.list()
    if partition_key is not None:
        objects = (o for o in objects if o.partition_key == partition_key)
    return store.record_objects(objects)


ProgressHook = Callable[[Finished, InferenceLoop], None]


def tag(
    source: ObjectStore,
    store: Store,
    settings: Settings,
    *,
    partition_key: str | None = None,
    force: bool = False,
    discover: bool = True,
    progress: ProgressHook | None = None,
    decoders: DecodePool | None = None,
) -> RunReport:
    """Tag every pending track of ``source`` (of ``partition_key`` when given) with ``settings.models``.

    ``discover``: list the source first (False when discovery already ran, e.g. as its own Dagster asset);
    ``force``: re-tag the selection even where already tagged; ``decoders``: this run's decode workers, already
    started by :func:`~catalogue_tagger.decode_pool.start_decoders` for ``source`` (else they start here; the
    caller closes what it started). The store must be migrated.
    """
    started = time.perf_counter()
    specs = {name: get_spec(name) for name in settings.models}
    feed = decode_options(settings)
    if decoders is not None and decoders.source != source.uri:
        raise ValueError(f"decode workers of {decoders.source} given for a run of {source.uri}")
    # The decode workers start first (unless the caller started them earlier still): their start-up (a process,
    # its imports, the descriptors' state; ~0.4 s) then overlaps discovery, the models' registration and the
    # opening of the backends instead of following them.
    with nullcontext(decoders) if decoders is not None else start_decoders(source.uri, settings) as pool:
        counts = discover_objects(source, store, partition_key=partition_key) if discover else DiscoverCounts()
        if force:
            store.mark_pending(partition_key=partition_key, source=source.uri)
        before = store.partition_status(partition_key, source.uri) if partition_key else None
        model_ids = {
            name: store.register_model(name, s.weights_sha256, s.labels, s.kind, s.embedding_size or None,
                                       settings.precision)
            for name, s in specs.items()
        }
        backends = {name: resolve_backend(settings, name)[0] for name in specs}
        with store.open_run(source.uri, list(settings.models), partition_key, precision=settings.precision,
                            backends=backends) as lease:
            skipped = (before or {}).get("tagged", 0) if partition_key else counts.unchanged
            return _tag_run(source, store, settings, lease, specs, model_ids, partition_key, progress, feed, pool,
                            started=started, skipped=skipped)


def _tag_run(
    source: ObjectStore,
    store: Store,
    settings: Settings,
    lease: RunLease,
    specs: Mapping[str, ModelSpec],
    model_ids: Mapping[str, int],
    partition_key: str | None,
    progress: ProgressHook | None,
    feed: DecodeOptions,
    pool: DecodePool | None,
    *,
    started: float,
    skipped: int,
) -> RunReport:
    """The run itself, from its lease to its finished ``runs`` row: every exit path closes the backends opened
    so far and the writer, and finishes the row — ``completed``, or ``failed`` with the error that ended the run
    in its stats (``{"error": {"kind", "detail"}}``), after which that error propagates."""
    run_id = lease.run_id
    writer = ResultWriter(store, run_id, model_ids, keep_segments=settings.keep_segments)
    segments_scored = 0
    error: BaseException | None = None
    try:
        with ExitStack() as backends_open:
            claims = _claims(store, lease, partition_key, source.uri)
            tasks = _PoolTasks(pool, claims, settings.workers) if pool is not None else None
            if tasks is not None:
                # The workers decode the first tracks while the backends open (torch's import and a model's load
                # take ~0.8 s, a TensorRT engine longer): their segments wait in the queue, within its bound.
                tasks.top_up()
            backends = _open_backends(specs, settings, backends_open)
            loop = InferenceLoop(backends, settings.batch_size, keep_segments=settings.keep_segments)
            try:
                if tasks is not None:
                    _run_pooled(tasks, loop, writer, settings, progress)
                else:
                    _run_inline(source, claims, feed, loop, writer, progress)
            finally:
                segments_scored = loop.segments_scored
        writer.close()  # raises if a write failed: then the run is recorded as failed
        score_after_run(store, run_id)  # heads score the new tracks from their stored embeddings
    except BaseException as exc:
        error = exc
        raise
    finally:
        _close_quietly(writer, run_id, error)
        report = RunReport(
            run_id=run_id,
            tagged=writer.tagged,
            failed=dict(writer.failed),
            skipped=skipped,
            audio_s=writer.audio_s,
            wall_s=time.perf_counter() - started,
            models={name: s.weights_sha256 for name, s in specs.items()},
            flags=dict(writer.flags),
            segments=segments_scored,
        )
        _finish_run(store, report, error)
    return report


def _open_backends(specs: Mapping[str, ModelSpec], settings: Settings, stack: ExitStack) -> dict[str, Backend]:
    """Every model's backend, each closed by ``stack``; when one cannot open, those opened before it are closed
    as the error leaves ``stack``. A failure that is not already a named error becomes
    :class:`BackendUnavailable` naming the model and the backend."""
    backends: dict[str, Backend] = {}
    for name in specs:
        try:
            backend = open_backend(name, settings)
        except TaggerError:
            raise
        except Exception as exc:  # the backend library's own error (a corrupt ONNX graph, a CUDA driver fault)
            which, _ = resolve_backend(settings, name)
            raise BackendUnavailable(
                f"{name}: the {which} backend could not open on {settings.device}: {type(exc).__name__}: {exc}"
            ) from exc
        backends[name] = stack.enter_context(backend)
    return backends


def _close_quietly(writer: ResultWriter, run_id: int, error: BaseException | None) -> None:
    """Close the writer; while another error is ending the run, a failing close is logged, not raised over it."""
    if error is None:
        writer.close()
        return
    try:
        writer.close()
    except Exception as exc:  # the run already ends with ``error``, the one to report
        if exc is not error:
            logger.warning("run %d: the result writer failed while the run was ending: %s", run_id, exc)


def _finish_run(store: Store, report: RunReport, error: BaseException | None) -> None:
    """Finish the ``runs`` row: ``completed``, or ``failed`` with the error's kind and detail in its stats.

    When the row cannot be written while an error is already ending the run, that error is the one to report:
    the run's lease ends with this process and the next run closes the row as ``abandoned``.
    """
    stats = report.as_dict()
    if error is not None:
        kind, detail = failure_of(error, RunError)
        stats["error"] = {"kind": kind, "detail": detail}
    try:
        store.finish_run(report.run_id, stats, "failed" if error is not None else "completed")
    except TaggerError as exc:
        if error is None:
            raise
        logger.warning("run %d failed and could not be recorded as failed: %s", report.run_id, exc)


def _claims(store: Store, lease: RunLease, partition_key: str | None, source: str) -> Iterator[TrackTask]:
    """The run's tracks, claimed a chunk at a time: pending, of the partition, under the run's source (a database
    may hold several sources' tracks; another source's are not this run's to open, or to fail)."""
    while True:
        lease.renew()  # after a server restart, hold the lease again before claiming more
        batch = store.claim_pending(lease.run_id, CLAIM_CHUNK, partition_key, source)
        if not batch:
            return
        yield from batch


def _emit(finished: list[Finished], writer: ResultWriter, loop: InferenceLoop, progress: ProgressHook | None) -> None:
    for item in finished:
        writer.put(item)
        if progress is not None:
            progress(item, loop)


def _run_inline(
    source: ObjectStore,
    claims: Iterator[TrackTask],
    feed: DecodeOptions,
    loop: InferenceLoop,
    writer: ResultWriter,
    progress: ProgressHook | None,
) -> None:
    for task in claims:
        for message in decode_track(source, task, feed):
            _emit(loop.feed(message), writer, loop, progress)
    _emit(loop.flush(), writer, loop, progress)


class _PoolTasks:
    """The run's claimed tracks handed to the decode workers, a few ahead of them: what was handed over and has
    not come back finished is ``submitted``."""

    def __init__(self, pool: DecodePool, claims: Iterator[TrackTask], workers: int) -> None:
        self.pool = pool
        self.submitted: dict[int, TrackTask] = {}
        self._claims = claims
        self._target = max(8, 4 * workers)  # tracks decoding or queued ahead of the workers
        self._exhausted = False

    def top_up(self) -> None:
        while not self._exhausted and len(self.submitted) < self._target:
            task = next(self._claims, None)
            if task is None:
                self._exhausted = True
                self.pool.no_more_tasks()
            else:
                self.submitted[task.track_id] = task
                self.pool.submit(task)

    def finished(self, items: list[Finished]) -> list[Finished]:
        for item in items:
            self.submitted.pop(item.track_id, None)
        return items


def _run_pooled(
    tasks: _PoolTasks,
    loop: InferenceLoop,
    writer: ResultWriter,
    settings: Settings,
    progress: ProgressHook | None,
) -> None:
    pool = tasks.pool
    # On a CPU, while the decoders are behind (no segment waiting), a partial batch that fills the inference
    # threads is scored rather than left waiting for the rest of its batch: at the start of a run the threads
    # otherwise idled until 64 segments were decoded (~1.7 s of a 14 s run here).
    early = settings.threads * CPU_MICRO_BATCH if settings.device == "cpu" else 0
    while True:
        tasks.top_up()
        try:
            # a segment's samples: valid until the next get
            message: Message | None = pool.get(timeout=0.0) if early else None
            behind = message is None and early > 0 and loop.ready(early)
            if message is None and not behind:
                message = pool.get(timeout=0.2)
        except EOFError:
            break
        if behind:
            finished = loop.score_ready(early)
        elif message is None:  # decoders quiet: score partial batches rather than wait
            finished = loop.flush()
        else:
            finished = loop.feed(message)  # copies a segment into its batch
        _emit(tasks.finished(finished), writer, loop, progress)
    _emit(tasks.finished(loop.flush()), writer, loop, progress)
    died = DecodeCrash("the decode worker died")
    lost = [TrackFailure(t.track_id, t.uri, *failure_of(died, DecodeCrash)) for t in tasks.submitted.values()]
    _emit(lost, writer, loop, progress)  # type: ignore[arg-type]


__all__ = ["RunReport", "discover_objects", "segments_in_flight", "tag"]
