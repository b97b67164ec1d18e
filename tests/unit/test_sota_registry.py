"""The sota-music-tagging-models taggers in the registry: specs, pinned weights and their manifest, and a
re-conversion from ../shared/weights/sota-mtat that reproduces the shipped files byte for byte."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from catalogue_tagger.errors import ModelError, WeightsMismatch
from catalogue_tagger.models.labels import MTT_LABELS
from catalogue_tagger.models.registry import load_model
from catalogue_tagger.models.sota import SotaTagger
from catalogue_tagger.models.sota_convert import (
    CHECKPOINTS,
    LICENCE_FILE,
    MANIFEST_FILE,
    WEIGHTS_DIR,
    convert_sota_weights,
    read_tags,
    state_dict_from_checkpoint,
)
from catalogue_tagger.models.specs import SOTA_PUBLISHED_AUCS, SPECS, get_spec

NAMES = ("musicnn-sota-mtt", "fcn-mtt", "crnn-mtt")
# the shared checkpoints sit beside the clone (CI) or the worktree (development)
SHARED = Path(__file__).resolve().parents[3] / "shared" / "weights" / "sota-mtat"
needs_shared = pytest.mark.skipif(not SHARED.is_dir(), reason=f"{SHARED} is absent (../shared beside the clone)")


@pytest.mark.parametrize("name", NAMES)
def test_spec(name: str) -> None:
    spec = get_spec(name)
    window = 48000 if name == "musicnn-sota-mtt" else 464000
    assert (spec.kind, spec.window, spec.hop, spec.pad, spec.sample_rate) == ("spectrogram", window, window, 0, 16000)
    assert spec.labels == MTT_LABELS and not spec.default
    assert spec.output_names == (("probs", "logits", "embedding") if name == "musicnn-sota-mtt" else ("probs", "logits"))
    assert (spec.roc_auc, spec.pr_auc) == SOTA_PUBLISHED_AUCS[name]
    assert spec.licence == "MIT" and "Minz Won" in spec.attribution and "36aa13b" in spec.source


def test_manifest_pins_the_registry_weights() -> None:
    manifest = json.loads((WEIGHTS_DIR / MANIFEST_FILE).read_text())
    assert manifest["licence"] == "MIT" and (WEIGHTS_DIR / manifest["licence_file"]).is_file()
    assert "Universitat Pompeu Fabra" in (WEIGHTS_DIR / LICENCE_FILE).read_text()
    assert set(manifest["models"]) == set(NAMES)
    for name, entry in manifest["models"].items():
        spec = SPECS[name]
        assert (entry["weights_file"], entry["sha256"]) == (spec.weights_file, spec.weights_sha256)
        assert (entry["roc_auc"], entry["pr_auc"]) == (spec.roc_auc, spec.pr_auc)
        assert spec.attribution == manifest["attribution"]


@pytest.mark.parametrize("name", NAMES)
def test_loads_in_eval_mode_with_front_end_constants_outside_the_weights(name: str) -> None:
    tagger = load_model(name)
    assert isinstance(tagger, SotaTagger) and not tagger.training
    assert not any(key.startswith(("frontend.basis", "frontend.mel")) for key in tagger.state_dict())


@needs_shared
def test_reconversion_reproduces_shipped_weights(tmp_path: Path) -> None:
    from catalogue_tagger.cli import main

    result = CliRunner().invoke(main, ["models", "convert-sota", "--source", str(SHARED), "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert result.output.count(" ok") == len(NAMES)
    for file in [MANIFEST_FILE, LICENCE_FILE, *(f"{name}.safetensors" for name in NAMES)]:
        assert (tmp_path / file).read_bytes() == (WEIGHTS_DIR / file).read_bytes(), file


@needs_shared
def test_other_checkpoints_are_refused(tmp_path: Path) -> None:
    source = tmp_path / "sota-mtat"
    shutil.copytree(SHARED, source)
    for path in source.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)
    (source / "fcn" / "best_model.pth").write_bytes(b"not the checkpoint")
    with pytest.raises(WeightsMismatch):
        convert_sota_weights(source, tmp_path / "out")
    (source / "tags.json").write_text(json.dumps(list(reversed(MTT_LABELS))))
    with pytest.raises(WeightsMismatch):
        read_tags(source)


def test_front_end_constants_of_a_checkpoint_are_checked() -> None:
    checkpoint = {
        "spec.spectrogram.window": torch.hann_window(512),
        "spec.mel_scale.fb": torch.zeros(257, 96),  # not the HTK filterbank
        "spec_bn.weight": torch.ones(1),
    }
    with pytest.raises(ModelError, match="mel filterbank"):
        state_dict_from_checkpoint(checkpoint, "fcn-mtt")


def test_checkpoint_layout_is_the_repo_layout() -> None:
    assert [c.folder for c in CHECKPOINTS] == ["musicnn", "fcn", "crnn"]
    assert [c.name for c in CHECKPOINTS] == list(NAMES)
