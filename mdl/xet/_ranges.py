"""A Xet file's ranges, each verified against the Xet file hash as soon as its bytes are here.

The CAS answers ``GET /v2/file-chunk-hashes/{hash}`` (hub-docs ``docs/xet/api.md``) for the bytes
named in ``X-Range-Dirty``: the window of whole chunks that holds them, and Merkle subtrees
(``_subtree``) summing up the chunks before it and after it. The window's own chunks, hashed from
its bytes and merged between the two, give the file's Merkle root, whose file hash must be the Xet
hash (a root only when bound to the pinned sha256: ``XetSource._release``). An answer's summaries
stand in for every byte outside its windows, so a window verifies alone only when it is its answer's
only window: mdl asks one window per request. The CAS ends a window past the bytes asked, at the
next stable chunk bound, wherever they start: so mdl first asks where the windows end (the byte
before each window's end, many in one request), then each window from where the one before it ends.
The windows tile the file: they are its ranges (``XetRanges``, kind ``xet``).

Any surprise in an answer (a field more or less, a window elsewhere than asked, summaries whose
bytes do not add up to the bytes around it, a CAS that does not answer) leaves the file without
range trust: it is released whole, as before.
"""

from __future__ import annotations

import contextlib
import hmac
import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, TypeGuard, TypeVar

from mdl import partsize
from mdl.background import Background
from mdl.errors import OutsideJSONError
from mdl.outsidejson import read_json
from mdl.transfer.job import Landing, RangeTrust
from mdl.transfer.ranges import MAX_SPAN, RangeCheck, Releases
from mdl.xet._hashing import chunk_hash, from_hex, is_hash, salted
from mdl.xet._subtree import Node, Subtree

log = logging.getLogger("mdl.xet")

# bytes a window may reach past what was asked: the CAS closes it at the next stable chunk bound,
# two chunks of 16 to 120 KiB in a row, a few chunks on (more: the answer is refused)
PAST = 4 * partsize.MiB
# bytes asked per window: the part size of a file cut in MOST_WINDOWS at most, doubled no further
# than MOST_WINDOW (``partsize``: for a file up to PART × MOST_WINDOWS, 16 GiB, every lock part's
# end is a window's end, a part doubled past MOST_WINDOW two windows; a bigger file, in fewer
# bigger windows), and at most MOST_WINDOW (so a window and what it reaches past stay within what
# a check may hold: a file that needs more has no windows)
MOST_WINDOW = MAX_SPAN - PAST
MOST_WINDOWS = 1024  # windows a file is asked in at most (a small request each)
ASKING = 8  # requests asked at once
BATCH = 128  # window ends asked in one request (its X-Range-Dirty: ~3 KB)
_MOST_NODES = 8192  # nodes in one summary
_MOST_LEVELS = 64
_ANSWER_KEYS = {"totalChunks", "fileSize", "windows", "hashRanges", "gapVerification"}
_SUBTREE_KEYS = {"nodes", "levels", "at_start", "at_end"}
_T = TypeVar("_T")


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


def parse_answer(body: bytes | bytearray, *, size: int, start: int, end: int) -> Window | None:
    """The window a ``file-chunk-hashes`` answer gives for bytes ``[start, end)`` of a ``size``-byte
    file, read strictly; None for anything else."""
    parsed = _answer(body, size)
    if parsed is None or len(parsed[0]) != 1:
        return None
    [(first, last)], (before, after) = parsed
    if first != start or not end <= last <= min(size, end + PAST):
        return None
    return Window(first, last, before, after)


def parse_closes(
    body: bytes | bytearray, *, size: int, ends: Sequence[int]
) -> list[tuple[list[int], int]] | None:
    """The windows an answer gives for the bytes before each of ``ends`` (asked together), read
    strictly: for each, the ends whose byte it holds (one at least: windows that reach the next
    byte asked merge) and where it closes, less than ``PAST`` after the last; None for anything
    else."""
    parsed = _answer(body, size)
    if parsed is None:
        return None
    groups: list[tuple[list[int], int]] = []
    at = 0
    for start, end in parsed[0]:
        held = []
        while at < len(ends) and ends[at] - 1 < end:
            if ends[at] - 1 < start:
                return None  # a byte asked outside every window
            held.append(ends[at])
            at += 1
        if not held or end > held[-1] + PAST:
            return None
        groups.append((held, end))
    return groups if at == len(ends) else None


def _answer(
    body: bytes | bytearray, size: int
) -> tuple[list[tuple[int, int]], list[Subtree | None]] | None:
    """An answer's windows (in order, apart) and the summaries of the N + 1 gaps around them, each
    of the gap's bytes, the first starting the file and the last ending it; None at any surprise."""
    try:  # bounded where it is read
        reply = read_json(body, source="a range answer", limit=len(body))
    except OutsideJSONError:
        return None
    if not _keys(reply, _ANSWER_KEYS) or not _sound(reply, size):
        return None
    spans, ranges = _spans(reply["windows"], size), reply["hashRanges"]
    if spans is None or not isinstance(ranges, list) or len(ranges) != len(spans) + 1:
        return None
    edges = [0, *(edge for span in spans for edge in span), size]
    summaries = [_subtree(raw) for raw in ranges]
    for k, (summary, raw) in enumerate(zip(summaries, ranges, strict=True)):
        ends = (k == 0, k == len(spans))
        if not _around(summary, raw, edges[2 * k + 1] - edges[2 * k], ends):
            return None
    return spans, summaries


def _sound(reply: dict[str, object], size: int) -> bool:
    """The answer's counts and hashes are of their kinds, and its file is ``size`` bytes."""
    checks = reply["gapVerification"]
    counted = _count(reply["totalChunks"]) is not None and _count(size) is not None
    hashes = isinstance(checks, list) and all(is_hash(h) for h in checks)
    return counted and hashes and reply["fileSize"] == size


def _spans(windows: object, size: int) -> list[tuple[int, int]] | None:
    """The windows' ``[start, end)``, in order, apart, within the file."""
    if not isinstance(windows, list) or not 0 < len(windows) <= MOST_WINDOWS:
        return None
    spans: list[tuple[int, int]] = []
    for window in windows:
        span = _pair(window["dirtyByteRange"]) if _keys(window, {"dirtyByteRange"}) else None
        if span is None or not (spans[-1][1] if spans else 0) <= span[0] < span[1] <= size:
            return None
        spans.append(span)
    return spans


def _around(summary: Subtree | None, raw: object, size: int, ends: tuple[bool, bool]) -> bool:
    """Whether a gap's summary is of its ``size`` bytes, starting or ending the file as ``ends``
    says (none: no bytes)."""
    if summary is None:
        return raw is None and size == 0
    return (summary.at_start, summary.at_end) == ends and size > 0 and summary.size == size


def _subtree(raw: object) -> Subtree | None:
    """A summary in serde's form, read strictly (None also for null)."""
    if not _keys(raw, _SUBTREE_KEYS):
        return None
    nodes, levels, at_start, at_end = (raw[k] for k in ("nodes", "levels", "at_start", "at_end"))
    if not (isinstance(at_start, bool) and isinstance(at_end, bool)):
        return None
    found, pairs = _listed(nodes, _MOST_NODES, _node), _listed(levels, _MOST_LEVELS, _pair)
    if found is None or pairs is None:
        return None
    return _humped(found, pairs, at_start, at_end)


def _listed(raw: object, most: int, read: Callable[[object], _T | None]) -> list[_T] | None:
    """A list of 1 to ``most`` items, each as ``read`` reads it strictly; None for anything
    else."""
    if not isinstance(raw, list) or not 0 < len(raw) <= most:
        return None
    found = [item for item in map(read, raw) if item is not None]
    return found if len(found) == len(raw) else None


def _humped(
    nodes: list[Node], levels: list[tuple[int, int]], at_start: bool, at_end: bool
) -> Subtree | None:
    """The flat form's nodes (lefts from level 0 up, then rights from the top down) by level;
    None when the levels do not count every node."""
    if sum(left + right for left, right in levels) != len(nodes):
        return None
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


Ask = Callable[[Sequence[tuple[int, int]]], "bytes | bytearray | None"]


def windows(ask: Ask, size: int, stop: threading.Event) -> tuple[Window, ...] | None:
    """The file's windows, tiling it (``ask(ranges)``: the answer's body for those ``[start,
    end)``, None when there is none); None at the first surprise, or when ``stop`` is set.

    A window ends where the CAS closes it after the bytes asked, whatever they start at: first
    where the windows end is asked (the byte before each window's end, ``BATCH`` in a request),
    then every window from the end of the one before it, with the same bytes after it (so it
    merges with the same windows), ``ASKING`` requests at once."""
    step = partsize.part_size(size, most=MOST_WINDOWS, top=MOST_WINDOW)
    if step > MOST_WINDOW:
        return None
    inner = list(range(step, size, step))  # the last byte each window but the last is to hold

    def closes(batch: list[int]) -> list[tuple[list[int], int]] | None:
        body = None if stop.is_set() else ask([(end - 1, end) for end in batch])
        return None if body is None else parse_closes(body, size=size, ends=batch)

    def window(start: int, held: list[int], close: int) -> Window | None:
        dirty = [(start, held[0])] + [(end - 1, end) for end in held[1:]]
        body = None if stop.is_set() else ask(dirty)
        found = None if body is None else parse_answer(body, size=size, start=start, end=held[-1])
        return found if found is not None and found.end == close else None

    with ThreadPoolExecutor(ASKING, thread_name_prefix="xet-ranges") as pool:
        found = list(pool.map(closes, [inner[i : i + BATCH] for i in range(0, len(inner), BATCH)]))
        if None in found:
            return None
        groups = [group for batch in found if batch is not None for group in batch]
        tiles = list(pool.map(window, *zip(*_tiling(groups, size), strict=True)))
    return tuple(w for w in tiles if w) if all(tiles) else None


def _tiling(groups: Sequence[tuple[list[int], int]], size: int) -> list[tuple[int, list[int], int]]:
    """The windows to ask, tiling the file: each from where the one before it closes, with the
    ends it is to hold and where it closes (``groups``: the ends each window asked about held,
    and its close), the last closing at the file's end."""
    plan, start = [], 0
    for held, close in [*groups, ([size], size)]:
        # (a window of the request before may have reached past the first bytes of this one)
        if kept := [end for end in held if end > start]:
            plan.append((start, kept, close))
            start = close
    return plan


class Release:
    """A Xet file's ranges checked as its terms land (a ``RangeCheck`` the endpoint finds through
    ``releases``): those of ``trust`` (the part hashes of the pinned bytes: they win), else its
    windows, asked beside its fetch and checked once all are known. The fetch's record tells the
    check what is on disk, now and from then on, as the engine tells any ``Landing``."""

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
        releases: Releases,
        trust: RangeTrust | None = None,
    ) -> None:
        self._ask, self.size, self.xet_hash = ask, size, xet_hash
        self.fd, self.part_path, self.record, self.label = fd, part_path, record, label
        self.trust, self.releases = trust, releases
        self.check: RangeCheck | None = None
        self._lock = threading.Lock()
        self._closed = False
        self._running = contextlib.ExitStack()
        # not waited for at the end: a late answer arms nothing (``_closed``)
        self._asker = Background(f"xet-ranges:{label}", self._arm, join=0.0)

    def _arm(self, stop: threading.Event) -> None:
        trust = self.trust
        if trust is None:
            found = windows(self._ask, self.size, stop)
            if found is None:
                if not stop.is_set():  # (else the file is whole already)
                    log.info("%s: no chunk hashes from the Xet storage: released whole", self.label)
                return
            trust = XetRanges(found, self.xet_hash, self.record.sizes)
        check = RangeCheck(trust, self.fd, self.part_path, self.releases, label=self.label)
        with self._lock:
            if self._closed:
                check.unshare()
                return
            self.check = self._running.enter_context(check)
            self._running.enter_context(self.releases.holding(check))
            self.record.tell(check)

    def refute(self, why: str) -> None:
        """The whole file's hash refused it (``why``): see ``Releases.refuted``."""
        with self._lock:
            self._closed, check = True, self.check
        if check is not None:
            self.releases.refuted(check, why)

    @contextlib.contextmanager
    def running(self) -> Iterator[Release]:
        """Asked and checked while the ``with`` lasts (the fetch's ``fd`` open till its end)."""
        self._asker.start()
        try:
            yield self
        finally:
            self._asker.stop()
            with self._lock:
                self._closed, armed = True, self.check is not None
            if armed:
                self.record.tell(None)
            self._running.close()


class Recorded(Protocol):
    """What ``Release`` needs of the fetch's record (``_partial.Record``)."""

    def sizes(self, start: int, end: int) -> Sequence[int] | None:
        """The lengths of the chunks on disk that make up ``[start, end)`` exactly, if all are."""

    def tell(self, landing: Landing | None) -> None:
        """``landing`` told of every term on disk, now and as each lands (None: no more)."""
