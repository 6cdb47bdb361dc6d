"""The transport on httpx2's supported surface (issue 38): routes as mounts, errors by type, sockets
set up once.

Each NO_PROXY entry kind is tried against a real loopback proxy and a direct server on 127.0.0.1;
kinds that need other addresses (IPv6 blocks, other hosts' subdomains) are checked through the same
mounts with httpx2's matcher.
"""

from __future__ import annotations

import socket
import ssl
import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import suppress
from pathlib import Path
from typing import Any

import httpcore2
import httpx2
import pytest
from hostile import ForwardProxy, ScratchCA, TlsCdn
from runfixtures import HANG, proxy_for, wait_for
from servers import CdnServer, Fault, make_data

from mdl.transfer.body import promised, raw_socket, read_body
from mdl.transfer.connection import (
    LiveStreams,
    NetTransport,
    WireBackend,
    WireStream,
    _header_budget,
    httpx2_errors,
    own_connections,
    set_body_deadline,
    set_read_timeout,
)
from mdl.transfer.http import Credentials, follow, make_client

DATA = make_data(50_000, seed=38)


def unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def proxy() -> Iterator[ForwardProxy]:
    with ForwardProxy() as running:
        yield running


@pytest.mark.slow
@pytest.mark.parametrize(
    ("no_proxy", "host", "direct"),
    [
        ("127.0.0.1", "127.0.0.1", True),
        ("127.0.0.0/8", "127.0.0.1", True),  # a CIDR block
        ("10.0.0.0/8", "127.0.0.1", False),
        ("127.0.0.1:{port}", "127.0.0.1", True),  # the server's port
        ("127.0.0.1:{other}", "127.0.0.1", False),  # another port
        ("localhost", "localhost", True),
        (".localhost", "localhost", True),  # a leading dot names the domain itself too (curl)
        ("calhost", "localhost", False),  # a suffix is not a parent domain
        ("127.0.0.0/8", "localhost", False),  # a name is not matched as the address it resolves to
        ("*", "localhost", True),
        ("example.com, 127.0.0.1 ,", "127.0.0.1", True),
        ("", "127.0.0.1", False),
    ],
)
def test_each_no_proxy_kind_beats_the_scheme_proxy(
    cdn: CdnServer, proxy: ForwardProxy, no_proxy: str, host: str, direct: bool
) -> None:
    url = cdn.add_file("/w.bin", DATA).replace("127.0.0.1", host)
    port = int(url.split(":")[2].split("/")[0])
    environ = {"HTTP_PROXY": proxy.url, "NO_PROXY": no_proxy.format(port=port, other=unused_port())}
    with (
        make_client(pool_size=2, timeout=5, environ=environ) as client,
        follow(client, url, credentials=Credentials(), what="f") as response,
    ):
        assert response.read() == DATA
    assert proxy.requests == ([] if direct else [url])


@pytest.mark.parametrize(
    ("url", "no_proxy", "direct"),
    [
        ("https://cdn.example.com/x", "example.com", True),  # a subdomain
        ("https://example.com/x", ".example.com", True),
        ("https://notexample.com/x", "example.com", False),
        ("https://a.b.example.com/x", "*.example.com", True),
        ("https://example.com.evil.org/x", "example.com", False),
        ("https://example.com:8443/x", "example.com:8443", True),
        ("https://example.com:8444/x", "example.com:8443", False),
        ("http://10.1.2.3/x", "10.0.0.0/8", True),
        ("http://11.1.2.3/x", "10.0.0.0/8", False),
        ("http://[::1]:8080/x", "::1", True),
        ("http://[::1]:8080/x", "[::1]:8080", True),
        ("http://[::1]:8081/x", "[::1]:8080", False),
        ("http://[fd00::5]/x", "fd00::/8", True),  # an IPv6 block
        ("http://[fe80::1]/x", "fd00::/8", False),
        ("http://[fd00::5]/x", "10.0.0.0/8", False),
        # entries naming nothing are left out
        ("http://example.com/x", "ex ample.com,[,::/999,1.2.3.4/33", False),
    ],
)
def test_no_proxy_entries_as_httpx2_matches_them(url: str, no_proxy: str, direct: bool) -> None:
    environ = {"all_proxy": "http://proxy.invalid:3128", "no_proxy": no_proxy}
    chosen = proxy_for(url, environ)
    assert (chosen is None) is direct
    assert chosen is None or chosen.source == "all_proxy"


def test_a_scheme_proxy_is_for_its_scheme_only() -> None:
    environ = {"HTTPS_PROXY": "http://proxy.invalid:3128"}
    assert proxy_for("http://example.com/", environ) is None
    assert proxy_for("https://example.com/", environ) is not None
    assert proxy_for("https://example.com/", {**environ, "no_proxy": "*"}) is None


def test_httpcore2_errors_become_httpx2_errors_by_type() -> None:
    """Every httpcore2 exception httpx2 has a twin of maps to exactly that twin (a new one fails
    here).
    """
    request = httpx2.Request("GET", "http://127.0.0.1/")
    twins = [
        (getattr(httpcore2, name), getattr(httpx2, name))
        for name in httpcore2.__all__
        if isinstance(getattr(httpcore2, name), type)
        and issubclass(getattr(httpcore2, name), Exception)
        and isinstance(getattr(httpx2, name, None), type)
    ]
    assert len(twins) >= 14
    for source, twin in twins:
        with pytest.raises(httpx2.TransportError) as info, httpx2_errors(request):
            raise source("boom")
        assert type(info.value) is twin, (source, type(info.value))
        assert info.value.request is request and isinstance(info.value.__cause__, source)
    with pytest.raises(KeyError), httpx2_errors(request):  # anything else passes through
        raise KeyError("x")


def test_a_connection_sets_its_socket_timeout_per_request_not_per_read(
    cdn: CdnServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """httpcore2's own stream calls settimeout (an ioctl) before every read; mdl's only when the
    timeout changes.
    """
    url = cdn.add_file("/big.bin", make_data(16_000_000, seed=39))
    calls: list[float | None] = []
    settimeout = socket.socket.settimeout

    def counted(sock: socket.socket, value: float | None) -> None:
        calls.append(value)
        settimeout(sock, value)

    monkeypatch.setattr(socket.socket, "settimeout", counted)
    with make_client(pool_size=1, timeout=10) as client:
        for _ in range(2):
            with follow(client, url, credentials=Credentials(), what="f") as response:
                reads = sum(1 for _ in response.iter_raw())
            assert reads >= 16  # many reads ...
        assert len(calls) <= 8, calls  # ... a few per request (its header budget), none per read


@pytest.mark.parametrize("tls", [False, True], ids=["http", "https"])
def test_bulk_ranges_read_past_the_parser_keep_their_connection(
    tls: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A body read straight from its socket leaves h11 mid-body, so httpcore2 closes its side of
    the connection: the connection serves the next request all the same, over TLS too, whatever its
    handshake took (a busy machine's 127.0.0.1 took long enough to lose the raw path)."""
    monkeypatch.setattr("mdl.transfer.body.RAW_LEAST", 1 << 20)  # a small test body counts as bulk
    data = make_data(9_000_000, seed=40)
    ca = ScratchCA()
    environ = {"SSL_CERT_FILE": str(ca.write_bundle(tmp_path / "ca.pem"))}
    with (
        TlsCdn(ca) if tls else CdnServer() as cdn,
        make_client(
            pool_size=2,
            timeout=10,
            transport=NetTransport(timeout=10, environ=environ, pool_size=2),
        ) as client,
    ):
        url = cdn.add_file("/f.bin", data)
        for start in range(0, len(data), 3_000_000):
            headers = {"Range": f"bytes={start}-{start + 2_999_999}"}
            with follow(client, url, credentials=Credentials(), headers=headers, what="f") as resp:
                span = promised(resp, what="f")
                assert raw_socket(resp, span) is not None
                chunks = [bytes(c) for c in read_body(resp, span, encoded=False, what="f")]
                assert b"".join(chunks) == data[start : start + 3_000_000]
                assert len(chunks) >= 3  # the parser's share, then the socket's (1 MiB a read)
        with follow(client, url, credentials=Credentials(), what="f") as resp:  # the parser's
            assert resp.read() == data
    requests = cdn.log.records(method="GET")
    assert len(requests) == 4
    assert {record.connection for record in requests} == {requests[0].connection}


@pytest.mark.parametrize("gone", ["closed", "expired"])
def test_a_kept_connection_the_server_closed_or_left_idle_too_long_is_not_reused(
    gone: str, cdn: CdnServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As httpcore2 treats an idle connection in its pool: one the server closed meanwhile, or
    idle past the keep-alive, is closed and a new one opened (a request sent on it would fail)."""
    monkeypatch.setattr("mdl.transfer.body.RAW_LEAST", 1 << 20)
    if gone == "expired":
        monkeypatch.setattr("mdl.transfer.connection.KEEPALIVE_SECONDS", 0.0)
    data = make_data(3_000_000, seed=44)
    url = cdn.add_file("/f.bin", data)
    whole = {"Range": "bytes=0-"}
    with make_client(pool_size=1, timeout=10) as client:
        with follow(client, url, credentials=Credentials(), headers=whole, what="f") as resp:
            span = promised(resp, what="f")
            stream = raw_socket(resp, span)
            assert stream is not None
            assert (
                b"".join(bytes(c) for c in read_body(resp, span, encoded=False, what="f")) == data
            )
        if gone == "closed":
            cdn.drop_connections()
            wait_for(lambda: stream.get_extra_info("is_readable"))  # its end came
        # httpx2 alone: no retry to hide a request sent on a dead connection
        assert client.get(url, headers=whole).content == data
    first, second = (record.connection for record in cdn.log.records(method="GET"))
    assert first != second


def test_a_raw_body_cut_short_fails_and_costs_its_connection(
    cdn: CdnServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("mdl.transfer.body.RAW_LEAST", 1 << 20)
    data = make_data(3_000_000, seed=42)
    url = cdn.add_file("/f.bin", data)
    cdn.faults.add(Fault.reset(after_bytes=2_000_000))
    whole = {"Range": "bytes=0-"}
    with make_client(pool_size=1, timeout=10) as client:
        with follow(client, url, credentials=Credentials(), headers=whole, what="f") as resp:
            span = promised(resp, what="f")
            assert raw_socket(resp, span) is not None
            with pytest.raises(httpx2.TransportError):
                for _ in read_body(resp, span, encoded=False, what="f"):
                    pass
        with follow(client, url, credentials=Credentials(), headers=whole, what="f") as resp:
            span = promised(resp, what="f")
            got = b"".join(bytes(c) for c in read_body(resp, span, encoded=False, what="f"))
    assert got == data
    first, second = (record.connection for record in cdn.log.records(method="GET"))
    assert first != second


def test_a_raw_body_whose_answer_closes_leaves_nothing_to_keep(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``Connection: close``: the server ends the connection after this answer, so no next request
    may be sent on it."""
    monkeypatch.setattr("mdl.transfer.body.RAW_LEAST", 0)
    body = make_data(3_000_000, seed=43)
    with (
        DrippingRange(body=body, head=1000, interval=0, close=True) as server,
        make_client(pool_size=1, timeout=10) as client,
        follow(client, server.url, credentials=Credentials(), what="f") as response,
    ):
        span = promised(response, what="f")
        stream = raw_socket(response, span)
        assert stream is not None
        assert (
            b"".join(bytes(c) for c in read_body(response, span, encoded=False, what="f")) == body
        )
        assert not stream.ended


class DrippingRange:
    """Answers one request on 127.0.0.1 with a 206 of ``length`` bytes (``body``, else x's): its
    headers and first ``head`` bytes in one write, then a byte per ``interval`` (a trickle below any
    pace)."""

    def __init__(
        self,
        *,
        length: int = 100_000,
        head: int = 1000,
        interval: float = 0.2,
        body: bytes = b"",
        close: bool = False,
    ) -> None:
        self.length, self.head, self.interval = len(body) or length, head, interval
        self.close = close
        self.body = body or b"x" * self.length
        self._stop = threading.Event()
        self._server = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._server.getsockname()[1]}/f"
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self) -> DrippingRange:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._server.shutdown(socket.SHUT_RDWR)
        self._thread.join(5)
        self._server.close()

    def _serve(self) -> None:
        with suppress(OSError):
            conn, _ = self._server.accept()
            with conn:
                while b"\r\n\r\n" not in conn.recv(65536):
                    pass
                close = "Connection: close\r\n" if self.close else ""
                conn.sendall(
                    "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes"
                    f" 0-{self.length - 1}/{self.length}\r\nContent-Length: {self.length}\r\n"
                    f"{close}\r\n".encode()
                    + self.body[: self.head]
                )
                if not self.interval:  # no trickle: the rest in one write, not a write per byte
                    conn.sendall(self.body[self.head :])
                    return
                for at in range(self.head, self.length):
                    if self._stop.wait(self.interval):
                        return
                    conn.sendall(self.body[at : at + 1])


@pytest.mark.slow
@pytest.mark.realtime
@pytest.mark.parametrize("raw", [False, True], ids=["parser", "raw-socket"])
def test_a_trickling_range_is_a_stall_on_either_reader(
    raw: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each read returns within the read timeout, yet the pace checked in the chunk loop ends it."""
    monkeypatch.setattr("mdl.transfer.body.RAW_LEAST", 0 if raw else 1 << 40)
    with (
        DrippingRange() as server,
        make_client(pool_size=1, timeout=10 * HANG) as client,
        follow(client, server.url, credentials=Credentials(), what="f") as response,
    ):
        set_read_timeout(response, 1.0)
        span = promised(response, what="f")
        assert (raw_socket(response, span) is not None) is raw
        started = time.monotonic()
        with pytest.raises(httpx2.ReadTimeout):
            for _ in read_body(response, span, encoded=False, what="f"):
                pass
        # the pace fired: not the timeout (10 x HANG) nor the whole trickle
        assert time.monotonic() - started < HANG


@pytest.mark.slow
@pytest.mark.realtime
@pytest.mark.parametrize("raw", [False, True], ids=["parser", "raw-socket"])
def test_a_body_deadline_ends_a_body_that_keeps_its_pace(
    raw: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("mdl.transfer.body.RAW_LEAST", 0 if raw else 1 << 40)
    with (
        # ~2 kB/s in many tiny reads: above the pace, never done in time
        DrippingRange(interval=0.0005) as server,
        make_client(pool_size=1, timeout=10 * HANG) as client,
        follow(client, server.url, credentials=Credentials(), what="f") as response,
    ):
        set_body_deadline(response, 0.5)
        started = time.monotonic()
        with pytest.raises(httpx2.ReadTimeout):
            for _ in read_body(response, promised(response, what="f"), encoded=False, what="f"):
                pass
        # the body deadline fired: not the timeout (10 x HANG)
        assert time.monotonic() - started < HANG


def test_the_raw_read_takes_over_exactly_where_the_parser_stopped(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The raw reader's one assumption about httpcore2 and h11: the first body chunk is everything
    the parser read past the headers. Headers and most of the body arrive in one write here, so the
    parser holds a lot; a library that read ahead or kept some back would splice the bytes, and this
    fails."""
    monkeypatch.setattr("mdl.transfer.body.RAW_LEAST", 0)
    body = make_data(3_000_000, seed=41)
    with (
        DrippingRange(body=body, head=len(body) - 3, interval=0.01) as server,
        make_client(pool_size=1, timeout=10) as client,
        follow(client, server.url, credentials=Credentials(), what="f") as response,
    ):
        span = promised(response, what="f")
        assert raw_socket(response, span) is not None
        chunks = [bytes(chunk) for chunk in read_body(response, span, encoded=False, what="f")]
    assert b"".join(chunks) == body
    assert len(chunks) >= 2  # the parser's share, then the socket's


@pytest.mark.realtime
def test_abort_wakes_a_read_waiting_on_a_tls_connection(tmp_path: Path) -> None:
    """Ctrl-C shuts every connection down: over TLS too, where the TLS socket object replaced the
    TCP one.
    """
    ca = ScratchCA()
    server = TlsCdn(ca).start()
    try:
        server.add_file("/w.bin", DATA)
        # headers and a little, then silence until the server stops
        server.faults.add(Fault.stall(after_bytes=1000))
        environ = {"SSL_CERT_FILE": str(ca.write_bundle(tmp_path / "ca.pem"))}
        transport = NetTransport(timeout=10 * HANG, environ=environ, pool_size=1)
        with (
            make_client(pool_size=1, timeout=10 * HANG, transport=transport) as client,
            follow(client, f"{server.url}/w.bin", credentials=Credentials(), what="f") as response,
        ):
            threading.Timer(0.3, transport.abort).start()
            started = time.monotonic()
            with pytest.raises(httpx2.TransportError):
                response.read()
            # woken by the abort, not by the timeout (10 x HANG)
            assert time.monotonic() - started < HANG
    finally:
        server.stop()


@pytest.mark.slow
@pytest.mark.realtime
@pytest.mark.parametrize("raw", [False, True])
def test_closing_a_connection_wakes_a_read_waiting_on_it(
    raw: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stream's failure closes its file's other answers from its own thread (and Ctrl-C may find a
    socket already closed): closing must wake a read another thread waits in, whichever reader, not
    leave it waiting for data."""
    monkeypatch.setattr("mdl.transfer.body.RAW_LEAST", 0 if raw else 1 << 62)
    with CdnServer() as cdn, make_client(pool_size=1, timeout=10 * HANG) as client:
        url = cdn.add_file("/w.bin", make_data(3_000_000, seed=53))
        # headers and a little, then silence until the server stops
        cdn.faults.add(Fault.stall(after_bytes=1000))
        with follow(
            client, url, credentials=Credentials(), what="f", headers={"Range": "bytes=0-"}
        ) as response:
            span = promised(response, what="f")
            assert (raw_socket(response, span) is not None) == raw
            stream = response.extensions["network_stream"]
            assert isinstance(stream, WireStream)
            failures: list[BaseException] = []

            def read() -> None:
                try:
                    for _ in read_body(response, span, encoded=False, what="f"):
                        pass
                except BaseException as exc:  # handed to the test thread
                    failures.append(exc)

            reader = threading.Thread(target=read)
            reader.start()
            # the server sent its bytes and went silent (a read not yet begun finds the stream
            # closed: the same end)
            wait_for(
                lambda: any(r.error == "fault:stall" for r in list(cdn.log)),
                what="the server silent",
            )
            stream.close()
            reader.join(HANG)
            assert not reader.is_alive()  # woken by the close, not by the timeout (10 x HANG)
            assert failures  # the body was cut short: an error, never a quiet end


def test_ctrl_c_can_list_the_connections_while_threads_open_more() -> None:
    """Ctrl-C lists the open connections while streams are still connecting: the list never fails
    for that (a bare WeakSet raises "Set changed size during iteration", and the interrupt became an
    internal error)."""

    class Opened:  # stands for a WireStream: the set only keeps weak references to what it is given
        pass

    live = LiveStreams()
    kept: list[Any] = []
    stop = threading.Event()

    # connections open and close (a closed one leaves the set) while Ctrl-C lists them
    def connect() -> None:
        recent: deque[Any] = deque(maxlen=200)
        while not stop.is_set():
            recent.append(Opened())
            live.add(recent[-1])
        kept.extend(recent)

    openers = [threading.Thread(target=connect) for _ in range(4)]
    for thread in openers:
        thread.start()
    try:
        for _ in range(3000):
            live.snapshot()
    finally:
        stop.set()
        for thread in openers:
            thread.join()
    listed = live.snapshot()  # every connection still open, and only those
    assert len(listed) == len(kept) > 0 and {id(s) for s in listed} == {id(s) for s in kept}


def test_a_worker_asks_on_its_own_connection_and_leaves_none_behind(cdn: CdnServer) -> None:
    """Inside ``own_connections`` a thread's requests share one connection of its own: a worker
    after it (another thread) and the run's pool (outside any block) never get it, and it is closed
    when its block ends."""
    url = cdn.add_file("/f.bin", DATA)
    with make_client(pool_size=4, timeout=10) as client:

        def worker() -> None:
            with own_connections():
                for _ in range(3):
                    assert client.get(url).content == DATA

        for _ in range(2):  # one after the other: the first's connection is idle, then closed
            thread = threading.Thread(target=worker)
            thread.start()
            thread.join(HANG)
        assert client.get(url).content == DATA
    connections = [record.connection for record in cdn.log.records(method="GET")]
    first, second, shared = connections[:3], connections[3:6], connections[6:]
    assert len(set(first)) == len(set(second)) == 1
    assert len({first[0], second[0], shared[0]}) == 3


def test_an_https_url_on_the_plain_route_is_refused_not_sent_with_the_process_s_cas() -> None:
    """The direct http:// pool has no TLS context (a tiny get pays none): an https:// request that
    ever reached it would get httpcore2's default context (the process's CAs, not the run's), so
    it is refused before any connection."""
    plain = NetTransport(timeout=5, environ={}).default
    with pytest.raises(httpx2.UnsupportedProtocol, match="no TLS route"):
        plain.handle_request(httpx2.Request("GET", "https://127.0.0.1:9/x"))


class _Socket(httpcore2.NetworkStream):
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock

    def get_extra_info(self, info: str) -> Any:
        return self.sock if info == "socket" else None

    def close(self) -> None:
        self.sock.close()


def test_a_header_block_is_read_as_the_parser_asks_its_body_a_mib_at_a_time() -> None:
    # what a header read brings past the head goes through the parser, copied three times: on
    # loopback a MiB a request (~1 ms of CPU) when the raw reader would take it at once
    mine, theirs = socket.socketpair()
    with mine, theirs:
        for sock in (mine, theirs):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        theirs.sendall(bytes(200_000))  # all of it waits in the socket
        stream = WireStream(_Socket(mine), layers=0, live=LiveStreams())
        with _header_budget(10):
            assert len(stream.read(65536)) == 65536
        assert len(stream.read(65536)) == 200_000 - 65536


class _Kept(WireStream):
    """A kept connection that counts how often it is polled (readable: the server closed it)."""

    def __init__(self, *, readable: bool = False) -> None:
        self.polled, self.closed, self.readable = 0, False, readable
        self._sock = None  # (plain: no TLS buffer to look at)

    def get_extra_info(self, info: str) -> Any:
        assert info == "is_readable"
        self.polled += 1
        return self.readable

    def close(self) -> None:
        self.closed = True


def test_a_kept_connection_taken_is_the_only_one_polled() -> None:
    # (a poll of every kept connection, under the backend's lock, at every new connection)
    backend, origin = WireBackend(LiveStreams(), keep=True), ("127.0.0.1", 80)
    kept = [_Kept() for _ in range(8)]
    gone = _Kept(readable=True)
    for stream in [*kept, gone]:
        backend._put(origin, stream)
    assert backend._take(origin) is kept[-1]  # the newest good one: the closed one closed first
    assert gone.closed and gone.polled == 1
    assert [k.polled for k in kept] == [0] * 7 + [1]
    assert backend._take(("127.0.0.1", 81)) is None
    assert sum(k.polled for k in kept) == 1 and not any(k.closed for k in kept)


def test_a_kept_tls_connection_whose_tls_buffer_holds_stray_bytes_is_not_reused(
    tmp_path: Path,
) -> None:
    """Bytes no request asked for, decrypted into TLS's buffer with the last ones read, leave the
    socket itself idle (a poll sees nothing): such a connection is closed, never sent the next
    request (those bytes would become the next answer's)."""
    ca = ScratchCA()
    context = ssl.create_default_context(cafile=str(ca.write_bundle(tmp_path / "ca.pem")))
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def serve() -> None:
        conn, _ = listener.accept()
        with ca.server_context().wrap_socket(conn, server_side=True) as tls:
            tls.sendall(b"end of the last body" + b"HTTP/1.1 206 stray" * 50)  # one TLS record
            tls.recv(1)  # (till the client closes)

    server = threading.Thread(target=serve, daemon=True)
    server.start()
    try:
        backend, origin = WireBackend(LiveStreams(), keep=True), ("127.0.0.1", port)
        plain = httpcore2.SyncBackend().connect_tcp("127.0.0.1", port, timeout=HANG)
        inner = plain.start_tls(context, server_hostname="127.0.0.1", timeout=HANG)
        stream = WireStream(inner, layers=1, live=LiveStreams())
        view = memoryview(bytearray(20))
        assert stream.read_into(view, HANG) == 20 and view == b"end of the last body"
        wait_for(lambda: stream.holds_bytes)
        assert not stream.get_extra_info("is_readable")  # the socket has given TLS all it had
        backend._put(origin, stream)
        assert backend._take(origin) is None
        assert stream.get_extra_info("socket").fileno() == -1  # closed
    finally:
        listener.close()
        server.join(HANG)
