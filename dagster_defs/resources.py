"""Resources: the library's object store, tagger options and Postgres store, configured like the CLI.

Each resource has one method returning the library object. Values that come from the environment are passed as
``dg.EnvVar`` so they resolve when a run launches and secrets (the database URL) never show in the UI.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

import dagster as dg

from catalogue_tagger.config import ENV_DATABASE_URL, ENV_SOURCE, Settings
from catalogue_tagger.pipeline import TagOptions
from catalogue_tagger.sources import ObjectStore, open_source
from catalogue_tagger.store.store import Store
from dagster_defs.partitions import Shard, ShardedSource

ENV_S3_ENDPOINT_URL = "AWS_ENDPOINT_URL"
ENV_DEVICE = "CATALOGUE_TAGGER_DEVICE"
ENV_BACKEND = "CATALOGUE_TAGGER_BACKEND"
ENV_BATCH_SIZE = "CATALOGUE_TAGGER_BATCH_SIZE"
ENV_WORKERS = "CATALOGUE_TAGGER_WORKERS"


class SourceResource(dg.ConfigurableResource):  # type: ignore[type-arg]
    """Where the catalogue's audio lives: a folder, ``file://…`` or ``s3://bucket/prefix``."""

    url: str
    s3_endpoint_url: str | None = None

    def open(self, shard: Shard | None = None) -> ObjectStore:
        """The object store, restricted to one shard's objects when a shard is given."""
        store = open_source(self.url, s3_endpoint_url=self.s3_endpoint_url)
        return store if shard is None else ShardedSource(store, shard)


class PostgresResource(dg.ConfigurableResource):  # type: ignore[type-arg]
    """The tags database; no URL means the embedded Postgres."""

    database_url: str | None = None

    @contextmanager
    def store(self) -> Iterator[Store]:
        with Store.connect(self.database_url) as store:
            yield store


class TaggerResource(dg.ConfigurableResource):  # type: ignore[type-arg]
    """Which models run, where, and how: the :class:`TagOptions` of a run."""

    models: list[str]
    backend: str = "torch"
    device: str = "cpu"
    batch_size: int = 64
    workers: int = 1
    max_duration_s: float | None = None
    force: bool = False
    keep_segments: bool = False

    def options(self, s3_endpoint_url: str | None = None, *, force: bool = False) -> TagOptions:
        """Options of a tagging run (``s3_endpoint_url``: where decode workers fetch S3 objects; ``force``:
        re-tag tracks already tagged, on top of the configured ``force``)."""
        return TagOptions(
            models=tuple(self.models),
            batch_size=self.batch_size,
            workers=self.workers,
            device=self.device,
            backend=self.backend,
            force=self.force or force,
            max_duration_s=self.max_duration_s,
            keep_segments=self.keep_segments,
            s3_endpoint_url=s3_endpoint_url,
        )


def _str_from_env(name: str, environ: Mapping[str, str], default: str) -> str:
    """``dg.EnvVar(name)`` (a ``str`` resolved at launch) when the variable is set, else the default."""
    return dg.EnvVar(name) if environ.get(name) else default


def _optional_from_env(name: str, environ: Mapping[str, str], default: str | None) -> str | None:
    return dg.EnvVar(name) if environ.get(name) else default


def _int_from_env(name: str, environ: Mapping[str, str], default: int) -> int:
    return dg.EnvVar.int(name) if environ.get(name) else default


def build_resources(settings: Settings, environ: Mapping[str, str] | None = None) -> dict[str, object]:
    """The resources of the code location, from the same settings and variables as the CLI.

    Defaults: a folder ``<data dir>/catalogue`` as the source, the embedded Postgres, the default models
    (``musicnn-mtt``, ``samplecnn-mtt``) on CPU.
    """
    env = os.environ if environ is None else environ
    return {
        "source": SourceResource(
            url=_str_from_env(ENV_SOURCE, env, settings.source or str(settings.home / "catalogue")),
            s3_endpoint_url=_optional_from_env(ENV_S3_ENDPOINT_URL, env, None),
        ),
        "db": PostgresResource(database_url=_optional_from_env(ENV_DATABASE_URL, env, settings.database_url)),
        "tagger": TaggerResource(
            models=list(settings.models),
            backend=_str_from_env(ENV_BACKEND, env, "torch"),
            device=_str_from_env(ENV_DEVICE, env, "cpu"),
            batch_size=_int_from_env(ENV_BATCH_SIZE, env, 64),
            workers=_int_from_env(ENV_WORKERS, env, 1),
        ),
    }


__all__ = [
    "PostgresResource",
    "SourceResource",
    "TaggerResource",
    "build_resources",
]
