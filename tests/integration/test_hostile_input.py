"""Hostile input: odd names stored verbatim (folder and S3), symlinks never followed out of a folder source, and
``--max-bytes`` / ``--max-duration`` through ``tag`` into Postgres."""

from __future__ import annotations

import os
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from catalogue_tagger.cli import main
from catalogue_tagger.config import Settings
from catalogue_tagger.errors import FetchError
from catalogue_tagger.pipeline import discover_objects, tag
from catalogue_tagger.sources import FolderStore, S3Store, path_from_file_uri
from catalogue_tagger.store.store import Store

SETTINGS = Settings(models=("musicnn-mtt",), workers=0, batch_size=16)
SHORT = "excerpt_0.5s.wav"  # one padded window per track: cheap to tag many times

#: Names a catalogue may hold. Each is a file name (folder) and the last part of a key (S3).
ODD_NAMES = [
    "with space.wav",
    "it's \"quoted\".wav",
    "back`tick$ and ; semicolon & amp.wav",
    "naïve café – 日本語 🎵.wav",
    "a..b.wav",
    "..wav",
    "tab\there.wav",
    "new\nline.wav",
    "bell\x07 and del\x7f.wav",
    "percent %41 %2F.wav",
    "question? hash# plus+ star*.wav",
    "back\\slash.wav",
]


def _uris(store: Store) -> dict[str, tuple[str, str | None]]:
    with store.connection() as conn:
        rows = conn.exec_driver_sql("SELECT uri, status, error_kind FROM tracks").all()
    return {r.uri: (r.status, r.error_kind) for r in rows}


# --- folder --------------------------------------------------------------------------------------------
def _long_path(root: Path) -> Path:
    """A path of more than 1 KB under ``root``: four 250-byte folder names, then a 240-byte file name."""
    folder = root
    for i in range(4):
        folder = folder / (f"{i}" + "ü" * 124 + "x")  # 2·124 + 2 = 250 bytes in UTF-8
    return folder / ("long" + "n" * 232 + ".wav")


def test_odd_file_names_are_stored_verbatim_and_tagged(store: Store, tmp_path: Path, audio_fixtures: Path) -> None:
    root = tmp_path / "catalogue"
    not_utf8 = os.fsdecode(b"latin-1 caf\xe9.wav")  # bytes a POSIX file name may hold that are not UTF-8
    paths = [root / name for name in [*ODD_NAMES, not_utf8]] + [root / "..sub" / "x.wav", _long_path(root)]
    assert len(os.fsencode(str(paths[-1].relative_to(root)))) > 1024
    for path in paths:
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(audio_fixtures / SHORT, path)
    source = FolderStore(root)
    report = tag(source, store, SETTINGS)
    assert report.tagged == len(paths) and report.failed == {}
    stored = _uris(store)
    assert {path_from_file_uri(uri) for uri in stored} == {p.resolve() for p in paths}  # verbatim round trip
    assert set(stored.values()) == {("tagged", None)}
    for uri in stored:
        with source.open(uri) as fh:
            assert fh.read() == (audio_fixtures / SHORT).read_bytes()


def test_symlinks_out_of_the_folder_are_not_listed_or_opened(tmp_path: Path, audio_fixtures: Path) -> None:
    root, outside = tmp_path / "catalogue", tmp_path / "private"
    (root / "music").mkdir(parents=True)
    outside.mkdir()
    shutil.copy2(audio_fixtures / SHORT, root / "music" / "inside.wav")
    shutil.copy2(audio_fixtures / SHORT, outside / "secret.wav")
    (root / "link-to-outside-file.wav").symlink_to(outside / "secret.wav")
    (root / "link-to-outside-dir").symlink_to(outside, target_is_directory=True)
    (root / "link-to-inside-file.wav").symlink_to(root / "music" / "inside.wav")
    (root / "loop.wav").symlink_to(root / "loop.wav")
    source = FolderStore(root)
    listed = sorted(Path(path_from_file_uri(info.uri)).name for info in source.list())
    assert listed == ["inside.wav", "link-to-inside-file.wav"]
    refused = [
        (root / "link-to-outside-file.wav").as_uri(),
        (root / "link-to-outside-dir" / "secret.wav").as_uri(),
        root.as_uri() + "/music/../../private/secret.wav",
        (outside / "secret.wav").as_uri(),
        (root / "loop.wav").as_uri(),
    ]
    for uri in refused:
        with pytest.raises(FetchError, match="outside the source folder"):
            source.open(uri)


# --- S3 ------------------------------------------------------------------------------------------------
#: Every odd name but the newline, which moto's HTTP server cannot route (real S3 stores it; the folder test has it).
S3_KEYS = [f"in/{name}" for name in ODD_NAMES if "\n" not in name] + [
    "in/../up.wav",
    "in/./dot/../x.wav",
    "in//double/slash.wav",
    "in/trailing space .wav",
    "in/" + "k" * (1024 - len("in/") - len(".wav")) + ".wav",  # the longest key S3 allows: 1024 bytes
]


def test_odd_s3_keys_are_stored_verbatim_and_tagged(
    store: Store, s3_server: str, s3_client: Any, s3_bucket: str, audio_fixtures: Path
) -> None:
    body = (audio_fixtures / SHORT).read_bytes()
    for key in S3_KEYS:
        s3_client.put_object(Bucket=s3_bucket, Key=key, Body=body)
    source = S3Store(s3_bucket, "in/", endpoint_url=s3_server)
    report = tag(source, store, SETTINGS)
    stored = _uris(store)
    assert set(stored) == {f"s3://{s3_bucket}/{key}" for key in S3_KEYS}
    assert report.tagged == len(S3_KEYS) and report.failed == {}
    assert set(stored.values()) == {("tagged", None)}
    for uri in stored:
        with source.open(uri) as fh:
            assert fh.read() == body


# --- limits --------------------------------------------------------------------------------------------
def test_max_bytes_and_max_duration_through_tag(database_url: str, store: Store, tmp_path: Path,
                                                audio_fixtures: Path) -> None:
    """An object over ``--max-bytes`` fails as ``too_large`` unread; a track longer than ``--max-duration`` is
    tagged from its first seconds and flagged ``capped`` (a tag, not a failure)."""
    root = tmp_path / "catalogue"
    root.mkdir()
    mp3 = (audio_fixtures / "excerpt.mp3").read_bytes()
    (root / "long.mp3").write_bytes(mp3 * 4)  # MP3 frames concatenate: a 20 s track
    (root / "short.mp3").write_bytes(mp3)  # 5 s
    (root / "huge.mp3").write_bytes(mp3 * 40)  # over the byte limit
    limit = len(mp3) * 10
    done = CliRunner().invoke(main, [
        "tag", str(root), "--database-url", database_url, "--models", "musicnn-mtt", "--workers", "0",
        "--max-bytes", str(limit), "--max-duration", "8", "--json",
    ])
    assert done.exit_code == 0, done.output
    with store.connection() as conn:
        rows = {Path(path_from_file_uri(r.uri)).name: r for r in conn.exec_driver_sql(
            "SELECT uri, status, error_kind, error_detail, duration_s, flags FROM tracks")}
    assert (rows["huge.mp3"].status, rows["huge.mp3"].error_kind) == ("failed", "too_large")
    assert str(limit) in rows["huge.mp3"].error_detail
    assert rows["long.mp3"].status == "tagged" and "capped" in rows["long.mp3"].flags
    assert rows["long.mp3"].duration_s == pytest.approx(8.0, abs=0.01)
    assert rows["short.mp3"].status == "tagged" and "capped" not in rows["short.mp3"].flags
    assert rows["short.mp3"].duration_s == pytest.approx(5.0, abs=0.1)
    assert store.tags_for_track((root / "long.mp3").as_uri())  # the capped track has its tags


def test_max_bytes_fails_before_reading_the_object(tmp_path: Path, audio_fixtures: Path) -> None:
    """``too_large`` is decided from the object's size: an S3 object over the limit costs one HEAD, no GET."""
    from catalogue_tagger.decode_pool import DecodeOptions, decode_track, windowings_for
    from catalogue_tagger.messages import TrackFailed
    from catalogue_tagger.models.specs import get_spec
    from catalogue_tagger.records import TrackTask

    path = tmp_path / "big.mp3"
    path.write_bytes((audio_fixtures / "excerpt.mp3").read_bytes() * 20)
    options = DecodeOptions(windowings_for({"musicnn-mtt": get_spec("musicnn-mtt")}), None, 1000)
    messages = list(decode_track(FolderStore(tmp_path), TrackTask(1, path.as_uri(), "e"), options))
    assert isinstance(messages[-1], TrackFailed) and messages[-1].kind == "too_large"
    assert len(messages) == 2  # started, failed: no segment was produced
