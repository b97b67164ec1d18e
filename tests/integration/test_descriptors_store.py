"""Descriptors end to end: ``tag`` stores them in real Postgres (a rerun rewrites nothing), the views join them
to tags, ``query`` filters by tempo, key and loudness, and ``predict`` prints them."""

from __future__ import annotations

import json
import shutil
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
from click.testing import CliRunner

from catalogue_tagger.cli import main
from catalogue_tagger.descriptors import DESCRIPTORS_VERSION, Key
from catalogue_tagger.config import Settings
from catalogue_tagger.pipeline import tag
from catalogue_tagger.sources import FolderStore
from catalogue_tagger.store.store import Store
from synth_audio import click_track, progression  # tests/synth_audio.py

REAL = ["excerpt.mp3", "excerpt.ogg", "excerpt.m4a"]
DESCRIPTOR_KEYS = {"tempo_bpm", "tempo_confidence", "tempo_alt_bpm", "key", "key_confidence", "loudness_lufs",
                   "loudness_range_lu", "true_peak_dbtp"}


def write_song(path: Path, bpm: float, key: Key, seconds: float = 24.0) -> Path:
    """Clicks at ``bpm`` over a chord progression in ``key``: 16 kHz synthesis upsampled to 44.1 kHz stereo FLAC."""
    import soxr

    chords = progression(key, seconds_per_chord=2 * 60 / bpm * 2, repeats=8)
    n = int(seconds * 16_000)
    mono = 0.6 * click_track(bpm, seconds) + np.resize(chords, n)[:n]
    up = soxr.resample(mono, 16_000, 44_100).astype(np.float32)
    with av.open(str(path), "w") as out:
        stream: Any = out.add_stream("flac", rate=44_100, layout="stereo")
        stream.codec_context.format = "s16"
        pcm = (np.clip(np.stack([up, 0.8 * up]), -1, 1) * 32767).astype(np.int16)
        frame = av.AudioFrame.from_ndarray(pcm.T.reshape(1, -1).copy(), format="s16", layout="stereo")
        frame.sample_rate, frame.pts, frame.time_base = 44_100, 0, Fraction(1, 44_100)
        out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return path


@pytest.fixture
def catalogue(tmp_path: Path, audio_fixtures: Path) -> Path:
    folder = tmp_path / "catalogue"
    folder.mkdir()
    for name in REAL:
        shutil.copy2(audio_fixtures / name, folder / name)
    write_song(folder / "song_124_a_minor.flac", 124.0, Key.parse("A minor"))
    write_song(folder / "song_90_d_major.flac", 90.0, Key.parse("D major"))
    return folder


def _rows(store: Store, sql: str) -> list[tuple[Any, ...]]:
    with store.engine.connect() as conn:
        return [tuple(r) for r in conn.exec_driver_sql(sql)]


def test_tag_stores_descriptors_and_query_filters_by_them(store: Store, database_url: str, catalogue: Path) -> None:
    report = tag(FolderStore(catalogue), store, Settings(models=("musicnn-mtt",), workers=1, batch_size=16))
    assert report.tagged == 5 and not report.failed
    stored = {Path(r[0]).name: r[1:] for r in _rows(store, "SELECT uri, version, tempo_bpm, key, loudness_lufs, "
                                                    "true_peak_dbtp FROM current_descriptors")}
    assert set(stored) == {*REAL, "song_124_a_minor.flac", "song_90_d_major.flac"}
    assert all(v[0] == DESCRIPTORS_VERSION and v[3] is not None and v[4] is not None for v in stored.values())
    assert abs(stored["song_124_a_minor.flac"][1] - 124.0) <= 0.04 * 124
    assert stored["song_124_a_minor.flac"][2] == "A minor"
    assert abs(stored["song_90_d_major.flac"][1] - 90.0) <= 0.04 * 90 and stored["song_90_d_major.flac"][2] == "D major"
    assert _rows(store, "SELECT count(DISTINCT uri) FROM tag_descriptors")[0][0] == 5

    # A forced rerun measures the same values and rewrites no descriptor row.
    before = _rows(store, "SELECT xmin::text, * FROM track_descriptors ORDER BY track_id")
    tag(FolderStore(catalogue), store, Settings(models=("musicnn-mtt",), workers=0, batch_size=16), force=True)
    assert _rows(store, "SELECT xmin::text, * FROM track_descriptors ORDER BY track_id") == before

    found = store.tracks_by_descriptors(min_bpm=120, max_bpm=128, keys=["A minor"])
    assert [Path(r["uri"]).name for r in found] == ["song_124_a_minor.flac"]
    louder = store.tracks_by_descriptors(min_lufs=-200.0, top=100)
    assert len(louder) == 5 and not store.tracks_by_descriptors(min_lufs=0.0)

    runner = CliRunner()
    env = {"CATALOGUE_TAGGER_DATABASE_URL": database_url}
    out = runner.invoke(main, ["query", "--bpm", "120-128", "--key", "Am", "--format", "json"], env=env)
    assert out.exit_code == 0, out.output
    assert [Path(json.loads(line)["uri"]).name for line in out.output.splitlines()] == ["song_124_a_minor.flac"]
    # E minor (9A) mixes with A minor (8A): its Camelot neighbour; D major (10B) does not.
    out = runner.invoke(main, ["query", "--compatible-with", "E minor", "--format", "json"], env=env)
    names = {Path(json.loads(line)["uri"]).name for line in out.output.splitlines()}
    assert "song_124_a_minor.flac" in names and "song_90_d_major.flac" not in names
    out = runner.invoke(main, ["query", "--tag", "guitar", "--min-score", "0", "--louder-than", "-60", "--bpm", "85-95",
                               "--format", "json"], env=env)
    rows = [json.loads(line) for line in out.output.splitlines()]
    assert [Path(r["uri"]).name for r in rows] == ["song_90_d_major.flac"] and rows[0]["score"] is not None
    table = runner.invoke(main, ["query", "--track", (catalogue / "song_90_d_major.flac").as_uri()], env=env)
    assert table.exit_code == 0 and "D major" in table.output
    assert runner.invoke(main, ["query", "--key", "H minor"], env=env).exit_code == 2


def test_predict_json_includes_descriptors(catalogue: Path) -> None:
    result = CliRunner().invoke(main, ["predict", str(catalogue / "song_124_a_minor.flac"), str(catalogue / "excerpt.mp3"),
                                       "--model", "musicnn-mtt"])
    assert result.exit_code == 0, result.output
    song, excerpt = (json.loads(line) for line in result.output.splitlines() if line.startswith("{"))
    assert DESCRIPTOR_KEYS <= set(song["descriptors"]) and DESCRIPTOR_KEYS <= set(excerpt["descriptors"])
    assert song["descriptors"]["key"] == "A minor" and song["descriptors"]["camelot"] == "8A"
    assert abs(song["descriptors"]["tempo_bpm"] - 124) <= 0.04 * 124
    assert excerpt["descriptors"]["loudness_lufs"] < 0
