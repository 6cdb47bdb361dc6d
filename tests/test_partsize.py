"""mdl/partsize.py: the one part size. A file's lock parts (the spans its part hashes in
``catalog.lock.parts`` cover) and its fleet parts (a fill's ``PartSet`` in a mirror) are the same
spans for any size, so a peer's part is one range a lock's hash checks; Xet's windows are asked
ending at those parts' ends (files of at most ``MOST_WINDOWS`` parts; bigger ones, by design, in
fewer, bigger windows); and one constant lowered lowers them all."""

from __future__ import annotations

import itertools
import json
import os
import threading
from collections.abc import Sequence
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from profiles import examples
from runfixtures import transfer_job
from servers import make_data
from xetserver import XetStore, chunk_hashes_answer

from mdl import partsize
from mdl.buckets.folder import FolderWriter
from mdl.download._parts import PartSet
from mdl.lockfile.parts import PartHashes, dump_parts, hashed, parse_parts
from mdl.xet import _ranges

MiB = 1 << 20
SHA = "5" * 64
ROOT = "file:///srv/models/.mdl/"  # a mirror's namespace, and one of its objects
OBJECT = "file:///srv/models/org/model.safetensors"


def fleet_spans(size: int, folder: Path) -> list[tuple[int, int]]:
    """The spans of a ``size``-byte file's parts in a fill's mirror (one part: the object itself,
    never cut)."""
    job = transfer_job(folder, "http://127.0.0.1:9/f.bin", size=size, sha=SHA)
    parts = PartSet.of(FolderWriter(), ROOT, OBJECT, job)
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
    exactly the spans of the parts a fill publishes of it. Parts of 4 KiB, 8 a file at most: both
    of the part size's rules within a few MiB."""
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
@given(size=st.integers(1, 1 << 50))
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


@given(size=st.integers(1, 1 << 50))
def test_xets_windows_are_asked_at_the_part_size_up_to_their_most(size: int) -> None:
    """A Xet file is asked in windows of one part each up to ``MOST_WINDOWS`` parts; a bigger one
    (by design: a request per window) in ``MOST_WINDOWS`` at most, each a whole number of MiB
    bigger than a part."""
    step, part = partsize.part_size(size, most=_ranges.MOST_WINDOWS), partsize.part_size(size)
    if size <= partsize.PART * _ranges.MOST_WINDOWS:
        assert step == part == partsize.PART
    else:
        assert step > part and step % MiB == 0 and -(-size // step) <= _ranges.MOST_WINDOWS


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
