"""A Xet-backed Hub file fetched the way the Hub stores it: a read token from the Hub, the file's
reconstruction from the CAS, the chunks already on disk copied (each checked against its recorded
hash), the other xorb ranges fetched in parallel on the run's client with exactly the Range each
names, decoded, written into the partial, resumed by term. Every byte is verified twice before the
file is moved into place: the Xet file hash, from the hashes of the chunks as they were written, and
the sha256 as always. What the protocol cannot deliver raises ``XetFallback``: the plain resolve
path then fetches the file."""

from __future__ import annotations

import contextlib
import errno
import heapq
import itertools
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from urllib.parse import urlsplit

import httpx2

from mdl.errors import (
    AuthError,
    IntegrityError,
    InterruptedByUserError,
    LocalFSError,
    MdlError,
    NoSpaceError,
)
from mdl.progress import Progress
from mdl.redact import Secrets, redact_url
from mdl.sources import XetRef
from mdl.store import DirSyncs, open_file, stat_file, unlink
from mdl.transfer import (
    Credentials,
    Hasher,
    RateLimiter,
    RetryableError,
    RetryPolicy,
    TransferJob,
    TransferResult,
    boot_id,
    discard_partial,
    error_for_status,
    finish_part,
    follow,
    job_root,
    origin,
    planted,
    promised,
    read_body,
    set_read_timeout,
    set_reply_deadline,
    start_writeback,
    transport_error,
)
from mdl.xet.hashing import chunk_hash, file_hash, to_hex
from mdl.xet.protocol import (
    Fetch,
    Reconstruction,
    ReplyError,
    Term,
    XetToken,
    parse_reconstruction,
    parse_token,
    token_from_headers,
)
from mdl.xet.reuse import (
    Copy,
    Resumable,
    ReuseIndex,
    Written,
    load_state,
    read_copy,
    read_sidecar,
    save_state,
    sidecar_path,
    write_sidecar,
)
from mdl.xet.xorb import MAX_CHUNK, UnknownFormat, XorbError, chunk_size, decode_chunks

log = logging.getLogger("mdl.xet")

REPLY_MAX = 64 << 20  # a reconstruction of a 1 TB file lists ~16k terms: far less than this ...
# ... and of a file or span of n bytes at most this plus n / REPLY_SHARE: a term and its URL
REPLY_BASE = 64 << 10
# (well under 1 KiB) per 8 KiB of file, the smallest chunk; a padded reply costs no more memory
REPLY_SHARE = 8
TOKEN_MAX = 256 << 10  # auth.md: accessToken and casUrl are at most 64000 characters each
STATE_MAX = 64 << 20
REFRESH_BEFORE = 30.0  # seconds before its expiry a read token is asked again (auth.md)
WRITE_BLOCK = 1 << 20  # decoded bytes of one term gathered before one pwritev
READ_BLOCK = 4 << 20  # bytes of a resumed run read back at once to check its chunks' hashes
MIN_PIECE = 8 << 20  # a term is cut into pieces (one request and stream each) no smaller than this
# Resume records, as the plain engine spaces them: once 1/SAVE_PART of the file more is on disk (1
# to 32 MiB) or SAVE_EVERY seconds passed, whichever first, each listing every chunk on disk (a kill
# -9 loses about that much) ...
SAVE_PART = 50
SAVE_BYTES = (1 << 20, 32 << 20)
SAVE_EVERY = 1.0
# ... but saving takes at most this share of the time (a 50 GB file's record is ~50 MB)
SAVE_SHARE = 0.05
# seconds between nudges to the kernel to write what arrived: the final fsync has little left
WRITEBACK_EVERY = 0.1
# a CAS that is down is left for the plain path quickly, not after the origin's long backoff
CAS_RETRIES = 2
CAS_BACKOFF_CAP = 1.0


class XetFallback(Exception):
    """The protocol cannot deliver this file now (why: the message); the plain resolve path
    fetches it.
    """


class _Refused(Exception):
    """A xorb URL answered 403: its signature expired; the reconstruction is asked again."""


class _Suspect(Exception):
    """A mismatch after bytes were resumed or copied: fetched again whole before it is called
    corrupt.
    """


class _Unsplittable(Exception):
    """A piece's reconstruction is not the part of its term it should be: the file is fetched
    again unsplit.
    """


class _Stopped(Exception):
    """Another task of the file failed, or Ctrl-C: this one stops."""


@dataclass
class _Slot:
    """A term being fetched: its chunks so far, the decoded bytes not yet written and where they
    go.
    """

    index: int
    offset: int
    chunks: list[tuple[bytes, int]] = field(default_factory=list)
    pending: list[bytes] = field(default_factory=list)
    pending_bytes: int = 0
    written: int = 0
    safe: int = 0  # chunks wholly on disk (written, not pending): what a resume record may claim


class _Gate:
    """At most ``slots`` streams decode at once (more would only fight for the GIL); a freed slot
    goes to the waiting stream earliest in its file, so the bytes at the sha256's frontier come
    first and are hashed from memory."""

    def __init__(self, slots: int) -> None:
        self._cond = threading.Condition()
        self._free = slots
        self._waiting: list[tuple[int, int]] = []  # (offset in the file, ticket): a heap
        self._tickets = itertools.count()

    @contextlib.contextmanager
    def turn(self, offset: int) -> Iterator[None]:
        key = (offset, next(self._tickets))
        with self._cond:
            heapq.heappush(self._waiting, key)
            while not (self._free and self._waiting[0] == key):
                self._cond.wait()
            heapq.heappop(self._waiting)
            self._free -= 1
            self._cond.notify_all()  # the next in line may take a slot still free
        try:
            yield
        finally:
            with self._cond:
                self._free += 1
                self._cond.notify_all()


class _Terms:
    """Where a xorb range's chunks go: every term of the range that holds each, written in blocks
    at its offset.
    """

    def __init__(self, file: _File, users: list[int]) -> None:
        self.file = file
        self.slots = [_Slot(i, file.offsets[i]) for i in users]
        self.terms = users
        self.holding = _Holding(self.slots, file.rec.terms)

    # where in the file the next bytes land (the decode gate serves the earliest first)
    def at(self) -> int:
        return self.slots[0].offset + self.slots[0].written

    def place(self, index: int, data: bytes) -> None:
        holders = self.holding.at(index)
        if not holders:  # a chunk of the range no term of this stream uses: not hashed for nothing
            return
        file, digest = self.file, chunk_hash(data)
        for slot in holders:
            term = file.rec.terms[slot.index]
            slot.chunks.append((digest, len(data)))
            slot.pending.append(data)
            slot.pending_bytes += len(data)
            last = index == term.end - 1
            if slot.pending_bytes >= WRITE_BLOCK or last:
                if slot.written + slot.pending_bytes > term.length:
                    raise file._corrupt(
                        f"term {slot.index} decoded to more than {term.length} bytes"
                    )
                self._flush(slot)
            if last and slot.written == term.length:
                file._finished(
                    slot.index,
                    Written(term.xorb, term.start, term.end, slot.offset, tuple(slot.chunks)),
                )

    def _flush(self, slot: _Slot) -> None:
        self.file._write(slot.offset + slot.written, slot.pending)
        slot.written += slot.pending_bytes
        slot.pending, slot.pending_bytes = [], 0
        # after the write: a record never claims a chunk before its bytes are written
        slot.safe = len(slot.chunks)
        self.file._moved(slot.index, slot.written)

    def keep(self) -> None:
        """Interrupted: the chunks decoded but not yet written go to disk, for the record saved
        on the way out.
        """
        for slot in self.slots:
            if (
                slot.pending
                and slot.written + slot.pending_bytes <= self.file.rec.terms[slot.index].length
            ):
                self._flush(slot)

    def runs(self) -> Iterator[tuple[int, Written]]:
        """Each unfinished term's chunks on disk, from its start (by term)."""
        for slot in self.slots:
            if safe := slot.safe:
                term = self.file.rec.terms[slot.index]
                yield (
                    slot.index,
                    Written(
                        term.xorb,
                        term.start,
                        term.start + safe,
                        slot.offset,
                        tuple(slot.chunks[:safe]),
                    ),
                )

    def close(self) -> None:
        for slot in self.slots:
            term = self.file.rec.terms[slot.index]
            if slot.written != term.length:
                raise self.file._corrupt(
                    f"term {slot.index} decoded to {slot.written} bytes, not {term.length}"
                )

    def undo(self) -> None:
        """A stream that failed: its unfinished terms count again from zero."""
        for slot in self.slots:
            if slot.index not in self.file.done and slot.written:
                self.file._moved(slot.index, 0, undo=slot.written)


class _Holding:
    """The slots whose terms hold each chunk of a range, asked in chunk order: a slot joins at its
    term's first chunk and leaves after its last, so a range of many terms costs each chunk only the
    terms holding it."""

    def __init__(self, slots: list[_Slot], terms: tuple[Term, ...]) -> None:
        self.terms = terms
        # next to join: last
        self.waiting = sorted(slots, key=lambda slot: terms[slot.index].start, reverse=True)
        self.active: list[_Slot] = []

    def at(self, index: int) -> list[_Slot]:
        while self.waiting and self.terms[self.waiting[-1].index].start <= index:
            self.active.append(self.waiting.pop())
        self.active = [slot for slot in self.active if self.terms[slot.index].end > index]
        return self.active


@dataclass(frozen=True)
class _Placed:
    """A chunk a piece wrote (some of): its index in the xorb, where the piece placed its first byte
    in the file, its hash and length."""

    index: int
    pos: int
    digest: bytes
    size: int


@dataclass(frozen=True)
class _Kept:
    """A run of a term resumed from disk, as a piece that is already done: its chunks, each where
    it lies.
    """

    owned: tuple[_Placed, ...]
    lead: None = None

    @classmethod
    def of(cls, run: Written) -> _Kept:
        places = itertools.accumulate((size for _, size in run.chunks), initial=run.offset)
        chunks = zip(itertools.count(run.start), places, run.chunks, strict=False)
        return cls(
            tuple(_Placed(index, pos, digest, size) for index, pos, (digest, size) in chunks)
        )


class _Window:
    """Where a piece's chunks go: file bytes ``[first, end)`` of term ``term``; the chunk at ``at``
    is ``chunks[0]``. Every byte written comes from a chunk hashed here: one starting in the window
    (``owned``: its hash goes into the Xet file hash) or the one across ``first`` (``lead``: it must
    be the piece before's owned chunk, hash and place)."""

    def __init__(
        self, file: _File, term: int, first: int, end: int, *, at: int, chunks: tuple[int, int]
    ) -> None:
        self.file, self.term, self.first, self.end, self.pos = file, term, first, end, at
        self.terms = (term,)
        self.start_chunk, self.end_chunk = chunks
        self.owned: list[_Placed] = []  # the chunks starting here, in order
        self.lead: _Placed | None = None  # the chunk across ``first``, whose tail is written here
        self.pending: list[bytes | memoryview] = []
        self.pending_bytes = self.written = 0
        self.owned_at = -1  # where the first owned chunk starts in the file
        # owned chunks wholly on disk from here (the one across ``end`` is the next piece's to
        # finish)
        self.safe = 0
        self._safe_end = 0  # where the last of them ends

    def at(self) -> int:
        return self.first + self.written

    def place(self, index: int, data: bytes) -> None:
        if not self.start_chunk <= index < self.end_chunk:
            return
        pos, size = self.pos, len(data)
        self.pos += size
        low, high = max(pos, self.first), min(pos + size, self.end)
        if self.first <= pos < self.end:
            if not self.owned:
                self.owned_at = self._safe_end = pos
            self.owned.append(_Placed(index, pos, chunk_hash(data), size))
        elif low < high:
            self.lead = _Placed(index, pos, chunk_hash(data), size)
        if low >= high:
            return
        if low != self.first + self.written + self.pending_bytes:
            raise _Unsplittable("a piece's chunks do not follow each other")
        self.pending.append(memoryview(data)[low - pos : high - pos])
        self.pending_bytes += high - low
        if self.pending_bytes >= WRITE_BLOCK:
            self._flush()

    def _flush(self) -> None:
        if self.pending_bytes:
            self.file._write(self.first + self.written, self.pending)
            self.written += self.pending_bytes
            self.pending, self.pending_bytes = [], 0
            on_disk, owned = self.first + self.written, self.owned
            while self.safe < len(owned) and self._safe_end + owned[self.safe].size <= on_disk:
                self._safe_end += owned[self.safe].size
                self.safe += 1

    def keep(self) -> None:
        """Interrupted: what was decoded goes to disk, for the record saved on the way out."""
        self._flush()

    def runs(self) -> Iterator[tuple[int, Written]]:
        """The owned chunks on disk, as one run of the term."""
        if safe := self.safe:
            xorb, start = self.file.rec.terms[self.term].xorb, self.owned[0].index
            chunks = tuple((c.digest, c.size) for c in self.owned[:safe])
            yield self.term, Written(xorb, start, start + safe, self.owned_at, chunks)

    def close(self) -> None:
        self._flush()
        if self.written != self.end - self.first:
            raise _Unsplittable(
                f"a piece of term {self.term} holds {self.written} of its {self.end - self.first}"
                " bytes"
            )

    def undo(self) -> None:
        if self.written:
            self.file.source.progress.advance(self.file.job.label, -self.written)


class XetSource:
    """What one run's Xet fetches share: the client, read tokens by repo and revision, and the
    chunks on disk.
    """

    def __init__(
        self,
        client: httpx2.Client,
        *,
        retry: RetryPolicy,
        progress: Progress,
        cancel: threading.Event,
        streams: Callable[[int], int],
        stall_timeout: float | None,
        hub: Callable[[], Credentials],
        secrets: Secrets,
        dirs: DirSyncs,
        recorded: Callable[[str], list[str]],
        limiter: RateLimiter | None = None,
    ) -> None:
        self.client, self.progress, self.cancel, self.dirs = client, progress, cancel, dirs
        self.retry = replace(retry, retries=min(retry.retries, CAS_RETRIES), cap=CAS_BACKOFF_CAP)
        self.streams, self.stall_timeout, self.hub, self.secrets = (
            streams,
            stall_timeout,
            hub,
            secrets,
        )
        # a model's installed Xet files (their Xet hashes), from its record
        self.recorded = recorded
        # --limit-rate: the run's one budget, shared with the plain engine's streams
        self.limiter = limiter
        self.decoding = _Gate(max(1, len(os.sched_getaffinity(0))))
        self._tokens: dict[str, XetToken] = {}
        self._token_lock = threading.Lock()
        self._indexes: dict[tuple[Path, str], ReuseIndex] = {}
        self._parsing = threading.Lock()
        self._index_lock = threading.Lock()

    # --- the token and the reconstruction
    # ------------------------------------------------------------------------

    def token(self, url: str, what: str, *, fresh: bool = False) -> XetToken:
        """The read token for ``url`` (a repo at a revision), asked again ``REFRESH_BEFORE`` its
        expiry.
        """
        with self._token_lock:
            known = self._tokens.get(url)
            if known is None or fresh or known.expires - REFRESH_BEFORE <= time.time():
                known = self._tokens[url] = self._ask_token(url, what)
            return known

    def _ask_token(self, url: str, what: str) -> XetToken:
        def once() -> XetToken:
            with follow(self.client, url, credentials=self.hub(), what=what) as response:
                if response.status_code != 200:
                    raise error_for_status(response, what=what, hub=True)
                self._stall_rule(response)
                body = _read(response, TOKEN_MAX, what=what, timeout=self.client.timeout.read)
                try:
                    return parse_token(body)
                except ReplyError:
                    if (token := token_from_headers(response.headers)) is None:
                        raise
                    return token

        try:
            token = self.retry.run(once, what=what, wait=self.cancel.wait)
        # the Hub refused the token: exit 3, as for any Hub file
        except (AuthError, InterruptedByUserError):
            raise
        except (MdlError, ReplyError) as exc:
            raise XetFallback(f"no Xet read token ({_why(exc)})") from exc
        self.secrets.add(token.access_token)
        return token

    def reconstruction(
        self, ref: XetRef, what: str, *, size: int, span: tuple[int, int] | None = None
    ) -> Reconstruction:
        """The file's reconstruction (v2, else v1; ``span``: of bytes first..last only), with one
        fresh token if the CAS refuses the one we hold. Its reply is at most in proportion to the
        ``size`` bytes of the file (or of the span) it describes, and parsed one at a time per run.
        """
        limit = min(
            REPLY_MAX, REPLY_BASE + (size if span is None else span[1] - span[0] + 1) // REPLY_SHARE
        )
        for fresh in (False, True):
            token = self.token(ref.token_url, what, fresh=fresh)
            # as a redirect from https to http is refused
            if _downgraded(ref.token_url, token.cas_url):
                raise XetFallback("the Hub, asked over https, names a Xet storage over plain http")
            credentials = Credentials(
                extra={"Authorization": f"Bearer {token.access_token}"},
                extra_origin=origin(token.cas_url),
            )
            base = token.cas_url.rstrip("/")
            try:
                for version in (2, 1):
                    url = f"{base}/v{version}/reconstructions/{ref.hash}"
                    body = self._ask_reconstruction(
                        url, credentials, what, span, limit, v2=version == 2
                    )
                    if body is None:
                        continue
                    with self._parsing:  # a parsed reply costs a few times its bytes: one at a time
                        rec = parse_reconstruction(body, version=version, ranged=span is not None)
                    del body
                    # presigned URLs are secrets
                    if any(_downgraded(base, fetch.url) for fetch in rec.fetches):
                        raise XetFallback(
                            "its reconstruction, asked over https, names xorb URLs over plain http"
                        )
                    return rec
            except _Refused:
                continue
            except ReplyError as exc:
                raise XetFallback(f"its reconstruction is malformed ({exc})") from exc
        raise XetFallback("the Xet storage refused a fresh read token")

    def _ask_reconstruction(
        self,
        url: str,
        credentials: Credentials,
        what: str,
        span: tuple[int, int] | None,
        limit: int,
        *,
        v2: bool,
    ) -> bytearray | None:
        headers = {"Range": f"bytes={span[0]}-{span[1]}"} if span is not None else None

        def once() -> bytearray | None:
            with follow(
                self.client, url, credentials=credentials, headers=headers, what=what
            ) as response:
                if response.status_code == 200:
                    self._stall_rule(response)
                    return _read(response, limit, what=what, timeout=self.client.timeout.read)
                if response.status_code in (404, 501) and v2:
                    return None  # no v2 here: v1
                if response.status_code == 401:
                    raise _Refused
                raise error_for_status(response, what=what, hub=False)

        try:
            return self.retry.run(once, what=what, wait=self.cancel.wait)
        except InterruptedByUserError:
            raise
        except MdlError as exc:
            raise XetFallback(f"the Xet storage failed ({_why(exc)})") from exc

    def _stall_rule(self, response: httpx2.Response) -> None:
        """A reply's body that goes silent is a stall: ``--stall-timeout`` holds when it is shorter
        than the client's wait (a small JSON reply never waits longer than an answer may take to
        begin)."""
        timeouts = response.request.extensions.get("timeout") or {}
        read = timeouts.get("read")
        if self.stall_timeout is not None and (read is None or self.stall_timeout < read):
            set_read_timeout(response, self.stall_timeout)

    # --- the file
    # ---------------------------------------------------------------------------------------------

    def fetch(self, job: TransferJob, ref: XetRef) -> TransferResult:
        """The file into ``job.final_path``, verified; XetFallback when the plain path must fetch
        it.
        """
        size = job.identity.size
        if not size:
            raise XetFallback("its size is not known")
        if (found := stat_file(job.part_path)) is not None and planted(job, found):
            discard_partial(job)
        loaded = load_state(job_root(job), job.state_path, STATE_MAX)
        # an earlier run's partial download over plain HTTP: resumed there, not thrown away
        if loaded == "plain":
            raise XetFallback("a partial download over plain HTTP is waiting to be resumed")
        rec = self.reconstruction(ref, job.label, size=size)
        if rec.size != size:
            raise XetFallback(f"its reconstruction is {rec.size} bytes, the listing says {size}")
        kept = loaded.terms if isinstance(loaded, Resumable) and _usable(loaded, ref, size) else ()
        try:
            try:
                return _File(self, job, ref, rec).run(kept, reuse=True)
            except _Unsplittable as exc:
                log.info("%s: %s; fetching its xorb ranges whole", job.label, exc)
                discard_partial(job)
                return _File(self, job, ref, rec, split=False).run((), reuse=True)
        except _Suspect as exc:
            log.warning(
                "%s: %s after reusing bytes on disk; fetching it again whole", job.label, exc
            )
            job.retries.add(f"{exc}, fetched again whole")
            discard_partial(job)
            del rec
            fresh = self.reconstruction(ref, job.label, size=size)
            return _File(self, job, ref, fresh, split=False).run((), reuse=False)

    def index_for(self, job: TransferJob) -> ReuseIndex:
        """The chunks of the model's Xet files on disk (read once per run and model; files this
        run writes join).
        """
        root, model = job_root(job), job.model or ""
        with self._index_lock:
            index = self._indexes.get((root, model))
            if index is None:
                index = self._indexes[(root, model)] = ReuseIndex(root)
                for xet_hash in self.recorded(model) if model else ():
                    if (found := read_sidecar(root, _state_dir(job), xet_hash)) is not None:
                        index.add(*found, xet_hash=xet_hash)
            return index

    def refetch(self, ref: XetRef, what: str, fetch: Fetch, *, size: int) -> Fetch:
        """A fresh URL for ``fetch``'s chunks: the reconstruction asked again (its URLs expired)."""
        rec = self.reconstruction(ref, what, size=size)
        for candidate in rec.fetches:
            if (
                candidate.xorb == fetch.xorb
                and candidate.start <= fetch.start
                and candidate.end >= fetch.end
            ):
                return candidate
        raise XetFallback("the refreshed reconstruction no longer holds the chunks asked for")


class _File:
    """One attempt at one file: resume, copy, fetch, verify, move into place."""

    def __init__(
        self,
        source: XetSource,
        job: TransferJob,
        ref: XetRef,
        rec: Reconstruction,
        *,
        split: bool = True,
    ) -> None:
        self.source, self.job, self.ref, self.rec, self.split = source, job, ref, rec, split
        # terms fetched as pieces: each piece's file bytes
        self.spans: dict[int, list[tuple[int, int]]] = {}
        self.owned: dict[int, dict[int, _Window | _Kept]] = {}  # their pieces on disk, by piece
        self.root = job_root(job)
        self.offsets: list[int] = []
        at = 0
        for term in rec.terms:
            self.offsets.append(at)
            at += term.length
        self.done: dict[int, Written] = {}
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.resumed = self.reused = self.fetched = 0
        self.frontier = 0  # terms before this index are all done
        # terms being written: bytes of each on disk from its start
        self.moving: dict[int, int] = {}
        # notified when the sha256's frontier may have moved on
        self.wrote = threading.Condition(self.lock)
        self.last_save = self.last_nudge = time.monotonic()
        self.save_cost = 0.0  # seconds the last resume record took to write
        self.unsaved = 0  # bytes written since the last resume record
        self.save_every = min(max(SAVE_BYTES[0], rec.size // SAVE_PART), SAVE_BYTES[1])
        self.save_lock = threading.Lock()  # one record written at a time
        # unfinished terms: the runs of their chunks resumed from disk
        self.kept: dict[int, list[Written]] = {}
        # streams that wrote chunks of unfinished terms (for the record)
        self.sinks: list[_Terms | _Window] = []
        self.fd = -1
        self.hasher: Hasher | None = None

    def run(self, kept: Sequence[Written], *, reuse: bool) -> TransferResult:
        job, size = self.job, self.rec.size
        try:
            self.fd = open_file(self.root, job.part_path, os.O_RDWR | os.O_CREAT)
        except OSError as exc:
            raise LocalFSError(
                f"{job.label}: cannot write {job.part_path}: {exc.strerror}"
            ) from exc
        self.hasher = Hasher(self.fd, size, git=False, signed=job.signed)
        try:
            if not kept:
                os.ftruncate(self.fd, 0)
            os.ftruncate(self.fd, size)
            self._resume(kept)
            self.source.progress.start(
                job.label,
                label=job.label,
                total=size,
                completed=self.resumed,
                model=job.model,
                path=job.path,
            )
            with self._hashing():
                self._fetch_rest(self.source.index_for(job) if reuse else None)
            self.hasher.catch_up(size)
            self._verify()
            os.fdatasync(self.fd)
        except OSError as exc:
            if exc.errno == errno.ENOSPC:
                discard_partial(job)
                raise NoSpaceError(
                    f"{job.label}: no space left on device while writing {job.part_path}"
                ) from exc
            raise LocalFSError(f"{job.label}: {exc.strerror or exc} ({job.part_path})") from exc
        except (_Suspect, IntegrityError, _Unsplittable):
            raise
        except XetFallback:  # the plain path starts over: no Xet partial is left for it to misread
            # (its progress is replaced when the plain path starts the file again)
            discard_partial(job)
            raise
        except BaseException:
            with contextlib.suppress(OSError, MdlError):
                self._save(durable=True)  # what is on disk, for the next run
            raise
        finally:
            os.close(self.fd)
        try:
            finish_part(job, self.source.dirs, record=True)
        except OSError as exc:
            raise LocalFSError(
                f"{job.label}: cannot move it into place at {job.final_path}: {exc.strerror}"
            ) from exc
        terms = [self.done[i] for i in range(len(self.rec.terms))]
        index = self.source.index_for(job)
        # found again through the model's record (a one-off get's file is found by none: none kept)
        if job.model:
            write_sidecar(
                self.root,
                _state_dir(job),
                xet_hash=self.ref.hash,
                where=job.final_path,
                terms=terms,
            )
            # overwritten here: its chunks are gone
            for old in index.replaced(job.final_path, self.ref.hash):
                unlink(self.root, sidecar_path(_state_dir(job), old))
        index.add(job.final_path, terms, xet_hash=self.ref.hash)
        return TransferResult(
            size=size,
            sha256=self.hasher.sha256.hexdigest(),
            git_oid=None,
            etag=None,
            resumed_from=self.resumed,
            fetched=self.fetched,
            reused=self.reused,
            xet=self.ref.hash,
        )

    # --- what is already here
    # -------------------------------------------------------------------------------------

    def _resume(self, kept: Sequence[Written]) -> None:
        """The chunks an earlier run recorded, each kept while its bytes on disk still hash as
        recorded and it lies where the file's terms can hold it: a term all of whose chunks are kept
        is done, another keeps its runs (the chunks between them are fetched, ``_fetch_rest``)."""
        by_xorb: dict[str, list[Written]] = {}
        for run in kept:
            by_xorb.setdefault(run.xorb, []).append(run)
        for i, term in enumerate(self.rec.terms):
            first, end = self.offsets[i], self.offsets[i] + term.length
            inside = [
                run
                for run in by_xorb.get(term.xorb, ())
                if term.start <= run.start
                and run.end <= term.end
                and first <= run.offset <= end - run.length
            ]
            runs: list[Written] = []
            for candidate in sorted(inside, key=lambda run: (run.start, run.offset)):
                for found in self._verified(candidate):
                    # overlapping runs: each chunk once
                    part = _after(runs[-1], found) if runs else found
                    if part is not None and _between(
                        runs[-1] if runs else None, part, term.start, first
                    ):
                        runs.append(part)
            while runs and not _fits(
                runs[-1].end, runs[-1].offset + runs[-1].length, term.end, end
            ):
                runs.pop()
            if not runs:
                continue
            got = sum(run.length for run in runs)
            self.resumed += got
            if got == term.length:
                self.done[i] = Written(
                    term.xorb, term.start, term.end, first, tuple(c for r in runs for c in r.chunks)
                )
            else:
                self.kept[i] = runs
        self._advance_frontier()

    def _verified(self, run: Written) -> Iterator[Written]:
        """The parts of ``run`` whose chunks still hash on disk as recorded (read a few MiB at a
        time).
        """
        good: list[tuple[bytes, int]] = []
        begin = begin_at = 0
        index, at, k = run.start, run.offset, 0
        while k < len(run.chunks):
            j, size = k, 0
            while j < len(run.chunks) and (j == k or size + run.chunks[j][1] <= READ_BLOCK):
                size += run.chunks[j][1]
                j += 1
            data = os.pread(self.fd, size, at)
            view, pos = memoryview(data), 0
            for digest, n in run.chunks[k:j]:
                if pos + n <= len(data) and chunk_hash(view[pos : pos + n]) == digest:
                    if not good:
                        begin, begin_at = index, at
                    good.append((digest, n))
                elif good:
                    yield Written(run.xorb, begin, begin + len(good), begin_at, tuple(good))
                    good = []
                index, at, pos = index + 1, at + n, pos + n
            k = j
        if good:
            yield Written(run.xorb, begin, begin + len(good), begin_at, tuple(good))

    def _copy(self, i: int, copies: list[Copy]) -> None:
        """Term ``i`` copied from files already here, each chunk checked as it is read; fetched
        when one changed.
        """
        term = self.rec.terms[i]
        parts: list[bytes] = []
        chunks: list[tuple[bytes, int]] = []
        for copy in copies:
            if (got := read_copy(self.root, copy)) is None:
                log.debug("%s: chunks of term %d changed on disk; fetching them", self.job.label, i)
                self._group(self.rec.fetch_of[i], [i])
                return
            parts += got
            chunks += copy.chunks
        self._write(self.offsets[i], parts)
        with self.lock:
            self.reused += term.length
        self._finished(i, Written(term.xorb, term.start, term.end, self.offsets[i], tuple(chunks)))

    # --- what is fetched
    # ------------------------------------------------------------------------------------------

    def _fetch_rest(self, index: ReuseIndex | None) -> None:
        """Every term not done: copied when all its chunks are in files already here (``index``),
        else fetched with the other terms its xorb range holds, a big range cut (``_streams_for``);
        in file order, on as many streams as the plain path would open for the file, copies beside
        fetches. A term partly resumed is fetched as the pieces between its runs on disk, each from
        a reconstruction of its span: no kept chunk is fetched again."""
        copies: dict[int, list[Copy]] = {}
        groups: dict[int, list[int]] = {}
        gaps = [task for i in self.kept for task in self._gaps(i)]
        for i, term in enumerate(self.rec.terms):
            if i in self.done or i in self.kept:
                continue
            found = index.find(term.xorb, term.start, term.end) if index is not None else None
            if (
                found is not None
                and sum(size for c in found for _, size in c.chunks) == term.length
            ):
                copies[i] = found
            else:
                groups.setdefault(self.rec.fetch_of[i], []).append(i)
        want = self.source.streams(self.rec.size)
        # copies are the disk's, not streams
        counts = self._streams_for(groups, want) if self.split else {}
        tasks: list[tuple[int, Callable[[], None]]] = [
            (i, partial(self._copy, i, found)) for i, found in copies.items()
        ]
        tasks += gaps
        for f, users in groups.items():
            count = counts.get(f, 1)
            if count == 1:
                tasks.append((self.offsets[users[0]], partial(self._group, f, users)))
            elif len(users) == 1:  # one big term: pieces of it, each cut where the file's bytes are
                (i,) = users
                start, length = self.offsets[i], self.rec.terms[i].length
                self.spans[i] = [
                    (start + length * j // count, start + length * (j + 1) // count)
                    for j in range(count)
                ]
                tasks += [
                    (p, partial(self._piece, i, j, p, q)) for j, (p, q) in enumerate(self.spans[i])
                ]
            else:  # many terms in one range (a new revision's new chunks): runs of whole terms
                for run in _runs(users, [self.rec.terms[i].length for i in users], count):
                    tasks.append((self.offsets[run[0]], partial(self._run, f, run)))
        if not tasks:
            return
        # the sha256 follows the file's start: its frontier moves on in order
        tasks.sort(key=lambda task: task[0])
        streams = max(1, min(want, len(tasks)))
        failures: list[BaseException] = []
        with ThreadPoolExecutor(streams, thread_name_prefix=f"xet:{self.job.label}") as pool:
            futures: list[Future[None]] = [pool.submit(self._task, task) for _, task in tasks]
            for future in futures:
                try:
                    future.result()
                except Exception as exc:  # noqa: BLE001  # the first failure stops the others; the worst is raised
                    self.stop.set()
                    failures.append(exc)
        if failures:
            raise _worst(failures, cancelled=self.source.cancel.is_set(), what=self.job.label)

    def _gaps(self, i: int) -> list[tuple[int, Callable[[], None]]]:
        """Term ``i`` as pieces: its runs resumed from disk, on disk already, and the spans
        between them, to fetch.
        """
        end = self.offsets[i] + self.rec.terms[i].length
        spans: list[tuple[int, int]] = []
        owned: dict[int, _Window | _Kept] = {}
        at = self.offsets[i]
        for run in self.kept[i]:
            if run.offset > at:
                spans.append((at, run.offset))
            owned[len(spans)] = _Kept.of(run)
            spans.append((run.offset, run.offset + run.length))
            at = run.offset + run.length
        if at < end:
            spans.append((at, end))
        self.spans[i], self.owned[i] = spans, owned
        upto = 0
        while upto in owned:
            upto += 1
        if upto:  # the runs from the term's start: the sha256 may go on through them
            self.moving[i] = spans[upto - 1][1] - self.offsets[i]
        log.debug(
            "%s: term %d resumed in %d runs, %d spans to fetch",
            self.job.label,
            i,
            len(owned),
            len(spans) - len(owned),
        )
        return [
            (p, partial(self._piece, i, j, p, q))
            for j, (p, q) in enumerate(spans)
            if j not in owned
        ]

    def _streams_for(self, groups: dict[int, list[int]], room: int) -> dict[int, int]:
        """How many streams each xorb range gets, so that the file has ``room`` (a range is one
        request: one stream per 64 MiB xorb, or one for all of a new revision's new chunks, is fewer
        than the plain path opens). The range with most bytes a stream is cut again, never below
        ``MIN_PIECE`` bytes nor, for a range of many terms, into more runs than it has terms."""
        size = {f: sum(self.rec.terms[i].length for i in users) for f, users in groups.items()}
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

    def _task(self, task: Callable[[], None]) -> None:
        if self.source.cancel.is_set() or self.stop.is_set():
            raise _Stopped
        task()

    def _group(self, f: int, users: list[int]) -> None:
        """The terms ``users`` from their xorb range (asked again, once, after a 403)."""
        fetch = self.rec.fetches[f]

        def attempt(fresh: bool) -> None:
            nonlocal fetch
            if fresh:
                fetch = self.source.refetch(self.ref, self.job.label, fetch, size=self.rec.size)
            # a retry writes (and counts) again only the terms the failed stream did not finish
            with self.lock:
                left = [i for i in users if i not in self.done]
            if left:
                self._stream(fetch, _Terms(self, left))

        self._retrying(attempt)

    def _piece(self, i: int, j: int, first: int, end: int) -> None:
        """Bytes ``[first, end)`` of term ``i`` from a reconstruction of that span alone: its xorb
        range is the part of the term's that holds them (the chunk across each cut is fetched by
        both pieces; each owns the chunks that start in its span)."""
        term = self.rec.terms[i]

        def attempt(fresh: bool) -> None:
            sub = self.source.reconstruction(
                self.ref, self.job.label, size=self.rec.size, span=(first, end - 1)
            )
            if len(sub.terms) != 1 or sub.terms[0].xorb != term.xorb:
                raise _Unsplittable(f"a piece of term {i} came back as {len(sub.terms)} terms")
            part = sub.terms[0]
            if not term.start <= part.start < part.end <= term.end:
                raise _Unsplittable(f"a piece of term {i} names chunks outside it")
            window = _Window(
                self, i, first, end, at=first - sub.offset, chunks=(part.start, part.end)
            )
            self._stream(sub.fetches[sub.fetch_of[0]], window)
            self._piece_done(i, j, window)

        self._retrying(attempt)

    def _run(self, f: int, run: list[int]) -> None:
        """Terms ``run`` (whole, one after another in the file) of xorb range ``f``, from a
        reconstruction of their file bytes alone: its range of that xorb holds their chunks and no
        more than the span's own need."""
        first, last = run[0], run[-1]
        span = (self.offsets[first], self.offsets[last] + self.rec.terms[last].length - 1)
        xorb = self.rec.fetches[f].xorb
        low, high = (
            min(self.rec.terms[i].start for i in run),
            max(self.rec.terms[i].end for i in run),
        )

        def attempt(fresh: bool) -> None:
            sub = self.source.reconstruction(
                self.ref, self.job.label, size=self.rec.size, span=span
            )
            fetch = next(
                (x for x in sub.fetches if x.xorb == xorb and x.start <= low and x.end >= high),
                None,
            )
            if fetch is None or sub.offset:
                raise _Unsplittable(
                    f"the reconstruction of terms {first}-{last} does not hold their chunks"
                )
            # a retry writes (and counts) again only the terms the failed stream did not finish
            with self.lock:
                left = [i for i in run if i not in self.done]
            if left:
                self._stream(fetch, _Terms(self, left))

        self._retrying(attempt)

    def _piece_done(self, i: int, j: int, window: _Window) -> None:
        """A piece of term ``i`` on disk; the last one finishes the term once its pieces agree:
        their owned chunks are the term's, each placed where the ones before end, and each piece's
        copy of the chunk across its cut hashes as the owner's and sits where it does (every byte on
        disk is a byte the Xet file hash was built from)."""
        term, spans = self.rec.terms[i], self.spans[i]
        with self.lock:
            got = self.owned.setdefault(i, {})
            got[j] = window
            ready = len(got) == len(spans)
            upto = 0
            while upto in got:
                upto += 1
            # the pieces from the term's start are on disk: the sha256 may go on through them
            if upto:
                self.moving[i] = spans[upto - 1][1] - self.offsets[i]
                if i == self.frontier:
                    self.wrote.notify()
        if not ready:
            return
        chunks = [chunk for k in range(len(spans)) for chunk in got[k].owned]
        at = self.offsets[i]
        for k, chunk in enumerate(chunks):
            if chunk.index != term.start + k or chunk.pos != at:
                raise _Unsplittable(
                    f"the pieces of term {i} do not place its chunks one after another"
                )
            at += chunk.size
        if len(chunks) != term.end - term.start or at != self.offsets[i] + term.length:
            raise _Unsplittable(f"the pieces of term {i} do not add up to its chunks")
        for k in range(len(spans)):
            lead = got[k].lead
            if lead is not None and chunks[lead.index - term.start] != lead:
                raise _Unsplittable(f"the two pieces of term {i} holding chunk {lead.index} differ")
        written = Written(
            term.xorb,
            term.start,
            term.end,
            self.offsets[i],
            tuple((c.digest, c.size) for c in chunks),
        )
        self._finished(i, written)

    def _retrying(self, attempt: Callable[[bool], None]) -> None:
        """``attempt(fresh)`` until it succeeds: after a 403 once with fresh URLs, after a failed
        stream as often as the CAS's quick policy allows; then the file falls back to the plain
        path."""
        source, what = self.source, self.job.label
        refreshed, failures = False, 0
        while True:
            try:
                attempt(refreshed)
                return
            except _Refused:
                if refreshed:
                    raise XetFallback(
                        "a xorb URL was refused again after a fresh reconstruction"
                    ) from None
                refreshed = True
            except (InterruptedByUserError, IntegrityError, XetFallback, _Stopped, _Unsplittable):
                raise
            except (RetryableError, httpx2.TransportError) as exc:
                if source.cancel.is_set() or self.stop.is_set():
                    raise _Stopped from None
                failures += 1
                err = (
                    exc
                    if isinstance(exc, RetryableError)
                    else transport_error(exc, what=what, url="the Xet storage")
                )
                if failures > source.retry.retries:
                    raise XetFallback(f"the Xet storage failed ({_why(err)})") from exc
                self.job.retries.add(_why(err))
                if source.cancel.wait(source.retry.delay(failures, retry_after=None)):
                    raise _Stopped from None
            # a 404, a 410, a refused answer: the plain path has the file too
            except MdlError as exc:
                raise XetFallback(f"the Xet storage failed ({_why(exc)})") from exc

    def _stream(self, fetch: Fetch, sink: _Terms | _Window) -> None:
        """One xorb range, each chunk decoded as it arrives and handed to ``sink``; what it wrote is
        undone if the stream fails, and kept for the resume record if it is stopped."""
        source, what = self.source, self.job.label
        headers = {"Range": f"bytes={fetch.first}-{fetch.last}"}
        with self.lock:
            self.sinks.append(sink)
        try:
            with follow(
                source.client, fetch.url, credentials=Credentials(), headers=headers, what=what
            ) as response:
                if response.status_code == 403:
                    raise _Refused
                if response.status_code != 206:
                    if response.status_code == 200:
                        raise XetFallback("the xorb server ignored the Range asked for")
                    raise error_for_status(response, what=what, hub=False)
                # the answer began: from here on, silence is a stall
                if source.stall_timeout is not None:
                    set_read_timeout(response, source.stall_timeout)
                span = promised(response, what=what)
                if span.start != fetch.first or span.end != fetch.last + 1:
                    shown = f"bytes {fetch.first}-{fetch.last}"
                    raise XetFallback(f"the xorb server sent {span.shown} when {shown} were asked")
                chunks = _Chunks(fetch.end - fetch.start)
                index = fetch.start
                try:
                    for block in read_body(response, span, encoded=False, what=what):
                        if source.cancel.is_set() or self.stop.is_set():
                            raise _Stopped
                        with self.lock:
                            self.fetched += len(block)
                        if source.limiter is not None:
                            source.limiter.consume(len(block), source.cancel)
                        with source.decoding.turn(sink.at()):
                            for data in chunks.feed(block):
                                sink.place(index, data)
                                index += 1
                        self._checkpoint()
                    chunks.close()
                except XorbError as exc:
                    if isinstance(exc, UnknownFormat):
                        raise XetFallback(
                            f"a xorb is in a format mdl does not know ({exc})"
                        ) from exc
                    raise self._corrupt(f"xorb {fetch.xorb[:12]}… chunk {index}: {exc}") from exc
            sink.close()
        except BaseException as exc:
            if source.cancel.is_set() or isinstance(
                exc, _Stopped | InterruptedByUserError | KeyboardInterrupt
            ):
                with contextlib.suppress(OSError):
                    sink.keep()  # decoded and hashed: on disk for the record saved on the way out
            else:
                with self.lock:  # (a record may have dropped it already: its terms were done)
                    self.sinks = [other for other in self.sinks if other is not sink]
                sink.undo()
            raise

    def _write(self, offset: int, parts: Sequence[bytes | memoryview]) -> None:
        total = sum(len(p) for p in parts)
        done = os.pwritev(self.fd, parts, offset)
        if done != total:  # a regular file writes all of it or fails; a short write is a full disk
            raise OSError(errno.ENOSPC, "short write")
        assert self.hasher is not None
        at = offset
        # hashed from memory when at the frontier of the sha256, else read back later
        for part in parts:
            self.hasher.offer(at, part)
            at += len(part)
        self.source.progress.advance(self.job.label, total)
        with self.lock:
            self.unsaved += total
        # a stale read races harmlessly
        if (now := time.monotonic()) - self.last_nudge >= WRITEBACK_EVERY:
            self.last_nudge = now
            start_writeback(self.fd)

    def _finished(self, index: int, written: Written) -> None:
        with self.lock:
            self.done[index] = written
            self.moving.pop(index, None)
            self.kept.pop(index, None)
            self._advance_frontier()
            self.wrote.notify()
        self._checkpoint()

    def _checkpoint(self) -> None:
        """A cheap resume record, when one is due, written by the stream that finds it due."""
        if self.unsaved < self.save_every and time.monotonic() - self.last_save < SAVE_EVERY:
            # the common case, without the lock every stream takes (a stale read only delays a save)
            return
        with self.lock:
            elapsed = time.monotonic() - self.last_save
            due = self.unsaved > 0 and elapsed >= self.save_cost / SAVE_SHARE
            due = due and (self.unsaved >= self.save_every or elapsed >= SAVE_EVERY)
            if due:
                self.last_save, self.unsaved = time.monotonic(), 0
        if due:
            self._save(durable=False)

    def _moved(self, index: int, written: int, *, undo: int = 0) -> None:
        """Term ``index`` has ``written`` bytes on disk from its start (``undo``: bytes thrown away,
        no longer progress)."""
        if undo:
            self.source.progress.advance(self.job.label, -undo)
        with self.lock:
            if written:
                self.moving[index] = written
            else:
                self.moving.pop(index, None)
            if index == self.frontier:
                self.wrote.notify()

    def _contiguous(self) -> int:
        """Bytes on disk from the file's start: the terms done, and what the next one has of its
        start (under lock).
        """
        if self.frontier >= len(self.offsets):
            return self.rec.size
        return self.offsets[self.frontier] + self.moving.get(self.frontier, 0)

    @contextlib.contextmanager
    def _hashing(self) -> Iterator[None]:
        """A thread hashing the file's contiguous start as it grows (read back where no stream
        offered it from memory): the sha256 keeps pace with the streams instead of reading the whole
        file after the last byte."""
        assert self.hasher is not None
        hasher, finished = self.hasher, threading.Event()

        def follow_frontier() -> None:
            while True:
                with self.lock:
                    if self._contiguous() <= hasher.position and not finished.is_set():
                        self.wrote.wait(0.5)
                    target = self._contiguous()
                if target > hasher.position:
                    hasher.catch_up(target)
                elif finished.is_set():
                    return
                try:  # streams that went quiet leave a record due by time: saved here, not by them
                    self._checkpoint()
                # a record not saved costs only a later resume its bytes
                except (OSError, MdlError) as exc:
                    log.info("%s: could not save the resume record (%s)", self.job.label, exc)

        thread = threading.Thread(
            target=follow_frontier, name=f"xet-hash:{self.job.label}", daemon=True
        )
        thread.start()
        try:
            yield
        finally:
            finished.set()
            with self.lock:
                self.wrote.notify_all()
            thread.join()

    def _advance_frontier(self) -> None:
        while self.frontier in self.done:
            self.frontier += 1

    def _save(self, *, durable: bool) -> None:
        """The resume record: every chunk on disk, in runs (a finished term is one), each claimed
        only once its bytes are written. A durable record is written after the bytes it claims are
        flushed; a cheap one names this boot (a crash of the machine may lose their pages, and a
        later boot drops it)."""
        with self.save_lock:
            with self.lock:
                runs = list(self.done.values())
                runs += [run for i, kept in self.kept.items() if i not in self.done for run in kept]
                self.sinks = [
                    sink for sink in self.sinks if not all(i in self.done for i in sink.terms)
                ]
                runs += [run for sink in self.sinks for i, run in sink.runs() if i not in self.done]
            if not runs:
                return
            began = time.monotonic()
            if durable:
                os.fdatasync(self.fd)
            state = Resumable(
                self.ref.hash, self.rec.size, None if durable else boot_id(), tuple(runs)
            )
            save_state(self.root, self.job.state_path, state, source=self.job.source)
            self.save_cost = time.monotonic() - began

    # --- verification
    # ----------------------------------------------------------------------------------------------

    def _verify(self) -> None:
        """The Xet file hash from every chunk's hash, the sha256 (and a signature's digests) from
        the bytes on disk.
        """
        assert self.hasher is not None
        chunks = [chunk for i in range(len(self.rec.terms)) for chunk in self.done[i].chunks]
        got = to_hex(file_hash(chunks))
        if got != self.ref.hash:
            raise self._mismatch("Xet file hash", self.ref.hash, got)
        expected, sha256 = self.job.identity.sha256, self.hasher.sha256.hexdigest()
        if self.job.verify and expected and sha256 != expected:
            raise self._mismatch("sha256", expected, sha256)
        if self.hasher.check is not None and (bad := self.hasher.check.mismatch()) is not None:
            raise self._mismatch(*bad)

    def _mismatch(self, kind: str, expected: str, actual: str) -> Exception:
        if self.resumed or self.reused:
            return _Suspect(f"{kind} mismatch")
        return self._corrupt(f"{kind} mismatch: expected {expected}, got {actual}")

    def _corrupt(self, why: str) -> IntegrityError:
        discard_partial(self.job)
        return IntegrityError(
            f"{self.job.label}: {why}",
            hint=(
                "the Xet storage served bytes that are not this file; the partial file was removed"
            ),
        )


class _Chunks:
    """A xorb range's chunks as its bytes arrive: each decoded once it is whole; exactly
    ``count`` of them.
    """

    def __init__(self, count: int) -> None:
        self.left, self.buffer, self.at = count, bytearray(), 0

    def feed(self, data: bytes | memoryview) -> Iterator[bytes]:
        self.buffer += data
        while (need := chunk_size(self.buffer, self.at)) is not None and len(
            self.buffer
        ) - self.at >= need:
            if self.left == 0:
                raise XorbError("more bytes than the chunks the range names")
            with memoryview(self.buffer) as view:
                (chunk,) = decode_chunks(view[self.at : self.at + need], 1)
            self.at += need
            self.left -= 1
            yield chunk
        if self.at >= 1 << 20:  # keep the buffer small: what is decoded is dropped
            del self.buffer[: self.at]
            self.at = 0

    def close(self) -> None:
        if self.left or self.at != len(self.buffer):
            raise XorbError(
                f"the range ended {self.left} chunk(s) short"
                if self.left
                else "bytes after the last chunk"
            )


def _runs(items: list[int], sizes: list[int], count: int) -> list[list[int]]:
    """``items`` cut into ``count`` runs in order, of about equal total ``sizes`` (none empty)."""
    total, done = sum(sizes), 0
    runs: list[list[int]] = []
    current: list[int] = []
    for k, (item, size) in enumerate(zip(items, sizes, strict=True)):
        current.append(item)
        done += size
        left_items, left_runs = len(items) - k - 1, count - len(runs) - 1
        if left_runs and (done >= total * (len(runs) + 1) / count or left_items == left_runs):
            runs.append(current)
            current = []
    runs.append(current)
    return runs


def _read(response: httpx2.Response, limit: int, *, what: str, timeout: float | None) -> bytearray:
    """A JSON reply's body, at most ``limit`` bytes (more: ReplyError naming the URL's host, never
    read on into memory), whole within the deadline of any API reply (``timeout``: the read
    timeout); a connection lost, silent or too slow mid-body is the retryable NetworkError it is, as
    for any answer."""
    set_reply_deadline(response, timeout)
    body = bytearray()
    try:
        for block in response.iter_bytes():
            body += block
            if len(body) > limit:
                raise ReplyError(
                    f"the reply from {redact_url(str(response.url))} is longer than {limit:,} bytes"
                )
    except httpx2.TransportError as exc:
        raise transport_error(exc, what=what, url=str(response.url)) from exc
    return body


def _why(exc: BaseException) -> str:
    return exc.message if isinstance(exc, MdlError) else str(exc)


def _downgraded(asked: str, named: str) -> bool:
    """Whether an answer read over https names a URL over plain http (its secrets and bytes then
    in the clear).
    """
    return urlsplit(asked).scheme.lower() == "https" and urlsplit(named).scheme.lower() != "https"


def _state_dir(job: TransferJob) -> Path:
    return job.part_path.parent.parent  # <dest>/.mdl/partial/x.part → <dest>/.mdl


def _fits(chunk: int, at: int, next_chunk: int, next_at: int) -> bool:
    """Whether the chunks from ``chunk`` (at byte ``at``) to ``next_chunk`` (at ``next_at``) can lie
    there: each 1 to MAX_CHUNK bytes (a record placing a run where it cannot be is not believed)."""
    count, size = next_chunk - chunk, next_at - at
    return 0 <= count <= size <= count * MAX_CHUNK


def _after(before: Written, run: Written) -> Written | None:
    """The part of ``run`` after the chunks of ``before`` (None: nothing)."""
    cut = before.end - run.start
    if cut <= 0:
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


def _usable(loaded: object, ref: XetRef, size: int) -> bool:
    """Whether an earlier run's record is of this file, saved durable or in this boot (else its
    pages may be lost).
    """
    if not isinstance(loaded, Resumable) or loaded.xet_hash != ref.hash or loaded.size != size:
        return False
    return loaded.boot is None or loaded.boot == boot_id()


def _worst(failures: list[BaseException], *, cancelled: bool, what: str) -> BaseException:
    """The failure a file's tasks end with: Ctrl-C, then a corrupt xorb, a fallback, any other
    error.
    """
    if cancelled or any(isinstance(f, KeyboardInterrupt) for f in failures):
        return InterruptedByUserError(f"{what}: interrupted")
    for kind in (IntegrityError, AuthError, XetFallback, MdlError):
        if found := next((f for f in failures if isinstance(f, kind)), None):
            return found
    return next((f for f in failures if not isinstance(f, _Stopped)), failures[0])
