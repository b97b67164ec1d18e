"""Discovery and claims at catalogue scale.

CI-sized: a rediscovery writes (and locks) only new rows; a claim reads pending rows through a partial index,
not the whole table. Slow (``-m slow``): the million-object benchmark of ``benchmarks/discovery_scale.py`` —
a generated S3 listing in pages of 1000, rediscovered with 1000 new objects — checked for rows written, flat
memory while listing, and the claim's plan; its timings are printed (and reported in docs/reliability.md).

    nice .venv/bin/python -m pytest tests/integration/test_discovery_scale.py -m slow -s
"""

from __future__ import annotations

import importlib.util
import json
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from catalogue_tagger.pipeline import discover_objects
from catalogue_tagger.records import ObjectInfo
from catalogue_tagger.store.queries import raw_queries
from catalogue_tagger.store.store import LEASE_CLASS, Store

REPO = Path(__file__).resolve().parents[2]
DAY = datetime(2024, 3, 1, 12, tzinfo=timezone.utc)


def _bench() -> Any:
    spec = importlib.util.spec_from_file_location("discovery_scale", REPO / "benchmarks" / "discovery_scale.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def _objects(n: int, start: int = 0) -> list[ObjectInfo]:
    return [ObjectInfo(f"s3://cat/{i:07d}.mp3", f"e{i}", 1000 + i, DAY) for i in range(start, start + n)]


class _Listing:
    """An object store over a fixed list (the property under test is the store's, not the listing's)."""

    uri = "s3://cat/"

    def __init__(self, objects: list[ObjectInfo]) -> None:
        self.objects = objects

    def list(self) -> Any:
        return iter(self.objects)


def test_rediscovery_writes_and_locks_only_new_rows(store: Store) -> None:
    known = _objects(20_000)
    assert discover_objects(_Listing(known), store).new == 20_000  # type: ignore[arg-type]
    with store.engine.begin() as conn:
        xid = conn.execute(text("SELECT txid_current() % 4294967296")).scalar_one()
    counts = discover_objects(_Listing(known + _objects(50, start=20_000)), store)  # type: ignore[arg-type]
    assert (counts.new, counts.changed, counts.unchanged) == (50, 0, 20_000)
    with store.connection() as conn:
        written = conn.execute(text("SELECT count(*) FROM tracks WHERE xmin::text::bigint >= :x"), {"x": xid})
        assert written.scalar_one() == 50
        # ON CONFLICT … DO UPDATE … WHERE false would still lock (write xmax into) every known row
        locked = conn.execute(text("SELECT count(*) FROM tracks WHERE xmax::text <> '0'")).scalar_one()
        assert locked == 0


def _plan(store: Store, partition_key: str | None) -> dict[str, Any]:
    params = {"run_id": 1, "limit": 64, "partition_key": partition_key, "source": "s3://cat/",
              "lease_class": LEASE_CLASS}
    with store.connection() as conn:
        conn.execute(text("INSERT INTO runs (run_id, source) VALUES (1, 's3://cat/') ON CONFLICT DO NOTHING"))
        raw = conn.execute(text("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + raw_queries()["claim_pending"]),
                           params).scalar_one()
        conn.rollback()  # EXPLAIN ANALYZE ran the claim: undo it
    plan: dict[str, Any] = (json.loads(raw) if isinstance(raw, str) else raw)[0]
    return plan


def _nodes(node: dict[str, Any]) -> list[dict[str, Any]]:
    return [node, *(n for child in node.get("Plans", ()) for n in _nodes(child))]


def test_claiming_new_tracks_reads_only_pending_rows(store: Store) -> None:
    with store.engine.begin() as conn:  # 200 000 tagged tracks over 200 days, then 100 new pending ones
        conn.execute(text(
            "INSERT INTO tracks (uri, etag, size_bytes, last_modified, partition_key, status) "
            "SELECT 's3://cat/' || i, 'e', 1, now(), '2024-01-' || lpad((i % 28 + 1)::text, 2, '0'), 'tagged' "
            "FROM generate_series(1, 200000) AS i"))
        conn.execute(text(
            "INSERT INTO tracks (uri, etag, size_bytes, last_modified, partition_key) "
            "SELECT 's3://cat/new-' || i, 'e', 1, now(), '2024-02-01' FROM generate_series(1, 100) AS i"))
    with store.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("ANALYZE tracks"))
    for partition_key, index in ((None, "tracks_pending_claim_idx"), ("2024-02-01", "tracks_pending_idx")):
        plan = _plan(store, partition_key)
        nodes = _nodes(plan["Plan"])
        scans = [n for n in nodes if n["Node Type"].endswith("Scan") and n.get("Relation Name") == "tracks"]
        assert not [n for n in scans if n["Node Type"] == "Seq Scan"], plan
        assert index in {n.get("Index Name") for n in scans}, plan
        assert all(n.get("Rows Removed by Filter", 0) == 0 for n in scans), plan
        assert plan["Plan"]["Shared Hit Blocks"] + plan["Plan"]["Shared Read Blocks"] < 2000, plan  # not 200 000


@pytest.mark.slow
def test_a_million_objects_rediscovered_write_only_the_new_ones(server_url: str) -> None:
    result = _bench().bench_discovery_scale(server_url, objects=1_000_000, new=1000, page_size=1000)
    print(json.dumps({k: v for k, v in vars(result).items() if "claim_plan" not in k}, indent=2))
    print("\n".join(result.claim_plan))
    assert result.first_discovery_rows == 1_000_000
    assert (result.rediscovery_new, result.rediscovery_unchanged) == (1000, 1_000_000)
    assert result.rediscovery_rows_written == 1000
    assert result.claimed == 1000
    assert any("tracks_pending_claim_idx" in line for line in result.claim_plan)
    assert any("tracks_pending_claim_idx" in line for line in result.half_claim_plan)
    for rss in (result.first_listing_rss, result.rediscovery_rss):  # flat: a page and a batch, never the listing
        assert rss["max_mib"] - rss["start_mib"] < 64, rss
