"""``JobContext.landing``: the engine tells whoever listens which bytes of the ``.part`` landed
and which it takes back (a fill's publisher; a range's check), against the real loopback CDN: the
ranges told are on disk when told, cover the file exactly once (an answer broken off included), a
resume tells the bytes it resumes on first, and bytes taken back (a server that stops honouring
ranges: the file starts over) are told so before they change on disk."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest
from runfixtures import transfer_job
from servers import CdnServer, Fault, make_data

from mdl.errors import NetworkError
from mdl.progress import Progress
from mdl.transfer._copy import LANDED_STEP
from mdl.transfer.context import JobContext, Ledger
from mdl.transfer.engine import Engine
from mdl.transfer.http import RetryPolicy, make_client
from mdl.transfer.job import EngineConfig, TransferJob

DATA = make_data(9_000_003, seed=70)


class Heard:
    """What the engine told, checked against the ``.part`` as it was told: landed bytes are the
    file's, and so are bytes taken back (they have not changed yet)."""

    def __init__(self, job: TransferJob) -> None:
        self.job, self.ranges, self.lock = job, list[tuple[int, int]](), threading.Lock()
        self.wrong: list[tuple[int, int]] = []
        self.back: list[tuple[int, int]] = []

    def landed(self, start: int, end: int) -> None:
        with self.lock:
            self.ranges.append((start, end))
        self._check(start, end)

    def taken_back(self, start: int, end: int) -> None:
        with self.lock:
            self.back.append((start, end))
            # claimed no more: what is told from now on covers them again
            self.ranges = [(a, b) for a, b in self.ranges if b <= start or a >= end]
        self._check(start, end)

    def _check(self, start: int, end: int) -> None:
        fd = os.open(self.job.part_path, os.O_RDONLY)
        try:
            if os.pread(fd, end - start, start) != DATA[start:end]:
                self.wrong.append((start, end))
        finally:
            os.close(fd)

    def tiles(self) -> bool:
        """Whether the ranges told (and not taken back) cover the file, each byte once."""
        ends = [0]
        for start, end in sorted(self.ranges):
            if start != ends[-1] or end <= start:
                return False
            ends.append(end)
        return ends[-1] == len(DATA)


def listening(job: TransferJob) -> tuple[TransferJob, JobContext, Heard]:
    heard = Heard(job)
    return job, JobContext(ledger=Ledger(), landing=heard), heard


@pytest.fixture
def client() -> Iterator[httpx2.Client]:
    with make_client(timeout=60, pool_size=8) as c:
        yield c


def engine(client: httpx2.Client, *, retries: int) -> Engine:
    config = EngineConfig(
        connections=4, retry=RetryPolicy(retries=retries, base=0.01, cap=0.05), split_threshold=1
    )
    return Engine(client, config, progress=Progress(), cancel=threading.Event())


def test_the_ranges_told_are_the_bytes_landed_each_once_an_answer_broken_off_included(
    cdn: CdnServer, client: httpx2.Client, tmp_path: Path
) -> None:
    url = cdn.add_file("/f.bin", DATA)
    cdn.faults.add(Fault.reset(after_bytes=300_000))  # one answer ends a third of a MiB in
    job, beside, heard = listening(transfer_job(tmp_path, url, DATA))
    engine(client, retries=1).fetch(job, beside)
    assert job.final_path.read_bytes() == DATA
    assert heard.wrong == [], "a range was told before its bytes were on disk"
    assert heard.tiles(), f"every byte told exactly once: {sorted(heard.ranges)}"
    # told by the MiB, not by the chunk
    assert len(heard.ranges) <= len(DATA) // LANDED_STEP + 2 * len(cdn.log.records(method="GET"))


def test_a_resume_tells_the_bytes_it_resumes_on_first(
    cdn: CdnServer, client: httpx2.Client, tmp_path: Path
) -> None:
    url = cdn.add_file("/f.bin", DATA)
    cdn.throttle_bps = 4_000_000  # every range still in flight when one is cut
    cdn.faults.add(Fault.reset(after_bytes=300_000))
    first = transfer_job(tmp_path, url, DATA)
    with pytest.raises(NetworkError):
        engine(client, retries=0).fetch(first)
    kept = [(s, s + d) for s, _, d in json.loads(first.state_path.read_text())["pieces"] if d]
    assert kept, "the first run kept bytes to resume on"
    cdn.throttle_bps = None
    job, beside, heard = listening(first)
    result = engine(client, retries=0).fetch(job, beside)
    assert result.resumed_from == sum(e - s for s, e in kept)
    assert heard.ranges[: len(kept)] == kept, "the bytes resumed on are told first"
    assert heard.wrong == []
    assert heard.tiles(), sorted(heard.ranges)


def test_bytes_taken_back_are_told_before_they_change_and_told_again_as_they_land(
    cdn: CdnServer, client: httpx2.Client, tmp_path: Path
) -> None:
    """A server that answers a later range with the whole file (ranges no longer honoured): the
    file starts over on one stream; every byte claimed before is told taken back while it is still
    on disk, then told landed again."""
    url = cdn.add_file("/f.bin", DATA)
    cdn.throttle_bps = 8_000_000  # every range has bytes on disk when one is cut
    cdn.faults.add(Fault.reset(after_bytes=1_000_000))
    # the file's two ranges are answered (the first cut: the second is this fault's one skip);
    # the one asked again gets the whole file
    cdn.faults.add(Fault.full_body(skip=1))
    job, beside, heard = listening(transfer_job(tmp_path, url, DATA))
    engine(client, retries=1).fetch(job, beside)
    assert job.final_path.read_bytes() == DATA
    assert heard.back, "the bytes claimed before the start over were told taken back"
    assert heard.wrong == [], "a range was told (landed or taken back) with other bytes on disk"
    assert heard.tiles(), sorted(heard.ranges)
