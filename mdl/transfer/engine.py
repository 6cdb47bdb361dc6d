"""One file over HTTP into a ``.part`` and its resume record: parallel ranges, retries, stalls;
verified, moved.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import itertools
import logging
import os
import threading
import time
from collections.abc import Iterator

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
from mdl.store import DirSyncs, open_file
from mdl.transfer.body import BodyOverrunError, Span, promised, read_body
from mdl.transfer.connection import set_read_timeout
from mdl.transfer.headers import content_range_total, is_encoded
from mdl.transfer.http import (
    ExpiredURLError,
    RetryableError,
    Tries,
    error_for_status,
    follow,
    seconds,
    transport_error,
)
from mdl.transfer.job import (
    EngineConfig,
    HashMismatch,
    RangesIgnoredError,
    SourceChanged,
    TransferJob,
    TransferResult,
)
from mdl.transfer.replies import check_range, check_size, check_version, locate, probe, size_differs
from mdl.transfer.resume import (
    HASH_BLOCK,
    DownloadState,
    Loaded,
    discard_partial,
    finish_part,
    job_root,
    keeping,
    load_state,
)
from mdl.transfer.scheduling import (
    MIN_PIECE,
    MiB,
    Piece,
    RateLimiter,
    StreamStopped,
    run_pieces,
    spread,
    window,
)
from mdl.units import human_size

log = logging.getLogger("mdl.transfer")

MAX_RESTARTS = 4
# why kept bytes were thrown away (a resume's outcome says it)
IGNORED_RANGE = "the server ignored the range"
COMPRESSED = "the server sent a compressed body, which cannot be resumed"
PROGRESS = 256 * 1024  # bytes a failed try must have added for the retry budget to start again


class _ClosedEarly(RetryableError):
    """The body ended before the piece did: the connection was lost mid-answer."""


@dataclasses.dataclass(eq=False)
class Engine:
    client: httpx2.Client
    config: EngineConfig
    _: dataclasses.KW_ONLY
    progress: Progress
    cancel: threading.Event
    limiter: RateLimiter | None = None
    # folders to fsync before a record names their files (None: fsync at each finish)
    dirs: DirSyncs | None = None
    # by file
    _open: dict[httpx2.Response, DownloadState] = dataclasses.field(
        default_factory=dict, init=False
    )
    _open_lock: threading.Lock = dataclasses.field(default_factory=threading.Lock, init=False)

    def abort(self) -> None:
        self.cancel.set()
        self.close()

    def close(self, state: DownloadState | None = None) -> None:
        """Close the answers being read for ``state`` (None: for every file): their streams wake
        and end.
        """
        with self._open_lock:
            doomed = [
                response
                for response, owner in self._open.items()
                if state is None or owner is state
            ]
        for response in doomed:
            with contextlib.suppress(Exception):
                response.close()

    def check_stop(self, state: DownloadState) -> None:
        if self.cancel.is_set():
            raise InterruptedByUserError(f"{state.job.label}: interrupted")
        if state.stop.is_set():
            raise StreamStopped

    def announce(self, state: DownloadState, kind: str, count: int, text: str) -> None:
        """One line per retry of a file, however many of its streams hit it at once (the highest
        count wins).
        """
        with state.lock:
            if state.announced.get(kind, 0) >= count:
                return
            state.announced[kind] = count
        self.progress.note(f"{state.job.label}: {text}")

    def locate_retrying(self, state: DownloadState) -> str:
        return self.config.retry.run(
            lambda: locate(self.client, state),
            what=state.job.label,
            wait=self.cancel.wait,
            on_retry=state.job.retries.add,
            announce=lambda _, line: self.progress.note(f"{state.job.label}: {line}"),
        )

    def run_piece(self, state: DownloadState, piece: Piece) -> None:
        """Fetch one piece, resuming from its last byte; only tries that moved nothing onto the
        disk spend retries.
        """
        job = state.job
        tries = Tries(
            self.config.retry,
            job.label,
            wait=self.cancel.wait,
            on_retry=job.retries.add,
            announce=lambda count, line: self.announce(state, "retry", count, line),
            # this host answered the file's first request: a refusal now is a blip
            quick_unreachable=False,
        )
        stalls = 0
        # the furthest this piece has got: progress is getting past it
        high = piece.start + piece.done
        while not piece.complete:
            self.check_stop(state)
            url = state.url
            try:
                began = piece.start + piece.done
                answered_end = self._stream_piece(state, piece, url)
                if piece.end is None:
                    return
                # Short of its range, the connection was lost; a tiny legal answer spends a try (or
                # it goes on forever).
                reached = piece.start + piece.done
                if reached < min(piece.end, answered_end or piece.end):
                    raise _ClosedEarly(f"{job.label}: connection closed early at byte {reached}")
                if not piece.complete and reached < piece.asked and reached - began < PROGRESS:
                    raise RetryableError(
                        f"{job.label}: the server sent only {piece.answered} bytes of the range"
                    )
                high = max(high, reached)
                tries.failures = 0
            except ExpiredURLError:
                # its signed target expired while the file waited
                probed = bool(job.located) and url == job.located
                if not probed and (
                    not job.renewable or tries.failures >= self.config.retry.retries
                ):
                    raise
                # a re-resolve spends a try: a CDN refusing every signed URL gives up
                tries.failures += not probed
                with state.relocate_lock:  # once for all streams of this file
                    if state.url == url and probed:
                        if state.relocated_probe:
                            raise
                        state.relocated_probe = True
                        state.url = self.locate_retrying(state)
                    elif state.url == url:
                        log.info("%s: signed URL refused (403), resolving it again", job.label)
                        job.retries.add("signed URL refused (HTTP 403), resolved it again")
                        # the Hub signs anew
                        state.url = self.locate_retrying(state) if state.multi else job.url
            except httpx2.ReadTimeout as exc:
                self.check_stop(state)
                stalls += 1
                if stalls > self.config.max_stalls:
                    raise NetworkError(f"{job.label}: stalled {stalls} times, giving up") from exc
                log.info(
                    "%s: stream stalled, resuming at byte %d", job.label, piece.start + piece.done
                )
                job.retries.add(f"stalled at byte {piece.start + piece.done}")
                silence = self.config.stall_timeout or self.client.timeout.read
                again = (
                    f"no bytes for {seconds(silence or 0)}, reconnecting"
                    f" ({stalls}/{self.config.max_stalls})"
                )
                self.announce(state, "stall", stalls, again)
            except (RetryableError, httpx2.TransportError, httpx2.StreamClosed) as exc:
                self.check_stop(state)
                err = (
                    exc
                    if isinstance(exc, RetryableError)
                    else transport_error(exc, what=job.label, url=url)
                )
                # a refused certificate: trying again changes nothing
                if not isinstance(err, RetryableError):
                    raise err from exc
                reached = piece.start + piece.done
                # this try moved the piece on: the budget is for tries that did not
                if reached >= high + PROGRESS:
                    tries.failures = 0
                high = max(high, reached)
                # A connection that went away mid-answer (httpx2's own error, or an answer cut
                # short) is "lost".
                tries.failed(err, lost=exc is not err or isinstance(exc, _ClosedEarly))

    def _stream_piece(self, state: DownloadState, piece: Piece, url: str) -> int | None:
        """One request for (part of) ``piece``; returns where its answer ends (None: the end of the
        file). Bytes on disk before its frontier are another answer's (an earlier run's, a broken
        stream's, the carried probe's, a short range's, the last window's): it starts a little
        before them when no hash checks the file and compares (engine rule 15: every join of two
        answers proves they are one version; ``state.overlap``)."""
        job, multi = state.job, state.multi
        if state.whole_only and (multi or piece.done > 0):
            # a content-coding server: only one decoded whole-file stream, never spliced
            raise RangesIgnoredError
        if piece.done > 0 and not multi and state.validator is None and not job.identity.has_hash:
            # nothing tells this version from the next: a resume could splice two
            self.drop(state, piece, why="the server names no version to resume against")
        offset = piece.start + piece.done
        opening = (
            job.opening.take()
            if job.opening is not None and offset == 0 and url == job.located
            else None
        )
        # bytes on disk the answer must repeat
        back = state.overlap(piece) if opening is None else 0
        headers: dict[str, str] = {}
        ranged = multi or offset > 0 or opening is not None
        # a window of the piece: what lies past it may be stolen, never what was asked for
        with state.lock:
            # a stream reading on past its own piece took this one whole meanwhile
            if piece.complete:
                return piece.end
            # the probe asked for the first bytes: its answer is this piece's first window
            if opening is not None:
                asked_end: int | None = opening.end
            else:
                asked_end = (
                    window(piece, offset, state.ttfb)
                    if multi and piece.end is not None
                    else piece.end
                )
            piece.asked = asked_end or 0
            validator = state.validator
        if ranged:
            headers["Range"] = f"bytes={offset - back}-{'' if asked_end is None else asked_end - 1}"
            if validator:
                headers["If-Range"] = validator  # RFC 9110 §13.1.5: a changed file comes back whole
        asked = time.monotonic()
        answer = opening or follow(
            self.client,
            url,
            credentials=job.credentials,
            headers=headers,
            what=job.label,
            saved_as=job.path,
        )
        with answer as resp:
            if opening is None:
                state.saw_first_byte(time.monotonic() - asked)
            # the answer began: from here on, silence is a stall
            if self.config.stall_timeout is not None:
                set_read_timeout(resp, self.config.stall_timeout)
            with self._open_lock:
                self._open[resp] = state
            try:
                if resp.status_code == 416 and piece.end is not None:
                    check_size(state, content_range_total(resp.headers.get("Content-Range")))
                    raise NetworkError(
                        f"{job.label}: server says bytes {offset}- are out of range (HTTP 416); the"
                        " remote size changed"
                    )
                if resp.status_code not in (200, 206):
                    raise error_for_status(resp, what=job.label, credentials=job.credentials)
                encoded = is_encoded(resp, what=job.label)
                if encoded:
                    state.whole_only = True
                span = promised(resp, what=job.label)  # its body is held to it as it is read
                answered_end = asked_end
                # a 206, or a 200 naming a part of the file (rclone serve s3): read as that range
                if span.ranged:
                    if not ranged:
                        raise NetworkError(
                            f"{job.label}: the server sent {span.shown} when the whole file was"
                            " asked"
                        )
                    # a slice of a compressed stream is not a slice of the file: start over, whole
                    if encoded:
                        log.info(
                            "%s: server sent a content-coded range, restarting as one decoded"
                            " stream",
                            job.label,
                        )
                        raise RangesIgnoredError
                    answered_end = check_range(state, span, offset - back, asked_end)
                    check_version(state, resp, total=span.total)
                    # redirected (Hub → CDN): later requests go there
                    if url == job.url and str(resp.url) != url:
                        with state.lock:
                            state.url = str(resp.url) if state.url == url else state.url
                else:
                    back = 0  # the whole file: nothing to compare, the body starts at byte 0
                    # another version (SourceChanged) or ranges ignored: both restart the file
                    if multi:
                        check_version(state, resp, total=span.total)
                        raise RangesIgnoredError
                    # a coded body's says nothing; another size is another version
                    check_size(state, span.total)
                    before = state.validator
                    # another version: taken from this answer
                    check_version(state, resp, total=span.total, whole=True)
                    # the server ignored our Range, or (If-Range) sent a new version: from byte 0
                    if offset > 0:
                        log.info("%s: server sent the whole file, restarting from zero", job.label)
                        changed = before is not None and state.validator != before
                        if changed:
                            self.progress.note(
                                f"{job.label}: the file changed on the server, downloading the new"
                                " version"
                            )
                        else:
                            self.ignored_range(state)
                        self.drop(
                            state,
                            piece,
                            why="the file changed on the server" if changed else IGNORED_RANGE,
                        )
                # A stream reading on past its own piece (the probe's answer) may have taken this
                # piece's first bytes while this answer was on its way: they are repeated (compared,
                # engine rule 15), or, the whole piece taken, the answer is dropped.
                moved = state.begin(piece) - offset
                back += moved if span.ranged else 0
                if piece.complete:
                    return answered_end
                self.copy_body(state, piece, resp, span, encoded=encoded, back=back)
            finally:
                with self._open_lock:
                    del self._open[resp]
        return answered_end

    def ignored_range(self, state: DownloadState) -> None:
        """Say once that the bytes on disk are thrown away: a resume the display announced is not
        one after all.
        """
        size = human_size(state.size) if state.size is not None else "the file"
        self.announce(
            state, "whole", 1, f"server ignored the range; fetching {size} from the start"
        )

    def drop(self, state: DownloadState, piece: Piece, *, why: str) -> None:
        # with the frontier: the hashing thread sees both or none; no record claims the dropped
        # bytes
        with state.lock:
            state.discarded = state.discarded or (why if piece.done else None)
            dropped, piece.done = piece.done, 0
            state.restarted, state.answers, state.flushed = True, 0, None
            state.hasher.reset()
        self.progress.advance(state.job.label, -dropped)

    def take_back(self, state: DownloadState, piece: Piece, frontier: int) -> None:
        """Move ``piece``'s frontier back to ``frontier``: what an answer wrote past it is no
        longer claimed.
        """
        with state.lock:
            dropped = max(0, piece.start + piece.done - frontier)
            piece.done -= dropped
            state.flushed = None  # which of the bytes it claimed were the file's, nothing tells
            state.fetched -= dropped
            if state.hasher.position > frontier:
                state.hasher.reset()
        self.progress.advance(state.job.label, -dropped)

    def copy_body(
        self,
        state: DownloadState,
        piece: Piece,
        resp: httpx2.Response,
        span: Span,
        *,
        encoded: bool,
        back: int = 0,
    ) -> None:
        """Write the body at the piece's frontier till it ends or the piece is done: written,
        hashed, counted, saved; its first ``back`` bytes are compared with those on disk before the
        frontier, never written."""
        job, fd, began = state.job, state.fd, time.monotonic()
        offset = start = piece.start + piece.done  # this stream alone moves its piece's frontier

        # True: read no further (another stream has the rest)
        def take(chunk: bytes | memoryview) -> bool:
            nonlocal offset
            # read per chunk: a steal may have given this piece's tail to another stream
            limit = piece.end
            # asked on past it
            carrying = limit is not None and offset + len(chunk) > limit and piece.asked > limit
            # Reading on into the next pieces, it claims and writes their bytes under the lock: an
            # answer for one of them that begins meanwhile (``state.begin``) finds every byte it no
            # longer owns on disk.
            with state.lock if carrying else contextlib.nullcontext():
                if carrying:
                    limit = state.carry(piece, offset + len(chunk))
                if limit is not None and offset + len(chunk) > limit:
                    if not span.ranged:  # a whole body longer than the file we expect
                        raise size_differs(state, offset + len(chunk))
                    # never write past our piece, whatever the server sends
                    chunk = chunk[: max(0, limit - offset)]
                written = write_at(fd, chunk, offset)
                state.hasher.offer(offset, chunk)  # before `done` moves: the frontier's ours
                with state.lock:
                    # its end may have moved in
                    counted = written if piece.end is None else min(written, piece.left)
                    piece.done += counted
                    state.fetched += counted
                    complete = piece.complete
                    # a block for the hasher, not every chunk
                    if complete or (piece.done % HASH_BLOCK) < counted:
                        state.lock.notify_all()
                    save = state.save_due(self.config.checkpoint_interval)
            offset += written
            self.progress.advance(job.label, counted)
            # after the write: a Ctrl-C keeps (and records) every byte that had arrived
            self.check_stop(state)
            if self.limiter is not None:
                self.limiter.consume(written, self.cancel)
            if complete and piece.end != piece.asked and state.free_after(piece) is None:
                # its answer runs on, but the bytes after are another stream's (its answer has
                # begun)
                return True
            # the keeper writes it: a stream never waits on a rename or a flush
            if save and state.background:
                state.save_wanted.set()
            # a lone stream (a small file) saves its own, cheap (no flush where there is a boot id)
            elif save:
                state.save()
            return False

        chunks = read_body(resp, span, encoded=encoded, what=job.label)
        try:
            # compared before the loop: the chunks after the overlap go straight to ``take``
            if back:
                rest = repeated(state, chunks, start - back, back)
                chunks = itertools.chain((rest,), chunks) if len(rest) else chunks
            for chunk in chunks:
                if take(chunk):
                    break
        except BodyOverrunError:
            # which of its bytes were not the file's, nothing tells
            self.take_back(state, piece, start)
            raise
        finally:
            piece.answered = offset - start + back  # what the next answer's overlap is sized by
            if offset > start:  # one more answer the file is made of (broken off or not)
                with state.lock:
                    state.answers += 1
        elapsed = time.monotonic() - began
        if offset - start >= MiB and elapsed > 0:  # what sizes this stream's next window
            piece.rate = (offset - start) / elapsed

    def fetch(self, job: TransferJob) -> TransferResult:
        """Download (or resume) one file into place, verified; a bad hash is tried again from
        zero only when suspect.
        """
        thrown = 0  # bytes of a first try whose hash did not match: fetched, so counted
        if job.retry_on_mismatch:
            try:
                return self._fetch_once(job)
            except HashMismatch as exc:  # suspect: the transfer may be to blame
                log.warning("%s: %s mismatch, retrying once from zero", job.label, exc.kind)
                job.retries.add(f"{exc.kind} mismatch, fetched again from zero")
                self.progress.note(f"{job.label}: {exc.kind} mismatch, downloading again from zero")
                thrown = exc.fetched
        try:
            # the last try
            result = self._fetch_once(dataclasses.replace(job, retry_on_mismatch=False))
        except MdlError as exc:
            exc.fetched += thrown
            raise
        return dataclasses.replace(result, fetched=result.fetched + thrown)

    def _fetch_once(self, job: TransferJob) -> TransferResult:
        loaded = load_state(job)
        # its first request learns the size
        if loaded is None and job.identity.size is None and job.opening is None:
            found = self.config.retry.run(
                lambda: probe(
                    self.client,
                    job.url,
                    credentials=job.credentials,
                    what=job.label,
                    carry=True,
                    saved_as=job.path,
                ),
                what=job.label,
                wait=self.cancel.wait,
                on_retry=job.retries.add,
            )
            # else no ranges here (or a coded body): one stream, as before
            if found.size is not None and found.ranged:
                identity = dataclasses.replace(
                    job.identity, size=found.size, etag=job.identity.etag or found.validator
                )
                job = dataclasses.replace(
                    job,
                    identity=identity,
                    size_pinned=False,
                    located=found.url,
                    opening=found.opening,
                )
        # a probe's answer this download did not take is closed after
        with job.opening or contextlib.nullcontext():
            return self._fetch_known(job, loaded)

    def _fetch_known(self, job: TransferJob, loaded: Loaded | None) -> TransferResult:
        pieces, validator = (
            (loaded.pieces, loaded.validator)
            if loaded
            else (self.config.plan(job.identity.size), None)
        )
        try:
            fd = open_file(job_root(job), job.part_path, os.O_RDWR | os.O_CREAT)
        except OSError as exc:
            raise LocalFSError(
                f"{job.label}: cannot write {job.part_path}: {exc.strerror}"
            ) from exc
        state = DownloadState(job, fd, pieces, validator)
        state.flushed = loaded.flushed if loaded else None
        if state.overlaps and not state.provable():
            log.info(
                "%s: no bytes on disk can be compared with the server's, starting over", job.label
            )
            state.discarded = (
                "no kept byte could be compared with the server's" if state.on_disk() else None
            )
            state.forget()
        resumed_from = state.on_disk()
        try:
            if loaded is None and state.size is not None:
                os.ftruncate(fd, state.size)
            # a one-stream file saves its record at the first checkpoint, if it lasts
            if len(state.pieces) > 1:
                state.save()
            self.progress.start(
                job.label,
                label=job.label,
                total=state.size,
                completed=resumed_from,
                model=job.model,
                path=job.path,
            )
            self._run_until_done(state)
            if state.size is None:  # unknown size: the stream ended, its length is the size
                state.pieces[0].end = state.pieces[0].done
                os.ftruncate(fd, state.pieces[0].done)
            state.hasher.catch_up(state.contiguous())
            size = os.fstat(fd).st_size
            state.verify(size)
            # the bytes (and the size that reads them back); the rename is made durable apart
            os.fdatasync(fd)
        except OSError as exc:
            if exc.errno == errno.ENOSPC:
                discard_partial(job)  # the space comes back when ``finally`` closes the file
                raise NoSpaceError(
                    f"{job.label}: no space left on device while writing {job.part_path}"
                ) from exc
            raise LocalFSError(f"{job.label}: {exc.strerror or exc} ({job.part_path})") from exc
        except HashMismatch as exc:
            # thrown away: not progress
            self.progress.advance(job.label, resumed_from - state.on_disk())
            discard_partial(job)
            # ranges no version tied together
            spliced = len(state.pieces) > 1 and state.validator is None
            # Only a transfer that may be to blame (kept bytes, ranges no validator tied) is fetched
            # again from zero.
            if not job.retry_on_mismatch or not (
                (resumed_from > 0 and not state.restarted) or spliced
            ):
                error = IntegrityError(
                    f"{job.label}: {exc.kind} mismatch: expected {exc.expected}, got {exc.actual}",
                    hint="the source changed or is corrupt; the partial file was removed",
                )
                # fetched, then refused: the run's byte counts include them
                error.fetched = state.fetched
                raise error from None
            exc.fetched = state.fetched
            raise
        except (MdlError, KeyboardInterrupt, httpx2.HTTPError) as exc:
            if isinstance(exc, MdlError):
                exc.fetched += state.fetched
            with contextlib.suppress(OSError):
                if state.on_disk() > 0:
                    state.save(durable=True)  # keep what we have for the next run
                else:
                    discard_partial(job)  # nothing worth resuming: leave no debris
            raise
        finally:
            os.close(fd)
        # the kept bytes were thrown away on the way: every byte was fetched now
        if state.restarted:
            resumed_from = 0
        try:
            finish_part(job, self.dirs, record=loaded is not None or state.saved_once)
        except OSError as exc:
            raise LocalFSError(
                f"{job.label}: cannot move it into place at {job.final_path}: {exc.strerror or exc}"
            ) from exc
        return TransferResult(
            size=size,
            sha256=state.hasher.sha256.hexdigest(),
            git_oid=state.hasher.sha1.hexdigest() if state.hasher.sha1 is not None else None,
            etag=state.validator,
            resumed_from=resumed_from,
            fetched=size - resumed_from,
            verified=not state.overlaps or (resumed_from == 0 and state.answers <= 1),
            discarded=state.discarded,
        )

    def _run_until_done(self, state: DownloadState) -> None:
        """Run the streams; start over when ranges are ignored or, once, when the file changed:
        never two versions.
        """
        job, fd = state.job, state.fd
        for _ in range(MAX_RESTARTS):
            try:
                self._run_streams(state)
                return
            except RangesIgnoredError:
                log.info("%s: server ignores ranges, restarting as one stream", job.label)
                # kept bytes fetched again (a coded body: not ranges)
                if state.on_disk() > 0 and not state.whole_only:
                    self.ignored_range(state)
                if state.on_disk() > 0:
                    state.discarded = state.discarded or (
                        COMPRESSED if state.whole_only else IGNORED_RANGE
                    )
                job.retries.add("server ignores ranges, restarted as one stream")
                layout = [Piece(0, state.size)]
            except SourceChanged as changed:
                state.count_change()
                log.info("%s: the file changed on the server, starting over", job.label)
                job.retries.add("the file changed on the server, started over")
                self.progress.note(
                    f"{job.label}: the file changed on the server, downloading the new version"
                )
                if state.on_disk() > 0:
                    state.discarded = state.discarded or "the file changed on the server"
                layout = self.config.plan(
                    state.size if changed.new_size is None else changed.new_size
                )
            self.progress.advance(job.label, -state.on_disk())
            state.reset(layout)
            os.ftruncate(fd, 0)  # never splice two versions: drop every byte of the old one
            if state.size is not None:
                os.ftruncate(fd, state.size)
            state.save()
        raise NetworkError(
            f"{job.label}: the server kept changing the file or ignoring ranges; giving up"
        )

    def _run_streams(self, state: DownloadState) -> None:
        job, connections = state.job, self.config.streams(state.size)
        state.multi, state.url = (
            len(state.pieces) > 1,
            job.located if job.located and not state.restarted else job.url,
        )
        if state.multi and not all(p.complete for p in state.pieces):
            state.multi = self._aim_ranges(state, connections)
        todo = [p for p in state.pieces if not p.complete]
        if len(todo) <= 1 and (state.size is None or state.size < self.config.split_threshold):
            # a resumed prefix first: then the stream hashes from memory
            state.hasher.catch_up(state.contiguous())
            for piece in todo:  # small file: one stream, hashed as it arrives
                self.run_piece(state, piece)
            return

        def on_failure() -> None:
            state.stop.set()
            self.close(state)  # only this file's streams: other files go on

        workers = max(1, min(connections, len(todo)))
        with keeping(state, checkpoint=self.config.checkpoint_interval, on_failure=on_failure):
            run_pieces(
                todo,
                lambda piece: self.run_piece(state, piece),
                connections=connections,
                name=f"get:{job.label}",
                stopped=lambda: self.cancel.is_set() or state.stop.is_set(),
                on_failure=on_failure,
                steal=(lambda: state.steal(workers)) if state.multi else None,
            )
        self.check_stop(state)  # Ctrl-C: the streams ended early

    def _aim_ranges(self, state: DownloadState, connections: int) -> bool:
        """Where a split file's ranges go, and whether in parallel (not if nothing tells two
        versions' ranges apart).
        """
        job = state.job
        # A probe of this run found where ranges are answered (state.url is there), or a hash will
        # prove the result whatever the answers' versions: every stream asks at once, each answer
        # checked as locate's would be (the first one's final URL serves the later requests). Else
        # one round trip first fixes the version.
        if (job.located and not state.restarted) or (job.verify and job.identity.has_hash):
            # after a restart the next answer says
            if state.validator is None and not state.restarted:
                state.adopt(job.identity.etag)  # If-Range on every range
        else:
            state.url = self.locate_retrying(state)
        if state.validator is None and not job.identity.has_hash and state.on_disk() == 0:
            job.retries.warn(
                f"{job.label}: the server names no version of the file (no strong ETag, no usable"
                " Last-Modified) and no sha256 checks it: fetched as one stream, and an"
                " interruption starts it over"
            )
            with state.lock:
                state.pieces = [Piece(0, state.size)]
            return False
        with state.lock:  # a resume down to a few big pieces still uses every connection
            spread(state.pieces, connections=connections, least=MIN_PIECE)
        return True


def write_at(fd: int, data: bytes | memoryview, offset: int) -> int:
    """Write all of ``data`` at ``offset``: a short write is continued, so the next call raises what
    stopped it (a full disk). Kept short, the rest of the chunk would be lost and the next one
    written where it should have been."""
    view, done = memoryview(data), 0
    while done < len(view):
        written = os.pwrite(fd, view[done:], offset + done)
        if written == 0:
            raise OSError(errno.EIO, f"wrote nothing at byte {offset + done}")
        done += written
    return done


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
