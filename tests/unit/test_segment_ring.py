"""The shared-memory segment ring: what goes in comes out whole, slots come back, the block never outlives its ring."""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from catalogue_tagger.messages import SegmentShared
from catalogue_tagger.segment_ring import (
    MAX_SLOTS, MIN_SLOTS, SHM_DIR, ReaderGone, RingWriter, SegmentRing, plan_slots, remove_stale_blocks,
)

pytestmark = pytest.mark.skipif(not SHM_DIR.is_dir(), reason="needs a POSIX shared-memory file system")

WINDOW = 1000


def _segment(n: int, length: int = WINDOW) -> np.ndarray:
    """Segment ``n``: content that tells every segment and every sample apart."""
    return (np.arange(length, dtype=np.float32) + n * 1e4) / 1e7


def _block(ring: SegmentRing) -> Path:
    return SHM_DIR / ring.layout.name


def _produce(writer: RingWriter, out: "mp.Queue[SegmentShared | None]", count: int, lengths: list[int]) -> None:
    with writer:
        for n in range(count):
            length = lengths[n % len(lengths)]
            slot = writer.write(_segment(n, length), lambda: True)
            out.put(SegmentShared(n, "m", n, writer.worker, slot, length))
    out.put(None)


def test_many_more_segments_than_slots_cross_processes_intact() -> None:
    """Two producers, two slots each, 300 segments of varying length: every one arrives equal to what was
    written, and every slot is free at the end (slots come back in order, so nothing is overwritten early)."""
    ctx = mp.get_context("spawn")
    out: mp.Queue[SegmentShared | None] = ctx.Queue()
    with SegmentRing(ctx, workers=2, slot_samples=WINDOW, slots_per_worker=MIN_SLOTS) as ring:
        producers = [ctx.Process(target=_produce, args=(ring.writer(w), out, 150, [WINDOW, 17, 999]), daemon=True)
                     for w in range(2)]
        for proc in producers:
            proc.start()
        received, running = {0: 0, 1: 0}, 2
        while running:
            message = out.get(timeout=60)
            if message is None:
                running -= 1
                continue
            samples = ring.samples(message.slot, message.length)
            assert not samples.flags.writeable
            np.testing.assert_array_equal(samples, _segment(message.index, message.length))
            assert received[message.worker] == message.index  # first in, first out per producer
            received[message.worker] += 1
            ring.release(message.worker)
        for proc in producers:
            proc.join(timeout=30)
            assert proc.exitcode == 0
        assert received == {0: 150, 1: 150}
        assert [ring.free_slots(w) for w in range(2)] == [MIN_SLOTS, MIN_SLOTS]
    assert not _block(ring).exists()


def test_a_full_ring_waits_and_never_overwrites_an_unreleased_slot() -> None:
    ctx = mp.get_context("spawn")
    with SegmentRing(ctx, workers=1, slot_samples=WINDOW, slots_per_worker=2) as ring, ring.writer(0) as writer:
        first, second = writer.write(_segment(0), lambda: True), writer.write(_segment(1), lambda: True)
        with pytest.raises(ReaderGone):  # full: the writer waits for a release, and gives up once its reader is gone
            writer.write(_segment(2), lambda: False)
        np.testing.assert_array_equal(ring.samples(first, WINDOW), _segment(0))
        np.testing.assert_array_equal(ring.samples(second, WINDOW), _segment(1))
        ring.release(0)  # the oldest slot comes back first ...
        assert writer.write(_segment(2), lambda: True) == first  # ... and is the next one written
        np.testing.assert_array_equal(ring.samples(second, WINDOW), _segment(1))
        with pytest.raises(ValueError):
            writer.write(np.zeros(WINDOW + 1, np.float32), lambda: True)


def test_an_unannounced_slot_is_taken_back() -> None:
    ctx = mp.get_context("spawn")
    with SegmentRing(ctx, workers=1, slot_samples=WINDOW, slots_per_worker=2) as ring, ring.writer(0) as writer:
        slot = writer.write(_segment(0), lambda: True)
        writer.unsend()  # e.g. the queue refused the message
        assert ring.free_slots(0) == 2
        assert writer.write(_segment(1), lambda: True) == slot


def test_close_unlinks_at_once_even_while_a_lent_segment_is_still_referenced(monkeypatch: pytest.MonkeyPatch) -> None:
    unraisable: list[Any] = []
    monkeypatch.setattr(sys, "unraisablehook", unraisable.append)
    ctx = mp.get_context("spawn")
    ring = SegmentRing(ctx, workers=1, slot_samples=WINDOW, slots_per_worker=2)
    with ring.writer(0) as writer:
        slot = writer.write(_segment(7), lambda: True)
    lent = ring.samples(slot, WINDOW)  # as a traceback on the way out of a failed run would hold it
    assert _block(ring).exists()
    ring.close()
    ring.close()  # idempotent
    assert not _block(ring).exists()
    np.testing.assert_array_equal(lent, _segment(7))  # the mapping lives on until the last view goes
    del lent
    with pytest.raises(ValueError):
        ring.samples(slot, WINDOW)
    assert unraisable == []


def test_an_attached_writer_cannot_be_sent_to_another_process() -> None:
    import pickle

    ctx = mp.get_context("spawn")
    with SegmentRing(ctx, workers=1, slot_samples=WINDOW, slots_per_worker=2) as ring:
        writer = ring.writer(0)  # travels to its worker detached (with the process's arguments)
        with writer, pytest.raises(TypeError, match="stays in its process"):
            pickle.dumps(writer)


def test_plan_slots_fits_the_shared_memory_file_system(tmp_path: Path) -> None:
    assert plan_slots(4, WINDOW, wanted=64, shm_dir=tmp_path) == 64
    assert plan_slots(1, WINDOW, wanted=10**6, shm_dir=tmp_path) == MAX_SLOTS  # capped: more only pins memory
    assert plan_slots(4, WINDOW, wanted=1, shm_dir=tmp_path) == MIN_SLOTS
    assert plan_slots(4, 10**15, wanted=64, shm_dir=tmp_path) == 0  # no room: the pool pickles instead


_KILLED_READER = """
import multiprocessing as mp, time
from catalogue_tagger.segment_ring import SegmentRing
ring = SegmentRing(mp.get_context("spawn"), 1, 1000, 2)
print(ring.layout.name, flush=True)
time.sleep(60)
"""


def test_a_block_whose_reader_was_killed_with_its_tracker_is_removed_by_the_next_ring() -> None:
    """SIGKILL to the reader's whole process group (its resource tracker too, as a container restart does) leaves
    the block in /dev/shm; it is removed once old enough, while a live ring's block stays, however old."""
    reader = subprocess.Popen([sys.executable, "-c", _KILLED_READER], stdout=subprocess.PIPE, text=True,
                              start_new_session=True)
    assert reader.stdout is not None
    name = reader.stdout.readline().strip()
    os.killpg(reader.pid, signal.SIGKILL)
    reader.wait()
    stale = SHM_DIR / name
    assert stale.exists()  # nothing unlinked it
    assert name not in remove_stale_blocks()  # too young to tell from a block being set up
    old = time.time() - 3600
    os.utime(stale, (old, old))
    with SegmentRing(mp.get_context("spawn"), 1, WINDOW, 2) as live:
        os.utime(_block(live), (old, old))
        assert name not in remove_stale_blocks()  # the new ring already removed it
        assert not stale.exists()
        assert _block(live).exists()  # held by this process: kept
    assert not _block(live).exists()
