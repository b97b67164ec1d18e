"""Object stores: where the catalogue's audio lives (a local folder or S3)."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, cast

from catalogue_tagger.errors import FetchError, SourceError
from catalogue_tagger.sources.base import AUDIO_EXTENSIONS, ObjectStore, is_audio_name
from catalogue_tagger.sources.folder import FolderStore, open_file_uri, path_from_file_uri
from catalogue_tagger.sources.shard import Shard, ShardedSource, shard_of

if TYPE_CHECKING:
    from catalogue_tagger.sources.s3 import S3Object, S3Store, make_s3_client, parse_s3_uri

#: Names of :mod:`catalogue_tagger.sources.s3`, imported on first use: boto3 takes ~0.1 s to import, which a run
#: on a folder (and each of its decode workers) need not spend.
_S3_NAMES = frozenset({"S3Object", "S3Store", "make_s3_client", "parse_s3_uri"})


def __getattr__(name: str) -> Any:
    if name in _S3_NAMES:
        return getattr(importlib.import_module("catalogue_tagger.sources.s3"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

__all__ = [
    "AUDIO_EXTENSIONS",
    "FolderStore",
    "ObjectStore",
    "S3Object",
    "S3Store",
    "Shard",
    "ShardedSource",
    "is_audio_name",
    "open_source",
    "open_uri",
    "parse_s3_uri",
    "shard_of",
]


def open_source(spec: str, *, s3_endpoint_url: str | None = None) -> ObjectStore:
    """The store for a SOURCE argument: a folder path, ``file://…`` or ``s3://bucket/prefix``."""
    if spec.startswith("s3://"):
        from catalogue_tagger.sources.s3 import S3Store

        return S3Store.from_uri(spec, endpoint_url=s3_endpoint_url)
    if spec.startswith("file://"):
        return FolderStore(path_from_file_uri(spec))
    if "://" in spec:
        raise SourceError(f"{spec}: unsupported source (use a folder, file://… or s3://bucket/prefix)")
    return FolderStore(Path(spec))


def open_uri(uri: str, *, s3_endpoint_url: str | None = None) -> BinaryIO:
    """Open one object by its URI (``file://`` or ``s3://``) without listing a source.

    For many objects, keep a store and call :meth:`ObjectStore.open`: each S3 call here makes a new client.
    """
    if uri.startswith("s3://"):
        from catalogue_tagger.sources.s3 import S3Object, make_s3_client, parse_s3_uri

        bucket, key = parse_s3_uri(uri)
        return cast(BinaryIO, S3Object(make_s3_client(s3_endpoint_url), bucket, key, owns_client=True))
    if uri.startswith("file://"):
        return open_file_uri(uri)
    raise FetchError(f"{uri}: unsupported URI (expected file:// or s3://)")
