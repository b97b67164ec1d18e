"""The writer thread: groups finished tracks, counts them, and surfaces a write error to the run."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pytest

from catalogue_tagger.errors import StoreError
from catalogue_tagger.records import ModelOutput, TrackFailure, TrackResult
from catalogue_tagger.writer import ResultWriter


class ListSink:
    """Keeps what it is given; refuses results once ``fail_after`` of them were written."""

    def __init__(self, fail_after: int | None = None) -> None:
        self.results: list[TrackResult] = []
        self.failures: list[TrackFailure] = []
        self.fail_after = fail_after

    def write_results(self, results: list[TrackResult], model_ids: Mapping[str, int], segments: bool = False) -> None:
        if self.fail_after is not None and len(self.results) + len(results) > self.fail_after:
            raise StoreError("database went away")
        self.results += results

    def write_failures(self, failures: list[TrackFailure], run_id: int) -> None:
        self.failures += failures


def _result(track_id: int) -> TrackResult:
    out = ModelOutput("m", "sha", 1, np.zeros(2, np.float32), np.zeros(2, np.float32))
    return TrackResult(track_id, f"file:///t{track_id}.mp3", 10.0, (out,), ("padded",) if track_id % 2 else ())


def test_writes_everything_in_groups_and_counts() -> None:
    sink = ListSink()
    writer = ResultWriter(sink, run_id=1, model_ids={"m": 1}, group_size=4, max_wait_s=0.01)
    for i in range(10):
        writer.put(_result(i))
    writer.put(TrackFailure(99, "file:///bad.mp3", "decode_error", "boom"))
    writer.close()
    writer.close()  # idempotent
    assert [r.track_id for r in sink.results] == list(range(10))
    assert writer.tagged == 10 and writer.audio_s == 100.0 and writer.failed == {"decode_error": 1}
    assert writer.flags == {"padded": 5}


def test_a_write_error_reaches_the_run() -> None:
    sink = ListSink(fail_after=0)
    writer = ResultWriter(sink, run_id=1, model_ids={"m": 1}, group_size=1, max_wait_s=0.01)
    writer.put(_result(1))
    with pytest.raises(StoreError, match="went away"):
        writer.close()
    assert writer.tagged == 0
