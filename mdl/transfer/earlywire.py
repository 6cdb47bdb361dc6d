"""An early connection (:mod:`mdl.transfer.early`) as httpcore2 reads and writes it: the request
the early thread wrote is not written again; TLS is started on it as on any connection."""

from __future__ import annotations

import select
import socket
import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpcore2


@contextmanager
def _mapped(timeout: type[Exception], other: type[Exception]) -> Iterator[None]:
    try:
        yield
    except TimeoutError as exc:
        raise timeout(str(exc) or "timed out") from exc
    except OSError as exc:
        raise other(str(exc) or type(exc).__name__) from exc


class EarlyStream(httpcore2.NetworkStream):
    """A socket the early thread connected; ``sent``: the request it wrote there (None: none)."""

    def __init__(self, sock: socket.socket, sent: bytes | None) -> None:
        self._sock, self._sent = sock, sent

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        with _mapped(httpcore2.ReadTimeout, httpcore2.ReadError):
            self._sock.settimeout(timeout)
            return self._sock.recv(max_bytes)

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        if self._sent is not None:
            sent, self._sent = self._sent, None
            if buffer == sent:  # (early.take compared them: the request is out already)
                return
            raise httpcore2.WriteError("the request differs from the one sent early")
        if buffer:
            with _mapped(httpcore2.WriteTimeout, httpcore2.WriteError):
                self._sock.settimeout(timeout)
                self._sock.sendall(buffer)

    def close(self) -> None:
        self._sock.close()

    def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore2.NetworkStream:
        with _mapped(httpcore2.ConnectTimeout, httpcore2.ConnectError):
            try:
                self._sock.settimeout(timeout)
                wrapped = ssl_context.wrap_socket(self._sock, server_hostname=server_hostname)
            except BaseException:
                self._sock.close()
                raise
        return EarlyStream(wrapped, None)

    def get_extra_info(self, info: str) -> Any:
        if info == "socket":
            return self._sock
        if info == "ssl_object":  # (an SSLSocket answers what httpcore2 asks of it: ALPN)
            return self._sock if isinstance(self._sock, ssl.SSLSocket) else None
        if info == "is_readable":  # (the server closed it, or sent what nobody asked)
            if not hasattr(select, "poll"):
                return bool(select.select([self._sock], [], [], 0)[0])
            poller = select.poll()
            poller.register(self._sock, select.POLLIN)
            return bool(poller.poll(0))
        return None
