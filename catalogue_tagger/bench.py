"""``catalogue-tagger bench``: where the time goes, measured in one run so the ratios are comparable.

- decode-only: PyAV + soxr to 16 kHz mono over every file, with the same number of worker processes as the
  end-to-end run — the ceiling of the whole job on this machine;
- the backend ``auto`` picks for each model, and why (on a CPU: both backends timed again, the record that later
  runs read replaced: :mod:`catalogue_tagger.inference.cpu_choice`);
- inference-only: segments/s of each model on random full batches;
- end-to-end: the real ``tag`` job (discover, decode, batch, infer, aggregate, write) into a throwaway
  database on the same server;
- peak RSS of this process.
"""

from __future__ import annotations

import multiprocessing as mp
import resource
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from catalogue_tagger.config import Settings
from catalogue_tagger.decode import decode_stream
from catalogue_tagger.inference.base import open_backend, resolve_backend
from catalogue_tagger.models.specs import get_spec
from catalogue_tagger.pipeline import tag
from catalogue_tagger.sources import ObjectStore, open_source
from catalogue_tagger.store.driver import scratch_database
from catalogue_tagger.store.store import Store


_worker_source: ObjectStore | None = None


def _open_worker_source(source: str, s3_endpoint_url: str | None) -> None:
    global _worker_source
    _worker_source = open_source(source, s3_endpoint_url=s3_endpoint_url)


def _decode_seconds(uri: str) -> float:
    assert _worker_source is not None
    with _worker_source.open(uri) as fileobj, decode_stream(fileobj, name=uri) as audio:
        for _ in audio:
            pass
        return audio.info.duration_s


def decode_only(source: str, uris: Sequence[str], workers: int, s3_endpoint_url: str | None = None) -> dict[str, float]:
    """Decode every object with ``workers`` processes (0: in this process); nothing else."""
    started = time.perf_counter()
    if workers > 0:
        ctx = mp.get_context("spawn")
        with ctx.Pool(workers, initializer=_open_worker_source, initargs=(source, s3_endpoint_url)) as pool:
            durations = pool.map(_decode_seconds, uris, chunksize=1)
    else:
        _open_worker_source(source, s3_endpoint_url)
        durations = [_decode_seconds(u) for u in uris]
    wall = time.perf_counter() - started
    audio = float(sum(durations))
    return {"audio_s": audio, "wall_s": wall, "xrealtime": audio / wall}


def inference_only(model: str, settings: Settings, min_s: float = 3.0) -> dict[str, float]:
    """Segments/s of ``model`` on random full batches of ``settings.batch_size``."""
    spec = get_spec(model)
    batch_size = settings.batch_size
    batch = (np.random.default_rng(0).standard_normal((batch_size, spec.window)) * 0.1).astype(np.float32)
    with open_backend(model, settings) as runner:
        runner.run(batch)  # warm-up
        n, started = 0, time.perf_counter()
        while n < 3 or time.perf_counter() - started < min_s:
            runner.run(batch)
            n += 1
        wall = time.perf_counter() - started
    seg_s = n * batch_size / wall
    return {"segments_per_s": seg_s, "xrealtime": seg_s * spec.hop / spec.sample_rate, "batch_size": batch_size}


def peak_rss_mb() -> float:
    """Peak RSS of this process (models, batches, aggregation). Decode workers are measured on their own
    (``benchmarks/decode_bench.py``): a spawned child's ``ru_maxrss`` counts the parent's pages it was forked
    with, so it says nothing about the worker."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def run_bench(source: str, database_url: str, settings: Settings) -> dict[str, Any]:
    """Every measurement of the module on ``source``, with the models, backend and workers of ``settings``;
    the end-to-end run writes into a throwaway database on the server of ``database_url``."""
    endpoint = settings.s3_endpoint_url
    with open_source(source, s3_endpoint_url=endpoint) as src:
        uris = [o.uri for o in src.list()]
    # auto on a CPU: both backends are timed again here and the record that later runs read is replaced
    backends = {model: dict(zip(("backend", "reason"), resolve_backend(settings, model, measure_again=True)))
                for model in settings.models}
    result: dict[str, Any] = {"source": source, "files": len(uris), "backend": settings.backend, "backends": backends,
                              "device": settings.device, "precision": settings.precision,
                              "batch_size": settings.batch_size, "workers": settings.workers,
                              "models": list(settings.models)}
    result["decode_only"] = decode_only(source, uris, settings.workers, endpoint)
    result["inference_only"] = {m: inference_only(m, settings) for m in settings.models}
    with scratch_database(database_url, "catalogue_tagger_bench") as url, Store.connect(url) as store, open_source(
        source, s3_endpoint_url=endpoint
    ) as src:
        store.migrate()
        report = tag(src, store, settings)
    result["end_to_end"] = {"audio_s": report.audio_s, "wall_s": report.wall_s, "xrealtime": report.xrealtime,
                            "tagged": report.tagged, "failed": report.failed}
    result["end_to_end_vs_decode_ceiling"] = report.xrealtime / result["decode_only"]["xrealtime"]
    result["peak_rss_mb"] = peak_rss_mb()
    return result
