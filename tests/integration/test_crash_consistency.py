"""Crash consistency (slow; `make slow`): ``tag`` killed with SIGKILL at random points, again and again, then run
to the end: the database equals a clean run's — same tracks and statuses, same scores, no duplicate and no
half-written track, every killed run's row closed and its claims taken over."""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import text

from catalogue_tagger.store.store import Store
from test_reliability import make_catalogue

COMMAND = str(Path(sys.executable).parent / "catalogue-tagger")
TRIALS = 20
COPIES = 6  # 24 tracks of 12 s: each run takes long enough for kills to land in decode, inference and writes

pytestmark = pytest.mark.slow


def _env(url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CATALOGUE_TAGGER_")}
    env.update(CATALOGUE_TAGGER_DATABASE_URL=url, CATALOGUE_TAGGER_MODELS="musicnn-mtt",
               CATALOGUE_TAGGER_WORKERS="1", CATALOGUE_TAGGER_BATCH_SIZE="8")
    return env


def _snapshot(url: str) -> dict[str, object]:
    with Store.connect(url) as store, store.connection() as conn:
        def q(sql: str) -> list[tuple[object, ...]]:
            return [tuple(r) for r in conn.execute(text(sql)).all()]

        return {
            "tracks": q("SELECT regexp_replace(uri, '^.*/', ''), status, error_kind FROM tracks ORDER BY 1"),
            "scores": {(u, t): s for u, t, s in q("SELECT regexp_replace(uri, '^.*/', ''), tag, score FROM tag_scores")},
            "duplicates": q("SELECT count(*) - count(DISTINCT (track_id, model_id, tag)) FROM track_tags")[0][0],
            "half_written": q("SELECT count(*) FROM tracks t WHERE status = 'tagged' AND ((SELECT count(*) FROM "
                              "track_tags g WHERE g.track_id = t.track_id) <> 50 OR (SELECT count(*) FROM "
                              "track_embeddings e WHERE e.track_id = t.track_id) <> 1)")[0][0],
            "runs": q("SELECT status, count(*) FROM runs GROUP BY status ORDER BY status"),
            "stale_claims": q("SELECT count(*) FROM tracks WHERE claimed_by_run IS NOT NULL")[0][0],
        }


def test_kill_9_at_random_points_then_rerun_equals_a_clean_run(
    tmp_path: Path, database_factory: Callable[[], str]
) -> None:
    catalogue = make_catalogue(tmp_path / "catalogue", copies=COPIES)
    clean_url, crash_url = database_factory(), database_factory()
    started = time.perf_counter()
    clean = subprocess.run([COMMAND, "tag", str(catalogue), "--json"], env=_env(clean_url), capture_output=True,
                           text=True, timeout=1200, check=True)
    clean_s = time.perf_counter() - started
    assert json.loads(clean.stdout)["tagged"] == 4 * COPIES

    rng = random.Random(0)
    killed_mid_run = 0
    landed: list[int] = []  # tagged tracks at each kill
    for _ in range(TRIALS):
        process = subprocess.Popen([COMMAND, "tag", str(catalogue), "--force"], env=_env(crash_url),
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        time.sleep(rng.uniform(0.5, 0.9 * clean_s))
        if process.poll() is None:
            killed_mid_run += 1
        with contextlib.suppress(ProcessLookupError):  # the run may have finished first
            os.killpg(process.pid, signal.SIGKILL)  # the process and its decode workers, as a node loss would
        process.wait()
        with Store.connect(crash_url) as store, store.connection() as conn:
            try:
                landed.append(int(conn.execute(text("SELECT count(*) FROM tracks WHERE status = 'tagged'")).scalar_one()))
            except Exception:  # noqa: BLE001 - killed before the schema existed
                landed.append(-1)
    rerun = subprocess.run([COMMAND, "tag", str(catalogue), "--json"], env=_env(crash_url), capture_output=True,
                           text=True, timeout=1200, check=False)
    assert rerun.returncode == 0, rerun.stderr

    want, got = _snapshot(clean_url), _snapshot(crash_url)
    assert got["tracks"] == want["tracks"]
    assert got["scores"].keys() == want["scores"].keys()  # type: ignore[union-attr]
    worst = max(abs(got["scores"][k] - want["scores"][k]) for k in want["scores"])  # type: ignore[index,union-attr]
    assert worst <= 1e-5
    assert got["duplicates"] == 0 and got["half_written"] == 0 and got["stale_claims"] == 0
    statuses = dict(got["runs"])  # type: ignore[arg-type]
    assert "running" not in statuses and statuses["completed"] >= 1
    print(json.dumps({"trials": TRIALS, "killed_mid_run": killed_mid_run, "tagged_at_each_kill": landed,
                      "clean_run_s": round(clean_s, 1), "runs": got["runs"], "max_score_delta": worst}))
