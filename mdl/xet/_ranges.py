"""A Xet file's ranges, each verified against the Xet file hash as soon as its bytes are here.

The CAS answers ``GET /v2/file-chunk-hashes/{hash}`` (hub-docs ``docs/xet/api.md``) for the bytes
named in ``X-Range-Dirty``: the window of whole chunks that holds them, and Merkle subtrees
(``_subtree``) summing up the chunks before it and after it. The window's own chunks, hashed from
its bytes and merged between the two, give the file's Merkle root, whose file hash must be the Xet
hash mdl already trusts. An answer's summaries stand in for every byte outside its windows, so a
window verifies alone only when it is its answer's only window: mdl asks one window per request.
The CAS ends a window past the bytes asked, at the next stable chunk bound, wherever they start: so
mdl first asks where each window ends (one byte before its end), then each window from where the
one before it ends. The windows tile the file: they are its ranges (``XetRanges``, kind ``xet``).

Any surprise in an answer (a field more or less, a window elsewhere than asked, summaries whose
bytes do not add up to the bytes around it, a CAS that does not answer) leaves the file without
range trust: it is released whole, as before.
"""

from __future__ import annotations

import contextlib
import functools
import hmac
import json
import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, TypeGuard

from mdl.background import Background
from mdl.transfer.ranges import RANGE_PART, RangeCheck
from mdl.xet._hashing import chunk_hash, from_hex, is_hash, salted
from mdl.xet._subtree import Node, Subtree

log = logging.getLogger("mdl.xet")

MiB = 1 << 20
# bytes asked per window at least: a lock's range (the check holds one window in memory per file;
# a module constant: tests lower it) ...
WINDOW = RANGE_PART
MOST_WINDOW = 64 * MiB  # ... and at most: a file that needs more than MOST_WINDOWS of them has none
# bytes a window may reach past what was asked: the CAS closes it at the next stable chunk bound,
# two chunks of 16 to 120 KiB in a row, a few chunks on (more: the answer is refused)
PAST = 4 * MiB
MOST_WINDOWS = 1024  # windows a file is asked in at most (each costs two small requests)
ASKING = 8  # answers asked at once
_MOST_NODES = 8192  # nodes in one summary
_MOST_LEVELS = 64
_ANSWER_KEYS = {"totalChunks", "fileSize", "windows", "hashRanges", "gapVerification"}
_SUBTREE_KEYS = {"nodes", "levels", "at_start", "at_end"}


@dataclass(frozen=True)
class Window:
    """Bytes ``[start, end)`` of whole chunks, and the summaries of the chunks before and after
    (None: none there)."""

    start: int
    end: int
    before: Subtree | None
    after: Subtree | None

    def holds(self, chunks: Sequence[Node], xet_hash: bytes) -> bool:
        """Whether ``chunks`` (hash, length) are this window's: merged between its summaries they
        give the Merkle root whose file hash is ``xet_hash`` (raw)."""
        if sum(size for _, size in chunks) != self.end - self.start or not chunks:
            return False
        run = Subtree.of(chunks, at_start=self.before is None, at_end=self.after is None)
        try:
            if self.before is not None:
                run = self.before.merge(run)
            if self.after is not None:
                run = run.merge(self.after)
        except ValueError:
            return False
        root = run.root()
        return root is not None and hmac.compare_digest(salted(root), xet_hash)


def parse_answer(
    body: bytes | bytearray, *, size: int, start: int | None, end: int
) -> Window | None:
    """The window a ``file-chunk-hashes`` answer gives for bytes ``[start, end)`` of a ``size``-byte
    file (``start`` None: any chunk's start before ``end``), read strictly; None for anything
    else."""
    try:
        reply = json.loads(body)
    except (ValueError, RecursionError):
        return None
    if not _keys(reply, _ANSWER_KEYS) or not _sound(reply, size):
        return None
    bounds, ranges = _bounds(reply["windows"]), reply["hashRanges"]
    if bounds is None or not isinstance(ranges, list) or len(ranges) != 2:
        return None
    first, last = bounds
    if first != (first if start is None else start) or first >= end:
        return None
    if not end <= last <= min(size, end + PAST):
        return None
    before, after = _subtree(ranges[0]), _subtree(ranges[1])
    if not _around(before, ranges[0], first, at_start=True):
        return None
    if not _around(after, ranges[1], size - last, at_start=False):
        return None
    return Window(first, last, before, after)


def _sound(reply: dict[str, object], size: int) -> bool:
    """The answer's counts and hashes are of their kinds, and its file is ``size`` bytes."""
    checks = reply["gapVerification"]
    counted = _count(reply["totalChunks"]) is not None and _count(size) is not None
    hashes = isinstance(checks, list) and all(is_hash(h) for h in checks)
    return counted and hashes and reply["fileSize"] == size


def _bounds(windows: object) -> tuple[int, int] | None:
    """The one window's ``[start, end)``."""
    if not isinstance(windows, list) or len(windows) != 1:
        return None
    if not _keys(windows[0], {"dirtyByteRange"}):
        return None
    return _pair(windows[0]["dirtyByteRange"])


def _around(summary: Subtree | None, raw: object, size: int, *, at_start: bool) -> bool:
    """Whether a summary is of the ``size`` bytes on its side of the window (none: no bytes)."""
    if summary is None:
        return raw is None and size == 0
    ends = (summary.at_start, summary.at_end) == (at_start, not at_start)
    return ends and size > 0 and summary.size == size


def _subtree(raw: object) -> Subtree | None:
    """A summary in serde's form, read strictly (None also for null)."""
    if not _keys(raw, _SUBTREE_KEYS):
        return None
    nodes, levels, at_start, at_end = (raw[k] for k in ("nodes", "levels", "at_start", "at_end"))
    if not (isinstance(at_start, bool) and isinstance(at_end, bool)):
        return None
    if not (_listed(nodes, _MOST_NODES) and _listed(levels, _MOST_LEVELS)):
        return None
    found = [n for n in map(_node, nodes) if n is not None]
    pairs = [p for p in map(_pair, levels) if p is not None]
    if (len(found), len(pairs)) != (len(nodes), len(levels)):
        return None
    if sum(left + right for left, right in pairs) != len(found):
        return None
    return _humped(found, pairs, at_start, at_end)


def _listed(raw: object, most: int) -> TypeGuard[list[object]]:
    return isinstance(raw, list) and 0 < len(raw) <= most


def _humped(
    nodes: list[Node], levels: list[tuple[int, int]], at_start: bool, at_end: bool
) -> Subtree:
    """The flat form's nodes (lefts from level 0 up, then rights from the top down) by level."""
    lefts, at = [], 0
    for left, _ in levels:
        lefts.append(tuple(nodes[at : at + left]))
        at += left
    rights: list[tuple[Node, ...]] = []
    for _, right in reversed(levels):
        rights.insert(0, tuple(nodes[at : at + right]))
        at += right
    return Subtree(tuple(lefts), tuple(rights), at_start, at_end)


def _node(raw: object) -> Node | None:
    if not _keys(raw, {"hash", "size"}) or not is_hash(raw["hash"]):
        return None
    size = _count(raw["size"])
    if not size:
        return None
    return from_hex(raw["hash"]), size


def _pair(raw: object) -> tuple[int, int] | None:
    if not isinstance(raw, list) or len(raw) != 2:
        return None
    left, right = _count(raw[0]), _count(raw[1])
    return None if left is None or right is None else (left, right)


def _keys(raw: object, keys: set[str]) -> TypeGuard[dict[str, object]]:
    return isinstance(raw, dict) and set(raw) == keys


def _count(raw: object) -> int | None:
    """A whole number of bytes, chunks or nodes: 0 to 2**63."""
    if isinstance(raw, int) and not isinstance(raw, bool) and 0 <= raw < 1 << 63:
        return raw
    return None


@dataclass(frozen=True)
class XetRanges:
    """The windows of a Xet file as ranges (a ``RangeTrust`` of kind ``xet``): a window's bytes
    hold when their chunks (cut where ``sizes`` says: the chunk lengths the fetch decoded there)
    merged between its summaries give the Xet hash."""

    windows: tuple[Window, ...]
    xet_hash: bytes
    sizes: Callable[[int, int], Sequence[int] | None]

    @property
    def kind(self) -> str:
        return "xet"

    @property
    def spans(self) -> Sequence[tuple[int, int]]:
        return tuple((w.start, w.end) for w in self.windows)

    def holds(self, index: int, data: memoryview) -> bool:
        window = self.windows[index]
        sizes = self.sizes(window.start, window.end)
        if sizes is None or sum(sizes) != len(data):
            return False
        chunks, at = [], 0
        for size in sizes:
            chunks.append((chunk_hash(data[at : at + size]), size))
            at += size
        return window.holds(chunks, self.xet_hash)


Ask = Callable[[int, int], "bytes | bytearray | None"]


def windows(ask: Ask, size: int, stop: threading.Event) -> tuple[Window, ...] | None:
    """The file's windows, tiling it (``ask(start, end)``: an answer's body, None when there is
    none); None at the first surprise, or when ``stop`` is set.

    A window ends where the CAS closes it after the bytes asked, whatever they start at: first
    where each window ends is asked (a byte before each window's end), then every window from the
    end of the one before it, all answers asked ``ASKING`` at once."""
    step = max(WINDOW, -(-size // MOST_WINDOWS // MiB) * MiB)
    if step > MOST_WINDOW:
        return None
    ends = [*range(step, size, step), size]  # the last byte each window is asked to hold

    def window(start: int | None, end: int) -> Window | None:
        body = None if stop.is_set() else ask(end - 1 if start is None else start, end)
        return None if body is None else parse_answer(body, size=size, start=start, end=end)

    with ThreadPoolExecutor(ASKING, thread_name_prefix="xet-ranges") as pool:
        closes = list(pool.map(functools.partial(window, None), ends[:-1]))
        if None in closes:
            return None
        starts, kept = [0], []
        for end, close in zip(ends, [*closes, None], strict=True):
            if end > starts[-1]:  # (else the window before already ends past it)
                kept.append(end)
                starts.append(size if close is None else close.end)
        found = list(pool.map(window, starts, kept))
    tiled = [w for w, nxt in zip(found, starts[1:], strict=False) if w and w.end == nxt]
    return tuple(tiled) if len(tiled) == len(kept) else None


class Release:
    """A Xet file's windows asked beside its fetch; once all are known, each window whose terms
    are on disk is checked (a ``RangeCheck`` the endpoint finds by the ``.part``: ``ranges.live``).
    ``tell(landed)`` is how the fetch's record hands over what is on disk, now and from then on."""

    def __init__(
        self,
        ask: Ask,
        *,
        size: int,
        xet_hash: bytes,
        fd: int,
        part_path: Path,
        record: Recorded,
        label: str,
    ) -> None:
        self._ask, self.size, self.xet_hash = ask, size, xet_hash
        self.fd, self.part_path, self.record, self.label = fd, part_path, record, label
        self.check: RangeCheck | None = None
        self._lock = threading.Lock()
        self._closed = False
        # not waited for at the end: a late answer arms nothing (``_closed``)
        self._asker = Background(f"xet-ranges:{label}", self._arm, join=0.0)

    def _arm(self, stop: threading.Event) -> None:
        found = windows(self._ask, self.size, stop)
        if found is None:
            log.info("%s: no chunk hashes from the Xet storage: released whole", self.label)
            return
        trust = XetRanges(found, self.xet_hash, self.record.sizes)
        check = RangeCheck(trust, self.fd, self.part_path, label=self.label)
        with self._lock:
            if self._closed:
                return
            self.check = check.__enter__()
            self.record.tell(check.landed)

    @contextlib.contextmanager
    def running(self) -> Iterator[Release]:
        """Asked and checked while the ``with`` lasts (the fetch's ``fd`` open till its end)."""
        self._asker.start()
        try:
            yield self
        finally:
            self._asker.stop()
            with self._lock:
                self._closed, check = True, self.check
            if check is not None:
                self.record.tell(None)
                check.__exit__(None, None, None)


class Recorded(Protocol):
    """What ``Release`` needs of the fetch's record (``_partial.Record``)."""

    def sizes(self, start: int, end: int) -> Sequence[int] | None:
        """The lengths of the chunks on disk that make up ``[start, end)`` exactly, if all are."""

    def tell(self, landed: Callable[[int, int], None] | None) -> None:
        """``landed(start, end)`` told of every term on disk, now and as each lands (None: no
        more)."""
