"""How a file is cut into ranges, and how a pool of streams works through them."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st
from runfixtures import HANG

from mdl.transfer.body import RAW_LEAST
from mdl.transfer.scheduling import (
    FIRST_WINDOW,
    KEEP_AHEAD,
    MAX_PIECES,
    MIN_PIECE,
    MIN_STEAL,
    MiB,
    Piece,
    StreamStopped,
    plan_pieces,
    run_pieces,
    split_largest,
    spread,
    stealable,
    window,
)

SMALL = 64 * 1024


@pytest.mark.parametrize("size", [0, 1, SMALL - 1, 1_000_003, 9_000_003, 64 * MiB + 7, 1 << 34])
@pytest.mark.parametrize("connections", [1, 2, 8, 16])
def test_plan_pieces_cover_the_file_exactly(size: int, connections: int) -> None:
    pieces = plan_pieces(size, connections=connections, split_threshold=SMALL)
    assert pieces[0].start == 0
    assert pieces[-1].end == size
    for before, after in itertools.pairwise(pieces):
        assert before.end == after.start
    assert all(p.done == 0 for p in pieces)
    if size > 0:
        assert all(p.end is not None and p.end > p.start for p in pieces)
    if connections == 1 or size < SMALL:
        assert len(pieces) == 1
    else:
        # Pieces of one length in file order (streams take them from the front): every stream gets
        # one, none under MIN_PIECE (but a file under it), no more than MAX_PIECES, what the hash
        # keeps over the streams where that allows (the streams land their bytes within it);
        # every piece but the last on a 64 KiB boundary.
        length = pieces[0].end - pieces[0].start  # type: ignore[operator]
        assert all(p.end - p.start == length for p in pieces[:-1])  # type: ignore[operator]
        assert length >= min(size, MIN_PIECE)
        assert len(pieces) <= MAX_PIECES
        assert len(pieces) >= min(connections, size // MIN_PIECE)
        piece = max(MIN_PIECE, KEEP_AHEAD // connections)
        assert length <= 2 * max(piece, -(-size // MAX_PIECES)) + 64 * 1024
        assert all((p.end - p.start) % (64 * 1024) == 0 for p in pieces[:-1])  # type: ignore[operator]
        # whole rounds of the streams (one round at least when there are fewer pieces)
        assert len(pieces) <= connections or len(pieces) % connections == 0


def test_plan_pieces_unknown_size_and_threshold() -> None:
    spans = [
        (p.start, p.end, p.done) for p in plan_pieces(None, connections=8, split_threshold=SMALL)
    ]
    assert spans == [(0, None, 0)]
    spans = [(p.start, p.end, p.done) for p in plan_pieces(100, connections=8, split_threshold=101)]
    assert spans == [(0, 100, 0)]
    # KEEP_AHEAD over the streams each, taken in file order: 8 streams land their bytes within the
    # 128 MiB the hash keeps in memory
    assert KEEP_AHEAD == 128 * MiB  # noqa: SIM300
    assert len(plan_pieces(1024 * MiB, connections=8, split_threshold=32 * MiB)) == 64
    # 300 MiB on 8 streams: one round of 8 pieces, not two of 8 (a far server's round trip between
    # them costs more than reading back the file), nor 18 (two alone at the end while 6 idle)
    assert len(plan_pieces(300 * MiB, connections=8, split_threshold=32 * MiB)) == 8
    # every range asked, a stolen tail too, read past the parser (through it: four copies a byte)
    assert RAW_LEAST <= MIN_STEAL <= MIN_PIECE
    # no more than MAX_PIECES (a resume record stays small)
    assert len(plan_pieces(100 << 30, connections=16, split_threshold=32 * MiB)) <= MAX_PIECES
    # 4 MiB each at least
    assert len(plan_pieces(33 * MiB, connections=16, split_threshold=32 * MiB)) == 8


def tiles(pieces: list[Piece], size: int) -> bool:
    return (
        pieces[0].start == 0
        and pieces[-1].end == size
        and all(a.end == b.start for a, b in itertools.pairwise(pieces))
    )


def test_a_steal_takes_the_unasked_half_of_the_piece_with_most_left() -> None:
    pieces = [Piece(0, 100 * MiB, done=90 * MiB), Piece(100 * MiB, 200 * MiB, done=10 * MiB)]
    # its stream has asked up to 130 MiB: those bytes stay its own
    pieces[1].asked = 30 * MiB + 100 * MiB
    tail = split_largest(pieces, least=MIN_STEAL)
    assert tail is not None
    assert tiles(pieces, 200 * MiB)
    # from 110 MiB, half of the 90 MiB left (past the asked 130)
    assert pieces[1].end == tail.start == 155 * MiB
    assert (tail.end, tail.done) == (200 * MiB, 0)


def test_a_steal_never_takes_bytes_already_asked_for() -> None:
    piece = Piece(0, 40 * MiB, done=MiB)
    piece.asked = 39 * MiB  # one request covers nearly all of it
    assert stealable(piece) == MiB
    assert split_largest([piece], least=MIN_STEAL) is None
    assert piece.end == 40 * MiB


def test_no_steal_below_what_a_request_costs() -> None:
    piece = Piece(0, 100 * MiB, done=0)
    piece.asked = MiB
    # a round trip is worth more than half of it
    assert split_largest([piece], least=60 * MiB) is None
    assert split_largest([piece], least=10 * MiB) is not None


@given(
    st.lists(
        st.tuples(st.integers(1, 64 * MiB), st.floats(0, 1), st.floats(0, 1)),
        min_size=1,
        max_size=8,
    ),
    st.integers(0, 16 * MiB),
)
def test_steals_keep_the_pieces_tiling_the_file(
    shape: list[tuple[int, float, float]], least: int
) -> None:
    pieces: list[Piece] = []
    offset = 0
    for length, done, asked in shape:
        piece = Piece(offset, offset + length, done=int(length * done))
        piece.asked = piece.start + piece.done + int((length - piece.done) * asked)
        pieces.append(piece)
        offset += length
    before = [(p.start + p.done, p.asked) for p in pieces]
    while (tail := split_largest(pieces, least=least)) is not None:
        assert tail.end is not None and tail.end - tail.start >= max(least, MIN_STEAL)
    assert tiles(pieces, offset)
    kept = [(p.start + p.done, p.asked) for p in pieces if p.done or p.asked]
    # no stream lost bytes it had or asked for
    assert all(pair in kept for pair in before if pair[0] or pair[1])
    assert all(p.end is not None and p.asked <= p.end for p in pieces if p.asked)


def test_spread_gives_every_connection_a_piece_when_resuming() -> None:
    pieces = [Piece(0, 64 * MiB, done=64 * MiB), Piece(64 * MiB, 256 * MiB, done=MiB)]
    spread(pieces, connections=8, least=MIN_PIECE)
    assert sum(not p.complete for p in pieces) == 8
    assert tiles(pieces, 256 * MiB)


def test_windows_start_small_then_follow_the_stream_rate() -> None:
    piece = Piece(0, 1024 * MiB)
    assert window(piece, 0, ttfb=0.05) == FIRST_WINDOW
    assert window(piece, 0, ttfb=0.3) == 60 * MiB  # slow round trips: a longer first request
    piece.rate = 100 * MiB  # bytes/s: about two seconds' worth next
    assert window(piece, 0, ttfb=0.05) == 200 * MiB
    assert window(piece, 0, ttfb=0.3) == 600 * MiB  # slow round trips: longer requests
    assert window(piece, 1000 * MiB, ttfb=0.05) == 1024 * MiB  # never past the piece


def test_no_short_request_for_what_is_left_of_a_piece() -> None:
    piece = Piece(0, FIRST_WINDOW + FIRST_WINDOW // 2 - 1)
    assert window(piece, 0, ttfb=0.01) == piece.end  # the remainder would be under half a window
    piece = Piece(0, 2 * FIRST_WINDOW)
    assert window(piece, 0, ttfb=0.01) == FIRST_WINDOW


def test_run_pieces_runs_every_piece_once_over_the_streams() -> None:
    pieces = [Piece(i, i + 1) for i in range(10)]
    ran: list[int] = []
    lock = threading.Lock()

    def run(piece: Piece, _near_end: object) -> None:
        with lock:
            ran.append(piece.start)

    run_pieces(pieces, run, connections=3, name="t", stopped=lambda: False, on_failure=lambda: None)
    assert sorted(ran) == list(range(10))


def test_run_pieces_stops_the_others_and_raises_the_first_failure() -> None:
    stop = threading.Event()
    failures: list[str] = []

    def on_failure() -> None:
        failures.append("stop")
        stop.set()

    def run(piece: Piece, _near_end: object) -> None:
        if piece.start == 0:
            raise OSError("disk on fire")
        if not stop.wait(HANG):  # a sibling keeps streaming until told to stop
            raise AssertionError("never stopped")
        raise StreamStopped

    with pytest.raises(OSError, match="disk on fire"):
        run_pieces(
            [Piece(0, 1), Piece(1, 2)],
            run,
            connections=2,
            name="t",
            stopped=stop.is_set,
            on_failure=on_failure,
        )
    assert failures == ["stop"]


def test_run_pieces_idle_streams_steal_until_nothing_is_worth_it() -> None:
    queue = [Piece(0, 10)]
    extra = [Piece(10, 20), Piece(20, 30)]
    ran: list[int] = []
    lock = threading.Lock()

    def steal() -> Piece | None:
        with lock:
            return extra.pop() if extra else None

    def run(piece: Piece, _near_end: object) -> None:
        with lock:
            ran.append(piece.start)

    run_pieces(
        queue,
        run,
        connections=1,
        name="t",
        stopped=lambda: False,
        on_failure=lambda: None,
        steal=steal,
    )
    assert sorted(ran) == [0, 10, 20]


def test_run_pieces_overlap_asks_for_the_next_piece_before_the_current_one_ends() -> None:
    # One stream: piece 0 says it is near its end, and ends only once piece 1 has begun (on the
    # other thread the overlap allows); without the overlap piece 1 never begins while 0 runs.
    began = {start: threading.Event() for start in (0, 1)}
    order: list[int] = []

    def run(piece: Piece, near_end: Callable[[], None]) -> None:
        order.append(piece.start)
        began[piece.start].set()
        if piece.start == 0:
            near_end()
            assert began[1].wait(HANG), "the next piece was not asked for before the end"

    run_pieces(
        [Piece(0, 1), Piece(1, 2)],
        run,
        connections=1,
        name="t",
        stopped=lambda: False,
        on_failure=lambda: None,
        overlap=True,
    )
    assert order == [0, 1]  # file order: the next piece is the one after


def test_run_pieces_without_overlap_keeps_one_piece_per_stream_at_a_time() -> None:
    running, most, lock = [0], [0], threading.Lock()

    def run(piece: Piece, near_end: Callable[[], None]) -> None:
        near_end()  # heard by no one: the stream holds its place till the piece ends
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        with lock:
            running[0] -= 1

    pieces = [Piece(i, i + 1) for i in range(20)]
    run_pieces(pieces, run, connections=1, name="t", stopped=lambda: False, on_failure=lambda: None)
    assert most[0] == 1


def test_piece_complete() -> None:
    assert Piece(0, 0).complete
    assert not Piece(0, 10, 9).complete
    assert Piece(5, 10, 5).complete
    assert not Piece(0, None, 100).complete
    assert Piece(0, 10, 4).left == 6
    assert Piece(0, None, 4).left == 0  # an unknown end cannot be split
