"""mdl's network backend for httpcore2: every read bounded by a deadline, not only by a per-read timeout.

httpcore2's timeouts restart at every read, so a server that drips one byte every half second keeps a request alive
for ever. Here (public httpcore2 API only: ``NetworkBackend``, ``NetworkStream``, ``SyncBackend``):

- **Headers.** While :func:`header_deadline` is active on a thread, every connect, TLS handshake, write and read of
  that thread shares one budget, counted from the first of them (not from the wait for a pooled connection): the
  transport sets it around each request, so the whole header block must arrive within the run's ``--timeout``.
- **Bodies.** Each answer's stream carries a :class:`Pace`: a body is too slow when the time spent *waiting on the
  network* for it reaches ``window`` seconds while fewer than ``window × MIN_BODY_RATE`` bytes arrived (the count
  starts again whenever that many have); an optional absolute deadline bounds the whole body (Hub API replies).
  Time the reader spends elsewhere (writing, the rate limiter) is not waiting, so ``--limit-rate`` is never a stall.
- **Read size.** A read asks the socket for up to 1 MiB whatever httpcore2 asked for (64 KiB): on a fast link 64 KiB
  reads cost ~3x the CPU per byte, and recv() returns what is there, so slow links see no change. Only mdl's own
  client is affected (huggingface_hub's, in the same process, keeps httpcore2's defaults).
- **Bulk reads.** :meth:`WireStream.read_into` reads a body the caller frames itself straight into its buffer.
"""

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
    """Seconds left of this thread's header budget (None: no budget), starting its clock on first use."""
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
    """How slow one answer's body may be: ``window`` seconds of waiting must bring ``window × min_rate`` bytes."""

    window: float
    min_rate: float = MIN_BODY_RATE
    deadline: float | None = None  # time.monotonic() by which the whole body must have arrived
    waited: float = 0.0
    got: int = 0

    def left(self, now: float) -> float | None:
        """Seconds the next read may wait (None: no bound)."""
        left = self.window - self.waited if self.window != math.inf else None
        if self.deadline is None:
            return left
        return self.deadline - now if left is None else min(left, self.deadline - now)

    def count(self, waited: float, got: int) -> None:
        """A read waited ``waited`` seconds for ``got`` bytes; enough bytes start a new window."""
        self.waited += waited
        self.got += got
        if self.got >= self.window * self.min_rate:
            self.waited, self.got = 0.0, 0


def _cut(timeout: float | None, left: float | None, kind: type[Exception]) -> float | None:
    """``timeout`` shortened to ``left``; raise ``kind`` when nothing is left (a 0 timeout would mean non-blocking)."""
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

    def begin_body(self, window: float | None) -> None:
        """A new answer starts on this connection: its body gets a fresh pace over ``window`` (None: unbounded)."""
        self.pace = Pace(window=math.inf if window is None else window)

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
        """True when :meth:`read_into` may be used: the socket itself yields the answer's bytes (plain TCP, or
        an ``ssl.SSLSocket`` that decrypts itself); TLS inside a proxy's TLS is decrypted in Python, above it."""
        sock = self._inner.get_extra_info("socket")
        if self._layers == 0:
            return isinstance(sock, socket.socket) and not isinstance(sock, ssl.SSLSocket)
        return self._layers == 1 and isinstance(sock, ssl.SSLSocket)

    def read_into(self, view: memoryview) -> int:
        """Read up to ``len(view)`` bytes of the current body into ``view``, past the HTTP parser, under the
        body's pace; 0 at the end of the connection. Raises httpcore2's ReadTimeout / ReadError.

        The parser never sees these bytes, so it still expects them: the caller frames the body itself (a known
        ``Content-Length``) and must close the response afterwards, which closes this connection rather than
        reuse it in an unknown state. Only when :attr:`can_read_into` holds.
        """
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
    """httpcore2's own sync backend, with every stream it opens wrapped in a :class:`WireStream`."""

    def __init__(self) -> None:
        self._backend = httpcore2.SyncBackend()
        self._live: weakref.WeakSet[WireStream] = weakref.WeakSet()

    def _opened(self, stream: httpcore2.NetworkStream) -> WireStream:
        wrapped = WireStream(stream, layers=0)
        self._live.add(wrapped)
        return wrapped

    def abort(self) -> None:
        """Ctrl-C or SIGTERM: shut every open connection down, so a thread blocked in connect's aftermath, a
        header wait or a body read wakes at once (closing a response does not wake a read already waiting)."""
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
        stream = self._backend.connect_tcp(
            host, port, timeout=limit, local_address=local_address, socket_options=socket_options
        )
        return self._opened(stream)

    def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[httpcore2.SOCKET_OPTION] | None = None,
    ) -> httpcore2.NetworkStream:
        limit = _cut(timeout, _header_left(), httpcore2.ConnectTimeout)
        stream = self._backend.connect_unix_socket(path, timeout=limit, socket_options=socket_options)
        return self._opened(stream)

    def sleep(self, seconds: float) -> None:
        self._backend.sleep(seconds)
