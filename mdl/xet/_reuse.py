"""What mdl keeps of each Xet file it wrote: its reconstruction (terms, their offsets, every chunk's
hash and length) beside the destination's records, and the index a later pull of the same model
copies chunks from; and the resume record of a Xet partial, by term."""

from __future__ import annotations

import json
import logging
import os
import threading
from bisect import bisect_right
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from mdl.errors import MdlError
from mdl.outsidejson import EXACT_INTS, read_json
from mdl.store.confined import open_file, read_bytes, unlink, write_atomic
from mdl.transfer.resume import BY_CHUNK
from mdl.xet._hashing import HASH_BYTES, chunk_hash, is_hash
from mdl.xet._xorb import MAX_CHUNK

log = logging.getLogger("mdl.xet")

SIDECAR_VERSION = 1
# a 1 TB file has ~16M chunks: far less than this in hex; a bigger one is not mdl's
SIDECAR_MAX = 256 << 20
STATE_VERSION = 1


@dataclass(frozen=True)
class Written:
    """Chunks ``[start, end)`` of ``xorb`` as they lie on disk at ``offset`` (a term of a file, or a
    run of one's), each chunk's (hash, length) in order."""

    xorb: str
    start: int
    end: int
    offset: int
    chunks: tuple[tuple[bytes, int], ...]

    @property
    def length(self) -> int:
        return sum(size for _, size in self.chunks)


def _int(value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < EXACT_INTS:
        raise ValueError(f"not a count: {value!r}")
    return value


def _size(value: object) -> int:
    """A chunk's length: 1 to MAX_CHUNK bytes (more would be read into memory whole before its
    hash is checked).
    """
    size = _int(value)
    if not 0 < size <= MAX_CHUNK:
        raise ValueError(f"not a chunk's length: {size}")
    return size


def _terms(raw: object) -> list[Written]:
    """Terms as saved: ``[xorb, start, end, offset, "<hex of every chunk hash>", [lengths]]``;
    ValueError if not.
    """
    if not isinstance(raw, list):
        raise ValueError("terms is not a list")
    terms: list[Written] = []
    for item in raw:
        if not isinstance(item, list) or len(item) != 6:
            raise ValueError("a term is not a 6-item list")
        xorb, start, end, offset, hashes, sizes = item
        start, end, offset = _int(start), _int(end), _int(offset)
        if (
            not is_hash(xorb)
            or start >= end
            or not isinstance(hashes, str)
            or not isinstance(sizes, list)
        ):
            raise ValueError("a term is malformed")
        raw_hashes = bytes.fromhex(hashes)
        count = end - start
        if len(raw_hashes) != count * HASH_BYTES or len(sizes) != count:
            raise ValueError("a term's chunks do not match its range")
        chunks = tuple(
            (raw_hashes[i * HASH_BYTES : (i + 1) * HASH_BYTES], _size(size))
            for i, size in enumerate(sizes)
        )
        terms.append(Written(xorb, start, end, offset, chunks))
    return terms


def _saved(terms: Iterable[Written]) -> list[list[object]]:
    return [
        [
            t.xorb,
            t.start,
            t.end,
            t.offset,
            b"".join(h for h, _ in t.chunks).hex(),
            [s for _, s in t.chunks],
        ]
        for t in terms
    ]


def sidecar_path(state_dir: Path, xet_hash: str) -> Path:
    return state_dir / "xet" / f"{xet_hash}.json"


def write_sidecar(
    root: Path, state_dir: Path, *, xet_hash: str, where: Path, terms: Sequence[Written]
) -> None:
    """Record the file at ``where`` (inside ``root``) as these terms; a failure only costs a
    later pull its reuse.
    """
    body = {
        "version": SIDECAR_VERSION,
        "xet": xet_hash,
        "where": where.relative_to(root).as_posix(),
        "terms": _saved(terms),
    }
    try:
        write_atomic(
            root,
            sidecar_path(state_dir, xet_hash),
            json.dumps(body, separators=(",", ":")).encode(),
        )
    except (OSError, MdlError) as exc:
        log.info(
            "could not record the chunks of %s (%s): a later pull fetches them again", where, exc
        )


def read_sidecar(root: Path, state_dir: Path, xet_hash: str) -> tuple[Path, list[Written]] | None:
    """Where a recorded Xet file lies and its terms, or None (none, unreadable or malformed:
    logged, not an error).
    """
    path = sidecar_path(state_dir, xet_hash)
    try:
        raw = read_json(
            read_bytes(root, path, limit=SIDECAR_MAX), source=str(path), limit=SIDECAR_MAX
        )
        if (
            not isinstance(raw, dict)
            or raw.get("version") != SIDECAR_VERSION
            or raw.get("xet") != xet_hash
        ):
            raise ValueError("not a record of this file")
        where = raw.get("where")
        if (
            not isinstance(where, str)
            or not where
            or where.startswith("/")
            or ".." in where.split("/")
        ):
            raise ValueError("bad location")
        return root / where, _terms(raw.get("terms"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, MdlError) as exc:
        log.info("ignoring the chunk record %s: %s", path, exc)
        return None


@dataclass(frozen=True)
class Copy:
    """Bytes ``[offset, offset + sum(sizes))`` of ``path`` are these chunks (each checked as it
    is read).
    """

    path: Path
    offset: int
    chunks: tuple[tuple[bytes, int], ...]


class ReuseIndex:
    """The chunks of one model's Xet files on disk, by xorb: a term whose every chunk is here is
    copied, not fetched. Filled lazily per model from its record's Xet files; files this run writes
    are added as they are written."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._lock = threading.Lock()
        self._by_xorb: dict[str, list[tuple[Path, Written]]] = {}
        # each file's Xet hashes as recorded (an old version's too)
        self._files: dict[Path, set[str]] = {}
        # per xorb, made when first asked after an add: its terms' starts in order, and for each
        # place the term reaching farthest among those starting there or before (a chunk is held iff
        # that one's end is past it)
        self._reach: dict[str, tuple[list[int], list[tuple[Path, Written]]]] = {}

    def add(self, path: Path, terms: Iterable[Written], *, xet_hash: str) -> None:
        with self._lock:
            self._files.setdefault(path, set()).add(xet_hash)
            for term in terms:
                self._by_xorb.setdefault(term.xorb, []).append((path, term))
                self._reach.pop(term.xorb, None)

    @classmethod
    def of(cls, root: Path, state_dir: Path, recorded: Iterable[str]) -> ReuseIndex:
        """The chunks of the Xet files ``recorded`` (their Xet hashes) that a record lies beside."""
        index = cls(root)
        for xet_hash in recorded:
            if (found := read_sidecar(root, state_dir, xet_hash)) is not None:
                index.add(*found, xet_hash=xet_hash)
        return index

    def wrote(
        self, state_dir: Path, path: Path, terms: list[Written], *, xet_hash: str, kept: bool
    ) -> None:
        """A file this run wrote joins; ``kept`` (a model's, found again through its record): its
        terms are recorded beside it, and the versions it overwrote there forgotten."""
        if kept:
            write_sidecar(self.root, state_dir, xet_hash=xet_hash, where=path, terms=terms)
            # overwritten here: their chunks are gone
            for old in self._replaced(path, xet_hash):
                unlink(self.root, sidecar_path(state_dir, old))
        self.add(path, terms, xet_hash=xet_hash)

    def _replaced(self, path: Path, xet_hash: str) -> list[str]:
        """The Xet hashes recorded for ``path`` other than ``xet_hash``: versions a new one
        overwrote there.
        """
        with self._lock:
            return sorted(self._files.get(path, set()) - {xet_hash})

    def find(self, xorb: str, start: int, end: int) -> list[Copy] | None:
        """Copies that together hold chunks ``[start, end)`` of ``xorb`` in order, or None when
        any chunk is missing.
        """
        with self._lock:
            reach = self._reach.get(xorb)
            if reach is None:
                reach = self._reach[xorb] = _reach(self._by_xorb.get(xorb, []))
        starts, farthest = reach
        copies: list[Copy] = []
        index = start
        # each step in O(log n): a model of many terms in one xorb is not terms x terms
        while index < end:
            if (at := bisect_right(starts, index) - 1) < 0 or farthest[at][1].end <= index:
                return None
            path, term = farthest[at]
            upto = min(end, term.end)
            skip = sum(size for _, size in term.chunks[: index - term.start])
            copies.append(
                Copy(path, term.offset + skip, term.chunks[index - term.start : upto - term.start])
            )
            index = upto
        return copies


def _reach(known: list[tuple[Path, Written]]) -> tuple[list[int], list[tuple[Path, Written]]]:
    ordered = sorted(known, key=lambda item: item[1].start)
    farthest: list[tuple[Path, Written]] = []
    for item in ordered:
        farthest.append(item if not farthest or item[1].end > farthest[-1][1].end else farthest[-1])
    return [term.start for _, term in ordered], farthest


def read_copy(root: Path, copy: Copy) -> list[bytes] | None:
    """The chunks of ``copy`` read from disk, each matching its recorded hash; None when the file
    changed (or is gone, or is not mdl's to read): the term is fetched instead."""
    total = sum(size for _, size in copy.chunks)
    try:
        fd = open_file(root, copy.path, os.O_RDONLY)
    except (OSError, MdlError):
        return None
    try:
        data = os.pread(fd, total, copy.offset)
    except OSError:
        return None
    finally:
        os.close(fd)
    if len(data) != total:
        return None
    chunks, at, view = [], 0, memoryview(data)
    for digest, size in copy.chunks:
        piece = view[at : at + size]
        if chunk_hash(piece) != digest:
            return None
        chunks.append(bytes(piece))
        at += size
    return chunks


@dataclass(frozen=True)
class Resumable:
    """A Xet partial's record: the file it is of and the runs of chunks on disk (a whole term, or
    part of one), with their chunks' hashes as written."""

    xet_hash: str
    size: int
    boot: str | None
    terms: tuple[Written, ...]


def save_state(root: Path, path: Path, state: Resumable, *, source: str) -> None:
    """``source`` (redacted): what ``mdl clean`` names the partial by."""
    body = {
        "version": STATE_VERSION,
        "kind": BY_CHUNK,
        "source": source,
        "xet": state.xet_hash,
        "size": state.size,
        "boot": state.boot,
        "terms": _saved(state.terms),
    }
    write_atomic(root, path, json.dumps(body, separators=(",", ":")).encode())


def load_state(root: Path, path: Path, limit: int) -> Resumable | str | None:
    """The Xet partial's record; None when there is none or it is unusable; "plain" for the plain
    engine's record.
    """
    try:
        raw = read_json(read_bytes(root, path, limit=limit), source=str(path), limit=limit)
    except FileNotFoundError:
        return None
    except (OSError, MdlError) as exc:
        log.info("unreadable Xet resume record %s (%s), starting over", path, exc)
        return None
    if isinstance(raw, dict) and raw.get("kind") != BY_CHUNK and "pieces" in raw:
        return "plain"
    try:
        if (
            not isinstance(raw, dict)
            or raw.get("version") != STATE_VERSION
            or not is_hash(raw.get("xet"))
        ):
            raise ValueError("not a Xet resume record")
        if (boot := raw.get("boot")) is not None and not isinstance(boot, str):
            raise ValueError("bad boot id")
        return Resumable(raw["xet"], _int(raw.get("size")), boot, tuple(_terms(raw.get("terms"))))
    except ValueError as exc:
        log.info("unusable Xet resume record %s (%s), starting over", path, exc)
        return None
