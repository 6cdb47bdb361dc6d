"""How every request leaves this machine: bounded in time, through the proxy the environment names, trusting its CAs.

One transport under the run's one client (Hub API calls and downloads alike), so that no request can hang on a
server that accepts connections and never answers, or bypass the proxy and CA settings.
"""

from __future__ import annotations

import ssl
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass

import httpx2

from mdl.transfer.proxy import Proxy, proxy_for
from mdl.transfer.ranges import parse_decimal
from mdl.transfer.tls import ca_locations, ssl_context

DEFAULT_TIMEOUT = 10.0


@dataclass(frozen=True)
class Network:
    """What a run's connections obey: the timeout and the environment (proxies, CA variables) it was given."""

    timeout: float = DEFAULT_TIMEOUT
    environ: Mapping[str, str] | None = None  # None: no proxy, the system's CAs

    def timeouts(self) -> dict[str, float]:
        """The per-request timeout extension httpcore2 reads: every phase bounded by ``timeout``."""
        return {"connect": self.timeout, "read": self.timeout, "write": self.timeout, "pool": self.timeout}


class NetTransport(httpx2.BaseTransport):
    """Route each request directly or through its proxy, with every phase of it bounded by the run's timeout.

    A transport error raised on the way through a proxy carries it as ``exc.mdl_proxy`` so messages can name it.
    """

    def __init__(self, network: Network, *, pool_size: int = 10) -> None:
        self.network = network
        self._environ = dict(network.environ or {})
        # CAs the environment names are loaded now: a wrong one is exit 2 before any request. The system's trust
        # store (~50 ms to load) waits for the first TLS connection: `mdl get http://...` never pays for it.
        self._ssl: ssl.SSLContext | None = ssl_context(self._environ) if any(ca_locations(self._environ)) else None
        self._limits = httpx2.Limits(max_connections=pool_size, max_keepalive_connections=pool_size)
        self._direct: dict[bool, httpx2.HTTPTransport] = {}  # by "is https"
        self._proxied: dict[str, httpx2.HTTPTransport] = {}
        self._lock = threading.Lock()

    def _context(self) -> ssl.SSLContext:
        if self._ssl is None:
            self._ssl = ssl_context(self._environ)
        return self._ssl

    def _transport(self, proxy: Proxy | None, *, tls: bool = True) -> httpx2.HTTPTransport:
        # Only plain http:// requests, sent directly, reach a transport made with tls=False: its pool never opens a
        # TLS connection, and its context trusts no CA at all, so that one would fail closed if it ever did.
        context = self._context() if tls or proxy is not None else ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        return httpx2.HTTPTransport(
            verify=context,
            limits=self._limits,
            trust_env=False,
            proxy=_proxy(proxy, context) if proxy is not None else None,
        )

    def route(self, url: str) -> tuple[httpx2.HTTPTransport, Proxy | None]:
        """The transport for ``url`` and the proxy it goes through (None: direct)."""
        proxy = proxy_for(url, self._environ)
        with self._lock:
            if proxy is None:
                tls = not url[:7].lower().startswith("http://")
                transport = self._direct.get(tls)
                if transport is None:
                    transport = self._direct[tls] = self._transport(None, tls=tls)
                return transport, None
            transport = self._proxied.get(proxy.url)
            if transport is None:
                transport = self._proxied[proxy.url] = self._transport(proxy)
        return transport, proxy

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        # Whatever the caller asked (even timeout=None), no phase waits longer than the run's timeout.
        request.extensions["timeout"] = self.network.timeouts()
        transport, proxy = self.route(str(request.url))
        try:
            return transport.handle_request(request)
        except httpx2.TransportError as exc:
            if proxy is not None:
                exc.mdl_proxy = proxy  # type: ignore[attr-defined]
            raise

    def close(self) -> None:
        with self._lock:
            for transport in (*self._direct.values(), *self._proxied.values()):
                transport.close()
            self._direct.clear()
            self._proxied.clear()


def _proxy(proxy: Proxy, context: ssl.SSLContext) -> httpx2.Proxy:
    """An httpx2 proxy; an https:// proxy is verified against the same CAs as the servers."""
    if proxy.url.lower().startswith("https://"):
        return httpx2.Proxy(proxy.url, ssl_context=context)
    return httpx2.Proxy(proxy.url)


def set_read_timeout(response: httpx2.Response, seconds: float) -> None:
    """Let the rest of ``response``'s body wait up to ``seconds`` between bytes (the stall timeout).

    httpcore2 reads the request's timeout extension when the body starts streaming, so changing it after the
    headers arrived bounds the body differently from the wait for the answer to begin.
    """
    timeouts = dict(response.request.extensions.get("timeout") or {})
    timeouts["read"] = seconds
    response.request.extensions["timeout"] = timeouts


DRAIN_LIMIT = 64 * 1024  # a leftover body this small is read so its connection can serve the next request
DRAIN_SECONDS = 1.0  # ... if it comes within this long


def drain(response: httpx2.Response) -> None:
    """Close a response whose body we do not need, reading it first when it is small and sized (a redirect's
    note, a probe's one byte): a response closed mid-body takes its keep-alive connection down with it, and the
    next request pays a new handshake (a round trip or three far from the server)."""
    try:
        length = parse_decimal(response.headers.get("Content-Length"))
        if length is not None and length <= DRAIN_LIMIT:
            set_read_timeout(response, DRAIN_SECONDS)
            deadline = time.monotonic() + DRAIN_SECONDS
            for _ in response.iter_raw():
                if time.monotonic() > deadline:  # a trickle is not worth its connection
                    break
    except httpx2.HTTPError:
        pass  # the connection is not reusable: closing it is all there is to do
    finally:
        response.close()
