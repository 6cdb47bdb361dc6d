"""One answer's body written at its piece's frontier (this stream alone moves it): the bytes it
repeats compared with those on disk first, never a byte past the piece; each chunk written, offered
to the hasher, claimed, told to the listener and counted, its record saved when due."""

from __future__ import annotations

import contextlib
import itertools
import logging
import math
import os
import time
from collections.abc import Callable, Iterator

import httpx2

from mdl.transfer._shared import Shared
from mdl.transfer._state import DownloadState, stream_rate
from mdl.transfer.body import BodyOverrunError, Span, read_body
from mdl.transfer.hasher import HASH_BLOCK
from mdl.transfer.job import Landing, SourceChanged
from mdl.transfer.replies import size_differs
from mdl.transfer.scheduling import MiB, Piece
from mdl.writes import write_at

log = logging.getLogger("mdl.transfer")

# told once when a piece's last answer is about a round trip from its end (run_pieces' overlap)
NearEnd = Callable[[], None]

# bytes an answer lands between two tellings of ``JobContext.landing`` (and at its piece's end, and
# its own): a listener hears of a part soon after it is whole, not of every chunk
LANDED_STEP = 1 * MiB


class BodyCopy:
    """One answer's body written at its piece's frontier (this stream alone moves it)."""

    def __init__(
        self,
        shared: Shared,
        state: DownloadState,
        piece: Piece,
        span: Span,
        *,
        near_end: NearEnd | None = None,
    ) -> None:
        self.shared, self.state, self.piece, self.span = shared, state, piece, span
        # (the answer ends the piece) told once the bytes left take about a round trip to come,
        # judged at half the answer by its own rate then (never before: no more than twice the
        # streams read at full)
        self.near_end, self.near, self.judged = near_end, math.inf, False
        self.began = time.monotonic()  # (made as its answer's head arrived)
        if near_end is not None and piece.end is not None:
            self.near = (piece.start + piece.done + piece.end) // 2
        # bytes before ``told`` are told (``JobContext.landing``: looked up once, not per chunk);
        # after it, up to the frontier, not yet
        self.start = self.offset = self.told = piece.start + piece.done
        self.landing = state.beside.landing
        # how far ahead of the hash the streams' pieces reach (widened on a long round trip)
        self.spread = shared.config.streams(state.size) * (
            0 if piece.end is None else piece.end - piece.start
        )

    def run(self, resp: httpx2.Response, *, encoded: bool, back: int = 0) -> None:
        """Write the body till it ends or the piece is done: written, hashed, counted, saved; its
        first ``back`` bytes are compared with those on disk before the frontier, never written."""
        state = self.state
        most = None if self.shared.limiter is None else self.shared.limiter.chunk
        body = read_body(resp, self.span, encoded=encoded, what=state.job.label, most=most)
        chunks = state.beside.ledger.counting(state.job, body)
        try:
            # compared before the loop: the chunks after the overlap go straight to ``take``
            if back:
                rest = repeated(state, chunks, self.start - back, back)
                chunks = itertools.chain((rest,), chunks) if len(rest) else chunks
                self.began = time.monotonic()  # (its rate: of the bytes it writes)
            for chunk in chunks:
                if self.take(chunk):
                    break
        except BodyOverrunError:
            # which of its bytes were not the file's, nothing tells
            self.shared.progress.advance(state.job.label, -state.take_back(self.piece, self.start))
            raise
        finally:
            self._count_answer(back)
            if self.landing is not None:
                self._tell(self.landing, done=True)
        self._measure_rate()

    def take(self, chunk: bytes | memoryview) -> bool:
        """Write one chunk at the frontier; True: read no further (another stream has the rest)."""
        state, piece = self.state, self.piece
        # no further ahead of the hash than it keeps in memory, or than the streams' pieces reach
        state.hasher.room(
            self.offset + len(chunk), self.pace, self.shared.cancel, ahead=self.spread
        )
        # read per chunk: a steal may have given this piece's tail to another stream
        limit = piece.end
        # asked on past it
        carrying = limit is not None and self.offset + len(chunk) > limit and piece.asked > limit
        # Reading on into the next pieces, it claims and writes their bytes under the lock: an
        # answer for one of them that begins meanwhile (``state.begin``) finds every byte it no
        # longer owns on disk.
        with state.lock if carrying else contextlib.nullcontext():
            chunk = self._clip(chunk, limit, carrying=carrying)
            written = write_at(state.fd, chunk, self.offset)
            state.hasher.offer(self.offset, chunk)  # before `done` moves: the frontier's ours
            counted, complete, save = self._advance(written)
        self.offset += written
        if self.offset >= self.near:
            self._near()
        if self.landing is not None:
            self._tell(self.landing, done=complete)
        self._pass_on(written, counted)
        if complete and piece.end != piece.asked and state.free_after(piece) is None:
            # its answer runs on, but the bytes after are another stream's (its answer has begun)
            return True
        if save:
            state.record.checkpoint()
        return False

    def _near(self) -> None:
        """Half the answer is in: the next piece asked for now if the rest comes within about a
        round trip, else once it does."""
        if not self.judged and self.piece.end is not None:
            self.judged = True
            # at this answer's own rate so far (the file's since its start counts the first
            # answers' round trips); twice: the next request may need a connection of its own first
            rate = (self.offset - self.start) / max(1e-3, time.monotonic() - self.began)
            early = 2 * int(rate * self.state.ttfb)
            if self.offset < self.piece.end - early:
                self.near = self.piece.end - early
                return
        self.near = math.inf
        assert self.near_end is not None
        self.near_end()

    def pace(self) -> float:
        """A stream's bytes a second, as the file's streams moved them so far."""
        return stream_rate(self.state, self.shared.config.streams(self.state.size))

    def _clip(
        self, chunk: bytes | memoryview, limit: int | None, *, carrying: bool
    ) -> bytes | memoryview:
        """``chunk`` cut at the piece's end (first moved on over free pieces when ``carrying``)."""
        if carrying:
            limit = self.state.carry(self.piece, self.offset + len(chunk))
        if limit is None or self.offset + len(chunk) <= limit:
            return chunk
        if not self.span.ranged:  # a whole body longer than the file we expect
            raise size_differs(self.state, self.offset + len(chunk))
        # never write past our piece, whatever the server sends
        return chunk[: max(0, limit - self.offset)]

    def _advance(self, written: int) -> tuple[int, bool, bool]:
        """Move the frontier over ``written`` bytes: the bytes counted, whether the piece is
        complete, whether a record is due."""
        state, piece = self.state, self.piece
        with state.lock:
            # its end may have moved in
            counted = written if piece.end is None else min(written, piece.left)
            piece.done += counted
            state.fetched += counted
            complete = piece.complete
            # a block for the hasher, not every chunk
            if complete or (piece.done % HASH_BLOCK) < counted:
                state.lock.notify_all()
            return counted, complete, state.record.due(self.shared.config.checkpoint_interval)

    def _tell(self, hear: Landing, *, done: bool) -> None:
        """The bytes this answer landed since the last telling, told once they are LANDED_STEP
        (``done``: however few); none past what the piece claims (a body cut back claims less)."""
        landed = self.piece.start + self.piece.done  # its frontier: this stream alone moves it
        if landed - self.told >= (1 if done else LANDED_STEP):
            hear.landed(self.told, landed)
            self.told = landed

    def _pass_on(self, written: int, counted: int) -> None:
        """The display told, Ctrl-C heeded, the rate cap paid."""
        shared = self.shared
        shared.progress.advance(self.state.job.label, counted)
        # after the write: a Ctrl-C keeps (and records) every byte that had arrived
        shared.check_stop(self.state)
        if shared.limiter is not None:
            shared.limiter.consume(written, shared.cancel)

    def _count_answer(self, back: int) -> None:
        state, wrote = self.state, self.offset - self.start
        self.piece.answered = wrote + back  # what the next answer's overlap is sized by
        if wrote > 0:  # one more answer the file is made of (broken off or not)
            with state.lock:
                state.answers += 1

    def _measure_rate(self) -> None:
        wrote, elapsed = self.offset - self.start, time.monotonic() - self.began
        if wrote >= MiB and elapsed > 0:  # what sizes this stream's next window
            self.piece.rate = wrote / elapsed


def repeated(
    state: DownloadState, body: Iterator[bytes | memoryview], at: int, count: int
) -> bytes | memoryview:
    """Read the body's first ``count`` bytes, which must be the bytes on disk at ``at`` (engine rule
    15: an answer continuing another's proves it is of the same version; else ``SourceChanged``);
    returns what the last chunk read held past them (the rest of ``body`` is left to read, off this
    check)."""
    seen = 0
    for chunk in body:
        take = min(len(chunk), count - seen)
        # short: the .part ends before its record says
        if chunk[:take] != os.pread(state.fd, take, at + seen):
            log.info(
                "%s: the bytes before byte %d differ from those on disk",
                state.job.label,
                at + count,
            )
            raise SourceChanged
        seen += take
        if seen == count:
            return chunk[take:]
    return b""  # the body ended within the overlap: nothing of it continues the file
