"""Deadlines for whole requests (issue 23): a server that drips its answer cannot keep a request
alive for ever.

``--timeout`` bounds the time to a complete header block, a Hub API reply must be whole within its
deadline, and a body slower than the minimum pace for the stall timeout is a stall; all against a
raw dripping server on 127.0.0.1.
"""

from __future__ import annotations

import ast
import socket
import time
from pathlib import Path

import httpcore2
import httpx2
import pytest
from hostile import RawServer
from runfixtures import HANG, mdl, use_catalog
from servers import CdnServer, make_data

from mdl.errors import NetworkError
from mdl.sources.hub import Hub
from mdl.transfer.connection import set_read_timeout
from mdl.transfer.http import Credentials, RetryPolicy, follow, make_client

ROOT = Path(__file__).resolve().parents[2]


class DrippingServer(RawServer):
    """Answers every request on 127.0.0.1 slowly: its header block one byte per ``interval``
    (``headers``), or its headers at once and then ``chunk`` bytes of body per ``interval``
    (``body``)."""

    def __init__(
        self, mode: str, *, interval: float = 0.5, chunk: int = 1, length: int = 1_000_000
    ) -> None:
        super().__init__()
        self.mode, self.interval, self.chunk, self.length = mode, interval, chunk, length

    def answer(self, conn: socket.socket) -> None:
        if self.read_head(conn) is None:
            return
        headers = (
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length:"
            f" {self.length}\r\n\r\n"
        ).encode()
        body = b'{"sha": "' + b"0" * (self.length - 11) + b'"}'
        if self.mode == "headers":
            self.drip(conn, headers, 1, self.interval)
        else:
            conn.sendall(headers)
            self.drip(conn, body, self.chunk, self.interval)


@pytest.fixture
def no_sleep() -> RetryPolicy:
    return RetryPolicy(retries=1, sleep=lambda _: None)


@pytest.mark.slow
@pytest.mark.realtime
def test_dripping_headers_end_at_the_timeout_not_per_byte() -> None:
    with DrippingServer("headers") as server, make_client(pool_size=1, timeout=1) as client:
        started = time.monotonic()
        with (
            pytest.raises(NetworkError, match="did not answer within 1 s"),
            follow(client, f"{server.url}/f", credentials=Credentials(), what="m/f"),
        ):
            pass
        # one 1 s budget for the whole block (a byte a second: ~40 s)
        assert time.monotonic() - started < HANG


@pytest.mark.slow
@pytest.mark.realtime
def test_a_body_dripping_below_the_minimum_pace_is_a_stall() -> None:
    with (
        DrippingServer("body", interval=0.25, chunk=1) as server,
        make_client(pool_size=1, timeout=10 * HANG) as client,
        follow(client, f"{server.url}/f", credentials=Credentials(), what="m/f") as response,
    ):
        set_read_timeout(response, 1.0)
        started = time.monotonic()
        with pytest.raises(httpx2.ReadTimeout):
            for _ in response.iter_raw():
                pass
        # bytes kept coming every 0.25 s: a per-read timeout never fires
        assert time.monotonic() - started < HANG


@pytest.mark.slow
@pytest.mark.realtime
def test_a_slow_body_above_the_minimum_pace_is_not_a_stall() -> None:
    # 4 KiB every 0.25 s is ~16 KiB/s, above the 1 KiB/s floor: 4 s of it goes on untroubled at a 3
    # s stall timeout (each drip brings a whole window's due: only a drip late by 3 s, not a busy
    # machine, would look like a stall).
    with (
        DrippingServer("body", interval=0.25, chunk=4096, length=16 * 4096) as server,
        make_client(pool_size=1, timeout=10 * HANG) as client,
        follow(client, f"{server.url}/f", credentials=Credentials(), what="m/f") as response,
    ):
        set_read_timeout(response, 3.0)
        assert len(response.read()) == 16 * 4096


@pytest.mark.slow
@pytest.mark.realtime
def test_time_the_reader_spends_elsewhere_is_not_a_stall(cdn: CdnServer) -> None:
    """The pace counts time spent waiting on the network, so a slow consumer (--limit-rate) never
    stalls.
    """
    data = make_data(3_000_000, seed=5)
    url = cdn.add_file("/f.bin", data)
    with (
        make_client(pool_size=1, timeout=10 * HANG) as client,
        follow(client, url, credentials=Credentials(), what="m/f") as response,
    ):
        # long enough that a busy machine's slow loopback is no stall
        set_read_timeout(response, 2.0)
        got = b""
        for chunk in response.iter_raw(65536):
            got += chunk
            if len(got) < 400_000:
                # ~2.8 s of not reading: longer than the stall timeout, yet no wait on the network
                time.sleep(0.4)
        assert got == data


@pytest.mark.slow
@pytest.mark.realtime
def test_a_hub_reply_dripping_its_json_fails_naming_the_hub(no_sleep: RetryPolicy) -> None:
    # 2 kB/s passes the pace, but the reply must be whole within 3 timeouts: 100 kB at that speed is
    # not
    with (
        # whole: ~8 min a try
        DrippingServer("body", interval=0.1, chunk=200, length=1_000_000) as server,
        make_client(pool_size=1, timeout=0.5) as client,
    ):
        hub = Hub(server.url, None, client=client, retry=no_sleep)
        started = time.monotonic()
        with pytest.raises(
            NetworkError, match=f"the Hub at {server.url} sent its reply too slowly"
        ):
            hub.commit_of("org/tiny", repo_type="model", revision="main", what="tiny")
        # each try cut at its 1.5 s deadline, not at a per-read timeout
        assert 1.4 < time.monotonic() - started < HANG
        assert server.accepted == 2  # one retry, as for any Hub that does not answer


@pytest.mark.slow
@pytest.mark.realtime
@pytest.mark.parametrize(("mode", "chunk"), [("headers", 1), ("body", 1)])
def test_pull_against_a_dripping_hub_is_exit_5_naming_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mode: str, chunk: int
) -> None:

    # a byte well within each 0.3 s read
    with DrippingServer(mode, interval=0.1, chunk=chunk) as server:
        use_catalog(
            tmp_path, monkeypatch, '[models.snapshot]\nrepo = "org/tiny"\n', endpoint=server.url
        )
        started = time.monotonic()
        result = mdl("pull", "snapshot", "--timeout", "0.3")
        elapsed = time.monotonic() - started
    assert result.exit_code == 5, (result.stdout, result.stderr)
    assert f"the Hub at {server.url}" in result.stderr
    assert elapsed < HANG  # the drip is endless: ending at all is the deadline firing


def test_mdl_leaves_httpcore2_defaults_alone(cdn: CdnServer) -> None:
    """mdl reads up to 1 MiB per recv on its own streams only: huggingface_hub's client in the same
    process keeps httpcore2's defaults (no process-wide patch)."""
    before = httpcore2.HTTP11Connection.READ_NUM_BYTES
    data = make_data(8_000_000, seed=6)
    url = cdn.add_file("/big.bin", data)
    with (
        make_client(pool_size=1, timeout=10) as client,
        follow(client, url, credentials=Credentials(), what="m/f") as response,
    ):
        sizes = [len(chunk) for chunk in response.iter_raw()]
    assert sum(sizes) == len(data)
    assert before == httpcore2.HTTP11Connection.READ_NUM_BYTES
    assert max(sizes) > before  # ... while mdl's own reads are larger than httpcore2's


@pytest.mark.slow
def test_no_private_module_of_httpx2_or_httpcore2_is_imported() -> None:
    found = []
    for path in sorted((ROOT / "mdl").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
            found += [
                f"{path.relative_to(ROOT)}: {name}"
                for name in names
                if name.split(".")[0] in ("httpx2", "httpcore2", "h11")
                and any(part.startswith("_") for part in name.split(".")[1:])
            ]
    assert found == []


def test_a_kept_alive_connection_is_reused_after_an_ordinary_read(cdn: CdnServer) -> None:
    url = cdn.add_file("/small.bin", make_data(1000, seed=7))
    with make_client(pool_size=1, timeout=10) as client:
        streams = []
        for _ in range(3):
            with follow(client, url, credentials=Credentials(), what="m/f") as response:
                response.read()
                streams.append(response.extensions["network_stream"])
    assert streams[0] is streams[1] is streams[2]
