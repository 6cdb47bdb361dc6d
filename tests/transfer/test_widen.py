"""A piece asked for the first time takes on the unasked pieces after it while a request's round
trip would cost more than a quarter of its time (``DownloadState.widen``): small pieces keep the
streams' bytes within what the hash keeps in memory, a far server's round trips are paid fewer
times. Never over a piece a stream asked for, and only the engine's own pieces."""

from __future__ import annotations

import itertools
import time
from pathlib import Path

from runfixtures import transfer_job

from mdl.transfer._state import DownloadState, stream_rate
from mdl.transfer.context import JobContext, Ledger
from mdl.transfer.scheduling import Piece

MiB = 1 << 20


def state_of(tmp_path: Path, pieces: list[Piece], **beside: object) -> DownloadState:
    job = transfer_job(tmp_path, "http://127.0.0.1:9/f.bin", size=pieces[-1].end or 0)
    state = DownloadState(job, -1, pieces, None, JobContext(ledger=Ledger(), **beside))  # type: ignore[arg-type]
    state.multi = True
    return state


def moving(state: DownloadState, *, per_stream: int, ttfb: float, streams: int) -> None:
    """As if each of ``streams`` streams had moved ``per_stream`` bytes a second, and answers
    began ``ttfb`` seconds after they were asked."""
    state.began = time.monotonic() - 10.0
    state.paced = (state.began, 0)
    state.fetched = per_stream * streams * 10
    state.ttfb = ttfb


def test_a_long_round_trip_takes_on_unasked_pieces_up_to_one_a_stream_asked(tmp_path: Path) -> None:
    pieces = [Piece(start, start + 4 * MiB) for start in range(0, 160 * MiB, 4 * MiB)]
    pieces[5].asked = pieces[5].end or 0  # another stream's request is on the way
    state = state_of(tmp_path, list(pieces))
    # 8 MiB/s a stream, 0.5 s before an answer begins: a piece of 16 MiB at least
    moving(state, per_stream=8 * MiB, ttfb=0.5, streams=4)
    first, taken = pieces[0], pieces[1:4]
    state.widen(first, 4)
    assert (first.start, first.end) == (0, 16 * MiB)
    assert all(
        p not in state.pieces and p.complete for p in taken
    )  # (a stream that took one: done)
    # the next stops at the piece a stream asked for, which keeps its bytes
    state.widen(pieces[4], 4)
    assert (pieces[4].start, pieces[4].end) == (16 * MiB, 20 * MiB)
    assert (pieces[5].start, pieces[5].end) == (20 * MiB, 24 * MiB)
    ends = [(p.start, p.end) for p in state.pieces]
    assert ends[0][0] == 0 and ends[-1][1] == 160 * MiB
    assert all(a[1] == b[0] for a, b in itertools.pairwise(ends))  # (they still tile the file)


def test_a_piece_is_never_widened_into_the_file_s_last_round(tmp_path: Path) -> None:
    # 4 streams, 8 MiB pieces, a round trip worth 16 MiB: a piece widened near the end would run
    # on alone after the other streams ended (the last 16 MiB of a file as one request, 1.3 times
    # the time the last round takes)
    pieces = [Piece(start, start + 8 * MiB) for start in range(0, 128 * MiB, 8 * MiB)]
    state = state_of(tmp_path, list(pieces))
    moving(state, per_stream=8 * MiB, ttfb=0.5, streams=4)
    state.widen(pieces[0], 4)  # 112 MiB after it: three streams' share of three such pieces
    assert (pieces[0].start, pieces[0].end) == (0, 16 * MiB)
    late = pieces[10]  # 40 MiB after it: three more pieces of 16 MiB would not fit
    state.widen(late, 4)
    assert (late.start, late.end) == (80 * MiB, 88 * MiB)
    assert [p.end - p.start for p in state.pieces[-6:]] == [8 * MiB] * 6


def test_a_short_round_trip_an_asked_piece_and_a_loaders_ranges_are_left_as_they_are(
    tmp_path: Path,
) -> None:
    def spans(state: DownloadState) -> list[tuple[int, int | None]]:
        return [(p.start, p.end) for p in state.pieces]

    plan = [(start, start + 4 * MiB) for start in range(0, 16 * MiB, 4 * MiB)]
    # loopback: 1 ms before an answer begins, 100 MiB/s a stream
    state = state_of(tmp_path, [Piece(*span) for span in plan])
    moving(state, per_stream=100 * MiB, ttfb=0.001, streams=4)
    state.widen(state.pieces[0], 4)
    assert spans(state) == plan
    # a far server, but the piece was asked for already (a retry, a resume)
    state = state_of(tmp_path, [Piece(*span) for span in plan])
    moving(state, per_stream=8 * MiB, ttfb=0.5, streams=4)
    state.pieces[0].asked = 2 * MiB
    state.widen(state.pieces[0], 4)
    assert spans(state) == plan
    # a loader's trusted ranges, fetched in order: its pieces are its ranges
    state = state_of(tmp_path, [Piece(*span) for span in plan], in_order=True)
    moving(state, per_stream=8 * MiB, ttfb=0.5, streams=4)
    state.widen(state.pieces[0], 4)
    assert spans(state) == plan


def test_a_streams_pace_is_counted_from_when_the_streams_began_not_from_a_pause_before(
    tmp_path: Path,
) -> None:
    """A fetch paused after its head (``PartFetch.ahead``) for minutes: the streams that run on
    are paced from when they began (``Restarts._run_streams``), or a stream's pace reads near 0
    and any moving hash holds every stream (``Hasher.room``)."""
    state = state_of(tmp_path, [Piece(0, 4 * MiB), Piece(4 * MiB, 8 * MiB)])
    state.began = time.monotonic() - 600.0  # its head, ten minutes ago
    state.fetched = 4 * MiB
    state.paced = (time.monotonic() - 2.0, state.fetched)  # the streams, two seconds ago
    state.fetched += 80 * MiB
    # ~10 MiB/s a stream; from the head on, 0.03 (a minute for these lines: still 10 times that)
    assert stream_rate(state, 4) >= 80 * MiB / 4 / 60


def test_a_resumed_file_s_pieces_on_disk_are_no_round_to_widen_into(tmp_path: Path) -> None:
    # 4 streams, the last 96 MiB of 128 on disk (a resume): the 32 MiB left are the last round,
    # four pieces, however many bytes the file has after them
    pieces = [Piece(start, start + 8 * MiB) for start in range(0, 128 * MiB, 8 * MiB)]
    for done in pieces[4:]:
        done.done = 8 * MiB
    state = state_of(tmp_path, list(pieces))
    moving(state, per_stream=8 * MiB, ttfb=0.5, streams=4)
    state.widen(pieces[0], 4)
    assert [(p.start, p.end) for p in state.pieces[:4]] == [
        (start, start + 8 * MiB) for start in range(0, 32 * MiB, 8 * MiB)
    ]
