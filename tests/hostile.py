"""Hostile servers for tests: what a captive portal, a broken proxy, a lying CDN or a compromised
Hub can send.

Beside `servers.py` (whose `Fault.http_error` already answers any status, body and headers on a path
prefix):

- `SilentServer` accepts TCP connections and never answers (optionally after sending the status line
  and headers), the way a hung Hub, a black-holed proxy or a dead load balancer behaves.
- `HostileHub` is a `HubServer` whose answers can be rewritten per request: a `Link: rel="next"` to
  another origin, a commit `sha` with terminal escapes, a listing replaced by any bytes (HTML with
  200, `{}`, entries with wrong types), any extra response headers.
- `GzipCdn` is a `CdnServer` that sends `Content-Encoding: gzip` whatever `Accept-Encoding` says
  (nginx with `gzip_static always`), for whole-file and ranged requests.
- `UnsizedCdn` is a `CdnServer` that never says a size: no `Content-Length`, no ranges, the body
  ends when the connection closes (a streaming endpoint, a dynamic page).
- `ScriptedServer` is a raw-socket HTTP/1.1 server whose files live through scripted `Phase`s
  (versions, validators, If-Range honoured or not, short 206s, 200 to ranges, dripping headers or
  bodies), or answer whatever a policy callable returns; it records every request (method, path,
  Range, If-Range, connection).

Everything binds 127.0.0.1 on a free port.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import itertools
import socket
import ssl
import threading
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from email.utils import formatdate
from http import HTTPStatus
from pathlib import Path
from typing import Any, Self

from servers import CdnServer, Exchange, HubServer, _if_range_matches, _parse_range, _Unsatisfiable

__all__ = [
    "Answer",
    "ForwardProxy",
    "GzipCdn",
    "HostileHub",
    "Phase",
    "RawServer",
    "ScratchCA",
    "ScriptedServer",
    "Seen",
    "SilentServer",
    "TlsCdn",
    "UnsizedCdn",
]


class RawServer:
    """A TCP listener on 127.0.0.1 whose every connection is answered on its own thread by
    ``answer`` (a subclass's); a socket error there ends the connection. ``accepted`` counts them."""

    def __init__(self) -> None:
        self.accepted = 0
        self.stopping = threading.Event()
        self._server = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._server.getsockname()[1]}"

    def __enter__(self) -> Self:
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stopping.set()
        # wakes the accept: no thread outlives this server
        self._server.shutdown(socket.SHUT_RDWR)
        self._thread.join(5)
        self._server.close()

    def answer(self, conn: socket.socket) -> None:
        raise NotImplementedError

    def read_head(self, conn: socket.socket) -> bytes | None:
        """A request's header block, or None when the client left first."""
        head = b""
        while b"\r\n\r\n" not in head:
            got = conn.recv(65536)
            if not got:
                return None
            head += got
        return head

    def drip(self, conn: socket.socket, data: bytes, size: int, interval: float) -> None:
        """``data``, ``size`` bytes per ``interval`` (till the server stops)."""
        for at in range(0, len(data), size):
            if self.stopping.wait(interval):
                return
            conn.sendall(data[at : at + size])

    def _serve(self) -> None:
        while not self.stopping.is_set():
            try:
                conn, _ = self._server.accept()
            except OSError:
                return
            self.accepted += 1
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn: socket.socket) -> None:
        with conn, contextlib.suppress(OSError):
            self.answer(conn)


class SilentServer:
    """A TCP listener on 127.0.0.1 that accepts connections and never answers.

    ``send_headers`` makes it answer the status line and headers of a 200 with a big Content-Length,
    then go silent (a body that never comes). ``accepted`` counts connections, so a test can see
    retries.
    """

    def __init__(self, *, send_headers: bool = False) -> None:
        self.send_headers = send_headers
        self.accepted = 0
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(64)
        self._conns: list[socket.socket] = []
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="silent-server", daemon=True)

    @property
    def port(self) -> int:
        """The bound TCP port."""
        return int(self._sock.getsockname()[1])

    @property
    def url(self) -> str:
        """Base URL, no trailing slash."""
        return f"http://127.0.0.1:{self.port}"

    def _serve(self) -> None:
        self._sock.settimeout(0.05)
        while not self._stopping.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.accepted += 1
            self._conns.append(conn)
            if self.send_headers:
                with contextlib.suppress(OSError):
                    conn.recv(65536)
                    conn.sendall(
                        b"HTTP/1.1 200 OK\r\nContent-Length: 1000000000\r\nContent-Type:"
                        b" text/plain\r\n\r\n"
                    )

    def start(self) -> Self:
        """Accept in a daemon thread; returns self."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Close every held connection and the listener."""
        self._stopping.set()
        self._thread.join(timeout=5)
        for conn in self._conns:
            with contextlib.suppress(OSError):
                conn.close()
        self._sock.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


Rewrite = Callable[[Exchange, Any], Any]


class HostileHub(HubServer):
    """A Hub stand-in whose JSON answers and headers a test can rewrite.

    - ``sha``: the commit id every API answer reports (e.g. with escape sequences), instead of the
      real one.
    - ``next_link``: called with the honest next-page URL (or None on the last page); returns the
      ``Link`` target to send (another origin, plain http, ...) or None for no link.
    - ``rewrite_json``: called with (exchange, the honest JSON document) for every JSON answer;
      returns the document to send instead, or ``bytes`` to send raw (HTML, truncated JSON,
      nothing).
    - ``extra_headers``: added to every answer.
    """

    name = "hostile-hub"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.sha: str | None = None
        self.next_link: Callable[[str | None], str | None] | None = None
        self.rewrite_json: Rewrite | None = None
        self.extra_headers: dict[str, str] = {}

    def _patch(self, doc: Any) -> Any:
        if self.sha is None:
            return doc
        if isinstance(doc, dict) and "sha" in doc:
            return {**doc, "sha": self.sha}
        return doc

    def route(self, ex: Exchange) -> None:
        original_send_json = ex.send_json
        original_start = ex.start

        def send_json(obj: Any, status: int = 200, headers: Any = None) -> None:
            hdrs = dict(headers or {})
            if self.next_link is not None:
                honest = hdrs.pop("Link", None)
                url = honest[1 : honest.index(">")] if honest else None
                target = self.next_link(url)
                if target is not None:
                    hdrs["Link"] = f'<{target}>; rel="next"'
            doc = self._patch(obj)
            if self.rewrite_json is not None:
                doc = self.rewrite_json(ex, doc)
            if isinstance(doc, bytes):
                ex.send_bytes(status, doc, hdrs, content_type="text/html; charset=utf-8")
                return
            original_send_json(doc, status, hdrs)

        def start(status: int, headers: Any) -> None:
            hdrs = dict(headers)
            if self.sha is not None and "X-Repo-Commit" in hdrs:
                hdrs["X-Repo-Commit"] = self.sha
            hdrs.update(self.extra_headers)
            original_start(status, hdrs)

        ex.send_json = send_json  # type: ignore[method-assign]
        ex.start = start  # type: ignore[method-assign]
        super().route(ex)


class GzipCdn(CdnServer):
    """A CDN that gzips every body it serves and says so (``Content-Encoding: gzip``), ranges
    included.

    A whole-file answer is the gzip of the file with the gzip's length; a ranged answer is a slice
    of that gzip stream (what a misconfigured static server does), labelled with ranges of the
    compressed bytes.
    """

    name = "gzip-cdn"

    def route(self, ex: Exchange) -> None:
        original_start = ex.start

        def start(status: int, headers: Any) -> None:
            hdrs = dict(headers)
            if status in (200, 206):
                hdrs["Content-Encoding"] = "gzip"
            original_start(status, hdrs)

        ex.start = start  # type: ignore[method-assign]
        super().route(ex)

    def add_file(self, path: str, data: Any, **kwargs: Any) -> str:  # type: ignore[override]
        """Store the gzip of ``data`` (bytes) under ``path``; the server then serves those bytes,
        labelled gzip.
        """
        raw = bytes(data)
        return super().add_file(path, gzip.compress(raw, mtime=0), **kwargs)


class UnsizedCdn(CdnServer):
    """A CDN whose answers carry no size: ``Range`` is ignored (200, whole body) and
    ``Content-Length`` is left out, so the body is delimited by closing the connection (RFC 9112
    §6.3), as a streaming endpoint does."""

    name = "unsized-cdn"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.ignore_ranges = True

    def route(self, ex: Exchange) -> None:
        original_start = ex.start

        def start(status: int, headers: Any) -> None:
            hdrs = {
                k: v
                for k, v in dict(headers).items()
                if k.lower() not in ("content-length", "accept-ranges")
            }
            if status == 200:
                hdrs["Connection"] = "close"
                ex.handler.close_connection = True
            original_start(status, hdrs)

        ex.start = start  # type: ignore[method-assign]
        super().route(ex)


# --- TLS and proxies (issue 11, item 16)
# ------------------------------------------------------------------------


class ScratchCA:
    """A throwaway certificate authority (trustme) and a certificate it issued for 127.0.0.1 and
    localhost.

    ``write_bundle`` writes the CA as a PEM file (for REQUESTS_CA_BUNDLE, CURL_CA_BUNDLE,
    SSL_CERT_FILE); ``write_hashed_dir`` writes it as OpenSSL's ``<subject hash>.0`` (for
    SSL_CERT_DIR), or returns None when the ``openssl`` command is not there to compute the hash.
    """

    def __init__(self) -> None:
        import trustme

        self.ca = trustme.CA()
        self.leaf = self.ca.issue_cert("127.0.0.1", "localhost")

    def write_bundle(self, path: Path) -> Path:
        self.ca.cert_pem.write_to_path(str(path))
        return path

    def write_hashed_dir(self, folder: Path) -> Path | None:
        import shutil
        import subprocess

        openssl = shutil.which("openssl")
        if openssl is None:
            return None
        folder.mkdir(parents=True, exist_ok=True)
        pem = self.write_bundle(folder / "scratch-ca.pem")
        digest = subprocess.run(
            [openssl, "x509", "-subject_hash", "-noout", "-in", str(pem)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        pem.rename(folder / f"{digest}.0")
        return folder

    def server_context(self) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.leaf.configure_cert(ctx)
        return ctx


class TlsCdn(CdnServer):
    """A `CdnServer` speaking HTTPS with a certificate from ``ca`` (a `ScratchCA`), on
    https://127.0.0.1:PORT.

    The TLS handshake happens when a connection is accepted; ``handshakes`` counts the attempts (a
    client that refuses the certificate makes one attempt per try, so a test can see that mdl did
    not retry).
    """

    name = "tls-cdn"

    def __init__(self, ca: ScratchCA, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.handshakes = 0
        context = ca.server_context()
        listener = self._httpd.socket

        def accept() -> tuple[socket.socket, Any]:
            conn, address = listener.accept()
            self.handshakes += 1
            try:
                return context.wrap_socket(conn, server_side=True), address
            except (OSError, ssl.SSLError):
                conn.close()
                raise  # socketserver drops a connection whose accept failed

        self._httpd.get_request = accept  # type: ignore[method-assign]

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"


class ForwardProxy:
    """A plain HTTP forward proxy on 127.0.0.1 (no CONNECT): ``GET http://127.0.0.1:PORT/path`` is
    fetched and relayed. Only loopback targets are forwarded (anything else gets 403). ``requests``
    lists the URLs asked for.
    """

    def __init__(self) -> None:
        import http.client
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
        from urllib.parse import urlsplit

        owner = self
        self.requests: list[str] = []

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                """Quiet."""

            def do_GET(self) -> None:
                owner.requests.append(self.path)
                target = urlsplit(self.path)
                if target.scheme != "http" or target.hostname not in ("127.0.0.1", "localhost"):
                    self.send_response(403)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                upstream = http.client.HTTPConnection(
                    target.hostname, target.port or 80, timeout=10
                )
                headers = {
                    k: v
                    for k, v in self.headers.items()
                    if k.lower() not in ("proxy-connection", "connection")
                }
                upstream.request(
                    "GET",
                    target.path + (f"?{target.query}" if target.query else ""),
                    headers=headers,
                )
                reply = upstream.getresponse()
                body = reply.read()
                self.send_response(reply.status)
                for name, value in reply.getheaders():
                    if name.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                upstream.close()

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


# --- a scripted raw HTTP/1.1 server (issue 23): one file, several versions, every answer scripted
# -------------------


@dataclass
class Phase:
    """One stretch of a scripted file's life: its bytes and validators, how long it lasts, how the
    server answers.

    A file is a list of phases; the server answers from the current one and moves to the next when
    this one is used up: after ``requests`` answers, or once ``sent`` body bytes went out (checked
    when a request arrives, so an answer never mixes two phases). The last phase lasts for ever.
    """

    data: bytes = field(repr=False)
    # the ETag header as sent: '"v1"' (strong), 'W/"v1"' (weak); None: no ETag
    etag: str | None = None
    last_modified: str | None = None  # an HTTP-date (see `http_date`); None: no Last-Modified
    requests: int | None = None  # answer this many requests for the file, then move on
    sent: int | None = None  # move on at the first request after this many body bytes were sent
    ranges: bool = True  # False: 200 and the whole body to every request, Range or not
    # False: ignore If-Range (serve the range from this phase whatever the validator)
    if_range: bool = True
    # at most this many bytes per 206 (a legal short answer: Content-Range says so)
    cap: int | None = None
    drip_headers: float | None = None  # send the header block one byte every this many seconds
    drip_body: float | None = None  # send the body one byte every this many seconds

    def __repr__(self) -> str:
        knobs = {k: v for k, v in vars(self).items() if k != "data" and v is not None}
        return (
            f"Phase(<{len(self.data)} bytes sha256:{hashlib.sha256(self.data).hexdigest()[:12]}>,"
            f" {knobs})"
        )

    @property
    def validator(self) -> str | None:
        """What a client should send as If-Range for this phase: the strong ETag, else
        Last-Modified, else None.
        """
        if self.etag and not self.etag.startswith("W/"):
            return self.etag
        return self.last_modified


@dataclass
class Seen:
    """One request as the scripted server read it, and what it answered."""

    index: int  # 0, 1, 2... in arrival order, over the whole server
    method: str
    target: str  # the request target as sent (path and query)
    headers: dict[str, str]  # names lower-cased
    connection: int  # 1, 2, 3... per accepted TCP connection: equal numbers mean keep-alive reuse
    status: int = 0
    phase: int | None = None  # which phase of the file answered
    sent: int = 0  # body bytes handed to the socket

    @property
    def path(self) -> str:
        """The target without its query."""
        return self.target.split("?", 1)[0]

    @property
    def range(self) -> str | None:
        return self.headers.get("range")

    @property
    def if_range(self) -> str | None:
        return self.headers.get("if-range")

    @property
    def range_start(self) -> int | None:
        """The first byte asked for by a plain ``bytes=N-[M]`` Range, else None."""
        spec = (self.range or "").partition("=")[2].split("-", 1)[0].strip()
        return int(spec) if spec.isdigit() else None


@dataclass
class Answer:
    """What to send back: status, headers (Content-Length and Date are added), body, and how
    slowly.
    """

    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes | memoryview = b""
    drip_headers: float | None = None
    drip_body: float | None = None
    close: bool = False  # close the connection after this answer
    phase: int | None = None
    # False: no Content-Length, the body ends as the connection closes (RFC 9112 §6.3)
    sized: bool = True


Policy = Callable[[int, Seen, "ScriptedServer"], Answer | None]


def http_date(ts: float) -> str:
    """An RFC 9110 HTTP-date (IMF-fixdate)."""
    return formatdate(ts, usegmt=True)


class ScriptedServer:
    """A raw-socket HTTP/1.1 server on 127.0.0.1 (a thread per connection, keep-alive) serving
    scripted files.

    ``files`` maps a path (as requested, e.g. "/f.bin") to its `Phase`s. Every request is recorded
    in ``requests`` (`Seen`: method, target, headers, connection id, status, phase, bytes sent)
    before it is answered. ``policy(index, seen, server)`` may answer any request itself (return an
    `Answer`) or return None for the scripted answer, which `reply(seen)` builds: RFC 9110 ranges
    and If-Range (§13.1.5: a matching validator gets the 206, anything else the whole current phase
    with 200), shaped by the phase's knobs. ``errors`` keeps any exception inside the server (a test
    should assert it stays empty).
    """

    def __init__(
        self, files: Mapping[str, Sequence[Phase]] | None = None, *, policy: Policy | None = None
    ) -> None:
        self.files: dict[str, list[Phase]] = {
            path: list(phases) for path, phases in (files or {}).items()
        }
        self.policy = policy
        self.requests: list[Seen] = []
        self.errors: list[str] = []
        self._current: dict[str, int] = {}  # path -> index of the phase answering now
        # path -> [requests, body bytes] answered by the current phase
        self._used: dict[str, list[int]] = {}
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._conns: set[socket.socket] = set()
        self._conn_ids = itertools.count(1)
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(128)
        self._thread = threading.Thread(target=self._accept, name="scripted-server", daemon=True)

    # -- lifecycle
    # -----------------------------------------------------------------------------------------------

    @property
    def port(self) -> int:
        return int(self._sock.getsockname()[1])

    @property
    def url(self) -> str:
        """Base URL, no trailing slash."""
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Self:
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop accepting, wake dripping answers and close every connection."""
        self._stopping.set()
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        self._sock.close()
        self._thread.join(timeout=5)
        with self._lock:
            conns = list(self._conns)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- the script
    # ----------------------------------------------------------------------------------------------

    def phase(self, path: str) -> int:
        """The index of the phase of ``path`` answering now."""
        with self._lock:
            return self._current.get(path, 0)

    def seen(self, path: str | None = None) -> list[Seen]:
        """A snapshot of the requests (for ``path`` only, if given)."""
        with self._lock:
            return [s for s in self.requests if path is None or s.path == path]

    def _take_phase(self, path: str) -> tuple[int, Phase]:
        """The phase that answers this request: move on from used-up phases, then count the
        request.
        """
        phases = self.files[path]
        with self._lock:
            index = self._current.setdefault(path, 0)
            used = self._used.setdefault(path, [0, 0])
            while index + 1 < len(phases):
                phase = phases[index]
                done = (phase.requests is not None and used[0] >= phase.requests) or (
                    phase.sent is not None and used[1] >= phase.sent
                )
                if not done:
                    break
                index += 1
                used[:] = [0, 0]
            self._current[path] = index
            used[0] += 1
            return index, phases[index]

    def reply(self, seen: Seen) -> Answer:
        """The scripted answer to ``seen`` from the file's current phase."""
        if seen.path not in self.files:
            return Answer(404, body=b"not found\n")
        if seen.method not in ("GET", "HEAD"):
            return Answer(405, {"Allow": "GET, HEAD"})
        index, phase = self._take_phase(seen.path)
        size = len(phase.data)
        headers = {"Accept-Ranges": "bytes", "Content-Type": "application/octet-stream"}
        if phase.etag:
            headers["ETag"] = phase.etag
        if phase.last_modified:
            headers["Last-Modified"] = phase.last_modified
        status, start, end = 200, 0, size
        honour = (
            seen.range is not None
            and phase.ranges
            and (
                seen.if_range is None
                or not phase.if_range
                or _if_range_matches(seen.if_range, phase.etag, phase.last_modified)
            )
        )
        if honour:
            assert seen.range is not None
            try:
                selected = _parse_range(seen.range, size)
            except _Unsatisfiable:
                return Answer(416, {**headers, "Content-Range": f"bytes */{size}"}, phase=index)
            if selected is not None:
                start, end = selected
                if phase.cap is not None:
                    end = min(end, start + phase.cap)
                status = 206
                headers["Content-Range"] = f"bytes {start}-{end - 1}/{size}"
        body = memoryview(phase.data)[start:end]
        return Answer(status, headers, body, phase.drip_headers, phase.drip_body, phase=index)

    # -- the wire
    # ------------------------------------------------------------------------------------------------

    def _accept(self) -> None:
        while not self._stopping.is_set():
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                self._conns.add(conn)
            conn_id = next(self._conn_ids)
            threading.Thread(target=self._connection, args=(conn, conn_id), daemon=True).start()

    def _connection(self, conn: socket.socket, conn_id: int) -> None:
        buffer = b""
        try:
            while not self._stopping.is_set():
                while b"\r\n\r\n" not in buffer:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    buffer += chunk
                head, _, buffer = buffer.partition(b"\r\n\r\n")
                request_line, *lines = head.decode("latin-1").split("\r\n")
                method, target, _version = request_line.split(" ", 2)
                headers = {}
                for line in lines:
                    name, _, value = line.partition(":")
                    headers[name.strip().lower()] = value.strip()
                length = int(headers.get("content-length") or 0)
                while len(buffer) < length:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    buffer += chunk
                buffer = buffer[length:]  # a request body is read and dropped
                with self._lock:
                    seen = Seen(len(self.requests), method, target, headers, conn_id)
                    self.requests.append(seen)
                answer = (
                    self.policy(seen.index, seen, self) if self.policy else None
                ) or self.reply(seen)
                self._send(conn, seen, answer)
                closes = answer.close or not answer.sized
                if closes or headers.get("connection", "").lower() == "close":
                    return
        except OSError:
            pass  # the client went away (mdl drops answers it does not want): normal
        except Exception:
            self.errors.append(traceback.format_exc())
        finally:
            with self._lock:
                self._conns.discard(conn)
            with contextlib.suppress(OSError):
                conn.close()

    def _send(self, conn: socket.socket, seen: Seen, answer: Answer) -> None:
        seen.status, seen.phase = answer.status, answer.phase
        try:
            reason = HTTPStatus(answer.status).phrase
        except ValueError:
            reason = "Whatever"
        headers = {"Date": http_date(time.time()), **answer.headers}
        if answer.sized:
            headers.setdefault("Content-Length", str(len(answer.body)))
        if answer.close or not answer.sized:
            headers["Connection"] = "close"
        head = f"HTTP/1.1 {answer.status} {reason}\r\n" + "".join(
            f"{k}: {v}\r\n" for k, v in headers.items()
        )
        self._write(conn, (head + "\r\n").encode("latin-1"), answer.drip_headers, None, None)
        if seen.method != "HEAD":
            self._write(conn, answer.body, answer.drip_body, seen, answer.phase)

    def _write(
        self,
        conn: socket.socket,
        data: bytes | memoryview,
        drip: float | None,
        seen: Seen | None,
        phase: int | None,
    ) -> None:
        view = memoryview(data)
        step = 1 if drip else 1 << 20
        for pos in range(0, len(view), step):
            if drip and self._stopping.wait(drip):
                raise ConnectionAbortedError("server stopping")
            piece = view[pos : pos + step]
            conn.sendall(piece)
            if seen is not None:
                with self._lock:
                    seen.sent += len(piece)
                    if phase is not None and self._current.get(seen.path) == phase:
                        self._used[seen.path][1] += len(piece)


# --- answers whose bodies and headers disagree, and rclone's 200 to a range (issue 37)
# --------------------------------


class FramedServer(ScriptedServer):
    """A `ScriptedServer` that also frames answers as chunked: an `Answer` whose headers hold
    ``Transfer-Encoding: chunked`` is sent without a Content-Length, its body in chunks of ``chunk``
    bytes and a last empty chunk, whatever length its Content-Range names (a chunked body can carry
    more, or fewer, bytes than that). Any other answer is sent as `ScriptedServer` sends it (an
    explicit Content-Length in the headers is kept as it is, so a test can announce one length and
    send another)."""

    chunk = 256 * 1024

    def _send(self, conn: socket.socket, seen: Seen, answer: Answer) -> None:
        if answer.headers.get("Transfer-Encoding", "").lower() != "chunked":
            super()._send(conn, seen, answer)
            return
        seen.status, seen.phase = answer.status, answer.phase
        reason = HTTPStatus(answer.status).phrase
        headers = {"Date": http_date(time.time()), **answer.headers}
        if answer.close:
            headers["Connection"] = "close"
        head = f"HTTP/1.1 {answer.status} {reason}\r\n" + "".join(
            f"{k}: {v}\r\n" for k, v in headers.items()
        )
        conn.sendall((head + "\r\n").encode("latin-1"))
        if seen.method == "HEAD":
            return
        view = memoryview(answer.body)
        for pos in range(0, len(view), self.chunk):
            piece = view[pos : pos + self.chunk]
            conn.sendall(b"%x\r\n" % len(piece) + bytes(piece) + b"\r\n")
            with self._lock:
                seen.sent += len(piece)
        conn.sendall(b"0\r\n\r\n")


def chunked(
    answer: Answer, *, extra: bytes = b"", before: bytes = b"", cut: int | None = None
) -> Answer:
    """``answer`` sent chunked (for a `FramedServer`), its body cut to ``cut`` bytes, with
    ``before`` and ``extra`` bytes around it: the Content-Range still names what the honest answer
    held."""
    body = before + bytes(answer.body)[:cut] + extra
    headers = {k: v for k, v in answer.headers.items() if k.lower() != "content-length"}
    return Answer(
        answer.status, {**headers, "Transfer-Encoding": "chunked"}, body, phase=answer.phase
    )


def rclone_ranges(index: int, seen: Seen, server: ScriptedServer) -> Answer | None:
    """A `ScriptedServer` policy answering as ``rclone serve s3`` does: a ranged GET gets ``200 OK``
    with a Content-Range and only the range (curl, aria2c, s5cmd and boto3 read it as that range).
    """
    answer = server.reply(seen)
    if answer.status == 206:
        answer.status = 200
    return answer


class NginxCdn(CdnServer):
    """A `CdnServer` naming versions as nginx names static files: ETag ``"<mtime hex>-<size hex>"``
    and the mtime as Last-Modified. Two builds of one size copied with their mtime (``cp -p``,
    ``rsync -a``, a fixed-timestamp unzip) under two paths carry the same ETag: only their URLs tell
    them apart."""

    def add_file(  # type: ignore[override]
        self, path: str, data: bytes, *, mtime: float = 1_700_000_000.0, **kwargs: Any
    ) -> str:
        return super().add_file(
            path, data, etag=f'"{int(mtime):x}-{len(data):x}"', last_modified=mtime, **kwargs
        )
