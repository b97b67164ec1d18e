"""Object stores against a real folder and a real (moto) S3 server."""

from __future__ import annotations

import io
import os
import pickle
from concurrent.futures import ThreadPoolExecutor
from datetime import timezone
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from catalogue_tagger.decode import decode_all
from catalogue_tagger.errors import FetchError, SourceError
from catalogue_tagger.sources import FolderStore, S3Object, S3Store, open_source, open_uri


# --- folder --------------------------------------------------------------------------------------------
@pytest.fixture
def folder(tmp_path: Path) -> Path:
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "one.mp3").write_bytes(b"1" * 10)
    (tmp_path / "a" / "Two.FLAC").write_bytes(b"2" * 20)
    (tmp_path / "a" / "b" / "three song.m4a").write_bytes(b"3" * 30)
    (tmp_path / "a" / "notes.txt").write_text("not audio")
    (tmp_path / "a" / "cover.jpg").write_bytes(b"\xff\xd8")
    (tmp_path / "noext").write_bytes(b"x")
    return tmp_path


def test_folder_lists_audio_recursively(folder: Path) -> None:
    store = FolderStore(folder)
    infos = sorted(store.list(), key=lambda info: info.uri)
    assert [Path(info.uri.removeprefix("file://")).name for info in infos] == ["Two.FLAC", "three%20song.m4a", "one.mp3"]
    by_size = {info.size: info for info in infos}
    assert set(by_size) == {10, 20, 30}
    st = (folder / "one.mp3").stat()
    assert by_size[10].etag == f"{st.st_size}-{st.st_mtime_ns}"
    assert by_size[10].last_modified.tzinfo == timezone.utc
    assert by_size[10].partition_key == by_size[10].last_modified.strftime("%Y-%m-%d")
    assert store.uri == folder.resolve().as_uri() + "/"


def test_folder_open_round_trips_uris(folder: Path) -> None:
    store = FolderStore(folder)
    for info in store.list():
        with store.open(info.uri) as fh:
            data = fh.read()
        assert len(data) == info.size
        with open_uri(info.uri) as fh:
            assert fh.read() == data


def test_folder_etag_changes_when_file_rewritten(folder: Path) -> None:
    store = FolderStore(folder)
    before = {info.uri: info.etag for info in store.list()}
    path = folder / "one.mp3"
    path.write_bytes(b"changed!!!")
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 1_000_000))
    after = {info.uri: info.etag for info in store.list()}
    assert after[path.as_uri()] != before[path.as_uri()]


def test_open_source_accepts_paths_and_file_uris(folder: Path) -> None:
    assert isinstance(open_source(str(folder)), FolderStore)
    store = open_source(folder.as_uri())
    assert isinstance(store, FolderStore) and store.root == folder.resolve()
    with pytest.raises(SourceError):
        open_source("gs://bucket/prefix")


def test_folder_errors_are_named(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="not a folder"):
        list(FolderStore(tmp_path / "missing").list())
    with pytest.raises(FetchError) as excinfo:
        open_uri((tmp_path / "missing.mp3").as_uri())
    assert excinfo.value.kind == "fetch_error"
    with pytest.raises(FetchError):
        open_uri("http://example.com/a.mp3")


# --- S3 ------------------------------------------------------------------------------------------------
def test_s3_listing_is_paginated_and_filtered(s3_client: Any, s3_bucket: str, s3_server: str) -> None:
    """Many pages (S3 caps a page at 1000 keys; a small page size exercises the same continuation tokens)."""
    keys = [f"music/{i:04d}.mp3" for i in range(249)] + ["music/readme.txt", "other/x.ogg"]
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda key: s3_client.put_object(Bucket=s3_bucket, Key=key, Body=b"abc"), keys))
    store = S3Store(s3_bucket, "music/", endpoint_url=s3_server, page_size=25)
    calls = []
    store.client.meta.events.register("after-call.s3.ListObjectsV2", lambda **kw: calls.append(1))
    infos = list(store.list())
    assert [info.uri for info in infos] == [f"s3://{s3_bucket}/{key}" for key in keys[:249]]
    assert len(calls) == 10
    head = s3_client.head_object(Bucket=s3_bucket, Key=keys[0])
    assert infos[0].etag == head["ETag"].strip('"') and infos[0].size == 3
    assert infos[0].last_modified.utcoffset() is not None
    assert store.uri == f"s3://{s3_bucket}/music/"


def test_s3_missing_bucket_is_a_source_error(s3_server: str) -> None:
    with pytest.raises(SourceError, match="NoSuchBucket"):
        list(S3Store("no-such-bucket", endpoint_url=s3_server).list())


def test_s3_object_reads_ranges_and_seeks(s3_client: Any, s3_bucket: str, s3_server: str) -> None:
    data = np.random.default_rng(0).integers(0, 256, 100_000, dtype=np.uint8).tobytes()
    s3_client.put_object(Bucket=s3_bucket, Key="blob.wav", Body=data)
    store = S3Store(s3_bucket, endpoint_url=s3_server, block_size=8192)
    with store.open(f"s3://{s3_bucket}/blob.wav") as fh:
        assert isinstance(fh, S3Object) and fh.seekable() and fh.size == len(data)
        assert fh.read(10) == data[:10]
        assert fh.requests == 1  # one block fetched, the rest of the object untouched
        assert fh.seek(-100, io.SEEK_END) == len(data) - 100
        assert fh.read() == data[-100:]
        assert fh.read(5) == b""
        fh.seek(5000)
        assert fh.read(20_000) == data[5000:25_000]  # spans several blocks
        fh.seek(10, io.SEEK_CUR)
        assert fh.tell() == 25_010
        assert fh.read(10) == data[25_010:25_020]
        fh.seek(0)
        assert fh.read() == data


def test_s3_object_changed_while_reading_is_a_fetch_error(
    s3_client: Any, s3_bucket: str, s3_server: str
) -> None:
    s3_client.put_object(Bucket=s3_bucket, Key="a.mp3", Body=b"a" * 50_000)
    store = S3Store(s3_bucket, endpoint_url=s3_server, block_size=4096)
    with store.open(f"s3://{s3_bucket}/a.mp3") as fh:
        fh.read(10)
        s3_client.put_object(Bucket=s3_bucket, Key="a.mp3", Body=b"b" * 50_000)
        fh.seek(40_000)
        with pytest.raises(FetchError, match="changed"):
            fh.read(10)


def test_s3_missing_object_is_a_fetch_error(s3_bucket: str, s3_server: str) -> None:
    uri = f"s3://{s3_bucket}/nope.mp3"
    with pytest.raises(FetchError, match="no such object") as excinfo:
        S3Store(s3_bucket, endpoint_url=s3_server).open(uri)
    assert excinfo.value.kind == "fetch_error"
    with pytest.raises(FetchError):
        open_uri(uri, s3_endpoint_url=s3_server)


def test_s3_m4a_decodes_with_ranged_reads(
    s3_client: Any, s3_bucket: str, s3_server: str, audio_fixtures: Path
) -> None:
    """MP4 with the moov atom at the end: PyAV must seek; the object is fetched in blocks, not whole."""
    path = audio_fixtures / "excerpt.m4a"
    s3_client.upload_file(str(path), s3_bucket, "in/excerpt.m4a")
    expected, expected_info = decode_all(path.open("rb"))
    store = S3Store(s3_bucket, "in/", endpoint_url=s3_server, block_size=8192)
    (info,) = store.list()
    with store.open(info.uri) as fh:
        assert isinstance(fh, S3Object)
        got, got_info = decode_all(fh)
        assert fh.requests >= 2  # head, then tail for moov, then the data
    np.testing.assert_array_equal(got, expected)
    assert got_info == expected_info
    assert got_info.codec == "aac" and not got_info.truncated


def test_s3_endpoint_from_environment(
    s3_client: Any, s3_bucket: str, s3_server: str, monkeypatch: pytest.MonkeyPatch, audio_fixtures: Path
) -> None:
    s3_client.upload_file(str(audio_fixtures / "excerpt.ogg"), s3_bucket, "p/x.ogg")
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_server)
    store = open_source(f"s3://{s3_bucket}/p/")
    assert isinstance(store, S3Store)
    (info,) = store.list()
    with open_uri(info.uri) as fh:
        assert decode_all(fh)[1].codec == "vorbis"


def test_s3_store_pickles_without_its_client(s3_client: Any, s3_bucket: str, s3_server: str) -> None:
    s3_client.put_object(Bucket=s3_bucket, Key="k.mp3", Body=b"xyz")
    store = S3Store(s3_bucket, endpoint_url=s3_server)
    assert [i.size for i in store.list()] == [3]
    clone = pickle.loads(pickle.dumps(store))
    with clone.open(f"s3://{s3_bucket}/k.mp3") as fh:
        assert fh.read() == b"xyz"
    clone.close()
    store.close()


def test_s3_capped_decode_fetches_only_what_it_needs(
    s3_client: Any, s3_bucket: str, s3_server: str, audio_fixtures: Path
) -> None:
    body = (audio_fixtures / "excerpt.mp3").read_bytes() * 4  # MP3 frames concatenate: a 20 s object
    s3_client.put_object(Bucket=s3_bucket, Key="long.mp3", Body=body)
    store = S3Store(s3_bucket, endpoint_url=s3_server, block_size=4096)
    with store.open(f"s3://{s3_bucket}/long.mp3") as fh:
        assert isinstance(fh, S3Object)
        _, info = decode_all(fh, max_duration_s=1.0)
        fetched = fh.requests * fh.block_size
    assert info.capped and info.duration_s == 1.0
    assert fetched < len(body) / 4
