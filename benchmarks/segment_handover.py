"""Segment handover benchmark: segments/s from decode-worker processes to the inference process, pickled through
the message queue (as before) and through the shared-memory ring (as now), side by side in one run.

Only the handover is timed: each producer process sends one pre-made segment over and over, the way a decode
worker sends its segments; the consumer copies each into a ``Batcher`` (as the inference loop does), gives the
slot back and counts. Each mode runs ``--seconds`` after a short warm-up; the modes alternate ``--repeats``
times and the best rate of each is kept. Prints JSON.

    .venv/bin/python benchmarks/segment_handover.py [--workers 2] [--seconds 1.0] [--window 59049] [--repeats 2]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import queue
import subprocess
import time
from multiprocessing.synchronize import Event
from pathlib import Path

import numpy as np

from catalogue_tagger.batching import Batcher
from catalogue_tagger.messages import SegmentReady, SegmentShared, WorkerMessage
from catalogue_tagger.segment_ring import MAX_SLOTS, RingWriter, SegmentRing

BATCH = 64
QUEUE_BOUND = 256  # the pipeline's SEGMENTS_IN_FLIGHT
WARM_UP_S = 0.3


def produce(window: int, stop: Event, out: "mp.Queue[WorkerMessage | None]", ring: RingWriter | None) -> None:
    samples = np.random.default_rng(os.getpid()).standard_normal(window).astype(np.float32)
    index = 0
    if ring is None:
        while not stop.is_set():
            out.put(SegmentReady(0, "m", index, samples))
            index += 1
    else:
        with ring:
            while not stop.is_set():
                slot = ring.write(samples, lambda: not stop.is_set())
                out.put(SegmentShared(0, "m", index, ring.worker, slot, window))
                index += 1
    out.put(None)


def rate(mode: str, workers: int, window: int, seconds: float) -> tuple[float, float]:
    """Segments per second through ``mode`` ("pickled" or "shared") with ``workers`` producers, and the
    consumer's CPU time per segment in microseconds (what the handover costs the inference process)."""
    ctx = mp.get_context("spawn")
    out: mp.Queue[WorkerMessage | None] = ctx.Queue(maxsize=QUEUE_BOUND)
    stop = ctx.Event()
    ring = SegmentRing(ctx, workers, window, MAX_SLOTS) if mode == "shared" else None
    batcher = Batcher("m", window, BATCH)
    procs = [ctx.Process(target=produce, args=(window, stop, out, ring.writer(w) if ring else None), daemon=True)
             for w in range(workers)]
    for proc in procs:
        proc.start()
    try:
        count, started, running, elapsed, cpu_started, cpu = 0, 0.0, workers, float("nan"), 0.0, float("nan")
        first = time.perf_counter()
        while running:
            try:
                message = out.get(timeout=10)
            except queue.Empty:
                raise RuntimeError(f"{mode}: the producers went silent") from None
            if message is None:
                running -= 1
                continue
            if isinstance(message, SegmentShared):
                assert ring is not None
                batcher.add(message.track_id, message.index, ring.samples(message.slot, message.length))
                ring.release(message.worker)
            elif isinstance(message, SegmentReady):
                batcher.add(message.track_id, message.index, message.samples)
            now = time.perf_counter()
            if not started and now - first >= WARM_UP_S:
                started, count, cpu_started = now, 0, time.process_time()
            elif started and not stop.is_set():
                count += 1
                if now - started >= seconds:
                    elapsed, cpu = now - started, time.process_time() - cpu_started
                    stop.set()
        return count / elapsed, cpu / count * 1e6
    finally:
        stop.set()
        for proc in procs:
            proc.join(timeout=10)
            if proc.is_alive():
                proc.terminate()
        if ring is not None:
            ring.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=1.0)
    parser.add_argument("--window", type=int, default=59049, help="samples per segment (samplecnn-mtt: 59049)")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    best = {"pickled": 0.0, "shared": 0.0}
    cpu_us = {"pickled": float("inf"), "shared": float("inf")}
    runs: dict[str, list[float]] = {"pickled": [], "shared": []}
    for _ in range(args.repeats):
        for mode in best:
            value, cost = rate(mode, args.workers, args.window, args.seconds)
            runs[mode].append(round(value, 1))
            best[mode], cpu_us[mode] = max(best[mode], value), min(cpu_us[mode], cost)
    mb = args.window * 4 / 1e6
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            cwd=Path(__file__).parent).stdout.strip()
    print(json.dumps({
        "benchmark": "segment_handover", "commit": commit, "cpus": os.cpu_count(), "workers": args.workers,
        "window": args.window, "segment_mb": round(mb, 3), "seconds_per_run": args.seconds,
        "segments_per_s": {mode: round(value, 1) for mode, value in best.items()},
        "mb_per_s": {mode: round(value * mb, 1) for mode, value in best.items()},
        "consumer_cpu_us_per_segment": {mode: round(value, 1) for mode, value in cpu_us.items()},
        "runs": runs, "shared_over_pickled": round(best["shared"] / best["pickled"], 2),
    }))


if __name__ == "__main__":
    main()
