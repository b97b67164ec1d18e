"""The code location: assets, checks, job, schedule, sensor and resources, built from the environment at load."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

import dagster as dg

from catalogue_tagger.config import Settings
from dagster_defs.assets import DISCOVERED_TRACKS, TRACK_TAGS, build_assets
from dagster_defs.checks import DEFAULT_MAX_FAILURE_RATE, build_checks
from dagster_defs.partitions import PartitionScheme
from dagster_defs.resources import build_resources
from dagster_defs.schedules import build_schedule
from dagster_defs.sensors import build_sensor

ENV_EXECUTOR = "CATALOGUE_TAGGER_EXECUTOR"
ENV_GPUS = "CATALOGUE_TAGGER_GPUS"
ENV_MAX_FAILURE_RATE = "CATALOGUE_TAGGER_MAX_FAILURE_RATE"

#: The partitioned job that schedules, sensors and command-line backfills launch.
TAG_PARTITION_JOB = "tag_partition"


@dataclass(frozen=True)
class DeploymentOptions:
    """How the code location runs: ``executor`` ``multiprocess`` (default) or ``k8s`` (one pod per step),
    GPUs requested by the tagging step, and the failure rate above which a partition gets a warning."""

    executor: str = "multiprocess"
    gpus: int = 0
    max_failure_rate: float = DEFAULT_MAX_FAILURE_RATE

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> DeploymentOptions:
        env = os.environ if environ is None else environ
        return cls(
            executor=env.get(ENV_EXECUTOR) or "multiprocess",
            gpus=int(env.get(ENV_GPUS) or 0),
            max_failure_rate=float(env.get(ENV_MAX_FAILURE_RATE) or DEFAULT_MAX_FAILURE_RATE),
        )


def _executor(name: str) -> dg.ExecutorDefinition | None:
    if name == "k8s":
        from dagster_k8s import k8s_job_executor  # only in the Kubernetes images

        executor: dg.ExecutorDefinition = k8s_job_executor
        return executor
    if name == "in_process":
        return dg.in_process_executor
    if name == "multiprocess":
        return None  # Dagster's default
    raise ValueError(f"{ENV_EXECUTOR}={name!r}: expected multiprocess, in_process or k8s")


def build_definitions(
    settings: Settings,
    scheme: PartitionScheme,
    options: DeploymentOptions = DeploymentOptions(),
    environ: Mapping[str, str] | None = None,
) -> dg.Definitions:
    assets = build_assets(scheme, gpus=options.gpus)
    job = dg.define_asset_job(
        TAG_PARTITION_JOB,
        selection=dg.AssetSelection.assets(DISCOVERED_TRACKS, TRACK_TAGS),
        description="Discover and tag one partition of the catalogue.",
    )
    return dg.Definitions(
        assets=assets,
        asset_checks=build_checks(scheme, max_failure_rate=options.max_failure_rate),
        jobs=[job],
        schedules=[build_schedule(TAG_PARTITION_JOB, scheme, running=settings.schedule_running)],
        sensors=[build_sensor(TAG_PARTITION_JOB, scheme)],
        resources=build_resources(settings, environ),
        executor=_executor(options.executor),
    )


@dg.definitions
def defs() -> dg.Definitions:
    """Loaded by ``dagster … -m dagster_defs``: settings come from the environment, like the CLI's."""
    return build_definitions(Settings.from_env(), PartitionScheme.from_env(), DeploymentOptions.from_env())
