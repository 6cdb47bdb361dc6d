"""Reliability under faults, end to end through the CLI against the loopback Hub and its CDN.

Every case injects one kind of misbehaviour (tests/servers.py `Fault`), runs `mdl pull` once, checks
the exit code and the final bytes, and then reads the servers' request logs for what the fault
proves: where a resume started, how long a Retry-After was honoured, that an expired URL was
resolved again at the Hub, and so on.

Two sizes: SMALL (12 MB) goes over one stream; BIG (40 MB, above the engine's 32 MiB split
threshold) is fetched as parallel ranges with `--connections 4`.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import Counter
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import pytest
from clocks import FakeClock
from runfixtures import HANG, mdl
from servers import Fault, HubServer, RequestRecord, make_data
from typer.testing import Result

from mdl.transfer.http import RetryPolicy
from mdl.units import human_size

MB = 1_000_000
SMALL = make_data(12 * MB, seed=21)
BIG = make_data(40 * MB, seed=22)
CONFIG = b'{"hidden_size": 8}'
# A little slack for "resumed from about where it broke": the client may not have written the very
# last chunk.
SLACK = 256 * 1024

CATALOG = """
[models.one]
repo = "org/one"

[models.big]
repo = "org/big"
"""


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass
class World:
    hub: HubServer
    dest: Path
    catalog: Path
    tmp: Path

    def blob_gets(self) -> list[RequestRecord]:
        """Every GET the CDN saw for an LFS blob, in arrival order."""
        return self.hub.cdn.log.records(method="GET", path_prefix="/blobs/")

    def resolves(self, repo: str, path: str) -> list[RequestRecord]:
        """Every GET the Hub saw on the file's resolve URL."""
        return [
            r
            for r in self.hub.log.records(method="GET", path_prefix=f"/{repo}/resolve/")
            if r.url_path.endswith(path)
        ]

    def partial_dir(self) -> Path:
        return self.dest / ".mdl" / "partial"

    def leftovers(self) -> list[str]:
        """Partial downloads, resume records and temp files mdl left behind."""
        folder = self.partial_dir()
        return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


@pytest.fixture
def world(hub: HubServer, catalog: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> World:
    hub.add_repo("org/one", {"config.json": CONFIG, "model.safetensors": SMALL})
    hub.add_repo("org/big", {"weights.bin": BIG})
    catalog.write_text(CATALOG)
    dest = tmp_path / "models"
    monkeypatch.setenv("MDL_RETRIES", "3")
    return World(hub, dest, catalog, tmp_path)


def range_start(record: RequestRecord) -> int:
    """The first byte a request asked for (0 without a Range header)."""
    value = record.range
    if value is None:
        return 0
    return int(value.removeprefix("bytes=").split("-", 1)[0])


def assert_one_ok(world: World, result: Result) -> None:
    assert result.exit_code == 0, result.stderr
    assert (world.dest / "one" / "model.safetensors").read_bytes() == SMALL
    assert (world.dest / "one" / "config.json").read_bytes() == CONFIG
    assert world.leftovers() == []


def assert_big_ok(world: World, result: Result) -> None:
    assert result.exit_code == 0, result.stderr
    assert (world.dest / "big" / "weights.bin").read_bytes() == BIG
    assert world.leftovers() == []


# -- resets: keep what arrived, resume from it
# ---------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("rst", [False, True], ids=["fin", "rst"])
def test_reset_mid_body_resumes_from_the_bytes_received(world: World, rst: bool) -> None:
    fault = world.hub.cdn.faults.add(
        Fault.reset(after_bytes=5 * MB, rst=rst, path_prefix="/blobs/")
    )
    result = mdl("pull", "one")
    assert_one_ok(world, result)
    assert fault.hits == 1
    gets = world.blob_gets()
    assert [g.fault for g in gets] == ["reset", None]
    cut, resumed = gets
    assert cut.bytes_sent == 5 * MB and not cut.complete
    # The resume asks for the rest, from (about) where the cut happened: nothing received is fetched
    # again. An RST may throw away what the kernel had not yet delivered, so only a FIN makes the
    # bound tight.
    low = 5 * MB - SLACK if not rst else 1
    assert low <= range_start(resumed) <= 5 * MB, resumed.range
    assert resumed.status == 206 and resumed.complete
    # Only what never arrived is fetched again.
    lost = cut.bytes_sent - range_start(resumed)
    assert world.hub.cdn.log.body_bytes(method="GET") == len(SMALL) + lost


def test_reset_in_one_of_the_parallel_ranges_resumes_that_range(world: World) -> None:
    # skip=2: two ranges pass (no locate first: the Hub names the sha256), the third range is cut
    # after 1.5 MB.
    fault = world.hub.cdn.faults.add(
        Fault.reset(after_bytes=1_500_000, path_prefix="/blobs/", skip=2)
    )
    result = mdl("pull", "big", "--connections", "4")
    assert_big_ok(world, result)
    assert fault.hits == 1
    gets = world.blob_gets()
    cut = next(g for g in gets if g.fault == "reset")
    start = range_start(cut)
    end = int((cut.range or "").rsplit("-", 1)[1])
    later = [g for g in gets[gets.index(cut) + 1 :] if start < range_start(g) <= end]
    assert len(later) == 1, [g.range for g in gets]
    assert start + 1_500_000 - SLACK <= range_start(later[0]) <= start + 1_500_000
    # the same piece, not a new layout
    assert later[0].range == f"bytes={range_start(later[0])}-{end}"
    assert world.hub.cdn.log.body_bytes(method="GET") <= len(BIG) + SLACK


@pytest.mark.slow
def test_resets_on_every_range_still_finish_within_the_retries(world: World) -> None:
    # The first four range requests (no locate before them) are each cut after 1 MB: every stream
    # resumes.
    world.hub.cdn.faults.add(Fault.reset(after_bytes=1 * MB, path_prefix="/blobs/", times=4))
    result = mdl("pull", "big", "--connections", "4")
    assert_big_ok(world, result)
    assert sum(1 for g in world.blob_gets() if g.fault == "reset") == 4
    assert world.hub.cdn.log.body_bytes(method="GET") <= len(BIG) + 4 * SLACK


# -- retryable statuses: 503 / 429 with Retry-After, other 5xx and 408
# -----------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("status", [503, 429])
def test_retry_after_is_honoured_and_received_bytes_are_kept(
    world: World, status: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The run's retries wait on a clock of the test's (tests/clocks.py), which the CDN's log
    reads too: the wait said is the wait kept, on any machine."""
    clock = FakeClock()
    virtual = partial(RetryPolicy, clock=clock, sleep=clock.sleep, virtual=True)
    monkeypatch.setattr("mdl.download.session.RetryPolicy", virtual)
    world.hub.cdn.clock = clock
    world.hub.cdn.faults.add(Fault.reset(after_bytes=4 * MB, path_prefix="/blobs/"))
    world.hub.cdn.faults.add(Fault.http_error(status, retry_after=1, path_prefix="/blobs/"))
    started = clock()
    result = mdl("pull", "one")
    assert_one_ok(world, result)
    assert clock() - started >= 1.0
    gets = world.blob_gets()
    assert [g.status for g in gets] == [200, status, 206]
    refused, resumed = gets[1], gets[2]
    # The server said "Retry-After: 1": the next try came no sooner.
    assert resumed.time - refused.time >= 0.95
    # Both tries after the cut ask for the rest only: the 4 MB received are kept across the wait.
    assert 4 * MB - SLACK <= range_start(refused) == range_start(resumed) <= 4 * MB


@pytest.mark.slow
@pytest.mark.parametrize("status", [500, 502, 504, 408])
def test_other_transient_statuses_are_retried(world: World, status: int) -> None:
    world.hub.cdn.faults.add(Fault.http_error(status, path_prefix="/blobs/"))
    result = mdl("pull", "one")
    assert_one_ok(world, result)
    assert [g.status for g in world.blob_gets()] == [status, 200]


def test_503_on_parallel_ranges_is_retried_per_range(world: World) -> None:
    # One range passes (no locate first), the next three are refused once each.
    world.hub.cdn.faults.add(
        Fault.http_error(503, retry_after=0, path_prefix="/blobs/", skip=1, times=3)
    )
    result = mdl("pull", "big", "--connections", "4")
    assert_big_ok(world, result)
    assert sum(1 for g in world.blob_gets() if g.status == 503) == 3
    assert world.hub.cdn.log.body_bytes(method="GET") <= len(BIG) + SLACK


@pytest.mark.slow
def test_hub_api_503_is_retried(world: World) -> None:
    world.hub.faults.add(Fault.http_error(503, path_prefix="/api/models/"))
    result = mdl("pull", "one")
    assert_one_ok(world, result)
    api = world.hub.log.records(path_prefix="/api/models/org/one")
    assert [r.status for r in api[:2]] == [503, 200]
    assert api[0].url_path == api[1].url_path
    assert api[1].time - api[0].time >= 0.95  # Retry-After: 1


@pytest.mark.slow
def test_hub_resolve_429_is_retried(world: World) -> None:
    world.hub.faults.add(
        Fault.http_error(429, retry_after=0, path_prefix="/org/one/resolve/", times=2)
    )
    result = mdl("pull", "one")
    assert_one_ok(world, result)
    statuses = [r.status for r in world.resolves("org/one", "model.safetensors")]
    assert (
        statuses.count(429)
        + [r.status for r in world.resolves("org/one", "config.json")].count(429)
        == 2
    )


# -- stalls: dropped and resumed without spending a retry
# ---------------------------------------------


@pytest.mark.slow
def test_stall_is_dropped_and_resumed_without_spending_a_retry(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MDL_RETRIES", "0")  # a stall must not need a retry at all
    # The stall outlasts HANG: only the stall timeout can end this run within it.
    world.hub.cdn.faults.add(
        Fault.stall(after_bytes=4 * MB, seconds=2 * HANG, path_prefix="/blobs/")
    )
    started = time.monotonic()
    result = mdl("pull", "one", "--stall-timeout", "1")
    elapsed = time.monotonic() - started
    assert_one_ok(world, result)
    assert 1.0 <= elapsed < HANG, elapsed
    stalled, resumed = world.blob_gets()
    assert stalled.fault == "stall"
    assert 4 * MB - SLACK <= range_start(resumed) <= 4 * MB
    assert resumed.time - stalled.time >= 0.9  # it waited for the stall timeout, then resumed


@pytest.mark.slow
def test_stall_in_one_parallel_range_is_resumed(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MDL_RETRIES", "0")
    # One range passes (no locate first), the next two go silent after 1 MB.
    world.hub.cdn.faults.add(
        Fault.stall(after_bytes=1 * MB, seconds=20, path_prefix="/blobs/", skip=1, times=2)
    )
    result = mdl("pull", "big", "--connections", "4", "--stall-timeout", "1")
    assert_big_ok(world, result)
    gets = world.blob_gets()
    stalled = [g for g in gets if g.fault == "stall"]
    assert len(stalled) == 2
    for cut in stalled:
        start = range_start(cut)
        assert any(start + 1 * MB - SLACK <= range_start(g) <= start + 1 * MB for g in gets), [
            g.range for g in gets
        ]


# -- a 200 to a range request: restart that file cleanly as one stream
# ----------------------------------


@pytest.mark.slow
def test_full_200_to_a_resume_restarts_the_file_from_zero(world: World) -> None:
    world.hub.cdn.faults.add(Fault.reset(after_bytes=3 * MB, path_prefix="/blobs/"))
    world.hub.cdn.faults.add(Fault.full_body(path_prefix="/blobs/"))
    result = mdl("pull", "one")
    assert_one_ok(world, result)
    gets = world.blob_gets()
    assert [(g.status, g.fault) for g in gets] == [(200, "reset"), (200, "full_body")]
    # asked for a range, took the whole body from byte 0
    assert gets[1].range is not None and gets[1].complete


# No locate first (the Hub names the sha256): the first range to arrive, or the third (test_engine
# holds the locate answered whole, where no hash spares it).
@pytest.mark.slow
@pytest.mark.parametrize("skip", [0, 2], ids=["on-the-first-range", "on-a-later-range"])
def test_full_200_to_parallel_ranges_restarts_as_one_stream(world: World, skip: int) -> None:
    world.hub.cdn.faults.add(Fault.full_body(path_prefix="/blobs/", skip=skip))
    result = mdl("pull", "big", "--connections", "4")
    assert_big_ok(world, result)
    gets = world.blob_gets()
    (whole,) = [g for g in gets if g.fault == "full_body"]
    # the whole answer is read on as the one stream, from zero: never asked for again (issue 86)
    assert whole.status == 200 and whole.complete and whole.bytes_sent == len(BIG)
    assert [g for g in gets if g.range is None] == [], [(g.range, g.status) for g in gets]


# -- signed CDN URLs that expire: re-resolve at the Hub and continue
# -------------------------------------


def test_expired_signed_urls_are_resolved_again_and_ranges_continue(world: World) -> None:
    # Three ranges go through (no locate first: the Hub names the sha256); then every signed URL
    # issued so far expires, the fourth's too.
    fault = world.hub.cdn.faults.add(Fault.expire_urls(path_prefix="/blobs/", skip=3))
    result = mdl("pull", "big", "--connections", "4")
    assert_big_ok(world, result)
    assert fault.hits == 1
    gets = world.blob_gets()
    assert any(g.status == 403 for g in gets)
    assert len(world.resolves("org/big", "weights.bin")) >= 2, (
        "the Hub was not asked for a fresh URL"
    )
    # Continued, not restarted: the ranges done before the expiry were not fetched again.
    assert world.hub.cdn.log.body_bytes(method="GET", status=206) <= len(BIG) + SLACK
    fresh = [g for g in gets if g.status == 206 and g.query.get("gen") == "2"]
    assert fresh, "no range was fetched with a re-signed URL"


def test_one_expiry_costs_one_resolve_per_stream_not_per_piece(world: World) -> None:
    # 40 MB over 2 connections: a piece each, each asked first at the Hub (no locate: it names the
    # sha256). The first range to reach the CDN expires every signed URL issued so far: it (and the
    # other stream's, if signed before) meets a 403: one resolve each at most, however many requests
    # follow.
    world.hub.cdn.faults.add(Fault.expire_urls(path_prefix="/blobs/"))
    result = mdl("pull", "big", "--connections", "2")
    assert_big_ok(world, result)
    refused = [g for g in world.blob_gets() if g.status == 403]
    assert 1 <= len(refused) <= 2, f"{len(refused)} requests went to the expired URL"
    # each stream's first request, one resolve each
    assert len(world.resolves("org/big", "weights.bin")) <= 2 + 2


def test_expired_url_after_a_reset_on_one_stream(world: World) -> None:
    world.hub.cdn.faults.add(Fault.reset(after_bytes=3 * MB, path_prefix="/blobs/"))
    world.hub.cdn.faults.add(Fault.expire_urls(path_prefix="/blobs/", skip=1))
    result = mdl("pull", "one")
    assert_one_ok(world, result)
    gets = world.blob_gets()
    assert [g.status for g in gets] == [200, 403, 206]
    assert range_start(gets[2]) >= 3 * MB - SLACK
    assert gets[2].query["gen"] == "2"
    assert len(world.resolves("org/one", "model.safetensors")) == 3


# -- the file changes upstream: start over, never splice
# --------------------------------------------------


def _interrupt(world: World, monkeypatch: pytest.MonkeyPatch, *args: str, skip: int) -> int:
    """Run a pull that is cut off for good (no retries) and keeps a partial download; returns its
    bytes.
    """
    monkeypatch.setenv("MDL_RETRIES", "0")
    world.hub.cdn.faults.add(
        Fault.reset(after_bytes=3 * MB, path_prefix="/blobs/", skip=skip, times=None)
    )
    first = mdl("pull", *args)
    assert first.exit_code == 5, first.stderr
    world.hub.cdn.faults.clear()
    monkeypatch.setenv("MDL_RETRIES", "3")
    states = list(world.partial_dir().glob("*.part.json"))
    assert len(states) == 1, world.leftovers()
    done = sum(d for _, _, d in json.loads(states[0].read_text())["pieces"])
    assert done > 0
    return done


@pytest.mark.slow
@pytest.mark.parametrize(
    ("model", "path", "old", "args", "skip"),
    [
        ("one", "model.safetensors", SMALL, ("one",), 0),
        # one range passes, the others are cut
        ("big", "weights.bin", BIG, ("big", "--connections", "4"), 1),
    ],
    ids=["one-stream", "parallel-ranges"],
)
def test_file_replaced_upstream_between_runs_starts_over(
    world: World,
    monkeypatch: pytest.MonkeyPatch,
    model: str,
    path: str,
    old: bytes,
    args: tuple[str, ...],
    skip: int,
) -> None:
    _interrupt(world, monkeypatch, *args, skip=skip)
    new = make_data(len(old), seed=99)  # same size: only the hash tells the versions apart
    world.hub.replace_file(f"org/{model}", path, new)
    world.hub.cdn.log.clear()
    result = mdl("pull", *args, "--json")
    assert result.exit_code == 0, result.stderr
    final = (world.dest / model / path).read_bytes()
    assert sha(final) == sha(new), "spliced or stale bytes"
    entry = next(f for f in json.loads(result.stdout)["files"] if f["path"] == path)
    assert entry["sha256"] == sha(new)
    gets = world.blob_gets()
    assert all(sha(new) in g.url_path for g in gets), (
        "asked the old blob for the rest of the old version"
    )
    assert world.hub.cdn.log.body_bytes(method="GET") >= len(new), (
        "did not fetch the new version whole"
    )
    assert world.leftovers() == []


@pytest.mark.slow
def test_direct_url_replaced_mid_download_gives_the_new_file_whole(world: World) -> None:
    cdn = world.hub.cdn
    old, new = SMALL, make_data(len(SMALL), seed=98)
    url = cdn.add_file("/files/lora.safetensors", old)
    world.catalog.write_text(f'[models.lora]\nfiles = [{{ url = "{url}" }}]\n')
    # probe (1), first stream cut after 4 MB (2); the object is replaced before the resume (3).
    cdn.faults.add(Fault.reset(after_bytes=4 * MB, path_prefix="/files/", skip=1))
    cdn.faults.add(
        Fault.call(
            lambda: cdn.add_file("/files/lora.safetensors", new), path_prefix="/files/", skip=2
        )
    )
    result = mdl("pull", "lora")
    assert result.exit_code == 0, result.stderr
    assert sha((world.dest / "lora" / "lora.safetensors").read_bytes()) == sha(new)
    resume = cdn.log.records(method="GET", path_prefix="/files/")[2]
    assert resume.if_range is not None, (
        "a resume must carry If-Range so a changed object comes back whole"
    )
    assert resume.status == 200
    assert world.leftovers() == []


@pytest.mark.slow
def test_direct_url_replaced_mid_download_by_another_size_starts_over(world: World) -> None:
    cdn = world.hub.cdn
    # neither sha256 nor size is pinned in the catalog
    new = make_data(len(SMALL) + 2 * MB, seed=96)
    url = cdn.add_file("/files/lora.safetensors", SMALL)
    world.catalog.write_text(f'[models.lora]\nfiles = [{{ url = "{url}" }}]\n')
    cdn.faults.add(Fault.reset(after_bytes=4 * MB, path_prefix="/files/", skip=1))
    cdn.faults.add(
        Fault.call(
            lambda: cdn.add_file("/files/lora.safetensors", new), path_prefix="/files/", skip=2
        )
    )
    result = mdl("pull", "lora")
    assert result.exit_code == 0, result.stderr
    assert sha((world.dest / "lora" / "lora.safetensors").read_bytes()) == sha(new)
    assert world.leftovers() == []


def test_direct_url_replaced_mid_download_then_rerun_transfers_nothing(world: World) -> None:
    cdn = world.hub.cdn
    new = make_data(len(SMALL), seed=98)
    url = cdn.add_file("/files/lora.safetensors", SMALL)
    world.catalog.write_text(f'[models.lora]\nfiles = [{{ url = "{url}" }}]\n')
    cdn.faults.add(Fault.reset(after_bytes=4 * MB, path_prefix="/files/", skip=1))
    cdn.faults.add(
        Fault.call(
            lambda: cdn.add_file("/files/lora.safetensors", new), path_prefix="/files/", skip=2
        )
    )
    assert mdl("pull", "lora").exit_code == 0
    cdn.log.clear()
    again = mdl("pull", "lora", "--json")
    assert again.exit_code == 0
    assert [f["action"] for f in json.loads(again.stdout)["files"]] == ["skipped"]
    assert cdn.log.body_bytes(method="GET") <= 1  # at most the probe's one byte


@pytest.mark.slow
def test_direct_url_replaced_between_parallel_ranges_restarts_whole(world: World) -> None:
    cdn = world.hub.cdn
    new = make_data(len(BIG), seed=97)
    url = cdn.add_file("/files/big.bin", BIG)
    world.catalog.write_text(f'[models.direct]\nfiles = [{{ url = "{url}" }}]\n')
    # the probe (it names the ETag: no locate) and three ranges; then the object changes: the last
    # range's If-Range no longer matches.
    cdn.faults.add(
        Fault.call(lambda: cdn.add_file("/files/big.bin", new), path_prefix="/files/", skip=4)
    )
    result = mdl("pull", "direct", "--connections", "4")
    assert result.exit_code == 0, result.stderr
    assert sha((world.dest / "direct" / "big.bin").read_bytes()) == sha(new)
    assert world.leftovers() == []


def test_restart_after_upstream_change_is_reported_as_downloaded(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    done = _interrupt(world, monkeypatch, "big", "--connections", "4", skip=1)
    dry = json.loads(mdl("pull", "big", "--dry-run", "--json").stdout)["files"][0]
    assert dry["action"] == "resume"
    # the bytes really on disk, not the preallocated size (in human units, as every size shown)
    assert dry["reason"] == f"{human_size(done)} already downloaded", dry["reason"]
    world.hub.replace_file("org/big", "weights.bin", make_data(len(BIG), seed=99))
    result = mdl("pull", "big", "--connections", "4", "--json")
    assert result.exit_code == 0
    assert json.loads(result.stdout)["files"][0]["action"] == "downloaded"


# -- one file's failure must not hurt the others in flight
# ---------------------------------------------------


@pytest.mark.slow
def test_a_failing_file_does_not_break_the_streams_of_another(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MDL_RETRIES", "0")  # b.bin sees no fault at all, so it needs no retry
    other = make_data(34 * MB, seed=23)  # above the split threshold too
    world.hub.add_repo("org/two", {"a.bin": BIG, "b.bin": other})
    world.catalog.write_text(CATALOG + '\n[models.two]\nrepo = "org/two"\n')
    cdn = world.hub.cdn
    # per stream: b.bin's 4 MiB ranges are in flight for about a second each
    cdn.throttle_bps = 4 * MB
    a_blob, b_blob = f"/blobs/{sha(BIG)}", f"/blobs/{sha(other)}"

    def while_b_is_busy() -> None:
        deadline = time.monotonic() + HANG
        while len(cdn.log.records(path_prefix=b_blob, status=206)) < 3:
            if time.monotonic() > deadline:
                raise AssertionError("b.bin never got going")
            time.sleep(0.01)

    # From a.bin's second range on (no locate first): once b.bin's ranges are flowing, a 404 for
    # good (exit 4).
    cdn.faults.add(Fault.call(while_b_is_busy, path_prefix=a_blob, skip=1, times=None))
    cdn.faults.add(Fault.http_error(404, path_prefix=a_blob, skip=1, times=None))
    # A stall timeout bounds the other way this goes wrong: a read that hangs on a socket closed
    # under it (a stall then cuts that range, which the last assertion sees); long enough that a
    # busy machine is never a stall.
    result = mdl(
        "pull", "two", "--connections", "4", "--jobs", "2", "--stall-timeout", "60", "--json"
    )
    assert result.exit_code == 4, result.stderr
    files = {f["path"]: f for f in json.loads(result.stdout)["files"]}
    assert files["a.bin"]["action"] == "failed"
    assert files["b.bin"]["action"] == "downloaded", files["b.bin"]["error"]
    assert (world.dest / "two" / "b.bin").read_bytes() == other
    cut = [r.range for r in cdn.log.records(path_prefix=b_blob) if not r.complete]
    assert cut == [], f"b.bin's ranges were cut by a.bin's failure: {cut}"


# -- not worth retrying: 404, 401; and the retries running out
# -------------------------------------------


@pytest.mark.slow
def test_404_from_the_cdn_mid_way_is_exit_4_without_a_retry_storm(world: World) -> None:
    world.hub.cdn.faults.add(Fault.reset(after_bytes=3 * MB, path_prefix="/blobs/"))
    world.hub.cdn.faults.add(Fault.http_error(404, path_prefix="/blobs/", times=None))
    result = mdl("pull", "one")
    assert result.exit_code == 4, result.stderr
    assert [g.status for g in world.blob_gets()] == [200, 404]  # no retry storm: counted, not timed
    assert "not found" in result.stderr and "injected 404 error" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (world.dest / "one" / "model.safetensors").exists()
    # the other file is unaffected
    assert (world.dest / "one" / "config.json").read_bytes() == CONFIG


def test_401_from_the_cdn_is_exit_3_and_not_retried(world: World) -> None:
    world.hub.cdn.faults.add(Fault.http_error(401, path_prefix="/blobs/", times=None))
    result = mdl("pull", "one")
    assert result.exit_code == 3, result.stderr
    assert [g.status for g in world.blob_gets()] == [401]
    assert "401" in result.stderr
    assert not (world.dest / "one" / "model.safetensors").exists()
    assert world.leftovers() == []


@pytest.mark.slow
def test_unreachable_cdn_is_retried_then_exit_5_naming_the_host(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MDL_RETRIES", "1")
    world.hub.cdn.stop()  # the Hub still redirects there: connection refused
    result = mdl("pull", "one")
    assert result.exit_code == 5, result.stderr
    assert "cannot connect" in result.stderr and f"127.0.0.1:{world.hub.cdn.port}" in result.stderr
    assert len(world.resolves("org/one", "model.safetensors")) == 2  # the first try and one retry
    assert (world.dest / "one" / "config.json").read_bytes() == CONFIG  # served by the Hub itself
    assert world.leftovers() == []  # nothing was received: nothing to resume, no debris


@pytest.mark.parametrize(
    "args", [("one",), ("big", "--connections", "4")], ids=["one-stream", "parallel-ranges"]
)
def test_retries_exhausted_is_exit_5_quickly_with_the_server_message(
    world: World, monkeypatch: pytest.MonkeyPatch, args: tuple[str, ...]
) -> None:
    monkeypatch.setenv("MDL_RETRIES", "2")
    world.hub.cdn.faults.add(
        Fault.http_error(
            503, "backend on fire (shard 7)", retry_after=0, path_prefix="/blobs/", times=None
        )
    )
    result = mdl("pull", *args, "--json")
    assert result.exit_code == 5, result.stderr
    assert "backend on fire (shard 7)" in result.stderr
    failed = [f for f in json.loads(result.stdout)["files"] if f["action"] == "failed"]
    assert len(failed) == 1 and "backend on fire (shard 7)" in failed[0]["error"]
    # The first try and two retries, no more, for each range: with no locate first (the Hub names
    # the sha256), each stream meets the 503 with its own range and spends its own budget; the first
    # to give up stops the others.
    gets = world.blob_gets()
    tries = Counter(g.range for g in gets)
    assert max(tries.values()) == 3, tries
    assert len(gets) <= 3 * len(tries) and len(tries) <= 4, tries
    assert "Traceback" not in result.stderr
