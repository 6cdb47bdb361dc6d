"""How every request leaves this machine: bounded in time, through the proxy the environment names, trusting its CAs.

One transport under the run's one client (Hub API calls and downloads alike), so that no request can hang on a
server that accepts connections and never answers (or drips its answer), or bypass the proxy and CA settings.
The deadlines themselves live in mdl.transfer.wire: ``--timeout`` bounds each request until its whole header
block has arrived; every body must keep a minimum pace; a Hub API reply must be whole within a deadline.
"""

from __future__ import annotations

import ssl
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass

import httpcore2
import httpx2

from mdl.transfer.proxy import Proxy, proxy_for
from mdl.transfer.ranges import parse_decimal
from mdl.transfer.tls import check_ca_locations, ssl_context
from mdl.transfer.wire import WireBackend, WireStream, header_deadline

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
    """Route each request directly or through its proxy, bounded by the run's deadlines (mdl.transfer.wire).

    Routing is ours, not httpx2 ``mounts=``: NO_PROXY entries may be CIDR blocks or carry ports (mdl.transfer.proxy),
    which mount patterns cannot express, and httpx2's HTTPTransport takes no network backend, which the deadlines
    need. So each route is an httpcore2 pool (public API) over :class:`~mdl.transfer.wire.WireBackend`, and
    httpcore2's errors become httpx2's exactly as httpx2's own transport maps them.
    A transport error raised on the way through a proxy carries it as ``exc.mdl_proxy`` so messages can name it.
    """

    def __init__(self, network: Network, *, pool_size: int = 10) -> None:
        self.network = network
        self._environ = dict(network.environ or {})
        # A CA variable naming nothing is exit 2 before any request; loading the certificates it names, like the
        # system's trust store (~30-50 ms), waits for the first TLS connection: `mdl get http://...` never pays.
        check_ca_locations(self._environ)
        self._ssl: ssl.SSLContext | None = None
        self._pool_size = pool_size
        self._backend = WireBackend()
        self._direct: dict[bool, httpcore2.ConnectionPool] = {}  # by "is https"
        self._proxied: dict[str, httpcore2.ConnectionPool] = {}
        self._lock = threading.Lock()

    def _context(self) -> ssl.SSLContext:
        if self._ssl is None:
            self._ssl = ssl_context(self._environ)
        return self._ssl

    def _pool(self, proxy: Proxy | None, *, tls: bool = True) -> httpcore2.ConnectionPool:
        # Only plain http:// requests, sent directly, reach a pool made with tls=False: it never opens a TLS
        # connection, and its context trusts no CA at all, so that one would fail closed if it ever did.
        context = self._context() if tls or proxy is not None else ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        size = self._pool_size
        if proxy is None:
            return httpcore2.ConnectionPool(
                ssl_context=context,
                max_connections=size,
                max_keepalive_connections=size,
                keepalive_expiry=KEEPALIVE_SECONDS,
                network_backend=self._backend,
            )
        # httpx2.Proxy parses the URL's credentials into Proxy-Authorization the way httpx2 itself would.
        parsed = httpx2.Proxy(proxy.url)
        return httpcore2.HTTPProxy(
            proxy_url=httpcore2.URL(
                scheme=parsed.url.raw_scheme, host=parsed.url.raw_host, port=parsed.url.port, target=parsed.url.raw_path
            ),
            proxy_auth=parsed.raw_auth,
            proxy_headers=parsed.headers.raw,
            ssl_context=context,
            # an https:// proxy is verified against the same CAs as the servers
            proxy_ssl_context=context if proxy.url.lower().startswith("https://") else None,
            max_connections=size,
            max_keepalive_connections=size,
            keepalive_expiry=KEEPALIVE_SECONDS,
            network_backend=self._backend,
        )

    def route(self, url: str) -> tuple[httpcore2.ConnectionPool, Proxy | None]:
        """The pool for ``url`` and the proxy it goes through (None: direct)."""
        proxy = proxy_for(url, self._environ)
        with self._lock:
            if proxy is None:
                tls = not url[:7].lower().startswith("http://")
                pool = self._direct.get(tls)
                if pool is None:
                    pool = self._direct[tls] = self._pool(None, tls=tls)
                return pool, None
            pool = self._proxied.get(proxy.url)
            if pool is None:
                pool = self._proxied[proxy.url] = self._pool(proxy)
        return pool, proxy

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        # Whatever the caller asked (even timeout=None), no phase waits longer than the run's timeout ...
        request.extensions["timeout"] = self.network.timeouts()
        assert isinstance(request.stream, httpx2.SyncByteStream)
        pool, proxy = self.route(str(request.url))
        core = httpcore2.Request(
            method=request.method,
            url=httpcore2.URL(
                scheme=request.url.raw_scheme,
                host=request.url.raw_host,
                port=request.url.port,
                target=request.url.raw_path,
            ),
            headers=request.headers.raw,
            content=request.stream,
            extensions=request.extensions,
        )
        try:
            # ... and the whole header block (connect, TLS, proxy tunnel, send, headers) comes within it, in total.
            with httpx2_errors(), header_deadline(self.network.timeout):
                answer = pool.handle_request(core)
        except httpx2.TransportError as exc:
            if proxy is not None:
                exc.mdl_proxy = proxy  # type: ignore[attr-defined]
            raise
        stream = answer.extensions.get("network_stream")
        if isinstance(stream, WireStream):  # a kept-alive connection's new answer: its body starts a fresh pace
            stream.begin_body(self.network.timeout)
        assert isinstance(answer.stream, Iterable)
        return httpx2.Response(
            status_code=answer.status,
            headers=answer.headers,
            stream=_Body(answer.stream),
            extensions=answer.extensions,
        )

    def abort(self) -> None:
        """Ctrl-C or SIGTERM: wake every request blocked on the network now (its connection is shut down)."""
        self._backend.abort()

    def close(self) -> None:
        with self._lock:
            for pool in (*self._direct.values(), *self._proxied.values()):
                pool.close()
            self._direct.clear()
            self._proxied.clear()


KEEPALIVE_SECONDS = 5.0  # httpx2's default: an idle connection older than this is not reused

# httpcore2's exceptions and httpx2's, most specific first (httpx2's own transport maps them the same way).
_ERRORS: tuple[tuple[type[Exception], type[httpx2.TransportError]], ...] = (
    (httpcore2.ConnectTimeout, httpx2.ConnectTimeout),
    (httpcore2.ReadTimeout, httpx2.ReadTimeout),
    (httpcore2.WriteTimeout, httpx2.WriteTimeout),
    (httpcore2.PoolTimeout, httpx2.PoolTimeout),
    (httpcore2.TimeoutException, httpx2.TimeoutException),
    (httpcore2.ConnectError, httpx2.ConnectError),
    (httpcore2.ReadError, httpx2.ReadError),
    (httpcore2.WriteError, httpx2.WriteError),
    (httpcore2.NetworkError, httpx2.NetworkError),
    (httpcore2.ProxyError, httpx2.ProxyError),
    (httpcore2.UnsupportedProtocol, httpx2.UnsupportedProtocol),
    (httpcore2.LocalProtocolError, httpx2.LocalProtocolError),
    (httpcore2.RemoteProtocolError, httpx2.RemoteProtocolError),
    (httpcore2.ProtocolError, httpx2.ProtocolError),
)


@contextmanager
def httpx2_errors(request: httpx2.Request | None = None) -> Iterator[None]:
    """Raise httpcore2's transport errors as the matching httpx2 ones (bound to ``request`` when given)."""
    try:
        yield
    except Exception as exc:
        for core, mapped in _ERRORS:
            if isinstance(exc, core):
                raise mapped(str(exc), request=request) from exc
        raise


class _Body(httpx2.SyncByteStream):
    """An httpcore2 body as httpx2 streams it, with its errors mapped."""

    def __init__(self, stream: Iterable[bytes]) -> None:
        self._stream = stream

    def __iter__(self) -> Iterator[bytes]:
        with httpx2_errors():
            yield from self._stream

    def close(self) -> None:
        close = getattr(self._stream, "close", None)
        if close is not None:
            close()


def set_read_timeout(response: httpx2.Response, seconds: float) -> None:
    """Bound the rest of ``response``'s body by ``seconds`` (the stall timeout): no read waits longer, and
    ``seconds`` of waiting that bring fewer than ``seconds × MIN_BODY_RATE`` bytes are a stall (``ReadTimeout``).

    httpcore2 reads the request's timeout extension when the body starts streaming, so changing it after the
    headers arrived bounds the body differently from the wait for the answer to begin; the pace is the stream's.
    """
    timeouts = dict(response.request.extensions.get("timeout") or {})
    timeouts["read"] = seconds
    response.request.extensions["timeout"] = timeouts
    stream = response.extensions.get("network_stream")
    if isinstance(stream, WireStream):
        stream.begin_body(seconds)


def set_body_deadline(response: httpx2.Response, seconds: float) -> None:
    """The whole rest of ``response``'s body must arrive within ``seconds`` from now, or reading it raises
    ``httpx2.ReadTimeout`` (on top of the pace every body keeps). A response not from mdl's transport is left as is."""
    stream = response.extensions.get("network_stream")
    if isinstance(stream, WireStream):
        stream.pace.deadline = time.monotonic() + seconds


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
            set_body_deadline(response, DRAIN_SECONDS)  # a trickle is not worth its connection
            for _ in response.iter_raw():
                pass
    except httpx2.HTTPError:
        pass  # the connection is not reusable: closing it is all there is to do
    finally:
        response.close()
