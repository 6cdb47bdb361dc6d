"""Every reply the Xet path reads whole (the read token, reconstructions v1 and v2) has a deadline
for the whole body and a size in proportion to what it describes: a CAS trickling a padded reply or
sending a huge one is left for the plain path, naming why; a real loopback server for the bytes on
the wire."""

from __future__ import annotations

import json
import socket
import threading
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest
from hostile import RawServer
from runfixtures import mdl, use_catalog
from servers import make_data
from xetserver import XetHubServer

from mdl.progress import Progress
from mdl.redact import Secrets
from mdl.sources.resolve import XetRef
from mdl.store.filesystem import DirSyncs
from mdl.transfer.http import Credentials, RetryPolicy, make_client
from mdl.xet._protocol import ReplyError, parse_reconstruction
from mdl.xet.failures import XetFallback
from mdl.xet.fetch import XetSource

WEIGHTS = "model.safetensors"
_HASH = "ab" * 32


class SlowCas(RawServer):
    """A Hub token endpoint and a CAS on 127.0.0.1 in one: ``slow`` ("token" or "reconstruction")
    answers its headers at once, then a padded JSON body ``chunk`` bytes per ``interval`` (above any
    stall floor, never whole in a few seconds); the other answers at once."""

    def __init__(
        self, slow: str, *, interval: float = 0.05, chunk: int = 2048, length: int = 10_000_000
    ) -> None:
        super().__init__()
        self.slow, self.interval, self.chunk, self.length = slow, interval, chunk, length
        self.asked: list[str] = []

    def answer(self, conn: socket.socket) -> None:
        head = self.read_head(conn)
        if head is None:
            return
        path = head.split(b" ", 2)[1].decode()
        self.asked.append(path)
        kind = "token" if "xet-read-token" in path else "reconstruction"
        if kind == self.slow:
            body = b'{"pad": "' + b"x" * (self.length - 12) + b'"}'
        else:
            body = json.dumps(
                {"accessToken": "xet_t", "exp": 4_000_000_000, "casUrl": self.url}
            ).encode()
        conn.sendall(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length:"
            b" %d\r\n\r\n" % len(body)
        )
        if kind != self.slow:
            conn.sendall(body)
            return
        self.drip(conn, body, self.chunk, self.interval)


def _source(client: httpx2.Client) -> XetSource:
    return XetSource(
        client,
        retry=RetryPolicy(retries=1, sleep=lambda _: None),
        progress=Progress(),
        cancel=threading.Event(),
        streams=lambda _size: 1,
        stall_timeout=None,
        hub=Credentials,
        secrets=Secrets(),
        dirs=DirSyncs(),
        recorded=lambda _model: [],
        bound=lambda _job, _xet: False,
    )


def _causes(exc: BaseException) -> Iterator[BaseException]:
    found: BaseException | None = exc
    while found is not None:
        yield found
        found = found.__cause__


@pytest.mark.realtime
@pytest.mark.parametrize("slow", ["token", "reconstruction"])
def test_a_trickling_reply_ends_at_the_whole_reply_deadline_and_falls_back(slow: str) -> None:
    """40 KiB/s keeps every read alive (the stall floor is 1 KiB/s), but 10 MB of it would take
    minutes: the reply must be whole within 3 read timeouts (4.5 s), as any Hub API reply, then the
    file goes to the plain path."""
    # no read waits 1.5 s, even loaded
    with SlowCas(slow) as cas, make_client(pool_size=2, timeout=1.5) as client:
        source = _source(client)
        with pytest.raises(XetFallback) as caught:
            source.reconstruction(
                XetRef(_HASH, f"{cas.url}/api/models/org/m/xet-read-token/main"),
                "m/f",
                size=1 << 30,
            )
    timeouts = [c for c in _causes(caught.value) if isinstance(c, httpx2.ReadTimeout)]
    assert timeouts, [repr(c) for c in _causes(caught.value)]
    assert "did not arrive in time" in str(timeouts[0])  # the deadline fired, not the stall pace
    asked = sum(slow == ("token" if "xet-read-token" in p else "reconstruction") for p in cas.asked)
    assert asked in (1, 2)  # one retry at most: the CAS's quick policy


def test_a_reply_bigger_than_its_file_needs_is_refused_naming_its_url() -> None:
    """A token reply past its 256 KiB cap (64000-character fields) is refused before it is read
    on.
    """
    with (
        SlowCas("token", interval=0.0, chunk=1 << 20, length=1_000_000) as cas,
        make_client(pool_size=2, timeout=5) as client,
        pytest.raises(XetFallback) as caught,
    ):
        _source(client).token(f"{cas.url}/api/models/org/m/xet-read-token/main", "m/f")
    assert f"the reply from {cas.url}/api/models/org/m/xet-read-token/main is longer than" in str(
        caught.value
    )


@pytest.fixture
def catalog(xet_hub: XetHubServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = use_catalog(tmp_path, monkeypatch, '[models.m]\nrepo = "org/m"\n', endpoint=xet_hub.url)
    monkeypatch.setenv("MDL_LOG_LEVEL", "debug")
    return path


@pytest.mark.slow
@pytest.mark.parametrize("v2", [True, False])
def test_a_reconstruction_padded_past_its_file_s_share_falls_back_naming_its_url(
    xet_hub: XetHubServer, catalog: Path, v2: bool
) -> None:
    """A 1 MiB file's reconstruction may be 64 KiB + 1 MiB / 8: a 300 kB one is refused (not read
    on), the plain path fetches the file."""
    data = make_data(1 << 20, seed=401)
    xet_hub.add_repo("org/m", {WEIGHTS: data})
    xf = xet_hub.xet_file("org/m", WEIGHTS)
    xet_hub.cas.v2_status = None if v2 else 404

    def padded(_version: int, reply: dict[str, Any]) -> object:
        return {**reply, "pad": "x" * 300_000}

    xet_hub.cas.rewrite = padded
    result = mdl("pull", "m")
    assert result.exit_code == 0, result.stderr
    assert (catalog.parent / "models" / "m" / WEIGHTS).read_bytes() == data
    version = 2 if v2 else 1
    log = (catalog.parent / "mdl.log").read_text()
    assert (
        f"the reply from {xet_hub.cas.url}/v{version}/reconstructions/{xf.hash} is longer than"
        " 196,608 bytes" in log
    )


def _dense_v2(n: int) -> bytes:
    """A v2 reply of ``n`` one-chunk terms over ``n`` ranges of one URL: the most values per byte
    a real reply has.
    """
    terms = [
        {"hash": _HASH, "range": {"start": i, "end": i + 1}, "unpacked_length": 65536}
        for i in range(n)
    ]
    ranges = [
        {
            "chunks": {"start": i, "end": i + 1},
            "bytes": {"start": 70_000 * i, "end": 70_000 * i + 69_999},
        }
        for i in range(n)
    ]
    reply = {
        "offset_into_first_range": 0,
        "terms": terms,
        "xorbs": {_HASH: [{"url": "https://c.test/x", "ranges": ranges}]},
    }
    return json.dumps(reply, separators=(",", ":")).encode()


@pytest.mark.slow
def test_parsing_a_reply_costs_a_few_times_its_size_not_ten() -> None:
    # (the ratio is the same at 2,000 terms as at 20,000: ~5.0; tracemalloc makes each cost)
    body = _dense_v2(2_000)
    tracemalloc.start()
    try:
        rec = parse_reconstruction(body, version=2)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(rec.terms) == 2_000
    assert peak < 6 * len(body), peak / len(body)


@pytest.mark.parametrize("pad", [b"[]", b"{}", b"0", b'""'])
def test_a_reply_padded_with_tiny_values_is_refused_before_it_is_parsed(pad: bytes) -> None:
    body = _dense_v2(10)[:-1] + b',"pad":[' + b",".join([pad] * 100_000) + b"]}"
    with pytest.raises(ReplyError, match="more values than a reply of its size holds"):
        parse_reconstruction(body, version=2)
