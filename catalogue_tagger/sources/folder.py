"""A local folder as an object store: the default source, and the one tests and the demo use."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import BinaryIO
from urllib.parse import unquote_to_bytes, urlsplit
from urllib.request import url2pathname

from catalogue_tagger.errors import FetchError, SourceError
from catalogue_tagger.records import ObjectInfo
from catalogue_tagger.sources.base import ObjectStore, is_audio_name

logger = logging.getLogger(__name__)


def path_from_file_uri(uri: str) -> Path:
    """The local path of a ``file://`` URI, the inverse of :meth:`Path.as_uri`.

    Percent-decoded exactly once, to bytes and then through the file-system encoding, so a name holding ``%41``
    or bytes that are not UTF-8 comes back as it was.
    """
    parts = urlsplit(uri)
    if parts.scheme != "file" or parts.netloc not in ("", "localhost"):
        raise FetchError(f"{uri}: not a local file:// URI")
    if os.name == "nt":
        return Path(url2pathname(parts.path))
    return Path(os.fsdecode(unquote_to_bytes(parts.path)))


class FolderStore(ObjectStore):
    """Audio files under a local folder, recursively.

    The etag is ``f"{size}-{mtime_ns}"``: hashing every file to notice changes would read the whole catalogue on
    each discovery, while size and modification time change whenever a file is rewritten in practice.
    A symlink is never followed out of the root: a link to a file inside the root is listed under the link's
    name, a link that resolves outside the root is skipped, and :meth:`open` refuses any URI whose resolved path
    lies outside it. Symlinked folders are not descended into (they could form loops). File names are taken
    verbatim: spaces, quotes, unicode, control characters and ``..`` inside a name round-trip through the URI.
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
                        elif not is_audio_name(entry.name):
                            continue
                        elif entry.is_symlink():
                            if self._inside(Path(entry.path)) and entry.is_file():
                                yield _info(Path(entry.path), entry.stat())
                            else:
                                logger.debug("%s: symlink out of %s or to no file: skipped", entry.path, self._root)
                        elif entry.is_file(follow_symlinks=False):
                            yield _info(Path(entry.path), entry.stat(follow_symlinks=False))
                    except FileNotFoundError:
                        continue  # removed while listing: it is simply not there any more

    def open(self, uri: str) -> BinaryIO:
        """Open a file of this folder; a URI that resolves outside the root (``..``, a symlink) is refused."""
        path = path_from_file_uri(uri)
        if not self._inside(path):
            raise FetchError(f"{uri}: outside the source folder {self._root}")
        try:
            return path.resolve(strict=True).open("rb")  # the resolved path: a link swapped meanwhile is not taken
        except OSError as exc:
            raise FetchError(f"{uri}: {exc.strerror or exc}") from exc

    def _inside(self, path: Path) -> bool:
        """Whether ``path``, every symlink and ``..`` resolved, lies under the root."""
        try:
            return path.resolve().is_relative_to(self._root)
        except (OSError, RuntimeError):  # a symlink loop
            return False


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
