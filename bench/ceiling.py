"""The Python ceiling: the fastest downloader we could write in Python that hashes and syncs
(loopback URLs only).

    python bench/ceiling.py URL OUT [--connections N] [--sha256 HEX] [--buffer-kib 1024] [--ring 4]
    [--json]

The yardstick of issue 38 and engine rule 18 for how fast Python can make a verified, durable file
here:
- raw sockets speaking HTTP/1.1 (one GET per connection, ``Connection: close``), no HTTP library;
- ``recv_into`` a ring of reused buffers per connection (``--ring`` slots of ``--buffer-kib``), each
  full slot written with one ``os.pwrite`` into a file preallocated with ``posix_fallocate``;
- sha256 on a second thread, fed in file order: a slot that holds the next bytes of the file is
  handed over as a memoryview (and reused once hashed); bytes another connection wrote ahead of that
  are read back from the page cache when their turn comes ("hashing the contiguous prefix");
- one ``fdatasync`` at the end, then the digest is compared with ``--sha256`` (exit 1 on a
  mismatch).

``--connections 1`` (the default) sends one plain GET. With N > 1 the first connection asks for
``bytes=0-`` and keeps streaming while the other N-1 start the moment its answer names the size (no
request only to learn it); it stops reading at the end of its share. The N shares are equal and
fixed: no work stealing.

Prints one line (or ``--json``): bytes, wall seconds from the first connect to after the fdatasync,
CPU seconds of the whole process (user + system, threads included, from getrusage), connections and
the sha256. Only ``http://`` URLs on a loopback address are accepted.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import queue
import resource
import socket
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent))

from latency import loopback_upstream

MAX_HEAD = 64 * 1024
# bytes per pread when the hasher reads another connection's bytes back from the page cache
READ_BACK = 4 << 20

# A hasher job: (view, free slots, slot, 0) hands a written slot over; (None, None, start, end)
# reads it back.
Job = tuple[memoryview | None, "queue.SimpleQueue[int] | None", int, int]


class Answer:
    """A response head, read off a connection that has just sent its GET."""

    def __init__(self, sock: socket.socket) -> None:
        head = bytearray()
        while (end := head.find(b"\r\n\r\n")) < 0:
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError("connection closed before the end of the response head")
            head += chunk
            if len(head) > MAX_HEAD:
                raise ConnectionError("response head too large")
        lines = bytes(head[:end]).decode("latin-1").split("\r\n")
        self.status = int(lines[0].split()[1])
        self.headers = {
            k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])
        }
        self.body = bytes(head[end + 4 :])  # body bytes that came with the head
        if "chunked" in self.headers.get("transfer-encoding", "").lower():
            raise ConnectionError(
                "chunked answers are not supported: the ceiling needs a known size"
            )

    def span(self) -> tuple[int, int]:
        """(first byte, total size) of what this answer carries."""
        if self.status == 206:
            first, _, total = self.headers["content-range"].removeprefix("bytes ").partition("/")
            return int(first.partition("-")[0]), int(total)
        if self.status == 200:
            return 0, int(self.headers["content-length"])
        raise ConnectionError(f"HTTP {self.status}")


def request(addr: tuple[str, int], host: str, target: str, byte_range: str | None) -> socket.socket:
    """Connect and send one GET (with ``Range: bytes=RANGE`` when given); the caller reads the
    ``Answer``.
    """
    sock = socket.create_connection(addr)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    extra = f"Range: bytes={byte_range}\r\n" if byte_range is not None else ""
    sock.sendall(
        f"GET {target} HTTP/1.1\r\nHost: {host}\r\nUser-Agent:"
        f" mdl-bench-ceiling\r\nAccept-Encoding: identity\r\n{extra}Connection: close\r\n\r\n".encode(
            "latin-1"
        )
    )
    return sock


class Prefix:
    """Feeds the hasher every byte in file order, from N connections each writing its own share.

    The frontier is the first byte not yet given to the hasher; it always sits at the written end of
    the share it is in. A slot written at the frontier is handed over as it is; a share the frontier
    reaches later has its written bytes read back from the file, then its new slots are handed over
    as they come.
    """

    def __init__(self, shares: list[tuple[int, int]], jobs: queue.SimpleQueue[Job | None]) -> None:
        self.shares = shares
        self.written_to = [start for start, _ in shares]
        self.current = 0  # the share the frontier is in
        self.frontier = shares[0][0] if shares else 0
        self.jobs = jobs
        self.lock = threading.Lock()

    def written(
        self, share: int, end: int, view: memoryview, free: queue.SimpleQueue[int], slot: int
    ) -> None:
        """Share ``share`` has written up to ``end`` from ``view`` (slot ``slot`` of its ring)."""
        with self.lock:
            self.written_to[share] = end
            handed = share == self.current  # then the slot starts at the frontier
            if handed:
                self.jobs.put((view, free, slot, 0))
                self.frontier = end
            while self.current < len(self.shares):
                if self.frontier == self.shares[self.current][1]:
                    self.current += 1
                    if self.current < len(self.shares):
                        self.frontier = self.shares[self.current][0]
                    continue
                ahead = self.written_to[self.current]
                if ahead <= self.frontier:
                    break
                self.jobs.put((None, None, self.frontier, ahead))
                self.frontier = ahead
        if not handed:
            free.put(slot)


def hasher(fd: int, jobs: queue.SimpleQueue[Job | None], digest: hashlib._Hash) -> None:
    """sha256 of every job in order until ``None``; hashlib releases the GIL on big updates."""
    back = memoryview(bytearray(READ_BACK))
    while (job := jobs.get()) is not None:
        view, free, pos, end = job
        if view is not None and free is not None:
            digest.update(view)
            free.put(pos)  # the slot is free again
            continue
        while pos < end:
            n = os.preadv(fd, [back[: min(READ_BACK, end - pos)]], pos)
            if n <= 0:
                raise OSError(f"short read-back at {pos}")
            digest.update(back[:n])
            pos += n


def stream(
    sock: socket.socket,
    body: bytes | None,
    fd: int,
    share: int,
    start: int,
    end: int,
    prefix: Prefix,
    buffer_size: int,
    ring: int,
) -> None:
    """Read [start, end) off ``sock`` into a ring of reused slots, ``pwrite`` each full slot, hand
    it on.

    ``body`` is what came with an answer head already read; None: read the head here (a ranged
    request, sent with the others before any answer came, so no connection waits for another's round
    trip).
    """
    if body is None:
        answer = Answer(sock)
        if answer.status != 206 or answer.span()[0] != start:
            sock.close()
            raise ConnectionError(f"range {start}-{end - 1}: HTTP {answer.status} {answer.headers}")
        body = answer.body
    slots = [memoryview(bytearray(buffer_size)) for _ in range(ring)]
    free: queue.SimpleQueue[int] = queue.SimpleQueue()
    for i in range(ring):
        free.put(i)
    pos = start
    try:
        while pos < end:
            slot = free.get()  # blocks while the hasher still holds every slot
            view = slots[slot]
            want = min(buffer_size, end - pos)
            filled = 0
            if body:
                filled = min(len(body), want)
                view[:filled] = body[:filled]
                body = body[filled:]
            while filled < want:
                got = sock.recv_into(view[filled:want])
                if not got:
                    raise ConnectionError(
                        f"connection closed at byte {pos + filled} of [{start}, {end})"
                    )
                filled += got
            done = 0
            while done < want:
                done += os.pwrite(fd, view[done:want], pos + done)
            pos += want
            prefix.written(share, pos, view[:want], free, slot)
    finally:
        sock.close()


def download(
    url: str, out: Path, *, connections: int = 1, buffer_size: int = 1 << 20, ring: int = 4
) -> tuple[int, str, int]:
    """Fetch ``url`` into ``out``, hashed and fdatasync'ed; returns (bytes, sha256 hex,
    connections used).
    """
    addr = loopback_upstream(url)
    parts = urlsplit(url)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    host = parts.netloc
    first_sock = request(addr, host, target, "0-" if connections > 1 else None)
    first = Answer(first_sock)
    first_byte, total = first.span()
    if first_byte != 0:
        raise ConnectionError(f"the first answer starts at byte {first_byte}")
    n = connections if first.status == 206 else 1  # a server that ignores Range gets one stream
    n = max(1, min(n, total // buffer_size or 1))
    shares = [(total * i // n, total * (i + 1) // n) for i in range(n)]
    fd = os.open(out, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        if total:
            os.posix_fallocate(fd, 0, total)
        jobs: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
        prefix = Prefix(shares, jobs)
        digest = hashlib.sha256()
        errors: list[BaseException] = []

        def guarded(fn: Callable[..., None], *args: object) -> threading.Thread:
            def run() -> None:
                try:
                    fn(*args)
                except BaseException as exc:
                    errors.append(exc)

            thread = threading.Thread(target=run, daemon=True)
            thread.start()
            return thread

        socks = [request(addr, host, target, f"{start}-{end - 1}") for start, end in shares[1:]]
        hashing = guarded(hasher, fd, jobs, digest)
        workers = [
            guarded(stream, first_sock, first.body, fd, 0, *shares[0], prefix, buffer_size, ring)
        ]
        workers += [
            guarded(stream, sock, None, fd, i, start, end, prefix, buffer_size, ring)
            for i, (sock, (start, end)) in enumerate(zip(socks, shares[1:], strict=True), 1)
        ]
        for worker in workers:
            worker.join()
        jobs.put(None)
        os.fdatasync(fd)  # while the hasher finishes the tail
        hashing.join()
        if errors:
            raise errors[0]
    finally:
        os.close(fd)
    return total, digest.hexdigest(), n


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("url", help="http://127.0.0.1:PORT/PATH (loopback only)")
    parser.add_argument("out", type=Path, help="the file to write (replaced)")
    parser.add_argument(
        "--connections", type=int, default=1, help="ranged streams, each its own socket (default 1)"
    )
    parser.add_argument("--sha256", help="expected sha256: exit 1 when the file's differs")
    parser.add_argument(
        "--buffer-kib", type=int, default=1024, help="size of each ring slot (default 1024 KiB)"
    )
    parser.add_argument("--ring", type=int, default=4, help="slots per connection (default 4)")
    parser.add_argument(
        "--json", action="store_true", help="print one JSON object instead of a line"
    )
    args = parser.parse_args(argv)
    if args.connections < 1 or args.ring < 1 or args.buffer_kib < 1:
        parser.error("--connections, --ring and --buffer-kib must be at least 1")
    try:
        loopback_upstream(args.url)
    except ValueError:
        parser.error(f"{args.url}: only http://HOST:PORT URLs on a loopback address (this machine)")
    started = time.perf_counter()
    try:
        size, sha, used = download(
            args.url,
            args.out,
            connections=args.connections,
            buffer_size=args.buffer_kib * 1024,
            ring=args.ring,
        )
    except (OSError, ValueError, KeyError) as exc:
        sys.stderr.write(f"ceiling: {exc}\n")
        return 1
    wall = time.perf_counter() - started
    usage = [resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
    cpu = sum(u.ru_utime + u.ru_stime for u in usage)
    ok = args.sha256 is None or args.sha256.lower() == sha
    result = {
        "bytes": size,
        "wall": round(wall, 4),
        "cpu": round(cpu, 4),
        "connections": used,
        "sha256": sha,
    }
    if args.json:
        sys.stdout.write(json.dumps({**result, "ok": ok}) + "\n")
    else:
        rate = size / (1 << 20) / wall if wall > 0 else 0.0
        sys.stdout.write(
            f"ceiling: {size} bytes in {wall:.3f} s ({rate:.0f} MiB/s), CPU {cpu:.3f} s, {used}"
            f" connection(s), sha256 {sha}\n"
        )
    if not ok:
        sys.stderr.write(f"ceiling: sha256 {sha} != expected {args.sha256}\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
