"""Training progress: a rich progress bar on a terminal, a log line every few seconds otherwise (nohup logs)."""

from __future__ import annotations

import logging
import sys
import time
from types import TracebackType
from typing import TYPE_CHECKING, TextIO

from catalogue_tagger.training.train import EpochRecord, TrainingHooks

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID

logger = logging.getLogger(__name__)

LOG_EVERY_S = 60.0


class TrainingProgress(TrainingHooks):
    """Use as a context manager around :func:`catalogue_tagger.training.train.train`."""

    def __init__(self, stream: TextIO | None = None, live: bool | None = None) -> None:
        self.stream = stream or sys.stderr
        self.live = self.stream.isatty() if live is None else live
        self._progress: Progress | None = None
        self._task: TaskID | None = None
        self._epoch = 0
        self._n_batches = 0
        self._done = 0
        self._loss = 0.0
        self._started = self._last_log = time.perf_counter()

    def __enter__(self) -> TrainingProgress:
        if self.live:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self._progress = Progress(
                TextColumn("epoch {task.fields[epoch]}"), BarColumn(), MofNCompleteColumn(),
                TextColumn("loss {task.fields[loss]:.4f}"), TimeRemainingColumn(),
                console=Console(file=self.stream),
            )
            self._progress.__enter__()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._progress is not None:
            self._progress.__exit__(exc_type, exc, tb)

    def epoch_started(self, epoch: int, n_batches: int) -> None:
        self._epoch, self._n_batches, self._done, self._loss = epoch, n_batches, 0, 0.0
        self._started = self._last_log = time.perf_counter()
        if self._progress is not None:
            if self._task is not None:
                self._progress.remove_task(self._task)
            self._task = self._progress.add_task("train", total=n_batches, epoch=epoch, loss=0.0)

    def batch_done(self, loss: float) -> None:
        self._done += 1
        self._loss += (loss - self._loss) / self._done  # running mean of the epoch
        if self._progress is not None and self._task is not None:
            self._progress.update(self._task, advance=1, loss=self._loss)
            return
        now = time.perf_counter()
        if now - self._last_log >= LOG_EVERY_S or self._done == self._n_batches:
            self._last_log = now
            logger.info("epoch %d: batch %d/%d, mean loss %.5f, %.1f s/batch", self._epoch, self._done,
                        self._n_batches, self._loss, (now - self._started) / self._done)

    def epoch_done(self, record: EpochRecord) -> None:
        if self._progress is not None:
            self._progress.console.print(
                f"epoch {record.epoch}: train loss {record.train_loss:.5f}, val loss {record.val['loss']:.5f}, "
                f"macro ROC-AUC {record.val['macro_roc_auc']:.4f}, median Spearman "
                f"{record.val['median_spearman']:.4f} ({record.seconds:.0f} s, {record.windows_per_s:.2f} windows/s)"
            )
