"""Resources: the library's object store, tagger settings and Postgres store, built from the one :class:`Settings`.

Each resource has one method returning the library object. The database URL is a secret: in a deployment it is
passed as ``dg.EnvVar`` so it resolves when a run launches and never shows in the UI.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import fields
from pathlib import Path

import dagster as dg

from catalogue_tagger.config import Settings
from catalogue_tagger.sources import ObjectStore, Shard, ShardedSource, open_source
from catalogue_tagger.store.engine import resolve_database_url
from catalogue_tagger.store.store import Store

#: The variable behind ``Settings.database_url``.
DATABASE_URL_VARIABLE = next(f.metadata["env"] for f in fields(Settings) if f.name == "database_url")


class SourceResource(dg.ConfigurableResource):  # type: ignore[type-arg]
    """Where the catalogue's audio lives: a folder, ``file://…`` or ``s3://bucket/prefix``."""

    url: str
    s3_endpoint_url: str | None = None

    def open(self, shard: Shard | None = None) -> ObjectStore:
        """The object store, restricted to one shard's objects when a shard is given."""
        source = open_source(self.url, s3_endpoint_url=self.s3_endpoint_url)
        return source if shard is None else ShardedSource(source, shard)

    @property
    def uri(self) -> str:
        """The source's URI, the prefix of its tracks' URIs (one database may hold several sources' tracks)."""
        with self.open() as source:
            return source.uri


class PostgresResource(dg.ConfigurableResource):  # type: ignore[type-arg]
    """The tags database; no URL means the embedded Postgres (under ``home``)."""

    database_url: str | None = None
    home: str
    retry_s: float

    @contextmanager
    def store(self, *, migrate: bool = False) -> Iterator[Store]:
        """The store; ``migrate``: bring the schema up to date first (the steps that write; never the checks)."""
        url = resolve_database_url(self.database_url, Path(self.home))
        with Store.connect(url, retry_s=self.retry_s) as store:
            if migrate:
                store.migrate()
            yield store


class TaggerResource(dg.ConfigurableResource):  # type: ignore[type-arg]
    """Which models run, where, and how: the run fields of :class:`Settings`."""

    models: list[str]
    backend: str
    device: str
    precision: str
    batch_size: int
    workers: int
    max_duration_s: float | None = None
    max_bytes: int | None = None
    keep_segments: bool = False
    descriptors: bool = True
    inference_threads: int | None = None
    engine_cache: str | None = None  # where `catalogue-tagger compile` put the TensorRT engines

    def settings(self, s3_endpoint_url: str | None) -> Settings:
        """The settings of a tagging run (``s3_endpoint_url``: where decode workers fetch S3 objects)."""
        return Settings(
            models=tuple(self.models), backend=self.backend, device=self.device, precision=self.precision,
            batch_size=self.batch_size, workers=self.workers, max_duration_s=self.max_duration_s,
            max_bytes=self.max_bytes, keep_segments=self.keep_segments, s3_endpoint_url=s3_endpoint_url,
            descriptors=self.descriptors, inference_threads=self.inference_threads,
            engine_cache=Path(self.engine_cache) if self.engine_cache else None,
        )


def build_resources(settings: Settings, *, secrets_from_env: bool = False) -> dict[str, object]:
    """The resources of the code location, from the same settings as the CLI.

    Defaults: a folder ``<home>/catalogue`` as the source, the embedded Postgres, the default models on CPU.
    """
    database_url: str | None = settings.database_url
    if secrets_from_env and database_url:
        database_url = dg.EnvVar(DATABASE_URL_VARIABLE)
    return {
        "source": SourceResource(
            url=settings.source or str(settings.home / "catalogue"), s3_endpoint_url=settings.s3_endpoint_url
        ),
        "db": PostgresResource(database_url=database_url, home=str(settings.home), retry_s=settings.database_retry_s),
        "tagger": TaggerResource(
            models=list(settings.models), backend=settings.backend, device=settings.device,
            precision=settings.precision, batch_size=settings.batch_size, workers=settings.workers,
            max_duration_s=settings.max_duration_s, max_bytes=settings.max_bytes,
            keep_segments=settings.keep_segments, descriptors=settings.descriptors,
            inference_threads=settings.inference_threads, engine_cache=str(settings.engine_dir),
        ),
    }


__all__ = [
    "PostgresResource",
    "SourceResource",
    "TaggerResource",
    "build_resources",
]
