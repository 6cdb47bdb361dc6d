"""The planner on its own: what an attempt copies, keeps and fetches, on how many streams, decided
from the reconstruction and what is on disk, with no I/O."""

from __future__ import annotations

import itertools
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from mdl.xet._plan import (
    MIN_PIECE,
    CopyTerm,
    FetchPiece,
    FetchTerms,
    Resumed,
    plan_tasks,
    resume,
    streams_for,
)
from mdl.xet._protocol import Fetch, Reconstruction, Term
from mdl.xet._reuse import Copy, Written

A, B = "a" * 64, "b" * 64
NOTHING = Resumed({}, {}, 0)


def _rec(terms: list[Term]) -> Reconstruction:
    """Each xorb's terms held by one fetch of it (its chunks from the least start to the most end)."""
    fetches: list[Fetch] = []
    fetch_of: list[int] = []
    for term in terms:
        known = [i for i, f in enumerate(fetches) if f.xorb == term.xorb]
        if not known:
            mine = [t for t in terms if t.xorb == term.xorb]
            low, high = min(t.start for t in mine), max(t.end for t in mine)
            fetches.append(Fetch(term.xorb, f"https://cas.test/{term.xorb}", low, high, 0, 1 << 40))
            known = [len(fetches) - 1]
        fetch_of.append(known[0])
    return Reconstruction(0, tuple(terms), tuple(fetches), tuple(fetch_of))


def _run(xorb: str, start: int, offset: int, sizes: list[int]) -> Written:
    return Written(xorb, start, start + len(sizes), offset, tuple((bytes(32), n) for n in sizes))


def test_terms_are_copied_when_here_else_fetched_by_range_in_file_order() -> None:
    rec = _rec([Term(A, 0, 2, 100), Term(B, 0, 1, 50), Term(A, 2, 4, 100)])
    here = [Copy(Path("/m/other"), 0, ((bytes(32), 60), (bytes(32), 40)))]

    def find(xorb: str, start: int, end: int) -> list[Copy] | None:
        return here if (xorb, start, end) == (B, 0, 1) or (xorb, start) == (A, 2) else None

    plan = plan_tasks(rec, NOTHING, find=find, streams=8, split=False)
    # term 1's copy is 100 bytes, not its 50: fetched; term 2's is whole: copied
    assert plan.tasks == [FetchTerms(0, 0, [0]), FetchTerms(100, 1, [1]), CopyTerm(150, 2, here)]


def test_done_terms_are_not_planned_and_a_kept_term_is_fetched_between_its_runs() -> None:
    rec = _rec([Term(A, 0, 1, 10), Term(B, 0, 4, 40)])
    kept = [_run(B, 0, 10, [10]), _run(B, 2, 30, [10])]  # chunks 0 and 2 of term 1 on disk
    resumed = Resumed({0: _run(A, 0, 0, [10])}, {1: kept}, 30)
    plan = plan_tasks(rec, resumed, find=None, streams=8, split=True)
    assert plan.spans[1] == [(10, 20), (20, 30), (30, 40), (40, 50)]
    assert plan.kept[1] == {0: kept[0], 2: kept[1]}
    assert plan.tasks == [FetchPiece(20, 1, 1, 30), FetchPiece(40, 1, 3, 50)]
    assert plan.moving == {1: 10}  # its first run, from its start: the sha256 may go on through it


def test_a_big_lone_term_is_cut_into_pieces_no_smaller_than_min_piece() -> None:
    size = 5 * MIN_PIECE + 3
    rec = _rec([Term(A, 0, 100, size)])
    plan = plan_tasks(rec, NOTHING, find=None, streams=16, split=True)
    spans = plan.spans[0]
    assert len(spans) == 5 and spans[0][0] == 0 and spans[-1][1] == size
    assert all(q - p >= MIN_PIECE for p, q in spans)
    assert all(a[1] == b[0] for a, b in itertools.pairwise(spans))
    assert plan.tasks == [FetchPiece(p, 0, j, q) for j, (p, q) in enumerate(spans)]
    unsplit = plan_tasks(rec, NOTHING, find=None, streams=16, split=False)
    assert unsplit.tasks == [FetchTerms(0, 0, [0])] and unsplit.spans == {}


def test_many_terms_of_one_range_come_as_runs_of_whole_terms() -> None:
    terms = [Term(A, 2 * i, 2 * i + 2, MIN_PIECE) for i in range(6)]
    plan = plan_tasks(_rec(terms), NOTHING, find=None, streams=3, split=True)
    assert all(isinstance(task, FetchTerms) and task.alone for task in plan.tasks)
    runs = [task.terms for task in plan.tasks if isinstance(task, FetchTerms)]
    assert runs == [[0, 1], [2, 3], [4, 5]]
    assert [task.at for task in plan.tasks] == [0, 2 * MIN_PIECE, 4 * MIN_PIECE]


@given(
    sizes=st.lists(st.integers(1, 6 * MIN_PIECE), min_size=1, max_size=8), room=st.integers(1, 20)
)
def test_streams_for_gives_every_range_one_and_never_cuts_below_min_piece(
    sizes: list[int], room: int
) -> None:
    terms = [Term(A, i, i + 1, size) for i, size in enumerate(sizes)]
    groups = {i: [i] for i in range(len(sizes))}
    counts = streams_for(terms, groups, room)
    assert set(counts) == set(groups) and all(count >= 1 for count in counts.values())
    assert sum(counts.values()) <= max(room, len(groups))
    assert all(count == 1 or sizes[f] // count >= MIN_PIECE for f, count in counts.items())


def test_resume_keeps_what_the_check_finds_and_completes_a_whole_term() -> None:
    rec = _rec([Term(A, 0, 2, 20), Term(A, 2, 4, 20)])
    whole, part = _run(A, 0, 0, [10, 10]), _run(A, 2, 20, [10])
    kept = resume(rec, [whole, part, _run(B, 0, 0, [10])], lambda run: [run])
    assert kept.done == {0: whole} and kept.kept == {1: [part]} and kept.resumed == 30
    assert resume(rec, [whole, part], lambda run: []) == NOTHING
