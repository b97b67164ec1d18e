"""Which database, and an SQLAlchemy engine for it (psycopg 3 driver)."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine, create_engine
from sqlalchemy.engine import make_url



def normalize_url(database_url: str) -> str:
    """Accept ``postgres://``, ``postgresql://`` and ``postgresql+psycopg://``; always use psycopg 3.

    Users paste libpq URLs; SQLAlchemy would pick psycopg2 for those, which we do not ship.
    """
    url = make_url(database_url)
    if url.get_backend_name() != "postgresql" and url.drivername != "postgres":
        raise ValueError(f"not a Postgres URL: {url.render_as_string(hide_password=True)}")
    return url.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)


def resolve_database_url(database_url: str | None, home: Path) -> str:
    """``database_url``, else the embedded server under ``home`` (started on demand)."""
    if database_url:
        return normalize_url(database_url)
    from catalogue_tagger.store.embedded import EmbeddedPostgres

    return normalize_url(EmbeddedPostgres(home).ensure_running())


def make_engine(database_url: str) -> Engine:
    # pre_ping: a long run outlives server restarts; the writer should reconnect, not die.
    return create_engine(normalize_url(database_url), pool_pre_ping=True, pool_size=2, max_overflow=4)
