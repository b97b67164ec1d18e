"""The catalogue job end to end: real audio in a folder or on a real S3 server, tags in a real Postgres."""

from __future__ import annotations

import os
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from catalogue_tagger.models.specs import get_spec
from catalogue_tagger.config import Settings
from catalogue_tagger.decode_pool import start_decoders
from catalogue_tagger.inference import resolve_backend
from catalogue_tagger.inference.torch_backend import cpu_supports_bf16
from catalogue_tagger.pipeline import tag
from catalogue_tagger.predict import predict_files
from catalogue_tagger.records import TrackResult
from catalogue_tagger.sources import FolderStore, S3Store
from catalogue_tagger.store.store import Store

GOOD = ["excerpt.mp3", "excerpt.ogg", "excerpt.opus", "excerpt.m4a", "excerpt_16k_mono.flac", "excerpt_0.5s.wav",
        "excerpt_0.5s.aiff"]
BAD = {"corrupt.mp3": "unsupported_format", "empty.wav": "empty_audio"}
MUSICNN = Settings(models=("musicnn-mtt",), workers=0)
INLINE = replace(MUSICNN, batch_size=8)


def _scores(store: Store, uri: str, model: str = "musicnn-mtt") -> dict[str, float]:
    return {row["tag"]: row["score"] for row in store.tags_for_track(uri, model)}


def _track_rows(store: Store) -> list[tuple[Any, ...]]:
    with store.engine.connect() as conn:
        return [tuple(r) for r in conn.exec_driver_sql(
            "SELECT uri, etag, status, error_kind, attempts, tagged_at, duration_s FROM tracks ORDER BY uri")]


@pytest.fixture
def catalogue(tmp_path: Path, audio_fixtures: Path) -> Path:
    folder = tmp_path / "catalogue"
    folder.mkdir()
    for name in [*GOOD, *BAD]:
        shutil.copy2(audio_fixtures / name, folder / name)
    return folder


def test_folder_catalogue_is_tagged_like_predict(store: Store, catalogue: Path) -> None:
    report = tag(FolderStore(catalogue), store, replace(MUSICNN, workers=1, batch_size=16))
    assert report.tagged == len(GOOD)
    assert report.failed == {"unsupported_format": 1, "empty_audio": 1}
    statuses = {Path(r[0]).name: (r[2], r[3]) for r in _track_rows(store)}
    assert statuses == {**{n: ("tagged", None) for n in GOOD}, **{n: ("failed", k) for n, k in BAD.items()}}

    predictions = list(predict_files([catalogue / n for n in GOOD], MUSICNN))
    for name, prediction in zip(GOOD, predictions):
        assert isinstance(prediction.outcome, TrackResult)
        labels = prediction.outcome.outputs[0]
        stored = _scores(store, (catalogue / name).as_uri())
        expected = dict(zip(get_spec("musicnn-mtt").labels, labels.mean.tolist()))
        assert stored.keys() == expected.keys()
        assert max(abs(stored[t] - expected[t]) for t in stored) <= 1e-4, name


def test_rerun_writes_nothing_and_changed_object_is_retagged(store: Store, catalogue: Path, audio_fixtures: Path) -> None:
    first = tag(FolderStore(catalogue), store, INLINE)
    assert first.tagged == len(GOOD)
    before = _track_rows(store)

    again = tag(FolderStore(catalogue), store, INLINE)
    assert again.tagged == 0 and again.failed == {}
    assert _track_rows(store) == before

    changed = catalogue / "excerpt.mp3"
    old_scores = _scores(store, changed.as_uri())
    shutil.copy2(audio_fixtures / "excerpt.ogg", changed)  # new content under the same name
    third = tag(FolderStore(catalogue), store, INLINE)
    assert third.tagged == 1
    after = {r[0]: r for r in _track_rows(store)}
    assert after[changed.as_uri()][1] != {r[0]: r for r in before}[changed.as_uri()][1]  # new etag
    assert _scores(store, changed.as_uri()) != old_scores
    np.testing.assert_allclose(
        sorted(_scores(store, changed.as_uri()).values()),
        sorted(_scores(store, (catalogue / "excerpt.ogg").as_uri()).values()), atol=1e-5)

    forced = tag(FolderStore(catalogue), store, MUSICNN, force=True)
    assert forced.tagged == len(GOOD) and forced.failed == {"unsupported_format": 1, "empty_audio": 1}


def test_corrupt_file_then_fixed_keeps_failure_history(store: Store, catalogue: Path, audio_fixtures: Path) -> None:
    tag(FolderStore(catalogue), store, INLINE)
    broken = catalogue / "corrupt.mp3"
    shutil.copy2(audio_fixtures / "excerpt.mp3", broken)
    report = tag(FolderStore(catalogue), store, INLINE)
    assert report.tagged == 1
    history = store.failure_history(broken.as_uri())
    assert [h["kind"] for h in history] == ["unsupported_format"]
    status = {Path(r[0]).name: r[2] for r in _track_rows(store)}
    assert status["corrupt.mp3"] == "tagged"


def test_a_run_keeps_to_its_own_source(store: Store, catalogue: Path, tmp_path: Path, audio_fixtures: Path) -> None:
    """One database, two folders: tagging (or re-tagging) one neither claims nor fails the other's tracks."""
    other = tmp_path / "other"
    other.mkdir()
    shutil.copy2(audio_fixtures / "excerpt.mp3", other / "excerpt.mp3")
    tag(FolderStore(catalogue), store, INLINE)
    before = _track_rows(store)
    store.mark_pending(uris=[(catalogue / "excerpt.ogg").as_uri()])  # one track of the first source left pending

    report = tag(FolderStore(other), store, INLINE, force=True)
    assert report.tagged == 1 and report.failed == {}
    rows = {r[0]: r for r in _track_rows(store)}
    assert rows[(other / "excerpt.mp3").as_uri()][2] == "tagged"
    for row in before:  # the first source's rows: as they were, the pending one still pending
        expected = "pending" if row[0] == (catalogue / "excerpt.ogg").as_uri() else row[2]
        assert rows[row[0]][2:5] == (expected, *row[3:5]), row[0]

    again = tag(FolderStore(catalogue), store, INLINE)  # the first source's own run takes its pending track
    assert again.tagged == 1 and again.failed == {}


def test_decode_workers_started_ahead_serve_the_run_of_their_source(store: Store, catalogue: Path,
                                                                     tmp_path: Path) -> None:
    """The CLI starts the decode workers before it opens the store; the run takes them, and refuses workers
    started for another source."""
    settings = replace(MUSICNN, workers=1, batch_size=16)
    with start_decoders(FolderStore(tmp_path).uri, settings) as elsewhere, pytest.raises(ValueError):
        tag(FolderStore(catalogue), store, settings, decoders=elsewhere)
    with start_decoders(FolderStore(catalogue).uri, settings) as decoders:
        report = tag(FolderStore(catalogue), store, settings, decoders=decoders)
    assert report.tagged == len(GOOD) and report.failed == {"unsupported_format": 1, "empty_audio": 1}


def test_partition_selects_one_upload_day(store: Store, catalogue: Path) -> None:
    day1, day2 = 1_700_000_000, 1_700_000_000 + 86_400  # 2023-11-14 and 2023-11-15 (UTC)
    for i, path in enumerate(sorted(catalogue.iterdir())):
        stamp = day1 if i % 2 else day2
        os.utime(path, (stamp, stamp))
    report = tag(FolderStore(catalogue), store, INLINE, partition_key="2023-11-14")
    status = store.partition_status("2023-11-14")
    assert report.tagged + report.n_failed == status["total"] == status["tagged"] + status["failed"]
    assert store.partition_status("2023-11-15")["tagged"] == 0


def test_s3_catalogue_is_tagged(store: Store, s3_server: str, s3_client: Any, s3_bucket: str, audio_fixtures: Path) -> None:
    names = ["excerpt.m4a", "excerpt.opus", "corrupt.mp3"]
    for name in names:
        s3_client.upload_file(str(audio_fixtures / name), s3_bucket, f"incoming/{name}")
    s3_client.put_object(Bucket=s3_bucket, Key="incoming/notes.txt", Body=b"not audio")
    source = S3Store.from_uri(f"s3://{s3_bucket}/incoming/", endpoint_url=s3_server)
    options = replace(MUSICNN, workers=1, s3_endpoint_url=s3_server)
    report = tag(source, store, options)
    assert report.tagged == 2 and report.failed == {"unsupported_format": 1}

    local = list(predict_files([audio_fixtures / n for n in names[:2]], MUSICNN))
    for name, prediction in zip(names, local):
        assert isinstance(prediction.outcome, TrackResult)
        stored = _scores(store, f"s3://{s3_bucket}/incoming/{name}")
        expected = prediction.outcome.outputs[0].mean
        labels = get_spec("musicnn-mtt").labels
        assert max(abs(stored[t] - float(v)) for t, v in zip(labels, expected)) <= 1e-4

    assert tag(source, store, options).tagged == 0  # nothing new
    s3_client.upload_file(str(audio_fixtures / "excerpt.mp3"), s3_bucket, "incoming/excerpt.opus")  # changed
    assert tag(source, store, options).tagged == 1


@pytest.mark.skipif(not cpu_supports_bf16(), reason="this CPU has no native bfloat16 (AVX512-BF16 or AMX)")
def test_precision_is_part_of_the_model_version(store: Store, tmp_path: Path, audio_fixtures: Path) -> None:
    folder = tmp_path / "two"
    folder.mkdir()
    for name in ("excerpt.mp3", "excerpt.ogg"):
        shutil.copy2(audio_fixtures / name, folder / name)

    def current() -> tuple[str, dict[str, float]]:
        """The current version's precision and what tag_scores shows for one track, checked to be that version's."""
        with store.engine.connect() as conn:
            precision = conn.exec_driver_sql(
                "SELECT precision FROM current_models WHERE name = 'musicnn-mtt'").scalar_one()
            shown = dict(conn.exec_driver_sql(
                "SELECT tag, score FROM tag_scores WHERE model = 'musicnn-mtt' AND uri LIKE %s", ("%excerpt.mp3",)).all())
            version = dict(conn.exec_driver_sql(
                "SELECT tt.tag, tt.score FROM track_tags tt JOIN models m USING (model_id) JOIN tracks t USING (track_id) "
                "WHERE m.name = 'musicnn-mtt' AND m.precision = %s AND t.uri LIKE %s", (precision, "%excerpt.mp3")).all())
        assert shown == version
        return precision, shown

    tag(FolderStore(folder), store, INLINE)
    fp32_precision, fp32_scores = current()
    tag(FolderStore(folder), store, replace(INLINE, precision="bf16"), force=True)
    bf16_precision, bf16_scores = current()
    assert (fp32_precision, bf16_precision) == ("fp32", "bf16")
    assert len(fp32_scores) == len(bf16_scores) == 50  # tag_scores shows one version, never a mix
    assert fp32_scores != bf16_scores
    assert max(abs(fp32_scores[t] - bf16_scores[t]) for t in fp32_scores) < 0.05
    with store.engine.connect() as conn:
        versions = conn.exec_driver_sql(
            "SELECT precision, count(*) FROM models m JOIN track_tags tt USING (model_id) "
            "WHERE m.name = 'musicnn-mtt' GROUP BY precision ORDER BY precision").all()
        runs = conn.exec_driver_sql("SELECT precision, backends FROM runs ORDER BY run_id").all()
    assert [tuple(v) for v in versions] == [("bf16", 100), ("fp32", 100)]  # both kept, each a model version
    fp32_backend = resolve_backend(INLINE, "musicnn-mtt")[0]  # measured on this machine; bf16 is torch's
    assert [tuple(r) for r in runs] == [("fp32", {"musicnn-mtt": fp32_backend}), ("bf16", {"musicnn-mtt": "torch"})]

    tag(FolderStore(folder), store, INLINE, force=True)  # back to fp32: that version is current again
    assert current() == (fp32_precision, fp32_scores)


def test_an_int8_run_stores_its_own_model_version(store: Store, tmp_path: Path, audio_fixtures: Path) -> None:
    """`compile --precision int8` calibrates on real music; `tag --precision int8` runs that graph in ONNX Runtime
    and its scores are a model version of their own."""
    from catalogue_tagger.inference.compile import compile_int8

    folder = tmp_path / "one"
    folder.mkdir()
    shutil.copy2(audio_fixtures / "excerpt.ogg", folder / "excerpt.ogg")
    settings = replace(INLINE, models=("samplecnn-mtt",), engine_cache=tmp_path / "engines")
    compile_int8("samplecnn-mtt", settings.engine_dir, audio_fixtures)
    tag(FolderStore(folder), store, settings)
    tag(FolderStore(folder), store, replace(settings, precision="int8"), force=True)
    with store.engine.connect() as conn:
        scores = dict(conn.exec_driver_sql(
            "SELECT m.precision, array_agg(tt.score ORDER BY tt.tag) FROM track_tags tt JOIN models m USING (model_id) "
            "WHERE m.name = 'samplecnn-mtt' GROUP BY m.precision").all())
        runs = conn.exec_driver_sql("SELECT precision, backends FROM runs ORDER BY run_id").all()
        current = conn.exec_driver_sql("SELECT precision FROM current_models WHERE name = 'samplecnn-mtt'").scalar_one()
    fp32_backend = resolve_backend(settings, "samplecnn-mtt")[0]  # measured on this machine; int8 is ONNX Runtime's
    assert [tuple(r) for r in runs] == [("fp32", {"samplecnn-mtt": fp32_backend}), ("int8", {"samplecnn-mtt": "onnx"})]
    assert set(scores) == {"fp32", "int8"} and current == "int8"
    fp32, int8 = np.array(scores["fp32"]), np.array(scores["int8"])
    assert len(fp32) == len(int8) == 50 and 0 < np.abs(fp32 - int8).max() < 0.05


def _runs(store: Store) -> list[tuple[Any, ...]]:
    with store.engine.connect() as conn:
        return [tuple(r) for r in conn.exec_driver_sql(
            "SELECT run_id, status, finished_at IS NOT NULL, stats FROM runs ORDER BY run_id")]


@pytest.fixture
def unopenable_second_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Settings, list[str]]:
    """ONNX settings for musicnn-mtt then samplecnn-mtt, whose cached ONNX graph is damaged (ONNX Runtime
    refuses it), and the list of models whose backend was closed."""
    from catalogue_tagger.inference.compile import onnx_path_for
    from catalogue_tagger.inference.onnx_backend import OnnxBackend

    engines = tmp_path / "engines"
    damaged = onnx_path_for("samplecnn-mtt", engines)  # exported, then damaged as a crashed disk would leave it
    damaged.write_bytes(damaged.read_bytes()[:4096])
    closed: list[str] = []
    close = OnnxBackend.close

    def spy(self: OnnxBackend) -> None:
        closed.append(self.spec.name)
        close(self)

    monkeypatch.setattr(OnnxBackend, "close", spy)
    settings = Settings(models=("musicnn-mtt", "samplecnn-mtt"), backend="onnx", engine_cache=engines, workers=0)
    return settings, closed


def test_a_backend_that_cannot_open_fails_the_run_row_and_closes_the_opened_ones(
    store: Store, catalogue: Path, unopenable_second_model: tuple[Settings, list[str]]
) -> None:
    from catalogue_tagger.errors import BackendUnavailable

    settings, closed = unopenable_second_model
    with pytest.raises(BackendUnavailable, match="samplecnn-mtt: ONNX Runtime cannot run the fp32 graph on cpu") as raised:
        tag(FolderStore(catalogue), store, settings)
    assert raised.value.__cause__ is not None  # ONNX Runtime's own error, chained
    assert closed == ["musicnn-mtt"]
    [(_, status, finished, stats)] = _runs(store)
    assert (status, finished) == ("failed", True)
    assert stats["error"]["kind"] == "backend_unavailable"
    assert stats["error"]["detail"].startswith("samplecnn-mtt: ONNX Runtime cannot run the fp32 graph on cpu")
    assert stats["tagged"] == 0 and stats["failed"] == {}
    assert {r[2] for r in _track_rows(store)} == {"pending"}  # nothing claimed, nothing failed: a rerun tags all


def test_tag_command_says_which_backend_could_not_open(
    store: Store, database_url: str, catalogue: Path, unopenable_second_model: tuple[Settings, list[str]]
) -> None:
    from click.testing import CliRunner

    from catalogue_tagger.cli import main

    settings, closed = unopenable_second_model
    env = {"CATALOGUE_TAGGER_ENGINE_CACHE": str(settings.engine_cache)}
    done = CliRunner().invoke(main, ["tag", str(catalogue), "--models", "musicnn-mtt,samplecnn-mtt", "--backend",
                                     "onnx", "--workers", "0", "--database-url", database_url], env=env)
    assert done.exit_code == 2, done.output
    assert "backend_unavailable: samplecnn-mtt: ONNX Runtime cannot run the fp32 graph on cpu" in done.output
    assert "Traceback" not in done.output
    assert closed == ["musicnn-mtt"]
    [(_, status, finished, stats)] = _runs(store)
    assert (status, finished, stats["error"]["kind"]) == ("failed", True, "backend_unavailable")


def test_a_run_failing_midway_records_its_error_and_leaves_no_shared_memory(store: Store, catalogue: Path) -> None:
    from catalogue_tagger.segment_ring import SHM_DIR

    before = set(SHM_DIR.glob("catalogue-tagger-*"))

    def failing_progress(item: object, loop: object) -> None:
        raise RuntimeError("the progress display broke")

    with pytest.raises(RuntimeError, match="the progress display broke"):
        tag(FolderStore(catalogue), store, replace(MUSICNN, workers=2, batch_size=4), progress=failing_progress)
    assert set(SHM_DIR.glob("catalogue-tagger-*")) == before
    [(_, status, finished, stats)] = _runs(store)
    assert (status, finished) == ("failed", True)
    assert stats["error"] == {"kind": "run_error", "detail": "RuntimeError: the progress display broke"}


def test_a_backend_library_error_at_open_is_named_backend_unavailable(store: Store, catalogue: Path,
                                                                       tmp_path: Path) -> None:
    """An error the backend does not name itself (here: the engine cache is a file, not a folder) still ends the
    run as ``backend_unavailable`` naming the model and the backend, chained to the cause."""
    from catalogue_tagger.errors import BackendUnavailable

    not_a_folder = tmp_path / "engines"
    not_a_folder.write_text("a file where the engine cache folder should be")
    settings = Settings(models=("samplecnn-mtt",), backend="onnx", engine_cache=not_a_folder, workers=0)
    with pytest.raises(BackendUnavailable, match="^samplecnn-mtt: the onnx backend could not open on cpu: ") as raised:
        tag(FolderStore(catalogue), store, settings)
    assert isinstance(raised.value.__cause__, OSError)
    [(_, status, _, stats)] = _runs(store)
    assert status == "failed" and stats["error"] == {"kind": "backend_unavailable", "detail": str(raised.value)}
