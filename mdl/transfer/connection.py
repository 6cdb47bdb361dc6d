"""The one transport: the environment's proxy (as curl picks it) and CAs, over sockets where reads have deadlines."""

from __future__ import annotations

import ipaddress
import math
import re
import socket
import ssl
import threading
import time
import weakref
from collections.abc import Iterable, Iterator, Mapping
from contextlib import closing, contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpcore2
import httpx2

from mdl.errors import UsageError
from mdl.redact import REDACTED
from mdl.transfer.headers import parse_decimal

DEFAULT_TIMEOUT = 10.0
KEEPALIVE_SECONDS = 5.0  # httpx2's default: an idle connection older than this is not reused


@dataclass(frozen=True)
class Proxy:
    url: str
    source: str  # e.g. "HTTPS_PROXY"

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


def proxy_for(url: str, environ: Mapping[str, str]) -> Proxy | None:
    """The proxy ``url`` goes through, as curl picks it: ``<scheme>_proxy`` then ``all_proxy``, lowercase first."""
    scheme, host, port = origin(url)
    if scheme not in ("http", "https"):
        return None
    found = _lookup(environ, f"{scheme}_proxy") or _lookup(environ, "all_proxy")
    if found is None:
        return None
    value, source = found
    no_proxy = _lookup(environ, "no_proxy")
    if no_proxy is not None and bypasses(host, port, no_proxy[0]):
        return None
    if "://" not in value:
        value = f"http://{value}"  # curl's default proxy scheme
    proxy, parts = Proxy(value, source), urlsplit(value)
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise UsageError(f"${source}: expected an http:// or https:// proxy URL, got {proxy.shown!r}")
    return proxy


def bypasses(host: str, port: int, no_proxy: str) -> bool:
    """Whether ``no_proxy`` (``*``, host names with subdomains, ``.domain``, IPs, CIDR blocks; ``:port``) names it."""
    host = host.lower().strip("[]")
    entries = (raw.strip().lower() for raw in no_proxy.split(","))
    return any(entry == "*" or (entry and _matches(host, port, entry)) for entry in entries)


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
    return text.isascii() and text.isdigit() and len(text) <= 5  # int() takes '²' and chokes on 5000 digits


def _matches(host: str, port: int, entry: str) -> bool:
    entry, entry_port = _split_port(entry)
    if entry_port not in (None, port):
        return False
    try:
        address = ipaddress.ip_address(host)
    except ValueError:  # a host name: the entry's name or a subdomain of it
        entry = entry.lstrip(".").removeprefix("*.")
        return host == entry or host.endswith("." + entry)
    try:
        return address in ipaddress.ip_network(entry, strict=False)
    except ValueError:
        return False


READ_SIZE = 1 << 20  # bytes asked of the socket per read (httpcore2's 64 KiB costs ~3x the CPU per byte)
MIN_BODY_RATE = 1024  # bytes per second of waiting: slower than this for a whole window is a stall

_request = threading.local()  # this thread's header budget (seconds) and, once its first I/O began, its deadline


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
    """An httpcore2 stream (TCP, TLS, TLS in a proxy's TLS) with deadlines: httpcore2's restart at every read, so a byte
    a second lives for ever; the headers have one budget per thread, a body a :class:`Pace`."""

    def __init__(self, inner: httpcore2.NetworkStream, *, layers: int) -> None:
        self._inner, self._layers = inner, layers  # layers 0: TCP, 1: TLS on the socket, 2: TLS inside TLS
        self.pace = Pace(window=math.inf)

    def _limit(self, timeout: float | None, kind: type[Exception]) -> float | None:
        header = _header_left()
        return _cut(timeout, self.pace.left(time.monotonic()) if header is None else header, kind)

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
        return isinstance(sock, socket.socket) and self._layers == (1 if isinstance(sock, ssl.SSLSocket) else 0)

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
        self.live: weakref.WeakSet[WireStream] = weakref.WeakSet()

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
        self.live.add(stream)
        return stream


class NetTransport(httpx2.BaseTransport):
    """An httpcore2 pool over ``WireBackend`` per route (httpx2's transport takes no backend, its ``mounts=`` no CIDR
    NO_PROXY); an error raised through a proxy names it (``exc.mdl_proxy``)."""

    def __init__(self, *, timeout: float, environ: Mapping[str, str] | None, pool_size: int = 10) -> None:
        self.timeout = timeout
        self._environ = dict(environ or {})
        # A CA variable naming nothing is exit 2 now; loading the CAs (~30-50 ms) waits for the first TLS connection.
        ca_locations(self._environ)
        self._ssl: ssl.SSLContext | None = None
        self._pool_size = pool_size
        self._backend = WireBackend()
        self._pools: dict[str | bool, httpcore2.ConnectionPool] = {}  # by proxy URL, or direct by "is https"
        self._lock = threading.Lock()

    def _pool(self, proxy: Proxy | None, *, tls: bool) -> httpcore2.ConnectionPool:
        # A plain http:// pool never opens TLS: its context trusts no CA, so it would fail closed if it ever did.
        if tls or proxy is not None:
            self._ssl = context = self._ssl or ssl_context(self._environ)
        else:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        common: dict[str, Any] = {"max_connections": self._pool_size, "max_keepalive_connections": self._pool_size}
        common.update(ssl_context=context, keepalive_expiry=KEEPALIVE_SECONDS, network_backend=self._backend)
        if proxy is None:
            return httpcore2.ConnectionPool(**common)
        parsed = httpx2.Proxy(proxy.url)  # credentials in the URL become Proxy-Authorization as httpx2 does it
        return httpcore2.HTTPProxy(
            proxy_url=httpcore2.URL(
                scheme=parsed.url.raw_scheme, host=parsed.url.raw_host, port=parsed.url.port, target=parsed.url.raw_path
            ),
            proxy_auth=parsed.raw_auth,
            proxy_ssl_context=context if proxy.url.lower().startswith("https://") else None,  # the servers' CAs
            **common,
        )

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        # Whatever the caller asked (even timeout=None), no phase waits longer than the run's timeout ...
        request.extensions["timeout"] = dict.fromkeys(("connect", "read", "write", "pool"), self.timeout)
        assert isinstance(request.stream, httpx2.SyncByteStream)
        url, tls = request.url, request.url.scheme != "http"
        proxy = proxy_for(str(url), self._environ)
        key = proxy.url if proxy is not None else tls  # the route's pool: by proxy, or direct by scheme
        with self._lock:
            pool = self._pools.get(key)
            if pool is None:
                pool = self._pools[key] = self._pool(proxy, tls=tls)
        core = httpcore2.Request(
            method=request.method,
            url=httpcore2.URL(scheme=url.raw_scheme, host=url.raw_host, port=url.port, target=url.raw_path),
            headers=request.headers.raw,
            content=request.stream,
            extensions=request.extensions,
        )
        try:
            # ... and the whole header block (connect, TLS, proxy tunnel, send, headers) comes within it, in total,
            # counted from this thread's first network operation.
            _request.budget, _request.deadline = self.timeout, None
            with httpx2_errors():
                answer = pool.handle_request(core)
        except httpx2.TransportError as exc:
            if proxy is not None:
                exc.mdl_proxy = proxy  # type: ignore[attr-defined]
            raise
        finally:
            _request.budget, _request.deadline = None, None
        stream = answer.extensions.get("network_stream")
        if isinstance(stream, WireStream):  # a kept-alive connection's new answer: its body starts a fresh pace
            stream.pace = Pace(window=self.timeout)
        return httpx2.Response(
            status_code=answer.status, headers=answer.headers, stream=_Body(answer), extensions=answer.extensions
        )

    def abort(self) -> None:
        """Shut every open connection down (Ctrl-C): closing a response does not wake a read already waiting."""
        for stream in list(self._backend.live):
            sock = stream.get_extra_info("socket")
            if isinstance(sock, socket.socket):
                with suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        with self._lock:
            for pool in self._pools.values():
                pool.close()
            self._pools.clear()


@contextmanager
def httpx2_errors(request: httpx2.Request | None = None) -> Iterator[None]:
    """Raise httpcore2's transport errors as httpx2's of the same name, as httpx2's own transport maps them."""
    try:
        yield
    except Exception as exc:
        for cls in type(exc).__mro__:  # the most specific httpcore2 class httpx2 has a twin of
            mapped = getattr(httpx2, cls.__name__, None) if cls.__module__.startswith("httpcore2") else None
            if isinstance(mapped, type) and issubclass(mapped, httpx2.TransportError):
                raise mapped(str(exc), request=request) from exc
        raise


class _Body(httpx2.SyncByteStream):
    def __init__(self, answer: httpcore2.Response) -> None:
        self._answer = answer

    def __iter__(self) -> Iterator[bytes]:
        assert isinstance(self._answer.stream, Iterable)
        with httpx2_errors():
            yield from self._answer.stream

    def close(self) -> None:
        self._answer.close()


def set_read_timeout(response: httpx2.Response, seconds: float) -> None:
    """The stall timeout for the rest of the body: no read waits longer, and no ``seconds`` of waiting may bring fewer
    than ``seconds × MIN_BODY_RATE`` bytes (httpcore2 reads the extension when the body starts)."""
    extensions = response.request.extensions
    extensions["timeout"] = {**(extensions.get("timeout") or {}), "read": seconds}
    stream = response.extensions.get("network_stream")
    if isinstance(stream, WireStream):
        stream.pace = Pace(window=seconds)


def set_body_deadline(response: httpx2.Response, seconds: float) -> None:
    """The rest of the body must arrive within ``seconds`` from now, else ``httpx2.ReadTimeout``."""
    stream = response.extensions.get("network_stream")
    if isinstance(stream, WireStream):
        stream.pace.deadline = time.monotonic() + seconds


DRAIN_LIMIT = 64 * 1024  # a leftover body this small is read so its connection can serve the next request
DRAIN_SECONDS = 1.0  # ... if it comes within this long


def drain(response: httpx2.Response) -> None:
    """Close a response, reading a small sized body first: one closed mid-body takes its keep-alive connection along."""
    with closing(response), suppress(httpx2.HTTPError):  # a read failed: closing the connection is all there is to do
        length = parse_decimal(response.headers.get("Content-Length"))
        if length is not None and length <= DRAIN_LIMIT:
            set_read_timeout(response, DRAIN_SECONDS)
            set_body_deadline(response, DRAIN_SECONDS)  # a trickle is not worth its connection
            for _ in response.iter_raw():
                pass


# Which CAs to trust, read from the run's environment in this order: a bundle file in REQUESTS_CA_BUNDLE (requests),
# CURL_CA_BUNDLE (curl) or SSL_CERT_FILE (OpenSSL); a folder of hashed certificates in SSL_CERT_DIR; else the system's.
CA_FILE_VARIABLES = ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE")
CA_DIR_VARIABLE = "SSL_CERT_DIR"
_OPENSSL_SOURCE = re.compile(r"\s*\(_ssl\.c:\d+\)")
CA_HINT = (
    "if a proxy or your company re-signs TLS, point REQUESTS_CA_BUNDLE, CURL_CA_BUNDLE or SSL_CERT_FILE "
    "at its CA bundle (or SSL_CERT_DIR at a folder of hashed certificates); mdl reads them in that order"
)


def ca_locations(environ: Mapping[str, str]) -> tuple[str | None, str | None, str | None]:
    """(cafile, capath, the variable that named them) from the environment, checked to exist (else exit 2)."""
    cafile = capath = None
    name = next((n for n in CA_FILE_VARIABLES if environ.get(n, "").strip()), None)
    if name is not None:
        path = Path(environ[name].strip()).expanduser()
        if path.is_dir():  # requests accepts a folder in REQUESTS_CA_BUNDLE
            capath = str(path)
        elif path.is_file():
            cafile = str(path)
        else:
            raise UsageError(f"${name}: no such CA bundle {str(path)!r}", hint=CA_HINT)
    if folder := environ.get(CA_DIR_VARIABLE, "").strip():
        if not Path(folder).expanduser().is_dir():
            raise UsageError(f"${CA_DIR_VARIABLE}: no such folder {str(Path(folder).expanduser())!r}", hint=CA_HINT)
        capath = capath or str(Path(folder).expanduser())
    return cafile, capath, name or (CA_DIR_VARIABLE if folder else None)


def ssl_context(environ: Mapping[str, str]) -> ssl.SSLContext:
    cafile, capath, where = ca_locations(environ)
    if where is None:
        return httpx2.create_ssl_context(trust_env=False)
    try:
        return ssl.create_default_context(cafile=cafile, capath=capath)
    except (ssl.SSLError, OSError, ValueError) as exc:
        raise UsageError(f"${where}: cannot load the CA certificates: {exc}", hint=CA_HINT) from None


def certificate_problem(exc: BaseException) -> str | None:
    """The verification failure behind a transport error (``certificate has expired``, ...), if it is one."""
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and all(current is not seen for seen in chain):
        chain.append(current)
        current = current.__cause__ or current.__context__
    for link in chain:
        if isinstance(link, ssl.SSLCertVerificationError):
            return str(link.verify_message or link.reason or "certificate verify failed")
    for link in chain:  # wrapped without its cause: only the text is left
        text = str(link)
        if "CERTIFICATE_VERIFY_FAILED" in text:
            detail = text.split("certificate verify failed:", 1)[-1]
            return _OPENSSL_SOURCE.sub("", detail).strip(" ()_") or "certificate verify failed"
    return None
