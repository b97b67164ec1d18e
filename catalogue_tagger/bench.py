"""``catalogue-tagger bench``: where the time goes, measured in one run so the ratios are comparable.

- decode-only: PyAV + soxr to 16 kHz mono over every file, with the same number of worker processes as the
  end-to-end run — the ceiling of the whole job on this machine;
- inference-only: segments/s of each model on random full batches;
- end-to-end: the real ``tag`` job (discover, decode, batch, infer, aggregate, write) into a throwaway
  database on the same server;
- peak RSS of this process and of its worker processes.
"""

from __future__ import annotations

import multiprocessing as mp
import resource
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from catalogue_tagger.decode import decode_stream
from catalogue_tagger.inference.base import open_backend
from catalogue_tagger.models.registry import get_spec
from catalogue_tagger.pipeline import TagOptions, tag
from catalogue_tagger.sources import open_source, open_uri
from catalogue_tagger.store.engine import normalize_url
from catalogue_tagger.store.store import Store


def _decode_seconds(uri: str) -> float:
    with open_uri(uri) as fileobj, decode_stream(fileobj, name=uri) as audio:
        for _ in audio:
            pass
        return audio.info.duration_s


def decode_only(uris: Sequence[str], workers: int) -> dict[str, float]:
    started = time.perf_counter()
    if workers > 0:
        with mp.get_context("spawn").Pool(workers) as pool:
            durations = pool.map(_decode_seconds, uris, chunksize=1)
    else:
        durations = [_decode_seconds(u) for u in uris]
    wall = time.perf_counter() - started
    audio = float(sum(durations))
    return {"audio_s": audio, "wall_s": wall, "xrealtime": audio / wall}


def inference_only(model: str, backend: str, device: str, batch_size: int, min_s: float = 3.0) -> dict[str, float]:
    spec = get_spec(model)
    batch = (np.random.default_rng(0).standard_normal((batch_size, spec.window)) * 0.1).astype(np.float32)
    with open_backend(model, backend, device, max_batch=batch_size) as runner:
        runner.run(batch)  # warm-up
        n, started = 0, time.perf_counter()
        while n < 3 or time.perf_counter() - started < min_s:
            runner.run(batch)
            n += 1
        wall = time.perf_counter() - started
    seg_s = n * batch_size / wall
    return {"segments_per_s": seg_s, "xrealtime": seg_s * spec.hop / spec.sample_rate, "batch_size": batch_size}


@contextmanager
def throwaway_database(database_url: str) -> Iterator[str]:
    """A new, empty database on the server of ``database_url``, dropped afterwards."""
    url = make_url(normalize_url(database_url))
    name = f"catalogue_tagger_bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))  # name is generated here, not user input
    try:
        yield url.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def peak_rss_mb() -> dict[str, float]:
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return {"main_mb": round(own, 1), "largest_worker_mb": round(children, 1)}


def run_bench(
    source: str,
    database_url: str,
    models: Sequence[str],
    *,
    backend: str = "torch",
    device: str = "cpu",
    batch_size: int = 64,
    workers: int = 1,
    s3_endpoint_url: str | None = None,
) -> dict[str, Any]:
    with open_source(source, s3_endpoint_url=s3_endpoint_url) as src:
        uris = [o.uri for o in src.list()]
    result: dict[str, Any] = {"source": source, "files": len(uris), "backend": backend, "device": device,
                              "batch_size": batch_size, "workers": workers, "models": list(models)}
    result["decode_only"] = decode_only(uris, workers)
    result["inference_only"] = {m: inference_only(m, backend, device, batch_size) for m in models}
    options = TagOptions(models=tuple(models), batch_size=batch_size, workers=workers, device=device,
                         backend=backend, s3_endpoint_url=s3_endpoint_url)
    with throwaway_database(database_url) as url, Store.connect(url) as store, open_source(
        source, s3_endpoint_url=s3_endpoint_url
    ) as src:
        report = tag(src, store, options)
    result["end_to_end"] = {"audio_s": report.audio_s, "wall_s": report.wall_s, "xrealtime": report.xrealtime,
                            "tagged": report.tagged, "failed": report.failed}
    result["end_to_end_vs_decode_ceiling"] = report.xrealtime / result["decode_only"]["xrealtime"]
    result["peak_rss"] = peak_rss_mb()
    return result
