"""The hash fed from memory (issue 90): bytes landing a little ahead of the hash are kept (copies:
a stream's chunk is a view of a buffer it reuses) and hashed in file order once it reaches them;
only bytes past what it keeps are read back from the ``.part``, counted. A stream about to land
bytes past it waits while the hash moves, not while a gap holds it."""

from __future__ import annotations

import hashlib
import os
import random
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest
from clocks import FakeClock
from hypothesis import given, settings
from hypothesis import strategies as st
from runfixtures import wait_for

from mdl.transfer import hasher as hasher_module
from mdl.transfer.hasher import Hasher
from mdl.transfer.scheduling import KEEP_AHEAD

MiB = 1 << 20
KiB = 1 << 10


def keeps(monkeypatch: pytest.MonkeyPatch, most: int) -> None:
    """Each file's hash keeps ``most`` bytes ahead of it, at most that far."""
    monkeypatch.setattr(hasher_module, "KEEP_AHEAD", most)


def land(fd: int, hasher: Hasher, data: bytes, start: int, end: int, buffer: bytearray) -> None:
    """Bytes ``[start, end)`` landed as a stream lands them: written, then offered as a view of
    the stream's one buffer, which the next chunk overwrites."""
    view = memoryview(buffer)[: end - start]
    view[:] = data[start:end]
    os.pwrite(fd, view, start)
    hasher.offer(start, view)
    buffer[:] = bytes(len(buffer))  # (the stream reads its next chunk into it)


def interleaved(
    size: int, streams: int, piece: int, chunk: int, seed: int
) -> list[tuple[int, int]]:
    """Chunks of pieces in file order, each of ``streams`` streams landing its piece's chunks in
    order, the streams' turns shuffled (how parallel ranges land)."""
    rng = random.Random(seed)
    todo = [(start, min(start + piece, size)) for start in range(0, size, piece)]
    running: list[list[tuple[int, int]]] = []
    order: list[tuple[int, int]] = []
    while todo or running:
        while todo and len(running) < streams:
            start, end = todo.pop(0)
            running.append([(at, min(at + chunk, end)) for at in range(start, end, chunk)])
        turn = rng.randrange(len(running))
        order.append(running[turn].pop(0))
        if not running[turn]:
            running.pop(turn)
    return order


@settings(max_examples=25, deadline=None)
@given(
    streams=st.integers(1, 8),
    chunk=st.sampled_from([64 * KiB, 256 * KiB, MiB]),
    size=st.integers(1, 12 * MiB),
    seed=st.integers(0, 1 << 30),
)
def test_parallel_streams_within_what_it_keeps_are_hashed_from_memory_alone(
    tmp_path_factory: pytest.TempPathFactory, streams: int, chunk: int, size: int, seed: int
) -> None:
    """Pieces of what it keeps over the streams (``scheduling.plan_pieces``), landed in any
    interleaving of the streams: the file's sha256 with no byte read back, though every chunk
    was a view of a buffer overwritten right after."""
    data = random.Random(seed).randbytes(size)
    path = tmp_path_factory.mktemp("memory") / "file.part"
    fd = os.open(path, os.O_RDWR | os.O_CREAT)
    try:
        hasher = Hasher(fd, size, git=False)
        buffer = bytearray(chunk)
        for start, end in interleaved(size, streams, KEEP_AHEAD // streams, chunk, seed):
            land(fd, hasher, data, start, end, buffer)
        hasher.catch_up(size)
        assert hasher.read_back == 0
        assert hasher.position == size
        assert hasher.sha256.hexdigest() == hashlib.sha256(data).hexdigest()
        hasher.close()  # (what it held: free slabs, till then)
        assert hasher.kept == 0
    finally:
        os.close(fd)


def test_bytes_past_what_it_keeps_are_read_back_and_counted(
    fd: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    keeps(monkeypatch, 2 * MiB)
    data = os.urandom(6 * MiB)
    hasher, buffer = Hasher(fd, len(data), git=True), bytearray(MiB)
    # (landed back to front: the last MiB 5 MiB ahead of the hash, past the 2 MiB it keeps)
    for start in range(5 * MiB, -1, -MiB):
        land(fd, hasher, data, start, start + MiB, buffer)
    hasher.catch_up(len(data))
    assert hasher.sha256.hexdigest() == hashlib.sha256(data).hexdigest()
    # what lay within 2 MiB of the hash when it landed was kept: MiB 1 (MiB 0 came last, hashed
    # as it landed, with MiB 1 after it); MiBs 2 to 5 were not
    assert hasher.read_back == 4 * MiB
    assert hasher.kept == MiB  # (MiB 1's slab, free now)


def test_a_take_back_drops_the_bytes_kept_from_it_on_and_the_new_ones_are_hashed(fd: int) -> None:
    old = os.urandom(4 * MiB)
    hasher, buffer = Hasher(fd, len(old), git=False), bytearray(MiB)
    for start in (MiB, 2 * MiB, 3 * MiB):  # ahead of the hash: kept
        land(fd, hasher, old, start, start + MiB, buffer)
    assert hasher.kept == 3 * MiB
    # the answer that landed bytes from 2.5 MiB on broke its promise: taken back, and another
    # answer lands other bytes there
    hasher.unclaim(2 * MiB + MiB // 2)
    assert hasher.kept == 3 * MiB  # (MiB 1, the first half of MiB 2; MiB 3's slab free)
    new = old[: 2 * MiB + MiB // 2] + os.urandom(len(old) - 2 * MiB - MiB // 2)
    land(fd, hasher, new, 2 * MiB + MiB // 2, 4 * MiB, bytearray(MiB + MiB // 2))
    land(fd, hasher, new, 0, MiB, buffer)  # the frontier: hashed, and what is kept after it
    hasher.catch_up(len(new))
    assert hasher.sha256.hexdigest() == hashlib.sha256(new).hexdigest()
    assert hasher.read_back == 0


def test_a_stream_past_what_it_keeps_waits_for_the_hash_while_it_moves(
    fd: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """It returns once the hash is within what it keeps of the bytes it is about to land (moved
    by another stream at the frontier), not before; however slow the machine (no time judged:
    the hash is never held long enough here)."""
    keeps(monkeypatch, 2 * MiB)
    monkeypatch.setattr(hasher_module, "HELD", 3600.0)
    data = os.urandom(4 * MiB)
    hasher, buffer = Hasher(fd, len(data), git=False), bytearray(MiB)
    seen: list[int] = []
    cancel = threading.Event()

    def ahead() -> None:  # about to land the last MiB: 4 MiB ahead (no stream moved yet)
        hasher.room(4 * MiB, lambda: 0.0, cancel)
        seen.append(hasher.position)

    stream = threading.Thread(target=ahead)
    stream.start()
    for start in range(0, 3 * MiB, MiB):
        land(fd, hasher, data, start, start + MiB, buffer)
    stream.join(timeout=60)
    assert not stream.is_alive()
    assert seen and seen[0] >= 2 * MiB  # the hash within 2 MiB of its end when it went on


def test_a_stream_past_what_it_keeps_goes_on_when_the_hash_is_held_or_on_ctrl_c(
    fd: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A hash slower than the streams (a slower stream holds the frontier, a swarm's order) or
    held still: the streams past it go on (their bytes read back later), as on Ctrl-C."""
    keeps(monkeypatch, 2 * MiB)
    monkeypatch.setattr(hasher_module, "HELD", 3600.0)
    data = os.urandom(MiB)
    hasher = Hasher(fd, 8 * MiB, git=False)
    land(fd, hasher, data, 0, MiB, bytearray(MiB))
    hasher.pace = 1e6  # (the slow stream's, at the frontier)
    hasher.room(8 * MiB, lambda: 40e6, threading.Event())  # returns: the streams move faster
    assert hasher.position == MiB
    still = lambda: 0.0  # noqa: E731
    hasher.moved -= 7200.0  # (nothing moved it since)
    hasher.room(8 * MiB, still, threading.Event())  # returns: held
    hasher.moved += 7200.0  # moving, as far as it knows
    cancel = threading.Event()
    cancel.set()
    hasher.room(8 * MiB, still, cancel)  # returns: cancelled
    assert hasher.position == MiB


def test_every_files_hasher_keeps_at_most_the_process_total_and_a_dropped_one_gives_it_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A pull fetches several big files at once: what their hashers keep together is bounded; a
    hasher dropped with bytes kept (a failed attempt) gives them back."""
    keeps(monkeypatch, 5 * MiB)
    # (what other hashers of this process hold: a failed test's, till collected)
    monkeypatch.setattr(hasher_module, "KEEP_TOTAL", hasher_module._Account.total + 6 * MiB)
    data = os.urandom(5 * MiB)
    fds = [os.open(tmp_path / f"{n}.part", os.O_RDWR | os.O_CREAT) for n in range(2)]
    try:
        first, second = (Hasher(fd, len(data), git=False) for fd in fds)
        buffer = bytearray(MiB)
        for hasher, fd in ((first, fds[0]), (second, fds[1])):
            for start in range(MiB, 5 * MiB, MiB):  # the 4 MiB ahead of its hash
                land(fd, hasher, data, start, start + MiB, buffer)
        assert (first.kept, second.kept) == (4 * MiB, 2 * MiB)  # (6 MiB in all)
        del first
        third = Hasher(fds[0], len(data), git=False)
        for start in range(MiB, 5 * MiB, MiB):
            land(fds[0], third, data, start, start + MiB, buffer)
        assert third.kept == 4 * MiB
        before = hasher_module._Account.total
        third.close()  # (an attempt that ended: given back at once, not when collected)
        assert third.kept == 0 and hasher_module._Account.total == before - 4 * MiB
        land(fds[1], second, data, 0, MiB, buffer)
        second.catch_up(len(data))
        assert second.sha256.hexdigest() == hashlib.sha256(data).hexdigest()
        assert second.read_back == 2 * MiB and second.kept == 2 * MiB  # (two free slabs)
    finally:
        for fd in fds:
            os.close(fd)


def test_a_stream_waits_for_a_hash_as_fast_as_the_streams_not_for_a_slower_one(
    fd: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The hash's pace, measured as it moves (on the test's clock): 16 MiB/s here. A stream of
    1 MiB/s waits for it (the hash, short of CPU, is what holds it); one of 100 MiB/s does not
    (a slower stream at the frontier holds the hash: its bytes are read back)."""
    keeps(monkeypatch, 2 * MiB)
    monkeypatch.setattr(hasher_module, "HELD", 3600.0)
    clock = FakeClock()
    monkeypatch.setattr(hasher_module, "time", SimpleNamespace(monotonic=clock))
    data, cancel = os.urandom(8 * MiB), threading.Event()
    hasher, buffer = Hasher(fd, len(data), git=False), bytearray(MiB)
    for start in range(0, 4 * MiB, MiB):  # 4 MiB in 0.25 s
        clock.now += hasher_module.PACE_EVERY / 4
        land(fd, hasher, data, start, start + MiB, buffer)
    assert hasher.pace == 16 * MiB
    try:
        fast = threading.Thread(target=hasher.room, args=(8 * MiB, lambda: 100.0 * MiB, cancel))
        fast.start()
        fast.join(timeout=60)  # returns at once: nothing moves the hash meanwhile
        assert not fast.is_alive() and hasher.position == 4 * MiB
        seen: list[int] = []
        stream = threading.Thread(
            target=lambda: (
                hasher.room(8 * MiB, lambda: 1.0 * MiB, cancel),
                seen.append(hasher.position),
            )
        )
        stream.start()
        wait_for(lambda: bool(hasher._waiters), what="the slow stream waiting")
        assert stream.is_alive() and not seen
        for start in range(4 * MiB, 7 * MiB, MiB):
            land(fd, hasher, data, start, start + MiB, buffer)
        stream.join(timeout=60)
        assert not stream.is_alive()
    finally:
        cancel.set()  # (a failure leaves no thread waiting)
    assert seen and seen[0] >= 6 * MiB  # it went on once within 2 MiB of its end
