"""The Dagster code location of catalogue-tagger (``dagster dev -m dagster_defs``)."""

from dagster_defs.definitions import build_definitions, defs
from dagster_defs.partitions import PartitionScheme

__all__ = ["PartitionScheme", "build_definitions", "defs"]
