"""What one attempt at a Xet file does with each term, decided before any byte moves: the runs an
earlier run left on disk that are kept, the terms copied from files already here, and the xorb
ranges, runs of terms and pieces of terms fetched on how many streams. Pure: no I/O."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Container, Iterable, Sequence
from dataclasses import dataclass

from mdl.xet._protocol import Reconstruction, Term
from mdl.xet._reuse import Copy, Written
from mdl.xet._xorb import MAX_CHUNK

MIN_PIECE = 8 << 20  # a term is cut into pieces (one request and stream each) no smaller than this

# what a term's chunks ``[start, end)`` of ``xorb`` are in files already here, or None
Finder = Callable[[str, int, int], list[Copy] | None]
# the parts of a recorded run whose chunks lie on disk as recorded
Check = Callable[[Written], Iterable[Written]]


@dataclass(frozen=True)
class Resumed:
    """What an earlier run left on disk that is kept: whole terms (``done``), runs of the others
    (``kept``), by term, and their bytes."""

    done: dict[int, Written]
    kept: dict[int, list[Written]]
    resumed: int


@dataclass(frozen=True)
class CopyTerm:
    """Term ``term`` (at byte ``at``) copied from files already here."""

    at: int
    term: int
    copies: list[Copy]


@dataclass(frozen=True)
class FetchTerms:
    """Whole terms ``terms`` of the reconstruction's xorb range ``fetch``; ``alone``: from a
    reconstruction of the file's bytes from the first to the last (a run of a range cut)."""

    at: int
    fetch: int
    terms: list[int]
    alone: bool = False


@dataclass(frozen=True)
class FetchPiece:
    """Bytes ``[at, end)`` of term ``term``, its piece ``piece``, from a reconstruction of that
    span alone."""

    at: int
    term: int
    piece: int
    end: int


Task = CopyTerm | FetchTerms | FetchPiece


@dataclass(frozen=True)
class Plan:
    """The tasks in file order (the sha256 follows the file's start), and for each term fetched as
    pieces its spans (``spans``), the pieces already on disk (``kept``, by piece) and the bytes on
    disk from its start (``moving``)."""

    tasks: list[Task]
    spans: dict[int, list[tuple[int, int]]]
    kept: dict[int, dict[int, Written]]
    moving: dict[int, int]


# --- what is kept
# --------------------------------------------------------------------------------------------------


def resume(rec: Reconstruction, record: Sequence[Written], check: Check) -> Resumed:
    """The chunks an earlier run recorded, each kept while ``check`` finds its bytes on disk as
    recorded (the parts of a run that are) and it lies where the file's terms can hold it: a term
    all of whose chunks are kept is done, another keeps its runs (the chunks between: fetched)."""
    by_xorb: dict[str, list[Written]] = {}
    for run in record:
        by_xorb.setdefault(run.xorb, []).append(run)
    done: dict[int, Written] = {}
    kept: dict[int, list[Written]] = {}
    resumed = 0
    for i, term in enumerate(rec.terms):
        first = rec.offsets[i]
        if not (runs := _kept_runs(term, first, by_xorb.get(term.xorb, ()), check)):
            continue
        got = sum(run.length for run in runs)
        resumed += got
        if got == term.length:
            chunks = tuple(chunk for run in runs for chunk in run.chunks)
            done[i] = Written(term.xorb, term.start, term.end, first, chunks)
        else:
            kept[i] = runs
    return Resumed(done, kept, resumed)


def _kept_runs(term: Term, first: int, recorded: Iterable[Written], check: Check) -> list[Written]:
    """The runs of ``term`` (at byte ``first``) kept: recorded inside it, checked on disk, each
    chunk once, in order, each where the chunks before it can reach, the last where the rest can."""
    end = first + term.length
    runs: list[Written] = []
    for candidate in sorted(
        _inside(term, first, recorded), key=lambda run: (run.start, run.offset)
    ):
        for found in check(candidate):
            before = runs[-1] if runs else None
            part = _after(before, found)  # overlapping runs: each chunk once
            if part is not None and _between(before, part, term.start, first):
                runs.append(part)
    while runs and not _fits(runs[-1].end, runs[-1].offset + runs[-1].length, term.end, end):
        runs.pop()
    return runs


def _inside(term: Term, first: int, recorded: Iterable[Written]) -> list[Written]:
    """The recorded runs that lie inside ``term`` (at byte ``first``), by chunk and by byte."""
    end = first + term.length
    return [
        run
        for run in recorded
        if term.start <= run.start
        and run.end <= term.end
        and first <= run.offset <= end - run.length
    ]


def _fits(chunk: int, at: int, next_chunk: int, next_at: int) -> bool:
    """Whether the chunks from ``chunk`` (at byte ``at``) to ``next_chunk`` (at ``next_at``) can lie
    there: each 1 to MAX_CHUNK bytes (a record placing a run where it cannot be is not believed)."""
    count, size = next_chunk - chunk, next_at - at
    return 0 <= count <= size <= count * MAX_CHUNK


def _after(before: Written | None, run: Written) -> Written | None:
    """The part of ``run`` after the chunks of ``before`` (None: nothing; all of it after no
    run)."""
    if before is None or (cut := before.end - run.start) <= 0:
        return run
    if cut >= len(run.chunks):
        return None
    skipped = sum(size for _, size in run.chunks[:cut])
    return Written(run.xorb, run.start + cut, run.end, run.offset + skipped, run.chunks[cut:])


def _between(before: Written | None, run: Written, start: int, first: int) -> bool:
    """Whether ``run`` can follow ``before`` (None: the start of its term, chunk ``start`` at
    byte ``first``).
    """
    if before is None:
        return _fits(start, first, run.start, run.offset)
    return _fits(before.end, before.offset + before.length, run.start, run.offset)


# --- what is copied and fetched
# ------------------------------------------------------------------------------------


def plan_tasks(
    rec: Reconstruction, resumed: Resumed, *, find: Finder | None, streams: int, split: bool
) -> Plan:
    """Every term not done: copied when all its chunks are in files already here (``find``), else
    fetched with the other terms its xorb range holds, a big range cut (``streams_for``) when
    ``split``; in file order, for ``streams`` streams. A term partly resumed is fetched as the
    pieces between its runs on disk, each from a reconstruction of its span: no kept chunk is
    fetched again."""
    offsets = rec.offsets
    copies, groups = _sources(rec, resumed, find)
    counts = streams_for(rec.terms, groups, streams) if split else {}
    out = Plan([], {}, {}, {})
    out.tasks.extend(CopyTerm(offsets[i], i, found) for i, found in copies.items())
    for i, runs in resumed.kept.items():
        _gaps(out, i, offsets[i], offsets[i] + rec.terms[i].length, runs)
    for f, users in groups.items():
        _fetches(out, rec, f, users, counts.get(f, 1))
    # the sha256 follows the file's start: its frontier moves on in order
    out.tasks.sort(key=lambda task: task.at)
    return out


def _sources(
    rec: Reconstruction, resumed: Resumed, find: Finder | None
) -> tuple[dict[int, list[Copy]], dict[int, list[int]]]:
    """The terms neither done nor kept: those copied (their copies, by term) and those fetched
    (by xorb range)."""
    copies: dict[int, list[Copy]] = {}
    groups: dict[int, list[int]] = {}
    for i, term in enumerate(rec.terms):
        if i in resumed.done or i in resumed.kept:
            continue
        found = find(term.xorb, term.start, term.end) if find is not None else None
        if found is not None and sum(size for c in found for _, size in c.chunks) == term.length:
            copies[i] = found
        else:
            groups.setdefault(rec.fetch_of[i], []).append(i)
    return copies, groups


def _gaps(out: Plan, i: int, first: int, end: int, runs: list[Written]) -> None:
    """Term ``i`` (bytes ``[first, end)``) as pieces: its runs resumed from disk, on disk already,
    and the spans between them, to fetch."""
    spans: list[tuple[int, int]] = []
    kept: dict[int, Written] = {}
    at = first
    for run in runs:
        if run.offset > at:
            spans.append((at, run.offset))
        kept[len(spans)] = run
        spans.append((run.offset, run.offset + run.length))
        at = run.offset + run.length
    if at < end:
        spans.append((at, end))
    out.spans[i], out.kept[i] = spans, kept
    upto = on_disk_from_start(spans, kept)
    if upto:  # the runs from the term's start: the sha256 may go on through them
        out.moving[i] = upto - first
    pieces = enumerate(spans)
    out.tasks.extend(FetchPiece(p, i, j, q) for j, (p, q) in pieces if j not in kept)


def on_disk_from_start(spans: list[tuple[int, int]], on_disk: Container[int]) -> int:
    """Where the pieces on disk (``on_disk``, by index) from a term's start end (0: none)."""
    upto = 0
    while upto in on_disk:
        upto += 1
    return spans[upto - 1][1] if upto else 0


def _fetches(out: Plan, rec: Reconstruction, f: int, users: list[int], count: int) -> None:
    """Xorb range ``f``'s terms ``users`` on ``count`` streams: the range whole, pieces of its one
    big term (each cut where the file's bytes are), or runs of whole terms (a new revision's new
    chunks)."""
    offsets = rec.offsets
    if count == 1:
        out.tasks.append(FetchTerms(offsets[users[0]], f, users))
    elif len(users) == 1:
        (i,) = users
        start, length = offsets[i], rec.terms[i].length
        cuts = [start + length * j // count for j in range(count + 1)]
        out.spans[i] = list(itertools.pairwise(cuts))
        out.tasks.extend(FetchPiece(p, i, j, q) for j, (p, q) in enumerate(out.spans[i]))
    else:
        out.tasks.extend(
            FetchTerms(offsets[run[0]], f, run, alone=True)
            for run in runs(users, [rec.terms[i].length for i in users], count)
        )


def streams_for(terms: Sequence[Term], groups: dict[int, list[int]], room: int) -> dict[int, int]:
    """How many streams each xorb range gets, so that the file has ``room`` (a range is one
    request: one stream per 64 MiB xorb, or one for all of a new revision's new chunks, is fewer
    than the plain path opens). The range with most bytes a stream is cut again, never below
    ``MIN_PIECE`` bytes nor, for a range of many terms, into more runs than it has terms."""
    size = {f: sum(terms[i].length for i in users) for f, users in groups.items()}
    count = dict.fromkeys(groups, 1)
    streams = len(groups)
    while streams < room:
        cuttable = [f for f in groups if len(groups[f]) == 1 or count[f] < len(groups[f])]
        f = max(cuttable, key=lambda g: size[g] / count[g], default=None)
        if f is None or size[f] // (count[f] + 1) < MIN_PIECE:
            break
        count[f] += 1
        streams += 1
    return count


def runs(items: list[int], sizes: list[int], count: int) -> list[list[int]]:
    """``items`` cut into ``count`` runs in order, of about equal total ``sizes`` (none empty)."""
    total, done = sum(sizes), 0
    cut: list[list[int]] = []
    current: list[int] = []
    for k, (item, size) in enumerate(zip(items, sizes, strict=True)):
        current.append(item)
        done += size
        left_items, left_runs = len(items) - k - 1, count - len(cut) - 1
        if left_runs and (done >= total * (len(cut) + 1) / count or left_items == left_runs):
            cut.append(current)
            current = []
    cut.append(current)
    return cut
