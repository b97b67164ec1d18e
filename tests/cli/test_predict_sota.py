"""``predict --model fcn-mtt`` (and the other sota MTAT taggers) through the CLI: reference track means,
short tracks padded to one window and flagged."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from click.testing import CliRunner

from catalogue_tagger.cli import main
from catalogue_tagger.models.labels import MTT_LABELS

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
MUSICNN, SOTA = FIXTURES / "musicnn", FIXTURES / "sota"


def run_predict(*args: str) -> tuple[int, list[dict]]:
    result = CliRunner().invoke(main, ["predict", *args])
    return result.exit_code, [json.loads(line) for line in result.output.splitlines() if line.startswith("{")]


def test_fcn_pads_a_track_shorter_than_29_s_to_one_window_and_matches_the_reference() -> None:
    clip = "pub_orchestral_2"  # 21.5 s
    code, (record,) = run_predict(str(MUSICNN / f"{clip}.flac"), "--model", "fcn-mtt", "--segments")
    reference = np.load(SOTA / f"{clip}.npz")
    assert code == 0 and record["model"] == "fcn-mtt"
    assert record["n_segments"] == 1 and "padded" in record["flags"]
    scores = np.array([record["tags"][label] for label in MTT_LABELS])
    np.testing.assert_allclose(scores, reference["fcn/padded/track_mean"], atol=1e-4)
    np.testing.assert_allclose(np.array(record["segments"]), reference["fcn/padded/chunk_sigmoid"], atol=1e-4)


def test_musicnn_and_crnn_in_one_run() -> None:
    clip = "pub_speech"  # 10 s: three musicnn windows, one padded crnn window
    code, records = run_predict(str(MUSICNN / f"{clip}.flac"), "--model", "musicnn-sota-mtt,crnn-mtt", "--embedding")
    reference = np.load(SOTA / f"{clip}.npz")
    assert code == 0 and [r["model"] for r in records] == ["musicnn-sota-mtt", "crnn-mtt"]
    musicnn, crnn = records
    assert musicnn["n_segments"] == 3 and len(musicnn["embedding"]) == 200
    assert crnn["n_segments"] == 1 and "embedding" not in crnn
    assert "padded" in crnn["flags"]  # flags are the track's: some selected model had to pad it
    for record, key in ((musicnn, "musicnn/consec"), (crnn, "crnn/padded")):
        scores = np.array([record["tags"][label] for label in MTT_LABELS])
        np.testing.assert_allclose(scores, reference[f"{key}/track_mean"], atol=1e-4)
