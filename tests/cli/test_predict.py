"""``catalogue-tagger predict`` through the CLI: reference scores, odd input, named errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from catalogue_tagger.cli import main

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
MUSICNN = FIXTURES / "musicnn"
LABELS = json.loads((MUSICNN / "labels.json").read_text())


def run_predict(*args: str) -> tuple[int, list[dict]]:
    result = CliRunner().invoke(main, ["predict", *args])
    lines = [json.loads(line) for line in result.output.splitlines() if line.startswith("{")]
    return result.exit_code, lines


@pytest.mark.parametrize(
    ("model", "key", "labels"),
    [("musicnn-mtt", "MTT_musicnn", "MTT_LABELS"), ("vgg-msd", "MSD_vgg_astrained", "MSD_LABELS")],
)
def test_predict_json_reproduces_reference_track_means(model: str, key: str, labels: str) -> None:
    clip = "pub_orchestral_2"
    code, (record,) = run_predict(str(MUSICNN / f"{clip}.flac"), "--model", model, "--segments")
    reference = np.load(MUSICNN / f"{clip}.npz")
    assert code == 0
    assert set(record) >= {"path", "model", "duration_s", "n_segments", "tags", "top", "segments"}
    assert record["model"] == model and record["n_segments"] == len(reference[f"{key}/patch_sigmoid"])
    scores = np.array([record["tags"][label] for label in LABELS[labels]])
    np.testing.assert_allclose(scores, reference[f"{key}/track_mean"], atol=1e-4)
    np.testing.assert_allclose(np.array(record["segments"]), reference[f"{key}/patch_sigmoid"], atol=1e-4)
    top_tag, top_score = record["top"][0]
    assert top_score == max(record["tags"].values()) and record["tags"][top_tag] == top_score


def test_predict_embedding_and_several_models_decode_once() -> None:
    code, records = run_predict(str(MUSICNN / "pub_speech.flac"), "--model", "musicnn-mtt,vgg-mtt", "--embedding")
    assert code == 0 and [r["model"] for r in records] == ["musicnn-mtt", "vgg-mtt"]
    assert len(records[0]["embedding"]) == 200 and "embedding" not in records[1]
    reference = np.load(MUSICNN / "pub_speech.npz")["MTT_musicnn/penultimate"].mean(axis=0)
    np.testing.assert_allclose(records[0]["embedding"], reference, atol=1e-3)


def test_odd_input_gives_finite_flagged_scores_and_errors_are_named(tmp_path: Path) -> None:
    garbage = tmp_path / "not-audio.mp3"
    garbage.write_bytes(b"\x00garbage" * 500)
    files = [MUSICNN / "pub_short_2s.flac", MUSICNN / "pub_silence.flac", garbage]
    code, records = run_predict(*map(str, files), "--model", "musicnn-mtt")
    short, silence, bad = records
    assert code == 1  # one file could not be tagged
    assert short["n_segments"] == 1 and "padded" in short["flags"]
    assert "silent" in silence["flags"]
    for record in (short, silence):
        assert all(np.isfinite(v) and 0 <= v <= 1 for v in record["tags"].values())
    assert bad["error"]["kind"] == "unsupported_format" and bad["path"] == str(garbage)


def test_table_format(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["predict", str(MUSICNN / "pub_electronic_2.flac"), "--format", "table"])
    assert result.exit_code == 0 and "techno" in result.output


def _write_wav(path: Path, samples: np.ndarray, rate: int = 16000) -> Path:
    import wave

    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes((np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes())
    return path


def test_white_noise_and_a_one_second_clip_give_finite_scores(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    noise = _write_wav(tmp_path / "noise.wav", 0.3 * rng.standard_normal(16000 * 10), rate=16000)
    one_second = _write_wav(tmp_path / "one-second.wav", 0.2 * np.sin(np.arange(44100) * 0.05), rate=44100)
    code, records = run_predict(str(noise), str(one_second), "--model", "musicnn-mtt,vgg-mtt")
    assert code == 0 and len(records) == 4
    for record in records:
        assert all(np.isfinite(v) and 0 <= v <= 1 for v in record["tags"].values())
    assert [r["n_segments"] for r in records] == [3, 3, 1, 1]
    assert "padded" in records[2]["flags"] and "padded" not in records[0]["flags"]
