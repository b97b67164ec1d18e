"""Re-converting the published musicnn wheel reproduces the shipped weights byte for byte."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from catalogue_tagger.errors import WeightsMismatch
from catalogue_tagger.models.convert import (
    MANIFEST_FILE,
    WEIGHTS_DIR,
    WHEEL_FILE,
    convert,
    published_aucs,
)


def test_reconversion_reproduces_shipped_weights(wheel: Path, tmp_path: Path) -> None:
    manifest = convert(wheel, tmp_path)
    shipped = json.loads((WEIGHTS_DIR / MANIFEST_FILE).read_text())
    assert manifest == shipped
    assert (tmp_path / MANIFEST_FILE).read_bytes() == (WEIGHTS_DIR / MANIFEST_FILE).read_bytes()
    for entry in manifest["models"].values():
        assert (tmp_path / entry["weights_file"]).read_bytes() == (WEIGHTS_DIR / entry["weights_file"]).read_bytes()


def test_other_files_are_refused(tmp_path: Path) -> None:
    fake = tmp_path / WHEEL_FILE
    fake.write_bytes(b"not the wheel")
    with pytest.raises(WeightsMismatch):
        convert(fake, tmp_path / "out")


def test_published_aucs() -> None:
    assert published_aucs("Results:\nROC-AUC: 0.9066\nPR-AUC: 0.3831") == (0.9066, 0.3831)
    assert published_aucs("Experiment: ['x']\nAUC: 0.88\nAUC: 0.28") == (0.88, 0.28)
