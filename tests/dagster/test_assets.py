"""Materializing a partition tags exactly its tracks; a second time changes nothing; the checks judge it."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import dagster as dg

from catalogue_tagger.config import Settings
from catalogue_tagger.records import ObjectInfo
from catalogue_tagger.store.store import Store
from dagster_defs.definitions import TAG_PARTITION_JOB
from dagster_catalogue import DAY_1, DAY_2, DefsFactory


def _run(defs: dg.Definitions, partition_key: str) -> dg.ExecuteInProcessResult:
    return defs.resolve_job_def(TAG_PARTITION_JOB).execute_in_process(partition_key=partition_key)


def _metadata(result: dg.ExecuteInProcessResult, asset: str) -> dict[str, Any]:
    [materialization] = [
        event.event_specific_data.materialization  # type: ignore[union-attr]
        for event in result.get_asset_materialization_events()
        if event.asset_key == dg.AssetKey(asset)
    ]
    return {key: value.value for key, value in materialization.metadata.items()}


def _checks(result: dg.ExecuteInProcessResult) -> dict[str, bool]:
    return {evaluation.check_name: evaluation.passed for evaluation in result.get_asset_check_evaluations()}


def test_partition_tags_exactly_its_tracks_and_rerun_is_a_no_op(make_defs: DefsFactory, fresh_database_url: str) -> None:
    defs = make_defs()

    first = _run(defs, DAY_1)
    assert first.success
    assert _metadata(first, "discovered_tracks")["new"] == 2
    tagged = _metadata(first, "track_tags")
    assert tagged["tracks_tagged"] == 2 and tagged["tracks_failed"] == 0
    assert set(tagged["models"]) == {"musicnn-mtt", "samplecnn-mtt"}
    assert tagged["audio_hours"] > 0
    assert _checks(first) == {
        "every_track_tagged_or_failed": True,
        "scores_in_range": True,
        "failure_rate_below_threshold": True,
    }
    with Store.connect(fresh_database_url) as store:
        assert store.partition_status(DAY_1) == {"total": 2, "tagged": 2, "failed": 0, "pending": 0}
        assert store.partition_status(DAY_2)["total"] == 0  # the other day's file is not touched

    again = _run(defs, DAY_1)
    assert again.success
    discovered = _metadata(again, "discovered_tracks")
    assert (discovered["new"], discovered["changed"], discovered["unchanged"]) == (0, 0, 2)
    assert _metadata(again, "track_tags")["tracks_tagged"] == 0


def test_checks_fail_when_a_track_is_left_untagged(make_defs: DefsFactory, fresh_database_url: str,
                                                  catalogue: Path) -> None:
    """A pending track of the code location's source fails the check; one of another source in the same
    database does not."""
    defs = make_defs()
    assert _run(defs, DAY_1).success
    selection = dg.AssetSelection.assets("discovered_tracks") | dg.AssetSelection.checks_for_assets("track_tags")
    job = dg.define_asset_job("discover_and_check", selection=selection)
    defs = dg.Definitions.merge(defs, dg.Definitions(jobs=[job]))

    noon = datetime.fromisoformat(DAY_1).replace(hour=13, tzinfo=timezone.utc)
    with Store.connect(fresh_database_url) as store:
        store.record_objects([ObjectInfo("file:///elsewhere/other.flac", "1-1", 1, noon)])  # another source's
    checks = _checks(defs.resolve_job_def("discover_and_check").execute_in_process(partition_key=DAY_1))
    assert checks["every_track_tagged_or_failed"] is True

    with Store.connect(fresh_database_url) as store:  # pending, never tagged: listed once, then gone
        store.record_objects([ObjectInfo((catalogue / "late.flac").as_uri(), "1-1", 1, noon)])
    # discovery again (the late object is not in the folder, so it stays pending) followed by the checks
    result = defs.resolve_job_def("discover_and_check").execute_in_process(partition_key=DAY_1)
    checks = _checks(result)
    assert checks["every_track_tagged_or_failed"] is False
    assert checks["scores_in_range"] is True
    assert checks["failure_rate_below_threshold"] is True


def test_tagging_step_runs_with_the_settings_of_the_code_location(tmp_path: Path) -> None:
    from dagster_defs.resources import build_resources

    settings = Settings(precision="bf16", backend="torch", inference_threads=3, descriptors=False, batch_size=32,
                        engine_cache=tmp_path / "engines", s3_endpoint_url="http://minio:9000")
    step = build_resources(settings)["tagger"].settings(settings.s3_endpoint_url)  # type: ignore[attr-defined]
    run_fields = ("models", "backend", "device", "precision", "batch_size", "workers", "descriptors", "threads",
                  "engine_dir", "max_duration_s", "max_bytes", "keep_segments", "s3_endpoint_url")
    assert {f: getattr(step, f) for f in run_fields} == {f: getattr(settings, f) for f in run_fields}
