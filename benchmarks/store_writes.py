"""Store write benchmark: how fast tagged results land in Postgres.

Writes ``tracks`` synthetic tracks × ``n_models`` models × ``n_tags`` tags with ``embedding_dim``-d
embeddings through :meth:`Store.write_results`, in the pipeline's batch size, into a scratch database
created next to the target one and dropped afterwards (never into the catalogue itself). Results are
built before the clock starts, so the figure is the database path only: COPY, merge, commit.

``python benchmarks/store_writes.py [--database-url URL] [--tracks N]`` prints one JSON object (no URL:
the settings' database, else the embedded server).
"""

from __future__ import annotations

import argparse
import json
import time
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from datetime import datetime, timezone

import numpy as np

from catalogue_tagger.config import Settings
from catalogue_tagger.records import ModelOutput, ObjectInfo, TrackResult
from catalogue_tagger.store.driver import scratch_database
from catalogue_tagger.store.engine import resolve_database_url
from catalogue_tagger.store.store import Store


@dataclass(frozen=True)
class StoreBenchResult:
    tracks: int
    models: int
    tags_per_model: int
    embedding_dim: int
    batch_size: int
    embedding_type: str
    discover_s: float
    write_s: float
    tag_rows: int
    tag_rows_per_s: float
    tracks_per_s: float
    server_version: str


def _results(tasks: list[tuple[int, str]], models: list[str], n_tags: int, dim: int, seed: int) -> list[TrackResult]:
    rng = np.random.default_rng(seed)
    out = []
    for track_id, uri in tasks:
        outputs = []
        for model in models:
            segments = rng.random((4, n_tags), dtype=np.float32)
            embedding = rng.standard_normal(dim).astype(np.float32)
            outputs.append(ModelOutput(model, "bench", 4, segments.mean(0), segments.max(0), embedding))
        out.append(TrackResult(track_id, uri, 30.0, tuple(outputs)))
    return out


def bench_store_writes(
    database_url: str,
    tracks: int = 10_000,
    n_models: int = 2,
    n_tags: int = 50,
    embedding_dim: int = 200,
    batch_size: int = 500,
) -> StoreBenchResult:
    """Time writing ``tracks`` results into a scratch database on the server of ``database_url``."""
    with ExitStack() as stack:
        url = stack.enter_context(scratch_database(database_url, "catalogue_tagger_bench"))
        store = stack.enter_context(Store.connect(url))
        store.migrate()
        models = [f"bench-model-{i}" for i in range(n_models)]
        labels = [f"tag-{j:03d}" for j in range(n_tags)]
        model_ids = {m: store.register_model(m, "bench", labels, "bench", embedding_dim) for m in models}
        day = datetime(2026, 1, 1, tzinfo=timezone.utc)
        started = time.perf_counter()
        store.record_objects(ObjectInfo(f"bench://track/{i:07d}", "e", 1, day) for i in range(tracks))
        discover_s = time.perf_counter() - started
        run_id = stack.enter_context(store.open_run("bench://", models)).run_id
        tasks = [(t.track_id, t.uri) for t in store.claim_pending(run_id, tracks)]
        results = _results(tasks, models, n_tags, embedding_dim, seed=0)
        started = time.perf_counter()
        for start in range(0, len(results), batch_size):
            store.write_results(results[start : start + batch_size], model_ids)
        write_s = time.perf_counter() - started
        embedding_type = store.embedding_type
        with store.connection() as conn:
            server_version = str(conn.exec_driver_sql("SHOW server_version").scalar())
    tag_rows = tracks * n_models * n_tags
    return StoreBenchResult(
        tracks, n_models, n_tags, embedding_dim, batch_size, embedding_type, round(discover_s, 3),
        round(write_s, 3), tag_rows, round(tag_rows / write_s), round(tracks / write_s, 1), server_version,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--tracks", type=int, default=10_000)
    parser.add_argument("--batch-size", type=int, default=500)
    args = parser.parse_args()
    settings = Settings.from_env()
    server_url = resolve_database_url(args.database_url or settings.database_url, settings.home)
    result = bench_store_writes(server_url, tracks=args.tracks, batch_size=args.batch_size)
    print(json.dumps(asdict(result)))


if __name__ == "__main__":
    main()
