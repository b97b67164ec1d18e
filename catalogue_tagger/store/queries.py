"""The named SQL of ``sql/queries.sql``, ``schema.sql`` and ``migrations/``, loaded once from the package.

SQL lives in ``.sql`` files so a reviewer reads and diffs it as SQL; Python asks for statements by name.
``importlib.resources`` makes this work from a wheel as well as from a checkout.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from importlib.resources import files
from importlib.resources.abc import Traversable

from sqlalchemy import TextClause, text

_HEADER = re.compile(r"^--\s*name:\s*([a-z0-9_]+)\s*--\s*$", re.MULTILINE)
_MIGRATION_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


def sql_dir() -> Traversable:
    return files("catalogue_tagger") / "sql"


def parse_queries(source: str) -> dict[str, str]:
    """Split a file of ``-- name: NAME --`` sections into ``{name: sql}`` (comment lines kept)."""
    parts = _HEADER.split(source)
    queries: dict[str, str] = {}
    for name, body in zip(parts[1::2], parts[2::2]):
        if name in queries:
            raise ValueError(f"query {name!r} is defined twice")
        queries[name] = body.strip()
    return queries


@cache
def raw_queries() -> dict[str, str]:
    """Every statement of ``queries.sql`` as text (for scripts run outside bind processing)."""
    return parse_queries((sql_dir() / "queries.sql").read_text(encoding="utf-8"))


@cache
def queries() -> dict[str, TextClause]:
    """Every statement of ``queries.sql`` as a ``TextClause`` with ``:named`` binds."""
    return {name: text(sql) for name, sql in raw_queries().items()}


@cache
def example_queries() -> dict[str, str]:
    """The example queries of ``examples.sql`` (shown to users; each one runs in the tests)."""
    return parse_queries((sql_dir() / "examples.sql").read_text(encoding="utf-8"))


def schema_sql() -> str:
    return (sql_dir() / "schema.sql").read_text(encoding="utf-8")


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str


def migration_file_names() -> list[str]:
    return sorted(entry.name for entry in (sql_dir() / "migrations").iterdir() if entry.name.endswith(".sql"))


@cache
def migrations() -> tuple[Migration, ...]:
    """``migrations/NNNN_name.sql`` in version order; a badly named file is an error, not skipped."""
    found: list[Migration] = []
    for file_name in migration_file_names():
        match = _MIGRATION_NAME.match(file_name)
        if match is None:
            raise ValueError(f"migration file {file_name!r} is not named NNNN_name.sql")
        sql = (sql_dir() / "migrations" / file_name).read_text(encoding="utf-8")
        found.append(Migration(int(match.group(1)), match.group(2), sql))
    versions = [m.version for m in found]
    # Unique and starting at 1; a gap is allowed while a migration numbered before it lives on another branch.
    if not versions or versions[0] != 1 or len(set(versions)) != len(versions):
        raise ValueError(f"migration versions must be unique and start at 1, got {versions}")
    return tuple(found)
