"""The resume record of a ``.part`` on disk: read back (strictly: ``parse_state``, ``load_state``),
written as it fills (``Record``: when a save is due, cheap or durable, the keeper thread and its
writeback), seeded from other sources' bytes; and the ``.part``'s end: discarded, or moved into
place.
"""

# (annotations here are evaluated, not postponed: typing compiles each string annotation of a
# NamedTuple's fields at every start)
import contextlib
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
from typing import Any, NamedTuple, Protocol, TypeGuard

from mdl.errors import LocalFSError, MdlError, UsageError, disk_error
from mdl.outsidejson import read_json
from mdl.redact import redact_url
from mdl.store.confined import not_own, read_bytes, rename, unlink, write_atomic
from mdl.store.filesystem import DirSyncs, fsync_dir, stat_file
from mdl.transfer.job import Identity, TransferJob
from mdl.transfer.scheduling import MiB, Piece

log = logging.getLogger("mdl.transfer")

STATE_VERSION = 1
STATE_MAX = 64 << 20  # bytes: a resume record lists at most a few thousand pieces
WRITEBACK_EVERY = 0.1  # seconds between nudges to the kernel to start writing what arrived
# seconds between flushed records of a big download: what a crash of the machine may lose at most
DURABLE_EVERY = 30.0
# a record is saved once 1/this of the file more is on disk, however soon (a kill -9 loses < 5%) ...
SAVE_SHARE = 50
# ... but not for less than the first nor waiting for more than the second (each save is a new
# file, ~0.5-1 ms on ext4 with the journal busy: a 4 MiB file of a 300-file pull saved every MiB
# spent more on its records than a kill -9 would cost; a slower download is saved by time anyway)
SAVE_BYTES = (8 * MiB, 32 * MiB)
BOOT_ID = Path("/proc/sys/kernel/random/boot_id")  # Linux: changes at every boot
SYNC_FILE_RANGE_WRITE = 2  # <linux/fs.h>: start writeback of dirty pages, do not wait for it
RECORD_ROOM = 64 * 1024  # the bytes a lone stream gives back on a full disk, for its record

Layout = list[list[int | None]]  # a record's pieces: [start, end, done] each


def save_threshold(size: int | None) -> int:
    """Bytes written after which a resume record is due, however soon: 1/SAVE_SHARE of the file,
    within SAVE_BYTES."""
    return min(max(SAVE_BYTES[0], (size or 0) // SAVE_SHARE), SAVE_BYTES[1])


def record_due(unsaved: int, elapsed: float, *, every: int, interval: float) -> bool:
    """The engines' rule: a resume record is due ``every`` bytes or ``interval`` seconds after the
    last."""
    return unsaved >= every or elapsed >= interval


class Claims(Protocol):
    """What a record is saved from: the claim state of one ``.part`` (``DownloadState``)."""

    job: TransferJob
    fd: int  # the .part, open for the download
    lock: threading.Condition
    pieces: list[Piece]
    validator: str | None
    fetched: int  # bytes written by this run

    def on_disk(self) -> int: ...

    def take_back(self, piece: Piece, frontier: int) -> int: ...


class Record:
    """The resume record of one ``.part``: when it is due, and its writing (cheap, or durable once
    the bytes it claims are flushed: engine rule 3); a keeper thread writes it off the streams."""

    def __init__(self, claims: Claims, *, flushed: Layout | None = None) -> None:
        self.claims = claims
        self.last_save = time.monotonic()
        # when ``due`` first saw bytes the last record lacks (None: it lacks none)
        self.unsaved_from: float | None = None
        self.saved_bytes = 0  # bytes on disk that the last saved record claims
        self.saved_fetched = 0  # ``fetched`` when the last record was saved
        # a layout whose bytes are on the disk (a durable save's); dropped by every take-back
        self.flushed = flushed
        self.saved_once = False  # this run wrote a record (else only a loaded one may be there)
        self.every = save_threshold(claims.pieces[-1].end)
        self.lock = threading.Lock()  # one save at a time: streams checkpoint concurrently
        # a keeper thread saves the record: the streams never wait on the disk's journal
        self.background = False
        self.wanted = threading.Event()  # a stream found a save due: the keeper writes it now

    def save(self, *, durable: bool = False) -> None:
        """Persist the record. ``durable`` (an exit; or no boot id to tell a restart by): after the
        bytes it claims are flushed. Else cheap, no flush (a kill -9 loses no page the kernel
        holds), marked with this boot: after a crash of the machine the bytes it claims may be gone,
        and ``load_state`` drops it."""
        boot, claims, job = None if durable else boot_id(), self.claims, self.claims.job
        with self.lock:
            with claims.lock:
                layout: Layout = [[p.start, p.end, p.done] for p in claims.pieces]
                snapshot: dict[str, Any] = {
                    "version": STATE_VERSION,
                    "source": job.source,
                    "identity": job.identity._asdict(),
                    "validator": claims.validator,
                    # where the validator holds: another source's is no word on these bytes
                    "at": redact_url(job.url),
                    "pieces": layout,
                }
                # and what a crash of the machine cannot have lost: the last durable layout
                if boot is not None:
                    snapshot.update(boot=boot, flushed=self.flushed)
                self.last_save, self.unsaved_from = time.monotonic(), None
                self.saved_bytes, self.saved_fetched = claims.on_disk(), claims.fetched
            if boot is None:
                os.fdatasync(claims.fd)
                self.flushed = layout
            self.saved_once = True  # before the write: a failed one may have left its file
            write_atomic(job_root(job), job.state_path, json.dumps(snapshot).encode())

    def due(self, interval: float) -> bool:
        """Whether a record is due: ``every`` bytes since the last, or ``interval`` seconds since
        the first byte it lacks arrived (under the claims' lock); never once every byte of a file
        of known size is there (it is verified and moved into place next: a record would only be
        removed, and a kill before the rename loses no more than since the last record)."""
        now, unsaved = time.monotonic(), self.claims.fetched - self.saved_fetched
        # The interval runs from the first byte the last record lacks (none is lost before it): a
        # small file whose one answer came later than the interval is not recorded for it.
        if unsaved <= 0:
            self.unsaved_from = None
        elif self.unsaved_from is None:
            self.unsaved_from = now
        elapsed = now - (self.last_save if self.unsaved_from is None else self.unsaved_from)
        if not record_due(unsaved, elapsed, every=self.every, interval=interval):
            return False
        # (asked per chunk under the claims' lock: the pieces are looked at only when one is due)
        pieces = self.claims.pieces
        return pieces[-1].end is None or not all(p.complete for p in pieces)

    def checkpoint(self) -> None:
        """A record found due by a stream: the keeper writes it (a stream never waits on a rename
        or a flush); with none (no streams running yet), it is saved here, cheap."""
        if self.background:
            self.wanted.set()
        else:
            self.save()

    def keep_on_full_disk(self) -> None:
        """What is on disk recorded for the next run, on a full disk. A lone stream that saved no
        record yet gives its last ``RECORD_ROOM`` bytes back, making room for it; a split file's
        earlier record (saved as it started) stays if no newer one fits."""
        claims = self.claims
        if claims.on_disk() == 0:  # nothing worth resuming: leave no debris
            discard_partial(claims.job)
            return
        try:
            self.save(durable=True)
            return
        except OSError:
            if len(claims.pieces) > 1:
                return
        piece = claims.pieces[0]
        claims.take_back(piece, max(piece.start, piece.start + piece.done - RECORD_ROOM))
        with contextlib.suppress(OSError):
            os.ftruncate(claims.fd, piece.start + piece.done)
            self.save(durable=True)

    @contextlib.contextmanager
    def keeping(self, *, checkpoint: float, on_failure: Callable[[], None]) -> Iterator[None]:
        """Off the streams (an fdatasync would stall one): writeback nudges and saves; a failed
        save is raised."""
        claims, done = self.claims, threading.Event()

        def keep() -> None:
            nudged = flushed = time.monotonic()
            try:
                while True:
                    # a save a stream found due, or the next nudge
                    self.wanted.wait(WRITEBACK_EVERY)
                    self.wanted.clear()
                    if done.is_set():
                        return
                    if (now := time.monotonic()) - nudged >= WRITEBACK_EVERY:
                        start_writeback(claims.fd)
                        nudged = now
                    on_disk = claims.on_disk()
                    with claims.lock:
                        due = self.due(checkpoint)
                    if due and on_disk > self.saved_bytes:
                        # Cheap saves are lost with the machine: now and then one waits for the
                        # disk, so a crash keeps it.
                        durable = now - flushed >= DURABLE_EVERY
                        self.save(durable=durable)
                        flushed = now if durable else flushed
            except BaseException:
                with contextlib.suppress(Exception):
                    on_failure()
                raise

        from concurrent.futures import ThreadPoolExecutor  # (not before the first download)

        self.background = True
        with ThreadPoolExecutor(1, thread_name_prefix=f"keep:{claims.job.label}") as pool:
            running = pool.submit(keep)
            try:
                yield
            finally:
                done.set()
                self.wanted.set()  # the keeper ends now
                self.background = False  # the streams have ended
        running.result()


def parse_state(raw: object) -> tuple[Identity, list[Piece], str | None]:
    """A resume record's identity, pieces and validator; ValueError unless the pieces tile [0, size)
    in order, or when it is a cheap save (``Record.save``) of another boot: its bytes may
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
) -> tuple[Identity, list[Piece], str | None, Layout | None, object]:
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


class Loaded(NamedTuple):
    """An earlier run's resume record: its pieces, validator, and the layout of it known to be on
    the disk.
    """

    pieces: list[Piece]
    validator: str | None
    flushed: Layout | None


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


def saved_progress(state_path: Path, identity: Identity) -> tuple[int, bool]:
    """Bytes a resume record says are on disk, for planning (the preallocated ``.part`` cannot),
    and whether they are of this identity (else of another version: a fetch discards them).
    """
    try:
        saved, pieces, *_ = _read_state(state_path, state_path.parent)
    except (OSError, ValueError, MdlError):
        return 0, True
    return sum(piece.done for piece in pieces), saved.matches(identity)


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
        "identity": job.identity._asdict(),
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


def finish_part(
    job: TransferJob, dirs: DirSyncs | None = None, *, record: bool = True, written: os.stat_result
) -> None:
    """Rename into place (``written``: the partial's ``fstat``, taken on the descriptor its bytes
    went through: only that file is moved, ``confined.rename``); the folder's entry made durable
    now or, with ``dirs``, before a record names it; the resume record removed (``record``: there
    may be one; a small file's single stream often saved none)."""
    try:
        rename(job_root(job), job.part_path, job.final_path, written=written)
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
