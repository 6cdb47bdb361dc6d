"""How every request leaves this machine: bounded in time, through the proxy the environment names, trusting its CAs.

One transport under the run's one client (Hub API calls and downloads alike), so that no request can hang on a
server that accepts connections and never answers, or bypass the proxy and CA settings.
"""

from __future__ import annotations

import ssl
import threading
from collections.abc import Mapping
from dataclasses import dataclass

import httpx2

from mdl.transfer.proxy import Proxy, proxy_for
from mdl.transfer.tls import ssl_context

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
        self._ssl: ssl.SSLContext = ssl_context(self._environ)
        self._limits = httpx2.Limits(max_connections=pool_size, max_keepalive_connections=pool_size)
        self._direct = self._transport(None)
        self._proxied: dict[str, httpx2.HTTPTransport] = {}
        self._lock = threading.Lock()

    def _transport(self, proxy: Proxy | None) -> httpx2.HTTPTransport:
        return httpx2.HTTPTransport(
            verify=self._ssl,
            limits=self._limits,
            trust_env=False,
            proxy=_proxy(proxy, self._ssl) if proxy is not None else None,
        )

    def route(self, url: str) -> tuple[httpx2.HTTPTransport, Proxy | None]:
        """The transport for ``url`` and the proxy it goes through (None: direct)."""
        proxy = proxy_for(url, self._environ)
        if proxy is None:
            return self._direct, None
        with self._lock:
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
        self._direct.close()
        with self._lock:
            for transport in self._proxied.values():
                transport.close()
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
