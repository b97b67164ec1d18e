"""A small fault-injecting HTTP proxy for the tests, in front of the moto S3 server.

It forwards every request to the upstream server and, for a seeded random share of them (or every request
for a key a rule names), answers with a fault instead:

- ``500``: ``500 InternalError``; ``503``: ``503 ServiceUnavailable``; ``slowdown``: ``503 SlowDown``;
- ``reset``: the connection is reset (RST) before any response;
- ``cut``: the real status and headers, then half the body, then the connection closes;
- ``stall``: the real status and headers, half the body, then silence for ``stall_s`` before closing.

The client under test talks to the proxy over real HTTP; nothing in the client is patched.
"""

from __future__ import annotations

import http.client
import random
import socket
import struct
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit

FAULTS = ("500", "503", "slowdown", "reset", "cut", "stall")

_ERROR_RESPONSES = {
    "500": (500, "InternalError", "We encountered an internal error. Please try again."),
    "503": (503, "ServiceUnavailable", "Service is unable to handle request."),
    "slowdown": (503, "SlowDown", "Please reduce your request rate."),
}
_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "proxy-connection"}


@dataclass(frozen=True)
class Request:
    """What a rule sees of a request: method, bucket-relative key (decoded, '' for a listing), headers."""

    method: str
    key: str
    query: str
    headers: dict[str, str]

    @property
    def ranged(self) -> bool:
        return "range" in self.headers


#: A rule returns the fault to inject for a request, or None to let the random share decide.
Rule = Callable[[Request], "str | None"]


@dataclass
class FaultPlan:
    """Which requests fail, and how: ``rate`` of all requests (kinds drawn from ``kinds``), plus ``rules``."""

    rate: float = 0.0
    kinds: tuple[str, ...] = FAULTS
    seed: int = 0
    stall_s: float = 3.0
    rules: list[Rule] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._random = random.Random(self.seed)
        self._lock = threading.Lock()

    def choose(self, request: Request) -> str | None:
        for rule in self.rules:
            if (fault := rule(request)) is not None:
                return fault
        # Only requests that can carry a body are cut or stalled; a HEAD has none to cut.
        kinds = self.kinds if request.method != "HEAD" else tuple(k for k in self.kinds if k not in ("cut", "stall"))
        with self._lock:
            if kinds and self._random.random() < self.rate:
                return self._random.choice(kinds)
        return None


class FaultProxy:
    """A threaded proxy on 127.0.0.1 (``url``) forwarding to ``upstream``, counting requests and faults."""

    def __init__(self, upstream: str, plan: FaultPlan) -> None:
        parts = urlsplit(upstream)
        self.upstream_host = parts.hostname or "127.0.0.1"
        self.upstream_port = parts.port or 80
        self.plan = plan
        self.requests = 0
        self.faults: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._server = _QuietServer(("127.0.0.1", 0), _handler_for(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="fault-proxy", daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> FaultProxy:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def count(self, fault: str | None) -> None:
        with self._lock:
            self.requests += 1
            if fault is not None:
                self.faults[fault] += 1

    def forward(self, method: str, path: str, headers: dict[str, str], body: bytes) -> tuple[int, str, list[tuple[str, str]], bytes]:
        conn = http.client.HTTPConnection(self.upstream_host, self.upstream_port, timeout=30)
        try:
            conn.request(method, path, body=body or None, headers=headers)
            response = conn.getresponse()
            data = response.read()
            return response.status, response.reason, response.getheaders(), data
        finally:
            conn.close()


@contextmanager
def fault_proxy(upstream: str, plan: FaultPlan) -> Iterator[FaultProxy]:
    proxy = FaultProxy(upstream, plan).start()
    try:
        yield proxy
    finally:
        proxy.stop()


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: object, client_address: object) -> None:
        pass  # a connection we reset or cut on purpose is not worth a traceback


def _key_of(path: str) -> tuple[str, str]:
    """``/bucket/some/key?query`` → (decoded key, query); path-style addressing, as botocore uses for an IP."""
    parts = urlsplit(path)
    _, _, key = parts.path.lstrip("/").partition("/")
    return unquote(key), parts.query


def _handler_for(proxy: FaultProxy) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - quiet in tests
            pass

        def _handle(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
            key, query = _key_of(self.path)
            request = Request(self.command, key, query, {k.lower(): v for k, v in headers.items()})
            fault = proxy.plan.choose(request)
            proxy.count(fault)
            if fault == "reset":
                self._reset()
                return
            if fault in _ERROR_RESPONSES:
                self._error(*_ERROR_RESPONSES[fault])
                return
            status, reason, upstream_headers, data = proxy.forward(self.command, self.path, headers, body)
            self.send_response_only(status, reason)
            for name, value in upstream_headers:
                if name.lower() not in _HOP_BY_HOP and name.lower() != "content-length":
                    self.send_header(name, value)
            if self.command == "HEAD":
                self.send_header("Content-Length", dict((k.lower(), v) for k, v in upstream_headers).get(
                    "content-length", "0"))
                self.end_headers()
                return
            self.send_header("Content-Length", str(len(data)))
            if fault in ("cut", "stall") and len(data) > 1:
                self.end_headers()
                self.wfile.write(data[: len(data) // 2])
                self.wfile.flush()
                if fault == "stall":
                    time.sleep(proxy.plan.stall_s)
                self.close_connection = True
                return
            self.end_headers()
            self.wfile.write(data)

        def _error(self, status: int, code: str, message: str) -> None:
            payload = (
                f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code><Message>{message}</Message>'
                f"<RequestId>fault-proxy</RequestId></Error>"
            ).encode()
            self.send_response_only(status)
            self.send_header("Content-Type", "application/xml")
            self.send_header("Content-Length", str(len(payload)) if self.command != "HEAD" else "0")
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(payload)

        def _reset(self) -> None:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.close_connection = True
            self.connection.close()

        do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = _handle

    return Handler
