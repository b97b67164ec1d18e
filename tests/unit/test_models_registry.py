"""Registry contract: names, specs agreeing with the shipped manifest, pinned weights, model sizes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from catalogue_tagger.config import DEFAULT_MODELS
from catalogue_tagger.errors import ModelError, UnknownModel, WeightsMismatch
from catalogue_tagger.models.convert import MANIFEST_FILE, WEIGHTS_DIR
from catalogue_tagger.models.labels import MSD_LABELS, MTT_LABELS
from catalogue_tagger.models.registry import load_model
from catalogue_tagger.models.specs import SPECS, get_spec, list_specs

FIXTURES = Path(__file__).parents[1] / "fixtures" / "musicnn"
# (trainable parameters, BN moving statistics) of the original checkpoints
SIZES = {"musicnn": (787_159, 4_920), "vgg": (605_748, 1_282), "samplecnn": (1_866_930, 5_888),
         "sota-musicnn": (784_300, 1_908), "sota-fcn": (447_732, 1_026), "sota-crnn": (394_100, 898)}
# from the musicnn wheel; samplecnn-mtt is trained here, the sota-* taggers have their own manifest
CONVERTED = [s for s in list_specs() if s.kind == "spectrogram" and s.licence == "ISC"]


def test_names_and_defaults() -> None:
    assert [s.name for s in list_specs()] == ["musicnn-mtt", "musicnn-msd", "vgg-mtt", "vgg-msd", "samplecnn-mtt",
                                              "musicnn-sota-mtt", "fcn-mtt", "crnn-mtt"]
    assert [s.name for s in list_specs() if s.default] == list(DEFAULT_MODELS) == ["musicnn-mtt", "samplecnn-mtt"]
    with pytest.raises(UnknownModel):
        get_spec("musicnn")


def test_labels_follow_musicnn_configuration() -> None:
    labels = json.loads((FIXTURES / "labels.json").read_text())
    assert list(MTT_LABELS) == labels["MTT_LABELS"] and list(MSD_LABELS) == labels["MSD_LABELS"]
    assert get_spec("vgg-msd").labels == MSD_LABELS and get_spec("musicnn-mtt").labels == MTT_LABELS


@pytest.mark.parametrize("spec", CONVERTED, ids=lambda s: s.name)
def test_spec_segments_and_outputs(spec) -> None:
    assert (spec.kind, spec.window, spec.hop, spec.pad, spec.sample_rate) == ("spectrogram", 48128, 47872, 256, 16000)
    assert spec.n_labels == 50
    assert spec.output_names == (("probs", "logits", "embedding") if spec.architecture == "musicnn" else ("probs", "logits"))
    assert spec.embedding_size == (200 if spec.architecture == "musicnn" else 0)


def test_specs_agree_with_manifest() -> None:
    manifest = json.loads((WEIGHTS_DIR / MANIFEST_FILE).read_text())
    assert manifest["licence"] == "ISC" and (WEIGHTS_DIR / manifest["licence_file"]).is_file()
    assert set(manifest["models"]) == {s.name for s in CONVERTED}
    for name, entry in manifest["models"].items():
        spec = SPECS[name]
        assert (entry["weights_file"], entry["sha256"]) == (spec.weights_file, spec.weights_sha256)
        assert (entry["roc_auc"], entry["pr_auc"]) == (spec.roc_auc, spec.pr_auc)
        assert spec.licence == manifest["licence"] and spec.attribution == manifest["attribution"]


@pytest.mark.parametrize("name", list(SPECS))
def test_parameter_counts_match_checkpoints(name: str) -> None:
    model = load_model(name)
    assert not model.training
    architecture = model.spec.architecture
    trainable, statistics = SIZES[architecture if architecture in SIZES else architecture.split("-")[0]]
    assert sum(p.numel() for p in model.parameters()) == trainable
    assert sum(b.numel() for n, b in model.named_buffers() if "running_" in n) == statistics


def test_waveform_tagger_is_shipped_with_the_mtt_labels() -> None:
    spec = get_spec("samplecnn-mtt")
    assert (spec.kind, spec.window, spec.hop, spec.pad, spec.embedding_size) == ("waveform", 59049, 59049, 0, 512)
    assert spec.labels == MTT_LABELS and spec.output_names == ("probs", "logits", "embedding")
    assert (WEIGHTS_DIR / spec.weights_file).is_file() and spec.roc_auc is None  # no published MTAT figures


def test_waveform_tagger_ships_the_training_report_of_its_weights() -> None:
    """The pinned weights are the run's selected epoch (less the projection that served the embedding loss),
    scored on every validation window, with the tag layer then refitted (``readout_refit``, scored again); the
    report says whether the training run met the thresholds."""
    report = json.loads((WEIGHTS_DIR / "samplecnn-mtt.report.json").read_text())
    final, shipped, refit = report["best_epoch_all_windows"], report["shipped_weights"], report["readout_refit"]
    assert shipped["sha256"] == get_spec("samplecnn-mtt").weights_sha256 == refit["weights_sha256"]
    assert shipped["from_weights_sha256"] == final["weights_sha256"]
    assert refit["from_weights_sha256"] == shipped["without_projection_sha256"]
    assert refit["validation_before"]["macro_roc_auc"] == pytest.approx(final["macro_roc_auc"], abs=1e-3)
    assert refit["validation_after"]["n_windows"] == final["n_windows"] and refit["teachers"] == report["teachers"]
    assert shipped["dropped"] == ["net.projection.bias", "net.projection.weight"]
    assert final["epoch"] == report["best_epoch"]["epoch"]
    assert report["thresholds"] == {"macro_roc_auc": 0.93, "median_spearman": 0.93}
    assert report["accepted"] == (final["macro_roc_auc"] >= 0.93 and final["median_spearman"] >= 0.93)
    assert report["teachers"] == ["musicnn-mtt", "fcn-mtt"] and report["embedding_teacher"] == "musicnn-mtt"
    assert report["config"]["seed"] == 0 and {"embedding_loss", "median_embedding_cosine"} <= set(final)


def test_tampered_weights_are_refused(tmp_path: Path) -> None:
    spec = get_spec("vgg-mtt")
    shutil.copyfile(WEIGHTS_DIR / spec.weights_file, tmp_path / spec.weights_file)
    with (tmp_path / spec.weights_file).open("r+b") as f:
        f.seek(-4, 2)
        f.write(b"\0\0\0\0")
    with pytest.raises(WeightsMismatch):
        load_model("vgg-mtt", weights_dir=tmp_path)
    with pytest.raises(ModelError):
        load_model("musicnn-mtt", weights_dir=tmp_path)  # missing file


def test_models_list_json() -> None:
    from catalogue_tagger.cli.models import models

    result = CliRunner().invoke(models, ["list", "--format", "json"])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.output.splitlines()]
    assert [r["name"] for r in rows] == list(SPECS)
    assert all(r["n_labels"] == 50 and len(r["weights_sha256"]) == 64 for r in rows)
    assert CliRunner().invoke(models, ["list"]).exit_code == 0
