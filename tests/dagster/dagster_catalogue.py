"""A folder of real audio with chosen upload days (helpers shared by the code-location tests)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

import dagster as dg

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


DefsFactory = Callable[..., dg.Definitions]
