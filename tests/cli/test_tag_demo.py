"""``tag`` and ``demo`` through the CLI against a real Postgres."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from catalogue_tagger.cli import main
from catalogue_tagger.store.queries import example_queries
from catalogue_tagger.store.store import Store

AUDIO = Path(__file__).resolve().parents[1] / "fixtures" / "audio"


def test_tag_command_reports_and_stores(store: Store, database_url: str, tmp_path: Path) -> None:
    for name in ("excerpt.ogg", "excerpt.opus", "corrupt.mp3"):
        shutil.copy2(AUDIO / name, tmp_path / name)
    args = ["tag", str(tmp_path), "--database-url", database_url, "--workers", "0", "--json"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    report = json.loads(result.output.strip().splitlines()[-1])
    assert report["tagged"] == 2 and report["failed"] == {"unsupported_format": 1}
    assert store.partition_status(_day(tmp_path / "excerpt.ogg"))["tagged"] == 2
    again = json.loads(CliRunner().invoke(main, args).output.strip().splitlines()[-1])
    assert again["tagged"] == 0 and again["failed"] == {}


def _day(path: Path) -> str:
    from datetime import datetime, timezone

    return datetime.fromtimestamp(path.stat().st_mtime, tz=timezone.utc).strftime("%Y-%m-%d")


def test_tag_exits_non_zero_when_the_database_is_unreachable(tmp_path: Path) -> None:
    shutil.copy2(AUDIO / "excerpt.ogg", tmp_path / "excerpt.ogg")
    url = "postgresql://nobody@127.0.0.1:9/none"  # nothing listens on port 9
    result = CliRunner().invoke(main, ["tag", str(tmp_path), "--database-url", url, "--workers", "0"])
    assert result.exit_code != 0 and "store_error" in result.output


def test_demo_tags_the_bundled_catalogue(store: Store, database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CATALOGUE_TAGGER_HOME", str(tmp_path))
    result = CliRunner().invoke(main, ["demo", "--database-url", database_url])
    assert result.exit_code == 0, result.output
    assert "tagged 4, failed 0" in result.output and "SELECT" in result.output
    folder = tmp_path / "demo-catalogue"
    assert len(list(folder.glob("*.mp3"))) == 4
    techno = store.top_tracks("techno", model="musicnn-mtt", top=2)
    assert {Path(r["uri"]).name for r in techno} == {"nexuiz-digital-pursuit-excerpt.mp3", "nexuiz-subcities-excerpt.mp3"}

    examples = example_queries()
    with store.engine.connect() as conn:
        rows = {name: conn.exec_driver_sql(sql).all() for name, sql in examples.items()}
    assert len(rows["tags_of_every_track"]) == 4 * 50
    assert len(rows["spectrogram_vs_waveform"]) == 4  # the demo tags with both default models
    assert [Path(r[0]).name for r in rows["top_tracks_for_a_tag"][:2]] == [Path(r["uri"]).name for r in techno]
    assert rows["failures_by_kind"] == [] and [tuple(r[1:]) for r in rows["coverage_per_partition"]] == [(4, 0, 0)]
    assert len(rows["descriptors_of_every_track"]) == 4
    assert all(r.loudness_lufs is not None and r.key is not None for r in rows["descriptors_of_every_track"])
