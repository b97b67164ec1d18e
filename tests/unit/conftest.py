"""Unit-test fixtures shared by the converter and checkpoint-reader tests."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from catalogue_tagger.models.convert import download_wheel, verify_wheel


@pytest.fixture(scope="session")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The pinned musicnn wheel: ``$MUSICNN_WHEEL`` if set, else downloaded from the package index (it is a
    registry package); the tests that need it skip only when no index is reachable."""
    if candidate := os.environ.get("MUSICNN_WHEEL"):
        path = Path(candidate)
    else:
        try:
            path = download_wheel(tmp_path_factory.mktemp("wheel"))
        except Exception as exc:  # no index reachable: nothing to test against
            pytest.skip(f"musicnn wheel unavailable: {exc}")
    verify_wheel(path)
    return path
