"""The Store against a real Postgres: discovery, idempotent writes, versions, failures, hostile text."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pytest
from sqlalchemy import text
from store_factories import DAY, LABELS, PARTITION, objects, output, result, start_run

from catalogue_tagger.errors import StoreError
from catalogue_tagger.records import ObjectInfo, TrackFailure, TrackResult
from catalogue_tagger.store.store import LEASE_CLASS, DiscoverCounts, Store

# Read-only inspection statements, test-side only; xmin tells whether a row version was rewritten.
SNAPSHOT = {
    "tracks": "SELECT xmin::text, * FROM tracks ORDER BY track_id",
    "track_tags": "SELECT xmin::text, * FROM track_tags ORDER BY track_id, model_id, tag",
    "track_embeddings": "SELECT xmin::text, track_id, model_id, embedding::text FROM track_embeddings ORDER BY 2, 3",
    "segment_scores": "SELECT xmin::text, * FROM segment_scores ORDER BY track_id, model_id, segment_index",
}


def snapshot(store: Store) -> dict[str, list[tuple[Any, ...]]]:
    with store.connection() as conn:
        return {table: [tuple(r) for r in conn.execute(text(sql))] for table, sql in SNAPSHOT.items()}


def scalar(store: Store, sql: str, **params: Any) -> Any:
    with store.connection() as conn:
        return conn.execute(text(sql), params).scalar()


def setup_tracks(store: Store, n: int, models: tuple[str, ...] = ("m1",)) -> tuple[int, dict[str, int], list[Any]]:
    model_ids = {m: store.register_model(m, "w1", LABELS, "spectrogram", 4) for m in models}
    store.record_objects(objects(n))
    run_id = start_run(store, "file:///catalogue", models, PARTITION)
    return run_id, model_ids, store.claim_pending(run_id, n)


def test_register_model_is_idempotent_and_versions_by_hash(store: Store) -> None:
    first = store.register_model("m1", "w1", LABELS, "spectrogram", 4)
    assert store.register_model("m1", "w1", LABELS, "spectrogram", 4) == first
    assert store.register_model("m1", "w2", LABELS, "spectrogram", 4) != first


def test_record_objects_counts_and_only_changes_touch_rows(store: Store) -> None:
    assert store.record_objects(objects(5), batch_size=2) == DiscoverCounts(new=5, changed=0, unchanged=0)
    before = snapshot(store)["tracks"]
    assert store.record_objects(objects(5)) == DiscoverCounts(new=0, changed=0, unchanged=5)
    assert snapshot(store)["tracks"] == before  # unchanged objects write nothing
    changed = objects(5)
    changed[1] = dataclasses.replace(changed[1], etag="e2")
    assert store.record_objects(changed + objects(1, prefix="file:///new/")) == DiscoverCounts(1, 1, 4)
    assert store.partition_status(PARTITION) == {"total": 6, "tagged": 0, "failed": 0, "pending": 6}
    assert scalar(store, "SELECT partition_key FROM tracks WHERE uri = :u", u=changed[1].uri) == PARTITION


def test_changed_etag_makes_a_tagged_track_pending_again_keeping_attempts(store: Store) -> None:
    run_id, model_ids, tasks = setup_tracks(store, 2)
    store.write_results([result(t) for t in tasks], model_ids)
    changed = dataclasses.replace(objects(1)[0], etag="e2")
    assert store.record_objects([changed]).changed == 1
    assert store.partition_status(PARTITION) == {"total": 2, "tagged": 1, "failed": 0, "pending": 1}
    assert scalar(store, "SELECT attempts FROM tracks WHERE uri = :u", u=changed.uri) == 1
    assert [t.uri for t in store.claim_pending(run_id, 10)] == [changed.uri]


def test_writing_the_same_results_twice_leaves_identical_rows(store: Store) -> None:
    _, model_ids, tasks = setup_tracks(store, 4, models=("m1", "m2"))
    results = [result(t, models=("m1", "m2")) for t in tasks]
    store.write_results(results, model_ids, segments=True)
    first = snapshot(store)
    assert len(first["track_tags"]) == 4 * 2 * len(LABELS)
    assert len(first["track_embeddings"]) == 4 * 2
    assert len(first["segment_scores"]) == 4 * 2 * 3
    store.write_results(results, model_ids, segments=True)
    assert snapshot(store) == first  # same values and same xmin: not even rewritten


def test_scores_round_trip_as_float32(store: Store) -> None:
    _, model_ids, tasks = setup_tracks(store, 1)
    res = result(tasks[0])
    store.write_results([res], model_ids)
    stored = {r["tag"]: (r["score"], r["score_max"]) for r in store.tags_for_track(tasks[0].uri)}
    mean, best = res.outputs[0].mean, res.outputs[0].max
    for i, label in enumerate(LABELS):
        assert np.float32(stored[label][0]) == mean[i]
        assert np.float32(stored[label][1]) == best[i]
    with store.connection() as conn:
        row = conn.execute(text("SELECT status, duration_s, flags, tagged_at FROM tracks")).one()
    assert (row.status, row.duration_s, row.flags) == ("tagged", 12.5, ["padded"]) and row.tagged_at


def test_shorter_taggram_replaces_the_longer_one(store: Store) -> None:
    _, model_ids, tasks = setup_tracks(store, 1)
    store.write_results([result(tasks[0], n_segments=5)], model_ids, segments=True)
    store.write_results([result(tasks[0], n_segments=2)], model_ids, segments=True)
    assert scalar(store, "SELECT count(*) FROM segment_scores") == 2


def test_new_model_version_adds_rows_and_tag_scores_shows_only_latest(store: Store) -> None:
    _, model_ids, tasks = setup_tracks(store, 3)
    store.write_results([result(t) for t in tasks], model_ids)
    v2 = store.register_model("m1", "w2", LABELS, "spectrogram", 4)
    store.mark_pending(partition_key=PARTITION)
    run2 = start_run(store, "file:///catalogue", ["m1"], PARTITION)
    tasks2 = store.claim_pending(run2, 10)
    assert len(tasks2) == 3
    store.write_results([result(t, seed=7, weights="w2") for t in tasks2], {"m1": v2})
    assert scalar(store, "SELECT count(*) FROM track_tags") == 2 * 3 * len(LABELS)  # old version kept
    assert scalar(store, "SELECT count(DISTINCT model_id) FROM track_tags") == 2
    with store.connection() as conn:
        view = conn.execute(text("SELECT uri, model, tag, score FROM tag_scores ORDER BY uri, tag")).all()
        latest = conn.execute(
            text("SELECT t.uri, tt.tag, tt.score FROM track_tags tt JOIN tracks t USING (track_id) "
                 "WHERE model_id = :v ORDER BY t.uri, tt.tag"), {"v": v2}
        ).all()
    assert [(r.uri, r.tag, r.score) for r in view] == [tuple(r) for r in latest]
    assert {r.model for r in view} == {"m1"}
    assert {r["model"] for r in store.tags_for_track(tasks[0].uri)} == {"m1"}
    assert len(store.tags_for_track(tasks[0].uri)) == len(LABELS)


def test_failure_then_success_keeps_history(store: Store) -> None:
    run_id, model_ids, tasks = setup_tracks(store, 2)
    bad = tasks[0]
    store.write_failures([TrackFailure(bad.track_id, bad.uri, "decode_error", "truncated frame")], run_id)
    store.write_failures([TrackFailure(tasks[1].track_id, tasks[1].uri, "too_short", "0.2 s")], run_id)
    assert store.failures_by_kind() == {"decode_error": 1, "too_short": 1}
    assert store.partition_status(PARTITION)["failed"] == 2
    store.mark_pending(uris=[bad.uri])
    run2 = start_run(store, "file:///catalogue", ["m1"], PARTITION)
    assert [t.uri for t in store.claim_pending(run2, 10)] == [bad.uri]
    store.write_results([result(bad)], model_ids)
    with store.connection() as conn:
        row = conn.execute(text("SELECT status, error_kind, attempts FROM tracks WHERE uri = :u"), {"u": bad.uri}).one()
    assert tuple(row) == ("tagged", None, 2)
    history = store.failure_history(bad.uri)
    assert [(h["run_id"], h["kind"], h["detail"]) for h in history] == [(run_id, "decode_error", "truncated frame")]
    assert store.failures_by_kind() == {"too_short": 1}
    store.finish_run(run2, {"tagged": 1}, "completed")
    assert scalar(store, "SELECT stats->>'tagged' FROM runs WHERE run_id = :r", r=run2) == "1"


def test_claims_are_exclusive_and_released_by_finish(store: Store) -> None:
    store.record_objects(objects(10))
    run_a, run_b = start_run(store, "s", ["m1"]), start_run(store, "s", ["m1"])
    a = store.claim_pending(run_a, 6)
    b = store.claim_pending(run_b, 6)
    assert len(a) == 6 and len(b) == 4
    assert not {t.track_id for t in a} & {t.track_id for t in b}
    assert store.claim_pending(run_b, 6) == []
    store.finish_run(run_a, {}, "failed")
    assert {t.track_id for t in store.claim_pending(run_b, 10)} == {t.track_id for t in a}


def test_a_dead_runs_claims_are_free_at_once_and_its_row_is_abandoned(store: Store) -> None:
    store.record_objects(objects(6))
    dead = store.open_run("s", ["m1"])
    claimed = store.claim_pending(dead.run_id, 4)
    dead.close()  # what a killed process's ended session does to its lease
    live = start_run(store, "s", ["m1"])
    assert {t.track_id for t in store.claim_pending(live, 10)} == {t.track_id for t in objects_ids(store)}
    assert len(claimed) == 4
    row = scalar(store, "SELECT status || ' ' || (stats->>'abandoned_by_run') FROM runs WHERE run_id = :r", r=dead.run_id)
    assert row == f"abandoned {live}"
    assert scalar(store, "SELECT status FROM runs WHERE run_id = :r", r=live) == "running"


def test_a_live_runs_claims_stay_its_own(store: Store) -> None:
    store.record_objects(objects(4))
    first = start_run(store, "s", ["m1"])
    mine = store.claim_pending(first, 3)
    second = start_run(store, "s", ["m1"])
    theirs = store.claim_pending(second, 10)
    assert len(mine) == 3 and len(theirs) == 1 and not {t.track_id for t in mine} & {t.track_id for t in theirs}
    assert scalar(store, "SELECT status FROM runs WHERE run_id = :r", r=first) == "running"


def objects_ids(store: Store) -> list[Any]:
    with store.connection() as conn:
        return list(conn.execute(text("SELECT track_id FROM tracks ORDER BY track_id")).all())


def test_claim_by_partition(store: Store) -> None:
    other_day = [dataclasses.replace(o, last_modified=DAY.replace(day=2)) for o in objects(3, prefix="s3://b/")]
    store.record_objects(objects(2) + other_day)
    run_id = start_run(store, "s", ["m1"], "2026-03-02")
    assert {t.uri for t in store.claim_pending(run_id, 10, partition_key="2026-03-02")} == {o.uri for o in other_day}


HOSTILE = [
    "file:///music/it's; here \"quoted\".mp3",
    "file:///music/'; DROP TABLE tracks;--.flac",
    "s3://bucket/Björk – Jóga (ライブ) 🎵.ogg",
    "file:///music/back\\slash\ttab\nnewline.wav",
    "file:///music/percent%20and %s and :name and $1.mp3",
]


def test_hostile_text_is_stored_verbatim(store: Store) -> None:
    labels = ("'; DROP TABLE tracks;--", 'say "hi"; ok', "émotion 🎸", "a\\b", "%(x)s :y")
    model_id = store.register_model("m'; --", "w1", labels, "spectrogram", None)
    assert store.record_objects(ObjectInfo(u, "etag'\"", 1, DAY) for u in HOSTILE).new == len(HOSTILE)
    run_id = start_run(store, "file:///music/'; DROP TABLE tracks;--", ["m'; --"], PARTITION)
    tasks = store.claim_pending(run_id, 10)
    assert sorted(t.uri for t in tasks) == sorted(HOSTILE)
    results = [
        TrackResult(t.track_id, t.uri, 1.0, (output("m'; --", i, labels=labels, embedding_dim=None),))
        for i, t in enumerate(tasks)
    ]
    store.write_results(results, {"m'; --": model_id})
    store.write_failures([TrackFailure(tasks[0].track_id, tasks[0].uri, "decode_error", "'; DROP TABLE tracks;--")], run_id)
    for uri in HOSTILE[1:]:
        assert {r["tag"] for r in store.tags_for_track(uri)} == set(labels)
    assert {r["uri"] for r in store.top_tracks("'; DROP TABLE tracks;--", top=100)} <= set(HOSTILE)
    assert store.failure_history(tasks[0].uri)[0]["detail"] == "'; DROP TABLE tracks;--"
    assert scalar(store, "SELECT count(*) FROM tracks") == len(HOSTILE)


def test_partition_checks(store: Store) -> None:
    _, model_ids, tasks = setup_tracks(store, 3)
    assert store.scores_out_of_range(PARTITION) == 0
    bad = output("m1", 1)
    bad = dataclasses.replace(bad, mean=np.full(len(LABELS), 1.5, np.float32), max=np.full(len(LABELS), np.nan, np.float32))
    store.write_results([TrackResult(tasks[0].track_id, tasks[0].uri, 1.0, (bad,))], model_ids)
    assert store.scores_out_of_range(PARTITION) == len(LABELS)
    assert store.partition_status(PARTITION) == {"total": 3, "tagged": 1, "failed": 0, "pending": 2}


def test_top_tracks_orders_by_score(store: Store) -> None:
    _, model_ids, tasks = setup_tracks(store, 6)
    results = [result(t) for t in tasks]
    store.write_results(results, model_ids)
    top = store.top_tracks("jazz", model="m1", top=3)
    expected = sorted(((float(r.outputs[0].mean[2]), r.uri) for r in results), reverse=True)[:3]
    assert [t["uri"] for t in top] == [uri for _, uri in expected]
    assert store.top_tracks("jazz", model="nope") == []


def test_unregistered_model_is_a_store_error(store: Store) -> None:
    _, _, tasks = setup_tracks(store, 1)
    with pytest.raises(StoreError):
        store.write_results([result(tasks[0], models=("unknown",))], {})


def test_driver_errors_become_store_errors(store: Store) -> None:
    run_id = start_run(store, "s", ["m1"])
    with pytest.raises(StoreError, match="runs_status_check"):
        store.finish_run(run_id, {}, "not-a-status")
    with pytest.raises(StoreError, match="no run"):
        store.finish_run(run_id + 1000, {}, "completed")


def test_bad_track_in_a_batch_does_not_lose_the_others(store: Store) -> None:
    _, model_ids, tasks = setup_tracks(store, 3)
    ghost = dataclasses.replace(result(tasks[0], embedding_dim=None), track_id=999_999, uri="file:///ghost")
    with pytest.raises(StoreError, match="ghost"):
        store.write_results([result(t) for t in tasks] + [ghost], model_ids)
    assert store.partition_status(PARTITION)["tagged"] == 3


def test_deleting_tracks_or_models_deletes_their_scores(store: Store) -> None:
    _, model_ids, tasks = setup_tracks(store, 3)
    store.write_results([result(t) for t in tasks], model_ids, segments=True)
    with store.connection() as conn:
        conn.execute(text("DELETE FROM tracks WHERE uri = :u"), {"u": tasks[0].uri})
        conn.commit()
    assert scalar(store, "SELECT count(DISTINCT track_id) FROM track_tags") == 2
    assert scalar(store, "SELECT count(DISTINCT track_id) FROM segment_scores") == 2
    with store.connection() as conn:
        conn.execute(text("DELETE FROM models"))
        conn.commit()
    assert scalar(store, "SELECT count(*) FROM track_tags") + scalar(store, "SELECT count(*) FROM segment_scores") == 0


def test_embeddings_as_pgvector(embedded_store: Store) -> None:
    assert embedded_store.embedding_type == "vector"
    _, model_ids, tasks = setup_tracks(embedded_store, 2)
    res = [result(t) for t in tasks]
    embedded_store.write_results(res, model_ids)
    first = snapshot(embedded_store)
    embedded_store.write_results(res, model_ids)
    assert snapshot(embedded_store) == first
    assert scalar(embedded_store, "SELECT vector_dims(embedding) FROM track_embeddings LIMIT 1") == 4
    stored = scalar(embedded_store, "SELECT embedding::real[] FROM track_embeddings WHERE track_id = :t", t=tasks[0].track_id)
    assert np.array_equal(np.array(stored, np.float32), res[0].outputs[0].embedding)


def test_embeddings_as_real_array_without_pgvector(store: Store) -> None:
    if store.embedding_type == "vector":
        pytest.skip("this server has pgvector; the real[] path is covered where it does not")
    _, model_ids, tasks = setup_tracks(store, 1)
    res = result(tasks[0])
    store.write_results([res], model_ids)
    stored = scalar(store, "SELECT embedding FROM track_embeddings")
    assert np.array_equal(np.array(stored, np.float32), res.outputs[0].embedding)


def explain(store: Store, name: str, params: dict[str, Any]) -> str:
    """The plan of a named query, with sequential scans discouraged (tiny test tables would favour them)."""
    from catalogue_tagger.store.queries import raw_queries

    with store.connection() as conn:
        conn.execute(text("SET enable_seqscan = off"))
        plan = conn.execute(text("EXPLAIN " + raw_queries()[name]), params).scalars().all()
        conn.rollback()
    return "\n".join(plan)


def test_top_tracks_and_tags_of_a_track_are_index_scans(store: Store) -> None:
    _, model_ids, tasks = setup_tracks(store, 20)
    store.write_results([result(t) for t in tasks], model_ids)
    with store.connection() as conn:
        conn.execute(text("ANALYZE"))
        conn.commit()
    top = explain(store, "top_tracks", {"tag": "jazz", "model": "m1", "top": 5})
    assert "track_tags_tag_model_score_idx" in top, top
    track = explain(store, "tags_for_track", {"uri": tasks[0].uri, "model": None})
    assert "tracks_uri_key" in track and "track_tags_pkey" in track, track
    claim = explain(store, "claim_pending", {"run_id": 1, "limit": 5, "partition_key": PARTITION,
                                             "source": "file:///catalogue/", "lease_class": LEASE_CLASS})
    assert "tracks_pending_idx" in claim or "tracks_pending_claim_idx" in claim, claim  # tiny tables: either
