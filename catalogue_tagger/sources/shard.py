"""Hash shards of a source: a stable split of its objects by URI, for fanning a big upload day out."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import BinaryIO

from catalogue_tagger.records import ObjectInfo
from catalogue_tagger.sources.base import ObjectStore

#: A shard as (index, count), 0 <= index < count.
Shard = tuple[int, int]


def shard_of(uri: str, count: int) -> int:
    """The shard (0 … count-1) an object URI belongs to: stable across processes and machines."""
    digest = hashlib.blake2b(uri.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") % count


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
