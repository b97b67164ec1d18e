"""Segments handed from decode workers to the inference process through shared memory, not pickles.

The pool creates one shared-memory block and cuts it into a ring of slots per worker. A worker writes a
segment's samples into its next slot and sends only ``(worker, slot, length)`` through the message queue; the
inference process reads the slot in place (the batcher copies it into its batch) and then gives it back.

Slots come back in the order they were written — one message queue, first in first out for each producer, and
the reader gives back every slot it received, failed tracks' included — so a worker's next slot is its write
count modulo its ring size and a semaphore per worker is the whole bookkeeping: it counts the free slots, a
worker waits on it before writing, the reader releases it after copying. The ring is the decode side's
backpressure. A worker never touches another worker's slots, so one that dies leaves nothing to repair: the
slots it had sent are still whole, the one it was writing is never announced. The reader's :meth:`close`
unlinks the block on every exit path; should the reading process itself be killed, Python's resource tracker
unlinks it. When the tracker dies with it (the whole process group killed, a container restarted while its pod
keeps ``/dev/shm``), the next ring created on the machine unlinks the block: the reader holds a shared lock on its
block for as long as it lives (the kernel drops it with the process), so a block no one holds is stale
(:func:`remove_stale_blocks`).
"""

from __future__ import annotations

import errno
import logging
import os
import secrets
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.context import SpawnContext
from multiprocessing.shared_memory import SharedMemory
from multiprocessing.synchronize import Semaphore
from pathlib import Path
from types import TracebackType

import numpy as np

logger = logging.getLogger(__name__)

SHM_PREFIX = "catalogue-tagger-"  # names of the blocks in /dev/shm
SHM_DIR = Path("/dev/shm")
MIN_SLOTS = 2  # per worker: one being written while the previous one is read
MAX_SLOTS = 512  # per worker: a lone worker can run two batches of 64 of two models ahead (and of bigger batches)
WAIT_S = 1.0  # how often a waiting worker checks that its reader is still alive
#: A block younger than this is never taken for stale: its reader may be between creating and locking it.
STALE_AFTER_S = 60.0

try:
    import fcntl
except ImportError:  # not POSIX: no /dev/shm either
    fcntl = None  # type: ignore[assignment]


class RingUnavailable(OSError):
    """The shared-memory file system has no room for the ring (the pool then pickles segments instead)."""


class ReaderGone(RuntimeError):
    """The process that reads the ring has ended; the worker waiting for a free slot stops."""


@dataclass(frozen=True)
class RingLayout:
    """Where a ring lives and how it is cut: what a worker needs to attach to it."""

    name: str
    workers: int
    slots_per_worker: int
    slot_samples: int

    @property
    def slots(self) -> int:
        return self.workers * self.slots_per_worker

    @property
    def nbytes(self) -> int:
        return self.slots * self.slot_samples * np.dtype(np.float32).itemsize


def plan_slots(workers: int, slot_samples: int, wanted: int, shm_dir: Path = SHM_DIR) -> int:
    """Slots per worker: ``wanted`` within ``[MIN_SLOTS, MAX_SLOTS]``, fewer when the ring would take more than
    half of the free space of ``shm_dir`` (64 MB in a default Docker container), 0 when not even ``MIN_SLOTS``
    fit."""
    slots = max(MIN_SLOTS, min(MAX_SLOTS, wanted))
    slot_bytes = slot_samples * np.dtype(np.float32).itemsize
    try:
        stat = os.statvfs(shm_dir)
    except OSError:
        return slots  # no such file system to measure (not Linux): the allocation itself will tell
    room = stat.f_bavail * stat.f_frsize // 2
    slots = min(slots, room // max(1, workers * slot_bytes))
    return slots if slots >= MIN_SLOTS else 0


def _reserve(layout: RingLayout, shm_dir: Path) -> None:
    """Claim the block's pages now: tmpfs allocates them lazily, and a worker writing into a page the file
    system cannot supply would die of SIGBUS. ``posix_fallocate`` fails cleanly instead (ENOSPC)."""
    path = shm_dir / layout.name
    if not hasattr(os, "posix_fallocate") or not path.exists():
        return
    fd = os.open(path, os.O_RDWR)
    try:
        os.posix_fallocate(fd, 0, layout.nbytes)
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.ENOMEM, errno.EFBIG):
            raise RingUnavailable(exc.errno, f"no room for {layout.nbytes} bytes of segment slots in {shm_dir}") from exc
        raise
    finally:
        os.close(fd)


def remove_stale_blocks(shm_dir: Path = SHM_DIR, older_than_s: float = STALE_AFTER_S) -> list[str]:
    """Unlink the blocks in ``shm_dir`` left by readers that were killed with their resource tracker: those
    older than ``older_than_s`` that no process holds a lock on. Returns their names.

    Unlinking only removes a name: a process that still maps the block keeps its memory, so even a block taken
    for stale wrongly (a reader of a version without the lock) breaks no run."""
    if fcntl is None or not shm_dir.is_dir():
        return []
    removed = []
    now = time.time()
    for path in shm_dir.glob(f"{SHM_PREFIX}*"):
        try:
            if now - path.stat().st_mtime < older_than_s:
                continue
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            continue  # gone meanwhile, or not ours to open
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            continue  # its reader lives
        else:
            path.unlink(missing_ok=True)
            removed.append(path.name)
        finally:
            os.close(fd)
    if removed:
        logger.warning("removed %d segment block(s) of killed runs from %s: %s", len(removed), shm_dir,
                       ", ".join(removed))
    return removed


def _hold(path: Path) -> int | None:
    """A shared lock on the block at ``path`` for as long as this process keeps the descriptor (or lives)."""
    if fcntl is None or not path.exists():
        return None
    fd = os.open(path, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_SH)
    return fd


class SegmentRing:
    """The reading side: creates the block, lends slots' samples, takes slots back, unlinks the block.

    ``SegmentRing(ctx, workers, slot_samples, slots_per_worker)`` raises :class:`RingUnavailable` when the
    block cannot be had. A context manager; :meth:`close` is idempotent.
    """

    def __init__(
        self, ctx: SpawnContext, workers: int, slot_samples: int, slots_per_worker: int, shm_dir: Path = SHM_DIR
    ) -> None:
        if workers < 1 or slots_per_worker < 1 or slot_samples < 1:
            raise ValueError("a ring needs at least one worker, one slot each and one sample per slot")
        remove_stale_blocks(shm_dir)
        self._free: list[Semaphore] = [ctx.Semaphore(slots_per_worker) for _ in range(workers)]
        name = f"{SHM_PREFIX}{os.getpid()}-{secrets.token_hex(6)}"
        self.layout = RingLayout(name, workers, slots_per_worker, slot_samples)
        try:
            self._shm: SharedMemory | None = SharedMemory(name=name, create=True, size=self.layout.nbytes)
        except OSError as exc:
            raise RingUnavailable(exc.errno, f"cannot create {self.layout.nbytes} bytes of segment slots: {exc}") from exc
        self._lock: int | None = None
        try:
            self._lock = _hold(shm_dir / name)
            _reserve(self.layout, shm_dir)
            rows = np.ndarray((self.layout.slots, slot_samples), np.float32, buffer=self._shm.buf)
        except BaseException:
            self._unlink()
            raise
        # The mapping is closed once the last array over it is gone: when close() runs, a lent segment may
        # still be referenced (by a traceback on the way out, say), and closing under it would fail.
        weakref.finalize(rows, self._shm.close).atexit = False
        self._rows: np.ndarray | None = rows

    def writer(self, worker: int) -> RingWriter:
        """What worker ``worker`` gets (picklable into a spawned process): its slots and its semaphore."""
        return RingWriter(self.layout, worker, self._free[worker])

    def samples(self, slot: int, length: int) -> np.ndarray:
        """The first ``length`` samples of ``slot``, read-only, valid until the slot is released."""
        if self._rows is None:
            raise ValueError("the segment ring is closed")
        view = self._rows[slot, :length]
        view.flags.writeable = False
        return view

    def release(self, worker: int) -> None:
        """Give back the oldest slot ``worker`` has sent (slots come back in the order they were sent)."""
        self._free[worker].release()

    def free_slots(self, worker: int) -> int:
        """Free slots of ``worker``'s ring (Linux: semaphores with a readable value)."""
        return int(self._free[worker].get_value())

    @property
    def closed(self) -> bool:
        return self._shm is None

    def close(self) -> None:
        """Unlink the block (its name is gone at once) and drop this side's mapping. Idempotent."""
        self._rows = None  # the mapping closes here, or with the last lent view
        self._unlink()

    def _unlink(self) -> None:
        shm, self._shm = self._shm, None
        if shm is None:
            return
        try:
            shm.unlink()
        except FileNotFoundError:
            pass
        lock, self._lock = self._lock, None
        if lock is not None:
            os.close(lock)

    def __enter__(self) -> SegmentRing:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class RingWriter:
    """A worker's side: attach, then ``write(samples) -> slot`` as often as the reader gives slots back."""

    def __init__(self, layout: RingLayout, worker: int, free: Semaphore) -> None:
        self.layout = layout
        self.worker = worker
        self._free = free
        self._first = worker * layout.slots_per_worker
        self._written = 0
        self._shm: SharedMemory | None = None
        self._rows: np.ndarray | None = None

    def __getstate__(self) -> dict[str, object]:
        if self._shm is not None:
            raise TypeError("an attached ring writer stays in its process")
        return self.__dict__.copy()

    def __enter__(self) -> RingWriter:
        self._shm = SharedMemory(name=self.layout.name)
        rows = np.ndarray((self.layout.slots, self.layout.slot_samples), np.float32, buffer=self._shm.buf)
        self._rows = rows[self._first : self._first + self.layout.slots_per_worker]
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._rows = None
        shm, self._shm = self._shm, None
        if shm is not None:
            shm.close()

    def fits(self, samples: np.ndarray) -> bool:
        return samples.ndim == 1 and len(samples) <= self.layout.slot_samples

    def write(self, samples: np.ndarray, reader_alive: Callable[[], bool]) -> int:
        """Copy ``samples`` into this worker's next slot once the reader has freed it; returns the slot.

        Raises :class:`ReaderGone` when ``reader_alive()`` turns false while waiting.
        """
        if self._rows is None:
            raise ValueError("attach the ring writer first (with writer: ...)")
        if not self.fits(samples):
            raise ValueError(f"a segment of shape {samples.shape} does not fit a slot of {self.layout.slot_samples}")
        while not self._free.acquire(timeout=WAIT_S):
            if not reader_alive():
                raise ReaderGone("the inference process ended; no one will free a segment slot")
        local = self._written % self.layout.slots_per_worker
        try:
            self._rows[local, : len(samples)] = samples
        except BaseException:
            self._free.release()  # nothing announced: the slot is still free
            raise
        self._written += 1
        return self._first + local

    def unsend(self) -> None:
        """The slot just written could not be announced: take it back (the next write reuses it)."""
        self._written -= 1
        self._free.release()


__all__ = [
    "MAX_SLOTS", "MIN_SLOTS", "RingLayout", "RingUnavailable", "ReaderGone", "RingWriter", "SegmentRing", "plan_slots",
    "remove_stale_blocks",
]
