"""Work sharing against the real loopback CDN: idle streams take the pieces a stalled one left, no
byte is fetched twice, and resume records of the older, finer layout still resume."""

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
from mdl.transfer import scheduling
from mdl.transfer.engine import Engine
from mdl.transfer.http import RetryPolicy, make_client
from mdl.transfer.job import EngineConfig, TransferJob
from mdl.transfer.scheduling import MiB, plan_pieces

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
def test_while_one_stream_stalls_the_other_takes_every_piece_left_in_file_order(
    cdn: CdnServer, client: httpx2.Client, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # six pieces of 8 MiB in file order (what the hash keeps over the two streams), taken from the
    # front by them
    monkeypatch.setattr(scheduling, "KEEP_AHEAD", 16 * MiB)
    data = make_data(48 * MiB + 12_345, seed=71)
    cdn.throttle_bps = 24_000_000
    url = cdn.add_file("/f.bin", data)
    # The first range to arrive goes silent after 1 MB until every other byte has been asked for
    # (an event, not seconds: however slow the machine), then sends the rest.
    release = threading.Event()
    cdn.faults.add(Fault.stall(after_bytes=1_000_000, resume=True, until=release))

    def release_once_the_rest_is_asked() -> None:
        for _ in range(int(HANG / 0.02)):
            spans = sorted(ranges(cdn))
            whole = spans and spans[0][0] == 0 and spans[-1][1] == len(data) - 1
            if whole and all(a[1] + 1 == b[0] for a, b in itertools.pairwise(spans)):
                break
            time.sleep(0.02)
        release.set()

    watcher = threading.Thread(target=release_once_the_rest_is_asked, daemon=True)
    watcher.start()
    job = transfer_job(tmp_path, url, data)
    try:
        result = engine(client, connections=2).fetch(job)
    finally:
        release.set()
    assert job.final_path.read_bytes() == data
    assert result.sha256 == sha256(data)
    records = cdn.log.records(method="GET")
    stalled = next(r for r in records if r.fault == "stall")
    plan = plan_pieces(len(data), connections=2, split_threshold=SMALL)
    assert len(plan) == 6
    # every piece but the stalled one came on other connections while it was silent, each asked
    # once, whole: no byte asked twice, none fetched twice
    assert sorted(ranges(cdn)) == [(p.start, p.end - 1) for p in plan]  # type: ignore[operator]
    others = [r for r in records if r is not stalled]
    assert len(others) == 5 and all(r.connection != stalled.connection for r in others)
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
