"""The test-side chunker (tests/xet/chunking.py) cuts exactly where chunking.md's byte-by-byte
pseudocode does.
"""

from __future__ import annotations

import itertools
import random

import pytest
from xet.chunking import MASK, MAX_CHUNK, MIN_CHUNK, TABLE, candidates, chunk

WORD = (1 << 64) - 1


def spec_chunk(data: bytes) -> list[tuple[int, int]]:
    """chunking.md's pseudocode, literally (slow: for small inputs only)."""
    if len(data) < MIN_CHUNK:
        return [(0, len(data))] if data else []
    chunks, start, h = [], 0, 0
    for i, byte in enumerate(data):
        h = ((h << 1) + TABLE[byte]) & WORD
        size = i + 1 - start
        if size < MIN_CHUNK:
            continue
        if size >= MAX_CHUNK or h & MASK == 0:
            chunks.append((start, i + 1))
            start, h = i + 1, 0
    if start < len(data):
        chunks.append((start, len(data)))
    return chunks


def test_chunks_match_the_pseudocode_on_random_repeated_and_zero_data() -> None:
    rng = random.Random(7)
    data = rng.randbytes(700_000) + bytes(300_000) + b"ab" * 100_000 + rng.randbytes(200_000)
    expected = spec_chunk(data)
    assert chunk(data) == expected
    sizes = [end - start for start, end in expected]
    assert MAX_CHUNK in sizes  # the zero run forces cuts at the largest size
    assert any(MIN_CHUNK <= size < MAX_CHUNK for size in sizes)  # content-defined cuts happen too


@pytest.mark.parametrize(
    "size", [0, 1, MIN_CHUNK - 1, MIN_CHUNK, MIN_CHUNK + 1, MAX_CHUNK, MAX_CHUNK + 1]
)
def test_small_and_exact_sizes_match_the_pseudocode(size: int) -> None:
    data = bytes(size)  # zeros: no content-defined cut, so only the size rules decide
    assert chunk(data) == spec_chunk(data)


def _candidate_at(offset: int, seed: int = 11) -> bytes:
    """Zeros (never a candidate), then the 64 bytes that end a cut candidate exactly ``offset``
    bytes in, then more random bytes: the gear hash at a byte depends on the 64 bytes up to it only.
    """
    data = random.Random(seed).randbytes(4 * MAX_CHUNK)
    end = next(end for end in candidates(data) if end >= 64)
    moved = bytes(offset - 64) + data[end - 64 :]
    assert [cut for cut in candidates(moved) if cut <= offset] == [offset]
    return moved


@pytest.mark.slow
@pytest.mark.parametrize(
    ("offset", "first"),
    [
        (MIN_CHUNK, MIN_CHUNK),  # a candidate exactly at the smallest size is taken
        (MIN_CHUNK + 1, MIN_CHUNK + 1),
        (MAX_CHUNK, MAX_CHUNK),
        (MAX_CHUNK - 1, MAX_CHUNK - 1),
        (MAX_CHUNK + 1, MAX_CHUNK),  # past the largest size: the cut is forced at it
    ],
)
def test_a_candidate_cuts_where_the_size_rules_allow(offset: int, first: int) -> None:
    moved = _candidate_at(offset)
    assert chunk(moved)[0] == (0, first)
    assert chunk(moved) == spec_chunk(moved)


def test_a_candidate_before_the_smallest_size_is_ignored() -> None:
    moved = _candidate_at(MIN_CHUNK - 1)
    assert chunk(moved)[0][1] > MIN_CHUNK
    assert chunk(moved) == spec_chunk(moved)


def test_chunks_tile_the_data() -> None:
    data = random.Random(5).randbytes(3 * 1024 * 1024)
    chunks = chunk(data)
    assert chunks[0][0] == 0 and chunks[-1][1] == len(data)
    assert all(a[1] == b[0] for a, b in itertools.pairwise(chunks))
    assert all(MIN_CHUNK <= end - start <= MAX_CHUNK for start, end in chunks[:-1])
