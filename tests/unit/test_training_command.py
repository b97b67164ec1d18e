"""``models train-waveform`` end to end on a tiny corpus: decode, real teacher taggrams, one epoch, baseline,
report, and a resumed second epoch."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch
from click.testing import CliRunner
from safetensors.torch import load_file

from catalogue_tagger.cli import main
from catalogue_tagger.training.corpus import Corpus
from catalogue_tagger.models.registry import WEIGHTS_DIR
from catalogue_tagger.models.specs import SPECS
from catalogue_tagger.training.targets import TEACHERS, embedding_path, taggram_path


def write_corpus(root: Path, layout: tuple[tuple[str, tuple[str, ...]], ...]) -> Path:
    """Packages as the fetch script lays them out: 4.5 s stereo 44.1 kHz tones and noise."""
    rng = np.random.default_rng(0)
    t = np.arange(int(4.5 * 44100)) / 44100
    for package, names in layout:
        (root / package).mkdir(parents=True)
        for i, name in enumerate(names):
            tone = 0.3 * np.sin(2 * np.pi * (220 * (i + 1)) * t) + 0.05 * rng.standard_normal(len(t))
            soundfile.write(root / package / name, np.stack([tone, tone], axis=1).astype(np.float32), 44100)
    (root / "not-a-package").mkdir()
    return root


@pytest.fixture(scope="module")
def corpus_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_corpus(tmp_path_factory.mktemp("corpus"), (("asc-music", ("a.flac", "b.flac")),
                                                            ("lugaru-data", ("c.ogg",))))


def test_train_waveform_command(corpus_dir: Path, tmp_path: Path) -> None:
    out, cache = tmp_path / "run", tmp_path / "cache"
    args = ["models", "train-waveform", "--corpus", str(corpus_dir), "--out", str(out), "--cache", str(cache),
            "--epochs", "1", "--batch-size", "2", "--baseline"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    corpus = Corpus.open(cache)
    assert sorted(t.track_id for t in corpus.tracks) == ["asc-music/a.flac", "asc-music/b.flac", "lugaru-data/c.ogg"]
    assert [len(corpus.split(s)) for s in ("train", "validation")] == [2, 1]
    assert corpus.tracks[0].samples == 72000 and corpus.waveform(corpus.tracks[0]).dtype == np.float16
    assert all(taggram_path(corpus, m, t).exists() for m in TEACHERS for t in corpus.tracks)
    report = json.loads((out / "report.json").read_text())
    assert report["corpus"]["hours"] == pytest.approx(3 * 4.5 / 3600, abs=1e-3)
    assert [e["epoch"] for e in report["epochs"]] == [1] and report["baseline_random_weights"]["n_tracks"] == 1
    assert (out / "report.png").exists() and (out / "samplecnn-mtt.safetensors").exists()
    final = report["best_epoch_all_windows"]  # the selected weights on every validation window
    assert final["epoch"] == 1 and final["n_windows"] == 1 and (out / "final.json").exists()
    assert "selected epoch 1 (every validation window)" in result.output

    result = CliRunner().invoke(main, [*args[:-5], "--epochs", "2", "--batch-size", "2", "--resume"])
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    assert [e["epoch"] for e in report["epochs"]] == [1, 2] and "selected epoch" in result.output
    assert report["best_epoch_all_windows"]["epoch"] == report["best_epoch"]["epoch"]


def test_train_waveform_with_an_embedding_teacher_and_held_apart_package(tmp_path: Path) -> None:
    corpus_dir = write_corpus(tmp_path / "corpus", (("asc-music", ("a.flac", "b.flac", "d.flac")),
                                                    ("lugaru-data", ("c.ogg",))))
    out, cache = tmp_path / "run", tmp_path / "cache"
    args = ["models", "train-waveform", "--corpus", str(corpus_dir), "--out", str(out), "--cache", str(cache),
            "--epochs", "1", "--batch-size", "2", "--teachers", "musicnn-mtt,fcn-mtt",
            "--embedding-teacher", "musicnn-mtt", "--projection-fit-windows", "1", "--held-apart", "lugaru-data",
            "--max-track-s", "4", "--init", str(WEIGHTS_DIR / "samplecnn-mtt.safetensors")]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    corpus = Corpus.open(cache)
    assert [t.track_id for t in corpus.split("held_apart")] == ["lugaru-data/c.ogg"]
    assert [len(corpus.split(s)) for s in ("train", "validation")] == [2, 1]
    assert all(t.samples == 64000 for t in corpus.tracks)  # the first 4 s of each 4.5 s track
    held = corpus.split("held_apart")[0]
    assert embedding_path(corpus, "musicnn-mtt", held).exists() and not taggram_path(corpus, "fcn-mtt", held).exists()
    assert np.load(embedding_path(corpus, "musicnn-mtt", held)).shape == (1, 200)  # one musicnn patch, 200-d
    report = json.loads((out / "report.json").read_text())
    assert report["teachers"] == ["musicnn-mtt", "fcn-mtt"] and report["embedding_teacher"] == "musicnn-mtt"
    assert report["init_weights_sha256"] == SPECS["samplecnn-mtt"].weights_sha256
    assert {"embedding_loss", "median_embedding_cosine"} <= set(report["best_epoch_all_windows"])
    assert load_file(str(out / "samplecnn-mtt.safetensors"))["net.projection.weight"].shape == (200, 512)
    result = CliRunner().invoke(main, [*args[:4], "--out", str(tmp_path / "other"), "--cache", str(cache),
                                       "--max-track-s", "3"])
    assert result.exit_code == 2 and "capped at 4.0 s" in result.output


def test_train_waveform_with_mixtures_and_the_log_odds_loss(tmp_path: Path) -> None:
    corpus_dir = write_corpus(tmp_path / "corpus", (("asc-music", ("a.flac", "b.flac", "d.flac")),))
    out = tmp_path / "run"
    args = ["models", "train-waveform", "--corpus", str(corpus_dir), "--out", str(out), "--epochs", "1",
            "--batch-size", "2", "--teachers", "musicnn-mtt", "--mixes", "1", "--tag-loss", "logit", "--dropout", "0"]
    result = CliRunner().invoke(main, [*args, "--cache", str(tmp_path / "cache")])
    assert result.exit_code == 0, result.output
    corpus = Corpus.open(tmp_path / "cache")
    real = sorted(t.track_id for t in corpus.split("train") if t.package != "mix")
    mixes = [t for t in corpus.split("train") if t.package == "mix"]
    assert len(real) == 2 and len(mixes) == 2 and len(corpus.split("validation")) == 1
    validation = corpus.split("validation")[0].track_id
    for mix in mixes:  # each mixes one training track with the other one, never with the validation track
        first, second = mix.track_id.removeprefix("mix/0/").split("+")
        assert {first, second} == set(real) and validation not in mix.track_id
        wave = corpus.waveform(mix).astype(np.float32)
        a, b = (corpus.waveform(next(t for t in corpus.tracks if t.track_id == name)).astype(np.float32)
                for name in (first, second))
        assert mix.samples == len(wave) == len(a) and np.abs(wave).max() <= max(np.abs(a).max(), np.abs(b).max())
        assert 0.3 < np.corrcoef(wave, a)[0, 1] < 0.99  # the first source, with the second one mixed in
        assert taggram_path(corpus, "musicnn-mtt", mix).exists()  # labelled by the teacher on the mixture
    report = json.loads((out / "report.json").read_text())
    assert report["corpus"]["packages"]["mix"]["train"] == 2 and report["config"]["tag_loss"] == "logit"
    final = report["best_epoch_all_windows"]
    assert final["logit_loss"] > 0 and report["best_epoch"]["val"]["objective"] == report["best_epoch"]["val"]["logit_loss"]
    # the tag layer refitted on the same cache: only net.output changes
    refitted = tmp_path / "refit.safetensors"
    result = CliRunner().invoke(main, ["models", "refit-readout", "--cache", str(tmp_path / "cache"), "--weights",
                                       str(out / "samplecnn-mtt.safetensors"), "--out", str(refitted),
                                       "--teachers", "musicnn-mtt", "--windows-per-track", "1"])
    assert result.exit_code == 0, result.output
    record = json.loads(refitted.with_suffix(".json").read_text())
    assert record["train_tracks"] == 4 and record["train_windows"] == 4 and str(record["ridge"]) in record["cv_errors"]
    assert record["validation_after"]["n_windows"] == 1 and f"sha256 {record['weights_sha256']}" in result.output
    assert record["from_weights_sha256"] == json.loads((out / "best.json").read_text())["weights_sha256"]
    old, new = load_file(str(out / "samplecnn-mtt.safetensors")), load_file(str(refitted))
    assert {k for k in old if not torch.equal(old[k], new[k])} == {"net.output.weight", "net.output.bias"}
    # the same seed gives the same mixtures in another cache
    result = CliRunner().invoke(main, [*args[:4], "--out", str(tmp_path / "again"), *args[6:],
                                       "--cache", str(tmp_path / "cache2")])
    assert result.exit_code == 0, result.output
    again = Corpus.open(tmp_path / "cache2")
    for mix in mixes:
        assert np.array_equal(again.waveform(mix), corpus.waveform(mix))
