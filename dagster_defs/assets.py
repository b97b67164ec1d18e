"""The two assets of a partition: ``discovered_tracks`` → ``track_tags``. Each body is one library call."""

from collections.abc import Mapping
from typing import Any

import dagster as dg

from catalogue_tagger.pipeline import RunReport, discover_objects, tag
from dagster_defs.partitions import PartitionScheme
from dagster_defs.resources import PostgresResource, SourceResource, TaggerResource

GROUP = "catalogue"
DISCOVERED_TRACKS = dg.AssetKey("discovered_tracks")
TRACK_TAGS = dg.AssetKey("track_tags")
#: Run tag that makes ``track_tags`` re-tag tracks already tagged (a backfill after a model upgrade).
FORCE_TAG = "catalogue-tagger/force"


#: Container resources of each step's pod under the k8s_job_executor, from measured peaks (deploy/README.md,
#: "Resources"). Tagging with the default model pair peaks at 2.5 GB RSS on torch (CPU) and 7.2 GB on ONNX Runtime
#: (README, Benchmarks), which backend ``auto`` may pick; with 4 decode workers (~0.05 GB each) and the Dagster step
#: process (~0.3 GB) that is ~7.7 GB: the request (8Gi = 8.6 GB) covers it, the limit (10Gi) leaves ~40 % above it.
#: Discovery peaks at ~0.35 GB (the step process, measured): 512Mi requested, 1Gi limit.
TAGGING_RESOURCES: dict[str, dict[str, str]] = {"requests": {"cpu": "4", "memory": "8Gi"}, "limits": {"memory": "10Gi"}}
DISCOVERY_RESOURCES: dict[str, dict[str, str]] = {
    "requests": {"cpu": "250m", "memory": "512Mi"},
    "limits": {"memory": "1Gi"},
}


def step_op_tags(resources: dict[str, dict[str, str]], gpus: int = 0) -> dict[str, Any]:
    """``dagster-k8s/config`` of a step: its container resources, plus ``gpus`` GPUs and GPU nodes when > 0.

    ``merge_behavior: SHALLOW``: these resources (and node selector, tolerations) replace what the step pod inherits
    from its run — the launcher's ``runK8sConfig`` and the code server's resources (``includeConfigInLaunchedRuns``)
    — instead of being deep-merged into them (dagster-k8s's default would keep an inherited ``limits.memory``);
    env, secrets and everything else are still inherited.
    """
    requests, limits = dict(resources.get("requests", {})), dict(resources.get("limits", {}))
    config: dict[str, Any] = {"merge_behavior": "SHALLOW"}
    if gpus > 0:
        requests["nvidia.com/gpu"] = limits["nvidia.com/gpu"] = str(gpus)
        config["pod_spec_config"] = {
            "node_selector": {"nvidia.com/gpu.present": "true"},
            "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
        }
    config["container_config"] = {"resources": {"requests": requests, "limits": limits}}
    return {"dagster-k8s/config": config}


def report_metadata(report: RunReport) -> Mapping[str, Any]:
    """What a tagging run tells the asset catalogue."""
    return {
        "run_id": report.run_id,
        "tracks_tagged": report.tagged,
        "tracks_failed": sum(report.failed.values()),
        "failed_by_kind": dg.MetadataValue.json(dict(report.failed)),
        "tracks_skipped": report.skipped,
        "flags": dg.MetadataValue.json(dict(report.flags)),
        "audio_hours": round(report.audio_s / 3600.0, 4),
        "wall_s": round(report.wall_s, 2),
        "x_realtime": round(report.xrealtime, 2),
        "models": dg.MetadataValue.json(dict(report.models)),
    }


def build_assets(scheme: PartitionScheme, *, gpus: int = 0) -> list[dg.AssetsDefinition]:
    """The assets, partitioned by ``scheme``; ``gpus`` > 0 requests that many GPUs for the tagging step."""
    partitions_def = scheme.definition()

    @dg.asset(
        key=DISCOVERED_TRACKS,
        partitions_def=partitions_def,
        group_name=GROUP,
        kinds={"postgres"},
        op_tags=step_op_tags(DISCOVERY_RESOURCES),
        description="The audio objects uploaded on the partition's day, recorded in `tracks` (new or changed).",
    )
    def discovered_tracks(
        context: dg.AssetExecutionContext, source: SourceResource, db: PostgresResource
    ) -> dg.MaterializeResult[None]:
        day, shard = scheme.split(context.partition_key)
        with source.open(shard) as objects, db.store(migrate=True) as store:
            counts = discover_objects(objects, store, partition_key=day)
        return dg.MaterializeResult(
            metadata={"new": counts.new, "changed": counts.changed, "unchanged": counts.unchanged}
        )

    @dg.asset(
        key=TRACK_TAGS,
        deps=[DISCOVERED_TRACKS],
        partitions_def=partitions_def,
        group_name=GROUP,
        kinds={"pytorch", "postgres"},
        op_tags=step_op_tags(TAGGING_RESOURCES, gpus),
        description="Tags and embeddings of the partition's tracks (tables `track_tags`, `track_embeddings`).",
    )
    def track_tags(
        context: dg.AssetExecutionContext, source: SourceResource, db: PostgresResource, tagger: TaggerResource
    ) -> dg.MaterializeResult[None]:
        day, shard = scheme.split(context.partition_key)
        force = context.run.tags.get(FORCE_TAG) == "true"
        with source.open(shard) as objects, db.store(migrate=True) as store:
            # discover=False: discovered_tracks listed the source already
            report = tag(objects, store, tagger.settings(source.s3_endpoint_url), partition_key=day, force=force,
                         discover=False)
        return dg.MaterializeResult(metadata=report_metadata(report))

    return [discovered_tracks, track_tags]
