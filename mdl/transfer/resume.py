"""The partial file on disk: shared progress, hashes as it fills, the resume record, writeback,
the atomic finish.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from functools import cache
from itertools import pairwise
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeGuard

from mdl.errors import LocalFSError, MdlError, NetworkError, UsageError, disk_error
from mdl.outsidejson import read_json
from mdl.redact import redact_url
from mdl.store.confined import not_own, read_bytes, rename, unlink, write_atomic
from mdl.store.filesystem import DirSyncs, fsync_dir, stat_file
from mdl.transfer._target import Target
from mdl.transfer.context import JobContext
from mdl.transfer.job import HashMismatch, Identity, TransferJob, Version
from mdl.transfer.scheduling import ASSUMED_RATE, MIN_STEAL, MiB, Piece, split_largest

if TYPE_CHECKING:
    from mdl.signing.statement import (
        SignedFile,  # (a signed pull's: made by what checks signatures)
    )

log = logging.getLogger("mdl.transfer")

STATE_VERSION = 1
STATE_MAX = 64 << 20  # bytes: a resume record lists at most a few thousand pieces
WRITEBACK_EVERY = 0.1  # seconds between nudges to the kernel to start writing what arrived
# seconds between flushed records of a big download: what a crash of the machine may lose at most
DURABLE_EVERY = 30.0
# a record is saved once 1/this of the file more is on disk, however soon (a kill -9 loses < 5%) ...
SAVE_SHARE = 50
# ... but not for less than the first nor waiting for more than the second
SAVE_BYTES = (1 * MiB, 32 * MiB)
BOOT_ID = Path("/proc/sys/kernel/random/boot_id")  # Linux: changes at every boot
SYNC_FILE_RANGE_WRITE = 2  # <linux/fs.h>: start writeback of dirty pages, do not wait for it
HASH_BLOCK = 8 * MiB  # the hashing thread is woken when a piece completes or fills a block this big
# bytes read back per step, so a stream at the frontier never waits long for the lock
READ_BACK = 1 * MiB
# bytes on disk a resumed range repeats, when no hash will check the file (engine rule 15)
OVERLAP = 64 * 1024
# ... at most this fraction of its last answer (a server capping its 206s pays ~6%, not more) ...
OVERLAP_SHARE = 16
OVERLAP_LEAST = 4 * 1024  # ... and never less


class Hasher:
    """Hashes of the file's contiguous prefix: offered from memory at the frontier, else read
    back (``catch_up``).
    """

    def __init__(
        self, fd: int, size: int | None, *, git: bool, signed: SignedFile | None = None
    ) -> None:
        self.fd, self.size, self.git, self.signed = fd, size, git, signed
        self.lock = threading.Lock()
        self._buffer: bytearray | None = None
        # bumped by reset: a catch-up begun before it stops instead of hashing old bytes
        self.epoch = 0
        self.reset()

    def reset(self) -> None:
        with self.lock:
            self.epoch += 1
            self.sha256 = hashlib.sha256()
            self.sha1 = (
                hashlib.sha1(b"blob %d\0" % self.size)
                if self.git and self.size is not None
                else None
            )
            self.check = self.signed.check_apart() if self.signed is not None else None
            self.position = 0

    def _update(self, data: memoryview) -> None:
        self.sha256.update(data)
        if self.sha1 is not None:
            self.sha1.update(data)
        if self.check is not None:
            self.check.update(data)
        self.position += len(data)

    def offer(self, offset: int, data: bytes | memoryview) -> None:
        # Looked at without the lock first (the frontier's stream or the read-back holds it while
        # it hashes); a position read as it moves leaves the bytes to the read-back.
        if not offset <= self.position < offset + len(data):
            return
        with self.lock:
            if offset <= self.position < offset + len(data):
                self._update(memoryview(data)[self.position - offset :])

    def catch_up(self, limit: int, *, epoch: int | None = None) -> None:
        """Hash bytes [position, limit) from the file; stops if reset since ``epoch`` (``limit``
        may be stale).
        """
        epoch = self.epoch if epoch is None else epoch
        while True:
            with self.lock:
                if self.position >= limit or self.epoch != epoch:
                    return
                if self._buffer is None:
                    self._buffer = bytearray(min(READ_BACK, max(1, limit - self.position)))
                view = memoryview(self._buffer)[: limit - self.position]
                if (got := os.preadv(self.fd, [view], self.position)) <= 0:
                    raise LocalFSError(f"could not read back {self.position} bytes while hashing")
                self._update(view[:got])


def round_trip_bytes(state: DownloadState, streams: int) -> int:
    """What one of ``streams`` streams moves in one time to first byte (guessed before any)."""
    rate = state.fetched / max(1e-3, time.monotonic() - state.began) / max(1, streams)
    return int((rate or ASSUMED_RATE) * state.ttfb)


def save_threshold(size: int | None) -> int:
    """Bytes written after which a resume record is due, however soon: 1/SAVE_SHARE of the file,
    within SAVE_BYTES."""
    return min(max(SAVE_BYTES[0], (size or 0) // SAVE_SHARE), SAVE_BYTES[1])


def record_due(unsaved: int, elapsed: float, *, every: int, interval: float) -> bool:
    """The engines' rule: a resume record is due ``every`` bytes or ``interval`` seconds after the
    last."""
    return unsaved >= every or elapsed >= interval


class DownloadState:
    def __init__(
        self,
        job: TransferJob,
        fd: int,
        pieces: list[Piece],
        validator: str | None,
        beside: JobContext | None = None,
    ) -> None:
        self.job, self.fd, self.pieces = job, fd, pieces  # fd: the .part, open for the download
        self.beside = beside or JobContext()
        # validator, etag, last_modified, modified_seen: then replies.check_version keeps them
        self.adopt(validator)
        # times the file changed upstream during this download (a second one gives up)
        self.changes = 0
        self.changed_to: list[Version] = []  # the versions this attempt's answers changed to
        self.lock = threading.Condition()
        self.last_save = time.monotonic()
        # when ``save_due`` first saw bytes the last record lacks (None: it lacks none)
        self.unsaved_from: float | None = None
        self.saved_bytes = 0  # bytes on disk that the last saved record claims
        self.saved_fetched = 0  # ``fetched`` when the last record was saved
        # a layout whose bytes are on the disk (a durable save's)
        self.flushed: list[list[int | None]] | None = None
        self.saved_once = False  # this run wrote a record (else only a loaded one may be there)
        self.save_every = save_threshold(self.size)
        self.stop = threading.Event()  # set when one stream fails for good: the others end quietly
        self.save_lock = threading.Lock()  # one save at a time: streams checkpoint concurrently
        self.target = Target(job)  # where the streams fetch from now
        # the bytes of an earlier run were dropped: this is a download, not a resume
        self.restarted = False
        # why bytes on disk were first thrown away (a resume's outcome says it)
        self.discarded: str | None = None
        # the server sends content codings: only one whole-file stream is trusted
        self.whole_only = False
        # per kind of retry, the highest count told to the user (one line each)
        self.announced: dict[str, int] = {}
        self.began = time.monotonic()
        # bytes written by this run (for the per-stream rate that prices a stolen tail)
        self.fetched = 0
        self.ttfb = 0.0  # the mean time to first byte seen: what one more request costs
        self.hasher = self.new_hasher()  # this attempt's: fed at the frontier
        # a keeper thread saves the record: the streams never wait on the disk's journal
        self.background = False
        self.save_wanted = threading.Event()  # a stream found a save due: the keeper writes it now
        self.multi = False  # this attempt runs ranges that may go in parallel (engine._aim_ranges)
        # No hash will check the result: a request continuing bytes another answer wrote first
        # repeats some of them (engine rule 15)
        self.overlaps = not (job.verify and job.identity.has_hash)
        self.answers = 0  # answers that wrote bytes since the bytes on disk were last dropped

    def overlap(self, piece: Piece) -> int:
        """Bytes on disk right before ``piece``'s frontier (its own, or a finished piece's before
        it) the piece's next request repeats and compares (0: none)."""
        if not self.overlaps:
            return 0
        with self.lock:
            if piece.done > 0:
                share = piece.answered // OVERLAP_SHARE if piece.answered else OVERLAP
                return min(OVERLAP, piece.done, max(OVERLAP_LEAST, share))
            before = next((p for p in self.pieces if p.end == piece.start and p.complete), None)
            return (
                0
                if before is None or before.end is None
                else min(OVERLAP, before.end - before.start)
            )

    def provable(self) -> bool:
        """Whether some resumed request can compare bytes on disk with the server's: a piece resumed
        partway, or a piece to fetch right after a finished one, or nothing left to fetch (else the
        bytes on disk are only the earlier run's word)."""
        todo = [p for p in self.pieces if not p.complete]
        return not todo or self.on_disk() == 0 or any(self.overlap(p) > 0 for p in todo)

    def forget(self) -> None:
        """Claim none of the bytes on disk: they are fetched again."""
        with self.lock:
            for piece in self.pieces:
                self._unclaim(piece.start, piece.start + piece.done)
                piece.done = 0
            self.flushed = None

    def _unclaim(self, start: int, end: int) -> None:
        """THE one telling of bytes claimed no more (``Landing.taken_back``), before they change:
        every state function that unclaims bytes calls it, under the lock."""
        if end > start and (hear := self.beside.landing) is not None:
            hear.taken_back(start, end)

    def drop(self, piece: Piece, *, why: str) -> int:
        """Claim none of ``piece``'s bytes (its next answer starts it over); returns how many it
        had."""
        # with the frontier: the hashing thread sees both or none; no record claims dropped bytes
        with self.lock:
            self.discarded = self.discarded or (why if piece.done else None)
            self._unclaim(piece.start, piece.start + piece.done)
            dropped, piece.done = piece.done, 0
            self.restarted, self.answers, self.flushed = True, 0, None
            self.hasher.reset()
        return dropped

    def take_back(self, piece: Piece, frontier: int) -> int:
        """Move ``piece``'s frontier back to ``frontier``: what an answer wrote past it is no
        longer claimed; returns how much."""
        with self.lock:
            dropped = max(0, piece.start + piece.done - frontier)
            self._unclaim(frontier, frontier + dropped)
            piece.done -= dropped
            self.flushed = None  # which of the bytes it claimed were the file's, nothing tells
            self.fetched -= dropped
            self.beside.ledger.add("thrown", dropped)
            if self.hasher.position > frontier:
                self.hasher.reset()
        return dropped

    def refetch(self, start: int, end: int) -> None:
        """Claim none of the bytes ``[start, end)`` of the complete file: a piece of its own,
        fetched again (a range that failed its hash)."""
        with self.lock:
            self._unclaim(start, end)
            layout: list[Piece] = []
            for piece in self.pieces:
                if piece.end is not None and (piece.end <= start or piece.start >= end):
                    layout.append(piece)
                    continue
                assert piece.end is not None and piece.complete
                before, after = (piece.start, start), (end, piece.end)
                layout += [Piece(a, b, done=b - a) for a, b in (before, after) if a < b]
            self.pieces = sorted([*layout, Piece(start, end)], key=lambda p: p.start)
            self.flushed = None
            if self.hasher.position > start:
                self.hasher.reset()

    def adopt(self, validator: str | None) -> None:
        """A version fixed earlier (record, probe; None: not yet): an ETag is quoted, a date not. A
        weak ETag cannot guard a range (RFC 9110 §13.1.5), so it counts as none."""
        usable = validator if validator and not validator.startswith("W/") else None
        is_etag = usable is not None and usable.startswith('"')
        self.validator = usable  # sent as If-Range with every range
        self.etag = usable if is_etag else None
        # A date: the Last-Modified that guards ranges, and the first one an answer sent
        # (check_version updates both)
        self.last_modified = self.modified_seen = None if is_etag else usable

    def carry(self, piece: Piece, upto: int) -> int:
        """Move ``piece``'s end on towards ``upto`` over the pieces after it that no answer has
        begun (their requests may be on the way): its stream's answer runs on past its end (the
        probe's open-ended first GET), and what it reads need not come again. A piece taken whole
        leaves the layout; its answer, when it comes, is dropped. Returns the piece's end."""
        with self.lock:
            while (
                piece.end is not None
                and piece.end < upto
                and (after := self.free_after(piece)) is not None
            ):
                assert after.end is not None
                after.start = piece.end = min(upto, after.end)
                if after.complete:
                    self.pieces = [p for p in self.pieces if p is not after]
            return piece.end or upto

    def free_after(self, piece: Piece) -> Piece | None:
        """The piece right after ``piece`` if no answer for it has begun and it holds no bytes
        (``carry`` may take it), else None."""
        with self.lock:
            after = next((p for p in self.pieces if p.start == piece.end), None)
            return (
                None if after is None or after.end is None or after.begun or after.done else after
            )

    def begin(self, piece: Piece) -> int:
        """An answer for ``piece`` arrived: no stream reads on into it from now; returns its
        frontier.
        """
        with self.lock:
            piece.begun = True
            return piece.start + piece.done

    def steal(self, streams: int) -> Piece | None:
        """A running piece's tail for an idle stream: more than twice what a stream moves in one
        time to first byte.
        """
        with self.lock:
            least = max(MIN_STEAL, 2 * round_trip_bytes(self, streams))
            return split_largest(self.pieces, least=least)

    def saw_first_byte(self, seconds: float) -> None:
        with self.lock:
            self.ttfb = seconds if self.ttfb == 0 else 0.7 * self.ttfb + 0.3 * seconds

    @property
    def size(self) -> int | None:
        return self.pieces[-1].end

    def contiguous(self) -> int:
        total = 0
        for piece in self.pieces:
            total = piece.start + piece.done
            if not piece.complete:
                break
        return total

    def on_disk(self) -> int:
        return sum(p.done for p in self.pieces)

    def save(self, *, durable: bool = False) -> None:
        """Persist the record. ``durable`` (an exit; or no boot id to tell a restart by): after the
        bytes it claims are flushed. Else cheap, no flush (a kill -9 loses no page the kernel
        holds), marked with this boot: after a crash of the machine the bytes it claims may be gone,
        and ``load_state`` drops it."""
        boot = None if durable else boot_id()
        with self.save_lock:
            with self.lock:
                layout: list[list[int | None]] = [[p.start, p.end, p.done] for p in self.pieces]
                snapshot: dict[str, Any] = {
                    "version": STATE_VERSION,
                    "source": self.job.source,
                    "identity": dataclasses.asdict(self.job.identity),
                    "validator": self.validator,
                    # where the validator holds: another source's is no word on these bytes
                    "at": redact_url(self.job.url),
                    "pieces": layout,
                }
                # and what a crash of the machine cannot have lost: the last durable layout
                if boot is not None:
                    snapshot.update(boot=boot, flushed=self.flushed)
                self.last_save, self.unsaved_from = time.monotonic(), None
                self.saved_bytes, self.saved_fetched = self.on_disk(), self.fetched
            if boot is None:
                os.fdatasync(self.fd)
                self.flushed = layout
            self.saved_once = True  # before the write: a failed one may have left its file
            write_atomic(job_root(self.job), self.job.state_path, json.dumps(snapshot).encode())

    def save_due(self, interval: float) -> bool:
        """Whether a record is due: ``save_every`` bytes since the last, or ``interval`` seconds
        since the first byte it lacks arrived (under ``lock``); never once every byte is there."""
        now, unsaved = time.monotonic(), self.fetched - self.saved_fetched
        # The interval runs from the first byte the last record lacks (none is lost before it): a
        # small file whose one answer came later than the interval is not recorded for it.
        if unsaved <= 0:
            self.unsaved_from = None
        elif self.unsaved_from is None:
            self.unsaved_from = now
        elapsed = now - (self.last_save if self.unsaved_from is None else self.unsaved_from)
        return (
            record_due(unsaved, elapsed, every=self.save_every, interval=interval)
            and not self._all_there()
        )

    def _all_there(self) -> bool:
        """Every byte of a file of known size is on disk: it is verified, synced and moved into
        place next, and its record would only be removed (a small file whose one answer came after
        the interval would write one per file). A kill before the rename loses no more than since
        the last record."""
        return self.size is not None and all(p.complete for p in self.pieces)

    def count_change(self) -> None:
        """One more version of the file seen upstream during the download: the second change
        gives up.
        """
        self.changes += 1
        if self.changes > 1:
            raise NetworkError(
                f"{self.job.label}: the file kept changing upstream while it was downloaded"
                f" ({self.changes + 1} versions seen); nothing was kept",
                hint="try again once the source has stopped changing",
            ) from None

    def reset(self, pieces: list[Piece]) -> None:
        with self.lock:
            for piece in self.pieces:  # the file starts over (truncated after this)
                self._unclaim(piece.start, piece.start + piece.done)
            self.pieces, self.flushed = pieces, None
            self.adopt(None)  # the next answer says (or the one seen: ``Restarts._start_over``)
            self.restarted, self.answers, self.changed_to = True, 0, []
            self.hasher = self.new_hasher()
        self.stop.clear()

    def new_hasher(self) -> Hasher:
        return Hasher(
            self.fd, self.size, git=self.job.identity.git_oid is not None, signed=self.job.signed
        )

    def verify(self, size: int) -> None:
        """The bytes on disk are the expected file (size, sha256, git blob id), or
        ``HashMismatch``.
        """
        ident, hasher = self.job.identity, self.hasher
        if ident.size is not None and self.job.size_pinned and size != ident.size:
            raise HashMismatch("size", f"{ident.size} bytes", f"{size} bytes")
        if not self.job.verify:
            return
        if ident.sha256 and hasher.sha256.hexdigest() != ident.sha256:
            raise HashMismatch("sha256", ident.sha256, hasher.sha256.hexdigest())
        if ident.git_oid and hasher.sha1 is not None and hasher.sha1.hexdigest() != ident.git_oid:
            raise HashMismatch("git blob id", ident.git_oid, hasher.sha1.hexdigest())
        if hasher.check is not None and (bad := hasher.check.mismatch()) is not None:
            raise HashMismatch(*bad)


def parse_state(raw: object) -> tuple[Identity, list[Piece], str | None]:
    """A resume record's identity, pieces and validator; ValueError unless the pieces tile [0, size)
    in order, or when it is a cheap save (``DownloadState.save``) of another boot: its bytes may
    never have reached the disk."""
    if not isinstance(raw, dict):
        raise ValueError("not an object")
    if raw.get("version") != STATE_VERSION:
        raise ValueError(f"version {raw.get('version')!r}")
    saved, validator = _parse_identity(raw)
    return saved, _parse_pieces(_kept_layout(raw), saved.size), validator


def _kept_layout(raw: dict[str, object]) -> object:
    """The pieces a record claims: once the machine restarted, only its last durable layout."""
    if "boot" not in raw or raw["boot"] == boot_id():
        return raw.get("pieces")
    if raw.get("flushed") is None:
        raise ValueError("saved before the machine restarted, its bytes never flushed")
    return raw["flushed"]


def _parse_identity(raw: dict[str, object]) -> tuple[Identity, str | None]:
    ident = raw.get("identity")
    if not isinstance(ident, dict):
        raise ValueError("identity is not an object")
    if (size := ident.get("size")) is not None and not _is_offset(size):
        raise ValueError("identity.size")
    sha256, git_oid, etag = (_text(ident.get(key)) for key in ("sha256", "git_oid", "etag"))
    return Identity(size, sha256, git_oid, etag), _text(raw.get("validator"))


def _text(value: object) -> str | None:
    if value is None or isinstance(value, str):
        return value
    raise ValueError("identity or validator is not text")


def _parse_pieces(entries: object, size: int | None) -> list[Piece]:
    """Pieces that tile ``[0, size)`` in order (the last one open-ended when the size is not
    known)."""
    if not isinstance(entries, list) or not entries:
        raise ValueError("pieces")
    pieces: list[Piece] = []
    for index, entry in enumerate(entries):
        where, last = f"pieces[{index}]", index == len(entries) - 1
        if not isinstance(entry, list) or len(entry) != 3:
            raise ValueError(where)
        start, end, done = entry
        if not _is_offset(start) or start != (pieces[-1].end if pieces else 0):
            raise ValueError(f"{where}: start")
        _check_end(end, start, size, last=last, where=where)
        if not _is_offset(done) or (end is not None and done > end - start):
            raise ValueError(f"{where}: done")
        pieces.append(Piece(start, end, done))
    return pieces


def _check_end(end: object, start: int, size: int | None, *, last: bool, where: str) -> None:
    """A piece's end is past its start, and the last one's the file's size (open: not known)."""
    if end is None and (not last or size is not None):
        raise ValueError(f"{where}: open end")
    if end is not None and (not _is_offset(end) or end <= start or (last and end != size)):
        raise ValueError(f"{where}: end")


@cache
def boot_id() -> str | None:
    """This boot's id (Linux), or None: then every record is saved durable."""
    try:
        return BOOT_ID.read_text().strip() or None
    except OSError:
        return None


def _is_offset(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**63


def job_root(job: TransferJob) -> Path:
    """No link below this folder is followed: the destination root, else the deepest folder both
    paths share.
    """
    return job.root or Path(os.path.commonpath([job.part_path.parent, job.final_path.parent]))


# the "kind" of a resume record mdl.xet writes (terms, not pieces): each engine leaves the other's
BY_CHUNK = "xet"


class _ByChunk(ValueError):
    """The record is the Xet fetcher's (``"kind": "xet"``, terms not pieces): not damage, another
    engine's partial.
    """


def _read_state(
    path: Path, root: Path
) -> tuple[Identity, list[Piece], str | None, list[list[int | None]] | None, object]:
    """``parse_state`` of the record, the layout of it known to be on the disk (None: none), and
    the (redacted) URL whose answers gave its validator (None: a record of an older mdl)."""
    # an OutsideJSONError is a UsageError, as unreadable as any other
    raw: Any = read_json(read_bytes(root, path, limit=STATE_MAX), source=str(path), limit=STATE_MAX)
    # mdl.xet's record of a partial fetched by chunk
    if isinstance(raw, dict) and raw.get("kind") == BY_CHUNK:
        raise _ByChunk("a partial download by chunk (Xet) is not resumed over plain HTTP")
    saved, pieces, validator = parse_state(raw)
    # a durable save's, or its flushed layout
    durable = "boot" not in raw or raw["boot"] != boot_id()
    flushed = [[p.start, p.end, p.done] for p in pieces] if durable else raw.get("flushed")
    if flushed is not None:
        # checked as strictly as the pieces
        parse_state({**raw, "pieces": flushed, "boot": boot_id()})
    return saved, pieces, validator, flushed, raw.get("at")


@dataclasses.dataclass(frozen=True)
class Loaded:
    """An earlier run's resume record: its pieces, validator, and the layout of it known to be on
    the disk.
    """

    pieces: list[Piece]
    validator: str | None
    flushed: list[list[int | None]] | None


def load_state(job: TransferJob) -> Loaded | None:
    """The saved pieces of an earlier run of the same content, or None (and stale files removed)."""
    try:
        saved, pieces, validator, flushed, at = _read_state(job.state_path, job_root(job))
    # UsageError: over its size limit, so not one mdl wrote
    except (OSError, ValueError, UsageError) as exc:
        if isinstance(exc, _ByChunk):  # not damage: said once in the log, not on stderr
            log.info("%s: %s, starting over", job.label, exc)
        elif not isinstance(exc, FileNotFoundError):  # no record: nothing to say
            log.warning("%s: unreadable resume record (%s), starting over", job.label, exc)
        discard_partial(job)
        return None
    wanted = job.identity

    def kept(size: int) -> Loaded:
        """The record resumed on a ``.part`` of ``size`` bytes."""
        for piece in pieces:  # never trust a record claiming bytes past the end of the file on disk
            piece.done = max(0, min(piece.done, size - piece.start))
        # A file known by its hash is the same file wherever it comes from: another source's
        # validator would only condemn the kept bytes there (its If-Range earns the whole file);
        # this source's first answer fixes the version, and the hash checks the result.
        if at not in (None, redact_url(job.url)) and job.verify and wanted.has_hash:
            log.info("%s: resuming from another source; the hash checks the kept bytes", job.label)
            return Loaded(pieces, None, flushed)
        return Loaded(pieces, validator, flushed)

    if not any((saved.has_hash, saved.etag, wanted.has_hash, wanted.etag, validator is not None)):
        # nothing tells two versions of this size apart, and no If-Range protects the resume
        log.info(
            "%s: no hash or ETag to prove the partial download is of this version, starting over",
            job.label,
        )
    elif (found := stat_file(job.part_path)) is not None and planted(job, found):
        pass  # set aside below, never written through
    elif found is None or not saved.matches(wanted):
        log.info("%s: partial download is of another version, starting over", job.label)
    else:
        return kept(found.st_size)
    discard_partial(job)
    return None


def planted(job: TransferJob, found: os.stat_result) -> bool:
    """Whether the ``.part`` is not a file mdl made (a link put there): said once; the caller sets
    it aside and starts over, never writing through it (engine rule 14)."""
    if (foreign := not_own(found)) is not None:
        log.warning(
            "%s: set aside %s: it is %s, not a file mdl made; starting over",
            job.label,
            job.part_path,
            foreign,
        )
    return foreign is not None


def saved_progress(state_path: Path, identity: Identity) -> int:
    """Bytes a resume record of this identity says are on disk, for planning (the preallocated
    ``.part`` cannot).
    """
    try:
        saved, pieces, *_ = _read_state(state_path, state_path.parent)
    except (OSError, ValueError, MdlError):
        return 0
    return sum(piece.done for piece in pieces) if saved.matches(identity) else 0


def seed(job: TransferJob, ranges: list[tuple[int, int]], *, cut: int | None = None) -> None:
    """A resume record claiming ``ranges`` (sorted, apart) of ``job``'s ``.part``: bytes another
    source wrote there (a fill's published parts), for the next fetch of it to resume on and its
    hash to check; ``cut``: its pieces end at every multiple of it too, and are fetched in order
    (a fill's holder publishes whole parts as they land). Saved as a cheap save is: a crash of the
    machine drops it."""
    if (size := job.identity.size) is None:
        return
    edges = sorted(
        {0, size, *(start for start, _ in ranges), *range(cut or size, size, cut or size)}
    )
    pieces, spans = [], iter(ranges)
    span = next(spans, (size, size))
    for start, end in pairwise(edges):
        while span[1] <= start and span[0] < size:
            span = next(spans, (size, size))
        pieces.append([start, end, min(span[1], end) - start if span[0] <= start else 0])
    record = {
        "version": STATE_VERSION,
        "source": job.source,
        "identity": dataclasses.asdict(job.identity),
        "validator": None,
        "pieces": pieces,
        "boot": boot_id(),
        "flushed": None,
    }
    write_atomic(job_root(job), job.state_path, json.dumps(record).encode())


def discard_partial(job: TransferJob) -> None:
    unlink(job_root(job), job.part_path, job.state_path)


def part_error(job: TransferJob, exc: OSError) -> LocalFSError:
    """The error a failed write or truncate of the job's partial file ends with. A full disk's
    keeps the partial and its record (the caller saves it): once there is room, the next run
    resumes on the bytes already there."""
    return disk_error(
        exc,
        full=f"{job.label}: no space left on device while writing {job.part_path}"
        " (the partial download is kept: free space and run again to resume)",
        other=f"{job.label}: {exc.strerror or exc} ({job.part_path})",
    )


RECORD_ROOM = 64 * 1024  # the bytes a lone stream gives back on a full disk, for its record


def keep_on_full_disk(state: DownloadState) -> None:
    """What is on disk recorded for the next run, on a full disk. A lone stream that saved no
    record yet gives its last ``RECORD_ROOM`` bytes back, making room for it; a split file's earlier
    record (saved as it started) stays if no newer one fits."""
    if state.on_disk() == 0:  # nothing worth resuming: leave no debris
        discard_partial(state.job)
        return
    try:
        state.save(durable=True)
        return
    except OSError:
        if len(state.pieces) > 1:
            return
    piece = state.pieces[0]
    with state.lock:
        piece.done = max(0, piece.done - RECORD_ROOM)
    with contextlib.suppress(OSError):
        os.ftruncate(state.fd, piece.start + piece.done)
        state.save(durable=True)


def finish_part(job: TransferJob, dirs: DirSyncs | None = None, *, record: bool = True) -> None:
    """Rename into place; the folder's entry made durable now or, with ``dirs``, before a record
    names it; the resume record removed (``record``: there may be one; a small file's single stream
    often saved none)."""
    try:
        rename(job_root(job), job.part_path, job.final_path)
    except LocalFSError as exc:
        raise LocalFSError(f"{job.label}: {exc.message}") from None
    if dirs is None:
        fsync_dir(job.final_path.parent)
    else:
        dirs.add(job.final_path.parent)
    if record:
        unlink(job_root(job), job.state_path)


@cache
def _sync_file_range() -> Callable[..., Any] | None:
    if not sys.platform.startswith("linux"):
        return None
    import ctypes  # only big downloads get here: kept off start-up

    try:
        # the process's own libc; it returns an int
        call = ctypes.CDLL(None, use_errno=True).sync_file_range
    except (OSError, AttributeError):
        return None
    call.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    return call


def start_writeback(fd: int) -> None:
    """Ask the kernel to start writing dirty pages now, or the final fsync waits for most of the
    file.
    """
    if (call := _sync_file_range()) is not None:
        call(fd, 0, 0, SYNC_FILE_RANGE_WRITE)  # a failure only means the final fsync has more to do


@contextlib.contextmanager
def keeping(
    state: DownloadState, *, checkpoint: float, on_failure: Callable[[], None]
) -> Iterator[None]:
    """Off the streams (an fdatasync would stall one): hashing read back, writeback, saves; a
    failed save is raised.
    """
    hasher, lock, done = state.hasher, state.lock, threading.Event()

    def keep() -> None:
        nudged = flushed = time.monotonic()
        try:
            while True:
                # a save a stream found due, or the next nudge
                state.save_wanted.wait(WRITEBACK_EVERY)
                state.save_wanted.clear()
                if done.is_set():
                    return
                if (now := time.monotonic()) - nudged >= WRITEBACK_EVERY:
                    start_writeback(state.fd)
                    nudged = now
                on_disk = state.on_disk()
                with state.lock:
                    due = state.save_due(checkpoint)
                if due and on_disk > state.saved_bytes:
                    # Cheap saves are lost with the machine: now and then one waits for the disk, so
                    # a crash keeps it.
                    durable = now - flushed >= DURABLE_EVERY
                    state.save(durable=durable)
                    flushed = now if durable else flushed
        except BaseException:
            with contextlib.suppress(Exception):
                on_failure()
            raise

    def hash_loop() -> None:  # writers notify ``lock`` when the prefix may have grown
        while True:
            with lock:
                while state.contiguous() <= hasher.position and not done.is_set():
                    lock.wait(0.5)
                target = state.contiguous()
                epoch = hasher.epoch  # read with the frontier: a reset is made under the same lock
            if target > hasher.position:
                hasher.catch_up(target, epoch=epoch)
            elif done.is_set():
                return

    from concurrent.futures import ThreadPoolExecutor  # (not before the first download)

    state.background = True
    with ThreadPoolExecutor(2, thread_name_prefix=f"keep:{state.job.label}") as pool:
        running = [pool.submit(keep), pool.submit(hash_loop)]
        try:
            yield
        finally:
            done.set()
            state.save_wanted.set()  # the keeper ends now
            state.background = False  # the streams have ended
            with lock:
                lock.notify_all()  # the hashing thread may be waiting for more
        for future in running:
            future.result()
