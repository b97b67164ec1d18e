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


def gpu_op_tags(gpus: int) -> dict[str, Any]:
    """``dagster-k8s/config`` for the tagging step: request GPUs and land on GPU nodes (none when ``gpus`` is 0)."""
    if gpus <= 0:
        return {}
    return {
        "dagster-k8s/config": {
            "container_config": {"resources": {"limits": {"nvidia.com/gpu": str(gpus)}}},
            "pod_spec_config": {
                "node_selector": {"nvidia.com/gpu.present": "true"},
                "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
            },
        }
    }


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
        op_tags=gpu_op_tags(gpus),
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
