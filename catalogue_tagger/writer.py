"""The writer: a thread that owns the database writes of a run.

Finished tracks arrive on a bounded queue and are written in small groups (one ``write_results`` call per
group, per-track semantics inside), so a slow database applies back-pressure instead of growing memory.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import Counter
from collections.abc import Mapping
from typing import Protocol

from catalogue_tagger.errors import TracksRefused, WriteError, failure_of
from catalogue_tagger.records import TrackFailure, TrackResult

_STOP = object()


class ResultSink(Protocol):
    def write_results(self, results: list[TrackResult], model_ids: Mapping[str, int], segments: bool = False) -> None: ...

    def write_failures(self, failures: list[TrackFailure], run_id: int) -> None: ...


class ResultWriter:
    def __init__(
        self,
        store: ResultSink,
        run_id: int,
        model_ids: Mapping[str, int],
        *,
        keep_segments: bool = False,
        group_size: int = 64,
        max_wait_s: float = 0.5,
        queue_size: int = 512,
    ) -> None:
        self.store = store
        self.run_id = run_id
        self.model_ids = dict(model_ids)
        self.keep_segments = keep_segments
        self.group_size = group_size
        self.max_wait_s = max_wait_s
        self.tagged = 0
        self.audio_s = 0.0
        self.failed: Counter[str] = Counter()
        self.flags: Counter[str] = Counter()
        self.error: BaseException | None = None
        self._queue: queue.Queue[object] = queue.Queue(maxsize=queue_size)
        self._thread = threading.Thread(target=self._run, name="catalogue-tagger-writer", daemon=True)
        self._thread.start()

    def put(self, item: TrackResult | TrackFailure) -> None:
        if self.error is not None:
            raise self.error
        self._queue.put(item)

    def close(self) -> None:
        """Write what is queued, stop the thread, and re-raise a write error if one happened. Idempotent."""
        if self._thread.is_alive():
            self._queue.put(_STOP)
            self._thread.join()
        if self.error is not None:
            raise self.error

    def _run(self) -> None:
        stopping = False
        while not stopping:
            group: list[object] = []
            deadline = time.monotonic() + self.max_wait_s
            while len(group) < self.group_size:
                try:
                    item = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    break
                if item is _STOP:
                    stopping = True
                    break
                group.append(item)
            if group and self.error is None:
                try:
                    self._write(group)
                except BaseException as exc:  # surfaced to the run by put()/close()
                    self.error = exc

    def _write(self, group: list[object]) -> None:
        results = [item for item in group if isinstance(item, TrackResult)]
        failures = [item for item in group if isinstance(item, TrackFailure)]
        if results:
            try:
                self.store.write_results(results, self.model_ids, segments=self.keep_segments)
            except TracksRefused as exc:  # the others of the group were written; the refused become failures
                refused = {track_id for track_id, _, _ in exc.refused}
                results = [r for r in results if r.track_id not in refused]
                failures += [TrackFailure(t, uri, *failure_of(WriteError(why), WriteError)) for t, uri, why in exc.refused]
            self.tagged += len(results)
            self.audio_s += sum(r.duration_s for r in results)
            self.flags.update(flag for r in results for flag in r.flags)
        if failures:
            self.store.write_failures(failures, self.run_id)
            self.failed.update(f.kind for f in failures)
