"""``TransferJob.on_landed``: the engine tells whoever listens which bytes of the ``.part`` landed
(a fill's publisher; a range's check), against the real loopback CDN: the ranges told are on disk
when told, cover the file exactly once (an answer broken off included), and a resume tells the
bytes it resumes on first."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import httpx2
import pytest
from runfixtures import transfer_job
from servers import CdnServer, Fault, make_data

from mdl.errors import NetworkError
from mdl.progress import Progress
from mdl.transfer._stream import LANDED_STEP
from mdl.transfer.engine import Engine
from mdl.transfer.http import RetryPolicy, make_client
from mdl.transfer.job import EngineConfig, TransferJob

DATA = make_data(9_000_003, seed=70)


class Heard:
    """What the engine told, checked against the ``.part`` as it was told."""

    def __init__(self, job: TransferJob) -> None:
        self.job, self.ranges, self.lock = job, list[tuple[int, int]](), threading.Lock()
        self.wrong: list[tuple[int, int]] = []

    def __call__(self, start: int, end: int) -> None:
        with self.lock:
            self.ranges.append((start, end))
        fd = os.open(self.job.part_path, os.O_RDONLY)
        try:
            if os.pread(fd, end - start, start) != DATA[start:end]:
                self.wrong.append((start, end))
        finally:
            os.close(fd)

    def tiles(self) -> bool:
        """Whether the ranges told cover the file, each byte once."""
        ends = [0]
        for start, end in sorted(self.ranges):
            if start != ends[-1] or end <= start:
                return False
            ends.append(end)
        return ends[-1] == len(DATA)


def listening(job: TransferJob) -> tuple[TransferJob, Heard]:
    heard = Heard(job)
    return replace(job, on_landed=heard), heard


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
    job, heard = listening(transfer_job(tmp_path, url, DATA))
    engine(client, retries=1).fetch(job)
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
    job, heard = listening(first)
    result = engine(client, retries=0).fetch(job)
    assert result.resumed_from == sum(e - s for s, e in kept)
    assert heard.ranges[: len(kept)] == kept, "the bytes resumed on are told first"
    assert heard.wrong == []
    assert heard.tiles(), sorted(heard.ranges)
