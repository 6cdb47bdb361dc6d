"""What the engine tells the user while it recovers: one line per stall or retry, with the real
limits.

Against the loopback CDN's faults (tests/servers.py): a stall, a connection cut mid-body, the same
cut in every parallel range at once (one line, not one per range), and a 503 (named as such, not as
a lost connection).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest
from runfixtures import transfer_job
from servers import CdnServer, Fault, make_data

from mdl.cli.render.progress import said_alone
from mdl.progress import Event, NullProgress
from mdl.transfer.engine import Engine
from mdl.transfer.http import RetryPolicy, make_client
from mdl.transfer.job import EngineConfig
from mdl.transfer.scheduling import MiB


class Notes(NullProgress):
    """Keeps the lines said on their own (notes, and waits said so: ``said_alone``), the rows'
    waits and the starts (a real Progress, not the thing under test)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.notes: list[str] = []
        self.rows: list[tuple[str, str]] = []
        self.starts: list[tuple[str, str | None, str | None]] = []

    def emit(self, event: Event) -> None:
        with self.lock:
            if event.kind == "start":
                self.starts.append((event.key, event.model, event.path))
            elif said_alone(event):
                self.notes.append(event.message)
            elif event.kind == "waiting":
                self.rows.append((event.key, event.message))


@pytest.fixture
def client() -> Iterator[httpx2.Client]:
    with make_client(timeout=5, pool_size=16) as c:
        yield c


def engine(
    client: httpx2.Client, progress: Notes, *, retries: int, stall: float | None = None
) -> Engine:
    config = EngineConfig(
        connections=4,
        retry=RetryPolicy(retries=retries, base=0.01, cap=0.05),
        split_threshold=1 * MiB,
        stall_timeout=stall,
    )
    return Engine(client, config, progress=progress, cancel=threading.Event())


@pytest.mark.slow
def test_a_stall_says_how_long_it_waited_and_how_many_tries_are_left(
    cdn: CdnServer, tmp_path: Path
) -> None:
    data = make_data(300_000, seed=61)
    url = cdn.add_file("/f.bin", data)
    cdn.faults.add(Fault.stall(after_bytes=100_000))  # silent until the server stops
    progress = Notes()
    with make_client(timeout=5, pool_size=4) as client:
        engine(client, progress, retries=0, stall=0.5).fetch(
            transfer_job(tmp_path, url, data, model="m", path="f.bin")
        )
    assert (tmp_path / "dest" / "m" / "f.bin").read_bytes() == data
    assert progress.notes == [
        f"m/f.bin: no bytes for 0.5 s, reconnecting (1/{EngineConfig().max_stalls})"
    ]
    assert progress.starts == [("m/f.bin", "m", "f.bin")]  # model and path for programs


def test_a_stall_without_its_own_timeout_names_the_clients(cdn: CdnServer, tmp_path: Path) -> None:
    data = make_data(300_000, seed=62)
    url = cdn.add_file("/f.bin", data)
    cdn.faults.add(Fault.stall(after_bytes=100_000))
    progress = Notes()
    with make_client(timeout=0.4, pool_size=4) as client:
        engine(client, progress, retries=0).fetch(
            transfer_job(tmp_path, url, data, model="m", path="f.bin")
        )
    assert progress.notes == [
        f"m/f.bin: no bytes for 0.4 s, reconnecting (1/{EngineConfig().max_stalls})"
    ]


def test_a_dropped_connection_says_lost_why_when_and_which_try(
    cdn: CdnServer, client: httpx2.Client, tmp_path: Path
) -> None:
    data = make_data(600_000, seed=63)
    url = cdn.add_file("/f.bin", data)
    cdn.faults.add(Fault.reset(after_bytes=250_000))
    progress = Notes()
    engine(client, progress, retries=3).fetch(
        transfer_job(tmp_path, url, data, model="m", path="f.bin")
    )
    assert (tmp_path / "dest" / "m" / "f.bin").read_bytes() == data
    (line,) = progress.notes
    assert re.fullmatch(r"m/f\.bin: connection lost \(.+\), retrying in \d+\.\d s \(1/3\)", line), (
        line
    )


def test_every_range_cut_at_once_is_one_line_per_retry(
    cdn: CdnServer, client: httpx2.Client, tmp_path: Path
) -> None:
    data = make_data(16 * MiB, seed=64)  # four 4 MiB ranges over four connections
    url = cdn.add_file("/f.bin", data)
    # No locate first (a sha256 checks the file): the first range's answer honours it (its body held
    # till the others came), then the three others are asked. They meet at a barrier, so all are in
    # flight when the server cuts each of them once.
    meet, came = threading.Barrier(3, timeout=20), threading.Event()
    cdn.faults.add(Fault.stall(after_bytes=1, until=came, resume=True, path_prefix="/f.bin"))
    cdn.faults.add(
        Fault.call(lambda: (meet.wait(), came.set()), path_prefix="/f.bin", skip=1, times=3)
    )
    # (the first answer is the stall's: the cuts are the next three)
    cut = cdn.faults.add(Fault.reset(after_bytes=100_000, times=3))
    progress = Notes()
    engine(client, progress, retries=2).fetch(
        transfer_job(tmp_path, url, data, model="m", path="f.bin")
    )
    assert (tmp_path / "dest" / "m" / "f.bin").read_bytes() == data
    assert cut.hits == 3
    assert len(progress.notes) == 1, progress.notes
    assert progress.notes[0].startswith("m/f.bin: connection lost (") and progress.notes[
        0
    ].endswith("(1/2)")


@pytest.mark.slow
def test_a_503_is_named_as_the_servers_answer_not_a_lost_connection(
    cdn: CdnServer, client: httpx2.Client, tmp_path: Path
) -> None:
    data = make_data(20_000, seed=65)
    url = cdn.add_file("/f.bin", data)
    cdn.faults.add(Fault.http_error(503, retry_after=1))
    progress = Notes()
    engine(client, progress, retries=2).fetch(
        transfer_job(tmp_path, url, data, model="m", path="f.bin")
    )
    (line,) = progress.notes
    assert line.startswith(f"m/f.bin: HTTP 503 from {url}") and line.endswith(
        ", retrying in 1 s (1/2)"
    ), line
    assert "connection lost" not in line


@pytest.mark.slow
def test_a_503_while_locating_a_split_file_is_told_too(
    cdn: CdnServer, client: httpx2.Client, tmp_path: Path
) -> None:
    # over the split threshold, no sha256: one locate request, then ranges
    data = make_data(8 * MiB, seed=66)
    url = cdn.add_file("/f.bin", data)
    cdn.faults.add(Fault.http_error(503, retry_after=1))  # the locate request
    progress = Notes()
    # a hash would spare the locate
    job = transfer_job(tmp_path, url, size=len(data), model="m", path="f.bin")
    engine(client, progress, retries=2).fetch(job)
    assert (tmp_path / "dest" / "m" / "f.bin").read_bytes() == data
    assert [r.range for r in cdn.log.records(method="GET", status=503)] == ["bytes=0-0"]
    assert progress.notes == [
        f"m/f.bin: HTTP 503 from {url}: injected 503 error from the test server, retrying in 1 s"
        " (1/2)"
    ]


def test_a_503_to_the_first_request_of_a_file_of_unknown_size_is_told_too(
    cdn: CdnServer, client: httpx2.Client, tmp_path: Path
) -> None:
    """The engine's own probe (a pull's fetch of a URL it knows no size of) waits as its streams
    do: one line, and the file's row waits till bytes come."""
    data = make_data(20_000, seed=67)
    url = cdn.add_file("/f.bin", data)
    cdn.faults.add(Fault.http_error(503, retry_after=0))
    progress = Notes()
    engine(client, progress, retries=2).fetch(transfer_job(tmp_path, url, model="m", path="f.bin"))
    assert (tmp_path / "dest" / "m" / "f.bin").read_bytes() == data
    said = f"HTTP 503 from {url}: injected 503 error from the test server, retrying in 0 s (1/2)"
    assert progress.notes == [f"m/f.bin: {said}"]
    assert progress.rows == [("m/f.bin", said)]
