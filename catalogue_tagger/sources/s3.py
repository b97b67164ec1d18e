"""S3 (and S3-compatible stores) as an object store, read with ranged GETs.

Objects are never downloaded whole: :class:`S3Object` is a seekable file whose reads become ``Range`` requests
of at least ``block_size`` bytes (the read-ahead), with the most recent blocks kept, so PyAV can read an MP4's
``moov`` atom at the end and then stream the audio from the start while holding a few blocks at a time.

Credentials come only from the standard AWS chain (environment, config files, instance roles). The endpoint is
``endpoint_url`` when given, else whatever botocore resolves (it honours ``AWS_ENDPOINT_URL``).
"""

from __future__ import annotations

import io
import logging
import random
import time
from collections import OrderedDict
from collections.abc import Iterator
from typing import Any, BinaryIO, cast

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from catalogue_tagger.errors import FetchError, SourceError
from catalogue_tagger.records import ObjectInfo
from catalogue_tagger.sources.base import ObjectStore, is_audio_name
from catalogue_tagger.sources.log_redaction import redact_botocore_logs

logger = logging.getLogger(__name__)

#: Attempts per request (botocore's retry budget, the first try included): 500, 503, ``SlowDown``, resets and
#: timeouts before the response are retried by botocore with jittered exponential backoff, and client-side
#: rate limiting ("adaptive") slows a big run down under throttling instead of failing its tracks.
DEFAULT_MAX_ATTEMPTS = 10
DEFAULT_CONNECT_TIMEOUT_S = 10.0
DEFAULT_READ_TIMEOUT_S = 60.0  # a socket silent this long (headers or body) counts as a failed attempt
#: Attempts at reading one ranged GET's body. botocore retries a request until its response starts; a body
#: that stalls or is cut off afterwards is retried here, with a fresh GET of the same range (still If-Match).
DEFAULT_BODY_ATTEMPTS = 5
BODY_RETRY_BASE_S = 0.05  # backoff before body attempt i (1-based, after the first): rand(0, base · 2^i)

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


def boto_config(
    max_attempts: int = DEFAULT_MAX_ATTEMPTS,
    read_timeout_s: float = DEFAULT_READ_TIMEOUT_S,
    connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S,
) -> Config:
    """The botocore configuration of our clients: adaptive retries within ``max_attempts``, socket timeouts."""
    return Config(
        retries={"total_max_attempts": max_attempts, "mode": "adaptive"},
        read_timeout=read_timeout_s,
        connect_timeout=connect_timeout_s,
    )


def make_s3_client(
    endpoint_url: str | None = None,
    *,
    max_attempts: int = DEFAULT_MAX_ATTEMPTS,
    read_timeout_s: float = DEFAULT_READ_TIMEOUT_S,
) -> Any:
    """A boto3 S3 client with :func:`boto_config`; ``endpoint_url=None`` lets botocore resolve it."""
    config = boto_config(max_attempts, read_timeout_s)
    client = boto3.session.Session().client("s3", endpoint_url=endpoint_url, config=config)
    redact_botocore_logs()  # botocore's loggers exist now; DEBUG logs must not carry credentials
    return client


def _error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


class S3Store(ObjectStore):
    """Audio objects under ``s3://bucket/prefix``.

    The client is created on first use and dropped when pickled, so a store can be handed to decode worker
    processes, each of which then makes its own client. ``max_attempts`` and ``read_timeout_s`` set the retry
    budget and socket timeout of that client (see :func:`boto_config`); ``body_attempts`` that of each ranged
    read's body (see :class:`S3Object`).
    """

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        endpoint_url: str | None = None,
        page_size: int = 1000,
        block_size: int = DEFAULT_BLOCK_SIZE,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        read_timeout_s: float = DEFAULT_READ_TIMEOUT_S,
        body_attempts: int = DEFAULT_BODY_ATTEMPTS,
        client: Any = None,
    ) -> None:
        self.bucket = bucket
        self.prefix = prefix
        self.endpoint_url = endpoint_url
        self.page_size = page_size
        self.block_size = block_size
        self.max_attempts = max_attempts
        self.read_timeout_s = read_timeout_s
        self.body_attempts = body_attempts
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
            self._client = make_s3_client(
                self.endpoint_url, max_attempts=self.max_attempts, read_timeout_s=self.read_timeout_s
            )
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
        return cast(
            BinaryIO,
            S3Object(self.client, bucket, key, block_size=self.block_size, body_attempts=self.body_attempts),
        )


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

    Failures before a response are retried by the client (its retry budget); a body that is cut off, stalls
    past the client's read timeout or comes back short is fetched again, up to ``body_attempts`` GETs per block.
    Past either budget the read raises :class:`FetchError` (kind ``fetch_error``).
    """

    def __init__(
        self,
        client: Any,
        bucket: str,
        key: str,
        *,
        block_size: int = DEFAULT_BLOCK_SIZE,
        cached_blocks: int = DEFAULT_CACHED_BLOCKS,
        body_attempts: int = DEFAULT_BODY_ATTEMPTS,
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
        self._body_attempts = max(1, body_attempts)
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
        span = f"bytes {start}-{stop - 1}"
        for attempt in range(1, self._body_attempts + 1):
            try:
                return self._get_range_once(start, stop)
            except _BodyError as exc:
                if attempt == self._body_attempts:
                    raise FetchError(
                        f"{self.uri}: {span}: gave up after {attempt} attempts: {exc}"
                    ) from exc.__cause__
                logger.debug("%s: %s: attempt %d failed (%s), reading again", self.uri, span, attempt, exc)
                time.sleep(random.uniform(0.0, BODY_RETRY_BASE_S * 2**attempt))
        raise AssertionError("unreachable")

    def _get_range_once(self, start: int, stop: int) -> bytes:
        """One ranged GET. Errors of the request are final (botocore retried them); errors of the body raise
        :class:`_BodyError`, which the caller retries."""
        self.requests += 1
        span = f"bytes {start}-{stop - 1}"
        try:
            response = self._client.get_object(
                Bucket=self.bucket, Key=self.key, Range=f"bytes={start}-{stop - 1}", IfMatch=self.etag
            )
        except ClientError as exc:
            code = _error_code(exc)
            if code in ("PreconditionFailed", "412"):
                raise FetchError(f"{self.uri}: object changed while reading") from exc
            if code in _MISSING_CODES:
                raise FetchError(f"{self.uri}: object disappeared while reading") from exc
            raise FetchError(f"{self.uri}: {span}: {code or 'request failed'}: {exc}") from exc
        except BotoCoreError as exc:
            raise FetchError(f"{self.uri}: {span}: {exc}") from exc
        body = response["Body"]  # botocore's StreamingBody: its read() wraps urllib3's errors in BotoCoreError
        try:
            data: bytes = body.read()
        except (BotoCoreError, OSError) as exc:  # cut off, reset or stalled mid-body
            raise _BodyError(f"{type(exc).__name__}: {exc}") from exc
        finally:
            body.close()
        if len(data) != stop - start:
            raise _BodyError(f"got {len(data)} of {stop - start} bytes")
        return data


class _BodyError(Exception):
    """A ranged GET's body could not be read whole (retried by :meth:`S3Object._get_range`)."""
