"""The upload sensor honours its cursor; the nightly schedule targets the previous day."""

from __future__ import annotations

import os
from datetime import datetime, timezone
from pathlib import Path

import dagster as dg
import pytest

from catalogue_tagger.config import Settings
from catalogue_tagger.errors import SettingsError
from catalogue_tagger.sources import shard_of
from dagster_defs import build_definitions
from dagster_defs.partitions import PartitionScheme
from dagster_catalogue import DAY_1, DAY_2, DAY_3, DefsFactory, place


def _tick(defs: dg.Definitions, instance: dg.DagsterInstance, cursor: str | None) -> dg.SensorResult:
    sensor = defs.resolve_sensor_def("new_uploads")
    context = dg.build_sensor_context(instance=instance, cursor=cursor, resources=defs.resources)
    result = sensor(context)
    assert isinstance(result, dg.SensorResult)
    return result


def test_sensor_requests_only_partitions_with_new_objects(make_defs: DefsFactory, catalogue: Path) -> None:
    defs = make_defs()
    with dg.DagsterInstance.ephemeral() as instance:
        first = _tick(defs, instance, None)
        assert sorted(str(r.partition_key) for r in first.run_requests or []) == [DAY_1, DAY_2]
        assert first.cursor == f"{DAY_2}T12:00:00+00:00"

        idle = _tick(defs, instance, first.cursor)
        assert not idle.run_requests and idle.skip_reason is not None
        assert idle.cursor == first.cursor

        place(catalogue, "d", DAY_3, clip=0)
        place(catalogue, "e", DAY_3, clip=1, hour=18)
        grown = _tick(defs, instance, first.cursor)
        assert [r.partition_key for r in grown.run_requests or []] == [DAY_3]
        assert grown.cursor == f"{DAY_3}T18:00:00+00:00"
        assert len({r.run_key for r in [*(first.run_requests or []), *(grown.run_requests or [])]}) == 3

        rewritten = next(catalogue.glob("a.*"))  # a changed object is modified again, on its new upload day
        stamp = datetime.fromisoformat(DAY_3).replace(hour=20, tzinfo=timezone.utc).timestamp()
        os.utime(rewritten, (stamp, stamp))
        changed = _tick(defs, instance, grown.cursor)
        assert [r.partition_key for r in changed.run_requests or []] == [DAY_3]
        assert changed.cursor == f"{DAY_3}T20:00:00+00:00"


def test_sensor_with_shards_requests_the_shards_that_changed(make_defs: DefsFactory, catalogue: Path) -> None:
    defs = make_defs(shards=4)
    expected = sorted(
        {f"{DAY_1}|{shard_of(path.resolve().as_uri(), 4)}" for path in catalogue.iterdir() if path.stem in "ab"}
        | {f"{DAY_2}|{shard_of(path.resolve().as_uri(), 4)}" for path in catalogue.iterdir() if path.stem == "c"}
    )
    with dg.DagsterInstance.ephemeral() as instance:
        result = _tick(defs, instance, None)
    assert sorted(str(r.partition_key) for r in result.run_requests or []) == expected


def test_nightly_schedule_targets_the_previous_day(make_defs: DefsFactory) -> None:
    schedule = make_defs().resolve_schedule_def("nightly")
    assert schedule.execution_timezone == "UTC"
    context = dg.build_schedule_context(scheduled_execution_time=datetime(2024, 5, 2, 1, 30, tzinfo=timezone.utc))
    requests = schedule(context)
    assert [r.partition_key for r in requests] == ["2024-05-01"]  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("value", "status"),
    [(None, dg.DefaultScheduleStatus.STOPPED), ("false", dg.DefaultScheduleStatus.STOPPED),
     ("true", dg.DefaultScheduleStatus.RUNNING), ("1", dg.DefaultScheduleStatus.RUNNING)],
)  # fmt: skip
def test_nightly_schedule_default_state_is_a_setting(value: str | None, status: dg.DefaultScheduleStatus) -> None:
    env = {} if value is None else {"CATALOGUE_TAGGER_SCHEDULE_RUNNING": value}
    defs = build_definitions(Settings.from_env(env))
    assert defs.resolve_schedule_def("nightly").default_status == status


def test_schedule_running_setting_rejects_nonsense() -> None:
    with pytest.raises(SettingsError, match="CATALOGUE_TAGGER_SCHEDULE_RUNNING"):
        Settings.from_env({"CATALOGUE_TAGGER_SCHEDULE_RUNNING": "sometimes"})


def test_nightly_schedule_with_shards_runs_every_shard_of_the_day(make_defs: DefsFactory) -> None:
    schedule = make_defs(shards=3).resolve_schedule_def("nightly")
    context = dg.build_schedule_context(scheduled_execution_time=datetime(2024, 1, 1, 1, 30, tzinfo=timezone.utc))
    requests = schedule(context)
    assert [r.partition_key for r in requests] == ["2023-12-31|0", "2023-12-31|1", "2023-12-31|2"]  # type: ignore[union-attr]


def test_partition_scheme_round_trips_keys() -> None:
    scheme = PartitionScheme(start_date="2024-01-01", shards=8)
    keys = scheme.definition().get_partition_keys(current_time=datetime(2024, 1, 3, tzinfo=timezone.utc))
    assert "2024-01-03|7" in keys  # end_offset=1: today's partition exists
    assert scheme.split("2024-01-03|7") == ("2024-01-03", (7, 8))
    assert PartitionScheme().split("2024-01-03") == ("2024-01-03", None)
    assert {shard_of(f"s3://bucket/{n}.mp3", 8) for n in range(200)} == set(range(8))
