"""``mdl.transfer.context.Ledger``: a file's bytes counted where they move, once. Against the real
loopback CDN, which counts the body bytes it sent: parallel streams, an answer cut short and asked
again, and ranges that fail their trusted hash (thrown away, fetched again alone) — the ledger's
network bytes are the server's, byte for byte, and the result says the same."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest
from runfixtures import transfer_job
from servers import CdnServer, Fault, make_data

from mdl.progress import Progress
from mdl.transfer import ranges
from mdl.transfer.context import JobContext, Ledger
from mdl.transfer.engine import Engine
from mdl.transfer.http import RetryPolicy, make_client
from mdl.transfer.job import EngineConfig
from mdl.transfer.ranges import Digests

PART = 1 << 20
DATA = make_data(8 * PART + 4_321, seed=89)


@pytest.fixture
def client() -> Iterator[httpx2.Client]:
    with make_client(timeout=60, pool_size=8) as c:
        yield c


def test_the_ledger_counts_every_byte_the_server_sent_once(
    cdn: CdnServer, client: httpx2.Client, tmp_path: Path
) -> None:
    url = cdn.add_file("/f.bin", DATA)
    cdn.flips.extend([[2 * PART + 5, 1], [6 * PART + 9, 1]])  # two ranges arrive wrong, once
    cdn.faults.add(Fault.reset(after_bytes=300_000, path_prefix="/f.bin"))  # one answer cut
    digests = [ranges.digest(DATA[s : s + PART]) for s in range(0, len(DATA), PART)]
    ledger = Ledger()
    beside = JobContext(trust=Digests.fixed("lock", len(DATA), PART, digests), ledger=ledger)
    config = EngineConfig(
        connections=4, retry=RetryPolicy(retries=3, base=0.01, cap=0.05), split_threshold=1
    )
    engine = Engine(client, config, progress=Progress(), cancel=threading.Event())
    job = transfer_job(tmp_path, url, DATA)
    result = engine.fetch(job, beside)
    assert job.final_path.read_bytes() == DATA
    sent = cdn.log.body_bytes(path_prefix="/f.bin")
    assert ledger.fetched == ledger.bytes["origin"] == sent == result.fetched, (
        ledger.fetched,
        sent,
    )
    assert (ledger.bytes["mirror"], ledger.bytes["peers"]) == (0, 0)
    assert ledger.bytes["refetched"] == 2 * PART and result.refetched == 2
    assert sent >= len(DATA) + 2 * PART, "the cut answer's bytes and the two ranges again count"
