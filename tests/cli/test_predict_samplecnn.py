"""``predict --model samplecnn-mtt`` takes every format and odd input that ``musicnn-mtt`` takes, in one run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile
from click.testing import CliRunner

from catalogue_tagger.cli import main
from catalogue_tagger.models.samplecnn import WINDOW

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
AUDIO, MUSICNN = FIXTURES / "audio", FIXTURES / "musicnn"
MODELS = ("musicnn-mtt", "samplecnn-mtt")


def run_predict(*paths: Path) -> tuple[int, dict[tuple[str, str], dict]]:
    result = CliRunner().invoke(main, ["predict", *map(str, paths), "--model", ",".join(MODELS), "--embedding"])
    records = [json.loads(line) for line in result.output.splitlines() if line.startswith("{")]
    return result.exit_code, {(Path(r["path"]).name, r.get("model", "")): r for r in records}


def assert_scores(record: dict) -> None:
    tags = record["tags"]
    assert len(tags) == 50 and all(np.isfinite(v) and 0 <= v <= 1 for v in tags.values())
    assert len(record["embedding"]) == (512 if record["model"] == "samplecnn-mtt" else 200)
    assert np.isfinite(record["embedding"]).all()


@pytest.fixture(scope="module")
def long_track(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Six minutes at 44.1 kHz: a chord with a beat over noise."""
    rng = np.random.default_rng(0)
    t = np.arange(44100 * 360) / 44100
    chord = sum(np.sin(2 * np.pi * f * t) for f in (220.0, 277.2, 329.6)) / 3
    beat = (np.sin(2 * np.pi * 2 * t) > 0.95).astype(np.float64)
    samples = 0.4 * chord * (0.6 + 0.4 * beat) + 0.05 * rng.standard_normal(t.size)
    path = tmp_path_factory.mktemp("long") / "six-minutes.wav"
    soundfile.write(path, samples.astype(np.float32), 44100, subtype="PCM_16")
    return path


def test_every_format_and_odd_input_musicnn_takes(long_track: Path, tmp_path: Path) -> None:
    formats = sorted(p for p in AUDIO.iterdir() if p.stem.startswith("excerpt"))
    assert {p.suffix for p in formats} >= {".m4a", ".mp3", ".ogg", ".opus", ".flac", ".wav", ".aiff"}
    odd = [MUSICNN / "pub_short_2s.flac", MUSICNN / "pub_silence.flac", long_track, AUDIO / "truncated.ogg"]
    code, records = run_predict(*formats, *odd)
    assert code == 0, records
    for path in (*formats, *odd):
        musicnn, student = records[path.name, "musicnn-mtt"], records[path.name, "samplecnn-mtt"]
        assert_scores(musicnn)
        assert_scores(student)
        assert student["duration_s"] == musicnn["duration_s"]
        assert ("silent" in student["flags"]) == ("silent" in musicnn["flags"])
        samples = round(student["duration_s"] * 16000)
        assert student["n_segments"] == max(1, samples // WINDOW)
        assert ("padded" in student["flags"]) == (samples < WINDOW)
    assert "silent" in records["pub_silence.flac", "samplecnn-mtt"]["flags"]
    assert records["six-minutes.wav", "samplecnn-mtt"]["n_segments"] == 360 * 16000 // WINDOW


def test_bad_input_gets_the_same_named_error(tmp_path: Path) -> None:
    garbage = tmp_path / "not-audio.mp3"
    garbage.write_bytes(b"\x00garbage" * 500)
    code, records = run_predict(AUDIO / "empty.wav", AUDIO / "corrupt.mp3", garbage, MUSICNN / "pub_speech.flac")
    assert code == 1  # some files could not be tagged; the good one still is
    for name in ("empty.wav", "corrupt.mp3", "not-audio.mp3"):
        errors = [r for (n, _), r in records.items() if n == name]
        assert errors and all("error" in r for r in errors), errors
    assert_scores(records["pub_speech.flac", "samplecnn-mtt"])


def test_student_agrees_with_its_teachers_on_real_music() -> None:
    """The student ranks the reference clips' tags like musicnn-mtt does (it was distilled from it and vgg-mtt)."""
    from scipy.stats import spearmanr

    clips = [MUSICNN / "pub_electronic_2.flac", MUSICNN / "pub_orchestral_2.flac"]
    code, records = run_predict(*clips)
    assert code == 0
    for clip in clips:
        teacher = records[clip.name, "musicnn-mtt"]["tags"]
        student = records[clip.name, "samplecnn-mtt"]["tags"]
        assert spearmanr([teacher[k] for k in teacher], [student[k] for k in teacher]).statistic > 0.5
