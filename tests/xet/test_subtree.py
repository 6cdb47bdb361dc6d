"""Xet ranges, their arithmetic: Merkle hash subtrees merged into the roots of xet-core's published
reference vectors (merklehash/aggregated_hashes.rs test_correctness, in test_hashing), the CAS
stand-in's summaries (tests/xetserver.py, written apart from mdl) read strictly, and every window
of a file verified against the file hash hf_xet computes; any surprise in an answer is refused."""

from __future__ import annotations

import copy
import itertools
import json
import random
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import hf_xet
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from profiles import examples
from servers import make_data
from xet.test_hashing import REFERENCE, from_hex
from xetserver import XetFile, XetStore, chunk_hashes_answer, hump, hump_json

from mdl import partsize
from mdl.xet import _ranges
from mdl.xet._hashing import chunk_hash, merkle_root, salted, to_hex
from mdl.xet._ranges import PAST, Window, parse_answer, parse_closes
from mdl.xet._subtree import Subtree


def _runs(chunks: list[tuple[bytes, int]], cuts: list[int]) -> Subtree:
    """``chunks`` cut at ``cuts`` into runs, each summed up alone, merged left to right."""
    bounds = [0, *cuts, len(chunks)]
    runs = [
        Subtree.of(chunks[a:b], at_start=a == 0, at_end=b == len(chunks))
        for a, b in itertools.pairwise(bounds)
    ]
    merged = runs[0]
    for run in runs[1:]:
        merged = merged.merge(run)
    return merged


@pytest.mark.parametrize(
    ("leaves", "node", "file"),
    [r for r in REFERENCE if r[0]],
    ids=[f"{len(r[0])}-leaves" for r in REFERENCE if r[0]],
)
def test_runs_merged_anywhere_give_xet_cores_published_roots(
    leaves: list[tuple[str, int]], node: str, file: str
) -> None:
    chunks = [(from_hex(text), size) for text, size in leaves]
    n = len(chunks)
    for cuts in (
        [[]] + [[a] for a in range(1, n)] + [[a, b] for a in range(1, n) for b in range(a + 1, n)]
    ):
        root = _runs(chunks, cuts).root()
        assert root is not None and to_hex(root) == node, cuts
        assert to_hex(salted(root)) == file


def test_mdl_and_the_stand_in_sum_up_a_run_alike() -> None:
    """Two ports written apart (mdl's, the stand-in's) give the same nodes and levels."""
    rng = random.Random(7)
    for n in (1, 5, 30, 200, 700):
        chunks = [(rng.randbytes(32), rng.randrange(1, 130_000)) for _ in range(n)]
        for at_start in (False, True):
            for at_end in (False, True):
                ours = Subtree.of(chunks, at_start=at_start, at_end=at_end)
                lefts, rights = hump(chunks, at_start, at_end)
                assert [list(level) for level in ours.lefts] == lefts
                assert [list(level) for level in ours.rights] == rights
                assert ours.size == sum(size for _, size in chunks)
        cuts = sorted(rng.sample(range(1, n), min(3, n - 1))) if n > 1 else []
        assert _runs(chunks, cuts).root() == merkle_root(chunks)


def _bounds(xf: XetFile) -> list[int]:
    out = [0]
    for _, _, size in xf.chunks:
        out.append(out[-1] + size)
    return out


def _chunks(data: bytes, bounds: list[int], start: int, end: int) -> list[tuple[bytes, int]]:
    i, j = bounds.index(start), bounds.index(end)
    return [
        (chunk_hash(data[bounds[k] : bounds[k + 1]]), bounds[k + 1] - bounds[k])
        for k in range(i, j)
    ]


@pytest.fixture(scope="module")
def minted(tmp_path_factory: pytest.TempPathFactory) -> tuple[bytes, XetFile, bytes]:
    """A 3 MiB file, minted by the stand-in, its file hash from hf_xet (raw)."""
    data = make_data(3 << 20, seed=11)
    path = Path(tmp_path_factory.mktemp("xet")) / "file.bin"
    path.write_bytes(data)
    [info] = hf_xet.hash_files([str(path)])
    xf = XetStore().add(data)
    assert xf.hash == info.hash
    return data, xf, from_hex(info.hash)


def _answer(xf: XetFile, start: int, end: int) -> dict[str, Any]:
    return chunk_hashes_answer(xf, [(start, end)])


def _parse(answer: object, xf: XetFile, start: int, end: int) -> Window | None:
    body = answer if isinstance(answer, bytes) else json.dumps(answer).encode()
    return parse_answer(body, size=xf.size, start=start, end=end)


def test_every_window_of_a_file_verifies_against_hf_xets_hash(
    minted: tuple[bytes, XetFile, bytes],
) -> None:
    data, xf, xet_hash = minted
    bounds, start, seen = _bounds(xf), 0, 0
    while start < xf.size:
        end = min(xf.size, start + (512 << 10))
        window = _parse(_answer(xf, start, end), xf, start, end)
        assert window is not None and window.start == start and window.end >= end
        chunks = _chunks(data, bounds, window.start, window.end)
        assert window.holds(chunks, xet_hash)
        # one byte changed in any chunk, or the chunks of another place: not this window
        flipped = bytearray(data[window.start : window.start + chunks[0][1]])
        flipped[len(flipped) // 2] ^= 1
        assert not window.holds([(chunk_hash(flipped), chunks[0][1]), *chunks[1:]], xet_hash)
        assert not window.holds(chunks[:-1], xet_hash)
        start, seen = window.end, seen + 1
    assert seen >= 4


def _middle(xf: XetFile) -> tuple[int, int]:
    """A window's bounds well inside the file, its start a chunk's."""
    bounds = _bounds(xf)
    start = next(b for b in bounds if b >= xf.size // 3)
    return start, start + (256 << 10)


def _lie(answer: dict[str, Any], how: str) -> dict[str, Any]:
    out = copy.deepcopy(answer)
    before, after = out["hashRanges"]
    if how == "truncated":  # the summary's last node gone, its level counts kept
        before["nodes"].pop()
    elif how == "truncated-consistent":  # ... and its counts made to fit
        before["nodes"].pop()  # the last in the bytes' order: the lowest level's right, or the top
        levels = before["levels"]
        lowest = next((level for level in levels if level[1]), None)
        (lowest or levels[-1])[1 if lowest else 0] -= 1
    elif how == "moved":  # the window a chunk later than asked
        out["windows"][0]["dirtyByteRange"][0] += 1
    elif how == "swapped":  # the summaries' sides exchanged
        out["hashRanges"] = [after, before]
    elif how == "ends":  # the summary before claims to end the file
        before["at_end"] = True
    elif how == "extra":
        out["note"] = "x"
    elif how == "two windows":
        out["windows"].append(out["windows"][0])
    elif how == "too far":
        out["windows"][0]["dirtyByteRange"][1] += PAST + (1 << 20)
    elif how == "size":
        out["fileSize"] += 1
    elif how == "node size":
        before["nodes"][0]["size"] = True
    return out


@pytest.mark.parametrize(
    "how",
    [
        "truncated",
        "truncated-consistent",
        "moved",
        "swapped",
        "ends",
        "extra",
        "two windows",
        "too far",
        "size",
        "node size",
    ],
)
def test_an_answer_that_does_not_add_up_is_refused(
    minted: tuple[bytes, XetFile, bytes], how: str
) -> None:
    _, xf, _ = minted
    start, end = _middle(xf)
    honest = _answer(xf, start, end)
    assert _parse(honest, xf, start, end) is not None
    assert _parse(_lie(honest, how), xf, start, end) is None


def test_a_lying_summary_that_adds_up_fails_the_hash(minted: tuple[bytes, XetFile, bytes]) -> None:
    data, xf, xet_hash = minted
    start, end = _middle(xf)
    answer = _answer(xf, start, end)
    node = answer["hashRanges"][1]["nodes"][0]
    node["hash"] = node["hash"][:-1] + ("0" if node["hash"][-1] != "0" else "1")
    window = _parse(answer, xf, start, end)
    assert window is not None  # it reads well ...
    assert not window.holds(_chunks(data, _bounds(xf), window.start, window.end), xet_hash)


def test_a_repeated_region_verifies_only_where_it_lies(tmp_path: Path) -> None:
    """The same bytes twice in a file: the answer for the first copy, claimed for the second, is
    refused (the bytes before it do not add up), and the first copy's chunks do not verify there."""
    part = make_data(1 << 20, seed=4)
    data = part + part + make_data(1 << 19, seed=5)
    xf = XetStore().add(data)
    bounds = _bounds(xf)
    # a chunk bound in the first copy that is one in the second (the chunking resynced there)
    first = next(b for b in bounds if b >= 1 << 18 and b + len(part) in bounds)
    second = first + len(part)
    end = first + (256 << 10)
    answer = _answer(xf, first, end)
    answer["windows"][0]["dirtyByteRange"] = [
        second,
        answer["windows"][0]["dirtyByteRange"][1] + len(part),
    ]
    assert _parse(answer, xf, second, end + len(part)) is None
    real = _parse(_answer(xf, second, end + len(part)), xf, second, end + len(part))
    assert real is not None
    chunks = _chunks(data, bounds, real.start, real.end)
    assert real.holds(chunks, from_hex(xf.hash))


@settings(max_examples=examples(300), deadline=None)
@given(st.binary(max_size=400))
def test_any_bytes_as_an_answer_never_raise(body: bytes) -> None:
    assert parse_answer(body, size=1 << 20, start=0, end=1 << 19) is None


_json = st.recursive(
    st.none() | st.booleans() | st.integers(-2, 1 << 64) | st.text(max_size=70),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=5)
    ),
    max_leaves=30,
)


@settings(max_examples=examples(300), deadline=None)
@given(
    st.fixed_dictionaries(
        {
            "totalChunks": _json,
            "fileSize": st.just(1 << 20) | _json,
            "windows": st.lists(st.fixed_dictionaries({"dirtyByteRange": _json}), max_size=2),
            "hashRanges": st.lists(
                st.none()
                | st.fixed_dictionaries(
                    {"nodes": _json, "levels": _json, "at_start": _json, "at_end": _json}
                ),
                max_size=3,
            ),
            "gapVerification": _json,
        }
    )
)
def test_any_answer_of_the_right_shape_never_raises(answer: dict[str, Any]) -> None:
    window = parse_answer(json.dumps(answer).encode(), size=1 << 20, start=0, end=1 << 19)
    assert window is None or (window.start, window.before) == (0, None)


def test_a_summary_read_back_is_the_one_sent() -> None:
    rng = random.Random(3)
    chunks = [(rng.randbytes(32), rng.randrange(1, 100_000)) for _ in range(300)]
    sent = hump_json(hump(chunks, False, True), False, True)
    size = sum(s for _, s in chunks)
    answer = {
        "totalChunks": 301,
        "fileSize": size + 10,
        "windows": [{"dirtyByteRange": [0, 10]}],
        "hashRanges": [None, sent],
        "gapVerification": [],
    }
    window = parse_answer(json.dumps(answer).encode(), size=size + 10, start=0, end=10)
    assert window is not None and window.after == Subtree.of(chunks, at_start=False, at_end=True)


@pytest.mark.parametrize(
    ("step", "batch"),
    [(300 << 10, 128), (512 << 10, 128), (1 << 20, 128), (300 << 10, 2), (200 << 10, 3)],
)
def test_windows_tile_the_file_each_verifying_alone(
    minted: tuple[bytes, XetFile, bytes], monkeypatch: pytest.MonkeyPatch, step: int, batch: int
) -> None:
    """Where each window ends is asked first (a window can reach the next one's byte: they merge),
    then each window from the last one's end; every window holds its chunks."""
    data, xf, xet_hash = minted
    monkeypatch.setattr(partsize, "PART", step)
    monkeypatch.setattr(_ranges, "BATCH", batch)
    asked: list[list[tuple[int, int]]] = []

    def ask(dirty: Sequence[tuple[int, int]]) -> bytes:
        asked.append(list(dirty))
        return json.dumps(chunk_hashes_answer(xf, dirty)).encode()

    found = _ranges.windows(ask, xf.size, threading.Event())
    assert found is not None and found[0].start == 0 and found[-1].end == xf.size
    assert all(a.end == b.start for a, b in itertools.pairwise(found))
    bounds = _bounds(xf)
    assert all(w.holds(_chunks(data, bounds, w.start, w.end), xet_hash) for w in found)
    # the window ends, ``batch`` in a request (the byte before each), then one request per window
    ends = list(range(step, xf.size, step))
    firsts = -(-len(ends) // batch)
    assert sorted(asked[:firsts]) == [
        [(e - 1, e) for e in ends[i : i + batch]] for i in range(0, len(ends), batch)
    ]
    assert len(asked) == firsts + len(found)
    # one answer that is not an answer: no windows at all
    missing = asked[-1]

    def one_missing(dirty: Sequence[tuple[int, int]]) -> bytes | None:
        return None if list(dirty) == missing else ask(dirty)

    assert _ranges.windows(one_missing, xf.size, threading.Event()) is None


@settings(max_examples=examples(200), deadline=None)
@given(st.binary(max_size=400) | _json.map(lambda v: json.dumps(v).encode()))
def test_any_answer_for_window_ends_never_raises(body: bytes) -> None:
    assert parse_closes(body, size=1 << 20, ends=[1 << 18, 1 << 19]) is None


def test_window_ends_read_strictly(minted: tuple[bytes, XetFile, bytes]) -> None:
    """Each window holds a byte asked and closes less than PAST after the last it holds; the
    summaries between them add up."""
    _, xf, _ = minted
    ends = [1 << 20, 2 << 20]
    honest = chunk_hashes_answer(xf, [(e - 1, e) for e in ends])
    groups = parse_closes(json.dumps(honest).encode(), size=xf.size, ends=ends)
    assert groups is not None and [held for held, _ in groups] == [[e] for e in ends]
    for lie in ("no byte asked", "gap", "far"):
        out = copy.deepcopy(honest)
        first = out["windows"][0]["dirtyByteRange"]
        if lie == "no byte asked":  # a window moved off the byte it was asked for
            first[0], first[1] = first[1] - 10, first[1]
        elif lie == "gap":  # the summary between the windows loses a node
            out["hashRanges"][1]["nodes"].pop()
        else:
            first[1] = ends[0] + PAST + 1
        assert parse_closes(json.dumps(out).encode(), size=xf.size, ends=ends) is None, lie


_nodes = st.lists(
    st.tuples(st.binary(min_size=32, max_size=32), st.integers(1, 1 << 20)), max_size=12
)


@settings(max_examples=examples(200), deadline=None)
@given(
    st.lists(st.tuples(_nodes, _nodes), min_size=1, max_size=5),
    st.booleans(),
    _nodes.filter(bool),
    st.booleans(),
)
def test_any_summary_merged_with_any_run_never_raises(
    levels: list[tuple[list[tuple[bytes, int]], list[tuple[bytes, int]]]],
    before: bool,
    chunks: list[tuple[bytes, int]],
    at_end: bool,
) -> None:
    """A summary no honest CAS sends (any nodes at any level) merges or is refused, never raises:
    a window checked against it holds or not."""
    summary = Subtree(
        tuple(tuple(left) for left, _ in levels),
        tuple(tuple(right) for _, right in levels),
        before,
        not before,
    )
    run = Subtree.of(chunks, at_start=not before, at_end=at_end)
    try:
        merged = summary.merge(run) if before else run.merge(summary)
    except ValueError:
        return
    assert merged.root() is None or len(merged.root() or b"") == 32
