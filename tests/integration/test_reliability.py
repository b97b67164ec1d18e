"""Reliability against real servers: a Postgres restarted mid-run, a database gone for longer than the retry
budget, concurrent runs on one catalogue, and every exit path of a run closing what it opened."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import text
from threadpoolctl import threadpool_limits

from catalogue_tagger.config import Settings
from catalogue_tagger.errors import BackendUnavailable
from catalogue_tagger.pipeline import tag
from catalogue_tagger.sources import FolderStore
from catalogue_tagger.store.embedded import EmbeddedPostgres
from catalogue_tagger.store.engine import normalize_url
from catalogue_tagger.store.store import Store

DEMO = Path(__file__).resolve().parents[2] / "catalogue_tagger" / "demo"
COMMAND = str(Path(sys.executable).parent / "catalogue-tagger")
MUSICNN = Settings(models=("musicnn-mtt",), workers=0, batch_size=4)


def rows(store: Store, sql: str) -> list[tuple[object, ...]]:
    with store.connection() as conn:
        return [tuple(r) for r in conn.execute(text(sql)).all()]


def make_catalogue(folder: Path, copies: int) -> Path:
    """``copies`` × the 4 demo excerpts (12 s of real music each) under distinct names."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(copies):
        for mp3 in sorted(DEMO.glob("*.mp3")):
            shutil.copy2(mp3, folder / f"{i:02d}-{mp3.name}")
    return folder


@pytest.fixture
def own_server() -> Iterator[EmbeddedPostgres]:
    """A Postgres of this test's own, free to be stopped and started (same port after a restart)."""
    home = Path(tempfile.mkdtemp(prefix="catalogue-tagger-restart-pg-"))
    server = EmbeddedPostgres(home)
    server.ensure_running()
    yield server
    server.stop()
    shutil.rmtree(home, ignore_errors=True)


def wait_for(condition: object, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def test_a_postgres_restart_mid_run_loses_nothing(own_server: EmbeddedPostgres, tmp_path: Path) -> None:
    url = normalize_url(own_server.ensure_running())
    catalogue = make_catalogue(tmp_path / "catalogue", copies=3)
    # The server is restarted (a fork) from this process while the run decodes inline in a thread: OpenBLAS's
    # fork handler can hang on its worker threads when a matrix product is under way, so BLAS stays on the
    # calling thread here (decode workers run that way anyway).
    with threadpool_limits(limits=1, user_api="blas"), Store.connect(url, retry_s=120) as store:
        store.migrate()
        reports = []
        worker = threading.Thread(target=lambda: reports.append(tag(FolderStore(catalogue), store, MUSICNN)))
        worker.start()
        wait_for(lambda: rows(store, "SELECT count(*) FROM tracks WHERE status = 'tagged'")[0][0] >= 1)
        own_server.stop()  # mid-run: tracks decoded and scored meanwhile wait in the writer's queue
        time.sleep(3)
        assert normalize_url(own_server.ensure_running()) == url  # restarted on its port
        worker.join(timeout=600)
        [report] = reports
        assert report.tagged == 12 and report.n_failed == 0
        assert rows(store, "SELECT status, count(*) FROM tracks GROUP BY status") == [("tagged", 12)]
        assert rows(store, "SELECT count(*), count(DISTINCT (track_id, tag)) FROM track_tags") == [(12 * 50, 12 * 50)]
        assert rows(store, "SELECT status FROM runs") == [("completed",)]


def test_a_database_gone_past_the_retry_budget_fails_the_run_and_a_rerun_finishes(
    own_server: EmbeddedPostgres, tmp_path: Path
) -> None:
    url = normalize_url(own_server.ensure_running())
    catalogue = make_catalogue(tmp_path / "catalogue", copies=2)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CATALOGUE_TAGGER_")}
    env.update(CATALOGUE_TAGGER_DATABASE_URL=url, CATALOGUE_TAGGER_DATABASE_RETRY_S="3",
               CATALOGUE_TAGGER_MODELS="musicnn-mtt", CATALOGUE_TAGGER_WORKERS="0", CATALOGUE_TAGGER_BATCH_SIZE="4")
    process = subprocess.Popen([COMMAND, "tag", str(catalogue)], env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    with Store.connect(url) as store:
        wait_for(lambda: _tagged(store) >= 1)
    own_server.stop()
    _, stderr = process.communicate(timeout=600)
    assert process.returncode == 2, stderr
    assert "store_error" in stderr and "Traceback" not in stderr
    assert normalize_url(own_server.ensure_running()) == url
    rerun = subprocess.run([COMMAND, "tag", str(catalogue)], env=env, capture_output=True, text=True, timeout=600,
                           check=False)
    assert rerun.returncode == 0, rerun.stderr
    with Store.connect(url) as store:
        assert rows(store, "SELECT status, count(*) FROM tracks GROUP BY status") == [("tagged", 8)]
        assert rows(store, "SELECT status FROM runs ORDER BY run_id") == [("abandoned",), ("completed",)]


def _tagged(store: Store) -> int:
    try:
        return int(rows(store, "SELECT count(*) FROM tracks WHERE status = 'tagged'")[0][0])  # type: ignore[call-overload]
    except Exception:  # noqa: BLE001 - not migrated yet
        return 0


@pytest.mark.parametrize("processes", [2, 4])
def test_concurrent_runs_tag_each_track_once(processes: int, tmp_path: Path, database_factory: object) -> None:
    url = database_factory()  # type: ignore[operator]
    catalogue = make_catalogue(tmp_path / "catalogue", copies=2)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CATALOGUE_TAGGER_")}
    env.update(CATALOGUE_TAGGER_DATABASE_URL=url, CATALOGUE_TAGGER_MODELS="musicnn-mtt",
               CATALOGUE_TAGGER_WORKERS="0", CATALOGUE_TAGGER_BATCH_SIZE="4")
    runs = [subprocess.Popen([COMMAND, "tag", str(catalogue), "--json"], env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True) for _ in range(processes)]
    outputs = [run.communicate(timeout=900) for run in runs]
    assert [run.returncode for run in runs] == [0] * processes, [err for _, err in outputs]
    with Store.connect(url) as store:
        assert rows(store, "SELECT status, count(*) FROM tracks GROUP BY status") == [("tagged", 8)]
        assert rows(store, "SELECT count(*), count(DISTINCT (track_id, model_id, tag)) FROM track_tags") == [(400, 400)]
        per_run = rows(store, "SELECT status, CAST(stats->>'tagged' AS int) FROM runs ORDER BY run_id")
    assert [status for status, _ in per_run] == ["completed"] * processes
    assert sum(n for _, n in per_run) == 8  # the work of one run, shared out


@pytest.mark.parametrize("workers", [0, 1])
def test_a_backend_that_cannot_open_still_finishes_its_run(store: Store, tmp_path: Path, workers: int) -> None:
    """Also when decode workers had started on the first tracks while the backends opened: their claims are
    given back and no track is marked failed."""
    catalogue = make_catalogue(tmp_path / "catalogue", copies=1)
    settings = Settings(models=("musicnn-mtt",), backend="tensorrt", engine_cache=tmp_path / "engines",
                        workers=workers)
    with pytest.raises(BackendUnavailable):
        tag(FolderStore(catalogue), store, settings)
    assert rows(store, "SELECT status FROM runs") == [("failed",)]
    assert rows(store, "SELECT status, count(*) FROM tracks GROUP BY status") == [("pending", 4)]
    assert rows(store, "SELECT count(*) FROM tracks WHERE claimed_by_run IS NOT NULL") == [(0,)]
    assert rows(store, "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'") == [(0,)]  # lease given back


def test_an_empty_object_is_empty_audio(store: Store, tmp_path: Path) -> None:
    catalogue = make_catalogue(tmp_path / "catalogue", copies=1)
    (catalogue / "zero.mp3").write_bytes(b"")
    report = tag(FolderStore(catalogue), store, MUSICNN)
    assert report.tagged == 4 and report.failed == {"empty_audio": 1}


def test_objects_over_max_bytes_fail_as_too_large(store: Store, tmp_path: Path) -> None:
    catalogue = make_catalogue(tmp_path / "catalogue", copies=1)
    small = min(p.stat().st_size for p in catalogue.iterdir())
    report = tag(FolderStore(catalogue), store, Settings(models=("musicnn-mtt",), workers=0, max_bytes=small))
    assert report.tagged == 2 and report.failed == {"too_large": 2}
    assert {kind for (kind,) in rows(store, "SELECT error_kind FROM tracks WHERE status = 'failed'")} == {"too_large"}


def test_unexpected_errors_of_each_stage_have_their_own_kind() -> None:
    from catalogue_tagger.errors import DecodeCrash, EmptyAudio, InferenceError, WriteError, failure_of

    assert failure_of(EmptyAudio("x.mp3: empty"), DecodeCrash) == ("empty_audio", "x.mp3: empty")
    assert failure_of(ValueError("bad header"), DecodeCrash) == ("decode_crash", "ValueError: bad header")
    assert failure_of(RuntimeError("CUDA OOM"), InferenceError)[0] == "inference_error"
    assert failure_of(KeyError("m"), WriteError)[0] == "write_error"


def test_a_crashing_backend_fails_its_batch_as_inference_error() -> None:
    from catalogue_tagger.inference.base import Backend
    from catalogue_tagger.inference_loop import InferenceLoop
    from catalogue_tagger.messages import SegmentReady, TrackDecoded, TrackFailed, TrackStarted
    from catalogue_tagger.models.specs import get_spec
    from catalogue_tagger.records import TrackFailure

    class Crashing(Backend):
        spec = get_spec("musicnn-mtt")

        def run(self, batch: np.ndarray) -> dict[str, np.ndarray]:
            raise ZeroDivisionError("kernel bug")

    loop = InferenceLoop({"musicnn-mtt": Crashing()}, batch_size=1)
    window = np.zeros(Crashing.spec.window, np.float32)
    done = loop.feed_all([TrackStarted(1, "a.mp3"), SegmentReady(1, "musicnn-mtt", 0, window),
                          SegmentReady(1, "musicnn-mtt", 1, window),  # a late segment of the failed track
                          TrackDecoded(1, "a.mp3", {"musicnn-mtt": 2}, 6.0, ()),
                          TrackStarted(2, "b.mp3"), TrackFailed(2, "b.mp3", "decode_error", "bad frame")])
    assert done == [TrackFailure(1, "a.mp3", "inference_error", "musicnn-mtt: ZeroDivisionError: kernel bug"),
                    TrackFailure(2, "b.mp3", "decode_error", "bad frame")]


def test_a_refused_track_is_a_write_error_and_its_batch_mates_land(store: Store) -> None:
    from store_factories import LABELS, objects, result

    from catalogue_tagger.writer import ResultWriter

    model_ids = {"m1": store.register_model("m1", "w1", LABELS, "spectrogram", 4)}
    store.record_objects(objects(3))
    with store.open_run("s", ["m1"]) as lease:
        tasks = store.claim_pending(lease.run_id, 3)
        writer = ResultWriter(store, lease.run_id, model_ids)
        for task in tasks[:2]:
            writer.put(result(task))
        writer.put(result(tasks[2], models=("not-registered",)))
        writer.close()
    assert writer.tagged == 2 and dict(writer.failed) == {"write_error": 1}
    assert rows(store, "SELECT status, error_kind FROM tracks ORDER BY track_id") == [
        ("tagged", None), ("tagged", None), ("failed", "write_error")]
