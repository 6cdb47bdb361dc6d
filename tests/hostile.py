"""Hostile servers for tests: what a captive portal, a broken proxy, a lying CDN or a compromised Hub can send.

Beside `servers.py` (whose `Fault.http_error` already answers any status, body and headers on a path prefix):

- `SilentServer` accepts TCP connections and never answers (optionally after sending the status line and
  headers), the way a hung Hub, a black-holed proxy or a dead load balancer behaves.
- `HostileHub` is a `HubServer` whose answers can be rewritten per request: a `Link: rel="next"` to another
  origin, a commit `sha` with terminal escapes, a listing replaced by any bytes (HTML with 200, `{}`, entries
  with wrong types), any extra response headers.
- `GzipCdn` is a `CdnServer` that sends `Content-Encoding: gzip` whatever `Accept-Encoding` says (nginx with
  `gzip_static always`), for whole-file and ranged requests.
- `UnsizedCdn` is a `CdnServer` that never says a size: no `Content-Length`, no ranges, the body ends when the
  connection closes (a streaming endpoint, a dynamic page).

Everything binds 127.0.0.1 on a free port.
"""

from __future__ import annotations

import contextlib
import gzip
import socket
import ssl
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, Self

from servers import CdnServer, Exchange, HubServer

__all__ = ["ForwardProxy", "GzipCdn", "HostileHub", "ScratchCA", "SilentServer", "TlsCdn", "UnsizedCdn"]


class SilentServer:
    """A TCP listener on 127.0.0.1 that accepts connections and never answers.

    ``send_headers`` makes it answer the status line and headers of a 200 with a big Content-Length, then go
    silent (a body that never comes). ``accepted`` counts connections, so a test can see retries.
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
                    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000000\r\nContent-Type: text/plain\r\n\r\n")

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

    - ``sha``: the commit id every API answer reports (e.g. with escape sequences), instead of the real one.
    - ``next_link``: called with the honest next-page URL (or None on the last page); returns the ``Link``
      target to send (another origin, plain http, ...) or None for no link.
    - ``rewrite_json``: called with (exchange, the honest JSON document) for every JSON answer; returns the
      document to send instead, or ``bytes`` to send raw (HTML, truncated JSON, nothing).
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
    """A CDN that gzips every body it serves and says so (``Content-Encoding: gzip``), ranges included.

    A whole-file answer is the gzip of the file with the gzip's length; a ranged answer is a slice of that gzip
    stream (what a misconfigured static server does), labelled with ranges of the compressed bytes.
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
        """Store the gzip of ``data`` (bytes) under ``path``; the server then serves those bytes, labelled gzip."""
        raw = bytes(data)
        return super().add_file(path, gzip.compress(raw, mtime=0), **kwargs)


class UnsizedCdn(CdnServer):
    """A CDN whose answers carry no size: ``Range`` is ignored (200, whole body) and ``Content-Length`` is left out,
    so the body is delimited by closing the connection (RFC 9112 §6.3), as a streaming endpoint does."""

    name = "unsized-cdn"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.ignore_ranges = True

    def route(self, ex: Exchange) -> None:
        original_start = ex.start

        def start(status: int, headers: Any) -> None:
            hdrs = {k: v for k, v in dict(headers).items() if k.lower() not in ("content-length", "accept-ranges")}
            if status == 200:
                hdrs["Connection"] = "close"
                ex.handler.close_connection = True
            original_start(status, hdrs)

        ex.start = start  # type: ignore[method-assign]
        super().route(ex)


# --- TLS and proxies (issue 11, item 16) ------------------------------------------------------------------------


class ScratchCA:
    """A throwaway certificate authority (trustme) and a certificate it issued for 127.0.0.1 and localhost.

    ``write_bundle`` writes the CA as a PEM file (for REQUESTS_CA_BUNDLE, CURL_CA_BUNDLE, SSL_CERT_FILE);
    ``write_hashed_dir`` writes it as OpenSSL's ``<subject hash>.0`` (for SSL_CERT_DIR), or returns None when
    the ``openssl`` command is not there to compute the hash.
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
            [openssl, "x509", "-subject_hash", "-noout", "-in", str(pem)], capture_output=True, text=True, check=True
        ).stdout.strip()
        pem.rename(folder / f"{digest}.0")
        return folder

    def server_context(self) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.leaf.configure_cert(ctx)
        return ctx


class TlsCdn(CdnServer):
    """A `CdnServer` speaking HTTPS with a certificate from ``ca`` (a `ScratchCA`), on https://127.0.0.1:PORT.

    The TLS handshake happens when a connection is accepted; ``handshakes`` counts the attempts (a client that
    refuses the certificate makes one attempt per try, so a test can see that mdl did not retry).
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
    """A plain HTTP forward proxy on 127.0.0.1 (no CONNECT): ``GET http://127.0.0.1:PORT/path`` is fetched and
    relayed. Only loopback targets are forwarded (anything else gets 403). ``requests`` lists the URLs asked for.
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
                upstream = http.client.HTTPConnection(target.hostname, target.port or 80, timeout=10)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("proxy-connection", "connection")}
                upstream.request("GET", target.path + (f"?{target.query}" if target.query else ""), headers=headers)
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
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
