"""Decode side of the pipeline: one track in, messages out (segments for every model, then done/failed).

A track is decoded once; each selected model's segmenter cuts the same 16 kHz stream into its own windows.
This module never imports torch: decode workers are separate processes that only need PyAV and soxr. Their
segments reach the inference process through shared memory (:mod:`catalogue_tagger.segment_ring`).
"""

from __future__ import annotations

import io
import logging
import multiprocessing as mp
import queue
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager as ContextManager, ExitStack, nullcontext
from dataclasses import dataclass
from multiprocessing.context import SpawnContext, SpawnProcess
from types import TracebackType
from typing import BinaryIO

from threadpoolctl import threadpool_limits

from catalogue_tagger.config import Settings
from catalogue_tagger.decode import decode_stream
from catalogue_tagger.errors import DecodeCrash, EmptyAudio, TaggerError, TooLarge, failure_of
from catalogue_tagger.messages import (
    Message, SegmentReady, SegmentShared, TrackDecoded, TrackFailed, TrackStarted, WorkerMessage,
)
from catalogue_tagger.models.specs import get_spec
from catalogue_tagger.records import TrackTask
from catalogue_tagger.segment_ring import ReaderGone, RingUnavailable, RingWriter, SegmentRing, plan_slots
from catalogue_tagger.segment import Segmenter, Windowing
from catalogue_tagger.sources import ObjectStore, open_source

logger = logging.getLogger(__name__)

SILENCE_PEAK = 1e-4  # a track whose peak stays below this is flagged "silent" (tagged, not failed)
WAIT_S = 1.0  # how often a worker waiting on a queue checks that its pool process still runs
JOIN_S = 5.0  # how long a finished worker is given to exit before it is terminated


@dataclass(frozen=True)
class DecodeOptions:
    windowings: dict[str, Windowing]  # model name -> its windows
    max_duration_s: float | None = None
    max_bytes: int | None = None  # larger objects fail as too_large before a byte of audio is decoded
    descriptors: bool = True  # tempo, key and loudness from the same decode


def _check_size(fileobj: BinaryIO, uri: str, max_bytes: int | None) -> None:
    """Named failures before a byte is decoded: an empty object, or one over ``max_bytes``."""
    size = fileobj.seek(0, io.SEEK_END)
    fileobj.seek(0)
    if size == 0:
        raise EmptyAudio(f"{uri}: empty object (0 bytes)")
    if max_bytes is not None and size > max_bytes:
        raise TooLarge(f"{uri}: {size} bytes, more than the maximum of {max_bytes}")


def decode_track(source: ObjectStore, task: TrackTask, options: DecodeOptions) -> Iterator[Message]:
    """Messages for one track: ``TrackStarted``, ``SegmentReady``…, then ``TrackDecoded`` or ``TrackFailed``.

    Every failure is a :class:`TrackFailed` with a named kind; nothing raised here stops a run.
    """
    yield TrackStarted(task.track_id, task.uri)
    segmenters = {name: Segmenter(w) for name, w in options.windowings.items()}
    peak = 0.0
    analyzer = None
    if options.descriptors:
        # Imported here: librosa and scipy add ~110 MB to a decode worker, which a run without descriptors skips.
        from catalogue_tagger.descriptors import DescriptorAnalyzer

        analyzer = DescriptorAnalyzer(name=task.uri)
    try:
        with source.open(task.uri) as fileobj:
            _check_size(fileobj, task.uri, options.max_bytes)
            with decode_stream(
                fileobj, max_duration_s=options.max_duration_s, name=task.uri,
                on_frame=analyzer.push_frame if analyzer is not None else None,
            ) as audio:
                for chunk in audio:
                    if chunk.size:
                        peak = max(peak, float(abs(chunk).max()))
                    if analyzer is not None:
                        analyzer.push(chunk)
                    for name, seg in segmenters.items():
                        first = seg.n_windows
                        for offset, window in enumerate(seg.push(chunk)):
                            yield SegmentReady(task.track_id, name, first + offset, window)
                info = audio.info
        if info.samples == 0:
            raise EmptyAudio(f"{task.uri}: no audio samples decoded")
        padded = False
        for name, seg in segmenters.items():
            first = seg.n_windows
            for offset, window in enumerate(seg.finish()):
                yield SegmentReady(task.track_id, name, first + offset, window)
            padded |= seg.padded
    except Exception as exc:  # a worker boundary: whatever happened to this track must not end the run
        if not isinstance(exc, TaggerError):
            logger.exception("unexpected error decoding %s", task.uri)
        yield TrackFailed(task.track_id, task.uri, *failure_of(exc, DecodeCrash))
        return
    flags = info.flags + (("padded",) if padded else ()) + (("silent",) if peak < SILENCE_PEAK else ())
    n_segments = {name: seg.n_windows for name, seg in segmenters.items()}
    descriptors = analyzer.finish() if analyzer is not None else None
    yield TrackDecoded(task.track_id, task.uri, n_segments, info.duration_s, flags, descriptors)


def _reader_alive() -> Callable[[], bool]:
    """Whether the process that started this worker still runs (a worker never outlives its pool)."""
    parent = mp.parent_process()
    return parent.is_alive if parent is not None else (lambda: True)


def _next_task(tasks: "mp.Queue[TrackTask | None]", alive: Callable[[], bool]) -> TrackTask | None:
    while True:
        try:
            return tasks.get(timeout=WAIT_S)
        except queue.Empty:
            if not alive():
                return None


def _put(out: "mp.Queue[WorkerMessage | None]", message: WorkerMessage | None, alive: Callable[[], bool]) -> None:
    while True:
        try:
            out.put(message, timeout=WAIT_S)
            return
        except queue.Full:
            if not alive():
                raise ReaderGone("the inference process ended; no one reads the decode queue") from None


def _send(
    out: "mp.Queue[WorkerMessage | None]", message: Message, ring: RingWriter | None, alive: Callable[[], bool]
) -> None:
    """Put ``message`` on the queue; a segment's samples go into the worker's next shared slot when it has one."""
    if ring is None or not isinstance(message, SegmentReady) or not ring.fits(message.samples):
        _put(out, message, alive)
        return
    slot = ring.write(message.samples, alive)
    try:
        _put(out, SegmentShared(message.track_id, message.model, message.index, ring.worker, slot,
                                len(message.samples)), alive)
    except BaseException:
        ring.unsend()
        raise


def worker_main(
    source: str,
    s3_endpoint_url: str | None,
    options: DecodeOptions,
    tasks: "mp.Queue[TrackTask | None]",
    out: "mp.Queue[WorkerMessage | None]",
    ring: RingWriter | None = None,
) -> None:
    """A decode worker process: take tasks until ``None``, put messages, then a final ``None``.

    With a ``ring``, segment samples go through this worker's shared-memory slots (see
    :mod:`catalogue_tagger.segment_ring`); without one they are pickled onto the queue. A worker whose pool
    process has ended stops by itself.
    """
    if options.descriptors:
        from catalogue_tagger.descriptors import DescriptorAnalyzer  # loads the BLAS libraries limited below

        # The first analyzer loads scipy.fft and the shipped filterbanks: done now, while the pool's owner is still
        # opening its backends, rather than on the first track's critical path.
        DescriptorAnalyzer(name="warm-up")
    alive = _reader_alive()
    # A worker is one core's work: BLAS threads of its own (the descriptors' matrix products) would spin against
    # the inference process on the same cores.
    with ExitStack() as stack:
        stack.enter_context(threadpool_limits(limits=1, user_api="blas"))
        objects = stack.enter_context(open_source(source, s3_endpoint_url=s3_endpoint_url))
        writer = stack.enter_context(ring) if ring is not None else None
        try:
            while (task := _next_task(tasks, alive)) is not None:
                for message in decode_track(objects, task, options):
                    _send(out, message, writer, alive)
            _put(out, None, alive)
        except ReaderGone:
            return


class DecodePool:
    """Decode worker processes fed from a task queue, all writing into one bounded message queue.

    Segments come through a shared-memory ring (:class:`SegmentRing`) when ``shared`` and the shared-memory file
    system has room for it, else pickled. A :class:`SegmentReady` returned by :meth:`get` may lend a slot's
    samples: they stay valid until the next :meth:`get` (or :meth:`close`), which gives the slot back — the
    inference loop copies them into its batch before it asks for more. A context manager: :meth:`close` stops
    the workers and unlinks the ring on every exit path.
    """

    def __init__(
        self,
        source: str,
        s3_endpoint_url: str | None,
        options: DecodeOptions,
        workers: int,
        max_segments: int,
        *,
        shared: bool = True,
    ) -> None:
        self.source = source
        ctx = mp.get_context("spawn")  # never fork a process that holds torch threads
        self._tasks: mp.Queue[TrackTask | None] = ctx.Queue()
        self.out: mp.Queue[WorkerMessage | None] = ctx.Queue(maxsize=max_segments)
        self._procs: list[SpawnProcess] = []
        self._lent: int | None = None  # the worker whose slot the last SegmentReady lent
        self._tasks_ended = False
        self._running = 0  # workers started that have not said goodbye
        self.ring = _open_ring(ctx, options, workers, max_segments) if shared else None
        try:
            for i in range(workers):
                proc = ctx.Process(
                    target=worker_main,
                    args=(source, s3_endpoint_url, options, self._tasks, self.out,
                          self.ring.writer(i) if self.ring is not None else None),
                    name=f"catalogue-tagger-decode-{i}",
                    daemon=True,
                )
                proc.start()
                self._procs.append(proc)
                self._running += 1
        except BaseException:
            self.close()
            raise

    @property
    def processes(self) -> tuple[SpawnProcess, ...]:
        """The worker processes, in worker order."""
        return tuple(self._procs)

    def submit(self, task: TrackTask) -> None:
        self._tasks.put(task)

    def no_more_tasks(self) -> None:
        if not self._tasks_ended:
            self._tasks_ended = True
            for _ in self._procs:
                self._tasks.put(None)

    def get(self, timeout: float) -> Message | None:
        """The next message; ``None`` on timeout. Raises ``EOFError`` once every worker has finished.

        Gives back the slot the previous message lent: copy a segment's samples before calling again.
        """
        self._give_back()
        while True:
            if self._running == 0:
                raise EOFError
            try:
                message = self.out.get(timeout=timeout)
            except queue.Empty:
                if not any(p.is_alive() for p in self._procs):
                    raise EOFError from None  # a worker died without saying goodbye
                return None
            if message is None:
                self._running -= 1
                continue
            if isinstance(message, SegmentShared):
                return self._lend(message)
            return message

    def _lend(self, message: SegmentShared) -> SegmentReady:
        if self.ring is None:
            raise RuntimeError("a shared segment arrived but this pool has no ring")
        self._lent = message.worker
        samples = self.ring.samples(message.slot, message.length)
        return SegmentReady(message.track_id, message.model, message.index, samples)

    def _give_back(self) -> None:
        lent, self._lent = self._lent, None
        if lent is not None and self.ring is not None:
            self.ring.release(lent)

    def close(self) -> None:
        """Stop the workers (at once when they have not all finished) and unlink the ring. Idempotent."""
        try:
            self._give_back()
            if self._running == 0:  # every worker said goodbye: they are exiting
                for proc in self._procs:
                    proc.join(timeout=JOIN_S)
            else:
                self.no_more_tasks()
            for proc in self._procs:
                if proc.is_alive():
                    proc.terminate()
            for proc in self._procs:
                proc.join(timeout=JOIN_S)
                if proc.is_alive():
                    proc.kill()
                    proc.join()
            self._tasks.cancel_join_thread()  # tasks no worker took are dropped, never waited for
        finally:
            if self.ring is not None:
                self.ring.close()

    def __enter__(self) -> DecodePool:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def _open_ring(ctx: SpawnContext, options: DecodeOptions, workers: int, max_segments: int) -> SegmentRing | None:
    """The shared ring for ``workers``, sized for the longest window; None (segments are then pickled) when the
    shared-memory file system has no room for it."""
    slot_samples = max((w.window for w in options.windowings.values()), default=0)
    if workers < 1 or slot_samples < 1:
        return None
    slots = plan_slots(workers, slot_samples, max_segments // workers)
    if slots == 0:
        logger.warning("too little shared memory for %d decode workers' segment slots: segments are pickled", workers)
        return None
    try:
        return SegmentRing(ctx, workers, slot_samples, slots)
    except RingUnavailable as exc:
        logger.warning("segments are pickled, not shared: %s", exc)
        return None


def windowings_for(specs: Mapping[str, object]) -> dict[str, Windowing]:
    """The windowing of each model spec (anything with ``window``, ``hop`` and ``pad``)."""
    return {name: Windowing(s.window, s.hop, s.pad) for name, s in specs.items()}  # type: ignore[attr-defined]


#: Least bound of the decode → inference queue, shared out among the workers' rings.
SEGMENTS_IN_FLIGHT = 256


def segments_in_flight(settings: Settings) -> int:
    """How many segments the decode workers may hold ahead of inference: two full batches of every model, so that
    one batch is scored while the next fills (at least :data:`SEGMENTS_IN_FLIGHT`). With room for only 16
    segments per worker, inference waited on the decoder after every batch: 37 % of a 2-core run's wall time
    (docs/performance.md)."""
    return max(SEGMENTS_IN_FLIGHT, 2 * settings.batch_size * len(settings.models))


def decode_options(settings: Settings) -> DecodeOptions:
    """What the decode workers of a run of ``settings.models`` produce."""
    windowings = windowings_for({name: get_spec(name) for name in settings.models})
    return DecodeOptions(windowings, settings.max_duration_s, settings.max_bytes, settings.descriptors)


def start_decoders(source: str, settings: Settings) -> ContextManager[DecodePool | None]:
    """The decode workers of a run on the source URI ``source`` (``None`` with ``workers=0``: decoding runs
    inline), started now. The CLI starts them before it imports and connects the store, so that their start-up
    (a process and its imports, ~0.4 s) overlaps the rest of the run's; :func:`catalogue_tagger.pipeline.tag`
    takes them, or starts its own."""
    if settings.workers == 0:
        return nullcontext()
    return DecodePool(source, settings.s3_endpoint_url, decode_options(settings), settings.workers,
                      segments_in_flight(settings))
