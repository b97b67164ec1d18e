"""Asset checks on ``track_tags``: each runs one store query for the partition's day."""

import warnings

import dagster as dg

from catalogue_tagger.config import DEFAULT_MAX_FAILURE_RATE

from dagster_defs.assets import TRACK_TAGS
from dagster_defs.partitions import PartitionScheme
from dagster_defs.resources import PostgresResource, SourceResource



def build_checks(
    scheme: PartitionScheme, *, max_failure_rate: float = DEFAULT_MAX_FAILURE_RATE
) -> list[dg.AssetChecksDefinition]:
    """The checks, partitioned like the assets (one result per partition). With shards, each looks at the whole day."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.PreviewWarning)  # partitioned asset checks are a preview API of Dagster
        return _build_checks(scheme.definition(), scheme, max_failure_rate)


def _build_checks(
    partitions_def: dg.PartitionsDefinition, scheme: PartitionScheme, max_failure_rate: float
) -> list[dg.AssetChecksDefinition]:
    @dg.asset_check(
        asset=TRACK_TAGS,
        partitions_def=partitions_def,
        description="Every discovered track of the partition is tagged or has a recorded failure.",
    )
    def every_track_tagged_or_failed(
        context: dg.AssetCheckExecutionContext, source: SourceResource, db: PostgresResource
    ) -> dg.AssetCheckResult:
        day, _ = scheme.split(context.partition_key)
        with db.store() as store:
            status = store.partition_status(day, source.uri)
        return dg.AssetCheckResult(
            passed=status["pending"] == 0, severity=dg.AssetCheckSeverity.ERROR, metadata=dict(status)
        )

    @dg.asset_check(
        asset=TRACK_TAGS,
        partitions_def=partitions_def,
        description="Every stored score of the partition is finite and in [0, 1].",
    )
    def scores_in_range(context: dg.AssetCheckExecutionContext, db: PostgresResource) -> dg.AssetCheckResult:
        day, _ = scheme.split(context.partition_key)
        with db.store() as store:
            bad = store.scores_out_of_range(day)
        return dg.AssetCheckResult(
            passed=bad == 0, severity=dg.AssetCheckSeverity.ERROR, metadata={"scores_out_of_range": bad}
        )

    @dg.asset_check(
        asset=TRACK_TAGS,
        partitions_def=partitions_def,
        description=f"Failed tracks are at most {max_failure_rate:.0%} of the partition (warning).",
    )
    def failure_rate_below_threshold(
        context: dg.AssetCheckExecutionContext, source: SourceResource, db: PostgresResource
    ) -> dg.AssetCheckResult:
        day, _ = scheme.split(context.partition_key)
        with db.store() as store:
            status = store.partition_status(day, source.uri)
        rate = status["failed"] / status["total"] if status["total"] else 0.0
        return dg.AssetCheckResult(
            passed=rate <= max_failure_rate,
            severity=dg.AssetCheckSeverity.WARN,
            metadata={"failure_rate": rate, "threshold": max_failure_rate, **status},
        )

    return [every_track_tagged_or_failed, scores_in_range, failure_rate_below_threshold]
