"""A sensor that requests a run for every partition that got new or changed objects since its cursor.

The cursor is the latest ``last_modified`` seen, ISO-8601 UTC. A new or rewritten object has a newer
``last_modified`` than anything listed before, so comparing with the cursor finds exactly the partitions to run.
"""


from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, timezone

import dagster as dg

from catalogue_tagger.records import ObjectInfo
from dagster_defs.partitions import PartitionScheme
from dagster_defs.resources import SourceResource


@dataclass(frozen=True)
class UploadPlan:
    partition_keys: list[str]
    latest: datetime | None


def plan_uploads(
    objects: Iterable[ObjectInfo], since: datetime | None, scheme: PartitionScheme, today: date
) -> UploadPlan:
    """Partition keys holding objects modified after ``since``, and the latest modification time seen."""
    keys: set[str] = set()
    latest = since
    for info in objects:
        if since is not None and info.last_modified <= since:
            continue
        if latest is None or info.last_modified > latest:
            latest = info.last_modified
        if scheme.in_range(info.partition_key, today):
            keys.add(scheme.key_of(info))
    return UploadPlan(sorted(keys), latest)


def build_sensor(job_name: str, scheme: PartitionScheme) -> dg.SensorDefinition:
    @dg.sensor(
        job_name=job_name,
        minimum_interval_seconds=300,
        default_status=dg.DefaultSensorStatus.STOPPED,
        description="Requests a run for each partition with objects uploaded or changed since the last tick.",
    )
    def new_uploads(context: dg.SensorEvaluationContext, source: SourceResource) -> dg.SensorResult:
        since = datetime.fromisoformat(context.cursor) if context.cursor else None
        with source.open() as objects:
            plan = plan_uploads(objects.list(), since, scheme, datetime.now(timezone.utc).date())
        cursor = plan.latest.isoformat() if plan.latest else context.cursor
        if not plan.partition_keys:
            return dg.SensorResult(skip_reason=dg.SkipReason(f"no new objects since {context.cursor}"), cursor=cursor)
        return dg.SensorResult(
            run_requests=[dg.RunRequest(partition_key=key, run_key=f"{key}@{cursor}") for key in plan.partition_keys],
            cursor=cursor,
        )

    return new_uploads
