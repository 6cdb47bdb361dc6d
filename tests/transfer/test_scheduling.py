"""How a file is cut into ranges, and how a pool of streams works through them."""

from __future__ import annotations

import itertools
import threading

import pytest

from mdl.transfer.outcomes import StreamStopped
from mdl.transfer.scheduling import MiB, Piece, plan_pieces, run_pieces

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
        # Never more than 4 pieces per stream; every piece but the last a whole number of MiB.
        assert len(pieces) <= 4 * connections
        assert all((p.end - p.start) % MiB == 0 for p in pieces[:-1])  # type: ignore[operator]


def test_plan_pieces_unknown_size_and_threshold() -> None:
    assert plan_pieces(None, connections=8, split_threshold=SMALL) == [Piece(0, None)]
    assert plan_pieces(100, connections=8, split_threshold=101) == [Piece(0, 100)]
    assert len(plan_pieces(256 * MiB, connections=8, split_threshold=32 * MiB)) == 32


def test_piece_complete() -> None:
    assert Piece(0, 0).complete
    assert not Piece(0, 10, 9).complete
    assert Piece(5, 10, 5).complete
    assert not Piece(0, None, 100).complete


def test_run_pieces_runs_every_piece_once_over_the_streams() -> None:
    pieces = [Piece(i, i + 1) for i in range(10)]
    ran: list[int] = []
    lock = threading.Lock()

    def run(piece: Piece) -> None:
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

    def run(piece: Piece) -> None:
        if piece.start == 0:
            raise OSError("disk on fire")
        if not stop.wait(5):  # a sibling keeps streaming until told to stop
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
