"""The streams of one attempt at a Xet file: the plan's tasks on a pool, each xorb range fetched
with exactly the Range it names, its chunks decoded as they arrive and written where their terms go
(the pieces of a term checked against each other), a failed stream retried on the engine's budget
(``Tries``), a stopped one's chunks kept for the resume record."""

from __future__ import annotations

import contextlib
import heapq
import itertools
import logging
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import httpx2

from mdl.errors import AuthError, IntegrityError, InterruptedByUserError, MdlError, NetworkError
from mdl.transfer.body import promised, read_body
from mdl.transfer.connection import set_read_timeout
from mdl.transfer.failures import RetryableError, transport_error
from mdl.transfer.http import Credentials, Tries, error_for_status, follow
from mdl.transfer.scheduling import RateLimiter
from mdl.xet._cas import Cas, why
from mdl.xet._hashing import chunk_hash
from mdl.xet._partial import Partial
from mdl.xet._plan import CopyTerm, FetchPiece, FetchTerms, Plan, Task, on_disk_from_start
from mdl.xet._protocol import Fetch, Reconstruction, Term
from mdl.xet._reuse import Written, read_copy
from mdl.xet._xorb import HEADER_BYTES, Chunk, UnknownFormat, XorbError, chunk_size, decode_chunks
from mdl.xet.failures import Refused, Stopped, Unsplittable, XetFallback

log = logging.getLogger("mdl.xet")

WRITE_BLOCK = 1 << 20  # decoded bytes of one term gathered before one pwritev


class Gate:
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


@dataclass(frozen=True)
class Wire:
    """What every stream of a run shares: the CAS, ``--limit-rate``'s budget (the plain engine's
    too), the decoders' gate."""

    cas: Cas
    limiter: RateLimiter | None
    decoding: Gate


class _Chunks:
    """A xorb range's chunks as its bytes arrive: each decoded once it is whole; exactly
    ``count`` of them. Whole chunks are decoded straight from the block that holds them; only a
    chunk a block cuts is gathered in the buffer.
    """

    def __init__(self, count: int) -> None:
        self.left, self.buffer = count, bytearray()

    def feed(self, data: bytes | memoryview) -> Iterator[Chunk]:
        with memoryview(data) as block:
            at = 0
            while self.buffer and at < len(block):  # the chunk the last block cut: finished
                held = chunk_size(self.buffer, 0) or HEADER_BYTES  # its header first
                take = block[at : at + held - len(self.buffer)]
                self.buffer += take
                at += len(take)
                if chunk_size(self.buffer, 0) == len(self.buffer):
                    yield self._decode(self.buffer)
                    self.buffer = bytearray()
            while (need := chunk_size(block, at)) is not None and len(block) - at >= need:
                yield self._decode(block[at : at + need])
                at += need
            self.buffer += block[at:]  # the start of a chunk the next block finishes

    def _decode(self, data: bytes | bytearray | memoryview) -> Chunk:
        if self.left == 0:
            raise XorbError("more bytes than the chunks the range names")
        with memoryview(data) as view:
            (chunk,) = decode_chunks(view, 1)
        self.left -= 1
        return chunk

    def close(self) -> None:
        if self.left:
            raise XorbError(f"the range ended {self.left} chunk(s) short")
        if self.buffer:
            raise XorbError("bytes after the last chunk")


# --- where a stream's chunks go
# ------------------------------------------------------------------------------------


@dataclass
class _Slot:
    """A term being fetched: its chunks so far, the decoded bytes not yet written and where they
    go.
    """

    index: int
    offset: int
    chunks: list[tuple[bytes, int]] = field(default_factory=list)
    pending: list[Chunk] = field(default_factory=list)
    pending_bytes: int = 0
    written: int = 0
    safe: int = 0  # chunks wholly on disk (written, not pending): what a resume record may claim


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


class _Terms:
    """Where a xorb range's chunks go: every term of the range that holds each, written in blocks
    at its offset.
    """

    def __init__(self, partial: Partial, users: list[int]) -> None:
        self.partial, self.all = partial, partial.rec.terms
        self.slots = [_Slot(i, partial.offsets[i]) for i in users]
        self.terms = users
        self.holding = _Holding(self.slots, self.all)

    # where in the file the next bytes land (the decode gate serves the earliest first)
    def at(self) -> int:
        return self.slots[0].offset + self.slots[0].written

    def place(self, index: int, data: Chunk) -> None:
        holders = self.holding.at(index)
        if not holders:  # a chunk of the range no term of this stream uses: not hashed for nothing
            return
        digest = chunk_hash(data)
        for slot in holders:
            term = self.all[slot.index]
            slot.chunks.append((digest, len(data)))
            slot.pending.append(data)
            slot.pending_bytes += len(data)
            last = index == term.end - 1
            if slot.pending_bytes >= WRITE_BLOCK or last:
                if slot.written + slot.pending_bytes > term.length:
                    raise self.partial.corrupt(
                        f"term {slot.index} decoded to more than {term.length} bytes"
                    )
                self._flush(slot)
            if last and slot.written == term.length:
                written = Written(term.xorb, term.start, term.end, slot.offset, tuple(slot.chunks))
                self.partial.finished(slot.index, written)

    def _flush(self, slot: _Slot) -> None:
        self.partial.write(slot.offset + slot.written, slot.pending)
        flushed = slot.pending_bytes
        slot.written += flushed
        slot.pending, slot.pending_bytes = [], 0
        # after the write: a record never claims a chunk before its bytes are written
        slot.safe = len(slot.chunks)
        self.partial.record.moved(slot.index, slot.written)
        self.partial.claimable(flushed)

    def keep(self) -> None:
        """Interrupted: the chunks decoded but not yet written go to disk, for the record saved
        on the way out.
        """
        for slot in self.slots:
            if slot.pending and slot.written + slot.pending_bytes <= self.all[slot.index].length:
                self._flush(slot)

    def runs(self) -> Iterator[tuple[int, Written]]:
        """Each unfinished term's chunks on disk, from its start (by term)."""
        for slot in self.slots:
            if safe := slot.safe:
                term = self.all[slot.index]
                chunks = tuple(slot.chunks[:safe])
                yield (
                    slot.index,
                    Written(term.xorb, term.start, term.start + safe, slot.offset, chunks),
                )

    def close(self) -> None:
        for slot in self.slots:
            term = self.all[slot.index]
            if slot.written != term.length:
                raise self.partial.corrupt(
                    f"term {slot.index} decoded to {slot.written} bytes, not {term.length}"
                )

    def undo(self) -> None:
        """A stream that failed: its unfinished terms count again from zero."""
        for slot in self.slots:
            if slot.index not in self.partial.record.done and slot.written:
                self.partial.uncount(slot.written)
                self.partial.record.moved(slot.index, 0)


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

    def __init__(self, partial: Partial, piece: FetchPiece, *, at: int, chunks: Term) -> None:
        self.partial, self.term, self.first, self.end = partial, piece.term, piece.at, piece.end
        self.pos, self.start_chunk, self.end_chunk = at, chunks.start, chunks.end
        self.terms = (piece.term,)
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

    def place(self, index: int, data: Chunk) -> None:
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
            raise Unsplittable("a piece's chunks do not follow each other")
        self.pending.append(memoryview(data)[low - pos : high - pos])
        self.pending_bytes += high - low
        if self.pending_bytes >= WRITE_BLOCK:
            self.keep()

    def keep(self) -> None:
        """What was decoded goes to disk (interrupted: for the record saved on the way out)."""
        if self.pending_bytes:
            self.partial.write(self.first + self.written, self.pending)
            flushed = self.pending_bytes
            self.written += flushed
            self.pending, self.pending_bytes = [], 0
            on_disk, owned = self.first + self.written, self.owned
            while self.safe < len(owned) and self._safe_end + owned[self.safe].size <= on_disk:
                self._safe_end += owned[self.safe].size
                self.safe += 1
            self.partial.claimable(flushed)

    def runs(self) -> Iterator[tuple[int, Written]]:
        """The owned chunks on disk, as one run of the term."""
        if safe := self.safe:
            xorb, start = self.partial.rec.terms[self.term].xorb, self.owned[0].index
            chunks = tuple((c.digest, c.size) for c in self.owned[:safe])
            yield self.term, Written(xorb, start, start + safe, self.owned_at, chunks)

    def close(self) -> None:
        self.keep()
        if self.written != self.end - self.first:
            raise Unsplittable(
                f"a piece of term {self.term} holds {self.written} of its {self.end - self.first}"
                " bytes"
            )

    def undo(self) -> None:
        if self.written:
            self.partial.uncount(self.written)


_Sink = _Terms | _Window


class _Pieces:
    """The terms fetched as pieces: each piece on disk (or resumed), and a term finished once its
    pieces agree."""

    def __init__(self, partial: Partial, plan: Plan) -> None:
        self.partial, self.spans = partial, plan.spans
        self.owned: dict[int, dict[int, _Window | _Kept]] = {
            i: {j: _Kept.of(run) for j, run in kept.items()} for i, kept in plan.kept.items()
        }
        self.lock = threading.Lock()

    def done(self, i: int, j: int, window: _Window) -> None:
        """Piece ``j`` of term ``i`` on disk; the last one finishes the term."""
        spans, first = self.spans[i], self.partial.offsets[i]
        with self.lock:
            got = self.owned.setdefault(i, {})
            got[j] = window
            ready = len(got) == len(spans)
            # the pieces from the term's start are on disk: the sha256 may go on through them
            if upto := on_disk_from_start(spans, got):
                self.partial.record.moved(i, upto - first)
        if ready:
            pieces = [got[k] for k in range(len(spans))]
            self.partial.finished(i, _assembled(i, self.partial.rec.terms[i], first, pieces))


def _assembled(i: int, term: Term, first: int, pieces: list[_Window | _Kept]) -> Written:
    """Term ``i`` (at byte ``first``) from its pieces, once they agree: their owned chunks are the
    term's, each placed where the ones before end, and each piece's copy of the chunk across its cut
    hashes as the owner's and sits where it does (every byte on disk is a byte the Xet file hash was
    built from)."""
    chunks = [chunk for piece in pieces for chunk in piece.owned]
    at = first
    for k, chunk in enumerate(chunks):
        if chunk.index != term.start + k or chunk.pos != at:
            raise Unsplittable(f"the pieces of term {i} do not place its chunks one after another")
        at += chunk.size
    if len(chunks) != term.end - term.start or at != first + term.length:
        raise Unsplittable(f"the pieces of term {i} do not add up to its chunks")
    for piece in pieces:
        if (lead := piece.lead) is not None and chunks[lead.index - term.start] != lead:
            raise Unsplittable(f"the two pieces of term {i} holding chunk {lead.index} differ")
    hashes = tuple((c.digest, c.size) for c in chunks)
    return Written(term.xorb, term.start, term.end, first, hashes)


# --- the streams
# --------------------------------------------------------------------------------------------------


class Streams:
    """One attempt's tasks, on as many streams as the plain path would open for the file."""

    def __init__(self, wire: Wire, partial: Partial, plan: Plan) -> None:
        self.wire, self.cas, self.partial = wire, wire.cas, partial
        self.job, self.ref, self.rec = partial.job, partial.ref, partial.rec
        self.pieces = _Pieces(partial, plan)
        self.stop = threading.Event()  # a task failed: the others stop

    def run(self, tasks: list[Task], streams: int) -> None:
        """Every task, ``streams`` at a time in file order; the first failure stops the others, the
        worst is raised."""
        failures: list[BaseException] = []
        with ThreadPoolExecutor(streams, thread_name_prefix=f"xet:{self.job.label}") as pool:
            futures: list[Future[None]] = [pool.submit(self._task, task) for task in tasks]
            for future in futures:
                try:
                    future.result()
                except Exception as exc:  # noqa: BLE001  # the worst is raised below
                    self.stop.set()
                    failures.append(exc)
        if failures:
            raise _worst(failures, cancelled=self.cas.cancel.is_set(), what=self.job.label)

    def _task(self, task: Task) -> None:
        if self.cas.cancel.is_set() or self.stop.is_set():
            raise Stopped
        if isinstance(task, CopyTerm):
            self._copy(task)
        elif isinstance(task, FetchPiece):
            self._piece(task)
        else:
            self._terms(task)

    def _copy(self, task: CopyTerm) -> None:
        """A term copied from files already here, each chunk checked as it is read; fetched when
        one changed."""
        i, term = task.term, self.rec.terms[task.term]
        parts: list[bytes] = []
        chunks: list[tuple[bytes, int]] = []
        for copy in task.copies:
            if (got := read_copy(self.partial.root, copy)) is None:
                log.debug("%s: chunks of term %d changed on disk; fetching them", self.job.label, i)
                self._terms(FetchTerms(task.at, self.rec.fetch_of[i], [i]))
                return
            parts += got
            chunks += copy.chunks
        self.partial.write(task.at, parts)
        self.partial.copied(term.length)
        self.partial.finished(i, Written(term.xorb, term.start, term.end, task.at, tuple(chunks)))
        self.partial.claimable(term.length)

    def _terms(self, task: FetchTerms) -> None:
        """Whole terms of a xorb range: from the reconstruction's range (asked again, once, after a
        403), or (``alone``) from a reconstruction of their span only."""
        fetch = self.rec.fetches[task.fetch]

        def attempt(fresh: bool) -> None:
            nonlocal fetch
            if task.alone:
                fetch = self._run_fetch(task)
            elif fresh:
                fetch = self.cas.refetch(self.ref, self.job.label, fetch, size=self.rec.size)
            # a retry writes (and counts) again only the terms the failed stream did not finish
            if left := self.partial.record.left(task.terms):
                self._stream(fetch, _Terms(self.partial, left))

        self._retrying(attempt)

    def _run_fetch(self, task: FetchTerms) -> Fetch:
        """The xorb range of a reconstruction of the file's bytes from the task's first term to its
        last: it holds their chunks and no more than the span's own need."""
        terms = [self.rec.terms[i] for i in task.terms]
        span = (task.at, self.partial.offsets[task.terms[-1]] + terms[-1].length - 1)
        xorb = self.rec.fetches[task.fetch].xorb
        low, high = min(t.start for t in terms), max(t.end for t in terms)
        sub = self._reconstruction(span)
        holding = (x for x in sub.fetches if x.xorb == xorb and x.start <= low and x.end >= high)
        if (fetch := next(holding, None)) is None or sub.offset:
            first, last = task.terms[0], task.terms[-1]
            raise Unsplittable(
                f"the reconstruction of terms {first}-{last} does not hold their chunks"
            )
        return fetch

    def _piece(self, task: FetchPiece) -> None:
        """A piece of a term from a reconstruction of its span alone: its xorb range is the part of
        the term's that holds its bytes (the chunk across each cut is fetched by both pieces; each
        owns the chunks that start in its span)."""
        i, term = task.term, self.rec.terms[task.term]
        span = (task.at, task.end - 1)

        def attempt(fresh: bool) -> None:
            sub = self._reconstruction(span)
            if len(sub.terms) != 1 or sub.terms[0].xorb != term.xorb:
                raise Unsplittable(f"a piece of term {i} came back as {len(sub.terms)} terms")
            part = sub.terms[0]
            if not term.start <= part.start < part.end <= term.end:
                raise Unsplittable(f"a piece of term {i} names chunks outside it")
            window = _Window(self.partial, task, at=task.at - sub.offset, chunks=part)
            self._stream(sub.fetches[sub.fetch_of[0]], window)
            self.pieces.done(i, task.piece, window)

        self._retrying(attempt)

    def _reconstruction(self, span: tuple[int, int]) -> Reconstruction:
        """The reconstruction of the file's bytes ``span`` (first, last) alone."""
        return self.cas.reconstruction(self.ref, self.job.label, size=self.rec.size, span=span)

    def _retrying(self, attempt: Callable[[bool], None]) -> None:
        """``attempt(fresh)`` until it succeeds: after a 403 once with fresh URLs, after a failed
        stream on the engine's retry budget (the CAS's quick policy); then the file falls back to
        the plain path."""
        cas, what = self.cas, self.job.label
        tries = Tries(cas.retry, what, wait=cas.cancel.wait, on_retry=self.job.retries.add)
        refreshed = False
        while True:
            try:
                attempt(refreshed)
                return
            except Refused:
                if refreshed:
                    raise XetFallback(
                        "a xorb URL was refused again after a fresh reconstruction"
                    ) from None
                refreshed = True
            except (InterruptedByUserError, IntegrityError, XetFallback, Stopped, Unsplittable):
                raise
            except httpx2.TransportError as exc:
                self._failed(tries, transport_error(exc, what=what, url="the Xet storage"), exc)
            except RetryableError as exc:
                self._failed(tries, exc, exc)
            # a 404, a 410, a refused answer: the plain path has the file too
            except MdlError as exc:
                raise XetFallback(f"the Xet storage failed ({why(exc)})") from exc

    def _failed(self, tries: Tries, err: MdlError, cause: Exception) -> None:
        """A stream that failed: tried again after the budget's wait; past the budget, the plain
        path's (Ctrl-C in the wait: InterruptedByUserError)."""
        if self.cas.cancel.is_set() or self.stop.is_set():
            raise Stopped from None
        if isinstance(err, RetryableError):  # (a certificate not trusted is not: none mends it)
            with contextlib.suppress(NetworkError):  # the budget is spent
                tries.failed(err)
                return
        raise XetFallback(f"the Xet storage failed ({why(err)})") from cause

    # --- one xorb range
    # ---------------------------------------------------------------------------------------

    def _stream(self, fetch: Fetch, sink: _Sink) -> None:
        """One xorb range, each chunk decoded as it arrives and handed to ``sink``; what it wrote is
        undone if the stream fails, and kept for the resume record if it is stopped."""
        what, record = self.job.label, self.partial.record
        headers = {"Range": f"bytes={fetch.first}-{fetch.last}"}
        record.attach(sink)
        try:
            with follow(
                self.cas.client, fetch.url, credentials=Credentials(), headers=headers, what=what
            ) as response:
                self._decode(response, fetch, sink)
            sink.close()
        except BaseException as exc:
            stopped = isinstance(exc, Stopped | InterruptedByUserError | KeyboardInterrupt)
            if self.cas.cancel.is_set() or stopped:
                with contextlib.suppress(OSError):
                    sink.keep()  # decoded and hashed: on disk for the record saved on the way out
            else:
                record.detach(sink)
                sink.undo()
            raise

    def _decode(self, response: httpx2.Response, fetch: Fetch, sink: _Sink) -> None:
        """The answer's chunks into ``sink``, as they arrive, at most ``--limit-rate`` and one
        decoder a core."""
        what, cas, partial = self.job.label, self.cas, self.partial
        self._check(response)
        span = promised(response, what=what)
        if span.start != fetch.first or span.end != fetch.last + 1:
            shown = f"bytes {fetch.first}-{fetch.last}"
            raise XetFallback(f"the xorb server sent {span.shown} when {shown} were asked")
        chunks = _Chunks(fetch.end - fetch.start)
        index = fetch.start
        limiter, decoding = self.wire.limiter, self.wire.decoding
        try:
            for block in partial.ledger.counting(
                partial.job, read_body(response, span, encoded=False, what=what)
            ):
                if cas.cancel.is_set() or self.stop.is_set():
                    raise Stopped
                if limiter is not None:
                    limiter.consume(len(block), cas.cancel)
                with decoding.turn(sink.at()):
                    for data in chunks.feed(block):
                        sink.place(index, data)
                        index += 1
                partial.checkpoint()
            chunks.close()
        except UnknownFormat as exc:
            raise XetFallback(f"a xorb is in a format mdl does not know ({exc})") from exc
        except XorbError as exc:
            raise partial.corrupt(f"xorb {fetch.xorb[:12]}… chunk {index}: {exc}") from exc

    def _check(self, response: httpx2.Response) -> None:
        """A 206 goes on (from here on, silence is a stall); a 403 is Refused, a 200 or another
        answer the plain path's."""
        if response.status_code == 403:
            raise Refused
        if response.status_code == 200:
            raise XetFallback("the xorb server ignored the Range asked for")
        if response.status_code != 206:
            raise error_for_status(response, what=self.job.label, hub=False)
        if self.cas.stall_timeout is not None:
            set_read_timeout(response, self.cas.stall_timeout)


def _worst(failures: list[BaseException], *, cancelled: bool, what: str) -> BaseException:
    """The failure a file's tasks end with: Ctrl-C, then a corrupt xorb, a fallback, any other
    error.
    """
    if cancelled or any(isinstance(f, KeyboardInterrupt) for f in failures):
        return InterruptedByUserError(f"{what}: interrupted")
    for kind in (IntegrityError, AuthError, XetFallback, MdlError):
        if (found := next((f for f in failures if isinstance(f, kind)), None)) is not None:
            return found
    return next((f for f in failures if not isinstance(f, Stopped)), failures[0])
