"""A local folder as an object store: the default source, and the one tests and the demo use."""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import BinaryIO
from urllib.parse import unquote, urlsplit
from urllib.request import url2pathname

from catalogue_tagger.errors import FetchError, SourceError
from catalogue_tagger.records import ObjectInfo
from catalogue_tagger.sources.base import ObjectStore, is_audio_name


def path_from_file_uri(uri: str) -> Path:
    """The local path of a ``file://`` URI (percent-decoded, as produced by :meth:`Path.as_uri`)."""
    parts = urlsplit(uri)
    if parts.scheme != "file" or parts.netloc not in ("", "localhost"):
        raise FetchError(f"{uri}: not a local file:// URI")
    return Path(url2pathname(unquote(parts.path)))


class FolderStore(ObjectStore):
    """Audio files under a local folder, recursively.

    The etag is ``f"{size}-{mtime_ns}"``: hashing every file to notice changes would read the whole catalogue on
    each discovery, while size and modification time change whenever a file is rewritten in practice.
    Symlinked files are followed; symlinked folders are not (they could form loops).
    """

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self._root = Path(root).expanduser().resolve()

    @property
    def root(self) -> Path:
        return self._root

    @property
    def uri(self) -> str:
        return self._root.as_uri() + "/"

    def list(self) -> Iterator[ObjectInfo]:
        if not self._root.is_dir():
            raise SourceError(f"{self._root}: not a folder")
        pending = [str(self._root)]
        while pending:
            folder = pending.pop()
            try:
                entries = os.scandir(folder)
            except OSError as exc:
                raise SourceError(f"{folder}: cannot list: {exc.strerror or exc}") from exc
            with entries:
                for entry in entries:
                    try:
                        if entry.is_dir(follow_symlinks=False):
                            pending.append(entry.path)
                        elif is_audio_name(entry.name) and entry.is_file():
                            yield _info(Path(entry.path), entry.stat())
                    except FileNotFoundError:
                        continue  # removed while listing: it is simply not there any more

    def open(self, uri: str) -> BinaryIO:
        return open_file_uri(uri)


def _info(path: Path, st: os.stat_result) -> ObjectInfo:
    return ObjectInfo(
        uri=path.as_uri(),
        etag=f"{st.st_size}-{st.st_mtime_ns}",
        size=st.st_size,
        last_modified=datetime.fromtimestamp(st.st_mtime_ns / 1e9, tz=timezone.utc),
    )


def open_file_uri(uri: str) -> BinaryIO:
    """Open a ``file://`` URI for binary reading, translating OS errors into :class:`FetchError`."""
    path = path_from_file_uri(uri)
    try:
        return path.open("rb")
    except OSError as exc:
        raise FetchError(f"{uri}: {exc.strerror or exc}") from exc
