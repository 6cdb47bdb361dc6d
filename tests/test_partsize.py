"""mdl/partsize.py: the one part size. It follows the file (``PART`` up to 8 GiB, doubled as it
grows, at most ``MOST_PART`` but for files past ``MOST_PARTS`` of them), is never less as a file
grows, and each range it makes is one a check holds. A file's lock parts (the spans its part hashes
in ``catalog.lock.parts`` cover) and its fleet parts (a fill's ``PartSet`` in a mirror) are the
same spans for any size, so a peer's part is one range a lock's hash checks; a lock an earlier mdl
wrote at ``PART`` keeps its recorded spans, and a fleet cuts the file at them (``cut_at``);
Xet's windows are asked ending at those parts' ends (files up to ``PART`` × ``MOST_WINDOWS``;
bigger ones, by design, in other windows); and one constant lowered lowers them all."""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import threading
from collections.abc import Sequence
from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from profiles import examples
from runfixtures import transfer_job
from servers import make_data
from xetserver import XetStore, chunk_hashes_answer

from mdl import partsize
from mdl.buckets.folder import FolderWriter
from mdl.download._parts import PartSet, verified
from mdl.lockfile.parts import (
    PartHashes,
    dump_parts,
    hashed,
    parse_parts,
    read_parts,
    trust_for,
    write_parts,
)
from mdl.transfer import ranges
from mdl.transfer.ranges import part_digests
from mdl.xet import _ranges

MiB = 1 << 20
SHA = "5" * 64
ROOT = "file:///srv/models/.mdl/"  # a mirror's namespace, and one of its objects
OBJECT = "file:///srv/models/org/model.safetensors"
GiB = 1 << 30
SIZES = st.integers(1, 1 << 50)


def fleet_spans(
    size: int, folder: Path, trust: ranges.Digests | None = None
) -> list[tuple[int, int]]:
    """The spans of a ``size``-byte file's parts in a fill's mirror (one part: the object itself,
    never cut), the file's range trust ``trust``."""
    job = transfer_job(folder, "http://127.0.0.1:9/f.bin", size=size, sha=SHA)
    parts = PartSet.of(FolderWriter(), ROOT, OBJECT, job, trust=trust)
    if parts is None:
        return [(0, size)]
    return [parts.span(n) for n in range(1, parts.count + 1)]


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("partsize")


@settings(max_examples=examples(60), deadline=None)
@given(size=st.integers(1, 64 << 10) | st.integers(1, 12 * MiB))
def test_a_files_lock_parts_are_its_fleet_parts(size: int, folder: Path) -> None:
    """The lock's part hashes as ``mdl lock`` makes them (read from a file of ``size`` bytes) cover
    exactly the spans of the parts a fill publishes of it. Parts of 4 KiB, 8 a file at most: each
    of the part size's rules (``PART``, doubled past 2 MiB, whole MiB past 8 parts) within a few
    MiB."""
    path = folder / "file.bin"
    with path.open("wb") as sparse:
        sparse.truncate(size)  # no disk: zeros read back
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(partsize, "PART", 4 << 10)
        patch.setattr(partsize, "MOST_PARTS", 8)
        fd = os.open(path, os.O_RDONLY)
        try:
            lock, _ = hashed(fd, size)
        finally:
            os.close(fd)
        assert list(lock.trust().spans) == fleet_spans(size, folder)
        assert len(lock.digests) <= partsize.MOST_PARTS


@settings(max_examples=examples(200), deadline=None)
@given(size=SIZES)
def test_any_files_fleet_parts_are_a_lock_entry_of_the_same_spans(size: int, folder: Path) -> None:
    """At mdl's own part size, for any size: the fleet's parts are an entry the lock's reader
    takes (no more parts than a lock holds), of the same spans; every part but the last is at
    least S3's 5 MiB and, past ``PART``, whole MiB (S3 copies them into the object)."""
    spans = fleet_spans(size, folder)
    part = spans[0][1]
    entry = PartHashes(size, part, tuple(bytes(32) for _ in spans))
    [read] = parse_parts(dump_parts({SHA: entry})).values()
    assert read == entry and list(read.trust().spans) == spans
    assert len(spans) <= partsize.MOST_PARTS
    assert len(spans) == 1 or (part >= 5 * MiB and (part == partsize.PART or part % MiB == 0))


@given(size=SIZES)
def test_xets_windows_are_asked_at_the_part_size_up_to_their_most(size: int) -> None:
    """A Xet file up to ``PART`` × ``MOST_WINDOWS`` is asked in windows of ``PART``, so every lock
    part's end is a window's end (a part doubled is two windows, or four); a bigger one (by
    design: a request per window) in ``MOST_WINDOWS`` at most, each a whole number of MiB bigger
    than ``PART``."""
    step = partsize.part_size(size, most=_ranges.MOST_WINDOWS, top=_ranges.MOST_WINDOW)
    if size <= partsize.PART * _ranges.MOST_WINDOWS:
        assert step == partsize.PART and partsize.part_size(size) % step == 0
    else:
        assert step > partsize.PART and step % MiB == 0
        assert -(-size // step) <= _ranges.MOST_WINDOWS


@settings(max_examples=examples(300))
@given(size=SIZES, more=SIZES)
def test_the_part_size_grows_with_the_file_within_its_bounds(size: int, more: int) -> None:
    """A bigger file never has smaller parts; a file up to ``PART`` × ``SHARE`` (8 GiB) keeps
    ``PART``; a part is ``PART`` doubled, within [``PART``, ``MOST_PART``], for every file up to
    ``MOST_PART`` × ``MOST_PARTS``, and a bigger file is cut into ``MOST_PARTS`` at most, in whole
    MiB; every part is at least S3's 5 MiB."""
    part = partsize.part_size(size)
    assert partsize.part_size(size + more) >= part
    assert -(-size // part) <= partsize.MOST_PARTS and part >= 5 * MiB
    if size <= partsize.PART * partsize.SHARE:
        assert part == partsize.PART
    if size <= partsize.MOST_PART * partsize.MOST_PARTS:
        assert partsize.PART <= part <= partsize.MOST_PART
        assert part % partsize.PART == 0 and (part // partsize.PART).bit_count() == 1
    else:
        assert part > partsize.MOST_PART and part % MiB == 0


@pytest.mark.parametrize(
    ("size", "part"),
    [
        (1, 16 * MiB),
        (8 * GiB, 16 * MiB),  # up to 8 GiB: 16 MiB, as every mdl before cut it
        (8 * GiB + 1, 32 * MiB),
        (140 * 10**9, 32 * MiB),  # a 140 GB model: 4,173 parts
        (32 * MiB * 9_000, 32 * MiB),
        (32 * MiB * 9_000 + 1, 33 * MiB),  # past 9,000 parts: whole MiB, as before
    ],
)
def test_the_part_size_of_some_files(size: int, part: int) -> None:
    """The sizes the docs state."""
    assert partsize.part_size(size) == part


@settings(max_examples=examples(300))
@given(size=st.integers(1, partsize.MOST_PART * partsize.MOST_PARTS))
def test_every_part_is_a_range_a_check_holds(size: int) -> None:
    """A lock mdl writes of any file up to ``MOST_PART`` × ``MOST_PARTS`` (~281 GiB) is a range
    trust a fetch uses (its ranges within ``ranges.MAX_SPAN``, as in every mdl since 0.9):
    bigger parts would leave it checked whole."""
    part = partsize.part_size(size)
    trust = ranges.Digests.fixed("lock", size, part, [bytes(32)] * -(-size // part))
    assert part <= partsize.MOST_PART <= ranges.MAX_SPAN and ranges.fits(trust)


def earlier(size: int) -> int:
    """The part size every mdl from 0.9 to 0.11 cut a ``size``-byte file at."""
    need = -(-size // partsize.MOST_PARTS)
    return partsize.PART if need <= partsize.PART else -(-need // MiB) * MiB


@settings(max_examples=examples(300))
@given(
    size=SIZES | st.integers(1, 64 * MiB),
    locked=st.sampled_from(["earlier", "now"]) | st.integers(1, 64 * MiB) | st.integers(1, 1 << 40),
)
@example(size=40 * MiB, locked=20 * MiB).via("a lock of 20 MiB parts: 2 parts")
@example(size=40 * MiB, locked=4 * MiB).via("under PART: cut at 16 MiB")
@example(size=20 * GiB, locked="earlier").via("16 MiB parts, not 32")
def test_a_fleet_cuts_a_locked_file_at_its_locks_part_size(
    size: int, locked: str | int, folder: Path
) -> None:
    """A file whose lock has part hashes is cut by a fleet at the lock's part size, each part one
    range the lock checks, whichever mdl wrote the lock (0.9 to 0.11: ``PART`` up to ~140 GiB;
    this one: ``part_size``) and whichever the fleet's machines run; a lock of parts no mdl writes
    (under ``PART``: S3 could not copy them; over ``MOST_PART``: held whole in memory, checked
    whole) is cut at ``part_size``."""
    part = {"earlier": earlier(size), "now": partsize.part_size(size)}.get(str(locked), locked)
    assert isinstance(part, int)
    if -(-size // part) > partsize.MOST_PARTS:  # no such lock: the reader refuses it
        return
    mdls = partsize.PART <= part <= partsize.MOST_PART
    assert partsize.cut_at(size, part) == (part if mdls else partsize.part_size(size))
    if locked == "earlier" and size <= partsize.MOST_PART * partsize.MOST_PARTS:
        assert mdls
    if size <= 64 * MiB:  # (spans listed)
        trust = PartHashes(size, part, tuple(bytes(32) for _ in range(-(-size // part)))).trust()
        first = trust.spans[0][1]  # (one range, the whole file: one part, the object itself)
        cut = fleet_spans(size, folder, trust)
        ranged = partsize.PART <= first <= partsize.MOST_PART
        assert cut == (list(trust.spans) if ranged else fleet_spans(size, folder))


def test_a_locks_recorded_part_size_is_kept() -> None:
    """A lock an earlier mdl wrote of a 20 GiB file (1,280 parts of 16 MiB) is read as it was
    written, though this mdl would cut the file in 32 MiB parts: its ranges are its own."""
    size, old = 20 * GiB, 16 * MiB
    entry = PartHashes(size, old, tuple(bytes([n % 256]) * 32 for n in range(size // old)))
    [read] = parse_parts(dump_parts({SHA: entry})).values()
    assert partsize.part_size(size) == 2 * old
    assert read == entry and read.part == old
    spans = read.trust().spans
    assert len(spans) == 1280 and spans[0] == (0, old) and spans[-1] == (size - old, size)


def test_an_earlier_lock_is_read_and_checks_a_fleets_parts_as_recorded(folder: Path) -> None:
    """One constant lowered (``PART`` 4 KiB: a 3 MiB file's parts are 8 KiB now), a lock written
    at 4 KiB as an earlier mdl wrote it, read back from its file: its range trust has the recorded
    spans, each holds its bytes; a fleet cuts the file at them (8 KiB without the lock), and a
    follower's check of each part verifies its one range; one flipped byte costs that part."""
    data = make_data(3 * MiB + 5, seed=78)
    path = folder / "old.bin"
    path.write_bytes(data)
    sha = hashlib.sha256(data).hexdigest()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(partsize, "PART", 4 << 10)
        old = partsize.PART
        fd = os.open(path, os.O_RDONLY)
        try:
            entry = PartHashes(len(data), old, tuple(part_digests(fd, len(data), old)))
        finally:
            os.close(fd)
        lock = folder / "catalog.lock.parts"
        write_parts(lock, {sha: entry})
        trust = trust_for(read_parts(lock), sha, len(data))
        assert trust is not None
        fleet, unlocked = fleet_spans(len(data), folder, trust), fleet_spans(len(data), folder)
    recorded = [(s, min(s + old, len(data))) for s in range(0, len(data), old)]
    assert list(trust.spans) == recorded == fleet and unlocked[0] == (0, 2 * old)
    for index, (start, end) in enumerate(fleet):
        assert trust.holds(index, memoryview(data)[start:end])
        assert verified(trust, start, memoryview(data)[start:end]) == ([(start, end)], False)
    start, end = fleet[5]
    flipped = bytearray(data[start:end])
    flipped[3] ^= 1
    assert verified(trust, start, memoryview(flipped)) == ([], True)


@pytest.mark.parametrize("part", [256 << 10, 300 << 10, 1 << 20])
def test_xets_windows_end_at_the_lock_parts_ends(part: int, folder: Path) -> None:
    """One constant lowered, the Xet windows of a 3 MiB file (a stand-in CAS answers where each
    closes) are asked ending at its lock parts' ends, the fleet's: each window closes at one of
    those ends or after it, before the next stable chunk bound past it (``PAST``), and they tile
    the file."""
    data = make_data(3 * MiB + 5, seed=77)
    xf = XetStore().add(data)
    asked: list[list[tuple[int, int]]] = []

    def ask(dirty: Sequence[tuple[int, int]]) -> bytes:
        asked.append(list(dirty))
        return json.dumps(chunk_hashes_answer(xf, dirty)).encode()

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(partsize, "PART", part)
        found = _ranges.windows(ask, xf.size, threading.Event())
        path = folder / "xet.bin"
        path.write_bytes(data)
        fd = os.open(path, os.O_RDONLY)
        try:
            lock, _ = hashed(fd, len(data))
        finally:
            os.close(fd)
        spans = list(lock.trust().spans)
        assert spans == fleet_spans(len(data), folder) and lock.part == part
    ends = [end for _, end in spans]
    assert found is not None and found[0].start == 0 and found[-1].end == len(data)
    assert all(a.end == b.start for a, b in itertools.pairwise(found))
    assert asked[0] == [(end - 1, end) for end in ends[:-1]]  # every part's end, in one request
    for window in found:
        last = max(end for end in ends if end <= window.end)
        assert last <= window.end < last + _ranges.PAST
