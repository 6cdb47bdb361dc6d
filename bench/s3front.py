"""A plain S3 front for bench/serve.py: a folder's files as ``s3://BUCKET/PREFIX<name>``, read-only,
no verification and no authentication (any signature passes), the bytes sent with ``sendfile``.

    python bench/s3front.py --root DIR --bucket mdl --prefix m/ --port N [--log FILE]

Answers what a loader sends: ListObjectsV2 (and V1) of the bucket, HeadObject, GetObject with one
range (206) or whole (200), HeadBucket. The bench shapes what this port sends with tc (the same rate
as the origin nginx): it is the throttled origin seen directly through S3, with nothing between the
loader and the origin's bytes (the "unverified overlap" that ``mdl serve --pull`` is compared with).

``--log FILE`` gets one line per request when its answer is sent: start and end (``time.time()``),
method, path, Range, status, bytes sent, the client's port (its connection). bench/serve.py reads the loader's access pattern from it.
Loopback only: it refuses to listen anywhere else.
"""

from __future__ import annotations

import argparse
import email.utils
import os
import re
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit
from xml.sax.saxutils import escape

RANGE = re.compile(r"bytes=(\d*)-(\d*)")
NS = 'xmlns="http://s3.amazonaws.com/doc/2006-03-01/"'


class Front(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128

    def __init__(self, port: int, root: Path, bucket: str, prefix: str, log: Path | None) -> None:
        super().__init__(("127.0.0.1", port), Handler)
        self.root, self.bucket, self.prefix = root, bucket, prefix
        self.lock = threading.Lock()
        self.log = log.open("a", buffering=1) if log is not None else None
        self.limit_rate = 0  # bytes/s per connection (0: none)

    def objects(self) -> list[tuple[str, Path, os.stat_result]]:
        found = []
        for path in sorted(self.root.iterdir()):
            if path.is_file() and not path.name.startswith("."):
                found.append((self.prefix + path.name, path, path.stat()))
        return found

    def note(self, line: str) -> None:
        if self.log is not None:
            with self.lock:
                self.log.write(line + "\n")


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Front

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_HEAD(self) -> None:
        self.answer(head=True)

    def do_GET(self) -> None:
        self.answer(head=False)

    def answer(self, *, head: bool) -> None:
        started = time.time()
        status, sent = 500, 0
        try:
            status, sent = self.route(head)
        finally:
            rng = self.headers.get("Range", "-")
            self.server.note(
                f"{started:.6f} {time.time():.6f} {self.command} {self.path} {rng} {status} {sent}"
                f" {self.client_address[1]}"
            )

    def route(self, head: bool) -> tuple[int, int]:
        parts = urlsplit(self.path)
        path = unquote(parts.path).lstrip("/")
        bucket, _, key = path.partition("/")
        if bucket != self.server.bucket:
            return self.xml(404, "<Error><Code>NoSuchBucket</Code></Error>", head)
        if not key:
            if head:
                return self.xml(200, "", head)
            return self.listing(parse_qs(parts.query), head)
        for name, file, stat in self.server.objects():
            if name == key:
                return self.object(file, stat, head)
        return self.xml(404, "<Error><Code>NoSuchKey</Code></Error>", head)

    def listing(self, query: dict[str, list[str]], head: bool) -> tuple[int, int]:
        prefix = query.get("prefix", [""])[0]
        items = "".join(
            f"<Contents><Key>{escape(name)}</Key>"
            f"<LastModified>{time.strftime('%Y-%m-%dT%H:%M:%S.000Z', time.gmtime(st.st_mtime))}"
            f'</LastModified><ETag>"{st.st_size:x}-{int(st.st_mtime)}"</ETag>'
            f"<Size>{st.st_size}</Size><StorageClass>STANDARD</StorageClass></Contents>"
            for name, _, st in self.server.objects()
            if name.startswith(prefix)
        )
        count = items.count("<Contents>")
        body = (
            f"<ListBucketResult {NS}><Name>{self.server.bucket}</Name><Prefix>{escape(prefix)}"
            f"</Prefix><KeyCount>{count}</KeyCount><MaxKeys>1000</MaxKeys>"
            f"<IsTruncated>false</IsTruncated>{items}</ListBucketResult>"
        )
        return self.xml(200, body, head)

    def xml(self, status: int, body: str, head: bool) -> tuple[int, int]:
        data = ('<?xml version="1.0" encoding="UTF-8"?>\n' + body).encode() if body else b""
        self.send_response(status)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if not head:
            self.wfile.write(data)
        return status, 0 if head else len(data)

    def object(self, file: Path, stat: os.stat_result, head: bool) -> tuple[int, int]:
        size = stat.st_size
        first, last, status = 0, size - 1, 200
        found = RANGE.fullmatch(self.headers.get("Range", "").strip())
        if found is not None and found.group(1) != "":
            first = int(found.group(1))
            last = min(int(found.group(2)), size - 1) if found.group(2) else size - 1
            status = 206
        elif found is not None and found.group(2):  # the last N bytes
            first, status = max(0, size - int(found.group(2))), 206
        if first > last:
            self.send_response(416)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return 416, 0
        count = last - first + 1
        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(count))
        self.send_header("ETag", f'"{size:x}-{int(stat.st_mtime)}"')
        self.send_header("Last-Modified", email.utils.formatdate(stat.st_mtime, usegmt=True))
        self.send_header("Accept-Ranges", "bytes")
        if status == 206:
            self.send_header("Content-Range", f"bytes {first}-{last}/{size}")
        self.end_headers()
        if head:
            return status, 0
        self.wfile.flush()
        sent = 0
        rate = self.server.limit_rate
        began = time.monotonic()
        with file.open("rb") as f:
            out = self.connection.fileno()
            while sent < count:
                # capped: a slice at a time, each sent no sooner than the rate allows (nginx's
                # limit_rate, per connection)
                if rate and (ahead := sent / rate - (time.monotonic() - began)) > 0:
                    time.sleep(ahead)
                step = count - sent if not rate else min(count - sent, max(rate // 8, 16384))
                n = os.sendfile(out, f.fileno(), first + sent, step)
                if n == 0:
                    break
                sent += n
        return status, sent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, required=True)
    parser.add_argument("--bucket", default="mdl")
    parser.add_argument("--prefix", default="m/")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--log", type=Path)
    parser.add_argument("--limit-rate", type=int, default=0, help="bytes/s per connection; 0: none")
    args = parser.parse_args()
    front = Front(args.port, args.root.resolve(), args.bucket, args.prefix, args.log)
    front.limit_rate = args.limit_rate
    front.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sys.stderr.write(f"s3front: http://127.0.0.1:{args.port} serving {args.root}\n")
    try:
        front.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
