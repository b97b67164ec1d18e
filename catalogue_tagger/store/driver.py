"""The narrow boundary to psycopg: scripts, COPY, and error translation.

Everything above this module speaks SQLAlchemy connections and :class:`StoreError`; only here do we
reach for the raw psycopg connection, because COPY and multi-statement scripts (with literal ``%`` and
``DO`` blocks) are not expressible through SQLAlchemy's bind processing.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg
from sqlalchemy import Connection
from sqlalchemy.exc import SQLAlchemyError

from catalogue_tagger.errors import StoreError


def _raw(conn: Connection) -> psycopg.Connection[Any]:
    driver_connection = conn.connection.driver_connection
    assert isinstance(driver_connection, psycopg.Connection)
    return driver_connection


def run_script(conn: Connection, sql: str) -> None:
    """Run several statements at once, without parameters (simple query protocol), in ``conn``'s transaction."""
    with _raw(conn).cursor() as cursor:
        cursor.execute(sql.encode("utf-8"))


def copy_rows(conn: Connection, table: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> int:
    """COPY ``rows`` into ``table`` (a staging table whose name comes from our own code, never from input)."""
    statement = f"COPY {table} ({', '.join(columns)}) FROM STDIN"
    count = 0
    with _raw(conn).cursor() as cursor, cursor.copy(statement) as copy:
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
