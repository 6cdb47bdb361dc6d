"""The endpoint's HTTP side: a threaded HTTP/1.1 server on one address, each request
authenticated (SigV4 with the run's key) before anything is looked up, each answer's bytes sent
from the verified file with sendfile (or, released by range, as read and checked); bounded in
connections (the loader's apart from those not signed yet), header sizes and idle time; a refused
request ends its connection."""

from __future__ import annotations

import contextlib
import errno
import io
import logging
import math
import os
import select
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self, cast
from urllib.parse import quote, unquote, urlsplit

from mdl.background import Background, every
from mdl.endpoint import auth, s3api
from mdl.endpoint.shelf import Early, Shelf
from mdl.errors import UsageError
from mdl.redact import safe_text
from mdl.wait import Wait

log = logging.getLogger("mdl.serve")

# connections that made a signed request: the loader's. run:ai's streamer opens ~180 with its
# defaults (8 workers, each an AWS CRT client sized for 10 Gbit/s): a loader must never be refused
# for its pool; a thread per connection is bounded here. Past it: 503 SlowDown.
MOST_CONNECTIONS = 512
# connections that have not made one yet (anyone who can connect, without the key), bounded apart:
# they never take the loader's slots. Past it, the oldest that sends nothing is closed for the new.
MOST_UNSIGNED = 128
# seconds a connection has to send a whole request's line and headers, idle keep-alive time
# included: a client trickling a byte at a time (slowloris) holds its slot no longer. An unsigned
# connection's runs from its accept and never restarts (a refused request ends the connection).
REQUEST_DEADLINE = 10.0
# bytes of a request's line and headers together (waitress's max_request_header_size; nginx's
# large_client_header_buffers hold 32 KiB): counted in bytes, as http.server does not (it lets 100
# lines of 64 KiB each through: 128 unsigned connections held 6.4 MiB each, 920 MiB in all). Past
# it: 414 for the request line, 431 for the headers, and the connection ends. Bytes held by heads
# at once, at most: (MOST_UNSIGNED + MOST_CONNECTIONS) * HEAD_BYTES (8 MiB of them unsigned).
HEAD_BYTES = 64 * 1024
IDLE_TIMEOUT = REQUEST_DEADLINE
LOOPBACK = ("127.0.0.1", "::1", "localhost")
# refused requests said one line each per window; past that, counted and said in one line at its
# end: a flood of them (hundreds of unsigned connections) is a few lines, not one each
REFUSALS_SAID = 10
REFUSAL_WINDOW = 10.0
STOP_GRACE = 5.0  # seconds the answers in flight get to end once the endpoint stops


class Endpoint(ThreadingHTTPServer):
    """One run's S3 endpoint: its address, key, bucket and shelf. Made, it holds its address
    (UsageError when it cannot, and nothing runs yet); within ``with`` it serves and sweeps its
    connections (each on ``Background``); leaving sets ``cancel``, which ends every wait."""

    daemon_threads = True
    request_queue_size = 128

    def __init__(
        self,
        address: tuple[str, int],
        *,
        key: auth.Key,
        facts: s3api.BucketFacts,
        shelf: Shelf,
        cancel: threading.Event,
        on_error: Callable[[str], None] | None = None,
    ) -> None:
        self.key, self.facts, self.shelf = key, facts, shelf
        self.on_error = on_error
        self.cancel = cancel
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        try:
            super().__init__(address, _Handler)
        except OSError as exc:
            host, port = address
            if exc.errno == errno.EADDRINUSE:
                raise UsageError(
                    f"port {port} on {host} is in use",
                    hint="choose another with --port, or --port 0 for any free one",
                ) from None
            raise UsageError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
        self.refusals = Refusals(self._say)
        self.connections = Connections(cancel, on_sweep=self.refusals.flush)
        self._serving = Background(
            "serve", lambda _: self.serve_forever(poll_interval=0.2), stop=cancel
        )

    def __enter__(self) -> Self:
        self.connections.start()
        self._serving.start()
        return self

    def __exit__(self, *exc: object) -> None:
        """Refuse what comes next and end every wait now: a waiting GET answers 503, and the
        answers being sent get a bounded time to end before the address is let go."""
        self.cancel.set()
        self.shutdown()
        self._serving.stop()
        self.connections.stop()
        self.refusals.flush(time.monotonic(), last=True)
        self.server_close()

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        name = host.decode() if isinstance(host, bytes) else str(host)
        shown = f"[{name}]" if ":" in name else name
        return f"http://{shown}:{port}"

    def handle_error(self, request: Any, client_address: Any) -> None:
        # a client that went away mid-answer, or a bug: logged, never a traceback on stderr
        log.debug("connection from %s ended with an error", client_address[0], exc_info=True)

    def hidden(self, line: str) -> str:
        """``line`` without the run's secret, however a client glued it to other bytes (the
        log's redaction finds whole words only)."""
        for form in {self.key.secret_key, quote(self.key.secret_key, safe="")}:
            line = line.replace(form, "***")
        return line

    def refused(self, line: str, kind: str) -> None:
        """A client error (``kind``: its status and S3 code), said as Refusals says. A client may
        send anything, the run's secret glued to other bytes too: never said back."""
        self.refusals.refused(self.hidden(line), kind)

    def _say(self, line: str) -> None:
        """One line about refused requests: the log, and whoever listens (the CLI's stderr)."""
        log.warning("%s", line)
        if self.on_error is not None:
            self.on_error(line)

    def process_request(self, request: Any, client_address: Any) -> None:
        # a bounded number of connections at once: the rest are told to slow down, not queued on
        # threads without end
        if not self.connections.admit(request):
            with contextlib.suppress(OSError):
                request.sendall(_busy())
            self.shutdown_request(request)
            self.refused(f"{client_address[0]}: 503 SlowDown: too many connections at once",
                         "503 SlowDown")  # fmt: skip
            return
        super().process_request(request, client_address)

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.connections.leave(request)


class Connections:
    """Every open connection's life in one place (waitress's way: one map of connections, one
    sweep, one limit on a request's head). A connection is admitted unsigned: one of
    MOST_UNSIGNED, with REQUEST_DEADLINE from its accept to send a request (a refused one ends
    it). Its first signed request makes it one of the loader's MOST_CONNECTIONS, each request
    then with REQUEST_DEADLINE to arrive, idle keep-alive time included. Each request's line and
    headers are read as HEAD_BYTES at most (``head``). ``answering`` counts the requests being
    answered (``busy``), which ``stop`` gives STOP_GRACE to end. Made once the endpoint holds its
    address; ``start`` runs the sweep of connections past their deadline (each second, on
    ``Background``) until ``cancel`` is set."""

    def __init__(self, cancel: threading.Event, *, on_sweep: Callable[[float], None]) -> None:
        self._lock = threading.Lock()
        self._room = threading.Condition(self._lock)  # told when a connection leaves
        self._idle = threading.Condition(self._lock)  # told when an answer ends
        self._cancel = cancel
        # socket → when its request must have been read whole (unsigned: oldest first)
        self._unsigned: dict[socket.socket, float] = {}
        self._signed: dict[socket.socket, float] = {}
        self._reading: set[socket.socket] = set()  # (answering is not reading)
        self._busy = 0  # requests being answered (not idle kept-alive connections)
        self._on_sweep = on_sweep
        self._sweeper = Background("serve-sweep", every(1.0, self._sweep), stop=cancel)

    def start(self) -> None:
        self._sweeper.start()

    def stop(self) -> None:
        """(``cancel`` is set) Wait STOP_GRACE at most for the answers being sent; the sweep
        ends."""
        with self._idle:
            self._idle.wait_for(lambda: self._busy == 0, timeout=STOP_GRACE)
        self._sweeper.stop()

    def admit(self, sock: socket.socket) -> bool:
        """Take a new connection (unsigned, reading its first request). When MOST_UNSIGNED are
        open, the oldest of them that has sent nothing yet is closed for it; while each has a
        request on its way, it waits for one to end (REQUEST_DEADLINE at most; the next
        connections wait in the backlog meanwhile, as a server at its limit does). False: no
        room came, or the endpoint stops."""
        wait = Wait.within(REQUEST_DEADLINE, self._cancel)
        with self._room:
            while len(self._unsigned) >= MOST_UNSIGNED:
                silent = next(
                    (s for s in self._unsigned if s in self._reading and _silent(s)), None
                )
                if silent is not None:
                    self._drop(silent)
                    _close(silent)
                # (a request read meanwhile makes room unannounced: looked at again soon)
                elif not wait.pause(0.05, self._room):
                    return False
            self._unsigned[sock] = time.monotonic() + REQUEST_DEADLINE
            self._reading.add(sock)
            return True

    def head(self, sock: socket.socket, rfile: io.BufferedIOBase) -> list[bytes]:
        """The lines of the connection's next request as sent: its request line, then its headers
        up to the blank line that ends them (or the connection's end: [] when nothing came); read
        within the connection's deadline, and no further once over HEAD_BYTES together (the caller
        refuses a head of more)."""
        with self._reading_request(sock):
            if not _arrives(rfile):
                return []
            lines: list[bytes] = []
            held = 0
            while held <= HEAD_BYTES:
                line = rfile.readline(HEAD_BYTES + 1 - held)
                held += len(line)
                if not line:
                    break
                lines.append(line)
                if line in (b"\r\n", b"\n"):
                    break
            return lines

    @contextlib.contextmanager
    def _reading_request(self, sock: socket.socket) -> Iterator[None]:
        """The connection reads a request while the block runs (a signed one's deadline starts
        anew; an unsigned one's runs on)."""
        with self._lock:
            if sock in self._signed:
                self._signed[sock] = time.monotonic() + REQUEST_DEADLINE
            if sock in self._signed or sock in self._unsigned:
                self._reading.add(sock)
        try:
            yield
        finally:
            with self._lock:
                self._reading.discard(sock)

    def signed(self, sock: socket.socket) -> bool:
        """The connection made a signed request: one of the loader's from now on. False: the
        loader's MOST_CONNECTIONS are all open."""
        with self._lock:
            if sock in self._signed:
                return True
            if sock not in self._unsigned or len(self._signed) >= MOST_CONNECTIONS:
                return False
            del self._unsigned[sock]
            self._signed[sock] = math.inf
            self._room.notify_all()
            return True

    @contextlib.contextmanager
    def answering(self) -> Iterator[None]:
        """Count a request as being answered while the block runs."""
        with self._lock:
            self._busy += 1
        try:
            yield
        finally:
            with self._lock:
                self._busy -= 1
                self._idle.notify_all()

    def leave(self, sock: socket.socket) -> None:
        with self._lock:
            self._drop(sock)

    def _drop(self, sock: socket.socket) -> None:
        self._unsigned.pop(sock, None)
        self._signed.pop(sock, None)
        self._reading.discard(sock)
        self._room.notify_all()

    def _sweep(self) -> None:
        """Close the connections past their request's deadline."""
        now = time.monotonic()
        with self._lock:
            due = {**self._unsigned, **self._signed}
            late = [sock for sock in self._reading if due.get(sock, now) < now]
            for sock in late:
                self._drop(sock)
        for sock in late:
            _close(sock)
        self._on_sweep(now)


def _silent(sock: socket.socket) -> bool:
    """Whether nothing the connection sent waits to be read (a request on its way is never
    closed to make room)."""
    poller = select.poll()
    poller.register(sock, select.POLLIN)
    return not poller.poll(0)


def _arrives(rfile: io.BufferedIOBase) -> bool:
    """Whether a request begins (a byte of it, or the connection's end, which the read then finds)
    within the idle timeout; False: a kept-alive connection left idle, as clients' pools leave
    them, closed without a word (not an error: a timeout mid-request still is)."""
    try:
        cast("io.BufferedReader", rfile).peek(1)  # (nothing taken: a timeout loses none)
    except TimeoutError:
        log.debug("an idle connection closed")
        return False
    return True


def _close(sock: socket.socket) -> None:
    """End a connection another thread serves: its read returns, and the thread ends."""
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)


class Refusals:
    """What is said of refused requests: the first REFUSALS_SAID of each REFUSAL_WINDOW seconds
    one line each, the rest counted by kind and said in one line as the window ends."""

    def __init__(self, say: Callable[[str], None]) -> None:
        self._say, self._lock = say, threading.Lock()
        self._ends, self._said = 0.0, 0
        self._held: Counter[str] = Counter()

    def refused(self, line: str, kind: str) -> None:
        with self._lock:
            summary = self._roll(time.monotonic())
            said = self._said < REFUSALS_SAID
            self._said += said
            if not said:
                self._held[kind] += 1
        for text in (summary, line if said else None):
            if text:
                self._say(text)

    def flush(self, now: float, *, last: bool = False) -> None:
        """Say what the window that ended held back (``last``: the endpoint stops)."""
        with self._lock:
            summary = self._roll(math.inf if last else now)
        if summary:
            self._say(summary)

    def _roll(self, now: float) -> str | None:
        if now < self._ends:
            return None
        held, self._held = self._held, Counter()
        self._ends, self._said = now + REFUSAL_WINDOW, 0
        if not held:
            return None
        kinds = ", ".join(f"{count} {kind}" for kind, count in held.most_common())
        return f"{held.total()} more requests refused within {REFUSAL_WINDOW:.0f} s: {kinds}"


def _busy() -> bytes:
    body = s3api.s3_error(503, "SlowDown", "too many connections at once: retry").body
    head = f"HTTP/1.1 503 Slow Down\r\nContent-Type: application/xml\r\nContent-Length: {len(body)}"
    return f"{head}\r\nConnection: close\r\n\r\n".encode() + body


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "mdl"
    sys_version = ""
    timeout = IDLE_TIMEOUT
    # an answer's head and its body are two writes: a small body (a shard's 8 bytes, its header,
    # a file's last range) held back by Nagle waited for the client's delayed ACK (40 ms)
    disable_nagle_algorithm = True
    server: Endpoint
    path = ""  # (until a request line is read: a refusal before it names no path)

    def handle_one_request(self) -> None:
        """One request: its line and headers read within the connection's deadline, then
        answered. GET and HEAD are the reads; any other method named in capitals (PUT, POST,
        DELETE, PATCH, OPTIONS, COPY, ...) is a write or nothing S3 reads, answered by the S3
        layer (405 once signed); any other word is http.server's 501."""
        try:
            if not self._read():
                return
            if self.command.isalpha() and self.command.isupper():
                self._serve(self.command)
            else:
                self.send_error(
                    HTTPStatus.NOT_IMPLEMENTED, f"Unsupported method ({self.command!r})"
                )
        except TimeoutError as exc:  # a read or a write timed out: the connection ends
            self.log_error("Request timed out: %r", exc)
            self.close_connection = True

    def _read(self) -> bool:
        """A request's line and headers (HEAD_BYTES at most together), parsed as http.server
        parses them (False: none came, or it was refused)."""
        lines = self.server.connections.head(self.connection, self.rfile)
        if not lines:
            self.close_connection = True
            return False
        self.raw_requestline = lines[0]
        if sum(map(len, lines)) > HEAD_BYTES:
            self.requestline = self.request_version = self.command = ""
            if len(lines) == 1:  # the request line alone is over
                self.send_error(HTTPStatus.REQUEST_URI_TOO_LONG, _OVER.format("line is"))
            else:
                self.send_error(
                    HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, _OVER.format("line and headers are")
                )
            return False
        # the headers as read, for http.server to parse (its limits on lines then apply too)
        rfile, self.rfile = self.rfile, io.BytesIO(b"".join(lines[1:]))
        try:
            return self.parse_request()
        finally:
            self.rfile = rfile

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """What the HTTP layer refuses (a method it does not know, headers too large, a request
        line it cannot read) as an S3 error document, and the connection closed."""
        words = _HTTP_ERRORS.get(code, ("InvalidRequest", "the request is not one S3 reads"))
        reply = s3api.s3_error(code, words[0], message or words[1])
        self.close_connection = True
        # a line http.server could not read leaves it at HTTP/0.9, which answers a bare body
        self.request_version = self.protocol_version
        with contextlib.suppress(OSError):
            self.send_response(code)
            self.send_header("Content-Type", "application/xml")
            self.send_header("Content-Length", str(len(reply.body)))
            self.send_header("Connection", "close")
            self.end_headers()
            if getattr(self, "command", "") != "HEAD" and code >= 200:
                self.wfile.write(reply.body)

    def _serve(self, method: str) -> None:
        with self.server.connections.answering():
            self._answer(method)

    def _answer(self, method: str) -> None:
        server = self.server
        raw_path, _, query = origin_form(self.path).partition("?")
        headers = {name.lower(): value for name, value in self.headers.items()}
        lengths = self.headers.get_all("Content-Length") or []
        if lengths not in ([], ["0"]) or "transfer-encoding" in headers:
            self.close_connection = True  # a body is never read: the connection cannot go on
        names = [name.lower() for name in self.headers]
        twice = sorted({n for n in names if names.count(n) > 1} & _SINGLE)
        if twice:
            self.close_connection = True
            status, code = (
                (403, "AccessDenied") if "authorization" in twice else (400, "InvalidRequest")
            )
            self._send(method, s3api.s3_error(status, code, f"{twice[0]} sent twice"))
            return
        try:
            auth.check(
                auth.Request(method, raw_path, query, headers), server.key, now=datetime.now(UTC)
            )
        except auth.Refused as refused:
            self._send(method, s3api.s3_error(403, refused.code, refused.message, raw_path))
            return
        if not server.connections.signed(self.connection):
            busy = f"{MOST_CONNECTIONS} signed connections at once: retry"
            self._send(method, s3api.s3_error(503, "SlowDown", busy, raw_path))
            return
        bucket, key = _bucket_and_key(raw_path, headers.get("host", ""), server.facts.bucket)
        reply = s3api.answer(
            server.facts,
            server.shelf,
            method=method,
            bucket=bucket,
            key=key,
            params=auth.query_params(query),
            headers=headers,
            cancel=server.cancel,
        )
        self._send(method, reply)

    def _send(self, method: str, reply: s3api.Answer) -> None:
        if reply.code is not None:
            self._refused(method, reply)
        try:
            self.send_response(reply.status)
            reply.headers.setdefault("Content-Length", str(reply.length))
            reply.headers["x-amz-request-id"] = s3api.request_id()
            for name, value in reply.headers.items():
                self.send_header(name, value)
            self.end_headers()
            if method != "HEAD":
                self._send_body(reply)
        except OSError:  # the client left mid-answer: nothing more to say to it
            self.close_connection = True
        finally:
            reply.close()

    def _refused(self, method: str, reply: s3api.Answer) -> None:
        """The log line of an S3 error: a refusal is said, and the connection ends with it; a
        client's everyday question (a HEAD of a "folder") is no error, and the connection goes
        on."""
        where = origin_form(self.path).partition("?")[0][:200]
        line = f"{self.client_address[0]} {method} {where}: {reply.status} {reply.code}"
        if reply.ordinary:
            log.debug("%s", self.server.hidden(line))
        else:
            self.server.refused(f"{line}: {reply.message}", f"{reply.status} {reply.code}")
            reply.headers["Connection"] = "close"
            self.close_connection = True

    def _send_body(self, reply: s3api.Answer) -> None:
        """The answer's bytes: a slice of the verified file (by ``sendfile``), the ranges
        released early, or its body."""
        if reply.fd is not None:
            self.wfile.flush()
            with os.fdopen(reply.fd, "rb", closefd=False) as handle:
                sent = self.connection.sendfile(handle, reply.offset, reply.count)
            if sent != reply.count:
                self.close_connection = True
        elif reply.early is not None:
            self._send_early(reply.early, reply.count)
        else:
            self.wfile.write(reply.body)

    def _send_early(self, early: Early, count: int) -> None:
        """Bytes released by range, each range sent while it is held as checked; cut short (the
        connection closed: the client sees fewer bytes than promised) when one no longer
        verifies as read."""
        sent = 0
        for view in early:
            self.wfile.write(view)
            sent += len(view)
        if sent != count:
            log.warning("%s: a range no longer verified as read: answer cut", early.obj.key)
            self.close_connection = True

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        if isinstance(code, int) and code >= 400:
            return  # said as a refusal
        # the target whole through the one redaction (a presigned query's signature out), then cut
        target = safe_text(self.server.hidden(self.path), limit=200)
        log.debug(
            "%s", f"{self.client_address[0]} {getattr(self, 'command', '')} {target} -> {code}"
        )

    def log_error(self, format: str, *args: Any) -> None:
        # the server's own refusals of what is not HTTP (a request that timed out)
        line = safe_text(
            self.server.hidden(f"{self.client_address[0]}: {format % args}"), limit=300
        )
        self.server.refused(line, "other")

    def log_message(self, format: str, *args: Any) -> None:
        line = safe_text(
            self.server.hidden(f"{self.client_address[0]}: {format % args}"), limit=300
        )
        log.debug("%s", line)


# headers a request may carry once: two of them (a broken and a signed Authorization, two
# Content-Lengths) are refused, never one of them chosen
_SINGLE = frozenset(
    {"authorization", "host", "range", "content-length", "x-amz-date", "x-amz-content-sha256",
     "if-match", "if-none-match", "if-modified-since", "if-unmodified-since", "if-range",
     "transfer-encoding"}
)  # fmt: skip
_OVER = f"the request {{}} over {HEAD_BYTES} bytes"
# http.server's refusals, as S3 names them
_HTTP_ERRORS = {
    400: ("BadRequest", "the request could not be read"),
    405: ("MethodNotAllowed", "this endpoint is read-only"),
    414: ("RequestURITooLong", "the request line is too long"),
    431: ("RequestHeaderSectionTooLarge", "the request's headers are too large"),
    501: ("MethodNotAllowed", "this endpoint is read-only"),
    505: ("HttpVersionNotSupported", "HTTP/1.1 or 1.0 only"),
}


def origin_form(target: str) -> str:
    """The request target's path and query: an absolute-form target (``GET http://host/p``, as
    the AWS CRT client sends) read as its origin form (RFC 9112 3.2.2: a server accepts it)."""
    if target.startswith(("http://", "https://")):
        split = urlsplit(target)
        return (split.path or "/") + (f"?{split.query}" if split.query else "")
    return target


def _bucket_and_key(raw_path: str, host: str, bucket: str) -> tuple[str, str]:
    """(bucket, key) of a path-style request, or of a virtual-hosted one (``<bucket>.<host>``)."""
    name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    if name.startswith(f"{bucket}.") and name not in LOOPBACK:
        return bucket, unquote(raw_path.lstrip("/"))
    first, _, rest = raw_path.lstrip("/").partition("/")
    return unquote(first), unquote(rest)
