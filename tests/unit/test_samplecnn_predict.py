"""``predict --model samplecnn-mtt`` on every format and odd input that musicnn-mtt handles (once the trained
weights are registered)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile
from click.testing import CliRunner

from catalogue_tagger.cli import main
from catalogue_tagger.models.registry import SPECS

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
AUDIO, MUSICNN = FIXTURES / "audio", FIXTURES / "musicnn"

pytestmark = pytest.mark.skipif("samplecnn-mtt" not in SPECS, reason="samplecnn-mtt weights not registered")


def predict(*args: str) -> tuple[int, list[dict]]:
    result = CliRunner().invoke(main, ["predict", *args, "--model", "samplecnn-mtt", "--segments", "--embedding"])
    return result.exit_code, [json.loads(line) for line in result.output.splitlines() if line.startswith("{")]


def test_every_format(tmp_path: Path) -> None:
    files = [AUDIO / f"excerpt.{ext}" for ext in ("mp3", "ogg", "opus", "m4a")] + [AUDIO / "excerpt_16k_mono.flac"]
    files += [AUDIO / f"excerpt_0.5s.{ext}" for ext in ("flac", "wav", "aiff")]
    code, records = predict(*map(str, files))
    assert code == 0 and len(records) == len(files)
    for record in records:
        assert record["n_segments"] == 1 and len(record["segments"][0]) == 50 and len(record["embedding"]) == 512
        assert all(np.isfinite(v) and 0 <= v <= 1 for v in record["tags"].values())
    assert all("padded" in r["flags"] for r in records[-3:])


def test_short_silent_long_and_broken(tmp_path: Path) -> None:
    long_track = tmp_path / "long.flac"
    rng = np.random.default_rng(0)
    soundfile.write(long_track, (0.1 * rng.standard_normal(16000 * 60)).astype(np.float32), 16000)
    garbage = tmp_path / "not-audio.mp3"
    garbage.write_bytes(b"\x00garbage" * 500)
    files = [MUSICNN / "pub_short_2s.flac", MUSICNN / "pub_silence.flac", long_track, garbage, AUDIO / "empty.wav"]
    code, (short, silence, long_record, bad, empty) = predict(*map(str, files))
    assert code == 1
    assert short["n_segments"] == 1 and "padded" in short["flags"] and "silent" in silence["flags"]
    assert long_record["n_segments"] == 16000 * 60 // 59049
    for record in (short, silence, long_record):
        assert all(np.isfinite(v) and 0 <= v <= 1 for v in record["tags"].values())
    assert bad["error"]["kind"] == "unsupported_format"
    assert empty.get("error", {}).get("kind") == "empty_audio" or "silent" in empty["flags"]
