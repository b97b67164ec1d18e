"""S3 under faults: a proxy of our own in front of the moto server fails a share of requests (500, 503,
SlowDown, connection reset, a body cut off or stalled); reads and tagging retry and end up equal to a clean run,
and an object that always fails is recorded as ``fetch_error`` once the retry budget is spent."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from catalogue_tagger.config import Settings
from catalogue_tagger.errors import FetchError
from catalogue_tagger.pipeline import tag
from catalogue_tagger.sources import S3Store
from catalogue_tagger.store.store import Store

from fault_proxy import FAULTS, FaultPlan, FaultProxy, Request, fault_proxy

BLOCK = 64 * 1024
#: Tight budgets so a test spends seconds, not minutes, on a hopeless object; the stall outlasts the timeout.
FAST = {"max_attempts": 6, "read_timeout_s": 1.0, "body_attempts": 6, "block_size": BLOCK}
SETTINGS = Settings(models=("musicnn-mtt",), workers=0, batch_size=8)


def _store(proxy: FaultProxy, bucket: str, prefix: str = "", **overrides: Any) -> S3Store:
    return S3Store(bucket, prefix, endpoint_url=proxy.url, **{**FAST, **overrides})


@pytest.fixture
def objects(s3_client: Any, s3_bucket: str) -> dict[str, bytes]:
    bodies = {f"in/{i:02d}.mp3": os.urandom(4 * BLOCK + 1000 * i) for i in range(8)}
    for key, body in bodies.items():
        s3_client.put_object(Bucket=s3_bucket, Key=key, Body=body)
    return bodies


def test_reads_and_listing_survive_a_quarter_of_requests_failing(
    s3_server: str, s3_bucket: str, objects: dict[str, bytes]
) -> None:
    plan = FaultPlan(rate=0.25, seed=7, stall_s=1.5)
    with fault_proxy(s3_server, plan) as proxy:
        with _store(proxy, s3_bucket, "in/", page_size=2) as source:
            listed = {info.uri: info for info in source.list()}
            assert sorted(listed) == sorted(f"s3://{s3_bucket}/{k}" for k in objects)
            for key, body in objects.items():
                with source.open(f"s3://{s3_bucket}/{key}") as fh:
                    assert fh.read() == body
                    fh.seek(-3000, os.SEEK_END)  # a tail read, as for an MP4 moov atom
                    assert fh.read() == body[-3000:]
    print(f"\n{proxy.requests} requests, faults injected and survived: {dict(proxy.faults)}")
    assert set(proxy.faults) == set(FAULTS), proxy.faults  # every kind was injected and survived
    assert sum(proxy.faults.values()) >= 0.2 * proxy.requests


def _always(fault: str, marker: str, ranged_only: bool = False) -> Any:
    def rule(request: Request) -> str | None:
        if marker in request.key and (request.ranged or not ranged_only):
            return fault
        return None
    return rule


@pytest.mark.parametrize("fault", ["500", "slowdown", "reset"])
def test_request_failing_every_time_is_a_fetch_error_after_the_budget(
    s3_server: str, s3_bucket: str, objects: dict[str, bytes], fault: str
) -> None:
    key = next(iter(objects))
    with fault_proxy(s3_server, FaultPlan(rules=[_always(fault, key)])) as proxy:
        with _store(proxy, s3_bucket, max_attempts=3) as source, pytest.raises(FetchError) as excinfo:
            source.open(f"s3://{s3_bucket}/{key}")
    assert excinfo.value.kind == "fetch_error" and key in excinfo.value.detail
    assert proxy.requests == 3  # the client's budget, no more


@pytest.mark.parametrize("fault", ["cut", "stall"])
def test_body_failing_every_time_is_a_fetch_error_after_the_budget(
    s3_server: str, s3_bucket: str, objects: dict[str, bytes], fault: str
) -> None:
    key = next(iter(objects))
    plan = FaultPlan(stall_s=1.5, rules=[_always(fault, key, ranged_only=True)])
    with fault_proxy(s3_server, plan) as proxy:
        with _store(proxy, s3_bucket, body_attempts=3) as source, source.open(f"s3://{s3_bucket}/{key}") as fh:
            with pytest.raises(FetchError, match="gave up after 3 attempts") as excinfo:
                fh.read(10)
    assert excinfo.value.kind == "fetch_error" and key in excinfo.value.detail
    assert proxy.faults[fault] >= 3


def _scores(store: Store) -> dict[tuple[str, str], float]:
    with store.connection() as conn:
        rows = conn.exec_driver_sql("SELECT uri, tag, score FROM tag_scores").all()
    return {(r.uri, r.tag): r.score for r in rows}


def _statuses(store: Store) -> dict[str, tuple[str, str | None]]:
    with store.connection() as conn:
        rows = conn.exec_driver_sql("SELECT uri, status, error_kind FROM tracks").all()
    return {r.uri: (r.status, r.error_kind) for r in rows}


def test_tagging_through_faults_equals_a_clean_run_and_hopeless_objects_fail(
    store: Store, s3_server: str, s3_client: Any, s3_bucket: str, audio_fixtures: Path
) -> None:
    names = ["excerpt.mp3", "excerpt.m4a", "excerpt.ogg"]
    for name in names:
        s3_client.upload_file(str(audio_fixtures / name), s3_bucket, f"cat/{name}")
    clean = tag(S3Store(s3_bucket, "cat/", endpoint_url=s3_server, block_size=BLOCK), store, SETTINGS)
    assert clean.tagged == len(names)
    expected = _scores(store)

    for name in ("always-500.mp3", "always-cut.mp3"):
        s3_client.upload_file(str(audio_fixtures / "excerpt.mp3"), s3_bucket, f"cat/{name}")
    plan = FaultPlan(
        rate=0.3, seed=3, stall_s=1.5,
        rules=[_always("500", "always-500"), _always("cut", "always-cut", ranged_only=True)],
    )
    with fault_proxy(s3_server, plan) as proxy:
        faulty = tag(_store(proxy, s3_bucket, "cat/"), store, SETTINGS, force=True)
    assert faulty.tagged == len(names) and faulty.failed == {"fetch_error": 2}
    assert _scores(store) == pytest.approx(expected, abs=1e-6)
    statuses = _statuses(store)
    assert statuses[f"s3://{s3_bucket}/cat/always-500.mp3"] == ("failed", "fetch_error")
    assert statuses[f"s3://{s3_bucket}/cat/always-cut.mp3"] == ("failed", "fetch_error")
    print(f"\n{proxy.requests} requests, faults injected: {dict(proxy.faults)}")
    random_faults = sum(proxy.faults.values()) - proxy.faults["500"] - proxy.faults["cut"]
    assert random_faults > 0, proxy.faults
