"""The code location: assets, checks, job, schedule, sensor and resources, built from the environment at load."""

from __future__ import annotations

import dagster as dg

from catalogue_tagger.config import Settings
from dagster_defs.assets import DISCOVERED_TRACKS, TRACK_TAGS, build_assets
from dagster_defs.checks import build_checks
from dagster_defs.partitions import PartitionScheme
from dagster_defs.resources import build_resources
from dagster_defs.schedules import build_schedule
from dagster_defs.sensors import build_sensor

#: The partitioned job that schedules, sensors and command-line backfills launch.
TAG_PARTITION_JOB = "tag_partition"


def _executor(name: str) -> dg.ExecutorDefinition | None:
    if name == "k8s":
        from dagster_k8s import k8s_job_executor  # only in the Kubernetes images

        executor: dg.ExecutorDefinition = k8s_job_executor
        return executor
    if name == "in_process":
        return dg.in_process_executor
    if name == "multiprocess":
        return None  # Dagster's default
    raise ValueError(f"executor {name!r}: expected multiprocess, in_process or k8s")


def build_definitions(settings: Settings, *, secrets_from_env: bool = False) -> dg.Definitions:
    """The code location for ``settings``. ``secrets_from_env``: the resources take the database URL as
    ``dg.EnvVar`` (resolved when a run launches, never shown in the UI) rather than as a value."""
    scheme = PartitionScheme.from_settings(settings)
    assets = build_assets(scheme, gpus=settings.gpus)
    job = dg.define_asset_job(
        TAG_PARTITION_JOB,
        selection=dg.AssetSelection.assets(DISCOVERED_TRACKS, TRACK_TAGS),
        description="Discover and tag one partition of the catalogue.",
    )
    return dg.Definitions(
        assets=assets,
        asset_checks=build_checks(scheme, max_failure_rate=settings.max_failure_rate),
        jobs=[job],
        schedules=[build_schedule(TAG_PARTITION_JOB, scheme, running=settings.schedule_running)],
        sensors=[build_sensor(TAG_PARTITION_JOB, scheme)],
        resources=build_resources(settings, secrets_from_env=secrets_from_env),
        executor=_executor(settings.executor),
    )


@dg.definitions
def defs() -> dg.Definitions:
    """Loaded by ``dagster … -m dagster_defs``: settings come from the environment, like the CLI's."""
    return build_definitions(Settings.from_env(), secrets_from_env=True)
