"""mdl's httpcore2 network backend: every read bounded by a deadline (httpcore2's timeouts restart at every
read: a byte a second lives for ever). Headers share one budget per thread (``header_deadline``); a body keeps a
:class:`Pace`; reads ask the socket for 1 MiB (httpcore2's 64 KiB costs ~3x the CPU per byte)."""

from __future__ import annotations

import contextlib
import math
import socket
import ssl
import threading
import time
import weakref
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpcore2

READ_SIZE = 1 << 20  # bytes asked of the socket per read
MIN_BODY_RATE = 1024  # bytes per second of waiting: slower than this for a whole window is a stall

_request = threading.local()  # this thread's header budget (seconds) and, once its first I/O began, its deadline


@contextmanager
def header_deadline(seconds: float | None) -> Iterator[None]:
    """Bound this thread's network I/O until the block ends to ``seconds`` in total, from its first operation."""
    _request.budget, _request.deadline = seconds, None
    try:
        yield
    finally:
        _request.budget, _request.deadline = None, None


def _header_left() -> float | None:
    budget: float | None = getattr(_request, "budget", None)
    if budget is None:
        return None
    deadline: float | None = _request.deadline
    now = time.monotonic()
    if deadline is None:
        deadline = _request.deadline = now + budget
    return deadline - now


@dataclass
class Pace:
    """``window`` seconds spent waiting on the network must bring ``window × MIN_BODY_RATE`` bytes (time spent
    writing or rate-limited is not waiting); ``deadline`` bounds the whole body."""

    window: float
    deadline: float | None = None  # time.monotonic() by which the whole body must have arrived
    waited: float = 0.0
    got: int = 0

    def left(self, now: float) -> float | None:
        left = min(self.window - self.waited, math.inf if self.deadline is None else self.deadline - now)
        return None if left == math.inf else left

    def count(self, waited: float, got: int) -> None:
        self.waited += waited
        self.got += got
        if self.got >= self.window * MIN_BODY_RATE:
            self.waited, self.got = 0.0, 0


def _cut(timeout: float | None, left: float | None, kind: type[Exception]) -> float | None:
    if left is None:
        return timeout
    if left <= 0:
        raise kind("timed out")
    return left if timeout is None else min(timeout, left)


class WireStream(httpcore2.NetworkStream):
    """An httpcore2 stream (TCP, or TLS over it, or TLS inside a proxy's TLS) read under mdl's deadlines."""

    def __init__(self, inner: httpcore2.NetworkStream, *, layers: int) -> None:
        self._inner = inner
        self._layers = layers  # 0: TCP, 1: TLS on the socket, 2: TLS inside TLS (a wrapped socket)
        self.pace = Pace(window=math.inf)

    def begin_body(self, window: float) -> None:
        self.pace = Pace(window=window)

    def _limit(self, timeout: float | None, kind: type[Exception]) -> float | None:
        header = _header_left()
        if header is not None:
            return _cut(timeout, header, kind)
        return _cut(timeout, self.pace.left(time.monotonic()), kind)

    def _counted(self, began: float, got: int) -> None:
        if getattr(_request, "budget", None) is None:  # header-phase reads are the budget's, not the body's
            self.pace.count(time.monotonic() - began, got)

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        limit = self._limit(timeout, httpcore2.ReadTimeout)
        began = time.monotonic()
        try:
            data = self._inner.read(max(max_bytes, READ_SIZE), timeout=limit)
        except httpcore2.ReadTimeout:
            self._counted(began, 0)
            raise
        self._counted(began, len(data))
        return data

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, timeout=self._limit(timeout, httpcore2.WriteTimeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self, ssl_context: ssl.SSLContext, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore2.NetworkStream:
        limit = self._limit(timeout, httpcore2.ConnectTimeout)
        inner = self._inner.start_tls(ssl_context, server_hostname=server_hostname, timeout=limit)
        return WireStream(inner, layers=self._layers + 1)

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)

    @property
    def can_read_into(self) -> bool:
        # The socket itself yields the plaintext: TCP, or an ``ssl.SSLSocket`` (not TLS inside a proxy's TLS).
        sock = self._inner.get_extra_info("socket")
        if self._layers == 0:
            return isinstance(sock, socket.socket) and not isinstance(sock, ssl.SSLSocket)
        return self._layers == 1 and isinstance(sock, ssl.SSLSocket)

    def read_into(self, view: memoryview) -> int:
        """Read body bytes into ``view`` past the HTTP parser, under the body's pace (0 at the end); the caller frames
        the body and closes the response after, so the connection is never reused in an unknown state."""
        sock = self._inner.get_extra_info("socket")
        limit = self._limit(None, httpcore2.ReadTimeout)
        began = time.monotonic()
        try:
            sock.settimeout(limit)
            got = int(sock.recv_into(view, len(view)))
        except TimeoutError as exc:
            self._counted(began, 0)
            raise httpcore2.ReadTimeout(str(exc) or "timed out") from exc
        except OSError as exc:
            raise httpcore2.ReadError(str(exc) or type(exc).__name__) from exc
        self._counted(began, got)
        return got


class WireBackend(httpcore2.NetworkBackend):
    def __init__(self) -> None:
        self._backend = httpcore2.SyncBackend()
        self._live: weakref.WeakSet[WireStream] = weakref.WeakSet()

    def abort(self) -> None:
        """Shut every open connection down (Ctrl-C): closing a response does not wake a read already waiting."""
        for stream in list(self._live):
            sock = stream.get_extra_info("socket")
            if isinstance(sock, socket.socket):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore2.SOCKET_OPTION] | None = None,
    ) -> httpcore2.NetworkStream:
        limit = _cut(timeout, _header_left(), httpcore2.ConnectTimeout)
        inner = self._backend.connect_tcp(
            host, port, timeout=limit, local_address=local_address, socket_options=socket_options
        )
        stream = WireStream(inner, layers=0)
        self._live.add(stream)
        return stream
