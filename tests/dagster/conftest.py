"""Fixtures for the code location: a folder of real audio with chosen upload days, and definitions over it."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

import dagster as dg
import pytest

from catalogue_tagger.config import Settings
from dagster_defs import DeploymentOptions, PartitionScheme, build_definitions

REPO = Path(__file__).resolve().parents[2]
REFERENCE = REPO.parent / "shared" / "reference" / "musicnn"
FIXTURES = REPO / "tests" / "fixtures" / "audio"

DAY_1 = "2024-05-01"
DAY_2 = "2024-05-02"
DAY_3 = "2024-05-03"
START = "2024-01-01"


def _clips() -> list[Path]:
    """Short real clips: the musicnn reference set beside the repository, else the committed fixtures."""
    reference = [REFERENCE / f"pub_{name}.flac" for name in ("short_2s", "speech", "noise")]
    if all(path.is_file() for path in reference):
        return reference
    return [FIXTURES / name for name in ("excerpt.ogg", "excerpt.mp3", "excerpt.opus")]


def place(folder: Path, name: str, day: str, clip: int = 0, hour: int = 12) -> Path:
    """Copy a clip into ``folder`` as ``name`` and set its modification time to noon (UTC) of ``day``."""
    source = _clips()[clip % len(_clips())]
    target = folder / f"{name}{source.suffix}"
    shutil.copyfile(source, target)
    stamp = datetime.fromisoformat(day).replace(hour=hour, tzinfo=timezone.utc).timestamp()
    os.utime(target, (stamp, stamp))
    return target


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


DefsFactory = Callable[..., dg.Definitions]


@pytest.fixture
def make_defs(catalogue: Path, fresh_database_url: str) -> DefsFactory:
    """``make_defs(shards=1)`` → the code location's definitions over ``catalogue`` and a fresh database."""

    def make(shards: int = 1) -> dg.Definitions:
        settings = Settings(database_url=fresh_database_url, source=str(catalogue))
        scheme = PartitionScheme(start_date=START, shards=shards)
        return build_definitions(settings, scheme, DeploymentOptions(executor="in_process"), environ={})

    return make
