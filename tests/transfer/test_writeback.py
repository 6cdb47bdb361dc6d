"""The keeper thread of a big download: records saved off the streams, and its failures not lost."""

from __future__ import annotations

import contextlib
import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import httpx2
import pytest
from runfixtures import HANG, transfer_job, wait_for
from servers import CdnServer, hold_after, make_data

from mdl.errors import LocalFSError
from mdl.progress import NullProgress
from mdl.transfer.engine import Engine
from mdl.transfer.http import RetryPolicy, make_client
from mdl.transfer.job import EngineConfig
from mdl.transfer.resume import Record, start_writeback
from mdl.transfer.scheduling import MiB, Piece


@pytest.fixture
def client() -> Iterator[httpx2.Client]:
    with make_client(pool_size=8, timeout=10) as c:
        yield c


def engine(client: httpx2.Client, connections: int) -> Engine:
    config = EngineConfig(
        connections=connections,
        retry=RetryPolicy(retries=0),
        split_threshold=64 * 1024,
        checkpoint_interval=0.3,
    )
    return Engine(client, config, progress=NullProgress(), cancel=threading.Event())


def lone(client: httpx2.Client) -> Engine:
    """An engine that fetches a file under 32 MiB as one stream."""
    config = EngineConfig(connections=4, retry=RetryPolicy(retries=0))
    return Engine(client, config, progress=NullProgress(), cancel=threading.Event())


@pytest.mark.parametrize("split", [True, False], ids=["ranges", "one-stream"])
def test_a_record_that_cannot_be_saved_stops_the_download_with_its_reason(
    cdn: CdnServer, client: httpx2.Client, tmp_path: Path, split: bool
) -> None:
    data = make_data(12_000_000, seed=81)
    url = cdn.add_file("/f.bin", data)
    cdn.throttle_bps = 3_000_000  # per stream: the download outlasts a checkpoint
    job = transfer_job(tmp_path, url, data)

    def block_the_record() -> None:  # once the first record is saved, a folder takes its name
        while True:
            with contextlib.suppress(FileNotFoundError, FileExistsError, IsADirectoryError):
                job.state_path.unlink()
                job.state_path.mkdir()
                return

    blocker = threading.Thread(target=block_the_record, daemon=True)
    blocker.start()
    # (a one-stream file's record is its keeper's too: its failure is the one said)
    fetching = engine(client, connections=2) if split else lone(client)
    with pytest.raises(LocalFSError, match="is a folder, not a file"):
        fetching.fetch(job)
    blocker.join(5)
    assert not job.final_path.exists()
    # the streams stopped: the file was not finished
    assert cdn.log.body_bytes(method="GET") < len(data)


@pytest.mark.slow
def test_the_keeper_saves_what_the_streams_wrote(
    cdn: CdnServer, client: httpx2.Client, tmp_path: Path
) -> None:
    data = make_data(12_000_000, seed=82)
    url = cdn.add_file("/f.bin", data)
    cdn.throttle_bps = 2_000_000
    job = transfer_job(tmp_path, url, data)
    saved: list[int] = []
    problems: list[BaseException] = []

    # the record appears while the streams run, each claim backed by bytes in the .part
    def watch() -> None:
        try:
            while not job.final_path.exists():
                try:
                    record = json.loads(job.state_path.read_text())
                    part = job.part_path.read_bytes()
                # not written yet, or the file was just moved into place
                except (OSError, ValueError):
                    continue
                for start, _end, done in record["pieces"]:
                    assert part[start : start + done] == data[start : start + done], (
                        f"claim at {start} not backed"
                    )
                saved.append(sum(d for _, _, d in record["pieces"]))
        except BaseException as exc:  # raised again in the test's own thread below
            problems.append(exc)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    engine(client, connections=2).fetch(job)
    watcher.join(5)
    assert not problems, problems
    assert job.final_path.read_bytes() == data
    assert saved and max(saved) > 0


@pytest.mark.slow
def test_the_keeper_writes_every_record_the_streams_find_due(
    cdn: CdnServer, client: httpx2.Client, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stream that finds a save due (here by bytes: every MiB, the floor set to a MiB) only
    asks: the keeper thread writes the record, so no stream waits on a rename or a flush while the
    disk is busy; and it writes it at once, not at its next writeback nudge (a kill -9 must lose
    under 5% of the file)."""
    monkeypatch.setattr("mdl.transfer.resume.SAVE_BYTES", (MiB, 32 * MiB))
    data = make_data(12_000_000, seed=83)
    url = cdn.add_file("/f.bin", data)
    cdn.throttle_bps = 3_000_000
    job = transfer_job(tmp_path, url, data)
    savers: list[str] = []
    save = Record.save

    def recorded(record: Record, *, durable: bool = False) -> None:
        savers.append(threading.current_thread().name)
        save(record, durable=durable)

    monkeypatch.setattr(Record, "save", recorded)
    # no nudge: only the streams' asks wake it
    monkeypatch.setattr("mdl.transfer.resume.WRITEBACK_EVERY", 60.0)
    config = EngineConfig(
        connections=2,
        retry=RetryPolicy(retries=0),
        split_threshold=64 * 1024,
        checkpoint_interval=60.0,
    )
    Engine(client, config, progress=NullProgress(), cancel=threading.Event()).fetch(job)
    assert job.final_path.read_bytes() == data
    # one per MiB of the 12 MB, each by bytes
    assert sum(name.startswith("keep:") for name in savers) >= 8
    # never a stream (the set-up saves before them)
    assert not [name for name in savers if name.startswith("get:")]


@pytest.mark.slow
def test_a_long_download_flushes_a_record_now_and_then(
    cdn: CdnServer, client: httpx2.Client, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Cheap saves claim bytes the page cache holds: a crash of the machine drops them
    (``parse_state``). So the keeper makes one durable every ``DURABLE_EVERY``: a first run that a
    power cut stops keeps what was flushed."""
    data = make_data(12_000_000, seed=84)
    url = cdn.add_file("/f.bin", data)
    cdn.throttle_bps = 3_000_000
    job = transfer_job(tmp_path, url, data)
    saves: list[tuple[str, bool]] = []
    save = Record.save

    def recorded(record: Record, *, durable: bool = False) -> None:
        saves.append((threading.current_thread().name, durable))
        save(record, durable=durable)

    monkeypatch.setattr(Record, "save", recorded)
    monkeypatch.setattr("mdl.transfer.resume.DURABLE_EVERY", 0.5)
    monkeypatch.setattr("mdl.transfer.resume.SAVE_BYTES", (MiB, 32 * MiB))  # (a save a MiB)
    # The record's clock moves 0.3 s a save, not with the machine's pace (a busy machine spaced
    # every save past DURABLE_EVERY makes all durable): about one in two is durable.
    monkeypatch.setattr(
        "mdl.transfer.resume.time", SimpleNamespace(monotonic=lambda: 0.3 * len(saves))
    )
    engine(client, connections=2).fetch(job)
    assert job.final_path.read_bytes() == data
    by_keeper = [durable for name, durable in saves if name.startswith("keep:")]
    assert any(by_keeper) and not all(by_keeper)  # now and then durable, cheap in between


def test_writeback_of_a_file_is_harmless(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"x" * 100_000)
    fd = os.open(path, os.O_RDWR)
    try:
        start_writeback(fd)
        os.fdatasync(fd)
    finally:
        os.close(fd)
    assert path.read_bytes() == b"x" * 100_000


class _LookedAt(Piece):
    """A piece that counts how often its completeness is asked."""

    looked = 0

    @property
    def complete(self) -> bool:
        _LookedAt.looked += 1
        return super().complete


def test_a_record_not_due_looks_at_no_piece() -> None:
    # asked per chunk under the claims' lock: a scan of every piece there cost ~1 ms a request
    # at 512 pieces
    pieces = [_LookedAt(i * 100, (i + 1) * 100) for i in range(512)]
    claims = SimpleNamespace(pieces=pieces, fetched=0, lock=threading.Condition())
    record = Record(claims)  # type: ignore[arg-type]
    _LookedAt.looked = 0
    claims.fetched = record.every - 1
    assert not record.due(interval=1e9)
    assert _LookedAt.looked == 0
    claims.fetched = record.every  # due: a record is written unless every byte is there
    assert record.due(interval=1e9)
    for piece in pieces:
        piece.done = 100
    assert not record.due(interval=1e9)


def test_a_lone_stream_s_bytes_are_recorded_while_its_answer_stalls(
    cdn: CdnServer, client: httpx2.Client, tmp_path: Path
) -> None:
    """A file fetched as one stream (under the split threshold) has a keeper too: a server that
    stops mid-body leaves every byte it sent recorded within the interval (a kill -9 then keeps
    them), not only those of the last save a chunk made due (none under the 8 MiB floor)."""
    data = make_data(12 * MiB, seed=85)
    url = cdn.add_file("/f.bin", data)
    job = transfer_job(tmp_path, url, data)
    held = hold_after(cdn, 6 * MiB)
    fetching = threading.Thread(target=lone(client).fetch, args=(job,))
    fetching.start()
    try:

        def claimed() -> int:
            try:
                return sum(done for _, _, done in json.loads(job.state_path.read_text())["pieces"])
            except (OSError, ValueError):  # (not written yet, or replaced as it was read)
                return 0

        wait_for(lambda: claimed() == 6 * MiB, what="the record of the bytes before the stall")
        assert job.part_path.read_bytes()[: 6 * MiB] == data[: 6 * MiB]
    finally:
        held.set()
        fetching.join(HANG)
    assert job.final_path.read_bytes() == data
