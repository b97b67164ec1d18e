"""Decode side of the pipeline: one track in, messages out (segments for every model, then done/failed).

A track is decoded once; each selected model's segmenter cuts the same 16 kHz stream into its own windows.
This module never imports torch: decode workers are separate processes that only need PyAV and soxr.
"""

from __future__ import annotations

import io
import logging
import multiprocessing as mp
import queue
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import BinaryIO

from threadpoolctl import threadpool_limits

from catalogue_tagger.decode import decode_stream
from catalogue_tagger.errors import DecodeCrash, EmptyAudio, TaggerError, TooLarge, failure_of
from catalogue_tagger.messages import Message, SegmentReady, TrackDecoded, TrackFailed, TrackStarted
from catalogue_tagger.records import TrackTask
from catalogue_tagger.segment import Segmenter, Windowing
from catalogue_tagger.sources import ObjectStore, open_source

logger = logging.getLogger(__name__)

SILENCE_PEAK = 1e-4  # a track whose peak stays below this is flagged "silent" (tagged, not failed)


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


def worker_main(
    source: str,
    s3_endpoint_url: str | None,
    options: DecodeOptions,
    tasks: "mp.Queue[TrackTask | None]",
    out: "mp.Queue[Message | None]",
) -> None:
    """A decode worker process: take tasks until ``None``, put messages, then a final ``None``."""
    if options.descriptors:
        import catalogue_tagger.descriptors  # noqa: F401  (loads the BLAS libraries limited below)
    # A worker is one core's work: BLAS threads of its own (the descriptors' matrix products) would spin against
    # the inference process on the same cores.
    with threadpool_limits(limits=1, user_api="blas"), open_source(source, s3_endpoint_url=s3_endpoint_url) as objects:
        while (task := tasks.get()) is not None:
            for message in decode_track(objects, task, options):
                out.put(message)
    out.put(None)


class DecodePool:
    """Decode worker processes fed from a task queue, all writing into one bounded message queue."""

    def __init__(
        self, source: str, s3_endpoint_url: str | None, options: DecodeOptions, workers: int, max_segments: int
    ) -> None:
        ctx = mp.get_context("spawn")  # never fork a process that holds torch threads
        self._tasks: mp.Queue[TrackTask | None] = ctx.Queue()
        self.out: mp.Queue[Message | None] = ctx.Queue(maxsize=max_segments)
        self._procs = [
            ctx.Process(
                target=worker_main,
                args=(source, s3_endpoint_url, options, self._tasks, self.out),
                name=f"catalogue-tagger-decode-{i}",
                daemon=True,
            )
            for i in range(workers)
        ]
        for proc in self._procs:
            proc.start()
        self._running = len(self._procs)

    def submit(self, task: TrackTask) -> None:
        self._tasks.put(task)

    def no_more_tasks(self) -> None:
        for _ in self._procs:
            self._tasks.put(None)

    def get(self, timeout: float) -> Message | None:
        """The next message; ``None`` on timeout. Raises ``EOFError`` once every worker has finished."""
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
            return message

    def close(self) -> None:
        for proc in self._procs:
            proc.join(timeout=5)
            if proc.is_alive():
                proc.terminate()


def windowings_for(specs: Mapping[str, object]) -> dict[str, Windowing]:
    """The windowing of each model spec (anything with ``window``, ``hop`` and ``pad``)."""
    return {name: Windowing(s.window, s.hop, s.pad) for name, s in specs.items()}  # type: ignore[attr-defined]
