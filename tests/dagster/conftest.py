"""Fixtures for the code location: a folder of real audio with chosen upload days, and definitions over it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import dagster as dg
import pytest

from catalogue_tagger.config import Settings
from dagster_catalogue import DAY_1, DAY_2, START, DefsFactory, place
from dagster_defs import build_definitions


@pytest.fixture
def catalogue(tmp_path: Path) -> Path:
    """Two tracks uploaded on DAY_1, one on DAY_2."""
    folder = tmp_path / "catalogue"
    folder.mkdir()
    place(folder, "a", DAY_1, clip=0)
    place(folder, "b", DAY_1, clip=1)
    place(folder, "c", DAY_2, clip=2)
    return folder


@pytest.fixture
def fresh_database_url(database_factory: Callable[[], str]) -> str:
    """A database of its own for each test: partition counts never see another test's tracks."""
    return database_factory()



@pytest.fixture
def make_defs(catalogue: Path, fresh_database_url: str) -> DefsFactory:
    """``make_defs(shards=1)`` → the code location's definitions over ``catalogue`` and a fresh database."""

    def make(shards: int = 1) -> dg.Definitions:
        settings = Settings(database_url=fresh_database_url, source=str(catalogue), partition_start=START,
                            shards=shards, executor="in_process", workers=1)
        return build_definitions(settings)

    return make
