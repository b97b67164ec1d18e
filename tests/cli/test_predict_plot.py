"""``predict --plot``: the taggram of real audio, one PNG per (file, model)."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from catalogue_tagger.cli import main

MUSICNN = Path(__file__).resolve().parents[1] / "fixtures" / "musicnn"
PNG = b"\x89PNG\r\n\x1a\n"


def test_predict_plot_draws_the_taggram(tmp_path: Path) -> None:
    out = tmp_path / "taggram.png"
    result = CliRunner().invoke(main, ["predict", str(MUSICNN / "pub_electronic_2.flac"), "--model", "musicnn-mtt",
                                       "--plot", str(out)])
    assert result.exit_code == 0, result.output
    record = json.loads(result.output.strip().splitlines()[-1])
    assert "segments" not in record  # plotting keeps segments for the figure only
    assert out.read_bytes()[:8] == PNG and out.stat().st_size > 10_000


def test_predict_plot_names_one_png_per_file_and_model(tmp_path: Path) -> None:
    files = [str(MUSICNN / "pub_short_2s.flac"), str(MUSICNN / "pub_silence.flac")]
    result = CliRunner().invoke(main, ["predict", *files, "--model", "musicnn-mtt,samplecnn-mtt",
                                       "--plot", str(tmp_path / "t.png")])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "t-pub_short_2s-musicnn-mtt.png", "t-pub_short_2s-samplecnn-mtt.png",
        "t-pub_silence-musicnn-mtt.png", "t-pub_silence-samplecnn-mtt.png"]
