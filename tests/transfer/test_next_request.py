"""A stream's next piece is asked for about two round trips before its answer ends (run_pieces'
overlap, ``BodyCopy``'s near end), judged at half the answer by that answer's own rate: a file's
first answers, before the streams' rate is known, ask on time too (else every stream of a far,
per-connection-capped server idled a round trip after its first piece)."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import httpx2
import pytest
from runfixtures import transfer_job

import mdl.transfer._copy as copy_module
from mdl.progress import Progress
from mdl.transfer._copy import BodyCopy
from mdl.transfer._shared import Shared
from mdl.transfer._state import DownloadState
from mdl.transfer.body import Span
from mdl.transfer.job import EngineConfig
from mdl.transfer.scheduling import Piece

MiB = 1 << 20
CHUNK = 256 * 1024


class Clock:
    """The copy's clock: moved by the test as the bytes "arrive"."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


def told_at(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *, rate: float, ttfb: float) -> int:
    """Where a file's first answer (an 8 MiB piece of four, nothing fetched before it) tells its
    stream to ask for the next piece, its bytes arriving at ``rate`` after a ``ttfb`` round trip."""
    clock = Clock()
    monkeypatch.setattr(copy_module, "time", clock)  # (the copy's module alone)
    piece_size = 8 * MiB
    pieces = [Piece(start, start + piece_size) for start in range(0, 4 * piece_size, piece_size)]
    job = transfer_job(tmp_path, "http://127.0.0.1:9/f.bin", size=4 * piece_size)
    fd = os.open(tmp_path / "f.part", os.O_RDWR | os.O_CREAT, 0o600)
    state = DownloadState(job, fd, pieces, None)
    state.multi, state.ttfb = True, ttfb
    with httpx2.Client() as client:
        shared = Shared(
            client, EngineConfig(connections=4), progress=Progress(), cancel=threading.Event()
        )
        told: list[int] = []
        body = BodyCopy(
            shared, state, pieces[0], Span(0, piece_size, 4 * piece_size, True),
            near_end=lambda: told.append(body.offset),
        )  # fmt: skip
        chunk = bytes(CHUNK)
        try:
            while body.offset < piece_size:
                clock.now += CHUNK / rate
                body.take(chunk)
        finally:
            os.close(fd)
    assert len(told) == 1, told  # told once
    return told[0]


def test_a_first_answer_behind_a_long_round_trip_asks_for_the_next_piece_at_half(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 40 MiB/s a connection, 60 ms to first byte: the second half (0.1 s) is under two round trips; the
    # file's rate still unknown (a guess of 10 MiB/s put it 1 MiB before the end: 25 ms, less
    # than the round trip the next answer takes to begin)
    assert told_at(tmp_path, monkeypatch, rate=40 * MiB, ttfb=0.06) == 4 * MiB


def test_a_first_answer_behind_a_short_round_trip_asks_about_two_round_trips_before_its_end(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 100 MiB/s, 5 ms: two round trips are 1 MiB; half the answer would have twice the streams
    # reading at once for half of every piece
    at = told_at(tmp_path, monkeypatch, rate=100 * MiB, ttfb=0.005)
    assert 7 * MiB - CHUNK <= at <= 7 * MiB + CHUNK
