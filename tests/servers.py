"""Real loopback HTTP servers for tests and benchmarks: a Hugging Face Hub stand-in and a CDN with
faults.

Everything here is stdlib only and binds to 127.0.0.1 on a free port, so no test ever reaches the
internet.

- `CdnServer` serves bytes with exact HTTP/1.1 Range semantics (RFC 9110 §14), signed-URL checks,
  redirects, throttling and scripted faults (`Fault`).
- `HubServer` holds git-like repos (commits, branches, tags, LFS vs. plain files) and answers the
  part of the Hub API that huggingface_hub and mdl use: `resolve` (302 to the CDN for LFS files, 200
  for small files), `api/{models,datasets,spaces}/{repo}[/revision/{rev}]`,
  `.../tree/{rev}[/{path}]` with `Link` pagination and `POST .../paths-info/{rev}`, with the Hub's
  `X-Error-Code` / `X-Error-Message` headers so `hf_raise_for_status` raises the right class.
- Both keep a thread-safe `RequestLog` of what they saw and sent, and take `Fault`s.
- `python tests/servers.py FILE...` serves files from another process (benchmarks: no shared GIL).

Usage::

    with HubServer() as hub:
        repo = hub.add_repo("org/tiny", {"config.json": b"{}", "model.safetensors":
        make_data(4096)}) api = HfApi(endpoint=hub.url) ...
        hub.cdn.faults.add(Fault.reset(after_bytes=1000))
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import itertools
import json
import os
import socket
import socketserver
import struct
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from email.utils import formatdate
from functools import cached_property
from html import escape
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar, Literal, Self
from urllib.parse import parse_qs, quote, unquote, urlencode, urlsplit

import blake3

__all__ = [
    "DEFAULT_LFS_SUFFIXES",
    "TOKEN",
    "CdnServer",
    "Content",
    "Fault",
    "FaultPlan",
    "HubFile",
    "HubServer",
    "LoopbackServer",
    "Repo",
    "RequestLog",
    "RequestRecord",
    "git_blob_sha1",
    "make_data",
]

TOKEN = "hf_mdltest0123456789abcdefghijklmnopqrstuv"
"""A token the Hub stand-in accepts by default (it is in `HubServer.valid_tokens`)."""

# The suffixes the Hub's default .gitattributes puts in LFS (abridged), plus model formats mdl cares
# about.
DEFAULT_LFS_SUFFIXES: tuple[str, ...] = (
    ".7z", ".arrow", ".bin", ".bz2", ".ckpt", ".ftz", ".gguf", ".gz", ".h5", ".joblib", ".mlmodel", ".model",
    ".msgpack", ".npy", ".npz", ".onnx", ".ot", ".parquet", ".pb", ".pickle", ".pkl", ".pt", ".pth", ".rar",
    ".safetensors", ".tar", ".tflite", ".tgz", ".wasm", ".xz", ".zip", ".zst",
)  # fmt: skip

_CHUNK = 1 << 20  # unthrottled bodies go out in 1 MiB memoryview slices: few syscalls, no copies
# 2026-01-01T00:00:00Z: stable Last-Modified / commit dates across runs
_FIXED_EPOCH = 1_767_225_600.0
_DISCONNECTS = (ConnectionError, TimeoutError)


def make_data(size: int, seed: int | str = 0) -> bytes:
    """Deterministic pseudo-random bytes (incompressible, so no transfer can cheat); a shorter
    size is a prefix of a longer one of the same seed. Fast for 100s of MB.
    """
    # BLAKE3's XOF (mdl's own dependency): 1.2 GB/s, 4x SHAKE-128; every worker collects the
    # modules' data (~1 GiB), so this was a third of a worker's collection.
    return blake3.blake3(f"mdl-test-data:{seed}".encode()).digest(length=size)


def git_blob_sha1(data: bytes) -> str:
    """The git blob id of `data`: what the Hub uses as ETag and listing `oid` for non-LFS files."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _http_date(ts: float) -> str:
    return formatdate(ts, usegmt=True)


def _iso_date(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(ts))


# ----------------------------------------------------------------------------------------------------------
# Content: the bytes behind a URL
# ----------------------------------------------------------------------------------------------------------


class Content:
    """Immutable bytes to serve, held in memory or read from a file (for benchmark-sized bodies).

    Hashes are computed lazily and cached, so registering a big file costs nothing until something
    asks.
    """

    def __init__(self, source: bytes | bytearray | memoryview | Path) -> None:
        self._path: Path | None = None
        self._data: memoryview | None = None
        if isinstance(source, Path):
            self._path = source
            self.size = source.stat().st_size
        else:
            # bytearray/memoryview could change under us; bytes are immutable and need no copy.
            data = source if isinstance(source, bytes) else bytes(source)
            self._data = memoryview(data)
            self.size = len(data)

    @property
    def path(self) -> Path | None:
        """The file behind this content, if it is served from disk."""
        return self._path

    def iter_chunks(self, start: int, end: int, chunk: int) -> Iterator[memoryview | bytes]:
        """Yield the bytes [start, end) in pieces of at most `chunk` bytes."""
        if self._data is not None:
            for pos in range(start, end, chunk):
                yield self._data[pos : min(pos + chunk, end)]
            return
        assert self._path is not None
        fd = os.open(self._path, os.O_RDONLY)
        try:
            pos = start
            while pos < end:
                piece = os.pread(fd, min(chunk, end - pos), pos)
                if not piece:
                    raise OSError(f"{self._path} shrank while being served")
                pos += len(piece)
                yield piece
        finally:
            os.close(fd)

    def read(self) -> bytes:
        """All the bytes (tests only; avoid for huge files)."""
        return b"".join(bytes(c) for c in self.iter_chunks(0, self.size, 8 * _CHUNK))

    def _hash(self, h: Any) -> str:
        for piece in self.iter_chunks(0, self.size, 8 * _CHUNK):
            h.update(piece)
        return str(h.hexdigest())

    @cached_property
    def sha256(self) -> str:
        """Hex sha256 of the content (the LFS oid)."""
        return self._hash(hashlib.sha256())

    @cached_property
    def md5(self) -> str:
        """Hex md5, used as the default S3-like ETag of directly registered CDN files."""
        return self._hash(hashlib.md5())

    @cached_property
    def git_sha1(self) -> str:
        """Git blob id of the content."""
        h = hashlib.sha1(b"blob %d\0" % self.size)
        return self._hash(h)


def _as_content(data: bytes | bytearray | memoryview | Path | Content) -> Content:
    return data if isinstance(data, Content) else Content(data)


# ----------------------------------------------------------------------------------------------------------
# Request log
# ----------------------------------------------------------------------------------------------------------


@dataclass
class RequestRecord:
    """One request as a server saw it, and what it answered.

    `bytes_sent` counts body bytes the socket took (counted just before each write, so it is exact
    once the client has the data; none the socket refused: a client that gave up on the request
    before its answer began got none of it); `complete` is True when the whole body was sent;
    `fault` names the fault applied.
    """

    server: str
    method: str
    path: str  # the raw request target, including the query string
    headers: dict[str, str]  # every request header, names lower-cased
    connection: int  # per-server TCP connection number: equal numbers mean keep-alive reuse
    time: float
    status: int = 0
    bytes_sent: int = 0
    complete: bool = False
    fault: str | None = None
    error: str | None = None  # why the body was cut short (client gone, fault), if it was

    def header(self, name: str) -> str | None:
        """A request header by case-insensitive name."""
        return self.headers.get(name.lower())

    @property
    def url_path(self) -> str:
        """The path without the query, still URL-quoted."""
        return urlsplit(self.path).path

    @property
    def query(self) -> dict[str, str]:
        """Query parameters (last value wins)."""
        return {
            k: v[-1] for k, v in parse_qs(urlsplit(self.path).query, keep_blank_values=True).items()
        }

    @property
    def authorization(self) -> str | None:
        """The Authorization header, if any."""
        return self.header("authorization")

    @property
    def range(self) -> str | None:
        """The Range header, if any."""
        return self.header("range")

    @property
    def if_range(self) -> str | None:
        """The If-Range header, if any."""
        return self.header("if-range")

    @property
    def asks_metadata(self) -> bool:
        """A HEAD, or a GET of the first byte alone (``Range: bytes=0-0``): what a file is (its
        size, version, where it redirects to), with at most one byte of its body."""
        return self.method == "HEAD" or (self.method == "GET" and self.range == "bytes=0-0")


class RequestLog:
    """Thread-safe list of `RequestRecord`s, appended when a response starts."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._records: list[RequestRecord] = []

    def append(self, record: RequestRecord) -> None:
        """Add a record (called by the servers)."""
        with self._lock:
            self._records.append(record)

    def records(
        self,
        *,
        method: str | None = None,
        path_prefix: str | None = None,
        status: int | None = None,
    ) -> list[RequestRecord]:
        """A snapshot of the records, optionally filtered (path_prefix is matched on the quoted
        path).
        """
        with self._lock:
            out = list(self._records)
        return [
            r
            for r in out
            if (method is None or r.method == method)
            and (path_prefix is None or r.url_path.startswith(path_prefix))
            and (status is None or r.status == status)
        ]

    def clear(self) -> None:
        """Forget everything logged so far."""
        with self._lock:
            self._records.clear()

    def body_bytes(self, **filters: Any) -> int:
        """Total body bytes sent by the matching records."""
        return sum(r.bytes_sent for r in self.records(**filters))

    def __len__(self) -> int:
        with self._lock:
            return len(self._records)

    def __iter__(self) -> Iterator[RequestRecord]:
        return iter(self.records())

    def __getitem__(self, index: int) -> RequestRecord:
        with self._lock:
            return self._records[index]


# ----------------------------------------------------------------------------------------------------------
# Faults
# ----------------------------------------------------------------------------------------------------------

FaultKind = Literal["status", "reset", "stall", "full_body", "expire", "call"]
_BODY_FAULTS = frozenset({"reset", "stall", "full_body"})
_SIDE_EFFECTS = frozenset({"expire", "call"})


@dataclass(eq=False)
class Fault:
    """One scripted misbehaviour, applied to the next `times` matching requests after `skip` of them
    pass.

    Build them with the class methods (`Fault.http_error`, `Fault.reset`, `Fault.stall`,
    `Fault.full_body`, `Fault.expire_urls`, `Fault.call`) and add them with
    `server.faults.add(...)`. `path_prefix` matches the request's URL path (quoted form, no query);
    `methods` defaults to every method for status/side-effect faults and to GET for body faults (a
    HEAD has no body to cut). `hits` counts the requests it hit.
    """

    kind: FaultKind
    path_prefix: str = ""
    methods: frozenset[str] | None = None
    times: int | None = 1  # None: forever
    skip: int = 0
    status: int = 503
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    after_bytes: int = 0
    seconds: float | None = None  # stall length; None: until the server stops
    # a stall that ends when this is set (or the server stops), not on a clock
    until: threading.Event | None = None
    resume: bool = False  # after a stall, send the rest instead of closing
    # abort with a TCP RST instead of a FIN (unsent kernel-buffered bytes may be lost)
    rst: bool = False
    action: Callable[[], object] | None = None
    seen: int = 0
    hits: int = 0

    @classmethod
    def http_error(
        cls,
        status: int = 503,
        body: str | bytes | None = None,
        *,
        retry_after: float | str | None = None,
        headers: Mapping[str, str] | None = None,
        **match: Any,
    ) -> Fault:
        """Answer `status` with a short text body; 503/429 carry `Retry-After: 1` unless told
        otherwise.
        """
        if retry_after is None and status in (429, 503):
            retry_after = 1
        hdrs = dict(headers or {})
        if retry_after is not None:
            hdrs["Retry-After"] = str(retry_after)
        text = body if body is not None else f"injected {status} error from the test server"
        return cls(
            "status",
            status=status,
            body=text.encode() if isinstance(text, str) else text,
            headers=hdrs,
            **match,
        )

    @classmethod
    def reset(cls, after_bytes: int = 0, *, rst: bool = False, **match: Any) -> Fault:
        """Send the headers and the first `after_bytes` of the body, then close the connection
        abruptly.
        """
        return cls("reset", after_bytes=after_bytes, rst=rst, **match)

    @classmethod
    def stall(
        cls,
        after_bytes: int = 0,
        seconds: float | None = None,
        *,
        resume: bool = False,
        until: threading.Event | None = None,
        **match: Any,
    ) -> Fault:
        """Send `after_bytes` of the body then go silent for `seconds` (None: until shutdown) or
        `until` that event is set, keeping the connection open; then close it, or send the rest if
        `resume`."""
        return cls(
            "stall", after_bytes=after_bytes, seconds=seconds, resume=resume, until=until, **match
        )

    @classmethod
    def full_body(cls, **match: Any) -> Fault:
        """Answer a Range request with a plain 200 and the whole body (matches only requests with
        Range).
        """
        return cls("full_body", **match)

    @classmethod
    def expire_urls(cls, **match: Any) -> Fault:
        """Expire every signed URL issued so far (bump the generation) just before handling the
        request.

        With `skip=N` on a path prefix this reads "after N requests, the signed URLs expire"."""
        return cls("expire", **match)

    @classmethod
    def call(cls, action: Callable[[], object], **match: Any) -> Fault:
        """Run `action()` (e.g. `lambda: hub.replace_file(...)`) just before handling the
        request.
        """
        return cls("call", action=action, **match)

    def _matches(self, method: str, path: str, has_range: bool) -> bool:
        if not path.startswith(self.path_prefix):
            return False
        if self.kind == "full_body" and not has_range:
            return False
        methods = self.methods
        if methods is None:
            methods = frozenset({"GET"}) if self.kind in _BODY_FAULTS else None
        return methods is None or method in methods


class FaultPlan:
    """The thread-safe, ordered list of pending faults of one server."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: list[Fault] = []

    def add(self, fault: Fault) -> Fault:
        """Queue a fault; returns it so a test can look at `fault.hits` later."""
        with self._lock:
            self._faults.append(fault)
        return fault

    def clear(self) -> None:
        """Drop every pending fault."""
        with self._lock:
            self._faults.clear()

    def pending(self) -> list[Fault]:
        """The faults not yet used up."""
        with self._lock:
            return list(self._faults)

    def take(self, method: str, path: str, has_range: bool) -> tuple[list[Fault], Fault | None]:
        """Pick the faults for one request: all matching side effects, the first matching
        response fault.
        """
        side: list[Fault] = []
        response: Fault | None = None
        with self._lock:
            for fault in list(self._faults):
                is_side = fault.kind in _SIDE_EFFECTS
                if (not is_side and response is not None) or not fault._matches(
                    method, path, has_range
                ):
                    continue
                fault.seen += 1
                if fault.seen <= fault.skip:
                    continue
                fault.hits += 1
                if fault.times is not None and fault.hits >= fault.times:
                    self._faults.remove(fault)
                if is_side:
                    side.append(fault)
                else:
                    response = fault
        return side, response


# ----------------------------------------------------------------------------------------------------------
# Range handling (RFC 9110 §14)
# ----------------------------------------------------------------------------------------------------------


class _Unsatisfiable(Exception):
    pass


def _parse_range(header: str, size: int) -> tuple[int, int] | None:
    """Parse a single `bytes=` range into [start, end); None means "ignore it and send 200" (RFC
    9110 §14.2: a server may ignore a Range it does not support, e.g. multiple ranges or a malformed
    one)."""
    unit, _, spec = header.strip().partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None
    first, dash, last = spec.strip().partition("-")
    if not dash:
        return None
    try:
        if first == "":  # suffix range: the last N bytes
            n = int(last)
            if n <= 0 or size == 0:
                raise _Unsatisfiable
            return max(0, size - n), size
        start = int(first)
        end = int(last) + 1 if last else None
    except ValueError:
        return None
    if start < 0 or (end is not None and end <= start):
        return None  # `bytes=5-3` is invalid syntax, which a server ignores
    if start >= size:
        raise _Unsatisfiable
    return start, size if end is None else min(end, size)


def _if_range_matches(if_range: str, etag: str | None, last_modified: str | None) -> bool:
    """If-Range holds iff it strongly matches the current ETag or equals Last-Modified (RFC 9110
    §13.1.5).
    """
    value = if_range.strip()
    if value.startswith(('"', "W/")):
        return etag is not None and not etag.startswith("W/") and value == etag
    return last_modified is not None and value == last_modified


# ----------------------------------------------------------------------------------------------------------
# Server plumbing
# ----------------------------------------------------------------------------------------------------------


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    # shutdown closes client sockets itself; joining idle keep-alive threads would hang
    block_on_close = False
    request_queue_size = 256  # 16+ parallel range connections must not hit SYN-retry delays
    owner: LoopbackServer

    def server_bind(self) -> None:
        """Bind without HTTPServer's reverse-DNS lookup of the address (slow or hanging in
        sandboxes).
        """
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Swallow client disconnects; keep anything else for the test to see (and print it
        once).
        """
        exc = sys.exc_info()[1]
        if isinstance(exc, _DISCONNECTS) or (
            isinstance(exc, OSError) and self.owner._stopping.is_set()
        ):
            return
        self.owner.errors.append(traceback.format_exc())
        traceback.print_exc()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive; every response carries Content-Length
    server: _HTTPServer
    conn_id: int

    def setup(self) -> None:
        super().setup()
        # Without TCP_NODELAY a headers write followed by a small body write can wait ~40 ms on
        # delayed ACKs.
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.conn_id = self.server.owner._track(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        except OSError:
            pass
        finally:
            self.server.owner._untrack(self.connection)

    def handle(self) -> None:
        try:
            super().handle()
        except _DISCONNECTS:
            pass  # the client went away: normal for resets, timeouts and aborted downloads
        except OSError:
            if not self.server.owner._stopping.is_set():
                raise

    def log_message(self, format: str, *args: Any) -> None:
        """Silence the per-request stderr lines."""

    def do_GET(self) -> None:
        self.server.owner._dispatch(self)

    def do_HEAD(self) -> None:
        self.server.owner._dispatch(self)

    def _with_body(self) -> None:
        self.server.owner._dispatch(self)

    do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _with_body


class Exchange:
    """One request being answered: parsed request data plus helpers that log what is sent."""

    def __init__(self, server: LoopbackServer, handler: _Handler) -> None:
        self.server = server
        self.handler = handler
        self.method = handler.command
        split = urlsplit(handler.path)
        self.path = split.path  # still quoted
        self.query = {k: v[-1] for k, v in parse_qs(split.query, keep_blank_values=True).items()}
        self.headers = handler.headers
        length = int(handler.headers.get("Content-Length") or 0)
        # Always read the body: an unread body would be parsed as the next request on this
        # connection.
        self.body = handler.rfile.read(length) if length else b""
        self.fault: Fault | None = None
        self.record = RequestRecord(
            server=server.name,
            method=self.method,
            path=handler.path,
            headers={k.lower(): v for k, v in handler.headers.items()},
            connection=handler.conn_id,
            time=server.clock(),
        )

    # -- sending
    # -------------------------------------------------------------------------------------------

    def start(self, status: int, headers: Mapping[str, str]) -> None:
        """Send the status line and headers (Content-Length must be among them) and log the
        request.
        """
        self.record.status = status
        if self.fault is not None and self.fault.kind in _BODY_FAULTS:
            self.record.fault = self.fault.kind
        self.server.log.append(self.record)
        h = self.handler
        h.send_response(status)
        for name, value in headers.items():
            h.send_header(name, value)
        h.end_headers()

    def send_bytes(
        self,
        status: int,
        body: bytes = b"",
        headers: Mapping[str, str] | None = None,
        content_type: str = "text/plain; charset=utf-8",
    ) -> None:
        """A complete small response."""
        hdrs = {"Content-Type": content_type, **(headers or {}), "Content-Length": str(len(body))}
        self.start(status, hdrs)
        if self.method != "HEAD":
            self.write_body(Content(body), 0, len(body))
        else:
            self.record.complete = True

    def send_json(
        self, obj: Any, status: int = 200, headers: Mapping[str, str] | None = None
    ) -> None:
        """A JSON response."""
        body = json.dumps(obj).encode()
        self.send_bytes(status, body, headers, content_type="application/json; charset=utf-8")

    def redirect(
        self, location: str, status: int = 302, headers: Mapping[str, str] | None = None
    ) -> None:
        """A redirect with an empty body."""
        self.send_bytes(status, b"", {**(headers or {}), "Location": location})

    def send_content(
        self,
        content: Content,
        *,
        etag: str | None,
        last_modified: str | None = None,
        content_type: str = "application/octet-stream",
        headers: Mapping[str, str] | None = None,
    ) -> None:
        """Serve `content` with Range / If-Range support (RFC 9110 §14, §13.1.5)."""
        size = content.size
        status, start, end = 200, 0, size
        base: dict[str, str] = {"Accept-Ranges": "bytes", "Content-Type": content_type}
        if etag:
            base["ETag"] = etag
        if last_modified:
            base["Last-Modified"] = last_modified
        base.update(headers or {})
        range_header = self.headers.get("Range")
        if_range = self.headers.get("If-Range")
        honour = (
            range_header is not None
            and not self.server.ignore_ranges
            and not (self.fault is not None and self.fault.kind == "full_body")
            and (if_range is None or _if_range_matches(if_range, etag, last_modified))
        )
        if honour:
            assert range_header is not None
            try:
                selected = _parse_range(range_header, size)
            except _Unsatisfiable:
                self.send_bytes(
                    416, b"", {**base, "Content-Range": f"bytes */{size}"}, content_type
                )
                return
            if selected is not None:
                status, (start, end) = 206, selected
                base["Content-Range"] = f"bytes {start}-{end - 1}/{size}"
        base["Content-Length"] = str(end - start)
        self.start(status, base)
        if self.method == "HEAD":
            self.record.complete = True
            return
        self.write_body(content, start, end)

    def write_body(self, content: Content, start: int, end: int) -> None:
        """Write [start, end) of `content`, honouring throttling and reset/stall faults."""
        fault = (
            self.fault if self.fault is not None and self.fault.kind in ("reset", "stall") else None
        )
        stop_at = min(end, start + fault.after_bytes) if fault is not None else end
        bps = self.server.throttle_bps
        chunk = _CHUNK if not bps else max(1024, min(64 * 1024, int(bps / 50)))
        wfile = self.handler.wfile
        record = self.record
        began = time.monotonic()
        sent = 0
        try:
            sent = self._write_range(content, start, stop_at, chunk, bps, began, sent)
            # A stall that ends its connection, past a body's end, holds nothing: the answer went
            # whole, and the client's next request on the connection would wait out its timeout
            # (a resuming one still holds it: hold_after keeps a run's next request waiting so).
            if fault is None or (
                fault.kind == "stall" and not fault.resume and start < stop_at == end
            ):
                if stop_at == end:
                    record.complete = True  # also covers empty bodies
                return
            record.complete = stop_at == end
            record.error = f"fault:{fault.kind}"
            if fault.kind == "stall":
                if fault.until is not None:
                    while not fault.until.wait(0.05) and not self.server._stopping.is_set():
                        pass
                else:
                    self.server._stopping.wait(fault.seconds)
                if fault.resume and not self.server._stopping.is_set():
                    record.error = None
                    self._write_range(content, stop_at, end, chunk, bps, began, sent)
                    record.complete = True
                    return
            self.abort(rst=fault.rst)
        except OSError as exc:
            record.complete = False
            record.error = f"{type(exc).__name__}: {exc}"
            self.handler.close_connection = True
            raise
        finally:
            with contextlib.suppress(OSError):
                wfile.flush()

    def _write_range(
        self,
        content: Content,
        start: int,
        end: int,
        chunk: int,
        bps: float | None,
        began: float,
        sent: int,
    ) -> int:
        record = self.record
        if content.path is not None and not bps:
            return self._sendfile_range(content.path, start, end, sent)
        for piece in content.iter_chunks(start, end, chunk):
            n = len(piece)
            piece = self._flipped(piece, start)
            if start + n >= end and (self.fault is None or self.fault.kind == "full_body"):
                # set before the last write so a client that has it all sees True
                record.complete = True
            self._send(piece)
            start += n
            sent += n
            if bps:
                ahead = sent / bps - (time.monotonic() - began)
                if ahead > 0 and self.server._stopping.wait(ahead):
                    raise ConnectionAbortedError("server stopping")
        return sent

    def _flipped(self, piece: memoryview | bytes, start: int) -> memoryview | bytes:
        """``piece`` (bytes ``start``…) with each byte a flip asks for inverted."""
        for flip in self.server.flips:
            at, times = flip
            if times > 0 and start <= at < start + len(piece):
                flip[1] -= 1
                changed = bytearray(piece)
                changed[at - start] ^= 0xFF
                piece = changed
        return piece

    def _send(self, piece: memoryview | bytes) -> None:
        """Hand ``piece`` to the socket, each byte counted just before the socket takes it, none
        it refused.
        """
        view = memoryview(piece).cast("B")
        sock = self.handler.connection
        while view:
            self.record.bytes_sent += len(view)
            try:
                took = sock.send(view)
            except OSError:
                self.record.bytes_sent -= len(view)
                raise
            self.record.bytes_sent -= len(view) - took
            view = view[took:]

    def _sendfile_range(self, path: Path, start: int, end: int, sent: int) -> int:
        """Zero-copy file → socket (os.sendfile): keeps a benchmark's server off the CPU the
        client needs.
        """
        record = self.record
        sock_fd = self.handler.connection.fileno()
        fd = os.open(path, os.O_RDONLY)
        try:
            while start < end:
                n = min(8 * _CHUNK, end - start)
                if start + n >= end and (self.fault is None or self.fault.kind == "full_body"):
                    record.complete = True
                record.bytes_sent += n
                try:
                    done = os.sendfile(sock_fd, fd, start, n)
                except OSError:
                    record.bytes_sent -= n  # refused: the peer is gone
                    raise
                record.bytes_sent -= n - done
                if done == 0:
                    raise OSError(f"{path} shrank while being served")
                start += done
                sent += done
        finally:
            os.close(fd)
        return sent

    def abort(self, *, rst: bool = False) -> None:
        """Close the connection now, mid-response (FIN, or RST when `rst`)."""
        self.handler.close_connection = True
        sock = self.handler.connection
        with contextlib.suppress(OSError):
            self.handler.wfile.flush()
            if rst:
                # SO_LINGER with a zero timeout turns close() into a RST (the client sees
                # ECONNRESET). The handler's rfile still references the socket, so socket.close()
                # would not close the fd (and the later shutdown would send a FIN first): detach and
                # close the descriptor ourselves.
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                os.close(sock.detach())
            else:
                sock.shutdown(socket.SHUT_RDWR)


class LoopbackServer:
    """A threaded HTTP/1.1 server on 127.0.0.1:<free port> with a request log, faults and redirects.

    Subclasses implement `route(exchange)`. The socket is bound at construction, so `url` is known
    before `start()`; use as a context manager or call `start()` / `stop()`.
    """

    name: ClassVar[str] = "server"

    def __init__(self, *, host_alias: str = "127.0.0.1", throttle_bps: float | None = None) -> None:
        self.log = RequestLog()
        self.faults = FaultPlan()
        self.throttle_bps = throttle_bps  # per response stream; None = as fast as loopback goes
        # [offset, times]: the byte at that offset of any body is sent flipped, the next `times`
        # bodies that carry it (a wrong byte on the wire: bodies from memory only)
        self.flips: list[list[int]] = []
        # True: every request gets 200 and the full body (still advertising bytes)
        self.ignore_ranges = False
        # a link that is down while this says so: every request is reset (RST) before an answer
        self.link_down: Callable[[], bool] | None = None
        # unexpected exceptions inside the server (tests may assert it stays empty)
        self.errors: list[str] = []
        # when a request came (its record's ``time``): a test's clock, when the client waits on it
        self.clock: Callable[[], float] = time.time
        self._host_alias = host_alias
        self._redirects: dict[str, tuple[str, int]] = {}
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._conns: set[socket.socket] = set()
        self._conn_ids = itertools.count(1)
        self._thread: threading.Thread | None = None
        self._httpd = _HTTPServer(("127.0.0.1", 0), _Handler)
        self._httpd.owner = self

    # -- lifecycle
    # -----------------------------------------------------------------------------------------

    @property
    def port(self) -> int:
        """The bound TCP port."""
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        """Base URL, no trailing slash (host is `host_alias`, 127.0.0.1 by default)."""
        return f"http://{self._host_alias}:{self.port}"

    def start(self) -> Self:
        """Serve in a daemon thread; returns self."""
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._httpd.serve_forever,
                kwargs={"poll_interval": 0.05},
                name=f"{self.name}-server",
            )
            self._thread.daemon = True
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, wake stalled responses, close every client connection and the listening
        socket.
        """
        self._stopping.set()
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join(timeout=5)
        with self._lock:
            conns = list(self._conns)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        self._httpd.server_close()

    def drop_connections(self) -> None:
        """Cut every open client connection now, mid-answer (a link that drops)."""
        with self._lock:
            conns = list(self._conns)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _track(self, conn: socket.socket) -> int:
        with self._lock:
            self._conns.add(conn)
            return next(self._conn_ids)

    def _untrack(self, conn: socket.socket) -> None:
        with self._lock:
            self._conns.discard(conn)

    # -- configuration
    # -------------------------------------------------------------------------------------

    def add_redirect(self, path: str, target: str, status: int = 302) -> str:
        """Redirect `path` (unquoted, like add_file) to `target` (absolute or relative); returns
        its URL.
        """
        self._redirects[quote(path)] = (target, status)
        return self.url + quote(path)

    # -- dispatch
    # ------------------------------------------------------------------------------------------

    def _dispatch(self, handler: _Handler) -> None:
        ex = Exchange(self, handler)
        if self.link_down is not None and self.link_down():
            ex.record.fault = "down"
            ex.abort(rst=True)
            return
        side, fault = self.faults.take(ex.method, ex.path, "Range" in ex.headers)
        for effect in side:
            self._apply_side_effect(effect, ex)
        if not self.allows(ex):
            ex.send_bytes(405, b"method not allowed\n", {"Allow": "GET, HEAD"})
            return
        if fault is not None and fault.kind == "status":
            ex.record.fault = "status"
            ex.send_bytes(fault.status, fault.body, fault.headers)
            return
        ex.fault = fault
        if ex.path in self._redirects:
            target, status = self._redirects[ex.path]
            ex.redirect(target, status)
            return
        self.route(ex)

    def _apply_side_effect(self, fault: Fault, ex: Exchange) -> None:
        if fault.kind == "call" and fault.action is not None:
            fault.action()

    def allows(self, ex: Exchange) -> bool:
        """Whether the method is served at all (else 405)."""
        return ex.method in ("GET", "HEAD")

    def route(self, ex: Exchange) -> None:
        """Answer one request (subclasses)."""
        ex.send_bytes(404, b"not found\n")


# ----------------------------------------------------------------------------------------------------------
# CDN
# ----------------------------------------------------------------------------------------------------------


@dataclass
class _Entry:
    content: Content
    etag: str | None
    last_modified: str
    content_type: str
    headers: dict[str, str]
    signed: bool
    required_headers: dict[str, str]


class CdnServer(LoopbackServer):
    """A CDN / object store stand-in: files by path, Hub blobs by sha256, signed URLs, faults.

    Signed URLs look like `...?X-Amz-Signature=<hex>&X-Amz-Expires=3600&gen=<n>`.
    `expire_signed_urls()` (or a `Fault.expire_urls`) bumps the generation; older URLs then get 403
    `AccessDenied` / "Request has expired", and anything signed afterwards (e.g. by re-resolving at
    the Hub) works.
    """

    name = "cdn"

    def __init__(
        self,
        *,
        host_alias: str = "127.0.0.1",
        throttle_bps: float | None = None,
        require_signatures: bool = True,
    ) -> None:
        super().__init__(host_alias=host_alias, throttle_bps=throttle_bps)
        # False: signed paths also work without a query
        self.require_signatures = require_signatures
        self.generation = 1
        self._secret = os.urandom(16)
        self._entries: dict[str, _Entry] = {}

    def add_file(
        self,
        path: str,
        data: bytes | bytearray | memoryview | Path | Content,
        *,
        etag: str | None = None,
        last_modified: float | None = None,
        content_type: str = "application/octet-stream",
        headers: Mapping[str, str] | None = None,
        signed: bool = False,
        required_headers: Mapping[str, str] | None = None,
        dated: bool = True,
    ) -> str:
        """Serve `data` at `path` (given unquoted, e.g. "/files/a b.bin"); returns the URL.

        Re-adding a path replaces the file (new default ETag), as a re-uploaded object would. `etag`
        defaults to the quoted md5 like S3; pass "" for no ETag at all (and `dated=False` for no
        Last-Modified). `signed` requires a valid signed query (see `signed_url`).
        `required_headers` (e.g. an Authorization) must be sent exactly: 401 when absent, 403 when
        wrong.
        """
        content = _as_content(data)
        quoted = quote(path)
        self._entries[quoted] = _Entry(
            content=content,
            etag=f'"{content.md5}"' if etag is None else (etag or None),
            last_modified=(
                _http_date(_FIXED_EPOCH if last_modified is None else last_modified)
                if dated
                else ""
            ),
            content_type=content_type,
            headers=dict(headers or {}),
            signed=signed,
            required_headers=dict(required_headers or {}),
        )
        return self.signed_url(path) if signed else self.url + quoted

    def remove_file(self, path: str) -> None:
        """Stop serving `path` (then 404)."""
        self._entries.pop(quote(path), None)

    def add_blob(self, content: Content) -> str:
        """Register a Hub LFS blob (ETag = quoted sha256, signed) and return its path (unsigned)."""
        path = f"/blobs/{content.sha256}"
        if path not in self._entries:
            self._entries[path] = _Entry(
                content=content,
                etag=f'"{content.sha256}"',
                last_modified=_http_date(_FIXED_EPOCH),
                content_type="application/octet-stream",
                headers={},
                signed=True,
                required_headers={},
            )
        return path

    def signed_url(self, path: str, *, expires: int = 3600) -> str:
        """A signed URL for `path` (unquoted) valid for the current generation."""
        quoted = quote(path)
        gen = self.generation
        query = urlencode(
            {
                "X-Amz-Signature": self._signature(quoted, gen, expires),
                "X-Amz-Expires": expires,
                "gen": gen,
            }
        )
        return f"{self.url}{quoted}?{query}"

    def expire_signed_urls(self) -> None:
        """Expire every signed URL issued so far."""
        with self._lock:
            self.generation += 1

    def _signature(self, quoted_path: str, gen: int, expires: int | str) -> str:
        msg = f"{quoted_path}\n{gen}\n{expires}".encode()
        return hmac.new(self._secret, msg, hashlib.sha256).hexdigest()

    def _apply_side_effect(self, fault: Fault, ex: Exchange) -> None:
        if fault.kind == "expire":
            self.expire_signed_urls()
        super()._apply_side_effect(fault, ex)

    def _access_denied(self, ex: Exchange, code: str, message: str) -> None:
        body = (
            '<?xml version="1.0"'
            f' encoding="UTF-8"?>\n<Error><Code>{code}</Code><Message>{message}</Message></Error>\n'
        ).encode()
        ex.send_bytes(403, body, content_type="application/xml")

    def route(self, ex: Exchange) -> None:
        """Serve a registered file or blob."""
        entry = self._entries.get(ex.path)
        if entry is None:
            ex.send_bytes(404, b"not found\n")
            return
        if entry.signed and (self.require_signatures or "X-Amz-Signature" in ex.query):
            sig, gen, expires = (
                ex.query.get(k, "") for k in ("X-Amz-Signature", "gen", "X-Amz-Expires")
            )
            if not sig or not gen.isdigit() or not expires:
                self._access_denied(
                    ex, "AccessDenied", "Query-string authentication requires a signature"
                )
                return
            if not hmac.compare_digest(sig, self._signature(ex.path, int(gen), expires)):
                self._access_denied(
                    ex, "SignatureDoesNotMatch", "The request signature does not match"
                )
                return
            if int(gen) < self.generation:
                self._access_denied(ex, "AccessDenied", "Request has expired")
                return
        for name, value in entry.required_headers.items():
            got = ex.headers.get(name)
            if got != value:
                ex.send_bytes(401 if got is None else 403, f"{name} required\n".encode())
                return
        ex.send_content(
            entry.content,
            etag=entry.etag,
            last_modified=entry.last_modified,
            content_type=entry.content_type,
            headers=entry.headers,
        )


# ----------------------------------------------------------------------------------------------------------
# Hub
# ----------------------------------------------------------------------------------------------------------

RepoType = Literal["model", "dataset", "space"]
_URL_PREFIX: dict[str, str] = {"model": "", "dataset": "datasets/", "space": "spaces/"}
_API_TYPES: dict[str, RepoType] = {"models": "model", "datasets": "dataset", "spaces": "space"}


def _is_safe_repo_path(path: str) -> bool:
    parts = path.split("/")
    return bool(path) and not path.startswith("/") and all(p not in ("", ".", "..") for p in parts)


@dataclass(frozen=True)
class HubFile:
    """A file in a commit: its content and whether it is stored in LFS."""

    path: str
    content: Content
    lfs: bool

    @property
    def size(self) -> int:
        """Size in bytes."""
        return self.content.size

    @property
    def sha256(self) -> str:
        """sha256 of the content."""
        return self.content.sha256

    @property
    def pointer(self) -> bytes:
        """The git-lfs pointer file that git stores in place of an LFS file."""
        text = (
            f"version https://git-lfs.github.com/spec/v1\noid sha256:{self.sha256}\nsize"
            f" {self.size}\n"
        )
        return text.encode()

    @property
    def oid(self) -> str:
        """The git blob id the Hub lists: of the content, or of the LFS pointer for LFS files."""
        return git_blob_sha1(self.pointer) if self.lfs else self.content.git_sha1

    @property
    def etag(self) -> str:
        """The identity the Hub reports: sha256 for LFS, git blob sha1 otherwise."""
        return self.sha256 if self.lfs else self.content.git_sha1


@dataclass(frozen=True)
class Commit:
    """An immutable snapshot of a repo."""

    sha: str
    files: Mapping[str, HubFile]
    title: str
    timestamp: float


@dataclass
class Repo:
    """A repo on the Hub stand-in. Mutate it through `HubServer` methods, read it freely."""

    repo_id: str
    repo_type: RepoType
    gated: Literal["auto", "manual"] | Literal[False] = False
    private: bool = False
    # the real Hub shows gated repos' metadata and tree to anyone; True gates those too
    gate_api: bool = False
    # for gated/private repos: None = every valid token has access
    granted_tokens: set[str] | None = None
    lfs_threshold: int = 10 * 1024 * 1024
    lfs_suffixes: tuple[str, ...] = DEFAULT_LFS_SUFFIXES
    allow_unsafe_paths: bool = False
    commits: dict[str, Commit] = field(default_factory=dict)
    branches: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)

    @property
    def sha(self) -> str:
        """The commit `main` points at."""
        return self.branches["main"]

    @property
    def head(self) -> Commit:
        """The commit `main` points at."""
        return self.commits[self.sha]

    @property
    def files(self) -> Mapping[str, HubFile]:
        """The files on `main`."""
        return self.head.files

    def file(self, path: str, revision: str = "main") -> HubFile:
        """A file at a revision (KeyError if absent)."""
        commit = self.resolve_revision(revision)
        if commit is None:
            raise KeyError(revision)
        return commit.files[path]

    def resolve_revision(self, revision: str) -> Commit | None:
        """Branch, tag or full commit sha → commit."""
        sha = self.branches.get(revision) or self.tags.get(revision) or revision
        return self.commits.get(sha)

    def is_lfs(self, path: str, size: int) -> bool:
        """Whether a file of this path and size goes to LFS."""
        return path.lower().endswith(self.lfs_suffixes) or size >= self.lfs_threshold


class HubServer(LoopbackServer):
    """The Hugging Face Hub stand-in, with its own `CdnServer` unless one is given.

    Tokens: a request whose `Authorization: Bearer` token is not in `valid_tokens` gets 401 "Invalid
    credentials in Authorization header" (as the real Hub does, even for public repos).
    `missing_repo_status` is 404 by default (the real Hub answers 401 to anonymous callers; set it
    to 401 to test that).
    """

    name = "hub"

    def __init__(
        self,
        cdn: CdnServer | None = None,
        *,
        valid_tokens: Iterable[str] = (TOKEN,),
        page_size: int = 1000,
        host_alias: str = "127.0.0.1",
    ) -> None:
        super().__init__(host_alias=host_alias)
        self._owns_cdn = cdn is None
        self.cdn = cdn if cdn is not None else CdnServer()
        self.valid_tokens: set[str] = set(valid_tokens)
        self.page_size = page_size
        self.missing_repo_status = 404
        # opt-in: an LFS file's sha256 -> the xetHash its listing entry shows
        self.xet_hashes: dict[str, object] = {}
        self.repos: dict[tuple[str, str], Repo] = {}
        self._commit_counter = itertools.count(1)

    def start(self) -> Self:
        """Start the Hub (and its CDN when it owns it)."""
        if self._owns_cdn:
            self.cdn.start()
        return super().start()

    def stop(self) -> None:
        """Stop the Hub (and its CDN when it owns it)."""
        super().stop()
        if self._owns_cdn:
            self.cdn.stop()

    # -- building repos
    # ------------------------------------------------------------------------------------

    def add_repo(
        self,
        repo_id: str,
        files: Mapping[str, bytes | bytearray | memoryview | Path | Content],
        *,
        repo_type: RepoType = "model",
        gated: bool | Literal["auto", "manual"] = False,
        private: bool = False,
        gate_api: bool = False,
        granted_tokens: Iterable[str] | None = None,
        lfs_threshold: int = 10 * 1024 * 1024,
        lfs_suffixes: Iterable[str] = DEFAULT_LFS_SUFFIXES,
        allow_unsafe_paths: bool = False,
        title: str = "Initial commit",
    ) -> Repo:
        """Create a repo whose `main` holds `files` ({path: data}); returns it.

        `allow_unsafe_paths` lets hostile paths like "../evil.txt" or "/abs" in (they are listed and
        served), so path validation in the client can be tested.
        """
        if repo_type not in _URL_PREFIX:
            raise ValueError(f"bad repo_type {repo_type!r}")
        repo = Repo(
            repo_id=repo_id,
            repo_type=repo_type,
            gated="auto" if gated is True else gated,
            private=private,
            gate_api=gate_api,
            granted_tokens=set(granted_tokens) if granted_tokens is not None else None,
            lfs_threshold=lfs_threshold,
            lfs_suffixes=tuple(s.lower() for s in lfs_suffixes),
            allow_unsafe_paths=allow_unsafe_paths,
        )
        self.repos[(repo_type, repo_id)] = repo
        self.commit(repo_id, dict(files), repo_type=repo_type, title=title)
        return repo

    def repo(self, repo_id: str, repo_type: RepoType = "model") -> Repo:
        """A repo by id (KeyError if absent)."""
        return self.repos[(repo_type, repo_id)]

    def commit(
        self,
        repo_id: str,
        changes: Mapping[str, bytes | bytearray | memoryview | Path | Content | None],
        *,
        repo_type: RepoType = "model",
        branch: str = "main",
        title: str = "Update files",
    ) -> str:
        """Make a commit on `branch` adding/replacing files (None deletes one); returns the new
        40-hex sha.

        Older commits stay resolvable by sha; their LFS blobs stay on the CDN.
        """
        repo = self.repo(repo_id, repo_type)
        parent = repo.branches.get(branch)
        files: dict[str, HubFile] = dict(repo.commits[parent].files) if parent else {}
        for path, data in changes.items():
            if not repo.allow_unsafe_paths and not _is_safe_repo_path(path):
                raise ValueError(
                    f"unsafe repo path {path!r} (pass allow_unsafe_paths=True to mean it)"
                )
            if data is None:
                files.pop(path, None)
                continue
            content = _as_content(data)
            hub_file = HubFile(path=path, content=content, lfs=repo.is_lfs(path, content.size))
            if hub_file.lfs:
                self.cdn.add_blob(content)
            files[path] = hub_file
        n = next(self._commit_counter)
        ident = f"{repo_type}/{repo_id}\n{parent}\n{n}\n" + "\n".join(
            f"{p}:{f.oid}" for p, f in sorted(files.items())
        )
        sha = hashlib.sha1(ident.encode()).hexdigest()
        repo.commits[sha] = Commit(
            sha=sha, files=files, title=title, timestamp=_FIXED_EPOCH + n * 60
        )
        repo.branches[branch] = sha
        return sha

    def replace_file(
        self,
        repo_id: str,
        path: str,
        data: bytes | bytearray | memoryview | Path | Content,
        *,
        repo_type: RepoType = "model",
        branch: str = "main",
    ) -> str:
        """Commit a new version of one file; returns the new commit sha."""
        return self.commit(
            repo_id, {path: data}, repo_type=repo_type, branch=branch, title=f"Update {path}"
        )

    def delete_file(
        self, repo_id: str, path: str, *, repo_type: RepoType = "model", branch: str = "main"
    ) -> str:
        """Commit the removal of one file; returns the new commit sha."""
        return self.commit(
            repo_id, {path: None}, repo_type=repo_type, branch=branch, title=f"Delete {path}"
        )

    def create_branch(
        self, repo_id: str, branch: str, revision: str = "main", *, repo_type: RepoType = "model"
    ) -> str:
        """Point a (new) branch at `revision`; returns its commit sha."""
        repo = self.repo(repo_id, repo_type)
        commit = repo.resolve_revision(revision)
        if commit is None:
            raise KeyError(revision)
        repo.branches[branch] = commit.sha
        return commit.sha

    def create_tag(
        self, repo_id: str, tag: str, revision: str = "main", *, repo_type: RepoType = "model"
    ) -> str:
        """Tag `revision`; returns its commit sha."""
        repo = self.repo(repo_id, repo_type)
        commit = repo.resolve_revision(revision)
        if commit is None:
            raise KeyError(revision)
        repo.tags[tag] = commit.sha
        return commit.sha

    # -- URLs
    # ----------------------------------------------------------------------------------------------

    def file_url(
        self, repo_id: str, path: str, revision: str = "main", *, repo_type: RepoType = "model"
    ) -> str:
        """The resolve URL, built like `huggingface_hub.hf_hub_url`."""
        return f"{self.url}/{_URL_PREFIX[repo_type]}{repo_id}/resolve/{quote(revision, safe='')}/{quote(path)}"

    def blob_url(
        self, repo_id: str, path: str, revision: str = "main", *, repo_type: RepoType = "model"
    ) -> str:
        """A freshly signed CDN URL for an LFS file (what resolve would redirect to now)."""
        hub_file = self.repo(repo_id, repo_type).file(path, revision)
        return self.cdn.signed_url(self.cdn.add_blob(hub_file.content))

    # -- routing
    # -------------------------------------------------------------------------------------------

    def _error(self, ex: Exchange, status: int, code: str | None, message: str) -> None:
        headers = {"X-Error-Message": message}
        if code:
            headers["X-Error-Code"] = code
        ex.send_json({"error": message}, status=status, headers=headers)

    def _find_repo(
        self, repo_type: RepoType, segs: list[str], marker: str | None
    ) -> tuple[str, int]:
        """Split decoded `segs` into a repo id ("org/name", or a legacy one-segment id like "gpt2")
        and the index of what follows it. `marker` is the word expected right after the id
        ("resolve", "tree")."""
        if len(segs) >= 2 and (repo_type, f"{segs[0]}/{segs[1]}") in self.repos:
            return f"{segs[0]}/{segs[1]}", 2
        if len(segs) == 1 or (marker is not None and segs[1] == marker):
            return segs[0], 1
        # Unknown repo: report the id the URL most likely meant.
        return f"{segs[0]}/{segs[1]}", 2

    def _token(self, ex: Exchange) -> tuple[str | None, bool]:
        """(token, ok): ok is False when a token was sent that we do not know."""
        auth = ex.headers.get("Authorization")
        if not auth:
            return None, True
        scheme, _, token = auth.partition(" ")
        token = token.strip()
        return token, scheme.lower() == "bearer" and token in self.valid_tokens

    def _check_access(
        self, ex: Exchange, repo: Repo | None, repo_id: str, *, file_access: bool
    ) -> Repo | None:
        """Apply the Hub's auth rules; returns the repo if the request may go on (else the error
        is sent).
        """
        token, token_ok = self._token(ex)
        if not token_ok:
            self._error(ex, 401, None, "Invalid credentials in Authorization header")
            return None
        if repo is None:
            self._error(ex, self.missing_repo_status, "RepoNotFound", "Repository not found")
            return None
        granted = token is not None and (
            repo.granted_tokens is None or token in repo.granted_tokens
        )
        if repo.private and not granted:
            # The real Hub hides private repos: same answer as a missing one, as a 401.
            self._error(ex, 401, "RepoNotFound", "Repository not found")
            return None
        if repo.gated and (file_access or repo.gate_api) and not granted:
            kind = repo.repo_type
            if token is None:
                message = (
                    f"Access to {kind} {repo.repo_id} is restricted. You must have access to it and"
                    " be authenticated to access it. Please log in."
                )
                self._error(ex, 401, "GatedRepo", message)
            else:
                message = (
                    f"Access to {kind} {repo.repo_id} is restricted and you are not in the"
                    f" authorized list. Visit {self.url}/{_URL_PREFIX[kind]}{repo.repo_id} to ask"
                    " for access."
                )
                self._error(ex, 403, "GatedRepo", message)
            return None
        return repo

    def _split_revision(self, repo: Repo, segs: list[str]) -> tuple[Commit | None, str, list[str]]:
        """Take the revision off the front of `segs`: one (possibly %2F-encoded) segment, or several
        raw segments when they spell a branch with slashes like refs/pr/1."""
        first = unquote(segs[0]) if segs else ""
        for k in range(1, len(segs) + 1):
            candidate = "/".join(unquote(s) for s in segs[:k])
            commit = repo.resolve_revision(candidate)
            if commit is not None:
                return commit, candidate, segs[k:]
        return None, first, segs[1:]

    def allows(self, ex: Exchange) -> bool:
        """GET/HEAD everywhere, and POST for `paths-info`."""
        return super().allows(ex) or (ex.method == "POST" and "/paths-info/" in ex.path)

    def route(self, ex: Exchange) -> None:
        """Dispatch API and resolve requests."""
        segs = ex.path.split("/")[1:]
        if len(segs) >= 3 and segs[0] == "api" and segs[1] in _API_TYPES:
            self._route_api(ex, _API_TYPES[segs[1]], segs[2:])
            return
        repo_type: RepoType = "model"
        if segs and segs[0] in ("datasets", "spaces"):
            repo_type = "dataset" if segs[0] == "datasets" else "space"
            segs = segs[1:]
        if "resolve" in segs[1:3]:
            self._route_resolve(ex, repo_type, segs)
            return
        if "blob" in segs[1:3]:  # the Hub's web page of a file: HTML, whatever the file is
            page = (
                f"<!doctype html><html><head><title>{escape(ex.path)}</title></head><body>a"
                " file</body></html>"
            )
            ex.send_bytes(200, page.encode(), content_type="text/html; charset=utf-8")
            return
        self._error(ex, 404, None, "Not found")

    def _route_resolve(self, ex: Exchange, repo_type: RepoType, segs: list[str]) -> None:
        repo_id, i = self._find_repo(repo_type, [unquote(s) for s in segs], "resolve")
        repo = self._check_access(
            ex, self.repos.get((repo_type, repo_id)), repo_id, file_access=True
        )
        if repo is None:
            return
        commit, revision, rest = self._split_revision(repo, segs[i + 1 :])
        if commit is None:
            self._error(ex, 404, "RevisionNotFound", f"Invalid rev id: {quote(revision)}")
            return
        path = "/".join(unquote(s) for s in rest)
        hub_file = commit.files.get(path)
        if hub_file is None:
            self._error(ex, 404, "EntryNotFound", "Entry not found")
            return
        common = {"X-Repo-Commit": commit.sha, "Vary": "Origin, Range"}
        if hub_file.lfs:
            location = self.cdn.signed_url(self.cdn.add_blob(hub_file.content))
            headers = {
                **common,
                "X-Linked-Etag": f'"{hub_file.sha256}"',
                "X-Linked-Size": str(hub_file.size),
                "ETag": f'"{hub_file.sha256}"',
                **self.lfs_headers(repo, commit, path),
            }
            ex.redirect(location, 302, headers)
            return
        name = path.rsplit("/", 1)[-1]
        ex.send_content(
            hub_file.content,
            etag=f'"{hub_file.oid}"',
            content_type="application/octet-stream",
            headers={
                **common,
                "Content-Disposition": (
                    f"inline; filename*=UTF-8''{quote(name)}; filename=\"{quote(name)}\";"
                ),
            },
        )

    def lfs_headers(self, repo: Repo, commit: Commit, path: str) -> dict[str, str]:
        """Extra headers on an LFS file's resolve answer (a hook for subclasses, e.g. Xet's);
        none here.
        """
        return {}

    def _route_api(self, ex: Exchange, repo_type: RepoType, segs: list[str]) -> None:
        decoded = [unquote(s) for s in segs]
        marker = next((m for m in ("revision", "tree", "paths-info") if m in decoded[1:3]), None)
        repo_id, i = self._find_repo(repo_type, decoded, marker)
        repo = self._check_access(
            ex, self.repos.get((repo_type, repo_id)), repo_id, file_access=False
        )
        if repo is None:
            return
        rest = segs[i:]
        if not rest or rest == [""]:
            self._send_info(ex, repo, repo.head)
            return
        if rest[0] not in ("revision", "tree", "paths-info") or len(rest) < 2:
            self._error(ex, 404, None, "Not found")
            return
        commit, revision, tail = self._split_revision(repo, rest[1:])
        if commit is None:
            self._error(ex, 404, "RevisionNotFound", f"Invalid rev id: {quote(revision)}")
            return
        if rest[0] == "revision":
            self._send_info(ex, repo, commit)
        elif rest[0] == "paths-info":
            self._send_paths_info(ex, commit)
        else:
            self._send_tree(ex, repo, commit, "/".join(unquote(s) for s in tail).strip("/"))

    def _send_info(self, ex: Exchange, repo: Repo, commit: Commit) -> None:
        blobs = ex.query.get("blobs", "").lower() in ("1", "true")
        siblings: list[dict[str, Any]] = []
        for path in sorted(commit.files):
            f = commit.files[path]
            sibling: dict[str, Any] = {"rfilename": path}
            if blobs:
                sibling.update(size=f.size, blobId=f.oid)
                if f.lfs:
                    sibling["lfs"] = {
                        "sha256": f.sha256,
                        "size": f.size,
                        "pointerSize": len(f.pointer),
                    }
            siblings.append(sibling)
        info: dict[str, Any] = {
            "_id": hashlib.sha1(repo.repo_id.encode()).hexdigest()[:24],
            "id": repo.repo_id,
            "author": repo.repo_id.split("/")[0] if "/" in repo.repo_id else None,
            "sha": commit.sha,
            "lastModified": _iso_date(commit.timestamp),
            "createdAt": _iso_date(_FIXED_EPOCH),
            "private": repo.private,
            "gated": repo.gated,
            "disabled": False,
            "downloads": 0,
            "likes": 0,
            "tags": [],
            "siblings": siblings,
        }
        if repo.repo_type == "model":
            info["modelId"] = repo.repo_id
        ex.send_json(info)

    @staticmethod
    def _dirs(commit: Commit) -> set[str]:
        dirs: set[str] = set()
        for path in commit.files:
            if _is_safe_repo_path(path):
                parts = path.split("/")
                dirs.update("/".join(parts[:k]) for k in range(1, len(parts)))
        return dirs

    @staticmethod
    def _entry(commit: Commit, path: str, *, expand: bool) -> dict[str, Any]:
        """A tree / paths-info entry, shaped like the Hub's."""
        f = commit.files.get(path)
        if f is None:
            oid = hashlib.sha1(f"tree\n{commit.sha}\n{path}".encode()).hexdigest()
            return {"type": "directory", "oid": oid, "size": 0, "path": path}
        entry: dict[str, Any] = {"type": "file", "oid": f.oid, "size": f.size, "path": path}
        if f.lfs:
            entry["lfs"] = {"oid": f.sha256, "size": f.size, "pointerSize": len(f.pointer)}
        if expand:
            entry["lastCommit"] = {
                "id": commit.sha,
                "title": commit.title,
                "date": _iso_date(commit.timestamp),
            }
        return entry

    def _send_paths_info(self, ex: Exchange, commit: Commit) -> None:
        """POST paths-info: entries for the asked paths that exist (missing ones are left out, as
        on the Hub).
        """
        form = parse_qs(ex.body.decode(), keep_blank_values=True)
        expand = form.get("expand", ["false"])[-1].lower() in ("1", "true")
        dirs = self._dirs(commit)
        found = [p for p in dict.fromkeys(form.get("paths", [])) if p in commit.files or p in dirs]
        ex.send_json([self._entry(commit, p, expand=expand) for p in found])

    def _send_tree(self, ex: Exchange, repo: Repo, commit: Commit, prefix: str) -> None:
        recursive = ex.query.get("recursive", "").lower() in ("1", "true")
        expand = ex.query.get("expand", "").lower() in ("1", "true")
        dirs = self._dirs(commit)
        if prefix and prefix not in dirs:
            self._error(ex, 404, "EntryNotFound", f"Path {quote(prefix)} not found in the tree")
            return

        def wanted(path: str) -> bool:
            if prefix and not path.startswith(prefix + "/"):
                return False
            if recursive:
                return True
            rel = path[len(prefix) + 1 :] if prefix else path
            # Unsafe paths ("../x", "/abs") are listed at the top level, as a hostile server would.
            return "/" not in rel or not _is_safe_repo_path(path)

        entries = [
            self._entry(commit, path, expand=expand)
            for path in sorted(set(commit.files) | dirs)
            if wanted(path)
        ]
        # the Hub lists a Xet-backed file's hash (as any value, to test a bad one)
        for entry in entries:
            if (sha256 := entry.get("lfs", {}).get("oid")) in self.xet_hashes:
                entry["xetHash"] = self.xet_hashes[sha256]

        # Cursor pagination with a GitHub-style Link header, like the Hub (1000 entries per page
        # there).
        try:
            offset = int(base64.urlsafe_b64decode(ex.query.get("cursor", "") or "MA==").decode())
        except ValueError:
            self._error(ex, 400, None, "Invalid cursor")
            return
        page = entries[offset : offset + self.page_size]
        headers: dict[str, str] = {}
        if offset + self.page_size < len(entries):
            params = {k: v for k, v in ex.query.items() if k != "cursor"}
            params["cursor"] = base64.urlsafe_b64encode(
                str(offset + self.page_size).encode()
            ).decode()
            headers["Link"] = f'<{self.url}{ex.path}?{urlencode(params)}>; rel="next"'
        ex.send_json(page, headers=headers)


def main(argv: list[str] | None = None) -> None:
    """Serve files from disk on a loopback CDN in its own process (for benchmarks): prints one URL
    per file.

    `python tests/servers.py [--throttle BYTES_PER_SEC] [--ignore-ranges] FILE...`; stops on
    SIGINT/SIGTERM.
    """
    import argparse
    import signal

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("files", nargs="+", type=Path)
    parser.add_argument("--throttle", type=float, default=None, help="bytes/s per response stream")
    parser.add_argument("--ignore-ranges", action="store_true")
    args = parser.parse_args(argv)
    server = CdnServer(throttle_bps=args.throttle)
    server.ignore_ranges = args.ignore_ranges
    for file in args.files:
        sys.stdout.write(server.add_file(f"/files/{file.name}", file.resolve()) + "\n")
    sys.stdout.flush()
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    with server, contextlib.suppress(KeyboardInterrupt):
        done.wait()


if __name__ == "__main__":
    main()


class HeadRecorder:
    """A loopback server that keeps each request head's bytes and gives every request ``answer``
    (a whole HTTP response that closes the connection: each request is one connection)."""

    def __init__(self, answer: bytes) -> None:
        self.heads: list[bytes] = []
        self._answer = answer
        self._listener = socket.create_server(("127.0.0.1", 0))
        threading.Thread(target=self._serve, daemon=True).start()

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self._listener.getsockname()[1]}"

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(60)
                head = b""
                while b"\r\n\r\n" not in head and (chunk := conn.recv(4096)):
                    head += chunk
                self.heads.append(head)
                conn.sendall(self._answer)

    def close(self) -> None:
        self._listener.close()


def hold_after(server: LoopbackServer, nbytes: int) -> threading.Event:
    """Every GET answer of ``server`` holds after ``nbytes`` of its body until the event is set (by
    the test, once its signal was sent), then sends the rest: a run is mid-way then, however fast
    or slow it is."""
    sent = threading.Event()
    server.faults.add(Fault.stall(nbytes, until=sent, resume=True, times=None))
    return sent


# the ports closed_port handed out, each held bound (never listening) for the process's life
_CLOSED: list[socket.socket] = []


def closed_port() -> int:
    """A loopback port nothing listens on, for as long as the tests run: held bound and never
    listening, so a connection is refused (a port bound then closed is free for the next server
    another test starts, on this worker or another: it answered a test that wanted no answer)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    _CLOSED.append(sock)
    return int(sock.getsockname()[1])
