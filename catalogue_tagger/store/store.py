"""The :class:`Store`: everything the pipeline, Dagster and the CLI write to or read from Postgres.

Writes are bulk: rows are COPYed into session temp tables, then merged with ``INSERT … ON CONFLICT DO
UPDATE … WHERE … IS DISTINCT FROM``, so a batch of many tracks costs a few statements and rewriting an
identical result changes no row. All SQL lives in ``sql/queries.sql``; driver errors become
:class:`StoreError` here.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from itertools import islice
from types import TracebackType
from typing import Any, TypeVar

import numpy as np
from sqlalchemy import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

from catalogue_tagger.errors import StoreError, TracksRefused
from catalogue_tagger.records import Descriptors, ObjectInfo, TrackFailure, TrackResult, TrackTask
from catalogue_tagger.store import migrate as migrations
from catalogue_tagger.store.driver import copy_rows, retry_transaction, run_script, store_errors
from catalogue_tagger.store.engine import make_engine
from catalogue_tagger.store.queries import queries, raw_queries

T = TypeVar("T")

logger = logging.getLogger(__name__)

#: First key of every run's lease (a session advisory lock on (LEASE_CLASS, run_id)): "catg".
LEASE_CLASS = 0x63617467
#: How long a store keeps retrying a transaction whose connection was lost before giving up (seconds).
DEFAULT_RETRY_S = 60.0
#: Columns of ``track_descriptors`` after (track_id, version), in the order of ``stage_descriptors``.
DESCRIPTOR_COLUMNS = (
    "tempo_bpm", "tempo_confidence", "tempo_alt_bpm", "tempo_alt_confidence", "key", "key_confidence", "key_alt",
    "key_alt_confidence", "camelot", "loudness_lufs", "loudness_range_lu", "true_peak_dbtp",
)  # fmt: skip


@dataclass(frozen=True)
class DiscoverCounts:
    """What ``record_objects`` found: new uris, changed etags, and objects already known as they are."""

    new: int = 0
    changed: int = 0
    unchanged: int = 0

    def __add__(self, other: DiscoverCounts) -> DiscoverCounts:
        return DiscoverCounts(self.new + other.new, self.changed + other.changed, self.unchanged + other.unchanged)


def _batches(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    iterator = iter(items)
    while batch := list(islice(iterator, size)):
        yield batch


def _descriptor_rows(measured: Sequence[tuple[int, Descriptors]]) -> Iterator[tuple[Any, ...]]:
    for track_id, d in measured:
        yield (track_id, d.version, *(getattr(d, column) for column in DESCRIPTOR_COLUMNS))


def _vector(values: Any) -> np.ndarray:
    return np.asarray(values, dtype=np.float32)


def _take_lease(conn: Connection, run_id: int) -> None:
    held = conn.execute(queries()["take_run_lease"], {"lease_class": LEASE_CLASS, "run_id": run_id}).scalar_one()
    if not held:
        raise StoreError(f"the lease of run {run_id} is held by another session")


class RunLease:
    """A live run's lease: a session advisory lock on (:data:`LEASE_CLASS`, run_id), held by a connection the
    run keeps open. If the process dies, Postgres ends the session and the lease with it, so the run's claims
    are free at once; :meth:`renew` takes it again after the server restarted. A context manager."""

    def __init__(self, store: Store, run_id: int, conn: Connection) -> None:
        self.store = store
        self.run_id = run_id
        self.abandoned: list[int] = []  # runs found dead (and closed) when this one started
        self._conn: Connection | None = conn

    def renew(self) -> None:
        """Make sure the lease is held (cheap when it is); after a lost connection, reconnect and take it again."""
        if self._conn is not None:
            try:
                self._conn.exec_driver_sql("SELECT 1")
                self._conn.rollback()
                return
            except SQLAlchemyError:
                self._drop()
        def take() -> Connection:
            conn = self.store.engine.connect()
            try:
                _take_lease(conn, self.run_id)
                conn.commit()
            except BaseException:
                conn.close()
                raise
            return conn

        with store_errors(f"renew the lease of run {self.run_id}"):
            self._conn = retry_transaction(take, outage_s=self.store.retry_s)
        logger.info("run %d: lease taken again after a lost connection", self.run_id)

    def _drop(self) -> None:
        if self._conn is not None:
            try:
                self._conn.invalidate()
                self._conn.close()
            except SQLAlchemyError:
                pass
            self._conn = None

    def close(self) -> None:
        """Give the lease back. Idempotent."""
        if self._conn is None:
            return
        try:
            self._conn.execute(queries()["release_run_lease"], {"lease_class": LEASE_CLASS, "run_id": self.run_id})
            self._conn.commit()
            self._conn.close()
        except SQLAlchemyError:
            self._drop()  # the session is gone, and the lock with it
        self._conn = None

    def __enter__(self) -> RunLease:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class Store:
    """A migrated Postgres database. Thread-safe for one writer plus readers (pooled connections)."""

    def __init__(self, engine: Engine, retry_s: float = DEFAULT_RETRY_S) -> None:
        self.engine = engine
        self.retry_s = retry_s

    # --- lifecycle -----------------------------------------------------------------------------
    @classmethod
    def connect(cls, database_url: str, *, retry_s: float = DEFAULT_RETRY_S) -> Store:
        """Open the database at ``database_url``. Nothing is written: commands that write call :meth:`migrate`.

        ``retry_s``: how long a write whose connection was lost (server restart) is retried before it fails.
        """
        return cls(make_engine(database_url), retry_s)

    def migrate(self) -> None:
        """Apply pending migrations (safe from several processes at once)."""
        migrations.migrate(self.engine)

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _begin(self) -> AbstractContextManager[Connection]:
        """One transaction on a pooled connection (the unit of every write)."""
        return self.engine.begin()

    def _transaction(self, action: str, work: Callable[[Connection], T]) -> T:
        """``work`` in one transaction, replayed after a deadlock or a lost connection (for up to ``retry_s``);
        what still fails becomes a :class:`StoreError` saying ``action``."""

        def once() -> T:
            with self._begin() as conn:
                return work(conn)

        with store_errors(action):
            return retry_transaction(once, outage_s=self.retry_s)

    @property
    def embedding_type(self) -> str:
        """``vector`` (pgvector) or ``real[]``: which one this database chose at migration time."""
        return migrations.schema_info(self.engine).get("embedding_type", "real[]")

    # --- models --------------------------------------------------------------------------------
    def register_model(
        self, name: str, weights_sha256: str, labels: Sequence[str], kind: str, embedding_dim: int | None,
        precision: str = "fp32",
    ) -> int:
        """The ``model_id`` of this (name, weights, precision) version, registered on first sight; it becomes the
        current version of ``name`` (the one ``tag_scores`` shows)."""
        params = {
            "name": name,
            "weights_sha256": weights_sha256,
            "labels": list(labels),
            "kind": kind,
            "embedding_dim": embedding_dim,
            "precision": precision,
        }
        return self._transaction(
            f"register model {name}", lambda conn: int(conn.execute(queries()["upsert_model"], params).scalar_one())
        )

    # --- discovery -----------------------------------------------------------------------------
    def record_objects(self, objects: Iterable[ObjectInfo], batch_size: int = 5000) -> DiscoverCounts:
        """Upsert listed objects in batches: new → pending, etag changed → pending again, unchanged → untouched."""
        total = DiscoverCounts()
        for batch in _batches(objects, batch_size):
            unique = {obj.uri: obj for obj in batch}  # one listing may repeat a key; the last wins
            rows = [(o.uri, o.etag, o.size, o.last_modified, o.partition_key) for o in unique.values()]
            new, changed = self._transaction("record discovered objects", lambda conn: self._merge_objects(conn, rows))
            total += DiscoverCounts(new, changed, len(unique) - new - changed)
        return total

    @staticmethod
    def _merge_objects(conn: Connection, rows: list[tuple[Any, ...]]) -> tuple[int, int]:
        run_script(conn, raw_queries()["create_stage_objects"])
        copy_rows(conn, "stage_objects", ("uri", "etag", "size_bytes", "last_modified", "partition_key"), rows)
        new, changed = conn.execute(queries()["merge_objects_from_stage"]).one()
        return int(new), int(changed)

    def mark_pending(self, uris: Sequence[str] | None = None, partition_key: str | None = None,
                     source: str | None = None) -> int:
        """Make tracks pending again (``--force``); None filters match all, ``source`` (a source's URI) keeps to
        the tracks under it. Returns how many changed."""
        params = {"uris": list(uris) if uris is not None else None, "partition_key": partition_key, "source": source}
        return self._transaction("mark tracks pending", lambda conn: conn.execute(queries()["mark_pending"], params).rowcount)

    def claim_pending(self, run_id: int, limit: int, partition_key: str | None = None,
                      source: str | None = None) -> list[TrackTask]:
        """Claim up to ``limit`` pending tracks for ``run_id`` (of ``partition_key``, under the source URI
        ``source``, when given); concurrent live runs never get the same track, and the claims of a run whose
        lease is gone (its process died) are taken over at once."""
        params = {"run_id": run_id, "limit": limit, "partition_key": partition_key, "source": source,
                  "lease_class": LEASE_CLASS}
        rows = self._transaction("claim pending tracks", lambda conn: conn.execute(queries()["claim_pending"], params).all())
        return sorted((TrackTask(r.track_id, r.uri, r.etag) for r in rows), key=lambda t: t.track_id)

    # --- results -------------------------------------------------------------------------------
    def write_results(
        self, results: Sequence[TrackResult], model_ids: Mapping[str, int], segments: bool = False
    ) -> None:
        """Store tags, embeddings (and the taggram if ``segments``) of many tracks, and mark them tagged.

        One transaction for the batch, so each track is all-or-nothing; if the batch is refused (e.g. a
        track was deleted meanwhile), tracks are retried one by one so the others still land, and the
        refused ones are reported in one :class:`TracksRefused`.
        """
        if not results:
            return
        try:
            self._write_results(results, model_ids, segments)
        except StoreError:
            if len(results) == 1:
                raise
            refused = []
            for result in results:
                try:
                    self._write_results([result], model_ids, segments)
                except StoreError as exc:
                    refused.append((result.track_id, result.uri, str(exc)))
            if refused:
                raise TracksRefused(refused) from None

    def _write_results(self, results: Sequence[TrackResult], model_ids: Mapping[str, int], segments: bool) -> None:
        for result in results:
            for output in result.outputs:
                if output.model not in model_ids:
                    raise StoreError(f"model {output.model!r} of {result.uri} is not registered")
        self._transaction("write results", lambda conn: self._write_batch(conn, results, model_ids, segments))

    def _write_batch(
        self, conn: Connection, results: Sequence[TrackResult], model_ids: Mapping[str, int], segments: bool
    ) -> None:
        run_script(conn, raw_queries()["create_stage_results"])
        copy_rows(
            conn,
            "stage_tracks",
            ("track_id", "duration_s", "flags"),
            ((r.track_id, float(r.duration_s), list(r.flags)) for r in results),
        )
        locked = set(conn.execute(queries()["lock_staged_tracks"]).scalars())
        if unknown := sorted({r.uri for r in results if r.track_id not in locked}):
            raise StoreError(f"no such track(s): {', '.join(unknown)}")
        copy_rows(
            conn,
            "stage_scores",
            ("track_id", "model_id", "n_segments", "score", "score_max"),
            (
                (r.track_id, model_ids[o.model], o.n_segments, _vector(o.mean), _vector(o.max))
                for r in results
                for o in r.outputs
            ),
            types=("int8", "int4", "int4", "float4[]", "float4[]"),
        )
        n_embeddings = copy_rows(
            conn,
            "stage_embeddings",
            ("track_id", "model_id", "embedding"),
            (
                (r.track_id, model_ids[o.model], _vector(o.embedding))
                for r in results
                for o in r.outputs
                if o.embedding is not None
            ),
            types=("int8", "int4", "float4[]"),
        )
        conn.execute(queries()["merge_tags_from_stage"])
        conn.execute(queries()["insert_new_tags_from_stage"])
        if n_embeddings:
            conn.execute(queries()["merge_embeddings_from_stage"])
        if segments:
            copy_rows(
                conn,
                "stage_segments",
                ("track_id", "model_id", "segment_index", "scores"),
                self._segment_rows(results, model_ids),
                types=("int8", "int4", "int4", "float4[]"),
            )
            conn.execute(queries()["delete_stale_segments"])
            conn.execute(queries()["merge_segments_from_stage"])
        measured = [(r.track_id, r.descriptors) for r in results if r.descriptors is not None]
        if measured:
            run_script(conn, raw_queries()["create_stage_descriptors"])
            copy_rows(conn, "stage_descriptors", ("track_id", "version", *DESCRIPTOR_COLUMNS), _descriptor_rows(measured))
            conn.execute(queries()["merge_descriptors_from_stage"])
        conn.execute(queries()["mark_tagged_from_stage"])

    @staticmethod
    def _segment_rows(results: Sequence[TrackResult], model_ids: Mapping[str, int]) -> Iterator[tuple[Any, ...]]:
        for r in results:
            for o in r.outputs:
                if o.segments is None:
                    continue
                for index, scores in enumerate(o.segments):
                    yield (r.track_id, model_ids[o.model], index, _vector(scores))

    def write_failures(self, failures: Sequence[TrackFailure], run_id: int | None) -> None:
        """Mark tracks failed with their error, count the attempt, and keep a history row each."""
        if not failures:
            return
        params = {
            "track_ids": [f.track_id for f in failures],
            "kinds": [f.kind for f in failures],
            "details": [f.detail for f in failures],
            "run_id": run_id,
        }
        def write(conn: Connection) -> None:
            conn.execute(queries()["lock_tracks"], {"track_ids": params["track_ids"]})
            conn.execute(queries()["record_failures"], params)

        self._transaction("write failures", write)

    # --- runs ----------------------------------------------------------------------------------
    def open_run(
        self, source: str, models: Sequence[str], partition_key: str | None = None, *, precision: str | None = None,
        backends: Mapping[str, str] | None = None,
    ) -> RunLease:
        """Start a run and take its lease (see :class:`RunLease`); runs whose lease is gone are closed as
        ``abandoned`` and their claims freed. Close the lease when the run ends. ``precision`` and ``backends``
        (model name → backend) record what the run's scores were computed with."""
        params = {"source": source, "models": list(models), "partition_key": partition_key, "precision": precision,
                  "backends": json.dumps(dict(backends or {}))}
        with store_errors("start run"):
            conn = self.engine.connect()
            try:
                with conn.begin():
                    run_id = int(conn.execute(queries()["start_run"], params).scalar_one())
                    # taken inside the insert's transaction: no other session sees the run without its lease
                    _take_lease(conn, run_id)
                lease = RunLease(self, run_id, conn)
            except BaseException:
                conn.close()
                raise
        try:
            lease.abandoned = self._transaction("close abandoned runs", lambda c: [int(r) for r in c.execute(
                queries()["abandon_dead_runs"], {"lease_class": LEASE_CLASS, "run_id": run_id}).scalars()])
        except BaseException:
            lease.close()
            raise
        if lease.abandoned:
            logger.warning("runs %s died without finishing: closed as abandoned, their claims freed", lease.abandoned)
        return lease

    def finish_run(self, run_id: int, stats: Mapping[str, Any], status: str = "completed") -> None:
        """Close a run (``completed`` or ``failed``) with its counts; claims it still holds are released."""
        params = {"run_id": run_id, "stats": json.dumps(dict(stats), default=str), "status": status}
        finished = self._transaction(f"finish run {run_id}", lambda conn: conn.execute(queries()["finish_run"], params).rowcount)
        if finished == 0:
            raise StoreError(f"no run {run_id} to finish")

    # --- queries -------------------------------------------------------------------------------
    def _all(self, name: str, params: Mapping[str, Any] | None = None) -> list[Any]:
        with store_errors(name.replace("_", " ")), self.engine.connect() as conn:
            return list(conn.execute(queries()[name], dict(params or {})).all())

    def partition_status(self, partition_key: str, source: str | None = None) -> dict[str, int]:
        """Counts of a partition's tracks (under the source URI ``source`` when given): ``total``, ``tagged``,
        ``failed``, ``pending``."""
        row = self._all("partition_status", {"partition_key": partition_key, "source": source})[0]
        return {"total": row.total, "tagged": row.tagged, "failed": row.failed, "pending": row.pending}

    def tags_for_track(self, uri: str, model: str | None = None) -> list[dict[str, Any]]:
        """Current tags of one track (latest model versions), best first within each model."""
        rows = self._all("tags_for_track", {"uri": uri, "model": model})
        return [{"model": r.model, "tag": r.tag, "score": r.score, "score_max": r.score_max} for r in rows]

    def top_tracks(self, tag: str, model: str | None = None, top: int = 10) -> list[dict[str, Any]]:
        """The ``top`` tagged tracks scoring highest for ``tag`` (over current models, or one)."""
        rows = self._all("top_tracks", {"tag": tag, "model": model, "top": top})
        return [{"uri": r.uri, "model": r.model, "score": r.score} for r in rows]

    def descriptors_for_track(self, uri: str) -> dict[str, Any] | None:
        """The current descriptors of one track, or ``None`` when it has none."""
        rows = self._all("descriptors_for_track", {"uri": uri})
        return dict(rows[0]._mapping) if rows else None

    def tracks_by_descriptors(
        self,
        *,
        min_bpm: float | None = None,
        max_bpm: float | None = None,
        keys: Sequence[str] | None = None,
        min_lufs: float | None = None,
        max_lufs: float | None = None,
        tag: str | None = None,
        min_score: float = 0.0,
        model: str | None = None,
        top: int = 10,
    ) -> list[dict[str, Any]]:
        """Tagged tracks whose current descriptors pass every filter given (``None`` filters nothing).

        ``keys`` are key names as stored (``"A minor"``); with ``tag``, only tracks scoring at least
        ``min_score`` for it, best first; otherwise by uri.
        """
        params = {
            "min_bpm": min_bpm, "max_bpm": max_bpm, "keys": list(keys) if keys is not None else None,
            "min_lufs": min_lufs, "max_lufs": max_lufs, "tag": tag, "min_score": min_score, "model": model,
            "top": top,
        }  # fmt: skip
        return [dict(r._mapping) for r in self._all("select_tracks_by_descriptors", params)]

    def failures_by_kind(self) -> dict[str, int]:
        """How many tracks currently stand failed, by error kind."""
        return {r.kind: r.n for r in self._all("failures_by_kind")}

    def failure_history(self, uri: str) -> list[dict[str, Any]]:
        """Every failure ever recorded for a track, oldest first (kept after a later success)."""
        rows = self._all("failure_history", {"uri": uri})
        return [{"run_id": r.run_id, "failed_at": r.failed_at, "kind": r.kind, "detail": r.detail} for r in rows]

    def scores_out_of_range(self, partition_key: str) -> int:
        """Tag rows of a partition whose scores are outside [0, 1] (or NaN), or whose mean exceeds the max."""
        return int(self._all("scores_out_of_range", {"partition_key": partition_key})[0][0])

    def connection(self) -> Connection:
        """A pooled connection for read-only ad-hoc use (tests, checks); the caller closes it."""
        return self.engine.connect()
