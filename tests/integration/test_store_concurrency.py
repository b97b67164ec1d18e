"""Two processes sharing one catalogue: claims never overlap, overlapping writes never deadlock."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from sqlalchemy import text
from store_factories import LABELS, objects

from catalogue_tagger.store.store import Store

WORKER = Path(__file__).with_name("store_worker.py")
N_TRACKS = 120


def run_workers(*argv: tuple[str, ...]) -> list[object]:
    procs = [
        subprocess.Popen([sys.executable, str(WORKER), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, cwd=WORKER.parent)
        for args in argv
    ]
    outputs = [proc.communicate(timeout=180) for proc in procs]
    for proc, (_, err) in zip(procs, outputs):
        assert proc.returncode == 0, err
    return [json.loads(out) for out, _ in outputs]


def counts(store: Store) -> tuple[int, int, int]:
    with store.connection() as conn:
        return tuple(conn.execute(text(  # type: ignore[return-value]
            "SELECT (SELECT count(*) FROM tracks WHERE status = 'tagged'),"
            " (SELECT count(*) FROM track_tags), (SELECT count(*) FROM track_embeddings)"
        )).one())


def test_two_processes_claim_disjoint_tracks_and_write_each_once(store: Store, database_url: str) -> None:
    store.record_objects(objects(N_TRACKS))
    claimed_a, claimed_b = run_workers(("claim", database_url, "5"), ("claim", database_url, "5"))
    assert isinstance(claimed_a, list) and isinstance(claimed_b, list)
    assert not set(claimed_a) & set(claimed_b)
    assert len(claimed_a) + len(claimed_b) == N_TRACKS
    assert counts(store) == (N_TRACKS, N_TRACKS * len(LABELS), N_TRACKS)
    with store.connection() as conn:
        assert conn.execute(text("SELECT max(attempts), min(attempts) FROM tracks")).one() == (1, 1)
        assert conn.execute(text("SELECT count(*) FROM tracks WHERE claimed_by_run IS NOT NULL")).scalar() == 0


def test_overlapping_writes_in_opposite_orders_do_not_deadlock(store: Store, database_url: str) -> None:
    store.record_objects(objects(N_TRACKS))
    assert run_workers(("rewrite", database_url, "0"), ("rewrite", database_url, "1")) == [N_TRACKS, N_TRACKS]
    assert counts(store) == (N_TRACKS, N_TRACKS * len(LABELS), N_TRACKS)
