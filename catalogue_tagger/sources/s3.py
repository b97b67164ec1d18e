"""S3 (and S3-compatible stores) as an object store, read with ranged GETs.

Objects are never downloaded whole: :class:`S3Object` is a seekable file whose reads become ``Range`` requests
of at least ``block_size`` bytes (the read-ahead), with the most recent blocks kept, so PyAV can read an MP4's
``moov`` atom at the end and then stream the audio from the start while holding a few blocks at a time.

Credentials come only from the standard AWS chain (environment, config files, instance roles). The endpoint is
``endpoint_url`` when given, else whatever botocore resolves (it honours ``AWS_ENDPOINT_URL``).
"""

from __future__ import annotations

import io
from collections import OrderedDict
from collections.abc import Iterator
from typing import Any, BinaryIO, cast

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from catalogue_tagger.errors import FetchError, SourceError
from catalogue_tagger.records import ObjectInfo
from catalogue_tagger.sources.base import ObjectStore, is_audio_name

#: Retries with client-side rate limiting: a big catalogue run issues many small requests and should back off
#: under throttling instead of failing tracks.
BOTO_CONFIG = Config(retries={"max_attempts": 10, "mode": "adaptive"})

DEFAULT_BLOCK_SIZE = 1 << 20  # read-ahead per ranged GET
DEFAULT_CACHED_BLOCKS = 4  # head, tail (moov) and the streaming position fit

_MISSING_CODES = {"NoSuchKey", "404", "NotFound"}


def parse_s3_uri(uri: str) -> tuple[str, str]:
    """``s3://bucket/key/or/prefix`` → ``(bucket, key)``. Keys are taken verbatim (no percent-decoding)."""
    if not uri.startswith("s3://"):
        raise SourceError(f"{uri}: not an s3:// URI")
    bucket, _, key = uri[len("s3://") :].partition("/")
    if not bucket:
        raise SourceError(f"{uri}: no bucket in s3:// URI")
    return bucket, key


def make_s3_client(endpoint_url: str | None = None) -> Any:
    """A boto3 S3 client with :data:`BOTO_CONFIG`; ``endpoint_url=None`` lets botocore resolve it."""
    return boto3.session.Session().client("s3", endpoint_url=endpoint_url, config=BOTO_CONFIG)


def _error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


class S3Store(ObjectStore):
    """Audio objects under ``s3://bucket/prefix``.

    The client is created on first use and dropped when pickled, so a store can be handed to decode worker
    processes, each of which then makes its own client.
    """

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        endpoint_url: str | None = None,
        page_size: int = 1000,
        block_size: int = DEFAULT_BLOCK_SIZE,
        client: Any = None,
    ) -> None:
        self.bucket = bucket
        self.prefix = prefix
        self.endpoint_url = endpoint_url
        self.page_size = page_size
        self.block_size = block_size
        self._client = client

    @classmethod
    def from_uri(cls, uri: str, **kwargs: Any) -> S3Store:
        bucket, prefix = parse_s3_uri(uri)
        return cls(bucket, prefix, **kwargs)

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = make_s3_client(self.endpoint_url)
        return self._client

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_client"] = None
        return state

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def list(self) -> Iterator[ObjectInfo]:
        paginator = self.client.get_paginator("list_objects_v2")
        pages = paginator.paginate(
            Bucket=self.bucket, Prefix=self.prefix, PaginationConfig={"PageSize": self.page_size}
        )
        try:
            for page in pages:
                for obj in page.get("Contents", ()):
                    key = obj["Key"]
                    if is_audio_name(key):
                        yield ObjectInfo(
                            uri=f"s3://{self.bucket}/{key}",
                            etag=str(obj["ETag"]).strip('"'),
                            size=int(obj["Size"]),
                            last_modified=obj["LastModified"],
                        )
        except ClientError as exc:
            raise SourceError(f"{self.uri}: cannot list: {_error_code(exc)}: {exc}") from exc
        except BotoCoreError as exc:
            raise SourceError(f"{self.uri}: cannot list: {exc}") from exc

    def open(self, uri: str) -> BinaryIO:
        bucket, key = parse_s3_uri(uri)
        # S3Object implements the binary file interface (io.RawIOBase); typing.BinaryIO is nominal.
        return cast(BinaryIO, S3Object(self.client, bucket, key, block_size=self.block_size))

def _head(client: Any, bucket: str, key: str) -> dict[str, Any]:
    uri = f"s3://{bucket}/{key}"
    try:
        head: dict[str, Any] = client.head_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        code = _error_code(exc)
        if code in _MISSING_CODES:
            raise FetchError(f"{uri}: no such object") from exc
        raise FetchError(f"{uri}: {code or 'request failed'}: {exc}") from exc
    except BotoCoreError as exc:
        raise FetchError(f"{uri}: {exc}") from exc
    return head


class S3Object(io.RawIOBase):
    """A read-only, seekable view of one S3 object, fetched lazily in ranged blocks.

    Every GET carries ``If-Match`` with the etag seen when opening, so an object overwritten mid-read fails with
    :class:`FetchError` instead of mixing bytes of two versions. At most ``cached_blocks`` blocks are held.
    """

    def __init__(
        self,
        client: Any,
        bucket: str,
        key: str,
        *,
        block_size: int = DEFAULT_BLOCK_SIZE,
        cached_blocks: int = DEFAULT_CACHED_BLOCKS,
        owns_client: bool = False,
    ) -> None:
        super().__init__()
        self._client = client
        self._owns_client = owns_client
        self.bucket = bucket
        self.key = key
        self.uri = f"s3://{bucket}/{key}"
        head = _head(client, bucket, key)
        self.size = int(head["ContentLength"])
        self.etag = str(head["ETag"])
        self.block_size = block_size
        self._cached_blocks = max(1, cached_blocks)
        self._blocks: OrderedDict[int, bytes] = OrderedDict()
        self._pos = 0
        self.requests = 0  # ranged GETs issued, for tests and diagnostics

    # -- io.RawIOBase -------------------------------------------------------------------------------
    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence == io.SEEK_SET:
            pos = offset
        elif whence == io.SEEK_CUR:
            pos = self._pos + offset
        elif whence == io.SEEK_END:
            pos = self.size + offset
        else:
            raise ValueError(f"invalid whence: {whence}")
        if pos < 0:
            raise ValueError(f"negative seek position {pos}")
        self._pos = pos
        return pos

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        wanted = min(len(view), self.size - self._pos)
        done = 0
        while done < wanted:
            index, offset = divmod(self._pos, self.block_size)
            block = self._block(index)
            n = min(wanted - done, len(block) - offset)
            if n <= 0:
                break
            view[done : done + n] = block[offset : offset + n]
            done += n
            self._pos += n
        return done

    def readall(self) -> bytes:
        return self.read(max(0, self.size - self._pos))

    def close(self) -> None:
        self._blocks.clear()
        if self._owns_client and not self.closed:
            self._client.close()
        super().close()

    # -- blocks -------------------------------------------------------------------------------------
    def _block(self, index: int) -> bytes:
        block = self._blocks.get(index)
        if block is not None:
            self._blocks.move_to_end(index)
            return block
        block = self._get_range(index * self.block_size, min(self.size, (index + 1) * self.block_size))
        self._blocks[index] = block
        while len(self._blocks) > self._cached_blocks:
            self._blocks.popitem(last=False)
        return block

    def _get_range(self, start: int, stop: int) -> bytes:
        self.requests += 1
        try:
            response = self._client.get_object(
                Bucket=self.bucket, Key=self.key, Range=f"bytes={start}-{stop - 1}", IfMatch=self.etag
            )
            with response["Body"] as body:
                data: bytes = body.read()
        except ClientError as exc:
            code = _error_code(exc)
            if code in ("PreconditionFailed", "412"):
                raise FetchError(f"{self.uri}: object changed while reading") from exc
            if code in _MISSING_CODES:
                raise FetchError(f"{self.uri}: object disappeared while reading") from exc
            raise FetchError(f"{self.uri}: bytes {start}-{stop - 1}: {code or 'request failed'}: {exc}") from exc
        except BotoCoreError as exc:
            raise FetchError(f"{self.uri}: bytes {start}-{stop - 1}: {exc}") from exc
        if len(data) != stop - start:
            raise FetchError(f"{self.uri}: bytes {start}-{stop - 1}: got {len(data)} bytes")
        return data
