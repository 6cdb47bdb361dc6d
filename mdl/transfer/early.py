"""A plain ``mdl get URL``'s first request, sent while Python loads the rest (httpx2 and mdl are
~0.07 s of a fast machine's start, more on a busy one; aria2c asks at ~0.01 s): a thread connects
and, for ``http://``, writes the probe the download sends first (engine rule 19: the file from byte
0); ``https://`` is connected only (its TLS context is httpx2's to build). The download's first
request to that origin takes the connection (:func:`take`) only when its bytes are these bytes,
byte for byte: the answer is then read by the one HTTP stack like any other. Standard library
only: this module is imported before everything else.

A plain pull's or ``get hf://``'s first request is planned in mdl.download.earlyhub and sent the
same way (:func:`asking`, :func:`begin`).

Sent only when that first request is known and the get will make it (:func:`planned`): a plain
line of one URL (no headers, no proxy, no netrc, not offline, not the Hub), no file where it goes
and no partial download in its folder; a connection the download does not take, or older than
``FRESH_SECONDS``, is closed unused (for ``http://`` a request the server answered for nothing,
its first bytes cut off)."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from urllib.parse import unquote, urlsplit

from mdl.background import Background
from mdl.errors import UsageError
from mdl.paths import SHA256_HEX, is_http_url, name_problem, reserved_by_mdl
from mdl.setting import DEFAULT_TIMEOUT, OFFLINE_VARIABLES, ca_locations
from mdl.transfer.hosts import is_local_host
from mdl.version import USER_AGENT

FRESH_SECONDS = 5.0  # a connection older than this when the download asks is not used
PROXIES = ("http_proxy", "https_proxy", "all_proxy")
HUB_HOSTS = ("huggingface.co", "hf.co")
# what a request target may hold to go out as given (httpx2 re-quotes anything else)
_TARGET_CHARACTERS = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~%/?&=+,;:@!$'()*"
)


def request_bytes(method: bytes, target: bytes, headers: Sequence[tuple[bytes, bytes]]) -> bytes:
    """A request head as h11 writes it (headers in order, as given)."""
    lines = b"".join(name + b": " + value + b"\r\n" for name, value in headers)
    return b"%s %s HTTP/1.1\r\n%s\r\n" % (method, target, lines)


class Early:
    """One connection opened (and for ``http://`` one request written) by a thread of its own;
    ``sent``: the request's bytes (None: connected only)."""

    def __init__(self, scheme: str, host: str, port: int, sent: bytes | None) -> None:
        self.origin, self.sent = (scheme, host, port), sent
        self.began = time.monotonic()
        self.sock: socket.socket | None = None
        self._done = threading.Event()
        self._unwanted = False
        self._lock = threading.Lock()

    def run(self) -> None:
        _, host, port = self.origin
        sock = None
        try:
            # (ASCII already: as bytes, getaddrinfo does not load the IDNA codec)
            address = (host.encode("ascii"), port)
            sock = socket.create_connection(address, DEFAULT_TIMEOUT)  # type: ignore[arg-type]
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self.sent is not None:
                sock.sendall(self.sent)
        except OSError:  # the download's own connect says why
            if sock is not None:
                sock.close()
            sock = None
        with self._lock:
            if self._unwanted and sock is not None:
                sock.close()
            else:
                self.sock = sock
        self._done.set()

    @property
    def finished(self) -> bool:
        """Whether the thread is done: connected (and wrote), or failed."""
        return self._done.is_set()

    def wait(self, timeout: float) -> socket.socket | None:
        """The connection, once the thread is done with it (within ``timeout``), else None."""
        self._done.wait(timeout)
        with self._lock:
            sock, self.sock, self._unwanted = self.sock, None, True
        return sock

    def close(self) -> None:
        sock = self.wait(0)
        if sock is not None:
            sock.close()


_pending: list[Early] = []
_pending_lock = threading.Lock()


def send_early(
    sources: Sequence[str],
    output: Path | None,
    directory: Path | None,
    environ: Mapping[str, str] = os.environ,
    *,
    sha256: str | None = None,
) -> None:
    """Open the connection (and send the request) a plain get of ``sources`` starts with, when it is
    known (:func:`planned`) and the line's ``sha256`` is one the get takes."""
    if sha256 is not None and not SHA256_HEX.fullmatch(sha256.lower()):
        return  # (refused before any request)
    begin(planned(sources, output, directory, environ))


def begin(early: Early | None) -> None:
    """Connect (and send) ``early`` (None: nothing) on a thread of its own, for the first request
    to its origin to take (:func:`take`)."""
    if early is None:
        return
    with _pending_lock:
        _pending.append(early)
    # (never stopped: its connect and its one write are bounded by DEFAULT_TIMEOUT)
    Background("mdl-early", lambda stop: early.run()).start()


def planned(
    sources: Sequence[str], output: Path | None, directory: Path | None, environ: Mapping[str, str]
) -> Early | None:
    """The first connection of a get of ``sources`` into ``output`` or ``directory``, or None
    when it is not known for sure (then nothing is sent before the download asks)."""
    at = _origin(sources[0], environ) if len(sources) == 1 and not routed(environ) else None
    if at is None or not _first_into(at[3], output, directory):
        return None
    return asking(at, b"bytes=0-", send=True)


def asking(at: Origin, asked: bytes | None, *, send: bool) -> Early:
    """The early connection to ``at``, and (``send``) the GET of its target the download writes
    first (``asked``: its Range, if any), as httpx2 writes it; an ``https://`` one is connected
    only (its TLS context is httpx2's to build)."""
    scheme, host, port, _, target = at
    # (plain http to a host on the internet: refused by the download, and bytes sent in the clear)
    if not send or scheme == "https" or not is_local_host(host):
        return Early(scheme, host, port, None)
    headers = [
        (b"Host", (host if port == 80 else f"{host}:{port}").encode()),
        (b"Accept", b"*/*"),
        (b"Connection", b"keep-alive"),
        (b"User-Agent", USER_AGENT.encode()),
        (b"Accept-Encoding", b"identity"),
    ]
    headers += [(b"Range", asked)] if asked is not None else []
    return Early(scheme, host, port, request_bytes(b"GET", target.encode(), headers))


# (scheme, host, port, path, request target)
Origin = tuple[str, str, int, str, str]


def _origin(source: str, environ: Mapping[str, str]) -> Origin | None:
    """An http(s) URL with no login, not the Hub's, that httpx2 asks as it is and the get takes
    (plain http only to a loopback or private host); else None."""
    try:  # (an endpoint urllib cannot split: the download's to refuse)
        hub = urlsplit(environ.get("HF_ENDPOINT", "")).hostname
    except ValueError:
        return None
    at = split_url(source)
    if at is None or at[1] in (*HUB_HOSTS, hub):
        return None
    return at if at[0] == "https" or is_local_host(at[1]) else None


def split_url(source: str) -> Origin | None:
    """An http(s) URL with no login and a target httpx2 sends as it is, split; else None (one
    urllib would clean of a space or a control character is the download's to refuse)."""
    if not is_http_url(source):  # (an http(s) URL with a host and a port if any)
        return None
    parts = urlsplit(source)
    scheme, host = parts.scheme, (parts.hostname or "").lower()
    # (port 0: httpx2 writes its Host header otherwise)
    if parts.port == 0 or not _plain_host(host) or parts.username is not None:
        return None
    if not parts.query and "?" in source.partition("#")[0]:
        return None  # (an empty query httpx2 keeps and urllib drops)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    port = parts.port or (443 if scheme == "https" else 80)
    return (scheme, host, port, parts.path, target) if _as_given(parts.path, target) else None


def routed(environ: Mapping[str, str]) -> bool:
    """Whether the environment may change the first request (a proxy, a netrc's login, offline)
    or stop the get before it (an mdl setting it refuses, a CA variable naming nothing; of mdl's
    settings only the log file's is read no further here)."""
    names = [*PROXIES, *(name.upper() for name in PROXIES), "NETRC", *OFFLINE_VARIABLES]
    if any(environ.get(name, "").strip() for name in names):
        return True
    if any(name.startswith("MDL_") and name != "MDL_LOG_FILE" for name in environ):
        return True
    if not _cas_there(environ):
        return True
    home = environ.get("HOME")
    return home is None or os.path.lexists(Path(home, ".netrc"))


def _cas_there(environ: Mapping[str, str]) -> bool:
    """Whether every CA variable set names what the download takes (mdl.setting.ca_locations)."""
    try:
        ca_locations(environ)
    except UsageError:
        return False
    return True


def _as_given(path: str, target: str) -> bool:
    """Whether httpx2 sends ``target`` as it is: nothing to quote, no dot segment to remove."""
    return set(target) <= _TARGET_CHARACTERS and not {".", ".."} & set(path.split("/"))


def _plain_host(host: str) -> bool:
    """An ASCII name or IPv4 address (IPv6 and IDNA names are httpx2's to spell)."""
    return bool(host) and host.isascii() and all(c.isalnum() or c in "-." for c in host)


def _first_into(path: str, output: Path | None, directory: Path | None) -> bool:
    """Whether a get into ``output`` (or ``directory``) starts with the whole file: no file where
    it goes and no partial download in the folder (``.mdl/partial``: a resume asks otherwise)."""
    name = output.name if output is not None else unquote(path.rsplit("/", 1)[-1])
    if "/" in name or name_problem(name) is not None or reserved_by_mdl(name):
        return False  # (a name the get refuses: nothing to ask)
    folder = output.parent if output is not None else Path(directory or ".")
    target = folder / name
    if os.path.lexists(folder) and not folder.is_dir():
        return False  # (refused by the get: nothing to ask)
    return not os.path.lexists(target) and not _holds_any(folder / ".mdl" / "partial")


def _holds_any(folder: Path) -> bool:
    """Whether ``folder`` exists and is not empty (one entry read, not the listing)."""
    try:
        with os.scandir(folder) as entries:
            return next(entries, None) is not None
    except FileNotFoundError:
        return False
    except OSError:  # (not a folder, not readable: the get says why; nothing is asked early)
        return True


def pending() -> bool:
    """Whether an early connection waits to be taken (read without the lock: a hint)."""
    return bool(_pending)


def take(scheme: str, host: str, port: int, head: bytes) -> Early | None:
    """The early connection to this origin, when the request about to go (``head``, its bytes) is
    the one it sent (or it sent none); any other early connection to the origin is closed. Each is
    taken at most once."""
    with _pending_lock:
        found = next((e for e in _pending if e.origin == (scheme, host, port)), None)
        if found is None:
            return None
        _pending.remove(found)
    if time.monotonic() - found.began > FRESH_SECONDS or found.sent not in (None, head):
        found.close()
        return None
    return found
