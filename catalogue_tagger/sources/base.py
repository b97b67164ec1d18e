"""The object-store interface: list audio objects, open one as a seekable binary file.

Every store speaks in URIs (``file:///…``, ``s3://bucket/key``) so a track's identity in the database does not
depend on which process or machine listed it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from types import TracebackType
from typing import BinaryIO

from catalogue_tagger.records import ObjectInfo

#: Extensions (lower case, no dot) that :meth:`ObjectStore.list` reports; everything else is skipped.
AUDIO_EXTENSIONS: frozenset[str] = frozenset(
    {"mp3", "ogg", "oga", "opus", "flac", "wav", "aif", "aiff", "m4a", "mp4", "aac", "wma", "webm"}
)


def is_audio_name(name: str) -> bool:
    """Whether an object name has one of the :data:`AUDIO_EXTENSIONS` (case-insensitive)."""
    _, dot, ext = name.rpartition(".")
    return bool(dot) and ext.lower() in AUDIO_EXTENSIONS


class ObjectStore(ABC):
    """A place audio objects live in: a local folder or an S3 prefix.

    ``list`` streams (memory does not grow with the number of objects); ``open`` returns a readable, seekable
    binary file-like object, which is what PyAV needs to find an MP4 ``moov`` atom at the end of a file.
    Stores are context managers; ``close`` releases clients and is safe to call twice.
    """

    @property
    @abstractmethod
    def uri(self) -> str:
        """The URI of the source itself (``file:///root/`` or ``s3://bucket/prefix``)."""

    @abstractmethod
    def list(self) -> Iterator[ObjectInfo]:
        """Every audio object under the source, lazily. Order is store-defined."""

    @abstractmethod
    def open(self, uri: str) -> BinaryIO:
        """Open one object of this store for reading.

        Raises :class:`~catalogue_tagger.errors.FetchError` when the object cannot be read.
        """

    def close(self) -> None:
        """Release whatever the store holds open."""

    def __enter__(self) -> ObjectStore:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
