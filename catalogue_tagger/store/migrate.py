"""Schema migrations: ``sql/migrations/NNNN_*.sql`` in order, each with its ledger row in one transaction.

A transaction-scoped advisory lock serializes migrators, so two processes starting at once (two CLI
calls, two Dagster workers) never apply the same migration twice; the loser waits, then finds nothing
left to do.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, Engine

from catalogue_tagger.errors import MigrationError
from catalogue_tagger.store.driver import run_script, store_errors
from catalogue_tagger.store.queries import Migration, migrations, queries, raw_queries, schema_sql

# pg_advisory_xact_lock key: "catalogue-tagger migrations", a fixed arbitrary bigint.
LOCK_KEY = 0x6361745F6D696772


@dataclass(frozen=True)
class MigrationState:
    version: int
    name: str
    applied_at: datetime | None  # None: not applied yet


def _locked(conn: Connection) -> set[int]:
    """Take the lock, make sure the ledger exists, return the applied versions."""
    conn.execute(queries()["migration_lock"], {"lock_key": LOCK_KEY})
    run_script(conn, raw_queries()["create_schema_migrations"])
    return {row.version for row in conn.execute(queries()["applied_migrations"])}


def _apply(conn: Connection, migration: Migration) -> None:
    run_script(conn, migration.sql)
    conn.execute(queries()["record_migration"], {"version": migration.version, "name": migration.name})


def migrate(engine: Engine) -> list[Migration]:
    """Apply every pending migration, one transaction each; return those applied here."""
    applied_here: list[Migration] = []
    for migration in migrations():
        with store_errors(f"migration {migration.version:04d}_{migration.name}", MigrationError):
            with engine.begin() as conn:
                if migration.version in _locked(conn):
                    continue
                _apply(conn, migration)
        applied_here.append(migration)
    return applied_here


def init(engine: Engine) -> list[Migration]:
    """Build an empty database from ``schema.sql`` in one go (recording every migration); else migrate."""
    with store_errors("schema.sql", MigrationError):
        with engine.begin() as conn:
            applied = _locked(conn)
            empty = conn.execute(queries()["user_table_count"]).scalar_one() == 0
            if not applied and empty:
                run_script(conn, schema_sql())
                for migration in migrations():
                    conn.execute(queries()["record_migration"], {"version": migration.version, "name": migration.name})
                return list(migrations())
    return migrate(engine)


def status(engine: Engine) -> list[MigrationState]:
    """Every known migration, with when it was applied (None if pending)."""
    with store_errors("migration status"), engine.begin() as conn:
        _locked(conn)
        applied = {row.version: row.applied_at for row in conn.execute(queries()["applied_migrations"])}
    return [MigrationState(m.version, m.name, applied.get(m.version)) for m in migrations()]


def schema_info(engine: Engine) -> dict[str, str]:
    """Choices recorded while the schema was built (e.g. ``embedding_type``)."""
    with store_errors("schema info"), engine.connect() as conn:
        return {row.key: row.value for row in conn.execute(queries()["schema_info"])}
