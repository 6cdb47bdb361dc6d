"""The bytes the hasher read back from the ``.part`` (said at ``-v``): those no stream offered it
at the hash's frontier or within what it keeps in memory ahead of it, against the real loopback
CDN."""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest
from runfixtures import transfer_job
from servers import CdnServer, Fault, make_data

from mdl.progress import Progress
from mdl.transfer import hasher as hasher_module
from mdl.transfer.context import JobContext, Ledger
from mdl.transfer.engine import Engine
from mdl.transfer.http import RetryPolicy, make_client
from mdl.transfer.job import EngineConfig
from mdl.transfer.scheduling import plan_pieces

SMALL = 64 * 1024


@pytest.fixture
def client() -> Iterator[httpx2.Client]:
    with make_client(timeout=60, pool_size=8) as c:
        yield c


class FirstWhole:
    """Sets ``go`` when either piece has landed whole, and says which came first."""

    def __init__(self, ends: set[int]) -> None:
        self.ends, self.go, self.first = ends, threading.Event(), list[int]()

    def landed(self, start: int, end: int) -> None:
        if end in self.ends and not self.go.is_set():
            self.first.append(end)
            self.go.set()

    def taken_back(self, start: int, end: int) -> None:
        pass


@pytest.mark.parametrize("keeps", [hasher_module.KEEP_AHEAD, 1 << 20], ids=["kept", "past-it"])
def test_the_piece_landed_whole_beyond_the_hash_is_read_back_past_what_it_keeps(
    cdn: CdnServer,
    client: httpx2.Client,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    keeps: int,
) -> None:
    monkeypatch.setattr(hasher_module, "KEEP_AHEAD", keeps)
    data = make_data(9_000_003, seed=90)
    url = cdn.add_file("/f.bin", data)
    first, second = plan_pieces(len(data), connections=2, split_threshold=SMALL)
    assert first.end is not None and second.end == len(data)
    # The first request to come (either piece's) is held till the other piece has landed whole.
    heard = FirstWhole({first.end, len(data)})
    cdn.faults.add(Fault.stall(until=heard.go, resume=True))
    config = EngineConfig(connections=2, retry=RetryPolicy(retries=0), split_threshold=SMALL)
    engine = Engine(client, config, progress=Progress(), cancel=threading.Event())
    job = transfer_job(tmp_path, url, data)
    with caplog.at_level(logging.DEBUG, logger="mdl.transfer"):
        result = engine.fetch(job, JobContext(ledger=Ledger(), landing=heard))
    assert result.sha256 == job.identity.sha256
    (said,) = [r.getMessage() for r in caplog.records if "hashed read back" in r.getMessage()]
    match = re.fullmatch(
        r"m/f\.bin: (\d+) bytes hashed read back \(every attempt's\), of (\d+)", said
    )
    assert match is not None and int(match[2]) == len(data)
    # The second piece whole before the first began: the hash reaches it only when the first is
    # done; it kept it in memory (4.5 MB ahead, within the 64 MiB it keeps), or, keeping only
    # 1 MiB, reads all of it back. The first whole first: the second's bytes come at the hash's
    # frontier, each hashed from memory as it lands.
    assert heard.first in ([len(data)], [first.end])
    past = heard.first == [len(data)] and keeps < second.end - first.start
    assert int(match[1]) == (second.end - second.start if past else 0)
