"""One stream's requests for one piece of a file, till it is complete: what each asks for (from
the piece's frontier, less the bytes on disk it repeats, up to a window of the piece), sent or the
probe's answer taken, checked against the file and the request (``PieceRequests``), its body handed
to ``BodyCopy``; tried again from the frontier when a connection fails or stalls, or a signed URL
expires, within the piece's retry budget (``PieceStream``)."""

# (annotations here are evaluated, not postponed: typing compiles each string annotation of a
# NamedTuple's fields at every start)
import contextlib
import copy
import functools
import itertools
import logging
import threading
import time
from collections.abc import Callable
from typing import NamedTuple

import httpx2

from mdl.errors import MdlError, NetworkError
from mdl.transfer._copy import BodyCopy, NearEnd
from mdl.transfer._headers import content_range_total, is_encoded
from mdl.transfer._shared import IGNORED_RANGE, Shared, retryable
from mdl.transfer._state import DownloadState
from mdl.transfer._target import Resolve
from mdl.transfer.body import Span, promised
from mdl.transfer.connection import set_read_timeout
from mdl.transfer.failures import ExpiredURLError, RetryableError
from mdl.transfer.http import Tries, error_for_status, follow
from mdl.transfer.job import Opening, RangesIgnoredError, SourceChanged
from mdl.transfer.replies import check_range, check_size, check_version
from mdl.transfer.scheduling import MiB, Piece, window
from mdl.units import human_seconds

log = logging.getLogger("mdl.transfer")

PROGRESS = 256 * 1024  # bytes a failed try must have added for the retry budget to start again
# Answers cut mid-body a stream takes from a source with a next one (a mirror) before leaving it,
# progress or not: a store cutting every read costs a few resumes, not one per cut till the end.
CUTS_PER_SOURCE = 3
# ... counted afresh once a try got this far past the last cut: a proxy's longest request cuts a
# good stream now and then (60-300 s is common), which is no source that keeps breaking
CUT_SPAN = 64 * MiB


class _ClosedEarly(RetryableError):
    """The body ended before the piece did: the connection was lost mid-answer."""


class PieceStream:
    """One stream working on one piece till it is complete, with the piece's retry budget."""

    def __init__(self, requests: "PieceRequests") -> None:
        self.requests = requests  # its requests built, sent and read (the body copied)
        shared, state, piece = requests.shared, requests.state, requests.piece
        self.shared, self.state, self.piece, self.job = shared, state, piece, state.job
        said = itertools.count(1)  # every retry of this stream is said: a budget started over too
        self.tries = Tries(
            shared.config.retry,
            self.job.label,
            wait=shared.cancel.wait,
            on_retry=self.job.retries.add,
            announce=lambda _, line: shared.announce(state, "retry", next(said), line),
            # this host answered the file's first request: a refusal now is a blip
            quick_unreachable=False,
        )
        self.stalls = self.cuts = self.cut_at = 0  # (cuts: answers broken off mid-body, and where)
        # the furthest this piece has got: progress is getting past it
        self.high = piece.start + piece.done
        # the last ask of the resolve URL whose failure this stream raised: its next asks anew
        self.failed: Resolve | None = None

    def run(self) -> None:
        """Fetch the piece from its last byte; only tries that moved nothing spend retries."""
        while not self.piece.complete:
            self.shared.check_stop(self.state)
            url, asking = self.state.target.url, None
            try:
                # another stream's failed ask of the resolve URL: this one's try failed too
                url, asking = self._aim()
                if self._try(url, asking):
                    return
            except ExpiredURLError:
                # refused where the resolve URL sent it: that target expired
                refused = asking.target if asking is not None and asking.target else url
                if not self._relocate(refused):
                    raise
            except httpx2.ReadTimeout as exc:
                self._stalled(exc)
            except (RetryableError, httpx2.TransportError, httpx2.StreamClosed) as exc:
                self._failed(exc, url)

    def _aim(self) -> tuple[str, Resolve | None]:
        """Where the next request goes, and the ask of the resolve URL it makes for all the file's
        streams (None: it asks for itself alone; ``Target.aim``)."""
        while True:
            url, ask, mine = self.state.target.aim(self.failed)
            if ask is None:
                return url, None
            # its failure, once this stream raised it, is not raised here again: it asks anew
            self.failed = ask
            if mine:
                return url, ask
            # Another stream's: till it has a target (Ctrl-C heeded every tenth of a second); its
            # failure is this one's too.
            while not ask.wait(0.1):
                self.shared.check_stop(self.state)
            if ask.error is not None:
                # each stream raises its own: an exception is not raised in two threads at once
                raise copy.copy(ask.error) from ask.error

    def _try(self, url: str, asking: Resolve | None = None) -> bool:
        """One request and its answer; True: the file's end was read (an unknown size)."""
        piece = self.piece
        began, target = piece.start + piece.done, self.state.target
        # This stream asks the resolve URL for every stream of the file: however it ends, the
        # others stop waiting (a failure before the target was known is theirs too, and theirs
        # who aim after it, till they tried once more).
        try:
            answered_end = self.requests.request(url, asking)
        except MdlError as exc:
            target.unanswered(asking, exc)
            raise
        finally:
            target.unanswered(asking, None)
        if piece.end is None:
            return True
        # Short of its range, the connection was lost; a tiny legal answer spends a try (or it goes
        # on forever).
        reached = piece.start + piece.done
        if reached < min(piece.end, answered_end or piece.end):
            raise _ClosedEarly(f"{self.job.label}: connection closed early at byte {reached}")
        if not piece.complete and reached < piece.asked and reached - began < PROGRESS:
            said = f"{self.job.label}: the server sent only {piece.answered} bytes of the range"
            raise RetryableError(said, answered=True)
        self.high = max(self.high, reached)
        self.tries.failures = 0
        return False

    def _relocate(self, url: str) -> bool:
        """Its signed target expired while the file waited: located again (False: give up)."""
        job, tries = self.job, self.tries
        probed = bool(job.located) and url == job.located
        if not probed and (not job.renewable or tries.failures >= tries.most):
            return False
        # a re-resolve spends a try: a CDN refusing every signed URL gives up
        tries.failures += not probed
        return self.state.target.relocate(
            url, probed=probed, locate=functools.partial(self.shared.locate, self.state)
        )

    def _stalled(self, exc: httpx2.ReadTimeout) -> None:
        """No bytes for the stall timeout: resumed at once, up to ``max_stalls`` times."""
        shared, job = self.shared, self.job
        shared.check_stop(self.state)
        self.stalls += 1
        most = shared.config.max_stalls
        if self.stalls > most:
            raise NetworkError(f"{job.label}: stalled {self.stalls} times, giving up") from exc
        at = self.piece.start + self.piece.done
        log.info("%s: stream stalled, resuming at byte %d", job.label, at)
        job.retries.add(f"stalled at byte {at}")
        silence = shared.config.stall_timeout or shared.client.timeout.read
        again = f"no bytes for {human_seconds(silence or 0)}, reconnecting ({self.stalls}/{most})"
        shared.announce(self.state, "stall", self.stalls, again)

    def _failed(
        self, exc: RetryableError | httpx2.TransportError | httpx2.StreamClosed, url: str
    ) -> None:
        """A failed try: waited for; the error once the budget (or a mirror's cuts) is spent."""
        self.shared.check_stop(self.state)
        err = retryable(exc, what=self.job.label, url=url)  # (a refused certificate: raised)
        reached = self.piece.start + self.piece.done
        # this try moved the piece on: the budget is for tries that did not
        if reached >= self.high + PROGRESS:
            self.tries.failures = 0
        self.high = max(self.high, reached)
        # A connection that went away mid-answer (httpx2's own error, or an answer cut short) is
        # "lost".
        lost = exc is not err or isinstance(exc, _ClosedEarly)
        if lost:  # (one CUT_SPAN past the last cut starts the count again)
            self.cuts, self.cut_at = 1 + self.cuts * (reached < self.cut_at + CUT_SPAN), reached
        if lost and self.job.fallback and self.cuts >= CUTS_PER_SOURCE:
            cut = f"its answers were cut mid-body {self.cuts} times (the last at byte {reached})"
            raise NetworkError(f"{self.job.label}: {cut}") from exc
        self.tries.failed(err, lost=lost)


class _Whole(RangesIgnoredError):
    """A 200 of this version to one of the parallel ranges: the whole file, its body unread."""


class RangeGate:
    """A file's parallel ranges wait for one answer that honours a range (a 206 of the file)
    before they are sent, when nothing has shown yet that the server does: one stream (the
    pioneer) asks first, the others a round trip later. A server that ignores Range (nginx
    ``max_ranges 0``) then sends the whole file once, read on as the one stream, never once per
    stream into buffers closed unread (issue 86)."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._pioneer = self._open = self._shut = False

    def enter(self, stopped: Callable[[], bool]) -> bool:
        """Wait till ranges are proved (False), or become the pioneer (True); False too once
        ``stopped`` (a shut gate waits for it: the file starts over)."""
        with self._changed:
            while not self._open and not stopped():
                if not self._pioneer and not self._shut:
                    self._pioneer = True
                    return True
                self._changed.wait(0.1)
            return False

    def leave(self, *, proved: bool, shut: bool = False) -> None:
        """The pioneer's try ended: ranges proved, the file starting over (``shut``: the whole
        file came, or another version), or another may ask first."""
        with self._changed:
            self._open, self._shut = self._open or proved, self._shut or shut
            self._pioneer = False
            self._changed.notify_all()


class Ask(NamedTuple):
    """One request for (part of) a piece: from byte ``offset`` less the ``back`` bytes on disk it
    repeats, up to ``end`` (None: the file's end); ``opening``: the probe's answer, taken
    instead."""

    url: str
    offset: int
    back: int
    end: int | None
    ranged: bool
    validator: str | None
    opening: Opening | None

    def headers(self) -> dict[str, str]:
        if not self.ranged:
            return {}
        last = "" if self.end is None else self.end - 1
        headers = {"Range": f"bytes={self.offset - self.back}-{last}"}
        # RFC 9110 §13.1.5: a changed file comes back whole
        if self.validator:
            headers["If-Range"] = self.validator
        return headers


class PieceRequests:
    """One piece's requests: what the next asks for, sent (or the probe's answer taken), its
    answer checked and its body copied."""

    def __init__(
        self,
        shared: Shared,
        state: DownloadState,
        piece: Piece,
        near_end: NearEnd | None = None,
        gate: RangeGate | None = None,
    ) -> None:
        self.shared, self.state, self.piece, self.job = shared, state, piece, state.job
        self.near_end, self.gate, self.proved = near_end, gate, False
        self.checks = _Checks(shared, state, piece)

    def request(self, url: str, asking: Resolve | None = None) -> int | None:
        """One request for (part of) the piece; returns where its answer ends (None: the end of the
        file). Bytes on disk before its frontier are another answer's (an earlier run's, a broken
        stream's, the carried probe's, a short range's, the last window's): it starts a little
        before them when no hash checks the file and compares (engine rule 15: every join of two
        answers proves they are one version; ``state.overlap``). ``asking``: it asks the resolve URL
        for all the file's streams, told where it is sent as soon as it is (``Target.reached``)."""
        self._refuse_splice()
        ask = self._ask(url)
        # a stream reading on past its own piece took this one whole meanwhile
        if ask is None:
            return self.piece.end
        gate = self.gate
        pioneer = gate is not None and gate.enter(self._stopped)
        self.shared.check_stop(self.state)
        over = False  # the file starts over: no range is asked till it has
        try:
            return self._answered(url, ask, asking)
        except (RangesIgnoredError, SourceChanged):
            over = True
            raise
        finally:
            if pioneer and gate is not None:
                gate.leave(proved=self.proved, shut=over)

    def _stopped(self) -> bool:
        return self.shared.cancel.is_set() or self.state.stop.is_set()

    def _answered(self, url: str, ask: Ask, asking: Resolve | None) -> int | None:
        """``ask`` sent (or its opening taken) and its answer read; returns where it ends."""
        job, sent, reached = self.job, time.monotonic(), self.state.target.reached
        told = None if asking is None else functools.partial(reached, asking, final=False)
        answer = ask.opening or follow(
            self.shared.client,
            url,
            credentials=job.credentials,
            headers=ask.headers(),
            what=job.label,
            saved_as=job.path,
            redirected=told,
        )
        with contextlib.ExitStack() as stack:
            resp = stack.enter_context(answer)
            if ask.opening is None:
                self.state.saw_first_byte(time.monotonic() - sent)
            if asking is not None and resp.status_code in (200, 206):
                reached(asking, str(resp.url), final=True)
            # the answer began: from here on, silence is a stall
            if self.shared.config.stall_timeout is not None:
                set_read_timeout(resp, self.shared.config.stall_timeout)
            with self.shared.reading(resp, self.state), contextlib.suppress(_Whole):
                return self._read(resp, ask)
            # read on by the one stream the file starts over as: no byte of it asked again
            whole = Opening(resp, stack.pop_all().close, end=self.state.size or 0)
            self.shared.keep_whole(self.state, whole)
            raise RangesIgnoredError

    def _refuse_splice(self) -> None:
        state, piece = self.state, self.piece
        if state.whole_only and (state.multi or piece.done > 0):
            # a content-coding server: only one decoded whole-file stream, never spliced
            raise RangesIgnoredError
        unversioned = state.validator is None and not self.job.identity.has_hash
        if piece.done > 0 and not state.multi and unversioned:
            # nothing tells this version from the next: a resume could splice two
            self.checks.drop("the server names no version to resume against")

    def _ask(self, url: str) -> Ask | None:
        """What the next request asks for (None: the piece is complete)."""
        state, piece, job = self.state, self.piece, self.job
        offset = piece.start + piece.done
        opening = None
        if (carried := state.beside.opening) is not None and offset == 0 and url == job.located:
            opening = carried.take()
        elif offset == 0 and not state.multi:  # a 200 to a range, read on from byte 0
            opening = self.shared.take_whole(state)
        # bytes on disk the answer must repeat
        back = state.overlap(piece) if opening is None else 0
        # a window of the piece: what lies past it may be stolen, never what was asked for
        with state.lock:
            if piece.complete:
                return None
            if opening is None:  # (a probe's answer: as it was asked)
                state.widen(piece, self.shared.config.streams(state.size))
            end = self._window(offset, opening)
            piece.asked = end or 0
            validator = state.validator
        ranged = state.multi or offset > 0 or opening is not None
        return Ask(url, offset, back, end, ranged, validator, opening)

    def _window(self, offset: int, opening: Opening | None) -> int | None:
        # the probe asked for the first bytes: its answer is this piece's first window
        if opening is not None:
            return opening.end
        if self.state.multi and self.piece.end is not None:
            return window(self.piece, offset, self.state.ttfb)
        return self.piece.end

    def _read(self, resp: httpx2.Response, ask: Ask) -> int | None:
        """The answer checked against the file and the request, its body copied; returns its end."""
        state, piece, label = self.state, self.piece, self.job.label
        self.checks.status(resp, ask.offset)
        if encoded := is_encoded(resp, what=label):
            state.whole_only = True
        span = promised(resp, what=label)  # its body is held to it as it is read
        # a 206, or a 200 naming a part of the file (rclone serve s3): read as that range
        answered_end: int | None = ask.end
        if span.ranged:
            answered_end = self.checks.part(resp, span, ask, encoded=encoded)
            self.proved = True
            if self.gate is not None:  # the others may ask now, while this body is read
                self.gate.leave(proved=True)
        else:
            self.checks.whole(resp, span, ask)
        # A stream reading on past its own piece (the probe's answer) may have taken this piece's
        # first bytes while this answer was on its way: they are repeated (compared, engine rule
        # 15), or, the whole piece taken, the answer is dropped.
        moved = state.begin(piece) - ask.offset
        # the whole file: nothing to compare, the body starts at byte 0
        back = ask.back + moved if span.ranged else 0
        if not piece.complete:
            near_end = self.near_end if ask.end == piece.end else None  # (its last answer)
            body = BodyCopy(self.shared, state, piece, span, near_end=near_end)
            body.run(resp, encoded=encoded, back=back)
        return answered_end


class _Checks:
    """One stream's answers checked against the file and the request: the status, the range it
    names, the version; a whole answer is the stream's from byte 0 (the only stream), or the file
    starts over."""

    def __init__(self, shared: Shared, state: DownloadState, piece: Piece) -> None:
        self.shared, self.state, self.piece, self.job = shared, state, piece, state.job

    def status(self, resp: httpx2.Response, offset: int) -> None:
        job = self.job
        if resp.status_code == 416 and self.piece.end is not None:
            check_size(self.state, content_range_total(resp.headers.get("Content-Range")))
            raise NetworkError(
                f"{job.label}: server says bytes {offset}- are out of range (HTTP 416); the remote"
                " size changed"
            )
        if resp.status_code not in (200, 206):
            raise error_for_status(resp, what=job.label, credentials=job.credentials)

    def part(self, resp: httpx2.Response, span: Span, ask: Ask, *, encoded: bool) -> int:
        """A part of the file: it must be the one asked for, of this version; returns its end."""
        state, job = self.state, self.job
        if not ask.ranged:
            raise NetworkError(
                f"{job.label}: the server sent {span.shown} when the whole file was asked"
            )
        # a slice of a compressed stream is not a slice of the file: start over, whole
        if encoded:
            log.info(
                "%s: server sent a content-coded range, restarting as one decoded stream", job.label
            )
            raise RangesIgnoredError
        end = check_range(state, span, ask.offset - ask.back, ask.end)
        check_version(state, resp, total=span.total)
        state.target.answered(ask.url, str(resp.url))
        return end

    def whole(self, resp: httpx2.Response, span: Span, ask: Ask) -> None:
        """The whole file: taken as its only stream, from byte 0; else every stream restarts."""
        state = self.state
        # another version (SourceChanged) or ranges ignored: both restart the file
        if state.multi:
            check_version(state, resp, total=span.total)
            raise _Whole if span.total == state.size else RangesIgnoredError
        # a coded body's says nothing; another size is another version
        check_size(state, span.total)
        before = state.validator
        # another version: taken from this answer
        check_version(state, resp, total=span.total, whole=True)
        # the server ignored our Range, or (If-Range) sent a new version: from byte 0
        if ask.offset > 0:
            self._restart(changed=before is not None and state.validator != before)

    def _restart(self, *, changed: bool) -> None:
        log.info("%s: server sent the whole file, restarting from zero", label := self.job.label)
        if changed:
            self.shared.progress.note(
                f"{label}: the file changed on the server, downloading the new version"
            )
        else:
            self.shared.ignored_range(self.state)
        self.drop("the file changed on the server" if changed else IGNORED_RANGE)

    def drop(self, why: str) -> None:
        self.shared.progress.advance(self.job.label, -self.state.drop(self.piece, why=why))
