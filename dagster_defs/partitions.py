"""Partitions of the catalogue: one per upload day (UTC), optionally × a hash shard of the object URI.

Keys are ``YYYY-MM-DD``; with shards, Dagster's multi-partition key ``YYYY-MM-DD|N`` (dimensions ``day`` and
``shard``). Per-track state lives in Postgres, never in partitions.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import dagster as dg

from catalogue_tagger.config import DEFAULT_PARTITION_START, Settings
from catalogue_tagger.records import ObjectInfo
from catalogue_tagger.sources import Shard, shard_of


DAY = "day"
SHARD = "shard"


@dataclass(frozen=True)
class PartitionScheme:
    """How the catalogue is split into partitions: daily from ``start_date``, × ``shards`` when above one."""

    start_date: str = DEFAULT_PARTITION_START
    shards: int = 1

    def __post_init__(self) -> None:
        date.fromisoformat(self.start_date)  # raises ValueError on a malformed date
        if self.shards < 1:
            raise ValueError(f"shards must be at least 1, not {self.shards}")

    @classmethod
    def from_settings(cls, settings: Settings) -> PartitionScheme:
        """The scheme of ``settings.partition_start`` and ``settings.shards``."""
        return cls(start_date=settings.partition_start, shards=settings.shards)

    @property
    def sharded(self) -> bool:
        return self.shards > 1

    def definition(self) -> dg.PartitionsDefinition:
        """The partitions definition. ``end_offset=1``: today's partition exists, so new uploads can be tagged."""
        daily = dg.DailyPartitionsDefinition(start_date=self.start_date, timezone="UTC", end_offset=1)
        if not self.sharded:
            return daily
        shards = dg.StaticPartitionsDefinition([str(i) for i in range(self.shards)])
        return dg.MultiPartitionsDefinition({DAY: daily, SHARD: shards})

    def keys(self, day: str, shards: set[int] | None = None) -> list[str]:
        """Partition keys of one day: the day itself, or one key per shard (all, or only ``shards``)."""
        if not self.sharded:
            return [day]
        wanted = range(self.shards) if shards is None else sorted(shards)
        return [str(dg.MultiPartitionKey({DAY: day, SHARD: str(i)})) for i in wanted]

    def key_of(self, info: ObjectInfo) -> str:
        """The partition key an object falls in."""
        if not self.sharded:
            return info.partition_key
        return self.keys(info.partition_key, {shard_of(info.uri, self.shards)})[0]

    def split(self, partition_key: str) -> tuple[str, Shard | None]:
        """A partition key as (day, shard): ``"2024-05-01"`` → (day, None); ``"2024-05-01|3"`` → (day, (3, n))."""
        if not self.sharded:
            return partition_key, None
        day, _, shard = partition_key.partition("|")
        return day, (int(shard), self.shards)

    def in_range(self, day: str, today: date) -> bool:
        """Whether a day has a partition (from the start date to today)."""
        return date.fromisoformat(self.start_date) <= date.fromisoformat(day) <= today
