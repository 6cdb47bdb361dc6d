"""Merkle hash subtrees: a contiguous run of a Xet file's chunks, partly aggregated, kept in
O(log n) nodes, that merge with their neighbours into the file's Merkle root.

The CAS summarises the bytes around a window this way (``GET /v2/file-chunk-hashes``, hub-docs
``docs/xet/api.md``); the arithmetic follows xet-core's ``merklehash/merkle_hash_subtree.rs``: at
each level a run's nodes split into an unstable prefix (left), groups whose bounds no neighbour can
move (merged into the level above), and an unstable suffix (right). A group bound is stable where
three natural cuts (a hash 0 mod 4) follow one another 3 to 7 nodes apart: the middle one ends a
group whatever comes before or after. Merging two runs re-splits, level by level, the left run's
nodes, what climbed from the level below, and the right run's. Once both file ends are known the
whole file collapses to one node: the root of ``_hashing.merkle_root``.

Wire form (serde's human-readable form of ``MerkleHashSubtree``): ``{"nodes": [{"hash": hex,
"size": n}, ...], "levels": [[left, right], ...], "at_start": bool, "at_end": bool}``; ``nodes``
holds every level's left nodes (level 0 up), then every level's right nodes (top level down): the
bytes' order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from mdl.xet._hashing import grouped

Node = tuple[bytes, int]  # a hash (raw) and the bytes under it

# a group takes 2 to 9 nodes: a gap between natural cuts in (2, 8) keeps a bound stable
_FEWEST, _MOST = 2, 9


def _natural(raw: bytes) -> bool:
    """Whether a node's hash ends a group by itself: its last little-endian word is 0 mod 4."""
    return raw[24] % 4 == 0


def _fits(gap: int) -> bool:
    return _FEWEST < gap < _MOST - 1


def stable_start(nodes: Sequence[Node]) -> int | None:
    """The first index that starts a group whatever precedes ``nodes``, if any."""
    before = last = None
    for at, (raw, _) in enumerate(nodes):
        if not _natural(raw):
            continue
        if last is not None and before is not None and _fits(at - last) and _fits(last - before):
            return last + 1
        before, last = last, at
    return None


def stable_end(nodes: Sequence[Node]) -> int | None:
    """The last index before which groups end whatever follows ``nodes``, if any."""
    after = first = None
    for at in range(len(nodes) - 1, -1, -1):
        if not _natural(nodes[at][0]):
            continue
        if first is not None and after is not None and _fits(first - at) and _fits(after - first):
            return first + 1
        after, first = first, at
    return None


def _split(nodes: list[Node], at_start: bool, at_end: bool) -> tuple[int, list[Node], int]:
    """One level: (the unstable prefix's length, the groups merged above, the suffix's length)."""
    whole: tuple[int, list[Node], int] = (len(nodes), [], 0)
    if len(nodes) <= 1:
        return whole
    start = 0 if at_start else stable_start(nodes)
    if start is None:
        return whole
    if at_end:
        end: int | None = len(nodes)
    else:
        end = stable_end(nodes[start:])
        end = None if end is None else start + end
    if end is None or start >= end:
        return whole
    return start, grouped(nodes[start:end]), len(nodes) - end


@dataclass(frozen=True)
class Subtree:
    """A run of chunks as a hump: per level, its left and right nodes (``lefts[i]``,
    ``rights[i]``), and whether it starts the file and ends it."""

    lefts: tuple[tuple[Node, ...], ...]
    rights: tuple[tuple[Node, ...], ...]
    at_start: bool
    at_end: bool

    @property
    def nodes(self) -> list[Node]:
        """Every node in the bytes' order."""
        return [n for level in self.lefts for n in level] + [
            n for level in reversed(self.rights) for n in level
        ]

    @property
    def size(self) -> int:
        """The bytes under it."""
        return sum(size for _, size in self.nodes)

    @classmethod
    def of(cls, chunks: Sequence[Node], *, at_start: bool, at_end: bool) -> Subtree:
        """The hump of ``chunks`` (xet-core ``from_chunks``)."""
        return _Build(at_start, at_end).run(list(chunks))

    def merge(self, other: Subtree) -> Subtree:
        """This run and ``other`` (right after it) as one; ValueError when this one ends the file or
        ``other`` starts it."""
        if self.at_end or other.at_start:
            raise ValueError("a run that ends the file, or one that starts it on the right")
        build = _Build(self.at_start, other.at_end)
        carry: list[Node] = []
        for level in range(max(len(self.lefts), len(other.lefts))):
            full = [*_at(self.lefts, level), *_at(self.rights, level), *carry]
            full += [*_at(other.lefts, level), *_at(other.rights, level)]
            carry = build.level(full)
        while carry:
            carry = [] if build.top(carry) else build.level(carry)
        return build.done()

    def root(self) -> bytes | None:
        """The Merkle root once both ends are known and it collapsed to one node; None otherwise
        (also for a hump no honest merge makes: a node left below the top)."""
        if not (self.at_start and self.at_end) or not self.lefts:
            return None
        *below, top = zip(self.lefts, self.rights, strict=True)
        if any(left or right for left, right in below) or len(top[0]) != 1 or top[1]:
            return None
        return top[0][0][0]


def _at(levels: tuple[tuple[Node, ...], ...], level: int) -> tuple[Node, ...]:
    return levels[level] if level < len(levels) else ()


class _Build:
    """A hump built level by level (the bounds are known at a level only while no level below
    kept a node on that side)."""

    def __init__(self, at_start: bool, at_end: bool) -> None:
        self.at_start, self.at_end = at_start, at_end
        self.lefts: list[tuple[Node, ...]] = []
        self.rights: list[tuple[Node, ...]] = []

    def level(self, nodes: list[Node]) -> list[Node]:
        """One level kept; what climbs to the next."""
        starts = self.at_start and not any(self.lefts)
        ends = self.at_end and not any(self.rights)
        prefix, promoted, suffix = _split(nodes, starts, ends)
        self.lefts.append(tuple(nodes[:prefix]))
        self.rights.append(tuple(nodes[len(nodes) - suffix :]))
        return promoted

    def top(self, nodes: list[Node]) -> bool:
        """A single node climbed: it is the top level."""
        if len(nodes) != 1:
            return False
        self.lefts.append(tuple(nodes))
        self.rights.append(())
        return True

    def run(self, nodes: list[Node]) -> Subtree:
        while (nodes := self.level(nodes)) and not self.top(nodes):
            pass
        return self.done()

    def done(self) -> Subtree:
        while len(self.lefts) > 1 and not (self.lefts[-1] or self.rights[-1]):
            self.lefts.pop()
            self.rights.pop()
        return Subtree(tuple(self.lefts), tuple(self.rights), self.at_start, self.at_end)
