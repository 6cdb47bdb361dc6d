"""The Hub's resolve URL asked once per file, end to end through the CLI against the loopback Hub
and its CDN: a file fetched as parallel ranges asks it once, its redirect target shared by every
stream (each range still checked against the file's version); an expired target asks it once
more, for all streams; a fresh target refused too is the expired-URL error; a resume asks it
once; a failed first ask is every stream's, and none of them waits past Ctrl-C.

BIG (40 MB, above the engine's 32 MiB split threshold) goes over ``--connections 4``.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from pathlib import Path
from urllib.parse import urlencode

import pytest
from hypothesis import given
from hypothesis import strategies as st
from runfixtures import HANG, mdl, transfer_job
from servers import Fault, HubServer, RequestRecord, make_data

from mdl.errors import ExitCode, InterruptedByUserError
from mdl.progress import NullProgress
from mdl.transfer import scheduling
from mdl.transfer._state import DownloadState
from mdl.transfer._stream import PieceRequests, PieceStream
from mdl.transfer._target import lapses_at
from mdl.transfer.engine import Engine
from mdl.transfer.http import RetryPolicy, make_client
from mdl.transfer.job import EngineConfig
from mdl.transfer.scheduling import Piece, StreamStopped

MB = 1_000_000
BIG = make_data(40 * MB, seed=53)
CATALOG = '[models.big]\nrepo = "org/big"\n'
RESOLVE = "/org/big/resolve/"


@pytest.fixture
def dest(hub: HubServer, catalog: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    hub.add_repo("org/big", {"weights.bin": BIG})
    catalog.write_text(CATALOG)
    monkeypatch.setenv("MDL_RETRIES", "3")
    return tmp_path / "models"


def resolves(hub: HubServer) -> list[RequestRecord]:
    """Every GET the Hub saw on the file's resolve URL."""
    return hub.log.records(method="GET", path_prefix=RESOLVE)


def ranges(hub: HubServer) -> list[RequestRecord]:
    """Every GET the CDN saw for the file's blob."""
    return hub.cdn.log.records(method="GET", path_prefix="/blobs/")


def pull_big(dest: Path) -> None:
    result = mdl("pull", "big", "--connections", "4")
    assert result.exit_code == 0, result.stderr
    assert hashlib.sha256((dest / "big" / "weights.bin").read_bytes()).digest() == (
        hashlib.sha256(BIG).digest()
    )


def test_parallel_ranges_ask_the_resolve_once_and_every_range_goes_to_the_cdn(
    hub: HubServer, dest: Path
) -> None:
    pull_big(dest)
    assert len(resolves(hub)) == 1, [r.path for r in resolves(hub)]
    gets = ranges(hub)
    # parallel ranges, on connections of their own
    assert len({g.connection for g in gets}) >= 2
    assert all(g.status == 206 and g.range for g in gets)
    # the Hub redirected: it sent no byte of the file
    assert [r.status for r in resolves(hub)] == [302]


def test_an_expired_target_asks_the_resolve_once_more_for_every_stream(
    hub: HubServer, dest: Path
) -> None:
    # three ranges pass, then every signed URL issued so far expires (the fourth's too)
    fault = hub.cdn.faults.add(Fault.expire_urls(path_prefix="/blobs/", skip=3))
    pull_big(dest)
    assert fault.hits == 1
    assert any(g.status == 403 for g in ranges(hub))
    assert len(resolves(hub)) == 2
    fresh = [g for g in ranges(hub) if g.status == 206 and g.query.get("gen") == "2"]
    assert fresh, "no range was fetched with the re-signed URL"


@pytest.mark.slow
@pytest.mark.parametrize("lapsed", [1, 3], ids=["first-target", "every-target"])
def test_a_target_whose_query_says_it_expired_is_renewed_before_any_range_is_refused(
    hub: HubServer, dest: Path, monkeypatch: pytest.MonkeyPatch, lapsed: int
) -> None:
    # The Hub's first targets say (CloudFront's way) that they expired a minute ago; the CDN still
    # takes them. One is asked again, once; a fresh one expired too says this clock is ahead of the
    # signer's: no query is believed after it (not one more ask per range: a range cut short is
    # asked again at the same target).
    sign, now = hub.cdn.signed_url, int(time.time())
    issued: list[str] = []

    def signed_url(path: str, *, expires: int = 3600) -> str:
        url = sign(path, expires=expires)
        # each its own (a second apart from one reading of the clock, not from the clock at each
        # signing: one a second later would name the same second): the ranges tell which they used
        ago = f"&Expires={now - 60 - len(issued)}" if len(issued) < lapsed else ""
        issued.append(url + ago)
        return issued[-1]

    monkeypatch.setattr(hub.cdn, "signed_url", signed_url)
    # no stream steals a tail (which streams end first is the machine's pace): a range each
    monkeypatch.setattr(scheduling, "MIN_STEAL", len(BIG))
    hub.cdn.faults.add(Fault.reset(after_bytes=MB, path_prefix="/blobs/", skip=2))
    pull_big(dest)
    assert len(resolves(hub)) == 2
    assert len(set(issued)) == 2, "the ranges cannot tell the targets apart"
    first = [g for g in ranges(hub) if g.path.endswith(issued[0].rsplit("/", 1)[1])]
    assert len(first) == 1, "a stream other than the one sent there used the expired target"
    assert all(g.status == 206 for g in ranges(hub))
    assert len(ranges(hub)) == 5  # one each, and the one cut short again


@pytest.mark.parametrize(
    ("query", "lapses"),
    [
        ("X-Amz-Date=20260101T000000Z&X-Amz-Expires=3600&X-Amz-Signature=s", 1767229200.0),
        ("x-goog-date=20260101T000000Z&x-goog-expires=60&x-goog-signature=s", 1767225660.0),
        ("Expires=1767225600&Signature=s&Key-Pair-Id=k", 1767225600.0),
        # the stand-in CDN's: a lifetime without a signing date says nothing
        ("X-Amz-Signature=s&X-Amz-Expires=3600&gen=1", None),
        ("X-Amz-Date=yesterday&X-Amz-Expires=3600", None),
        ("X-Amz-Date=20260101T000000Z&X-Amz-Expires=soon", None),
        ("Expires=Thu%2C%2001%20Jan%202026", None),
        ("", None),
    ],
)
def test_when_a_presigned_target_lapses_is_read_from_its_query(
    query: str, lapses: float | None
) -> None:
    assert lapses_at(f"https://cdn.example/blobs/abc?{query}") == lapses


def test_a_fresh_target_refused_too_is_the_expired_url_error(hub: HubServer, dest: Path) -> None:
    # after two ranges, every request meets an expired signature: the fresh target's too
    hub.cdn.faults.add(Fault.expire_urls(path_prefix="/blobs/", skip=2, times=None))
    result = mdl("pull", "big", "--connections", "4")
    assert result.exit_code == ExitCode.AUTH, result.stderr
    assert "the link has expired or was revoked" in result.stderr
    assert "Request has expired" in result.stderr
    assert len(resolves(hub)) == 2, "the resolve was asked more than once for the expiry"
    assert not (dest / "big" / "weights.bin").exists()


def test_a_resumed_file_asks_the_resolve_once(
    hub: HubServer, dest: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MDL_RETRIES", "0")
    # one range passes, the others are cut: a partial download with a record is kept
    hub.cdn.faults.add(Fault.reset(after_bytes=3 * MB, path_prefix="/blobs/", skip=1, times=None))
    first = mdl("pull", "big", "--connections", "4")
    assert first.exit_code == 5, first.stderr
    (record,) = (dest / ".mdl" / "partial").glob("*.part.json")
    kept = sum(done for _, _, done in json.loads(record.read_text())["pieces"])
    assert kept > 0
    hub.cdn.faults.clear()
    hub.log.clear()
    hub.cdn.log.clear()
    pull_big(dest)
    assert len(resolves(hub)) == 1
    # resumed, not fetched again: the kept bytes did not come twice
    assert hub.cdn.log.body_bytes(method="GET", status=206) <= len(BIG) - kept + 4 * 64 * 1024


@pytest.mark.slow
def test_a_failed_first_ask_is_every_streams_and_the_next_ask_serves_them_all(
    hub: HubServer, dest: Path
) -> None:
    hub.faults.add(Fault.http_error(503, retry_after=0, path_prefix=RESOLVE))
    pull_big(dest)
    assert [r.status for r in resolves(hub)] == [503, 302]


def test_a_refused_first_ask_fails_every_stream_without_asking_again(
    hub: HubServer, dest: Path
) -> None:
    hub.faults.add(Fault.http_error(404, path_prefix=RESOLVE, times=None))
    result = mdl("pull", "big", "--connections", "4")
    assert result.exit_code == ExitCode.NOT_FOUND, result.stderr
    assert len(resolves(hub)) == 1
    assert ranges(hub) == []


@pytest.mark.slow
@pytest.mark.parametrize("stop", ["cancel", "stop"])
def test_a_stream_waiting_for_the_resolve_heeds_ctrl_c_and_a_failed_sibling(
    hub: HubServer, dest: Path, tmp_path: Path, stop: str
) -> None:
    """Another stream's ask of the resolve URL never answers: the waiting one ends on Ctrl-C
    (``cancel``) or when a sibling failed for good (``stop``), within the wait's step."""
    url = hub.file_url("org/big", "weights.bin")
    job = transfer_job(tmp_path, url, BIG, renewable=True)
    job.part_path.parent.mkdir(parents=True)
    fd = os.open(job.part_path, os.O_RDWR | os.O_CREAT)
    config = EngineConfig(connections=2, retry=RetryPolicy(retries=0))
    try:
        state = DownloadState(job, fd, [Piece(0, MB), Piece(MB, len(BIG))], None)
        state.multi = True
        state.target.start(url, shared=True)
        state.target.aim(None)  # asked by a stream that never hears back
        with make_client(timeout=5, pool_size=2) as client:
            engine = Engine(client, config, progress=NullProgress(), cancel=threading.Event())
            raised: list[BaseException] = []

            def wait() -> None:
                try:
                    PieceStream(PieceRequests(engine, state, state.pieces[1])).run()
                except BaseException as exc:  # what ended the stream
                    raised.append(exc)

            waiter = threading.Thread(target=wait, daemon=True)
            waiter.start()
            waiter.join(0.3)
            assert waiter.is_alive(), "it did not wait for the other stream's ask"
            (engine.cancel if stop == "cancel" else state.stop).set()
            waiter.join(HANG)
            assert not waiter.is_alive()
    finally:
        os.close(fd)
    expected = InterruptedByUserError if stop == "cancel" else StreamStopped
    assert [type(e) for e in raised] == [expected]
    assert resolves(hub) == [], "it asked the resolve URL itself while another stream did"


@given(
    st.dictionaries(
        st.sampled_from(
            ["X-Amz-Date", "X-Amz-Expires", "x-goog-date", "x-goog-expires", "Expires"]
        ),
        st.text(max_size=40) | st.from_regex(r"[0-9]{1,5000}", fullmatch=True),
    )
)
def test_any_query_gives_a_time_or_none_and_never_raises(query: dict[str, str]) -> None:
    # a hostile CDN's target ('²' is a digit to str.isdigit, not to int; 5,000 digits overflow int)
    url = "https://cdn.example/blobs/abc?" + urlencode(query)
    lapses_at.cache_clear()
    assert lapses_at(url) is None or isinstance(lapses_at(url), float | int)
