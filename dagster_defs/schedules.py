"""The nightly schedule: yesterday's partition (every shard of it), shortly after the day closes in UTC."""

from datetime import timedelta, timezone

import dagster as dg

from dagster_defs.partitions import PartitionScheme

NIGHTLY_CRON = "30 1 * * *"


def build_schedule(job_name: str, scheme: PartitionScheme, *, running: bool = False) -> dg.ScheduleDefinition:
    """``running``: the default state (``Settings.schedule_running``); a state set in the UI or with
    ``dagster schedule start|stop`` overrides it."""

    @dg.schedule(
        job_name=job_name,
        cron_schedule=NIGHTLY_CRON,
        execution_timezone="UTC",
        default_status=dg.DefaultScheduleStatus.RUNNING if running else dg.DefaultScheduleStatus.STOPPED,
        description="Tags the previous day's uploads (UTC) every night.",
    )
    def nightly(context: dg.ScheduleEvaluationContext) -> list[dg.RunRequest]:
        when = context.scheduled_execution_time.astimezone(timezone.utc)
        day = (when.date() - timedelta(days=1)).isoformat()
        return [dg.RunRequest(partition_key=key, run_key=f"nightly-{key}") for key in scheme.keys(day)]

    return nightly
