"""The SQL files parse into named statements; deadlock retries replay only what is safe to replay."""

from __future__ import annotations

import psycopg.errors
import pytest

from catalogue_tagger.store.driver import retry_on_conflict
from catalogue_tagger.store.engine import normalize_url
from catalogue_tagger.store.queries import migrations, parse_queries, queries, schema_sql


def test_queries_file_parses_with_descriptions() -> None:
    named = queries()
    assert {"claim_pending", "merge_tags_from_stage", "top_tracks", "tags_for_track"} <= set(named)
    source = parse_queries("-- name: a --\n-- says a\nSELECT 1;\n\n-- name: b --\nSELECT :x;\n")
    assert source == {"a": "-- says a\nSELECT 1;", "b": "SELECT :x;"}


def test_duplicate_query_names_are_refused() -> None:
    with pytest.raises(ValueError, match="twice"):
        parse_queries("-- name: a --\nSELECT 1;\n-- name: a --\nSELECT 2;\n")


def test_migrations_are_numbered_and_schema_is_shipped() -> None:
    versions = [m.version for m in migrations()]
    assert versions[0] == 1 and versions == sorted(set(versions))
    assert "CREATE VIEW tag_scores" in schema_sql()


def test_urls_always_use_psycopg3() -> None:
    assert normalize_url("postgresql://u@h/db") == "postgresql+psycopg://u@h/db"
    assert normalize_url("postgres://u:p@h:5433/db").startswith("postgresql+psycopg://u:p@h:5433/db")
    with pytest.raises(ValueError):
        normalize_url("sqlite:///x.db")


def test_deadlocks_are_retried_other_errors_are_not() -> None:
    calls: list[int] = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise psycopg.errors.DeadlockDetected("deadlock detected")
        return "done"

    assert retry_on_conflict(flaky) == "done" and len(calls) == 3

    def broken() -> None:
        calls.append(1)
        raise psycopg.errors.UniqueViolation("duplicate key")

    calls.clear()
    with pytest.raises(psycopg.errors.UniqueViolation):
        retry_on_conflict(broken)
    assert len(calls) == 1
