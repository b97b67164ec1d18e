"""schema.sql and the migrations agree; migrating is idempotent and safe under concurrency."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

import pytest
from sqlalchemy import text

from catalogue_tagger.store import migrate
from catalogue_tagger.store.engine import make_engine
from catalogue_tagger.store.queries import migration_file_names, migrations, parse_queries

CATALOG = {name: text(sql) for name, sql in parse_queries((Path(__file__).parent / "catalog.sql").read_text()).items()}


def catalog(url: str) -> dict[str, list[tuple[Any, ...]]]:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return {name: [tuple(row) for row in conn.execute(query)] for name, query in CATALOG.items()}
    finally:
        engine.dispose()


def assert_same_catalog(from_schema: str, from_migrations: str) -> None:
    left, right = catalog(from_schema), catalog(from_migrations)
    for part in CATALOG:
        assert left[part] == right[part], f"schema.sql and migrations differ in {part}"
    assert left["columns"], "the catalog dump found no columns: the comparison would prove nothing"


def build_both(make_database: Callable[[], str]) -> tuple[str, str]:
    by_schema, by_migrations = make_database(), make_database()
    engine = make_engine(by_schema)
    assert len(migrate.init(engine)) == len(migrations())
    engine.dispose()
    engine = make_engine(by_migrations)
    assert len(migrate.migrate(engine)) == len(migrations())
    engine.dispose()
    return by_schema, by_migrations


def test_migration_file_names() -> None:
    names = migration_file_names()
    assert names and names[0].startswith("0001_")
    versions = [m.version for m in migrations()]
    assert versions[0] == 1 and versions == sorted(set(versions)) and len(versions) == len(names)


def test_schema_matches_migrations(database_factory: Callable[[], str]) -> None:
    assert_same_catalog(*build_both(database_factory))


def test_schema_matches_migrations_with_pgvector(embedded_database_factory: Callable[[], str]) -> None:
    by_schema, by_migrations = build_both(embedded_database_factory)
    assert_same_catalog(by_schema, by_migrations)
    assert dict(catalog(by_schema)["schema_info"])["embedding_type"] == "vector"


def test_migrating_twice_changes_nothing(database_factory: Callable[[], str]) -> None:
    url = database_factory()
    engine = make_engine(url)
    try:
        assert len(migrate.migrate(engine)) == len(migrations())
        before = catalog(url)
        assert migrate.migrate(engine) == []
        assert migrate.init(engine) == []  # init on a built database only migrates
        assert catalog(url) == before
        assert all(state.applied_at is not None for state in migrate.status(engine))
    finally:
        engine.dispose()


MIGRATE_SCRIPT = """
import sys
from catalogue_tagger.store.engine import make_engine
from catalogue_tagger.store.migrate import migrate
print(len(migrate(make_engine(sys.argv[1]))))
"""


@pytest.mark.parametrize("processes", [2])
def test_concurrent_migrators_both_succeed(database_factory: Callable[[], str], processes: int) -> None:
    url = database_factory()
    procs = [
        subprocess.Popen([sys.executable, "-c", MIGRATE_SCRIPT, url], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(processes)
    ]
    outcomes = [proc.communicate(timeout=120) for proc in procs]
    for proc, (out, err) in zip(procs, outcomes):
        assert proc.returncode == 0, err
    applied = sorted(int(out.strip()) for out, _ in outcomes)
    assert sum(applied) == len(migrations())  # each migration applied exactly once, by someone
    engine = make_engine(url)
    try:
        assert [s.version for s in migrate.status(engine) if s.applied_at] == [m.version for m in migrations()]
    finally:
        engine.dispose()
