"""The inference loop's two-step feed: batches left running on the backend give the results of batches run at
once, buffers lent by the backend are filled once per batch, and a batch that fails on collection fails its
tracks only. torch's CUDA feed itself is checked on a GPU (tests/gpu); here its settings and its CPU path."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import numpy as np
import pytest
import torch

from catalogue_tagger.batching import Batcher
from catalogue_tagger.inference.base import Backend, Pending
from catalogue_tagger.inference.torch_backend import TorchBackend, ieee_fp32
from catalogue_tagger.inference_loop import Finished, InferenceLoop
from catalogue_tagger.messages import Message, SegmentReady, TrackDecoded, TrackFailed, TrackStarted
from catalogue_tagger.models.specs import get_spec
from catalogue_tagger.records import TrackFailure, TrackResult

SPEC = replace(get_spec("musicnn-mtt"), window=64)


class Scoring(Backend):
    """Scores each row from its own samples (probs: a sigmoid of the first 50; embedding: the next 200 … wrapped)."""

    spec = SPEC

    def run(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        batch = self._check(batch)
        probs = 1 / (1 + np.exp(-batch[:, :50]))
        return {"probs": probs.astype(np.float32), "embedding": np.tile(batch, 4)[:, :200].copy()}


class Deferred(Scoring):
    """Runs a batch only when its result is asked for, reading the submitted buffer then — so a buffer written
    again before that shows up in the scores. Lends buffers that come back only after their batch ran."""

    in_flight = 1

    def __init__(self, fail_on: int | None = None) -> None:
        self.free: list[np.ndarray] = []
        self.lent: list[int] = []
        self.submitted = 0
        self.fail_on = fail_on

    def host_buffer(self, rows: int) -> np.ndarray:
        buffer = self.free.pop() if self.free else np.full((rows, self.spec.window), np.nan, np.float32)
        self.lent.append(id(buffer))
        return buffer

    def submit(self, batch: np.ndarray) -> Pending:
        self.submitted += 1
        number, owner = self.submitted, batch.base if batch.base is not None else batch
        assert id(owner) in self.lent, "the loop submits the buffers it was lent"
        backend = self

        class Later:
            def result(self) -> dict[str, np.ndarray]:
                if number == backend.fail_on:
                    raise RuntimeError("device fault")
                outputs = backend.run(batch)
                backend.lent.remove(id(owner))
                owner[:] = np.nan  # whatever the backend does with a buffer it got back
                backend.free.append(owner)
                return outputs

        return Later()


def _messages() -> Iterator[Message]:
    """Three tracks whose segments interleave (5, 3 and 1 of them); a fourth fails after two were batched."""
    rng = np.random.default_rng(3)
    counts = {1: 5, 2: 3, 3: 1, 4: 2}
    for track in counts:
        yield TrackStarted(track, f"file:///{track}.mp3")
    sent = dict.fromkeys(counts, 0)
    while any(sent[t] < n for t, n in counts.items()):
        for track, n in counts.items():
            if sent[track] < n:
                yield SegmentReady(track, SPEC.name, sent[track], rng.standard_normal(SPEC.window).astype(np.float32))
                sent[track] += 1
    yield TrackFailed(4, "file:///4.mp3", "decode_error", "bad frame")
    for track in (1, 2, 3):
        yield TrackDecoded(track, f"file:///{track}.mp3", {SPEC.name: counts[track]}, 5.0, ())


def _run(backend: Backend) -> tuple[dict[int, Finished], InferenceLoop]:
    loop = InferenceLoop({SPEC.name: backend}, batch_size=2)
    done = loop.feed_all(_messages()) + loop.flush()
    assert len(done) == len({d.track_id for d in done})
    return {d.track_id: d for d in done}, loop


def test_batches_left_running_give_the_scores_of_batches_run_at_once() -> None:
    at_once, eager = _run(Scoring())
    deferred_backend = Deferred()
    later, deferred = _run(deferred_backend)
    assert at_once.keys() == later.keys() == {1, 2, 3, 4}
    assert isinstance(later[4], TrackFailure) and later[4].kind == "decode_error"
    for track in (1, 2, 3):
        a, b = at_once[track], later[track]
        assert isinstance(a, TrackResult) and isinstance(b, TrackResult)
        np.testing.assert_array_equal(a.outputs[0].mean, b.outputs[0].mean)
        np.testing.assert_array_equal(a.outputs[0].embedding, b.outputs[0].embedding)
        assert np.isfinite(b.outputs[0].mean).all()  # no row was read from a buffer already given back
    assert eager.segments_scored == deferred.segments_scored == 11
    assert deferred_backend.lent == []  # every lent buffer was submitted and came back
    assert len(deferred_backend.free) <= 2  # one running and one filling: the buffers are reused


def test_a_batch_failing_when_collected_fails_only_its_tracks() -> None:
    done, _ = _run(Deferred(fail_on=1))  # the first batch: one segment each of tracks 1 and 2
    assert {t for t, d in done.items() if isinstance(d, TrackFailure) and d.kind == "inference_error"} == {1, 2}
    assert isinstance(done[3], TrackResult)
    failure = done[1]
    assert isinstance(failure, TrackFailure) and failure.detail == f"{SPEC.name}: RuntimeError: device fault"


def test_the_batcher_asks_for_a_buffer_with_a_batch_first_segment() -> None:
    asked: list[int] = []

    def allocate(rows: int) -> np.ndarray:
        asked.append(rows)
        return np.zeros((rows, 4), np.float32)

    batcher = Batcher("m", window=4, batch_size=2, allocate=allocate)
    assert asked == [] and batcher.flush() is None  # nothing held while idle
    batcher.add(1, 0, np.ones(4, np.float32))
    full = batcher.add(1, 1, np.ones(4, np.float32))
    assert full is not None and asked == [2]
    with pytest.raises(ValueError, match="batch buffer"):
        Batcher("m", window=5, batch_size=2, allocate=allocate).add(1, 0, np.ones(5, np.float32))


def test_torch_on_cpu_runs_batches_at_once_with_its_former_numbers() -> None:
    backend = TorchBackend("musicnn-mtt")
    with backend:
        assert backend.in_flight == 0
        buffer = backend.host_buffer(3)
        assert buffer.shape == (3, backend.spec.window) and buffer.dtype == np.float32
        buffer[:] = np.random.default_rng(0).standard_normal(buffer.shape).astype(np.float32) * 0.1
        submitted = backend.submit(buffer).result()
        with torch.inference_mode():
            direct = backend.model(torch.from_numpy(buffer.copy()))
        for name, out in zip(backend.spec.output_names, direct):
            np.testing.assert_array_equal(submitted[name], out.numpy())


def test_tf32_is_off_through_the_api_this_torch_has() -> None:
    matmul, cudnn = torch.backends.cuda.matmul, torch.backends.cudnn
    conv = getattr(cudnn, "conv", None)  # torch >= 2.9, with matmul.fp32_precision
    if conv is None or not hasattr(matmul, "fp32_precision"):
        legacy = (matmul.allow_tf32, cudnn.allow_tf32)
        try:
            ieee_fp32()
            assert (matmul.allow_tf32, cudnn.allow_tf32) == (False, False)
        finally:
            matmul.allow_tf32, cudnn.allow_tf32 = legacy
        return
    before = (matmul.fp32_precision, conv.fp32_precision)
    try:
        ieee_fp32()
        assert (matmul.fp32_precision, conv.fp32_precision) == ("ieee", "ieee")
    finally:
        matmul.fp32_precision, conv.fp32_precision = before


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is present here")
@pytest.mark.parametrize("device", ["cuda", "cuda:1"])
def test_cuda_without_a_gpu_is_unavailable_whatever_the_index(device: str) -> None:
    from catalogue_tagger.errors import BackendUnavailable

    with pytest.raises(BackendUnavailable, match="no CUDA device"):
        TorchBackend("musicnn-mtt", device)


def test_partial_batches_are_scored_early_only_on_backends_that_run_at_once() -> None:
    """While the decoders are behind, a partial batch big enough for the CPU threads is scored; a backend that
    keeps batches running (CUDA) waits for full ones. The scores are those of full batches."""
    rng = np.random.default_rng(3)
    loop = InferenceLoop({SPEC.name: Scoring()}, batch_size=64)
    loop.feed(TrackStarted(1, "file:///1.mp3"))
    segments = [rng.standard_normal(SPEC.window).astype(np.float32) for _ in range(5)]
    for i, samples in enumerate(segments[:3]):
        loop.feed(SegmentReady(1, SPEC.name, i, samples))
    assert not loop.ready(4) and loop.ready(3)
    assert loop.score_ready(3) == [] and loop.segments_scored == 3 and not loop.ready(1)
    for i, samples in enumerate(segments[3:], start=3):
        loop.feed(SegmentReady(1, SPEC.name, i, samples))
    done = loop.feed(TrackDecoded(1, "file:///1.mp3", {SPEC.name: 5}, 5.0, ())) + loop.flush()
    assert loop.segments_scored == 5 and len(done) == 1 and isinstance(done[0], TrackResult)
    whole = InferenceLoop({SPEC.name: Scoring()}, batch_size=64)
    expected = whole.feed_all([TrackStarted(1, "file:///1.mp3"), *(SegmentReady(1, SPEC.name, i, s)
                               for i, s in enumerate(segments)),
                               TrackDecoded(1, "file:///1.mp3", {SPEC.name: 5}, 5.0, ())]) + whole.flush()
    assert isinstance(expected[0], TrackResult)
    np.testing.assert_allclose(done[0].outputs[0].mean, expected[0].outputs[0].mean, rtol=1e-6)
    deferred = InferenceLoop({SPEC.name: Deferred()}, batch_size=64)
    deferred.feed(TrackStarted(1, "file:///1.mp3"))
    for i, samples in enumerate(segments):
        deferred.feed(SegmentReady(1, SPEC.name, i, samples))
    assert not deferred.ready(1) and deferred.score_ready(1) == [] and deferred.segments_scored == 0
