"""Progress of a tagging run: a rich progress bar on a terminal, plain log lines otherwise."""

from __future__ import annotations

import sys
import time
from collections import Counter
from types import TracebackType
from typing import TYPE_CHECKING, TextIO

from catalogue_tagger.records import TrackFailure
from catalogue_tagger.inference_loop import Finished, InferenceLoop

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID

LOG_EVERY_S = 10.0


class RunProgress:
    """Callable hook for :func:`catalogue_tagger.pipeline.tag`; use as a context manager."""

    def __init__(self, stream: TextIO | None = None, live: bool | None = None) -> None:
        self.stream = stream or sys.stderr
        self.live = self.stream.isatty() if live is None else live
        self.tagged = 0
        self.failed: Counter[str] = Counter()
        self.audio_s = 0.0
        self.started = time.perf_counter()
        self._last_log = self.started
        self._progress: Progress | None = None
        self._task: TaskID | None = None

    def __enter__(self) -> "RunProgress":
        if self.live:
            from rich.console import Console
            from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

            progress = Progress(
                SpinnerColumn(),
                TextColumn("{task.description}"),
                TimeElapsedColumn(),
                console=Console(file=self.stream),
                transient=False,
            )
            progress.start()
            self._task = progress.add_task(self._line())
            self._progress = progress
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._progress is not None and self._task is not None:
            self._progress.update(self._task, description=self._line())
            self._progress.stop()

    def __call__(self, item: Finished, loop: InferenceLoop) -> None:
        if isinstance(item, TrackFailure):
            self.failed[item.kind] += 1
        else:
            self.tagged += 1
            self.audio_s += item.duration_s
        now = time.perf_counter()
        if self._progress is not None and self._task is not None:
            self._progress.update(self._task, description=self._line())
        elif now - self._last_log >= LOG_EVERY_S:
            self._last_log = now
            print(self._line(), file=self.stream, flush=True)

    def _line(self) -> str:
        wall = max(time.perf_counter() - self.started, 1e-9)
        failed = sum(self.failed.values())
        return (
            f"tagged {self.tagged} tracks, failed {failed}, audio {self.audio_s / 3600:.2f} h, "
            f"{self.audio_s / wall:.1f}x realtime"
        )
