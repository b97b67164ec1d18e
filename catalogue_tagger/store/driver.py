"""The narrow boundary to psycopg: scripts, COPY, and error translation.

Everything above this module speaks SQLAlchemy connections and :class:`StoreError`; only here do we
reach for the raw psycopg connection, because COPY and multi-statement scripts (with literal ``%`` and
``DO`` blocks) are not expressible through SQLAlchemy's bind processing.
"""

from __future__ import annotations

import logging
import struct
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt
import psycopg
import psycopg.errors
import psycopg.sql
from psycopg.adapt import Dumper
from psycopg.pq import Format
from sqlalchemy import Connection, TextClause
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from catalogue_tagger.errors import StoreError

T = TypeVar("T")

logger = logging.getLogger(__name__)


def _raw(conn: Connection) -> psycopg.Connection[Any]:
    driver_connection = conn.connection.driver_connection
    assert isinstance(driver_connection, psycopg.Connection)
    return driver_connection


def run_script(conn: Connection, sql: str) -> None:
    """Run several statements at once, without parameters (simple query protocol), in ``conn``'s transaction."""
    with _raw(conn).cursor() as cursor:
        cursor.execute(sql.encode("utf-8"))


FLOAT4_OID, FLOAT4_ARRAY_OID = 700, 1021
_ARRAY_ELEMENT = np.dtype([("length", ">i4"), ("value", ">f4")])


class Float4ArrayBinaryDumper(Dumper):
    """A numpy vector as a binary ``real[]``, built with numpy instead of element by element.

    Dumping 50-label score vectors and 200-d embeddings is the client's main cost in a bulk write;
    this makes it a couple of memory copies per row.
    """

    format = Format.BINARY
    oid = FLOAT4_ARRAY_OID

    def dump(self, obj: Any) -> bytes:
        values = np.asarray(obj, dtype=np.float32).ravel()
        elements = np.empty(values.size, dtype=_ARRAY_ELEMENT)
        elements["length"] = 4
        elements["value"] = values
        # ndim, has-nulls, element type, then (length, lower bound) of the one dimension
        return struct.pack(">iiIii", 1, 0, FLOAT4_OID, values.size, 1) + elements.tobytes()


def copy_rows(
    conn: Connection,
    table: str,
    columns: Sequence[str],
    rows: Iterable[Sequence[Any]],
    types: Sequence[str] | None = None,
) -> int:
    """COPY ``rows`` into ``table`` (a staging table whose name comes from our own code, never from input).

    With ``types`` (Postgres type names, one per column) the COPY is binary and ``real[]`` columns take
    numpy vectors directly; without, it is text COPY of Python values.
    """
    binary = types is not None
    statement = psycopg.sql.SQL("COPY {} ({}) FROM STDIN {}").format(
        psycopg.sql.Identifier(table),
        psycopg.sql.SQL(", ").join(psycopg.sql.Identifier(c) for c in columns),
        psycopg.sql.SQL("(FORMAT BINARY)" if binary else ""),
    )
    count = 0
    with _raw(conn).cursor() as cursor:
        if binary:
            cursor.adapters.register_dumper(None, Float4ArrayBinaryDumper)
        with cursor.copy(statement) as copy:
            if types is not None:
                copy.set_types(list(types))
            for row in rows:
                copy.write_row(row)
                count += 1
    return count


@contextmanager
def store_errors(action: str, error: type[StoreError] = StoreError) -> Iterator[None]:
    """Turn driver and SQLAlchemy errors into ``error`` (a :class:`StoreError`) saying what we were doing."""
    try:
        yield
    except StoreError:
        raise
    except (psycopg.Error, SQLAlchemyError) as exc:
        cause = getattr(exc, "orig", None) or exc
        if isinstance(cause, psycopg.OperationalError):
            error = StoreError  # the server is unreachable or went away: not the statement's fault
        raise error(f"{action}: {type(cause).__name__}: {str(cause).strip()}") from exc


def retry_transaction(action: Callable[[], T], *, outage_s: float, conflicts: int = 5) -> T:
    """Run ``action`` (one whole transaction), again when replaying it is safe and may succeed:

    - Postgres aborted it for a deadlock or a serialization failure (up to ``conflicts`` attempts): writers lock
      rows in a fixed order, but discovery (by uri) and result writing (by track_id) can still meet in
      opposite orders;
    - the connection was lost (server restarted, network cut): tried again with backoff for up to
      ``outage_s`` seconds; the pool hands out a fresh connection once the server answers.

    Every write is an idempotent merge in one transaction, so a replay after an unknown outcome changes nothing.
    """
    deadline: float | None = None
    delay = 0.2
    attempt = 0
    while True:
        attempt += 1
        try:
            return action()
        except (DBAPIError, psycopg.Error) as exc:
            cause = getattr(exc, "orig", None) or exc
            if isinstance(cause, (psycopg.errors.DeadlockDetected, psycopg.errors.SerializationFailure)):
                if attempt >= conflicts:
                    raise
                continue
            lost = isinstance(cause, psycopg.OperationalError) or getattr(exc, "connection_invalidated", False)
            if not lost:
                raise
            now = time.monotonic()
            deadline = deadline if deadline is not None else now + outage_s
            if now >= deadline:
                raise
            logger.warning("database connection lost (%s); retrying for up to %.0f s more", type(cause).__name__,
                           deadline - now)
            time.sleep(min(delay, max(0.0, deadline - now)))
            delay = min(delay * 2, 5.0)


def _libpq_url(database_url: str) -> str:
    return database_url.replace("postgresql+psycopg://", "postgresql://", 1)


def create_database(server_url: str, name: str) -> None:
    """CREATE DATABASE on the server of ``server_url`` (an identifier cannot be a bind parameter)."""
    with store_errors(f"create database {name}"), psycopg.connect(_libpq_url(server_url), autocommit=True) as conn:
        conn.execute(psycopg.sql.SQL("CREATE DATABASE {}").format(psycopg.sql.Identifier(name)))


def drop_database(server_url: str, name: str) -> None:
    """DROP DATABASE … WITH (FORCE) on the server of ``server_url``."""
    with store_errors(f"drop database {name}"), psycopg.connect(_libpq_url(server_url), autocommit=True) as conn:
        conn.execute(
            psycopg.sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(psycopg.sql.Identifier(name))
        )


@contextmanager
def scratch_database(server_url: str, prefix: str) -> Iterator[str]:
    """A new, empty database on the server of ``server_url`` for the duration of the block; its URL."""
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    create_database(server_url, name)
    try:
        yield make_url(server_url).set(database=name).render_as_string(hide_password=False)
    finally:
        drop_database(server_url, name)


_COPY_SIGNATURE = b"PGCOPY\n\xff\r\n\x00"
_COPY_HEADER = len(_COPY_SIGNATURE) + 8  # signature, flags, header extension length (0)


def copy_out_id_vectors(conn: Connection, query: TextClause, params: Mapping[str, Any], dim: int) -> tuple[
        npt.NDArray[np.int64], npt.NDArray[np.float32]]:
    """Run ``query`` (a named statement selecting ``bigint, real[]`` rows whose arrays all hold ``dim``
    values) as a binary COPY and parse it with numpy: ``(ids (n,), vectors (n, dim))``.

    Fetching embeddings row by row costs seconds per 100,000; a fixed-size binary row is one numpy view.
    Binds are merged client-side (COPY takes no server-side parameters).
    """
    statement = str(query.compile(dialect=conn.dialect)).strip().rstrip(";")
    row = np.dtype([("fields", ">i2"), ("id_len", ">i4"), ("id", ">i8"), ("array_len", ">i4"),
                    ("array_header", ">i4", (5,)), ("values", [("len", ">i4"), ("value", ">f4")], (dim,))])
    buffer = bytearray()
    with _raw(conn).cursor() as cursor:
        # the statement is one of ours (sql/queries.sql), composed as SQL, never interpolated text
        copy_out = psycopg.sql.SQL("COPY ({}) TO STDOUT (FORMAT BINARY)").format(psycopg.sql.SQL(statement))
        with cursor.copy(copy_out, dict(params)) as copy:
            for chunk in copy:
                buffer += chunk
    if not buffer.startswith(_COPY_SIGNATURE):
        raise StoreError("binary COPY of vectors: unexpected header")
    body = memoryview(buffer)[_COPY_HEADER : len(buffer) - 2]  # trailer: int16 -1
    if len(body) % row.itemsize:
        raise StoreError(f"binary vector rows: not {dim}-d real[] (got {len(body)} bytes)")
    rows = np.frombuffer(body, dtype=row)
    if rows.size and (np.any(rows["fields"] != 2) or np.any(rows["array_header"][:, 3] != dim)):
        raise StoreError(f"binary vector rows: a row is not (bigint, real[{dim}])")
    return rows["id"].astype(np.int64), rows["values"]["value"].astype(np.float32)
