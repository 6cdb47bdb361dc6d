"""Which answers are read straight from their socket into a reused buffer, and that the bytes are
the same.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import re
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest
from runfixtures import transfer_job
from servers import CdnServer, Fault, make_data

from mdl.progress import NullProgress
from mdl.transfer.body import RAW_LEAST, _received, promised, raw_socket, read_body
from mdl.transfer.connection import WireStream, read_buffer, set_read_timeout
from mdl.transfer.engine import Engine
from mdl.transfer.hasher import Hasher
from mdl.transfer.http import Credentials, RetryPolicy, follow, make_client
from mdl.transfer.job import EngineConfig


@pytest.fixture
def client() -> Iterator[httpx2.Client]:
    with make_client(pool_size=4, timeout=10) as c:
        yield c


@pytest.fixture
def raw_from_any_size(monkeypatch: pytest.MonkeyPatch) -> None:
    """Read even small test bodies raw (the real threshold leaves small answers to the parser)."""
    monkeypatch.setattr("mdl.transfer.body.RAW_LEAST", 0)


def test_a_short_206_keeps_its_connection_for_the_next_request(
    cdn: CdnServer, client: httpx2.Client
) -> None:
    data = make_data(3_000_000, seed=90)
    url = cdn.add_file("/f.bin", data)
    assert RAW_LEAST > 1_500_000
    for start in (0, 1_500_000):
        headers = {"Range": f"bytes={start}-{start + 1_499_999}"}
        with follow(client, url, credentials=Credentials(), headers=headers, what="f") as resp:
            assert resp.status_code == 206
            # read by the parser: its connection goes back to the pool
            assert raw_socket(resp, promised(resp, what="f")) is None
            assert resp.read() == data[start : start + 1_500_000]
    first, second = cdn.log.records(method="GET")
    assert first.connection == second.connection


@pytest.mark.usefixtures("raw_from_any_size")
def test_a_plain_206_and_a_whole_200_are_read_from_their_socket(
    cdn: CdnServer, client: httpx2.Client
) -> None:
    data = make_data(3_000_000, seed=91)
    url = cdn.add_file("/f.bin", data)
    with follow(
        client, url, credentials=Credentials(), headers={"Range": "bytes=10-2999999"}, what="f"
    ) as resp:
        assert resp.status_code == 206
        stream = raw_socket(resp, promised(resp, what="f"))
        assert isinstance(stream, WireStream)
        body = resp.iter_raw()  # kept: a dropped iterator closes its connection
        first = next(body, b"")  # what the parser holds past the headers
        rest = b"".join(
            bytes(v)
            for v in _received(stream, read_buffer(), len(data) - 10 - len(first), resp.request)
        )
        assert first + rest == data[10:]
    with follow(client, url, credentials=Credentials(), headers={}, what="f") as resp:
        assert resp.status_code == 200
        # a whole body framed by its Content-Length too (a shard of a repo, fetched in one GET)
        span = promised(resp, what="f")
        assert not span.ranged and raw_socket(resp, span) is not None
        assert b"".join(bytes(v) for v in read_body(resp, span, encoded=False, what="f")) == data
    with follow(client, url, credentials=Credentials(), headers={}, what="f") as resp:
        assert resp.read() == data  # on the connection the raw read left exactly at its end
    connections = [r.connection for r in cdn.log.records(method="GET")]
    assert connections[-1] == connections[-2]


@pytest.mark.usefixtures("raw_from_any_size")
def test_a_closed_connection_mid_body_is_an_httpx2_read_error(
    cdn: CdnServer, client: httpx2.Client
) -> None:
    data = make_data(3_000_000, seed=92)
    url = cdn.add_file("/f.bin", data)
    with follow(
        client, url, credentials=Credentials(), headers={"Range": "bytes=0-2999999"}, what="f"
    ) as resp:
        stream = raw_socket(resp, promised(resp, what="f"))
        assert stream is not None
        stream.close()  # as Ctrl-C's close of every response does
        with pytest.raises(httpx2.ReadError):
            list(_received(stream, read_buffer(), len(data), resp.request))


class ChunkedWithLength:
    """A server that frames every answer as chunked *and* gives a Content-Length (RFC 9112 §6.3:
    chunked wins).

    Some proxy/origin pairs send both; the bytes of the file are only what the chunked framing
    carries.
    """

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.server = socket.socket()
        self.server.bind(("127.0.0.1", 0))
        self.server.listen()
        self.url = f"http://127.0.0.1:{self.server.getsockname()[1]}/f.bin"
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn: socket.socket) -> None:
        with conn:
            try:
                while True:
                    head = b""
                    while b"\r\n\r\n" not in head:
                        got = conn.recv(65536)
                        if not got:
                            return
                        head += got
                    match = re.search(rb"(?i)range: bytes=(\d+)-(\d*)", head)
                    first = int(match.group(1)) if match else 0
                    last = int(match.group(2)) if match and match.group(2) else len(self.data) - 1
                    body = self.data[first : last + 1]
                    status = "206 Partial Content" if match else "200 OK"
                    extra = (
                        f"Content-Range: bytes {first}-{last}/{len(self.data)}\r\n" if match else ""
                    )
                    conn.sendall(
                        f'HTTP/1.1 {status}\r\n{extra}ETag: "v1"\r\nContent-Length: {len(body)}\r\n'
                        "Transfer-Encoding: chunked\r\n\r\n".encode()
                    )
                    for at in range(0, len(body), 10_000):
                        part = body[at : at + 10_000]
                        conn.sendall(b"%x\r\n" % len(part) + part + b"\r\n")
                    conn.sendall(b"0\r\n\r\n")
            except OSError:
                return

    def close(self) -> None:
        # Wake the accept first: a listener closed under a blocked accept() leaves a thread that may
        # accept on the fd number a later test's server gets, and answer its requests.
        self.server.shutdown(socket.SHUT_RDWR)
        self.thread.join(5)
        self.server.close()


def test_a_chunked_206_with_a_content_length_is_never_read_raw(
    client: httpx2.Client, tmp_path: Path
) -> None:
    data = make_data(12_000_000, seed=93)
    server = ChunkedWithLength(data)
    try:
        job = transfer_job(tmp_path, server.url, data)
        config = EngineConfig(
            connections=4, retry=RetryPolicy(retries=0), split_threshold=64 * 1024
        )
        Engine(client, config, progress=NullProgress(), cancel=threading.Event()).fetch(job)
        assert job.final_path.read_bytes() == data  # no chunk-size lines spliced into the file
    finally:
        server.close()


def test_a_catch_up_of_a_frontier_read_before_a_reset_hashes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "f"
    old = make_data(3 * 1024 * 1024, seed=94)
    path.write_bytes(old)
    fd = os.open(path, os.O_RDONLY)
    try:
        hasher = Hasher(fd, len(old), git=False)
        limit, epoch = len(old), hasher.epoch  # the hashing thread reads the frontier...
        hasher.unclaim(0)  # ...the stream gets a whole new body and restarts from zero...
        # ...and the catch-up of the old frontier must not hash old bytes
        hasher.catch_up(limit, epoch=epoch)
        assert hasher.position == 0
        assert hasher.sha256.hexdigest() == hashlib.sha256(b"").hexdigest()
        hasher.catch_up(1000)  # a frontier read after the reset is caught up as usual
        assert hasher.sha256.hexdigest() == hashlib.sha256(old[:1000]).hexdigest()
    finally:
        os.close(fd)


@pytest.mark.realtime  # (throttled)
@pytest.mark.usefixtures("raw_from_any_size")
def test_a_body_that_comes_in_small_segments_is_given_in_whole_fills(
    cdn: CdnServer, client: httpx2.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A capped link brings a segment a read; each chunk given costs the writer, the hasher and the
    # record a turn, so reads go on till a fill (no clock here: the fill's wait is set past the test)
    monkeypatch.setattr("mdl.transfer.body.FILL_WAIT", 3600.0)
    fill = 96 * 1024
    monkeypatch.setattr("mdl.transfer.body.FILL", fill)
    data = make_data(1_000_000, seed=93)
    url = cdn.add_file("/f.bin", data)
    cdn.throttle_bps = 5_000_000  # sent in segments of 64 KiB at most (servers._write_range)
    with follow(
        client, url, credentials=Credentials(), headers={"Range": "bytes=0-999999"}, what="f"
    ) as resp:
        span = promised(resp, what="f")
        chunks = [bytes(v) for v in read_body(resp, span, encoded=False, what="f")]
    assert b"".join(chunks) == data
    # after the parser's first chunk (what came with the headers), whole fills, till the body's
    # last two fills' worth (read a read at a time: its end heard as it comes)
    starts = [0, *itertools.accumulate(len(c) for c in chunks)][1:-1]
    whole = [len(c) for c, at in zip(chunks[1:], starts) if len(data) - at > 2 * fill]
    assert len(whole) >= 6 and set(whole) == {fill}
    assert len(chunks[1 + len(whole) :]) >= 2  # (a segment a read)


@pytest.mark.usefixtures("raw_from_any_size")
@pytest.mark.parametrize("rst", [False, True], ids=["closed", "reset"])
def test_the_bytes_a_fill_holds_when_its_connection_fails_are_given_before_the_error(
    cdn: CdnServer, client: httpx2.Client, monkeypatch: pytest.MonkeyPatch, rst: bool
) -> None:
    monkeypatch.setattr("mdl.transfer.body.FILL_WAIT", 3600.0)
    data = make_data(3_000_000, seed=94)
    url = cdn.add_file("/f.bin", data)
    cdn.faults.add(Fault.reset(after_bytes=1_234_567, rst=rst))
    got = bytearray()
    with follow(
        client, url, credentials=Credentials(), headers={"Range": "bytes=0-2999999"}, what="f"
    ) as resp:
        span = promised(resp, what="f")
        with pytest.raises(httpx2.TransportError):
            for chunk in read_body(resp, span, encoded=False, what="f"):
                got += chunk
    # every byte that came is given (a resume keeps them), none past what the server sent
    assert bytes(got) == data[: len(got)]
    assert len(got) == 1_234_567 or (rst and len(got) <= 1_234_567)


class Segments:
    """A connection that has every segment ready (a link faster than the reader): each read gives
    one segment at once."""

    ended = False

    def __init__(self, total: int, segment: int = 64 * 1024) -> None:
        self.left, self.segment = total, segment

    def read_into(self, view: memoryview, timeout: float | None = None) -> int:
        n = min(len(view), self.segment, self.left)
        view[:n] = b"x" * n
        self.left -= n
        return n


def test_a_body_s_end_is_heard_as_it_comes() -> None:
    # BodyCopy.near sends the next piece's request once the bytes left take about two round trips
    # (here 512 KiB): a fill that took the body's last MiB at once would tell it with none left
    total, early = 4 << 20, 512 * 1024
    request = httpx2.Request("GET", "http://127.0.0.1/")
    got = 0
    for chunk in _received(Segments(total), read_buffer(), total, request):  # type: ignore[arg-type]
        got += len(chunk)
        if got >= total - early:
            break
    assert total - got >= early - 64 * 1024


@pytest.mark.usefixtures("raw_from_any_size")
def test_what_came_before_a_pause_is_given_before_the_link_goes_on(
    cdn: CdnServer, client: httpx2.Client
) -> None:
    # The server sends a part, then nothing till the test has it all: a fill that waited on for
    # more (or for its buffer to be full) would hold those bytes till the read timed out, an error
    data = make_data(2_000_000, seed=96)
    url = cdn.add_file("/f.bin", data)
    sent, part = threading.Event(), 300_000
    cdn.faults.add(Fault.stall(after_bytes=part, until=sent, resume=True))
    got = bytearray()
    with follow(
        client, url, credentials=Credentials(), headers={"Range": "bytes=0-1999999"}, what="f"
    ) as resp:
        for chunk in read_body(resp, promised(resp, what="f"), encoded=False, what="f"):
            got += chunk
            if len(got) == part:
                sent.set()
    assert sent.is_set() and bytes(got) == data


@pytest.mark.realtime  # (throttled, then a stall of two seconds)
@pytest.mark.usefixtures("raw_from_any_size")
def test_what_came_before_a_stall_is_given_before_the_stall_s_error(
    cdn: CdnServer, client: httpx2.Client
) -> None:
    data = make_data(1_000_000, seed=97)
    url = cdn.add_file("/f.bin", data)
    cdn.throttle_bps = 100_000  # segments of 2 KB
    cdn.faults.add(Fault.stall(after_bytes=30_000))  # then silent till the server stops
    got = bytearray()
    with follow(
        client, url, credentials=Credentials(), headers={"Range": "bytes=0-999999"}, what="f"
    ) as resp:
        set_read_timeout(resp, 2.0)  # (a server thread starved that long fails it)
        with pytest.raises(httpx2.ReadTimeout):
            for chunk in read_body(resp, promised(resp, what="f"), encoded=False, what="f"):
                got += chunk
    assert bytes(got) == data[:30_000]


def test_a_capped_runs_reads_are_at_most_its_share(cdn: CdnServer, client: httpx2.Client) -> None:
    """Under ``--limit-rate`` each read is paid after it lands: a stream reads at most the cap's
    share at once (``RateLimiter.chunk``), not a MiB (8 streams' first MiB each were 17 times a
    500K cap's first second)."""
    from mdl.transfer.scheduling import RateLimiter

    share = RateLimiter(500 * 1024).chunk
    assert share == 500 * 1024 // 8  # an eighth of a second's
    assert RateLimiter(50 << 20).chunk == 1 << 20 and RateLimiter(1024).chunk == 16 * 1024
    data = make_data(3_000_000, seed=95)
    url = cdn.add_file("/f.bin", data)
    with follow(client, url, credentials=Credentials(), headers={}, what="f") as resp:
        body = read_body(resp, promised(resp, what="f"), encoded=False, what="f", most=share)
        chunks = [bytes(v) for v in body]
    assert b"".join(chunks) == data
    assert max(len(c) for c in chunks[1:]) <= share  # (the first: what came with the headers)
