"""One file over HTTP: .part + resume record, ranges over parallel streams, verification, atomic finish."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import logging
import os
import re
import threading
import time
from collections.abc import Callable
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2

from mdl.errors import (
    IntegrityError,
    InterruptedByUserError,
    LocalFSError,
    MdlError,
    NetworkError,
    NoSpaceError,
)
from mdl.progress import Progress
from mdl.store import fsync_dir
from mdl.transfer.http import (
    Credentials,
    ExpiredURLError,
    RetryableError,
    RetryPolicy,
    error_for_status,
    open_stream,
    origin,
    transport_error,
)
from mdl.transfer.ranges import ContentRangeError, parse_content_range

log = logging.getLogger("mdl.transfer")

STATE_VERSION = 1
MiB = 1024 * 1024
SPLIT_THRESHOLD = 32 * MiB  # files at least this big are fetched as parallel ranges
MIN_PIECE = 4 * MiB
PIECES_PER_CONNECTION = 4  # more pieces than streams, so a slow stream cannot hold the tail for long
CHECKPOINT_INTERVAL = 1.0  # seconds between resume-record saves (a kill -9 loses at most this much)
HASH_BLOCK = 8 * MiB
MAX_STALLS = 20
MAX_RESTARTS = 4


@dataclass(frozen=True)
class Identity:
    """What a download is of; a resume record with another identity is never spliced onto."""

    size: int | None
    sha256: str | None
    git_oid: str | None
    etag: str | None

    def matches(self, other: Identity) -> bool:
        """Same content, judged by the strongest key both sides know."""
        if self.size is not None and other.size is not None and self.size != other.size:
            return False
        for mine, theirs in ((self.sha256, other.sha256), (self.git_oid, other.git_oid)):
            if mine and theirs:
                return mine == theirs
        if self.etag and other.etag:
            return self.etag == other.etag
        return self.size is not None and self.size == other.size and not (self.sha256 or other.sha256)

    @property
    def has_validator(self) -> bool:
        """Whether two versions of the same size could be told apart (a hash or an ETag)."""
        return bool(self.sha256 or self.git_oid or self.etag)


@dataclass(frozen=True)
class TransferJob:
    """One file to fetch: where from, what it should be, and where its bytes go."""

    label: str
    url: str
    identity: Identity
    credentials: Credentials
    final_path: Path
    part_path: Path
    state_path: Path
    source: str  # redacted description for records and logs
    verify: bool = True
    size_pinned: bool = True  # False: the size is only what a probe saw; a new size means a new version
    retry_on_mismatch: bool = True  # False for a mirror: a bad hash there sends us to the next source
    renewable: bool = True  # a 403 may be cured by resolving again (Hub files); a presigned link cannot


@dataclass(frozen=True)
class TransferResult:
    """What ended up at ``final_path``."""

    size: int
    sha256: str
    git_oid: str | None
    etag: str | None
    resumed_from: int
    fetched: int
    mirror: str | None = None  # the (redacted) mirror the bytes came from, if not the origin


@dataclass(frozen=True)
class EngineConfig:
    """Knobs of the engine, from settings."""

    connections: int = 8
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    split_threshold: int = SPLIT_THRESHOLD
    checkpoint_interval: float = CHECKPOINT_INTERVAL
    max_stalls: int = MAX_STALLS  # stalls resumed per piece before giving up (they spend no retry)


class RangesIgnoredError(Exception):
    """The server answered a range request with a full 200: restart as one stream."""


class RateLimiter:
    """A shared token bucket capping total throughput across every stream (``--limit-rate``)."""

    def __init__(self, rate: int, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self._clock = clock
        self._lock = threading.Lock()
        self._next_free = clock()

    def consume(self, nbytes: int, cancel: threading.Event) -> None:
        """Account for ``nbytes`` and wait until the bucket allows them."""
        with self._lock:
            now = self._clock()
            # Allow a burst of at most a quarter second so an idle period does not bank unlimited credit.
            start = max(now - 0.25, self._next_free)
            self._next_free = start + nbytes / self.rate
            delay = self._next_free - now
        if delay > 0:
            cancel.wait(delay)


@dataclass
class Piece:
    """A byte range [start, end) of the file and how much of it is on disk."""

    start: int
    end: int | None  # None: unknown size, read to EOF
    done: int = 0

    @property
    def complete(self) -> bool:
        return self.end is not None and self.start + self.done >= self.end


def plan_pieces(size: int | None, *, connections: int, split_threshold: int) -> list[Piece]:
    """Split a file into ranges: one piece for small or unknown sizes, else ~4 pieces per connection."""
    if size is None:
        return [Piece(0, None)]
    if connections <= 1 or size < split_threshold:
        return [Piece(0, size)]
    count = connections * PIECES_PER_CONNECTION
    piece = max(MIN_PIECE, -(-size // count))
    piece = -(-piece // MiB) * MiB
    return [Piece(start, min(start + piece, size)) for start in range(0, size, piece)]


class _State:
    """The mutable progress of one download, shared by its streams, and its resume record on disk."""

    def __init__(self, job: TransferJob, pieces: list[Piece], validator: str | None) -> None:
        self.job = job
        self.pieces = pieces
        self.validator = validator
        self.lock = threading.Condition()
        self.last_save = time.monotonic()
        self.stop = threading.Event()  # set when one stream fails for good: the others end quietly
        self.save_lock = threading.Lock()  # one save at a time: streams checkpoint concurrently
        self.url = job.url  # where the streams fetch from now (a re-signed CDN URL after an expiry)
        self.relocate_lock = threading.Lock()  # one re-resolve per expiry, not one per stream
        self.responses: set[httpx2.Response] = set()  # this file's open responses (closed if it fails)

    @property
    def size(self) -> int | None:
        return self.pieces[-1].end

    def contiguous(self) -> int:
        """Bytes from offset 0 that are on disk without a gap (what the hasher may read)."""
        total = 0
        for piece in self.pieces:
            total = piece.start + piece.done
            if not piece.complete:
                break
        return total

    def on_disk(self) -> int:
        return sum(p.done for p in self.pieces)

    def to_json(self) -> dict[str, Any]:
        identity = self.job.identity
        return {
            "version": STATE_VERSION,
            "source": self.job.source,
            "identity": {
                "size": identity.size,
                "sha256": identity.sha256,
                "git_oid": identity.git_oid,
                "etag": identity.etag,
            },
            "validator": self.validator,
            "pieces": [[p.start, p.end, p.done] for p in self.pieces],
        }

    def save(self, fd: int) -> None:
        """Persist the record, but only after the bytes it claims are flushed (engine rule 3)."""
        with self.save_lock:
            with self.lock:
                snapshot = self.to_json()
                self.last_save = time.monotonic()
            os.fdatasync(fd)
            tmp = self.job.state_path.with_name(self.job.state_path.name + ".tmp")
            try:
                tmp.write_text(json.dumps(snapshot), encoding="utf-8")
                tmp.replace(self.job.state_path)
            except OSError:
                with contextlib.suppress(OSError):
                    tmp.unlink()
                raise

    def reset(self, pieces: list[Piece]) -> None:
        """Start over with a new layout (nothing on disk counts any more)."""
        with self.lock:
            self.pieces = pieces
            self.validator = None
        self.stop.clear()


def load_state(job: TransferJob) -> tuple[list[Piece], str | None] | None:
    """The saved pieces of an earlier run of the same content, or None (and stale files removed)."""
    try:
        raw = json.loads(job.state_path.read_text(encoding="utf-8"))
        ident = raw["identity"]
        saved = Identity(ident["size"], ident["sha256"], ident["git_oid"], ident["etag"])
        pieces = [Piece(int(s), None if e is None else int(e), int(d)) for s, e, d in raw["pieces"]]
        validator = raw.get("validator")
    except FileNotFoundError:
        discard_partial(job)
        return None
    except (OSError, ValueError, KeyError, TypeError):
        log.warning("%s: unreadable resume record, starting over", job.label)
        discard_partial(job)
        return None
    blind = not (saved.has_validator or job.identity.has_validator or isinstance(validator, str))
    if blind:  # nothing tells two versions of this size apart, and no If-Range protects the resume
        log.info("%s: no hash or ETag to prove the partial download is of this version, starting over", job.label)
        discard_partial(job)
        return None
    if raw.get("version") != STATE_VERSION or not saved.matches(job.identity) or not job.part_path.exists():
        log.info("%s: partial download is of another version, starting over", job.label)
        discard_partial(job)
        return None
    part_size = job.part_path.stat().st_size
    for piece in pieces:  # never trust a record claiming bytes past the end of the file on disk
        piece.done = max(0, min(piece.done, part_size - piece.start))
    return pieces, validator if isinstance(validator, str) else None


def saved_progress(state_path: Path, identity: Identity) -> int:
    """Bytes a resume record says are on disk for this identity (0 if none, unreadable or another version).

    Read-only, for planning: the ``.part`` is preallocated, so its size says nothing about progress.
    """
    try:
        raw = json.loads(state_path.read_text(encoding="utf-8"))
        ident = raw["identity"]
        saved = Identity(ident["size"], ident["sha256"], ident["git_oid"], ident["etag"])
        done = sum(int(d) for _, _, d in raw["pieces"])
    except (OSError, ValueError, KeyError, TypeError):
        return 0
    if raw.get("version") != STATE_VERSION or not saved.matches(identity):
        return 0
    return max(0, done)


def discard_partial(job: TransferJob) -> None:
    """Remove the .part and its resume record."""
    for path in (job.part_path, job.state_path):
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


class _Hasher:
    """sha256 (and the git blob sha1) of the contiguous prefix, read back while streams write."""

    def __init__(self, fd: int, size: int | None, *, git: bool) -> None:
        self.fd = fd
        self.sha256 = hashlib.sha256()
        self.sha1 = hashlib.sha1() if git and size is not None else None
        if self.sha1 is not None:
            self.sha1.update(b"blob %d\0" % (size or 0))
        self.position = 0
        self._buffer = bytearray(max(1, min(HASH_BLOCK, size if size is not None else HASH_BLOCK)))

    def catch_up(self, limit: int) -> None:
        """Hash bytes [position, limit) from the file."""
        view = memoryview(self._buffer)
        while self.position < limit:
            want = min(len(self._buffer), limit - self.position)
            got = os.preadv(self.fd, [view[:want]], self.position)
            if got <= 0:
                raise LocalFSError(f"could not read back {self.position} bytes while hashing")
            chunk = view[:got]
            self.sha256.update(chunk)
            if self.sha1 is not None:
                self.sha1.update(chunk)
            self.position += got


class Engine:
    """Fetches files: parallel ranges for big ones, one stream for small ones, always verified."""

    def __init__(
        self,
        client: httpx2.Client,
        config: EngineConfig,
        *,
        progress: Progress,
        cancel: threading.Event,
        limiter: RateLimiter | None = None,
        relocate: Callable[[TransferJob], str] | None = None,
    ) -> None:
        self.client = client
        self.config = config
        self.progress = progress
        self.cancel = cancel
        self.limiter = limiter
        self.relocate = relocate
        self._open: set[httpx2.Response] = set()
        self._open_lock = threading.Lock()

    def abort(self) -> None:
        """Stop every stream now (Ctrl-C): closing the responses wakes threads blocked in reads."""
        self.cancel.set()
        self._close(self._open)

    def fetch(self, job: TransferJob) -> TransferResult:
        """Download (or resume) one file and move it into place verified; retries once on a bad hash."""
        for attempt in (1, 2) if job.retry_on_mismatch else (2,):
            try:
                return self._fetch_once(job)
            except _HashMismatch as exc:
                self.progress.advance(job.label, -exc.counted)  # those bytes are thrown away: not progress
                discard_partial(job)
                if attempt == 2:
                    raise IntegrityError(
                        f"{job.label}: {exc.kind} mismatch: expected {exc.expected}, got {exc.actual}",
                        hint="the source changed or is corrupt; the partial file was removed",
                    ) from None
                log.warning("%s: %s mismatch, retrying once from zero", job.label, exc.kind)
                self.progress.note(f"{job.label}: {exc.kind} mismatch, downloading again from zero")
        raise AssertionError("unreachable")

    # -- one attempt -------------------------------------------------------------------------------

    def _fetch_once(self, job: TransferJob) -> TransferResult:
        try:
            job.part_path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise LocalFSError(f"{job.label}: cannot create {job.part_path.parent}: {exc.strerror or exc}") from exc
        loaded = load_state(job)
        if loaded is None:
            pieces = plan_pieces(
                job.identity.size,
                connections=self.config.connections,
                split_threshold=self.config.split_threshold,
            )
            validator = None
        else:
            pieces, validator = loaded
        state = _State(job, pieces, validator)
        resumed_from = state.on_disk()
        flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
        try:
            fd = os.open(job.part_path, flags, 0o644)
        except OSError as exc:
            raise LocalFSError(f"{job.label}: cannot write {job.part_path}: {exc.strerror}") from exc
        try:
            if loaded is None and state.size is not None:
                os.ftruncate(fd, state.size)
            if len(state.pieces) > 1:  # a one-stream file saves its record at the first checkpoint, if it lasts
                state.save(fd)
            self.progress.start(job.label, label=job.label, total=state.size, completed=resumed_from)
            hasher = self._run_until_done(job, state, fd)
            if state.size is None:  # unknown size: the stream ended, its length is the size
                state.pieces[0].end = state.pieces[0].done
                os.ftruncate(fd, state.pieces[0].done)
            hasher.catch_up(state.contiguous())
            size = os.fstat(fd).st_size
            self._check(job, size=size, hasher=hasher)
            os.fsync(fd)
        except OSError as exc:
            if exc.errno == errno.ENOSPC:
                os.close(fd)
                fd = -1
                discard_partial(job)
                raise NoSpaceError(f"{job.label}: no space left on device while writing {job.part_path}") from exc
            raise LocalFSError(f"{job.label}: {exc.strerror or exc} ({job.part_path})") from exc
        except _HashMismatch as exc:
            exc.counted = state.on_disk() - resumed_from
            raise
        except (MdlError, KeyboardInterrupt, httpx2.HTTPError):
            with contextlib.suppress(OSError):
                if state.on_disk() > 0:
                    state.save(fd)  # keep what we have for the next run
                else:
                    os.close(fd)
                    fd = -1
                    discard_partial(job)  # nothing worth resuming: leave no debris
            raise
        finally:
            if fd >= 0:
                os.close(fd)
        try:
            self._finish(job)
        except OSError as exc:
            raise LocalFSError(
                f"{job.label}: cannot move it into place at {job.final_path}: {exc.strerror or exc}"
            ) from exc
        return TransferResult(
            size=size,
            sha256=hasher.sha256.hexdigest(),
            git_oid=hasher.sha1.hexdigest() if hasher.sha1 is not None else None,
            etag=state.validator,
            resumed_from=resumed_from,
            fetched=size - resumed_from,
        )

    def _run_until_done(self, job: TransferJob, state: _State, fd: int) -> _Hasher:
        """Run the streams; start over cleanly when the server ignores ranges or the file changed under us."""
        for _ in range(MAX_RESTARTS):
            hasher = _Hasher(fd, state.size, git=job.identity.git_oid is not None)
            try:
                self._run_streams(job, state, fd, hasher)
                return hasher
            except RangesIgnoredError:
                log.info("%s: server ignores ranges, restarting as one stream", job.label)
                layout = [Piece(0, state.size)]
            except _SourceChanged as changed:
                log.info("%s: the file changed on the server, starting over", job.label)
                size = changed.new_size if changed.new_size is not None else state.size
                layout = plan_pieces(
                    size, connections=self.config.connections, split_threshold=self.config.split_threshold
                )
            self.progress.advance(job.label, -state.on_disk())
            state.reset(layout)
            os.ftruncate(fd, 0)  # never splice two versions: drop every byte of the old one
            if state.size is not None:
                os.ftruncate(fd, state.size)
            state.save(fd)
        raise NetworkError(f"{job.label}: the server kept changing the file or ignoring ranges; giving up")

    def _check(self, job: TransferJob, *, size: int, hasher: _Hasher) -> None:
        ident = job.identity
        if ident.size is not None and job.size_pinned and size != ident.size:
            raise _HashMismatch("size", f"{ident.size} bytes", f"{size} bytes")
        if not job.verify:
            return
        if ident.sha256 and hasher.sha256.hexdigest() != ident.sha256:
            raise _HashMismatch("sha256", ident.sha256, hasher.sha256.hexdigest())
        if ident.git_oid and hasher.sha1 is not None and hasher.sha1.hexdigest() != ident.git_oid:
            raise _HashMismatch("git blob id", ident.git_oid, hasher.sha1.hexdigest())

    def _finish(self, job: TransferJob) -> None:
        """Atomic finish (engine rule 7): the final path only ever holds verified bytes."""
        job.final_path.parent.mkdir(parents=True, exist_ok=True)
        if job.final_path.is_dir() and not job.final_path.is_symlink():
            raise LocalFSError(f"{job.label}: {job.final_path} is a folder, cannot replace it with a file")
        job.part_path.replace(job.final_path)
        fsync_dir(job.final_path.parent)
        with contextlib.suppress(FileNotFoundError):
            job.state_path.unlink()

    # -- streams -----------------------------------------------------------------------------------

    def _run_streams(self, job: TransferJob, state: _State, fd: int, hasher: _Hasher) -> None:
        todo = [p for p in state.pieces if not p.complete]
        state.url = job.url
        if len(state.pieces) > 1 and todo:
            state.url = self._locate_retrying(job, state)
        if len(todo) <= 1 and (state.size is None or state.size < self.config.split_threshold):
            for piece in todo:  # small file: stream inline, hash after (the bytes are in the page cache)
                self._run_piece(job, state, fd, piece, multi=len(state.pieces) > 1)
            hasher.catch_up(state.contiguous())
            return
        done = threading.Event()
        hash_error: list[BaseException] = []

        def hash_loop() -> None:
            try:
                while True:
                    with state.lock:
                        while state.contiguous() <= hasher.position and not done.is_set():
                            state.lock.wait(0.5)
                        target = state.contiguous()
                    if target > hasher.position:
                        hasher.catch_up(target)
                    elif done.is_set():
                        return
            except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread below
                hash_error.append(exc)

        hash_thread = threading.Thread(target=hash_loop, name=f"hash:{job.label}", daemon=True)
        hash_thread.start()
        queue = list(todo)
        queue_lock = threading.Lock()
        workers = max(1, min(self.config.connections, len(todo)))

        def worker() -> None:
            while not (self.cancel.is_set() or state.stop.is_set()):
                with queue_lock:
                    if not queue:
                        return
                    piece = queue.pop(0)
                try:
                    self._run_piece(job, state, fd, piece, multi=len(state.pieces) > 1)
                except _Stopped:
                    return

        try:
            with ThreadPoolExecutor(max_workers=workers, thread_name_prefix=f"get:{job.label}") as pool:
                futures = [pool.submit(worker) for _ in range(workers)]
                finished, _ = wait(futures, return_when=FIRST_EXCEPTION)
                failed = [f for f in finished if f.exception() is not None]
                if failed:
                    state.stop.set()
                    self._close(state.responses)  # only this file's streams: other files go on
                    wait(futures)
                    exc = failed[0].exception()
                    assert exc is not None
                    raise exc
        finally:
            done.set()
            with state.lock:
                state.lock.notify_all()
            hash_thread.join()
        if hash_error:
            raise hash_error[0]
        if self.cancel.is_set():
            raise InterruptedByUserError(f"{job.label}: interrupted")

    def _close(self, responses: set[httpx2.Response]) -> None:
        """Close responses so threads blocked reading them wake up."""
        with self._open_lock:
            doomed = list(responses)
        for response in doomed:
            with contextlib.suppress(Exception):
                response.close()

    def _relocate(self, job: TransferJob, state: _State, *, expired: str, multi: bool) -> None:
        """Re-resolve an expired signed URL once for all streams of this file."""
        assert self.relocate is not None
        with state.relocate_lock:
            if state.url != expired:
                return  # another stream already re-resolved it
            log.info("%s: signed URL refused (403), resolving it again", job.label)
            url = self.relocate(job)
            state.url = self._locate_retrying(job, state) if multi else url

    def _check_stop(self, job: TransferJob, state: _State) -> None:
        """Raise if the user interrupted, or end this stream quietly if a sibling stream failed."""
        if self.cancel.is_set():
            raise InterruptedByUserError(f"{job.label}: interrupted")
        if state.stop.is_set():
            raise _Stopped

    def _locate_retrying(self, job: TransferJob, state: _State) -> str:
        return self.config.retry.run(lambda: self._locate(job, state), what=job.label, wait=self.cancel.wait)

    def _locate(self, job: TransferJob, state: _State) -> str:
        """Follow redirects once (Hub → CDN) so every range goes straight to the final URL."""
        with open_stream(
            self.client, job.url, credentials=job.credentials, headers={"Range": "bytes=0-0"}, what=job.label
        ) as response:
            if response.status_code == 200:
                raise RangesIgnoredError
            if response.status_code != 206:
                raise error_for_status(response, what=job.label, hub=_from_hub(job, response))
            self._check_total(job, state, response)
            etag = response.headers.get("ETag")
            if etag and not etag.startswith("W/"):
                with state.lock:
                    changed = state.validator not in (None, etag) and state.on_disk() > 0
                    state.validator = etag
                if changed:  # the bytes we have are of another version: never splice them
                    raise _SourceChanged
            return str(response.url)

    def _run_piece(self, job: TransferJob, state: _State, fd: int, piece: Piece, *, multi: bool) -> None:
        """Fetch one piece to completion, retrying transient failures and resuming from its last byte."""
        failures = 0
        stalls = 0
        while not piece.complete:
            self._check_stop(job, state)
            url = state.url
            try:
                self._stream_piece(job, state, fd, piece, url, multi=multi)
                if piece.end is None:
                    return
                if not piece.complete:
                    raise RetryableError(f"{job.label}: connection closed early at byte {piece.start + piece.done}")
            except ExpiredURLError:
                if self.relocate is None or not job.renewable or failures >= self.config.retry.retries:
                    raise
                failures += 1
                self._relocate(job, state, expired=url, multi=multi)
            except httpx2.ReadTimeout as exc:
                self._check_stop(job, state)
                stalls += 1
                if stalls > self.config.max_stalls:
                    raise NetworkError(f"{job.label}: stalled {stalls} times, giving up") from exc
                log.info("%s: stream stalled, resuming at byte %d", job.label, piece.start + piece.done)
            except (RetryableError, httpx2.TransportError, httpx2.StreamError) as exc:
                self._check_stop(job, state)
                if isinstance(exc, httpx2.StreamError) and not isinstance(exc, httpx2.StreamClosed):
                    raise
                err = (
                    exc if isinstance(exc, RetryableError) else transport_error(exc, what=job.label, url=url)  # type: ignore[arg-type]
                )
                failures += 1
                if failures > self.config.retry.retries:
                    raise NetworkError(f"{err.message} (gave up after {failures} tries)") from exc
                delay = self.config.retry.delay(failures, retry_after=err.retry_after)
                log.info("%s: %s; retry %d in %.1fs", job.label, err.message, failures, delay)
                if self.cancel.wait(delay):
                    raise InterruptedByUserError(f"{job.label}: interrupted") from exc

    def _stream_piece(self, job: TransferJob, state: _State, fd: int, piece: Piece, url: str, *, multi: bool) -> None:
        offset = piece.start + piece.done
        headers: dict[str, str] = {}
        ranged = multi or offset > 0
        if ranged:
            end = "" if piece.end is None else str(piece.end - 1)
            headers["Range"] = f"bytes={offset}-{end}"
            if state.validator:
                headers["If-Range"] = state.validator  # RFC 9110 §13.1.5: a changed file comes back whole
        credentials = job.credentials if url == job.url else job.credentials.without_extra()
        with open_stream(self.client, url, credentials=credentials, headers=headers, what=job.label) as resp:
            with self._open_lock:
                self._open.add(resp)
                state.responses.add(resp)
            try:
                if resp.status_code == 206 and ranged:
                    self._check_content_range(job, resp, offset, piece, state)
                elif resp.status_code == 200:
                    if multi:
                        raise RangesIgnoredError
                    self._check_length(job, state, resp)
                    etag = resp.headers.get("ETag")
                    with state.lock:  # a full body is the current version: it is what we validate against now
                        state.validator = etag if etag and not etag.startswith("W/") else None
                    if offset > 0:  # the server ignored our Range: the body starts at byte 0
                        log.info("%s: server sent the whole file, restarting from zero", job.label)
                        self.progress.advance(job.label, -piece.done)
                        with state.lock:
                            piece.done = 0
                        offset = 0
                elif resp.status_code == 416 and piece.end is not None:
                    self._check_total(job, state, resp)
                    raise NetworkError(
                        f"{job.label}: server says bytes {offset}- are out of range (HTTP 416); the remote size changed"
                    )
                else:
                    raise error_for_status(resp, what=job.label, hub=_from_hub(job, resp))
                etag = resp.headers.get("ETag")
                if etag and not etag.startswith("W/") and state.validator is None:
                    with state.lock:
                        state.validator = etag
                self._copy_body(job, state, fd, piece, resp, offset)
            finally:
                with self._open_lock:
                    self._open.discard(resp)
                    state.responses.discard(resp)

    def _check_content_range(
        self, job: TransferJob, resp: httpx2.Response, offset: int, piece: Piece, state: _State
    ) -> None:
        try:
            start, end, total = parse_content_range(resp.headers.get("Content-Range", ""))
        except ContentRangeError as exc:
            raise NetworkError(f"{job.label}: bad Content-Range from server: {exc}") from exc
        if start != offset:
            raise NetworkError(f"{job.label}: asked for bytes from {offset}, server sent from {start}")
        if total is not None and state.size is not None and total != state.size:
            raise self._size_differs(job, state, total)
        if piece.end is not None and end >= piece.end:
            raise NetworkError(f"{job.label}: server sent bytes past the requested range ({end} >= {piece.end})")

    def _check_length(self, job: TransferJob, state: _State, resp: httpx2.Response) -> None:
        """A full 200 body must be exactly the expected size (an integrity failure, not a network one)."""
        length = resp.headers.get("Content-Length")
        if length and length.isdigit() and state.size is not None and int(length) != state.size:
            raise self._size_differs(job, state, int(length))

    def _check_total(self, job: TransferJob, state: _State, resp: httpx2.Response) -> None:
        """The total in a Content-Range (``bytes a-b/N`` or ``bytes */N``) must be the expected size."""
        match = re.match(r"^\s*bytes\s+(?:\d+-\d+|\*)/(\d+)\s*$", resp.headers.get("Content-Range", ""))
        if match and state.size is not None and int(match.group(1)) != state.size:
            raise self._size_differs(job, state, int(match.group(1)))

    def _size_differs(self, job: TransferJob, state: _State, actual: int) -> Exception:
        """A pinned size that the server contradicts is an integrity failure; a probed one means a new version."""
        if not job.size_pinned:
            return _SourceChanged(new_size=actual)
        return _HashMismatch("size", f"{state.size} bytes", f"{actual} bytes (server)")

    def _copy_body(
        self, job: TransferJob, state: _State, fd: int, piece: Piece, resp: httpx2.Response, offset: int
    ) -> None:
        limit = None if piece.end is None else piece.end
        for chunk in resp.iter_raw():
            self._check_stop(job, state)
            if limit is not None and offset + len(chunk) > limit:
                if resp.status_code == 200:  # a full body longer than the file we expect
                    raise self._size_differs(job, state, offset + len(chunk))
                chunk = chunk[: limit - offset]  # never write past our piece, whatever the server sends
            written = os.pwrite(fd, chunk, offset)
            offset += written
            with state.lock:
                piece.done += written
                # Wake the hasher only when there may be a new block for it (a piece ended or a block filled):
                # a notify per chunk costs a thread switch per 64 KiB.
                if piece.complete or (piece.done % HASH_BLOCK) < written:
                    state.lock.notify_all()
            self.progress.advance(job.label, written)
            if self.limiter is not None:
                self.limiter.consume(written, self.cancel)
            if time.monotonic() - state.last_save >= self.config.checkpoint_interval:
                state.save(fd)


def _from_hub(job: TransferJob, response: httpx2.Response) -> bool:
    """Whether a response came from the Hub itself (a 403 there is auth; from a CDN, an expired URL)."""
    return job.credentials.hub_origin is not None and origin(str(response.url)) == job.credentials.hub_origin


class _SourceChanged(Exception):
    """The server's ETag (or, for an unpinned size, its size) changed under us: start over."""

    def __init__(self, new_size: int | None = None) -> None:
        super().__init__("source changed")
        self.new_size = new_size


class _Stopped(Exception):
    """A sibling stream failed; this one ends without an error of its own."""


class _HashMismatch(Exception):
    def __init__(self, kind: str, expected: str, actual: str) -> None:
        super().__init__(kind)
        self.kind = kind
        self.expected = expected
        self.actual = actual
        self.counted = 0  # bytes this attempt reported as progress
