"""Catalogue-scale discovery: list a million objects, record them, then rediscover with a few new ones.

The listing is generated: an S3 client stand-in whose ``list_objects_v2`` paginator yields pages of
``page_size`` objects (1000, as real S3 does), handed to :class:`S3Store`, so the store's own listing code runs
and nothing is held but one page. Into a scratch database created next to the target one (dropped afterwards):

1. first discovery of ``objects`` objects (all new), then every track is marked tagged (a tagged catalogue);
2. rediscovery of the same listing plus ``new`` objects spread through it: what it writes (rows whose ``xmin``
   changed, WAL bytes) and how long it takes;
3. claiming: the plan of the claim query (EXPLAIN ANALYZE, rolled back), with and without the partial index of
   migration 0003, once half way through a first run (the older half tagged, the rest pending) and once with only
   the new ones pending;
   and the time of claiming all the new ones as a run does, ``CLAIM_CHUNK`` at a time.

The process's resident memory is sampled while listing (every 0.2 s).

``python benchmarks/discovery_scale.py [--database-url URL] [--objects 1000000] [--new 1000] [--json PATH]``
prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from sqlalchemy import text

from catalogue_tagger.config import Settings
from catalogue_tagger.pipeline import CLAIM_CHUNK, discover_objects
from catalogue_tagger.sources import S3Store
from catalogue_tagger.store.driver import scratch_database
from catalogue_tagger.store.engine import resolve_database_url
from catalogue_tagger.store.queries import raw_queries
from catalogue_tagger.store.store import LEASE_CLASS, Store

EPOCH = datetime(2024, 1, 1, tzinfo=timezone.utc)


class _Pages:
    """``list_objects_v2`` pages of a generated listing: keys ``cat/NNNNNNN.mp3`` for the given indexes."""

    def __init__(self, total: int, skip_every: int | None, page_size: int) -> None:
        self.total, self.skip_every, self.page_size = total, skip_every, page_size

    def _indexes(self) -> Iterator[int]:
        for i in range(self.total):
            if self.skip_every is None or i % self.skip_every != self.skip_every - 1:
                yield i

    def paginate(self, **kwargs: Any) -> Iterator[dict[str, Any]]:
        page: list[dict[str, Any]] = []
        for i in self._indexes():
            page.append({
                "Key": f"cat/{i:07d}.mp3",
                "ETag": f'"{i:032x}"',
                "Size": 3_000_000 + i % 997,
                "LastModified": EPOCH + timedelta(minutes=i % 525_600),  # a year of upload days
            })
            if len(page) == self.page_size:
                yield {"Contents": page}
                page = []
        if page:
            yield {"Contents": page}


class GeneratedS3Client:
    """Just enough of a boto3 S3 client for :meth:`S3Store.list`: a paginator over generated pages."""

    def __init__(self, pages: _Pages) -> None:
        self.pages = pages

    def get_paginator(self, name: str) -> _Pages:
        assert name == "list_objects_v2"
        return self.pages

    def close(self) -> None:
        pass


class RssSampler:
    """Resident set size of this process every ``interval_s`` while in the ``with`` block (MiB)."""

    def __init__(self, interval_s: float = 0.2) -> None:
        self.interval_s = interval_s
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @staticmethod
    def rss_mib() -> float:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.samples.append(self.rss_mib())

    def __enter__(self) -> RssSampler:
        self.samples.append(self.rss_mib())
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.samples.append(self.rss_mib())

    def summary(self) -> dict[str, float]:
        s = self.samples
        tenth = s[: max(1, len(s) // 10)]
        return {
            "start_mib": round(s[0], 1),
            "max_first_tenth_mib": round(max(tenth), 1),
            "max_mib": round(max(s), 1),
            "end_mib": round(s[-1], 1),
            "samples": len(s),
        }


@dataclass
class DiscoveryScaleResult:
    objects: int
    new: int
    page_size: int
    first_discovery_s: float = 0.0
    first_discovery_rows: int = 0
    first_listing_rss: dict[str, float] = field(default_factory=dict)
    rediscovery_listed: int = 0
    rediscovery_s: float = 0.0
    rediscovery_new: int = 0
    rediscovery_unchanged: int = 0
    rediscovery_rows_written: int = 0
    rediscovery_wal_bytes: int = 0
    rediscovery_rss: dict[str, float] = field(default_factory=dict)
    half_claim_plan: list[str] = field(default_factory=list)  # first run half done: 500k tagged, 500k pending
    half_claim_plan_without_index: list[str] = field(default_factory=list)
    claim_plan: list[str] = field(default_factory=list)  # 1000 pending among 1M tagged
    claim_plan_without_index: list[str] = field(default_factory=list)
    claim_all_new_s: float = 0.0
    claimed: int = 0
    server_version: str = ""


def _source(total: int, skip_every: int | None, page_size: int) -> S3Store:
    return S3Store("catalogue", "cat/", page_size=page_size, client=GeneratedS3Client(_Pages(total, skip_every, page_size)))


def _scalar(store: Store, sql: str, params: dict[str, Any] | None = None) -> Any:
    with store.engine.begin() as conn:
        return conn.execute(text(sql), params or {}).scalar_one()


def _claim_plans(store: Store, params: dict[str, Any]) -> tuple[list[str], list[str]]:
    """EXPLAIN ANALYZE of one claim (rolled back), with and without migration 0003's partial index."""
    explain = text("EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) " + raw_queries()["claim_pending"])
    with store.engine.connect() as conn:
        with_index = [row[0] for row in conn.execute(explain, params)]
        conn.rollback()
    with store.engine.connect() as conn:
        conn.execute(text("DROP INDEX tracks_pending_claim_idx"))  # rolled back below
        without_index = [row[0] for row in conn.execute(explain, params)]
        conn.rollback()
    return with_index, without_index


def bench_discovery_scale(database_url: str, objects: int = 1_000_000, new: int = 1000, page_size: int = 1000,
                          log: Any = print) -> DiscoveryScaleResult:
    result = DiscoveryScaleResult(objects, new, page_size)
    total = objects + new
    skip_every = total // new  # the new objects are every skip_every-th key of the final listing
    with scratch_database(database_url, "ct_bench_discovery") as url, Store.connect(url) as store:
        store.migrate()
        result.server_version = str(_scalar(store, "SHOW server_version"))

        first = _source(total, skip_every, page_size)
        with RssSampler() as rss:
            started = time.perf_counter()
            counts = discover_objects(first, store)
            result.first_discovery_s = time.perf_counter() - started
        result.first_discovery_rows = counts.new
        result.first_listing_rss = rss.summary()
        log(f"first discovery: {counts.new} rows in {result.first_discovery_s:.1f} s, rss {rss.summary()}")

        with store.engine.begin() as conn:  # a first run half done: the older half tagged, the newer half pending
            conn.execute(text("UPDATE tracks SET status = 'tagged' WHERE track_id <= :half"), {"half": objects // 2})
        with store.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM ANALYZE tracks"))
        half_run = store.open_run(first.uri, ["bench"]).run_id  # its lease ends with the process
        half_params = {"run_id": half_run, "limit": CLAIM_CHUNK, "partition_key": None, "source": first.uri,
                       "lease_class": LEASE_CLASS}
        result.half_claim_plan, result.half_claim_plan_without_index = _claim_plans(store, half_params)
        log("claim with half tagged:\n  " + "\n  ".join(result.half_claim_plan))
        log("without tracks_pending_claim_idx:\n  " + "\n  ".join(result.half_claim_plan_without_index))

        with store.engine.begin() as conn:  # a tagged catalogue: nothing pending before the new objects arrive
            conn.execute(text("UPDATE tracks SET status = 'tagged', tagged_at = now()"))
        with store.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM ANALYZE tracks"))

        xid = int(_scalar(store, "SELECT txid_current() % 4294967296"))
        lsn = str(_scalar(store, "SELECT pg_current_wal_lsn()::text"))
        again = _source(total, None, page_size)
        with RssSampler() as rss:
            started = time.perf_counter()
            counts = discover_objects(again, store)
            result.rediscovery_s = time.perf_counter() - started
        result.rediscovery_listed = counts.new + counts.changed + counts.unchanged
        result.rediscovery_new, result.rediscovery_unchanged = counts.new, counts.unchanged
        result.rediscovery_rss = rss.summary()
        result.rediscovery_wal_bytes = int(_scalar(
            store, "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), CAST(:lsn AS pg_lsn))", {"lsn": lsn}))
        result.rediscovery_rows_written = int(_scalar(
            store, "SELECT count(*) FROM tracks WHERE xmin::text::bigint >= :xid", {"xid": xid}))
        log(f"rediscovery: {counts} in {result.rediscovery_s:.1f} s, rows written {result.rediscovery_rows_written}, "
            f"WAL {result.rediscovery_wal_bytes} B")

        with store.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("ANALYZE tracks"))
        run_id = store.open_run(again.uri, ["bench"]).run_id
        params = {"run_id": run_id, "limit": CLAIM_CHUNK, "partition_key": None, "source": again.uri,
                  "lease_class": LEASE_CLASS}
        result.claim_plan, result.claim_plan_without_index = _claim_plans(store, params)
        started = time.perf_counter()
        while batch := store.claim_pending(run_id, CLAIM_CHUNK, source=again.uri):  # as a run claims
            result.claimed += len(batch)
        result.claim_all_new_s = time.perf_counter() - started
        log("claim plan:\n  " + "\n  ".join(result.claim_plan))
        log("without tracks_pending_claim_idx:\n  " + "\n  ".join(result.claim_plan_without_index))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--objects", type=int, default=1_000_000)
    parser.add_argument("--new", type=int, default=1000)
    parser.add_argument("--page-size", type=int, default=1000)
    parser.add_argument("--json", default=None, help="Also write the result to this file.")
    args = parser.parse_args()
    settings = Settings.from_env()
    url = resolve_database_url(args.database_url or settings.database_url, settings.home)
    result = bench_discovery_scale(url, args.objects, args.new, args.page_size,
                                   log=lambda m: print(m, flush=True))
    payload = json.dumps(asdict(result), indent=2)
    print(payload)
    if args.json:
        with open(args.json, "w") as fh:
            fh.write(payload + "\n")


if __name__ == "__main__":
    main()
