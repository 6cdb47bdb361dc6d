"""A delaying HTTP/1.1 proxy for the benchmarks: loopback only, a fixed wait before every response's
first byte.

    python bench/latency.py --route 50:http://127.0.0.1:8080 [--route 300:http://127.0.0.1:9000 ...]
    [--log FILE]

Each ``--route DELAY_MS:UPSTREAM`` gets its own listener on 127.0.0.1 (a free port, printed on
stdout as ``listen <index> http://127.0.0.1:<port>``, then ``ready``). Every client connection gets
one upstream connection, kept alive as long as the client keeps its own.

How the delay is added: the proxy reads each request's head (and its ``Content-Length`` body), waits
until DELAY_MS after the head arrived, then forwards it. So every request, not every connection,
pays the same time to first byte, as a far server would; a new connection costs nothing extra (no
handshake round trip). Nothing is rewritten: Range, 206, ETag, Location and query strings pass
through untouched, so a redirect to another proxied server (the Hub's LFS redirect to the proxied
CDN) pays the delay again on that hop.

Answers are not parsed: upstream -> client is a plain byte pipe, moved with ``splice(2)`` through a
1 MiB pipe (no copy into Python). On this machine it carries several GB/s, so it is not what a
benchmark measures (see bench/README.md for the figure).

With ``--log FILE`` every request is logged as it arrives, with its arrival time, its release time
(arrival + delay) and its client connection; ``read_log`` reads the lines back and
``serial_round_trips`` finds the longest chain of requests each sent after the previous one's
release: the delays a run paid one after another.

Loopback only: it listens on 127.0.0.1 and refuses any upstream that is not a loopback address.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fcntl
import ipaddress
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO
from urllib.parse import urlsplit

CHUNK = 1 << 20  # bytes per splice / recv: big moves keep the proxy's CPU per GB small
MAX_HEAD = 64 * 1024  # a request head larger than this is refused (431)


def loopback_upstream(url: str) -> tuple[str, int]:
    """(host, port) of an ``http://`` loopback upstream; ValueError for anything else."""
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname or parts.port is None:
        raise ValueError(f"upstream must be http://HOST:PORT, got {url!r}")
    host = parts.hostname
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise ValueError(
            f"upstream {url!r} is not a loopback address: the proxy only talks to this machine"
        )
    return ("127.0.0.1" if host == "localhost" else host), parts.port


def parse_route(spec: str) -> tuple[float, tuple[str, int]]:
    """``"50:http://127.0.0.1:8080"`` -> (0.05, ("127.0.0.1", 8080))."""
    delay, _, url = spec.partition(":")
    try:
        seconds = float(delay) / 1000
    except ValueError:
        raise ValueError(f"route {spec!r}: expected DELAY_MS:http://127.0.0.1:PORT") from None
    if seconds < 0:
        raise ValueError(f"route {spec!r}: negative delay")
    return seconds, loopback_upstream(url)


class _Log:
    """One line per request held (when a log file is given), written at its release.

    ``ARRIVAL RELEASE r<route> c<connection> fwd|dropped METHOD TARGET PROTO range=<Range or ->``:
    ARRIVAL is when its head was complete (epoch seconds), RELEASE = ARRIVAL + the route's delay,
    when it is forwarded (so the earliest its answer can start); the connection id is the client
    connection, unique for the proxy's life. ``dropped``: its client had gone by the release, so it
    was not forwarded (nobody waited for it).
    """

    def __init__(self, path: Path | None) -> None:
        self.file: IO[str] | None = path.open("a", buffering=1, encoding="utf-8") if path else None

    def request(
        self, route: int, conn: int, head: bytes, arrived: float, delay: float, state: str
    ) -> None:
        if self.file is None:
            return
        lines = head.split(b"\r\n")
        rng = next(
            (ln.split(b":", 1)[1].strip() for ln in lines[1:] if ln.lower().startswith(b"range:")),
            b"-",
        )
        self.file.write(
            f"{arrived:.6f} {arrived + delay:.6f} r{route} c{conn} {state}"
            f" {lines[0].decode('latin-1')} range={rng.decode()}\n"
        )


@dataclass(frozen=True)
class Held:
    """One request as the proxy log has it."""

    arrival: float  # epoch seconds its head was complete
    release: float  # arrival + the delay: when it was forwarded
    route: int
    connection: int
    forwarded: bool  # False: its client had gone by its release
    line: str  # the whole log line


def read_log(path: Path, offset: int = 0) -> tuple[list[Held], int]:
    """The requests logged in ``path`` from byte ``offset`` on, and the offset after them (whole
    lines only).
    """
    held: list[Held] = []
    try:
        with path.open("rb") as f:
            f.seek(offset)
            data = f.read()
    except FileNotFoundError:
        return held, offset
    complete = data[: data.rfind(b"\n") + 1]
    for raw in complete.decode("utf-8", errors="replace").splitlines():
        fields = raw.split(" ", 5)
        try:
            arrival, release, route, conn = (
                float(fields[0]),
                float(fields[1]),
                int(fields[2][1:]),
                int(fields[3][1:]),
            )
        except (ValueError, IndexError):
            continue  # a line of the older format (no release time)
        held.append(Held(arrival, release, route, conn, fields[4] == "fwd", raw))
    return held, offset + len(complete)


def serial_round_trips(held: list[Held]) -> int:
    """The longest chain of requests each sent after the one before it was released (0 for no
    requests).

    A request that arrives after another's release may have waited for that one's answer; one that
    arrives before cannot have. So the longest such chain is how many delays the run paid one after
    another, at least: a client that asks for everything at once pays 1, a size probe then ranges
    pays 2. Dynamic programming over the requests by arrival; a request's chain is final before its
    release, so one sweep of releases suffices. Dropped requests (their client had gone) are left
    out: nobody waited for them.
    """
    by_arrival = sorted((h for h in held if h.forwarded), key=lambda h: h.arrival)
    by_release = sorted(range(len(by_arrival)), key=lambda i: by_arrival[i].release)
    chain = [0] * len(by_arrival)
    best_released = 0  # the longest chain among requests released so far
    r = 0
    for i, h in enumerate(by_arrival):
        while r < len(by_release) and by_arrival[by_release[r]].release <= h.arrival:
            best_released = max(best_released, chain[by_release[r]])
            r += 1
        chain[i] = best_released + 1
    return max(chain, default=0)


class Proxy:
    """The listeners and their connections, on one asyncio loop."""

    def __init__(
        self, routes: list[tuple[float, tuple[str, int]]], *, log: Path | None = None
    ) -> None:
        self.routes = routes
        self.log = _Log(log)
        self.listeners: list[socket.socket] = []
        self._conn_ids = 0
        self._tasks: set[asyncio.Task[None]] = set()

    def bind(self) -> list[int]:
        """Bind one listening socket per route on 127.0.0.1; returns their ports."""
        for _ in self.routes:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("127.0.0.1", 0))
            sock.listen(512)  # 16+ parallel range connections must not wait for SYN retries
            sock.setblocking(False)
            self.listeners.append(sock)
        return [s.getsockname()[1] for s in self.listeners]

    async def serve(self) -> None:
        """Accept on every listener until cancelled."""
        await asyncio.gather(*(self._accept(i, s) for i, s in enumerate(self.listeners)))

    async def _accept(self, index: int, listener: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        while True:
            client, _ = await loop.sock_accept(listener)
            self._conn_ids += 1
            task = asyncio.create_task(self._connection(index, self._conn_ids, client))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _connection(self, index: int, conn: int, client: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        delay, upstream_addr = self.routes[index]
        upstream = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        upstream.setblocking(False)
        client.setblocking(False)
        for sock in (client, upstream):
            # a request head must not wait for Nagle
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            await loop.sock_connect(upstream, upstream_addr)
        except OSError:
            with contextlib.suppress(OSError):
                await loop.sock_sendall(client, _status(502, "upstream refused the connection"))
            client.close()
            upstream.close()
            return
        requests = asyncio.create_task(self._requests(index, conn, client, upstream, delay))
        answers = asyncio.create_task(_pipe(upstream, client))
        try:
            done, pending = await asyncio.wait(
                {requests, answers}, return_when=asyncio.FIRST_EXCEPTION
            )
            for task in pending:  # one side failed: the other cannot go on either
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
            for task in done:
                # retrieved, so asyncio does not log it; a reset peer is normal here
                task.exception()
        finally:
            client.close()
            upstream.close()

    async def _requests(
        self, index: int, conn: int, client: socket.socket, upstream: socket.socket, delay: float
    ) -> None:
        """Client -> upstream: each request head (and its body) is held until ``delay`` after it
        arrived.
        """
        loop = asyncio.get_running_loop()
        buf = bytearray()
        chunk = bytearray(256 * 1024)
        while True:
            end = buf.find(b"\r\n\r\n")
            while end < 0:
                if len(buf) > MAX_HEAD:
                    await loop.sock_sendall(client, _status(431, "request head too large"))
                    raise ConnectionError("request head too large")
                n = await loop.sock_recv_into(client, chunk)
                # the client is done: let upstream see the end too, and let the answers drain
                if n == 0:
                    with contextlib.suppress(OSError):
                        upstream.shutdown(socket.SHUT_WR)
                    return
                buf += chunk[:n]
                end = buf.find(b"\r\n\r\n")
            arrived, arrived_at = time.monotonic(), time.time()
            head = bytes(buf[: end + 4])
            del buf[: end + 4]
            body = _body_length(head)
            if body is None:
                await loop.sock_sendall(
                    client, _status(501, "chunked request bodies are not supported")
                )
                raise ConnectionError("chunked request body")
            wait = arrived + delay - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
                # nobody waits for this answer: upstream must not send (or log) it
                if _gone(client):
                    self.log.request(index, conn, head, arrived_at, delay, "dropped")
                    raise ConnectionError("client left while its request was held")
            # before the answer can start
            self.log.request(index, conn, head, arrived_at, delay, "fwd")
            await loop.sock_sendall(upstream, head)
            # a request body goes straight after its head (none in the benchmarks: GET/HEAD)
            while body:
                if not buf:
                    n = await loop.sock_recv_into(client, chunk)
                    if n == 0:
                        raise ConnectionError("client closed inside a request body")
                    buf += chunk[:n]
                part = bytes(buf[:body])
                del buf[: len(part)]
                await loop.sock_sendall(upstream, part)
                body -= len(part)


def _gone(sock: socket.socket) -> bool:
    """True when the peer has closed (or reset) the connection; a pipelined request waiting to be
    read is fine.
    """
    try:
        return sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


def _body_length(head: bytes) -> int | None:
    """Bytes of body after a request head: its Content-Length, 0 without one; None for chunked."""
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"transfer-encoding" and value.strip().lower() != b"identity":
            return None
        if name == b"content-length":
            length = int(value.strip())
    return length


def _status(code: int, reason: str) -> bytes:
    body = f"latency proxy: {reason}\n".encode()
    return (
        f"HTTP/1.1 {code} {reason}\r\nContent-Type: text/plain\r\nContent-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    ).encode() + body


async def _readable(fd: int, *, writable: bool = False) -> None:
    """Wait until ``fd`` is readable (or writable)."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[None] = loop.create_future()

    def ready() -> None:
        if not future.done():
            future.set_result(None)

    if writable:
        loop.add_writer(fd, ready)
    else:
        loop.add_reader(fd, ready)
    try:
        await future
    finally:
        if writable:
            loop.remove_writer(fd)
        else:
            loop.remove_reader(fd)


async def _pipe(src: socket.socket, dst: socket.socket) -> None:
    """Copy ``src`` to ``dst`` with splice(2) (socket -> pipe -> socket: the bytes never enter
    Python) until ``src`` ends, then end ``dst``'s writing side."""
    read_end, write_end = os.pipe()
    with contextlib.suppress(OSError):  # a bigger pipe means fewer trips round the loop
        fcntl.fcntl(write_end, fcntl.F_SETPIPE_SZ, CHUNK)
    flags = os.SPLICE_F_MOVE | os.SPLICE_F_NONBLOCK
    src_fd, dst_fd = src.fileno(), dst.fileno()
    try:
        while True:
            try:
                n = os.splice(src_fd, write_end, CHUNK, flags=flags)
            except BlockingIOError:
                await _readable(src_fd)
                continue
            if n == 0:
                break
            while n:
                try:
                    n -= os.splice(read_end, dst_fd, n, flags=flags)
                except BlockingIOError:
                    await _readable(dst_fd, writable=True)
    finally:
        os.close(read_end)
        os.close(write_end)
    with contextlib.suppress(OSError):
        dst.shutdown(socket.SHUT_WR)


# -- running it as a child of the benchmark
# ---------------------------------------------------------------


class DelayProxy:
    """The proxy in a process of its own (its own GIL and CPU time), with one listener per route.

    ``DelayProxy([(50, "http://127.0.0.1:8080")]).start().url(0)`` -> ``http://127.0.0.1:<port>``.
    """

    def __init__(self, routes: list[tuple[float, str]], *, log: Path | None = None) -> None:
        for _, url in routes:
            loopback_upstream(url)  # refuse early, in the caller
        self.routes = routes
        self.log = log
        self.urls: list[str] = []
        self.proc: subprocess.Popen[str] | None = None

    def start(self, timeout: float = 10.0) -> DelayProxy:
        """Start the child and read its listeners' URLs."""
        argv = [sys.executable, str(Path(__file__).resolve())]
        for delay_ms, url in self.routes:
            argv += ["--route", f"{delay_ms:g}:{url}"]
        if self.log is not None:
            argv += ["--log", str(self.log)]
        self.proc = subprocess.Popen(
            argv, stdout=subprocess.PIPE, text=True, start_new_session=True
        )
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                break
            if line.startswith("listen "):
                self.urls.append(line.split()[2])
            elif line.strip() == "ready":
                return self
        self.stop()
        raise RuntimeError("latency proxy did not start")

    def url(self, index: int) -> str:
        """The listening URL of route ``index`` (in the order given)."""
        return self.urls[index]

    def stop(self) -> None:
        """Stop the child (SIGTERM, then SIGKILL)."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)
        if proc.stdout is not None:
            proc.stdout.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--route",
        action="append",
        required=True,
        help=(
            "DELAY_MS:http://127.0.0.1:PORT — a listener that forwards there, DELAY_MS before each"
            " answer"
        ),
    )
    parser.add_argument(
        "--log",
        type=Path,
        help="append one line per request here (arrival, release, connection, request line, Range)",
    )
    args = parser.parse_args(argv)
    try:
        routes = [parse_route(spec) for spec in args.route]
    except ValueError as exc:
        parser.error(str(exc))
    proxy = Proxy(routes, log=args.log)
    ports = proxy.bind()
    for i, port in enumerate(ports):
        sys.stdout.write(f"listen {i} http://127.0.0.1:{port}\n")
    sys.stdout.write("ready\n")
    sys.stdout.flush()

    async def run() -> None:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        server = asyncio.create_task(proxy.serve())
        await stop.wait()
        server.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await server

    asyncio.run(run())
    return 0


if __name__ == "__main__":
    sys.exit(main())
