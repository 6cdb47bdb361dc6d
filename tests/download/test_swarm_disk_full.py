"""A disk filling up as a swarm writes another machine's part (``put`` in ``Restarts._run_swarm``,
on the swarm's readers): exit 7, "no space left" naming the ``.part``, the partial and its record
kept, and the next run resumes on them; never a part claimed with its tail unwritten."""

from __future__ import annotations

import errno
import json
import os
import threading
from pathlib import Path

import pytest
from download.test_swarm_hostile import Fleet, trusting
from servers import HubServer, make_data

import mdl.transfer._part
from mdl import partsize
from mdl.buckets.registry import STORES
from mdl.download import _parts
from mdl.download._parts import READERS, PartSet
from mdl.download._swarm import Swarm
from mdl.writes import write_at

MiB = 1 << 20
FULL = threading.local()  # on the reader thread writing part 2: half of it fits, then ENOSPC


def _published(
    hub: HubServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, numbers: tuple[int, ...]
) -> Fleet:
    """A 12 MiB file of 1 MiB parts on the Hub, locked with its part hashes, and the parts
    ``numbers`` published by another machine in a ``file://`` mirror."""
    monkeypatch.setattr(partsize, "PART", MiB)
    data, root = make_data(12 * MiB + 5, seed=7831), tmp_path / "shared"
    root.mkdir()
    hub.add_repo("org/tiny", {"model.safetensors": data})
    writer = STORES["file"].writer(endpoint=None, secrets=None)
    fleet = Fleet(hub, data, MiB, f"file://{root}/{{model}}/{{path}}", writer)
    trusting(monkeypatch, fleet)
    for number in numbers:
        assert writer.create(fleet.part_uri(number), fleet.bytes_of(number)) is not None
    return fleet


def test_a_full_disk_while_writing_another_machines_part_exits_7_and_keeps_the_partial(
    hub: HubServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MDL_LOG_FILE", str(tmp_path / "mdl.log"))
    # another machine's parts: read and written at this one's first look
    fleet = _published(hub, tmp_path, monkeypatch, (1, 2))
    data = fleet.data
    real_pwrite = os.pwrite

    def pwrite(fd: int, buf: bytes | memoryview, offset: int) -> int:
        if not getattr(FULL, "on", False):
            return real_pwrite(fd, buf, offset)
        if FULL.short:  # the disk filled up: the continued write says so
            raise OSError(errno.ENOSPC, "No space left on device")
        FULL.short = True
        return real_pwrite(fd, memoryview(buf)[: len(buf) // 2], offset)

    first = threading.Event()  # part 1 written: the disk fills up after it (the record keeps it)

    def put_write(fd: int, buf: bytes | memoryview, offset: int) -> int:
        if offset == MiB:
            first.wait(60)
        FULL.on, FULL.short = offset == MiB, False  # part 2 only (part 1 is written whole)
        try:
            return write_at(fd, buf, offset)
        finally:
            FULL.on = False
            if offset == 0:
                first.set()

    monkeypatch.setattr(os, "pwrite", pwrite)
    monkeypatch.setattr(mdl.transfer._part, "write_at", put_write)
    dest = tmp_path / "m0"
    report = fleet.pull(dest)
    (outcome,) = report.files
    assert report.exit_code == 7, outcome
    assert outcome.error is not None and "no space left on device while writing" in outcome.error
    assert ".part" in outcome.error and "partial download is kept" in outcome.error, outcome
    (record,) = (dest / ".mdl" / "partial").glob("*.json")
    kept = sum(done for _, _, done in json.loads(record.read_text())["pieces"])
    assert MiB <= kept < len(data), kept  # part 1 at least
    assert [p for p in (dest / ".mdl" / "partial").iterdir() if p.name.endswith(".part")]
    # room again: the next run resumes on what was kept and ends with the file
    monkeypatch.setattr(mdl.transfer._part, "write_at", write_at)
    again = fleet.pull(dest)
    assert again.exit_code == 0, again.files
    assert (dest / "tiny" / "model.safetensors").read_bytes() == data


def test_a_failed_read_of_a_look_ends_the_fetch_only_once_its_other_reads_ended(
    hub: HubServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Part 2's write fails while part 3's (read in the same look) is still under way: the fetch
    ends (exit 7) only after part 3's write ended, never with a reader still writing into a
    ``.part`` its fetch closed (a descriptor another file may have been given by then)."""
    fleet = _published(hub, tmp_path, monkeypatch, (2, 3))  # read in one look
    third, failed, returned, wrote = (threading.Event() for _ in range(4))

    def put_write(fd: int, buf: bytes | memoryview, offset: int) -> int:
        if offset == MiB:  # part 2: fails once part 3's write is under way
            third.wait(60)
            failed.set()
            raise OSError(errno.ENOSPC, "No space left on device")
        if offset == 2 * MiB:  # part 3: still writing after part 2 failed (past the pull's end
            third.set()  # under the old look: its wait ends only on its bound then)
            failed.wait(60)
            returned.wait(1.0)
            done = write_at(fd, buf, offset)
            wrote.set()
            return done
        return write_at(fd, buf, offset)

    monkeypatch.setattr(mdl.transfer._part, "write_at", put_write)
    report = fleet.pull(tmp_path / "m0")
    ended_before = wrote.is_set()
    returned.set()
    assert report.exit_code == 7, report.files
    assert ended_before, "the pull ended while a read of its last look was still writing"


def test_no_part_of_a_look_is_read_once_one_failed_to_be_written(
    hub: HubServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Once a read of a look failed (its part not written: a full disk), the parts of that look
    not begun are not read (as ``map`` cancelled them): only the reads under way end (a review's
    find: waiting for every read ran all the look found into the full disk first). Another
    stream's look may begin before the failure ends the fetch: its reads are its own."""
    numbers = tuple(range(2, 13))  # 11 parts, found by one look (``most``: READERS * 4)
    fleet = _published(hub, tmp_path, monkeypatch, numbers)
    failed = threading.Event()
    looks: list[int] = []  # (each look lists the parts first)
    reads: list[tuple[int, int]] = []  # (the look it is of, part number)
    real_read, real_found = PartSet.read, Swarm._found

    def found(self: Swarm) -> list[int]:
        looks.append(len(looks))
        return real_found(self)

    def read(self: PartSet, number: int) -> object:
        if number != 2:  # the others wait for part 2's failure (bounded): they overlap it
            failed.wait(60)
        reads.append((len(looks), number))
        return real_read(self, number)

    def put_write(fd: int, buf: bytes | memoryview, offset: int) -> int:
        if offset == MiB:  # part 2: the disk is full
            failed.set()
            raise OSError(errno.ENOSPC, "No space left on device")
        return write_at(fd, buf, offset)

    monkeypatch.setattr(Swarm, "_found", found)
    monkeypatch.setattr(_parts.PartSet, "read", read)
    monkeypatch.setattr(mdl.transfer._part, "write_at", put_write)
    report = fleet.pull(tmp_path / "m0")
    assert report.exit_code == 7, report.files
    looked = sorted(n for look, n in reads if look == 1)
    # the reads under way when part 2 failed: READERS at most (part 2's included)
    assert 2 in looked and len(looked) <= READERS, f"read after a full disk: {looked}"
