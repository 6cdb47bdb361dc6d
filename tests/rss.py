"""Memory under attack, for the serve tests and bench/serve_memory.py: a process's peak resident
bytes (``VmHWM``), a flood of connections streaming header lines, and ranged GETs at once, each
on its own connection. Every wait is bounded by HANG; nothing waits on the clock as a barrier."""

from __future__ import annotations

import http.client
import socket
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit

from runfixtures import HANG

MiB = 1 << 20


def peak_rss(pid: int) -> int:
    """The most bytes ``pid`` has had resident so far (``VmHWM`` of /proc/PID/status)."""
    return _status_kib(pid, "VmHWM") * 1024


def rss(pid: int) -> int:
    """The bytes ``pid`` has resident now (``VmRSS``)."""
    return _status_kib(pid, "VmRSS") * 1024


def cpu_seconds(pid: int) -> float:
    """User + system CPU-seconds ``pid`` has used so far (/proc/PID/stat)."""
    import os

    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _status_kib(pid: int, name: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{name}:"):
            return int(line.split()[1])
    raise AssertionError(f"/proc/{pid}/status has no {name}")


class HeaderFlood:
    """``count`` connections to ``url``, each sending a request line and ``lines`` header lines
    of ``line_bytes`` bytes (CRLF included), never the blank line that ends them: unsigned, and
    as large as http.server's own limits let through (100 lines of 64 KiB). Within the block every
    connection has sent all of it or been closed by the server (``refused``: how many were);
    ``answers``: the status line of each one answered."""

    def __init__(self, url: str, *, count: int = 128, lines: int = 99, line_bytes: int = 65536):
        split = urlsplit(url)
        self.address = (split.hostname or "127.0.0.1", split.port or 80)
        self.count = count
        pad = b"a" * (line_bytes - len(b"X-Pad-00: \r\n"))
        self.head = b"GET /mdl/m/x HTTP/1.1\r\nHost: %s:%d\r\n" % (
            self.address[0].encode(),
            self.address[1],
        )
        self.lines = [b"X-Pad-%02d: %s\r\n" % (n % 100, pad) for n in range(lines)]
        self.socks: list[socket.socket] = []
        self.refused = 0
        self.answers: list[bytes] = []
        self._lock = threading.Lock()

    def __enter__(self) -> HeaderFlood:
        # every connection open first (each one admitted), then all of them sending at once
        self.socks = [
            socket.create_connection(self.address, timeout=HANG) for _ in range(self.count)
        ]
        with ThreadPoolExecutor(self.count) as pool:
            list(pool.map(self._stream, self.socks))
        return self

    def _stream(self, sock: socket.socket) -> None:
        try:
            sock.sendall(self.head)
            for line in self.lines:
                sock.sendall(line)
        except OSError:  # closed by the server mid-head: what it answered first, if anything
            answer = _status_line(sock)
            with self._lock:
                self.refused += 1
                if answer:
                    self.answers.append(answer)

    def __exit__(self, *exc: object) -> None:
        for sock in self.socks:
            sock.close()


def _status_line(sock: socket.socket) -> bytes:
    try:
        return sock.recv(4096).split(b"\r\n", 1)[0]
    except OSError:
        return b""


def ranged_gets(head: str, get: str, spans: Sequence[tuple[int, int]]) -> list[bytes]:
    """GET ``Range: bytes=first-last`` of each of ``spans`` at once, each on its own connection
    (a thread each): every connection opened and signed first (a presigned ``head``, fewer at a
    time than the endpoint's unsigned connections, none of which it may close for another), then
    all the presigned ``get``s sent together. The bodies, in order; AssertionError unless each is
    a 206."""
    ready = threading.Barrier(len(spans), timeout=HANG)
    opening = threading.Semaphore(32)

    def one(span: tuple[int, int]) -> bytes:
        conn = http.client.HTTPConnection(urlsplit(head).netloc, timeout=HANG)
        try:
            with opening:
                conn.request("HEAD", _target(head))
                answer = conn.getresponse()
                answer.read()
                assert answer.status == 200, answer.status
            ready.wait()
            conn.request("GET", _target(get), headers={"Range": "bytes={}-{}".format(*span)})
            answer = conn.getresponse()
            body = answer.read()
            assert answer.status == 206, (answer.status, body[:300])
            return body
        finally:
            conn.close()

    with ThreadPoolExecutor(len(spans)) as pool:
        return list(pool.map(one, spans))


def _target(url: str) -> str:
    split = urlsplit(url)
    return f"{split.path}?{split.query}" if split.query else split.path
