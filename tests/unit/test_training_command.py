"""``models train-waveform`` end to end on a tiny corpus: decode, real teacher taggrams, one epoch, baseline,
report, and a resumed second epoch."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile
from click.testing import CliRunner

from catalogue_tagger.cli import main
from catalogue_tagger.training.corpus import Corpus
from catalogue_tagger.training.targets import TEACHERS, taggram_path


@pytest.fixture(scope="module")
def corpus_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two packages as the fetch script lays them out: 4.5 s stereo 44.1 kHz tones and noise."""
    root = tmp_path_factory.mktemp("corpus")
    rng = np.random.default_rng(0)
    t = np.arange(int(4.5 * 44100)) / 44100
    for package, names in (("asc-music", ("a.flac", "b.flac")), ("lugaru-data", ("c.ogg",))):
        (root / package).mkdir()
        for i, name in enumerate(names):
            tone = 0.3 * np.sin(2 * np.pi * (220 * (i + 1)) * t) + 0.05 * rng.standard_normal(len(t))
            soundfile.write(root / package / name, np.stack([tone, tone], axis=1).astype(np.float32), 44100)
    (root / "not-a-package").mkdir()
    return root


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
