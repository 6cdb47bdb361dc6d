"""The one transport: httpx2 mounts for the environment's proxies (as curl picks them) and CAs, each
an httpcore2 pool on a network backend that bounds the whole header block; bodies paced in the one
chunk loop every reader takes."""

from __future__ import annotations

import ipaddress
import math
import re
import socket
import ssl
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import closing, contextmanager, suppress
from functools import partial
from typing import Any, NamedTuple
from urllib.parse import urlsplit

import httpcore2
import httpx2

from mdl.errors import UsageError
from mdl.redact import REDACTED, unshown
from mdl.setting import DEFAULT_TIMEOUT, ca_locations
from mdl.transfer import early
from mdl.transfer._headers import parse_decimal
from mdl.transfer.tls import shared_ssl_context

KEEPALIVE_SECONDS = 5.0  # httpx2's default: an idle connection older than this is not reused
SCHEMES = ("http", "https")


class Proxy(NamedTuple):
    """A proxy the environment names, and the variable that named it."""

    url: str
    source: str  # e.g. "HTTPS_PROXY"

    def __repr__(self) -> str:  # (no -H header, signed URL or proxy login in a traceback)
        return unshown(self)

    @property
    def shown(self) -> str:
        parts = urlsplit(self.url)
        if "@" not in parts.netloc:
            return self.url
        userinfo, host = parts.netloc.rsplit("@", 1)
        return parts._replace(netloc=f"{userinfo.split(':', 1)[0]}:{REDACTED}@{host}").geturl()

    def describe(self) -> str:
        return f"proxy {self.shown} (from {self.source})"


def _lookup(environ: Mapping[str, str], name: str) -> tuple[str, str] | None:
    for spelling in (name.lower(), name.upper()):
        value = (environ.get(spelling) or "").strip()
        if value:
            return value, spelling
    return None


def origin(url: str) -> tuple[str, str, int]:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    port = parts.port or (443 if scheme == "https" else 80)
    return scheme, (parts.hostname or "").lower(), port


def _scheme_proxy(scheme: str, environ: Mapping[str, str]) -> Proxy | None:
    found = _lookup(environ, f"{scheme}_proxy") or _lookup(environ, "all_proxy")
    if found is None:
        return None
    value, source = found
    # curl's default proxy scheme
    return Proxy(value if "://" in value else f"http://{value}", source)


_HOST_NAME = r"[a-z0-9_-]+(?:\.[a-z0-9_-]+)*\.?"


def _split_port(entry: str) -> tuple[str, int | None]:
    if entry.startswith("["):  # [v6]:port
        end = entry.find("]")
        rest = entry[end + 1 :]
        port = int(rest[1:]) if rest.startswith(":") and _is_port(rest[1:]) else None
        return entry[1:end], port
    if entry.count(":") == 1:
        name, _, digits = entry.partition(":")
        if _is_port(digits):
            return name, int(digits)
    return entry, None


def _is_port(text: str) -> bool:
    # int() takes '²' and chokes on 5000 digits
    return text.isascii() and text.isdigit() and len(text) <= 5


def _no_proxy_host(entry: str) -> str | None:
    """The host part of the mount pattern one NO_PROXY entry makes (None: an entry that names no
    host).
    """
    name, port = _split_port(entry)
    suffix = "" if port is None else f":{port}"
    try:
        network = ipaddress.ip_network(name, strict=False)
    # a host name: itself and its subdomains ("*example.com" is not "notexample.com")
    except ValueError:
        name = name.lstrip(".").removeprefix("*.")
        if not re.fullmatch(_HOST_NAME, name):
            return None
        # httpx2 cannot put its wildcard before a punycode label ("*xn--…"): such a name is matched
        # exactly
        return next(
            (host for host in (f"*{name}{suffix}", f"{name}{suffix}") if _parses(host)), None
        )
    address = network.network_address
    host = f"[{address.compressed}]" if network.version == 6 else address.compressed
    if network.num_addresses == 1:
        return f"{host}{suffix}"
    # httpx2 has no port on a network: the whole block goes direct
    return f"{host}/{network.prefixlen}"


def _parses(host: str) -> bool:
    try:
        return bool(httpx2.URL(f"all://{host}").host)
    except (httpx2.InvalidURL, ValueError):  # idna's errors are ValueErrors
        return False


def route_table(environ: Mapping[str, str]) -> dict[str, Proxy | None]:
    """httpx2 mount patterns and the proxy each goes through (None: direct), as curl picks it:
    ``<scheme>_proxy`` then ``all_proxy``, lowercase first; NO_PROXY's ``*``, names (and their
    subdomains), ``.names``, IPs and CIDR blocks, each with an optional ``:port``, direct. httpx2
    tries a host, a network, then a scheme alone (URLPattern's priority), so an entry wins over its
    scheme's proxy."""
    no_proxy = _lookup(environ, "no_proxy")
    entries = [entry.strip().lower() for entry in (no_proxy[0] if no_proxy else "").split(",")]
    table: dict[str, Proxy | None] = {}
    for scheme in SCHEMES:
        proxy = None if "*" in entries else _scheme_proxy(scheme, environ)
        table[f"{scheme}://"] = proxy
        if proxy is not None:
            hosts = (_no_proxy_host(entry) for entry in entries if entry)
            table.update({f"{scheme}://{host}": None for host in hosts if host is not None})
    return table


# bytes asked of the socket per body read (httpcore2's 64 KiB costs ~3x the CPU per byte); a header
# block is read as httpcore2 asks
READ_SIZE = 1 << 20
MIN_BODY_RATE = 1024  # bytes per second of waiting: slower than this for a whole window is a stall

# this thread's header budget (seconds) and, once its first I/O began, its deadline
_request = threading.local()
# this thread's read buffer: one for every read of every stream it reads
_buffers = threading.local()


@contextmanager
def _header_budget(seconds: float, sent: early.Early | None = None) -> Iterator[None]:
    """Connect, TLS, proxy tunnel, send and the header block all within ``seconds``, from the
    first network call; ``sent``: the connection that sent this request early, for the connect.
    """
    _request.budget, _request.deadline, _request.early = seconds, None, sent
    try:
        yield
    finally:
        _request.budget, _request.deadline = None, None
        if (unused := _request.early) is not None:  # (a connection of the pool's took it)
            _request.early = None
            unused.close()


def _sent_early(core: httpcore2.Request, url: httpx2.URL) -> early.Early | None:
    """The connection that sent ``core`` before the imports, if it sent these very bytes."""
    if not early.pending():
        return None
    port = url.port or (443 if url.scheme == "https" else 80)
    head = early.request_bytes(core.method, url.raw_path, core.headers)
    return early.take(url.scheme, url.host, port, head)


def _cut(timeout: float | None, kind: type[Exception]) -> float | None:
    """``timeout``, cut to what is left of this thread's header budget (counted from its first
    network call).
    """
    budget: float | None = getattr(_request, "budget", None)
    if budget is None:
        return timeout
    now = time.monotonic()
    if _request.deadline is None:
        _request.deadline = now + budget
    left: float = _request.deadline - now
    if left <= 0:
        raise kind("timed out")
    return left if timeout is None else min(timeout, left)


def read_buffer() -> memoryview:
    """This thread's read buffer (``READ_SIZE``), made once: a view of it is valid until the
    thread's next read.
    """
    view: memoryview | None = getattr(_buffers, "view", None)
    if view is None:
        view = _buffers.view = memoryview(bytearray(READ_SIZE))
    return view


class WireStream(httpcore2.NetworkStream):
    """A connection as httpcore2 sees it: reads a body ``READ_SIZE`` at a time into the thread's
    buffer, with the socket's timeout set only when it changes (httpcore2's own stream sets it, an
    ioctl, at every read); while a header block is awaited (read as httpcore2 asks) every call is
    cut to the request's budget. TLS inside a proxy's TLS is left to httpcore2's stream. ``home``:
    where a direct connection goes back to once its answer's body was read past the parser to its
    last byte (``ended``)."""

    def __init__(
        self,
        inner: httpcore2.NetworkStream,
        *,
        layers: int,
        live: LiveStreams,
        home: Callable[[WireStream], None] | None = None,
    ) -> None:
        # layers 0: TCP, 1: TLS, 2: TLS inside TLS
        self._inner, self._layers, self._live, self._home = inner, layers, live, home
        # the raw reader took the whole body: the next answer starts at the socket's next byte,
        # which h11 (left mid-body) does not know, so httpcore2 closes it: it goes ``home`` instead
        self.ended = False
        self._moved = False
        sock = inner.get_extra_info("socket")
        own = isinstance(sock, socket.socket) and layers == (
            1 if isinstance(sock, ssl.SSLSocket) else 0
        )
        self._sock: socket.socket | None = sock if own else None
        self._timeout = sock.gettimeout() if own else None
        live.add(self)

    @property
    def can_read_into(self) -> bool:
        """Whether the socket itself yields the plaintext (TCP, or TLS on it): what
        :meth:`read_into` needs.
        """
        return self._sock is not None

    @property
    def holds_bytes(self) -> bool:
        """Whether TLS holds bytes it decrypted and nobody read: the socket itself looks idle."""
        return isinstance(self._sock, ssl.SSLSocket) and self._sock.pending() > 0

    def read_into(self, view: memoryview, timeout: float | None = None) -> int:
        """Read into ``view``, as many bytes as came (0: the peer closed), httpcore2's errors on
        failure.
        """
        sock = self._sock
        assert sock is not None
        try:
            timeout = _cut(timeout, httpcore2.ReadTimeout)
            if timeout != self._timeout:  # an ioctl: only when it changes
                sock.settimeout(timeout)
                self._timeout = timeout
            return sock.recv_into(view)
        except TimeoutError as exc:
            raise httpcore2.ReadTimeout(str(exc) or "timed out") from exc
        except OSError as exc:
            raise httpcore2.ReadError(str(exc) or type(exc).__name__) from exc

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        # A header block is read as httpcore2 asks: what comes past it is the body's first bytes,
        # copied three times through the parser (a MiB a request there costs ~1 ms of CPU); a
        # body the parser reads is read ``READ_SIZE`` at a time.
        size = max_bytes if getattr(_request, "budget", None) is not None else READ_SIZE
        if self._sock is None:
            return self._inner.read(
                max(max_bytes, size), timeout=_cut(timeout, httpcore2.ReadTimeout)
            )
        view = read_buffer()[:size]
        return bytes(view[: self.read_into(view, timeout)])  # copied out: the parser keeps it

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        # httpcore2's write sets the socket's timeout (once a request): reads set it again
        self._timeout = math.nan
        self._inner.write(buffer, timeout=_cut(timeout, httpcore2.WriteTimeout))

    def close(self) -> None:
        if self._moved:  # gone home: its next connection owns it
            return
        if self.ended and self._home is not None:
            # a new stream for the next connection: this one's owner may close it again
            self._moved = True
            self._home(
                WireStream(self._inner, layers=self._layers, live=self._live, home=self._home)
            )
            return
        # wakes a read another thread waits in: a bare close() leaves it waiting for data
        if self._sock is not None:
            with suppress(OSError):
                socket.socket.shutdown(self._sock, socket.SHUT_RDWR)
        self._inner.close()

    def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore2.NetworkStream:
        if self._layers and self._home is not None:
            return self  # a direct TLS connection back from home: its pool's context, its host
        limit = _cut(timeout, httpcore2.ConnectTimeout)
        inner = self._inner.start_tls(ssl_context, server_hostname=server_hostname, timeout=limit)
        return WireStream(inner, layers=self._layers + 1, live=self._live, home=self._home)

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class LiveStreams:
    """The run's open connections, for Ctrl-C to shut down: threads add the ones they open while
    another lists them (a bare WeakSet raises "changed size during iteration" at exactly that
    moment)."""

    def __init__(self) -> None:
        self._streams: weakref.WeakSet[WireStream] = weakref.WeakSet()
        self._lock = threading.Lock()

    def add(self, stream: WireStream) -> None:
        with self._lock:
            self._streams.add(stream)

    def snapshot(self) -> list[WireStream]:
        with self._lock:
            return list(self._streams)


class WireBackend(httpcore2.NetworkBackend):
    """One pool's connections, on the run's ``live`` list. A direct pool's (``keep``) come back
    from bodies read past the parser (:class:`WireStream`) and serve its next new connection to
    the same host while fresh, as an idle one in the pool would (``KEEPALIVE_SECONDS``, not closed
    by the server)."""

    def __init__(self, live: LiveStreams, *, keep: bool) -> None:
        self._backend = httpcore2.SyncBackend()
        self.live, self._keep = live, keep
        self._kept: list[tuple[float, tuple[str, int], WireStream]] = []
        self._lock = threading.Lock()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore2.SOCKET_OPTION] | None = None,
    ) -> httpcore2.NetworkStream:
        kept = self._take((host, port))
        if kept is not None:
            return kept
        home = partial(self._put, (host, port)) if self._keep else None
        found: early.Early | None = getattr(_request, "early", None)
        _request.early = None  # (taken for this request's origin: early.take)
        if found is not None:
            limit = _cut(timeout, httpcore2.ConnectTimeout)
            sock = found.wait(DEFAULT_TIMEOUT if limit is None else limit)
            if sock is None and not found.finished:  # (its connect took the time one is given)
                raise httpcore2.ConnectTimeout("timed out")
            if sock is not None:
                from mdl.transfer.earlywire import EarlyStream

                stream = EarlyStream(sock, found.sent)
                return WireStream(stream, layers=0, live=self.live, home=home)
        inner = self._backend.connect_tcp(
            # ASCII already (httpx2's raw_host): as bytes, getaddrinfo does not load the idna codec
            host.encode("ascii"),  # type: ignore[arg-type]
            port,
            timeout=_cut(timeout, httpcore2.ConnectTimeout),
            local_address=local_address,
            socket_options=socket_options,
        )
        return WireStream(inner, layers=0, live=self.live, home=home)

    def _put(self, origin: tuple[str, int], stream: WireStream) -> None:
        with self._lock:
            self._kept.append((time.monotonic(), origin, stream))

    def _take(self, origin: tuple[str, int]) -> WireStream | None:
        """The newest connection kept for ``origin`` that is still good; one readable while idle
        (the server closed it, or sent what no request asked for, TLS's buffer too) is closed and
        the next looked at. Only the one taken is polled, outside the lock (a poll of every kept
        one under it cost each request ~6 polls and the other streams' waits)."""
        while (found := self._newest(origin)) is not None:
            if not found.get_extra_info("is_readable") and not found.holds_bytes:
                return found
            found.close()
        return None

    def _newest(self, origin: tuple[str, int]) -> WireStream | None:
        """The newest connection kept for ``origin``, off the list, once those idle too long are
        closed."""
        now = time.monotonic()
        with self._lock:
            stale = [kept for kept in self._kept if now - kept[0] >= KEEPALIVE_SECONDS]
            fresh = [kept for kept in self._kept if kept not in stale]
            found = next((kept for kept in reversed(fresh) if kept[1] == origin), None)
            self._kept = [kept for kept in fresh if kept is not found]
        for _, _, old in stale:
            old.close()
        return None if found is None else found[2]

    def close(self) -> None:
        with self._lock:
            kept, self._kept = self._kept, []
        for _, _, stream in kept:
            stream.close()


class SlowBody(httpx2.ReadTimeout):
    """A body that came too slowly (under the floor rate, or past its deadline): the server
    answered, but its reply did not come."""


class Pace:
    """``window`` seconds spent waiting on the network must bring ``window × MIN_BODY_RATE`` bytes
    (time spent writing or rate-limited is not waiting); ``deadline`` bounds the whole body."""

    __slots__ = ("deadline", "got", "request", "waited", "window")

    def __init__(self, window: float, request: httpx2.Request | None = None) -> None:
        self.window = window
        self.request = request  # what the error names
        self.deadline: float | None = None  # time.monotonic() by which the whole body must be here
        self.waited = 0.0
        self.got = 0

    def count(self, began: float, got: int) -> None:
        """One read that brought ``got`` bytes after waiting since ``began``; ReadTimeout on a stall
        or past the deadline (each read is bounded by the read timeout, so neither is overshot by
        more than one)."""
        now = time.monotonic()
        self.waited += now - began
        self.got += got
        if self.got >= self.window * MIN_BODY_RATE:
            self.waited, self.got = 0.0, 0
        elif self.waited >= self.window:
            raise SlowBody(
                f"under {MIN_BODY_RATE} bytes/s for {self.window:g} s", request=self.request
            )
        if self.deadline is not None and now >= self.deadline:
            raise SlowBody("the body did not arrive in time", request=self.request)


BODY = "mdl_body"  # the response extension holding its :class:`Body`


class Body(httpx2.SyncByteStream):
    """An answer's body: the chunk loop every reader goes through (``iter_raw``, ``iter_bytes``,
    ``read``), its pace checked after each read."""

    def __init__(
        self, answer: httpcore2.Response, *, window: float, request: httpx2.Request
    ) -> None:
        self._answer = answer
        self.pace = Pace(window=window, request=request)

    def __iter__(self) -> Iterator[bytes]:
        assert isinstance(self._answer.stream, Iterable)
        chunks = iter(self._answer.stream)
        with httpx2_errors(self.pace.request):
            while True:
                began = time.monotonic()
                chunk = next(chunks, None)
                if chunk is None:
                    return
                self.pace.count(began, len(chunk))
                yield chunk

    def close(self) -> None:
        self._answer.close()


def pace_of(response: httpx2.Response) -> Pace | None:
    body = response.extensions.get(BODY)
    return body.pace if isinstance(body, Body) else None


# a worker's own pools while ``own_connections`` runs in its thread: {route: pool}
_own = threading.local()


@contextmanager
def own_connections() -> Iterator[None]:
    """This thread's requests, for the block, on connections of its own: a pool per route that no
    other thread locks or scans (a worker taking small file after small file: with one shared pool
    every request and every answer's end takes the pool's lock and looks at each of its connections,
    a poll of each idle one, while the others wait). Closed at the end of the block."""
    pools: dict[Route, httpcore2.ConnectionPool] = {}
    _own.pools = pools
    try:
        yield
    finally:
        del _own.pools
        for pool in pools.values():
            pool.close()


class Route(httpx2.BaseTransport):
    """One way out, direct or through one proxy: an httpcore2 pool on its own backend, made at its
    first request (so a run that never opens TLS never loads the CAs); an error through a proxy
    names it (``exc.mdl_proxy``)."""

    def __init__(
        self,
        open_pool: Callable[[], httpcore2.ConnectionPool],
        *,
        timeout: float,
        proxy: Proxy | None,
        backend: WireBackend,
        tls: bool,
    ):
        self._open_pool, self.timeout, self.proxy, self.tls = open_pool, timeout, proxy, tls
        self._backend = backend
        self._pool: httpcore2.ConnectionPool | None = None
        self._lock = threading.Lock()

    def _ready(self) -> httpcore2.ConnectionPool:
        with self._lock:
            if self._pool is None:
                self._pool = self._open_pool()
            return self._pool

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        # Whatever the caller asked (even timeout=None), no phase waits longer than the run's
        # timeout ...
        request.extensions["timeout"] = dict.fromkeys(
            ("connect", "read", "write", "pool"), self.timeout
        )
        assert isinstance(request.stream, httpx2.SyncByteStream)
        url = request.url
        if url.raw_scheme == b"https" and not self.tls:
            # (fail closed: httpcore2 would make a context of the process's CAs, not the run's)
            raise httpx2.UnsupportedProtocol(f"no TLS route for {url.host}")
        core = httpcore2.Request(
            method=request.method,
            url=httpcore2.URL(
                scheme=url.raw_scheme, host=url.raw_host, port=url.port, target=url.raw_path
            ),
            headers=request.headers.raw,
            content=request.stream,
            extensions=request.extensions,
        )
        own = getattr(_own, "pools", None)  # (own_connections)
        if own is not None and self not in own:
            own[self] = self._open_pool()
        pool = own[self] if own is not None else self._pool or self._ready()
        sent = _sent_early(core, url) if self.proxy is None else None
        try:
            # ... and the whole header block (connect, TLS, proxy tunnel, send, headers) comes
            # within it, in total.
            with _header_budget(self.timeout, sent), httpx2_errors(request):
                answer = pool.handle_request(core)
        except httpx2.TransportError as exc:
            if self.proxy is not None:
                exc.mdl_proxy = self.proxy  # type: ignore[attr-defined]
            raise
        body = Body(answer, window=self.timeout, request=request)
        extensions = {**answer.extensions, BODY: body}
        return httpx2.Response(
            status_code=answer.status, headers=answer.headers, stream=body, extensions=extensions
        )

    def close(self) -> None:
        with self._lock:
            if self._pool is not None:
                self._pool.close()
        self._backend.close()


class NetTransport:
    """The run's routes, built once from its environ: ``mounts`` for ``httpx2.Client`` (see
    :func:`route_table`), a direct ``default``, their connections on one list so ``abort`` reaches
    every one (``make_client`` takes it)."""

    def __init__(
        self, *, timeout: float, environ: Mapping[str, str] | None, pool_size: int = 10
    ) -> None:
        self.timeout = timeout
        self._environ = dict(environ or {})
        # A CA variable naming nothing is exit 2 now; loading the CAs (~30-50 ms) waits for the
        # first TLS connection.
        ca_locations(self._environ)
        self._pool_size = pool_size
        self._live = LiveStreams()
        # direct, by scheme
        routes = {scheme: self._route(None, tls=scheme == "https") for scheme in SCHEMES}
        self.mounts: dict[str, httpx2.BaseTransport | None] = {}
        for pattern, proxy in route_table(self._environ).items():
            scheme = pattern.partition("://")[0]
            key = scheme if proxy is None else proxy.url  # one pool per proxy, whatever the scheme
            if key not in routes:
                routes[key] = self._route(proxy, tls=True)
            self.mounts[pattern] = routes[key]
        self.default = routes["http"]  # for schemes no mount names: httpcore2 refuses them

    def _route(self, proxy: Proxy | None, *, tls: bool) -> Route:
        # only a direct connection is handed from one request to the next below the pool
        backend = WireBackend(self._live, keep=proxy is None)
        return Route(
            partial(self._pool, proxy, backend, tls=tls),
            timeout=self.timeout,
            proxy=proxy,
            backend=backend,
            tls=tls,
        )

    def _pool(
        self, proxy: Proxy | None, backend: WireBackend, *, tls: bool
    ) -> httpcore2.ConnectionPool:
        parts = urlsplit(proxy.url if proxy is not None else "http://direct")
        if proxy is not None and (parts.scheme.lower() not in SCHEMES or not parts.hostname):
            # said at its first use: a run that needs no network is not stopped by a proxy it would
            # not use
            raise UsageError(
                f"${proxy.source}: expected an http:// or https:// proxy URL, got {proxy.shown!r}"
            )
        # A plain http:// pool is never asked for an https:// origin (that scheme has its own
        # mount), the one case httpcore2 uses a context in: none is made for it (OpenSSL's set-up
        # is ~5 M instructions of a tiny http:// get).
        context = shared_ssl_context(self._environ) if tls else None
        common: dict[str, Any] = {
            "max_connections": self._pool_size,
            "max_keepalive_connections": self._pool_size,
        }
        common.update(
            ssl_context=context, keepalive_expiry=KEEPALIVE_SECONDS, network_backend=backend
        )
        if proxy is None:
            return httpcore2.ConnectionPool(**common)
        # credentials in the URL become Proxy-Authorization as httpx2 does it
        parsed = httpx2.Proxy(proxy.url)
        return httpcore2.HTTPProxy(
            proxy_url=httpcore2.URL(
                scheme=parsed.url.raw_scheme,
                host=parsed.url.raw_host,
                port=parsed.url.port,
                target=parsed.url.raw_path,
            ),
            proxy_auth=parsed.raw_auth,
            # the servers' CAs
            proxy_ssl_context=context if proxy.url.lower().startswith("https://") else None,
            **common,
        )

    def abort(self) -> None:
        """Shut every open connection down (Ctrl-C): closing a response does not wake a read
        already waiting.
        """
        for stream in self._live.snapshot():
            sock = stream.get_extra_info("socket")
            if isinstance(sock, socket.socket):
                # the fd's shutdown, not SSLSocket's unwrap: a waiting read wakes at EOF
                with suppress(OSError):
                    socket.socket.shutdown(sock, socket.SHUT_RDWR)


# httpcore2's errors as httpx2's, the most specific first (what httpx2's own transport does).
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
    """Raise httpcore2's transport errors as httpx2's (by type, from ``_ERRORS``)."""
    try:
        yield
    except Exception as exc:
        mapped = next((to for source, to in _ERRORS if isinstance(exc, source)), None)
        if mapped is None:
            raise
        raise mapped(str(exc), request=request) from exc


def set_read_timeout(response: httpx2.Response, seconds: float) -> None:
    """The stall timeout for the rest of the body: no read waits longer, and no ``seconds`` of
    waiting may bring fewer than ``seconds × MIN_BODY_RATE`` bytes (httpcore2 reads the extension
    when the body starts)."""
    extensions = response.request.extensions
    extensions["timeout"] = {**(extensions.get("timeout") or {}), "read": seconds}
    pace = pace_of(response)
    if pace is not None:
        pace.window, pace.waited, pace.got = seconds, 0.0, 0


def set_body_deadline(response: httpx2.Response, seconds: float) -> None:
    """The rest of the body must arrive within ``seconds`` from now, else ``httpx2.ReadTimeout``."""
    pace = pace_of(response)
    if pace is not None:
        pace.deadline = time.monotonic() + seconds


# an API reply read whole (the Hub's, the CAS's, a token) must be whole within this many timeouts
REPLY_FACTOR = 3


def set_reply_deadline(response: httpx2.Response, timeout: float | None) -> None:
    """An API reply read whole: the rest of its body within ``REPLY_FACTOR`` × the read ``timeout``
    (None: no deadline), however it trickles (a pace above the stall floor keeps each read alive,
    not the whole reply)."""
    if timeout is not None:
        set_body_deadline(response, REPLY_FACTOR * timeout)


# a leftover body this small is read so its connection can serve the next request
DRAIN_LIMIT = 64 * 1024
DRAIN_SECONDS = 1.0  # ... if it comes within this long


def drain(response: httpx2.Response) -> None:
    """Close a response, reading a small sized body first: one closed mid-body takes its
    keep-alive connection along.
    """
    # a read failed: closing the connection is all there is to do
    with closing(response), suppress(httpx2.HTTPError):
        length = parse_decimal(response.headers.get("Content-Length"))
        if length is not None and length <= DRAIN_LIMIT:
            set_read_timeout(response, DRAIN_SECONDS)
            set_body_deadline(response, DRAIN_SECONDS)  # a trickle is not worth its connection
            for _ in response.iter_raw():
                pass
