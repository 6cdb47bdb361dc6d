"""Work stealing against the real loopback CDN: an idle stream takes the unasked tail of a slow one,
no byte is fetched twice, and resume records of the older, finer layout still resume."""

from __future__ import annotations

import hashlib
import itertools
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest
from runfixtures import HANG, transfer_job
from servers import CdnServer, Fault, make_data

from mdl.progress import NullProgress
from mdl.transfer.engine import Engine
from mdl.transfer.http import RetryPolicy, make_client
from mdl.transfer.job import EngineConfig, TransferJob
from mdl.transfer.scheduling import FIRST_WINDOW, MiB, plan_pieces

SMALL = 64 * 1024


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def client() -> Iterator[httpx2.Client]:
    # a safety net: a stall here waits on an event
    with make_client(pool_size=8, timeout=HANG) as c:
        yield c


def engine(client: httpx2.Client, connections: int, *, retries: int = 0) -> Engine:
    config = EngineConfig(
        connections=connections,
        retry=RetryPolicy(retries=retries, base=0.01, cap=0.05),
        split_threshold=SMALL,
    )
    return Engine(client, config, progress=NullProgress(), cancel=threading.Event())


def ranges(cdn: CdnServer) -> list[tuple[int, int]]:
    out = []
    for record in cdn.log.records(method="GET"):
        first, last = record.range.removeprefix("bytes=").split("-")
        out.append((int(first), int(last)))
    return out


@pytest.mark.slow
@pytest.mark.realtime
def test_an_idle_stream_steals_the_unasked_tail_of_a_stalled_one(
    cdn: CdnServer, client: httpx2.Client, tmp_path: Path
) -> None:
    # two pieces of 60 MB: each stream first asks for 32 MiB of its own
    data = make_data(120_000_000, seed=71)
    # A tail is worth stealing when it is more than twice what a stream moves in one time to first
    # byte. Loopback's 300 MB/s a stream makes that 20 ms on a busy machine; a CDN's pace (24 MB/s
    # a stream) makes it 0.27 s: the steal hangs on the event below, not on the machine's load.
    cdn.throttle_bps = 24_000_000
    url = cdn.add_file("/f.bin", data)
    # The first range to arrive (a hash checks the file: no locate before it) goes silent after 1 MB
    # until the other stream has asked for its unasked tail (an event, not seconds: however slow the
    # machine), then sends the rest.
    release = threading.Event()
    cdn.faults.add(Fault.stall(after_bytes=1_000_000, resume=True, until=release))

    def release_once_stolen() -> None:
        for _ in range(int(HANG / 0.02)):
            records = cdn.log.records(method="GET")
            stalled = [r for r in records if r.fault == "stall"]
            if stalled and stalled[0].range is not None:
                first = int(stalled[0].range.removeprefix("bytes=").split("-")[0])
                if any(
                    r.range and r.range.startswith(f"bytes={first + FIRST_WINDOW}-")
                    for r in records
                ):
                    break
            time.sleep(0.02)
        release.set()

    watcher = threading.Thread(target=release_once_stolen, daemon=True)
    watcher.start()
    job = transfer_job(tmp_path, url, data)
    try:
        result = engine(client, connections=2).fetch(job)
    finally:
        release.set()
    assert job.final_path.read_bytes() == data
    assert result.sha256 == sha256(data)
    asked = ranges(cdn)
    assert (0, 0) not in asked  # no locate: every stream asked its own range at once
    stalled = next(r for r in cdn.log.records(method="GET") if r.fault == "stall")
    first, _ = (int(x) for x in stalled.range.removeprefix("bytes=").split("-"))
    # The stalled piece's own request stops at its first window; the idle stream asked for the rest
    # of it.
    plan = plan_pieces(len(data), connections=2, split_threshold=SMALL)
    assert len(plan) == 2
    piece_end = next(p.end for p in plan if p.start == first)
    assert piece_end is not None
    assert (first + FIRST_WINDOW, piece_end - 1) in asked
    thief = next(
        r
        for r in cdn.log.records(method="GET")
        if r.range == f"bytes={first + FIRST_WINDOW}-{piece_end - 1}"
    )
    assert thief.connection != stalled.connection
    # No byte was asked for twice and none fetched twice: requests are never cut short.
    spans = sorted(asked)
    assert spans[0][0] == 0 and spans[-1][1] == len(data) - 1
    assert all(a[1] + 1 == b[0] for a, b in itertools.pairwise(spans))
    assert cdn.log.body_bytes(method="GET") == len(data)


def _old_record(job: TransferJob, data: bytes, pieces: list[list[int]]) -> None:
    """A resume record as mdl 0.1 wrote it: 4 MiB pieces (4 per connection), some of them done."""
    job.part_path.parent.mkdir(parents=True)
    part = bytearray(len(data))
    for start, end, done in pieces:
        part[start : start + done] = data[start : start + done]
    job.part_path.write_bytes(bytes(part))
    record = {
        "version": 1,
        "source": job.source,
        "identity": {"size": len(data), "sha256": sha256(data), "git_oid": None, "etag": None},
        "validator": f'"{hashlib.md5(data).hexdigest()}"',
        "pieces": pieces,
    }
    job.state_path.write_text(json.dumps(record))


def test_a_record_of_the_older_finer_layout_resumes_only_the_missing_bytes(
    cdn: CdnServer, client: httpx2.Client, tmp_path: Path
) -> None:
    data = make_data(20 * MiB + 5, seed=72)
    url = cdn.add_file("/f.bin", data)
    job = transfer_job(tmp_path, url, data)
    four = 4 * MiB
    old = [[i, min(i + four, len(data)), 0] for i in range(0, len(data), four)]
    old[0][2] = four  # done
    old[1][2] = 1_000_000  # partly
    old[3][2] = four - 5  # nearly
    _old_record(job, data, old)
    claimed = sum(d for _, _, d in old)
    result = engine(client, connections=4).fetch(job)
    assert job.final_path.read_bytes() == data
    assert result.resumed_from == claimed
    asked = ranges(cdn)  # no locate: the record's validator guards the ranges, the hash the result
    missing = [(s + d, e - 1) for s, e, d in old if s + d < e]
    # Every missing byte asked for exactly once (a piece may be asked for in more than one request).
    spans = sorted(asked)
    covered = []
    for first, last in spans:
        if covered and covered[-1][1] + 1 == first:
            covered[-1] = (covered[-1][0], last)
        else:
            covered.append((first, last))
    merged: list[tuple[int, int]] = []
    for first, last in missing:
        if merged and merged[-1][1] + 1 == first:
            merged[-1] = (merged[-1][0], last)
        else:
            merged.append((first, last))
    assert covered == merged
    assert cdn.log.body_bytes(method="GET") == len(data) - claimed
