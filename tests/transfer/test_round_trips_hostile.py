"""Hostile answers to issue 38's round trips: the open-ended probe, reading on, no locate, cheap
records.
"""

from __future__ import annotations

import json
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from hostile import Answer, Phase, ScriptedServer, Seen
from runfixtures import HANG, mdl, transfer_job
from servers import make_data

from mdl.progress import NullProgress
from mdl.transfer._state import DownloadState
from mdl.transfer._stream import PieceRequests
from mdl.transfer.engine import Engine
from mdl.transfer.http import RetryPolicy, make_client
from mdl.transfer.job import EngineConfig
from mdl.transfer.resume import parse_state
from mdl.transfer.scheduling import Piece

MiB = 1 << 20


def get(url: str, out: Path, *extra: str) -> tuple[int, str]:
    result = mdl("get", url, "-o", str(out), "--no-progress", "--connections", "4", *extra)
    return result.exit_code, result.stderr


def spans(header: str) -> tuple[int, int]:
    """``bytes=A-B`` as (A, B); an open end or no Range as (0, 0)."""
    first, _, last = header.removeprefix("bytes=").partition("-")
    return (int(first), int(last)) if first.isdigit() and last.isdigit() else (0, 0)


def test_a_server_ignoring_ranges_that_names_the_whole_file_in_every_200_still_downloads(
    started: list[ScriptedServer], tmp_path: Path
) -> None:
    """Some servers ignore Range and still send ``Content-Range: bytes 0-N-1/N`` with their 200
    (rule 16 reads such a 200 as the range it names). Before 59ccf01 the probe's ``bytes=0-0`` got a
    200 naming the whole file, read as the whole file: one stream. Now ``bytes=0-`` makes the same
    200 "ranged", the file is split, and every later piece's 200 starts at byte 0: "asked for bytes
    from X, server sent from 0", exit 5 instead of the file."""
    data = make_data(40 * MiB, seed=3811)
    phase = Phase(data, etag='"v1"')

    def policy(_: int, seen: Seen, server: ScriptedServer) -> Answer:
        headers = {"ETag": '"v1"', "Content-Range": f"bytes 0-{len(data) - 1}/{len(data)}"}
        return Answer(200, headers, data)

    server = ScriptedServer({"/f.bin": [phase]}, policy=policy).start()
    started.append(server)
    out = tmp_path / "f.bin"
    code, stderr = get(f"{server.url}/f.bin", out)
    assert code == 0, stderr
    assert out.read_bytes() == data


def test_a_broken_stream_retried_at_a_server_whose_200_names_the_whole_file_restarts_from_zero(
    started: list[ScriptedServer], tmp_path: Path
) -> None:
    """One stream (a small file): the first answer breaks off halfway; the retry's ``Range:
    bytes=N-`` gets a 200 with ``Content-Range: bytes 0-N-1/N`` and the whole body (ranges ignored).
    Before 59ccf01 such a 200 was the whole file: "server sent the whole file, restarting from
    zero", exit 0. ``promised`` now reads it as a range because a Range was asked, ``check_range``
    finds it starts at 0, and the get fails (exit 5)."""
    data = make_data(4 * MiB, seed=3812)
    whole = {"ETag": '"v1"', "Content-Range": f"bytes 0-{len(data) - 1}/{len(data)}"}

    def policy(index: int, seen: Seen, server: ScriptedServer) -> Answer:
        # the probe: the headers of the whole file, half of its body, then the connection is gone
        if index == 0:
            return Answer(
                200, {**whole, "Content-Length": str(len(data))}, data[: len(data) // 2], close=True
            )
        return Answer(200, whole, data)

    server = ScriptedServer({"/f.bin": [Phase(data, etag='"v1"')]}, policy=policy).start()
    started.append(server)
    out = tmp_path / "f.bin"
    code, stderr = get(f"{server.url}/f.bin", out)
    assert code == 0, stderr
    assert out.read_bytes() == data


def test_a_piece_taken_whole_just_before_its_request_asks_no_unsatisfiable_range(
    started: list[ScriptedServer], tmp_path: Path
) -> None:
    """``PieceStream.run`` checks ``piece.complete`` and then ``request`` reads the frontier:
    between the two the carrier may take the piece whole (``DownloadState.carry``: ``after.start =
    after.end``). With a hash (no overlap to repeat) the request is then ``Range: bytes=E-(E-1)``,
    an invalid range: a server ignores it (200, the whole file: ``RangesIgnoredError``, every byte
    fetched so far thrown away and the file fetched again as one stream) or refuses it with a 416
    (``request`` reads that as "the remote size changed": exit 5). Here the state the race
    leaves is built directly and the one request it makes is looked at."""
    data = make_data(8 * MiB, seed=3813)
    server = ScriptedServer({"/f.bin": [Phase(data, etag='"v1"')]}).start()
    started.append(server)
    url = f"{server.url}/f.bin"
    job = transfer_job(tmp_path, url, data)
    job.part_path.parent.mkdir(parents=True)
    job.part_path.write_bytes(data[: 6 * MiB] + bytes(2 * MiB))
    fd = os.open(job.part_path, os.O_RDWR)
    config = EngineConfig(connections=2, retry=RetryPolicy(retries=0), split_threshold=64 * 1024)
    try:
        carrier = Piece(0, 6 * MiB, done=6 * MiB, asked=len(data))
        taken = Piece(6 * MiB, 6 * MiB)  # the carrier read it whole: it left the layout
        rest = Piece(6 * MiB, len(data))
        state = DownloadState(job, fd, [carrier, rest], '"v1"')
        state.multi = True
        assert not state.overlaps, "a hash checks the file: no bytes are repeated"
        with make_client(timeout=5, pool_size=4) as client:
            engine = Engine(client, config, progress=NullProgress(), cancel=threading.Event())
            try:
                PieceRequests(engine, state, taken).request(url)
            except Exception as exc:  # what the answer to that request made of the download
                raised: Exception | None = exc
            else:
                raised = None
    finally:
        os.close(fd)
    asked = [(seen.range or "", seen.status) for seen in server.seen()]
    assert all(first <= last for first, last in (spans(r) for r, _ in asked)), (asked, raised)


def test_a_resumed_run_does_not_make_its_durable_record_untrusted_before_any_new_byte(
    started: list[ScriptedServer], tmp_path: Path
) -> None:
    """Run 1 ended on an error: its record was saved durable (the bytes flushed first, no boot
    mark). Run 2 resumes it and, before a single new byte arrives, rewrites the record cheaply:
    marked with this boot, claiming the very same (flushed) bytes. A machine crash now (the next
    boot has another id) discards the record and the partial: every byte run 1 had made durable is
    lost, though none of them was ever at risk."""
    data = make_data(40 * MiB, seed=3814)
    release = threading.Event()
    asked = threading.Event()

    def policy(_: int, seen: Seen, server: ScriptedServer) -> Answer | None:
        asked.set()
        release.wait(HANG)  # the answer is on its way while the test looks at the record
        return None

    server = ScriptedServer({"/f.bin": [Phase(data, etag='"v1"')]}, policy=policy).start()
    started.append(server)
    url = f"{server.url}/f.bin"
    job = transfer_job(tmp_path, url, data, etag='"v1"')
    job.part_path.parent.mkdir(parents=True)
    half = 20 * MiB
    job.part_path.write_bytes(data[:half] + bytes(len(data) - half))
    fd = os.open(job.part_path, os.O_RDWR)
    try:  # run 1's exit: the first half on disk, its record durable
        state = DownloadState(job, fd, [Piece(0, half, done=half), Piece(half, len(data))], '"v1"')
        state.record.save(durable=True)
    finally:
        os.close(fd)
    assert "boot" not in json.loads(job.state_path.read_text())
    config = EngineConfig(connections=2, retry=RetryPolicy(retries=0), split_threshold=64 * 1024)
    with make_client(timeout=5, pool_size=4) as client:
        engine = Engine(client, config, progress=NullProgress(), cancel=threading.Event())
        with ThreadPoolExecutor(1) as pool:
            running = pool.submit(engine.fetch, job)
            try:
                # the run's first request: every save so far is of run 1's bytes alone
                assert asked.wait(HANG)
                # what a crash of the machine now leaves
                record = json.loads(job.state_path.read_text())
            finally:
                release.set()
            running.result(timeout=HANG)
    claimed = sum(done for _, _, done in record["pieces"])
    assert claimed == half, "no new byte yet: the record claims only what run 1 flushed"
    # what the next boot trusts of it
    _, after_reboot, _ = parse_state({**record, "boot": "another-boot"})
    assert sum(p.done for p in after_reboot) == half, (
        "a crash of the machine now keeps every byte run 1 flushed"
    )
