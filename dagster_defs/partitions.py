"""Partitions of the catalogue: one per upload day (UTC), optionally × a hash shard of the object URI.

Keys are ``YYYY-MM-DD``; with shards, Dagster's multi-partition key ``YYYY-MM-DD|N`` (dimensions ``day`` and
``shard``). Per-track state lives in Postgres, never in partitions.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import date
from typing import BinaryIO

import dagster as dg

from catalogue_tagger.records import ObjectInfo
from catalogue_tagger.sources import ObjectStore

ENV_PARTITION_START = "CATALOGUE_TAGGER_PARTITION_START"
ENV_SHARDS = "CATALOGUE_TAGGER_SHARDS"
DEFAULT_PARTITION_START = "2020-01-01"

DAY = "day"
SHARD = "shard"

#: A shard as (index, count), 0 <= index < count.
Shard = tuple[int, int]


def shard_of(uri: str, count: int) -> int:
    """The shard (0 … count-1) an object URI belongs to: stable across processes and machines."""
    digest = hashlib.blake2b(uri.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") % count


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
    def from_env(cls, environ: Mapping[str, str] | None = None) -> PartitionScheme:
        """Read ``CATALOGUE_TAGGER_PARTITION_START`` (default 2020-01-01) and ``CATALOGUE_TAGGER_SHARDS`` (1)."""
        env = os.environ if environ is None else environ
        return cls(
            start_date=env.get(ENV_PARTITION_START) or DEFAULT_PARTITION_START,
            shards=int(env.get(ENV_SHARDS) or 1),
        )

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


class ShardedSource(ObjectStore):
    """An object store that lists only the objects of one shard."""

    def __init__(self, inner: ObjectStore, shard: Shard) -> None:
        self._inner = inner
        self._index, self._count = shard

    @property
    def uri(self) -> str:
        return self._inner.uri

    def list(self) -> Iterator[ObjectInfo]:
        return (info for info in self._inner.list() if shard_of(info.uri, self._count) == self._index)

    def open(self, uri: str) -> BinaryIO:
        return self._inner.open(uri)

    def close(self) -> None:
        self._inner.close()
