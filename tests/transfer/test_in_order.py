"""The fetch of a file a loader reads as it lands (``serve --pull``: ``JobContext.in_order`` with a
range trust) where each connection's rate is the bound: the ranges come in file order, the head
and the last ranges cut among the streams, every stream busy to the last one (a range asked whole
by one stream is never stolen: the others idled through the file's last ranges, and a loader waited
twice as long as a plain pull). The origin holds each answer till every stream asks at once (a barrier), so
"busy" is an event, not a time; a reader waits for the ranges in file order meanwhile."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest
from runfixtures import HANG, transfer_job, wait_for
from servers import CdnServer, Fault, make_data

from mdl.progress import Progress
from mdl.transfer import ranges
from mdl.transfer._part import TAIL_CUTS
from mdl.transfer.context import JobContext, Ledger
from mdl.transfer.engine import Engine
from mdl.transfer.http import RetryPolicy, make_client
from mdl.transfer.job import EngineConfig
from mdl.transfer.ranges import Digests, RangeCheck, Releases
from mdl.wait import Wait

MiB = 1 << 20
STREAMS = 2
PART = 4 * MiB  # a range cut in STREAMS pieces of 2 MiB (bodies read raw: no smaller)
# the head, STREAMS ranges asked whole, the last STREAMS ranges (cut)
DATA = make_data((1 + 2 * STREAMS) * PART, seed=90)


@pytest.fixture
def client() -> Iterator[httpx2.Client]:
    with make_client(timeout=HANG, pool_size=2 * STREAMS) as c:
        yield c


def _trust() -> Digests:
    digests = [ranges.digest(DATA[s : s + PART]) for s in range(0, len(DATA), PART)]
    return Digests.fixed("lock", len(DATA), PART, digests)


def _read_in_order(
    releases: Releases, part_path: Path, reading: threading.Event, got: list[bytes]
) -> None:
    """A loader's reads, range after range from the front, each waiting till it verified (as the
    endpoint reads a file being fetched: ``RangeCheck.windows``); ``reading`` set once it holds
    the fetch's check."""
    shared: list[RangeCheck] = []
    wait_for(lambda: bool(shared.extend(filter(None, [releases.share(part_path)])) or shared),
             what="the fetch's range check")  # fmt: skip
    check = shared[0]
    reading.set()
    try:
        for start in range(0, len(DATA), PART):
            window = Wait.within(HANG)
            got += [bytes(view) for view in check.windows(start, start + PART, window, window)]
    finally:
        check.unshare()


def test_each_range_is_fetched_by_every_stream_at_once_in_file_order_while_a_reader_waits(
    cdn: CdnServer, client: httpx2.Client, tmp_path: Path
) -> None:
    url = cdn.add_file("/f.bin", DATA)
    together, broken = threading.Barrier(STREAMS, timeout=HANG), []

    reading = threading.Event()

    def all_streams() -> None:  # each GET waits here till every stream asks (the reader waits)
        try:
            reading.wait(HANG)
            together.wait()
        except threading.BrokenBarrierError:
            broken.append("a GET waited for streams that never asked")

    cdn.faults.add(Fault.call(all_streams, methods=frozenset({"GET"}), times=None))
    config = EngineConfig(connections=STREAMS, retry=RetryPolicy(retries=1, base=0.01, cap=0.05))
    engine = Engine(client, config, progress=Progress(), cancel=threading.Event())
    releases = Releases()
    job = transfer_job(tmp_path, url, DATA, located=url)  # (probed: no pioneer asks alone)
    got: list[bytes] = []
    reader = threading.Thread(target=_read_in_order, args=(releases, job.part_path, reading, got))
    reader.start()
    try:
        result = engine.fetch(
            job, JobContext(ledger=Ledger(), trust=_trust(), in_order=True, releases=releases)
        )
    finally:
        reader.join(HANG)
    assert not broken, "a stream idled while bytes were left"
    assert job.final_path.read_bytes() == DATA and b"".join(got) == DATA
    assert (result.fetched, result.refetched) == (len(DATA), 0), "every byte once"
    asked = [r.header("range") for r in cdn.log.records(method="GET", path_prefix="/f.bin")]
    starts = [int(str(each).removeprefix("bytes=").split("-")[0]) for each in asked]
    # the answers went in rounds of STREAMS (the barrier's): the head cut among them, then a
    # range each, then each of the last ranges cut among them, the last STREAMS pieces (the last
    # range's) cut TAIL_CUTS times finer
    rounds = [sorted(starts[i : i + STREAMS]) for i in range(0, len(starts), STREAMS)]
    piece, cut = PART // STREAMS, [0, *range((1 + STREAMS) * PART, len(DATA), PART)]
    whole = [list(range(PART, (1 + STREAMS) * PART, PART))]
    fine = list(range(cut[-1], len(DATA), piece // TAIL_CUTS))
    middle = [list(range(s, s + PART, piece)) for s in cut[1:-1]]
    assert rounds == [list(range(0, PART, piece)), *whole, *middle] + [
        fine[i : i + STREAMS] for i in range(0, len(fine), STREAMS)
    ]
