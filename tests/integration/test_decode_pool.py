"""Decode workers hand segments over through shared memory: the same segments as decoding inline, slots that
always come back (failed tracks and dead workers included), and no shared-memory block left after any run."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from catalogue_tagger.config import Settings
from catalogue_tagger.decode_pool import DecodeOptions, DecodePool, decode_track
from catalogue_tagger.messages import Message, SegmentReady, TrackDecoded, TrackFailed
from catalogue_tagger.pipeline import segments_in_flight
from catalogue_tagger.records import TrackTask
from catalogue_tagger.segment import Windowing
from catalogue_tagger.segment_ring import MIN_SLOTS, SHM_DIR
from catalogue_tagger.sources import FolderStore

pytestmark = pytest.mark.skipif(not SHM_DIR.is_dir(), reason="needs a POSIX shared-memory file system")

# two models' windows of different lengths, short enough for a 5 s excerpt to give dozens of segments
OPTIONS = DecodeOptions({"short": Windowing(4096, 4096, 0), "long": Windowing(16000, 8000, 256)}, descriptors=False)
NAMES = ["excerpt.mp3", "corrupt.mp3", "excerpt.ogg", "truncated.mp3", "empty.wav", "excerpt_0.5s.wav",
         "truncated.ogg", "excerpt.opus"]
Key = tuple[int, str, int]


@pytest.fixture
def folder(tmp_path: Path, audio_fixtures: Path) -> Path:
    for name in set(NAMES):
        shutil.copy2(audio_fixtures / name, tmp_path / name)
    return tmp_path


def _tasks(folder: Path, copies: int = 1) -> list[TrackTask]:
    return [TrackTask(i, (folder / name).as_uri())
            for i, name in enumerate(NAMES * copies)]


def _inline(folder: Path, tasks: list[TrackTask]) -> tuple[dict[Key, np.ndarray], dict[int, list[type]]]:
    segments: dict[Key, np.ndarray] = {}
    kinds: dict[int, list[type]] = {}
    for task in tasks:
        for message in decode_track(FolderStore(folder), task, OPTIONS):
            kinds.setdefault(task.track_id, []).append(type(message))
            if isinstance(message, SegmentReady):
                segments[(message.track_id, message.model, message.index)] = message.samples
    return segments, kinds


def _drain(pool: DecodePool) -> Iterator[Message]:
    while True:
        try:
            message = pool.get(timeout=0.2)
        except EOFError:
            return
        if message is not None:
            yield message


def _shared_blocks() -> set[str]:
    return {p.name for p in SHM_DIR.glob("catalogue-tagger-*")}


def test_pooled_segments_equal_inline_decode_and_every_slot_comes_back(folder: Path) -> None:
    tasks = _tasks(folder, copies=2)
    expected, expected_kinds = _inline(folder, tasks)
    before = _shared_blocks()
    got: dict[Key, np.ndarray] = {}
    kinds: dict[int, list[type]] = {}
    with DecodePool(FolderStore(folder).uri, None, OPTIONS, workers=2, max_segments=2 * MIN_SLOTS) as pool:
        assert pool.ring is not None and pool.ring.layout.slots_per_worker == MIN_SLOTS
        for task in tasks:
            pool.submit(task)
        pool.no_more_tasks()
        for message in _drain(pool):
            kinds.setdefault(message.track_id, []).append(type(message))
            if isinstance(message, SegmentReady):
                got[(message.track_id, message.model, message.index)] = message.samples.copy()
        assert [pool.ring.free_slots(w) for w in range(2)] == [MIN_SLOTS, MIN_SLOTS]  # failed tracks' too
        block = SHM_DIR / pool.ring.layout.name
    assert got.keys() == expected.keys() and len(got) > 20 * MIN_SLOTS  # the rings wrapped many times
    for key, samples in expected.items():
        np.testing.assert_array_equal(got[key], samples, err_msg=str(key))
    assert kinds == expected_kinds  # started, segments, then decoded or failed, per track, in order
    assert not block.exists() and _shared_blocks() == before
    assert all(not p.is_alive() for p in pool.processes)


def test_without_shared_memory_segments_are_pickled_alike(folder: Path) -> None:
    tasks = _tasks(folder)[:3]
    expected, _ = _inline(folder, tasks)
    with DecodePool(FolderStore(folder).uri, None, OPTIONS, workers=1, max_segments=8, shared=False) as pool:
        assert pool.ring is None
        for task in tasks:
            pool.submit(task)
        pool.no_more_tasks()
        got = {(m.track_id, m.model, m.index): m.samples for m in _drain(pool) if isinstance(m, SegmentReady)}
    assert got.keys() == expected.keys()
    for key, samples in expected.items():
        np.testing.assert_array_equal(got[key], samples)


def test_a_killed_worker_corrupts_no_slot_and_leaks_no_block(folder: Path) -> None:
    """Worker 0 is killed while slots it wrote wait unread: what it had sent arrives intact, the other worker
    decodes the rest, the pool ends, and the block is unlinked."""
    tasks = [t for t in _tasks(folder, copies=3) if Path(t.uri).name.startswith("excerpt.")]
    expected, _ = _inline(folder, tasks)
    before = _shared_blocks()
    got: dict[Key, np.ndarray] = {}
    finished: set[int] = set()
    with DecodePool(FolderStore(folder).uri, None, OPTIONS, workers=2, max_segments=2 * MIN_SLOTS) as pool:
        assert pool.ring is not None
        for task in tasks:
            pool.submit(task)
        pool.no_more_tasks()
        deadline = time.monotonic() + 120
        while pool.ring.free_slots(0) == MIN_SLOTS or not pool.out.full():  # worker 0 has sent; nothing is read
            assert time.monotonic() < deadline, "the workers never filled the queue"
            time.sleep(0.05)
        pool.processes[0].kill()
        pool.processes[0].join(timeout=10)
        for message in _drain(pool):
            if isinstance(message, SegmentReady):
                got[(message.track_id, message.model, message.index)] = message.samples.copy()
            elif isinstance(message, (TrackDecoded, TrackFailed)):
                finished.add(message.track_id)
        block = SHM_DIR / pool.ring.layout.name
    for key, samples in got.items():
        np.testing.assert_array_equal(samples, expected[key], err_msg=str(key))
    assert 0 < len(finished) < len(tasks)  # the killed worker's track never finished; the others all did
    assert not block.exists() and _shared_blocks() == before


def test_the_block_is_unlinked_when_the_reader_fails(folder: Path) -> None:
    before = _shared_blocks()
    with pytest.raises(RuntimeError, match="the reader failed"):
        with DecodePool(FolderStore(folder).uri, None, OPTIONS, workers=2, max_segments=8) as pool:
            for task in _tasks(folder):
                pool.submit(task)
            for message in _drain(pool):
                if isinstance(message, SegmentReady):
                    lent = message.samples  # held by the traceback while the pool closes
                    raise RuntimeError(f"the reader failed holding {len(lent)} samples")
    assert _shared_blocks() == before
    assert all(not p.is_alive() for p in pool.processes)


def test_a_lone_worker_runs_two_batches_ahead_of_inference(folder: Path) -> None:
    """What the pipeline gives a pool is room for two full batches of every model: a single worker keeps
    decoding while a batch is scored, instead of stopping a few segments ahead of it."""
    ahead = segments_in_flight(Settings(models=("musicnn-mtt", "samplecnn-mtt"), batch_size=64, workers=1))
    assert ahead >= 2 * 64 * 2
    tasks = [t for t in _tasks(folder, copies=4) if Path(t.uri).name.startswith("excerpt.")]  # ~450 segments
    with DecodePool(FolderStore(folder).uri, None, OPTIONS, workers=1, max_segments=ahead) as pool:
        assert pool.ring is not None and pool.ring.layout.slots_per_worker == ahead
        for task in tasks:
            pool.submit(task)
        pool.no_more_tasks()
        deadline = time.monotonic() + 120
        while not pool.out.full() and pool.ring.free_slots(0) > 0:  # nothing is read: it runs until it must wait
            assert time.monotonic() < deadline, "the worker never filled its room"
            time.sleep(0.05)
        assert ahead - pool.ring.free_slots(0) > 2 * 64  # segments sent and waiting: over two batches of one model
