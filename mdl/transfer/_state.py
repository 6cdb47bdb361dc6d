"""The claim state of one ``.part`` while it downloads (``DownloadState``): its pieces and what
each claims (claim, carry, steal; forget, drop, take back, refetch: THE one ``_unclaim``), the
version its answers are held to, and what the streams share of the attempt. Its record on disk is
``resume.Record``'s, its hashes ``hasher.Hasher``'s."""

from __future__ import annotations

import threading
import time

from mdl.errors import NetworkError
from mdl.transfer._target import Target
from mdl.transfer.context import JobContext, Ledger
from mdl.transfer.hasher import Hasher
from mdl.transfer.job import TransferJob, Version
from mdl.transfer.resume import Record
from mdl.transfer.scheduling import ASSUMED_RATE, MIN_STEAL, Piece, split_largest

# bytes on disk a resumed range repeats, when no hash will check the file (engine rule 15)
OVERLAP = 64 * 1024
# ... at most this fraction of its last answer (a server capping its 206s pays ~6%, not more) ...
OVERLAP_SHARE = 16
OVERLAP_LEAST = 4 * 1024  # ... and never less


def round_trip_bytes(state: DownloadState, streams: int) -> int:
    """What one of ``streams`` streams moves in one time to first byte (guessed before any)."""
    return int((stream_rate(state, streams) or ASSUMED_RATE) * state.ttfb)


def stream_rate(state: DownloadState, streams: int) -> float:
    """Bytes a second one of ``streams`` streams has moved since they began (0: none yet)."""
    began, fetched = state.paced
    return (state.fetched - fetched) / max(1e-3, time.monotonic() - began) / max(1, streams)


class DownloadState:
    """One attempt at one ``.part``: its pieces and what each claims, the version its answers are
    held to, its hasher and its record."""

    def __init__(
        self,
        job: TransferJob,
        fd: int,
        pieces: list[Piece],
        validator: str | None,
        beside: JobContext | None = None,
    ) -> None:
        self.job, self.fd, self.pieces = job, fd, pieces  # fd: the .part, open for the download
        self.beside = beside or JobContext(ledger=Ledger())
        # validator, etag, last_modified, modified_seen: then replies.check_version keeps them
        self.adopt(validator)
        # times the file changed upstream during this download (a second one gives up)
        self.changes = 0
        self.changed_to: list[Version] = []  # the versions this attempt's answers changed to
        self.lock = threading.Condition()
        self.stop = threading.Event()  # set when one stream fails for good: the others end quietly
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
        self.paced = (self.began, 0)  # when the streams began, and ``fetched`` then
        self.ttfb = 0.0  # the mean time to first byte seen: what one more request costs
        self.hasher = self.new_hasher()  # this attempt's: fed at the frontier
        self.multi = False  # this attempt runs ranges that may go in parallel (engine._aim_ranges)
        # No hash will check the result: a request continuing bytes another answer wrote first
        # repeats some of them (engine rule 15)
        self.overlaps = not (job.verify and job.identity.has_hash)
        self.answers = 0  # answers that wrote bytes since the bytes on disk were last dropped
        self.record = Record(self)  # its resume record: saved from these claims

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

    def _unclaim(self, start: int, end: int) -> None:
        """THE one telling of bytes claimed no more (``Landing.taken_back``), before they change:
        every state function that unclaims bytes calls it, under the lock. The hasher goes back to
        its last mark before ``start`` if it read past it; which of the bytes claimed were the
        file's, no flushed layout tells any more."""
        self.hasher.unclaim(start)
        self.record.flushed = None
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
            self.restarted, self.answers = True, 0
        return dropped

    def take_back(self, piece: Piece, frontier: int) -> int:
        """Move ``piece``'s frontier back to ``frontier``: what an answer wrote past it is no
        longer claimed; returns how much."""
        with self.lock:
            dropped = max(0, piece.start + piece.done - frontier)
            self._unclaim(frontier, frontier + dropped)
            piece.done -= dropped
            self.fetched -= dropped
            self.beside.ledger.add("thrown", dropped)
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

    def widen(self, piece: Piece, streams: int) -> None:
        """A piece about to be asked for the first time, taken on over the pieces after it no
        stream has asked for, till a request's round trip is at most a quarter of its time: small
        pieces keep the streams' bytes within what the hash keeps in memory, but a long round
        trip each would idle the streams (a presigned URL far away). Only the engine's own
        pieces, split in parallel (not a swarm's parts, nor a loader's ranges in order); locked."""
        mine = self.multi and self.beside.swarm is None and not self.beside.in_order
        if not mine or piece.asked or piece.done:
            return
        least = 4 * round_trip_bytes(self, streams)
        while piece.end is not None and piece.end - piece.start < least:
            if (after := self._takeable_after(piece, streams)) is None:
                return
            assert after.end is not None  # (_takeable_after)
            piece.end, after.start = after.end, after.end  # (its stream, if one took it: none)
            # (a new list, as ``carry`` makes: the record's keeper reads it without the lock)
            self.pieces = [p for p in self.pieces if p is not after]

    def _takeable_after(self, piece: Piece, streams: int) -> Piece | None:
        """The piece right after ``piece`` if no stream ever asked for it (a stream that took it
        finds it complete) and ``piece`` may take it on, else None; locked. Never into the file's
        last round: the bytes left after it must be at least ``streams - 1`` times the piece
        widened (a wide last piece would end alone, after the rest)."""
        after = next((p for p in self.pieces if p.start == piece.end), None)
        if after is None or after.asked or after.begun or after.done or after.end is None:
            return None
        # (what is left after it: a resumed file's pieces on disk are no round to share)
        left = sum(p.left for p in self.pieces if p.start >= after.end)
        return None if left < (streams - 1) * (after.end - piece.start) else after

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
            self.pieces = pieces
            self.adopt(None)  # the next answer says (or the one seen: ``Restarts._start_over``)
            self.restarted, self.answers, self.changed_to = True, 0, []
            self.hasher.close()
            self.hasher = self.new_hasher()
        self.stop.clear()

    def new_hasher(self) -> Hasher:
        return Hasher(
            self.fd, self.size, git=self.job.identity.git_oid is not None, signed=self.job.signed
        )
