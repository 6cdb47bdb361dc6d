"""A loopback HTTP proxy in front of a test S3 server (moto or SeaweedFS) that misbehaves as some
stores do: it strips the conditional headers (a store that ignores them), answers ``409
ConditionalRequestConflict`` (a concurrent conditional write in flight), refuses DeleteObject's
``If-Match`` or server-side copies (501), loses a write's reply after the store applied it, never
answers a conditional write (a store that hangs), moves the store's clock (every reply's
``Date``) on, answers a verb 501 (``unimplemented``, as s3rver a listing of uploads), or answers as rclone's ``serve s3`` does (``like_rclone``: metadata names
capitalised, ``X-Amz-Meta-Mdl``; no checksums kept; a part's HEAD not implemented).

The request goes upstream as the client sent it (its ``Host`` too), so a SigV4 signature still
holds unless a header is stripped (moto does not check signatures; SeaweedFS does).
"""

from __future__ import annotations

import http.client
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from email.utils import formatdate, parsedate_to_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

CONFLICT = (
    b"<?xml version='1.0' encoding='UTF-8'?><Error><Code>ConditionalRequestConflict</Code>"
    b"<Message>A conflicting conditional operation is currently in progress against this"
    b" resource. Please try again.</Message></Error>"
)
NOT_IMPLEMENTED = (
    b"<?xml version='1.0' encoding='UTF-8'?><Error><Code>NotImplemented</Code>"
    b"<Message>A header you provided implies functionality that is not implemented.</Message>"
    b"</Error>"
)
_CONDITIONS = ("If-None-Match", "If-Match")
_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "expect"}


class Proxy:
    """What the proxy does to the next requests; ``requests`` lists (method, path, conditional)."""

    def __init__(self, upstream: str) -> None:
        split = urlsplit(upstream)
        self.host, self.port = split.hostname or "127.0.0.1", split.port or 80
        self.strip_conditions = False
        self.conflicts = 0  # the next this many conditional writes are answered 409
        self.refuse_conditional_delete = False
        self.lose_replies = 0  # the next this many conditional writes are applied, their reply lost
        self.date_offset = 0.0  # seconds added to every reply's Date: the store's clock moved on
        self.hang = False  # conditional writes are never sent on nor answered (till the end)
        self.refuse_copies = False  # UploadPartCopy/CopyObject answered 501 (no server-side copy)
        self.like_rclone = False  # answers as `rclone serve s3` does (see above)
        # a request with one of these query parameters is answered 501 NotImplemented (s3rver:
        # ``uploads``, ListMultipartUploads)
        self.unimplemented: tuple[str, ...] = ()
        self.ended = threading.Event()  # the proxy is closing: hung requests end
        self.requests: list[tuple[str, str, bool]] = []
        self.lock = threading.Lock()
        self.endpoint = ""


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        self._relay()

    do_PUT = do_POST = do_DELETE = do_HEAD = do_GET

    def _relay(self) -> None:
        proxy = self.server.proxy
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        conditional = any(name in self.headers for name in _CONDITIONS)
        write = self.command in ("PUT", "POST")
        with proxy.lock:
            proxy.requests.append((self.command, self.path, conditional))
            # a lost reply first: with both set, botocore's retry of the lost one meets the 409
            lose = conditional and write and proxy.lose_replies > 0
            proxy.lose_replies -= lose
            conflict = conditional and write and not lose and proxy.conflicts > 0
            proxy.conflicts -= conflict
            refuse = conditional and self.command == "DELETE" and proxy.refuse_conditional_delete
            strip = proxy.strip_conditions
            hang = conditional and write and proxy.hang
            offset = proxy.date_offset
            copy = "x-amz-copy-source" in self.headers and proxy.refuse_copies
            rclone = proxy.like_rclone
            query = urlsplit(self.path).query
            unimplemented = any(
                part.partition("=")[0] in proxy.unimplemented for part in query.split("&")
            )
        if hang:
            proxy.ended.wait()
            self.close_connection = True
            return None
        if conflict:
            return self._answer(409, CONFLICT)
        if (
            refuse
            or copy
            or unimplemented
            or (rclone and "partNumber=" in query and self.command == "HEAD")
        ):
            return self._answer(501, NOT_IMPLEMENTED)
        headers = {
            k: v
            for k, v in self.headers.items()
            if k.lower() not in _HOP and not (strip and k in _CONDITIONS)
        }
        headers["Content-Length"] = str(len(body))
        upstream = http.client.HTTPConnection(proxy.host, proxy.port, timeout=60)
        try:
            upstream.request(self.command, self.path, body=body, headers=headers)
            reply = upstream.getresponse()
            data = reply.read()
        finally:
            upstream.close()
        if lose:  # the store applied it; the client never hears so (and retries)
            self.close_connection = True
            return None
        self.send_response_only(reply.status, reply.reason)
        for name, value in reply.getheaders():
            if rclone and name.lower().startswith("x-amz-checksum-"):
                continue  # kept by no rclone backend
            if rclone and name.lower().startswith("x-amz-meta-"):
                name = "X-Amz-Meta-" + name[len("x-amz-meta-") :].capitalize()
            if name.lower() == "date" and offset:
                value = formatdate(parsedate_to_datetime(value).timestamp() + offset, usegmt=True)
            if name.lower() not in _HOP:
                self.send_header(name, value)
        # a HEAD's Content-Length is the object's, as the store said (its body is none)
        said = reply.getheader("Content-Length") if self.command == "HEAD" else None
        self.send_header("Content-Length", said or str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)
        return None

    def _answer(self, status: int, body: bytes) -> None:
        self.send_response(status)  # with our own Date
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    proxy: Proxy


@contextmanager
def s3_proxy(upstream: str) -> Iterator[Proxy]:
    """A proxy on 127.0.0.1 (a free port) in front of ``upstream``, for the ``with`` block."""
    server = _Server(("127.0.0.1", 0), _Handler)
    server.proxy = Proxy(upstream)
    server.proxy.endpoint = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.proxy
    finally:
        server.proxy.ended.set()
        server.shutdown()
        server.server_close()
        thread.join()
