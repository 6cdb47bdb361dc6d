"""One file from a known layout (a fresh plan, or an earlier run's record) into its ``.part``: its
streams run (started over from byte 0 when the server ignores ranges or the file changes: never two
versions spliced), verified and moved into place; on a failure, what is on disk kept to resume."""

from __future__ import annotations

import contextlib
import logging
import math
import os
import time
from collections.abc import Callable, Sequence
from functools import partial
from typing import TYPE_CHECKING

import httpx2

from mdl.errors import IntegrityError, LocalFSError, MdlError, NetworkError, NoSpaceError
from mdl.store.confined import open_file
from mdl.store.filesystem import DirSyncs
from mdl.transfer._shared import IGNORED_RANGE, Shared
from mdl.transfer._state import DownloadState
from mdl.transfer._stream import PieceRequests, PieceStream, RangeGate
from mdl.transfer.body import RAW_LEAST
from mdl.transfer.context import JobContext
from mdl.transfer.job import (
    HashMismatch,
    RangesIgnoredError,
    SourceChanged,
    TransferJob,
    TransferResult,
    Version,
)
from mdl.transfer.replies import take_version
from mdl.transfer.resume import Loaded, discard_partial, finish_part, job_root, part_error
from mdl.transfer.scheduling import MIN_PIECE, Piece, StreamStopped, run_pieces, spread
from mdl.writes import write_at

if TYPE_CHECKING:
    from mdl.transfer.job import PartSource
    from mdl.transfer.ranges import RangeCheck

log = logging.getLogger("mdl.transfer")


TAIL_CUTS = 4  # the file's last ``streams`` pieces, cut this much finer (``in_order``)
# a tail cut's least: below MIN_PIECE (a request's cost is paid by the loader's wait it saves,
# and only where each connection is slow enough for a piece to take long)
TAIL_LEAST = MIN_PIECE // 16


def in_order(spans: Sequence[tuple[int, int]], streams: int) -> list[Piece]:
    """The pieces of a file a loader reads as it lands: its ranges in file order, the first (a
    loader's first read: the head) and the last ``streams`` cut among the streams, the others
    whole (a request each). Where each connection's rate is the bound, the head comes at all the
    connections' rate, and the cut tail keeps every stream busy to the end: a range asked whole
    by one stream is never stolen (its first request asks it all), so without it the others
    idled through a file's last ranges. A piece is read raw (``RAW_LEAST``), but the last
    ``streams``, cut TAIL_CUTS times finer: the streams free at different times (a whole range
    each before), so they end within a quarter of a piece of each other, not a piece (a 2 MiB
    piece at 2 MB/s: 8 of 10 streams idled 0.65 s at a 320 MiB file's end)."""
    cuts: list[tuple[int, int]] = []
    for index, (start, end) in enumerate(spans):
        cut = index == 0 or index >= len(spans) - streams
        cuts += _cut(start, end, min(streams, (end - start) // RAW_LEAST) if cut else 1)
    if streams > 1:  # (one stream has none to end with)
        cuts[-streams:] = [
            c for span in cuts[-streams:] for c in _cut(*span, TAIL_CUTS, TAIL_LEAST)
        ]
    return [Piece(start, end) for start, end in cuts]


def _cut(start: int, end: int, parts: int, least: int = 1) -> list[tuple[int, int]]:
    """``[start, end)`` in ``parts`` equal steps (the last one shorter), none under ``least``."""
    step = max(-(-(end - start) // max(1, parts)), least)
    return [(a, min(a + step, end)) for a in range(start, end, step)]


class PartFetch:
    """One try at one file: its ``.part`` opened, filled by ``Restarts``, verified, finished; or
    (head first) its first bytes fetched ``ahead`` of the rest, the fetch paused till ``run``."""

    def __init__(
        self,
        shared: Shared,
        job: TransferJob,
        beside: JobContext,
        loaded: Loaded | None,
        dirs: DirSyncs | None,
    ) -> None:
        self.shared, self.job, self.beside = shared, job, beside
        self.loaded, self.dirs = loaded, dirs
        self.paused = False  # after its head (``ahead``)
        # the ``.part`` open, its check running (``running``) from ``_begin`` on
        self.fd, self.running = -1, contextlib.ExitStack()
        self.check: RangeCheck | None = None
        self.unverified = False  # its bytes failed a pinned hash, kept by --no-verify

    def run(self, job: TransferJob | None = None) -> TransferResult:
        """The file in place, verified; else an error, the bytes on disk kept if worth a resume.
        ``job``: the file's job now, when it was paused after its head (its retries said with its
        outcome, those of the head's fetch first)."""
        state = self.state if self.paused else self._begin()
        if self.paused and job is not None:
            for cause in self.job.retries.causes:
                job.retries.add(cause)
            self.job = state.job = job
        try:
            with self.running:
                if not self.paused:
                    self._prepare(state)
                size, written = self._download(state, self.check), os.fstat(self.fd)
        except OSError as exc:
            error = part_error(self.job, exc)
            if isinstance(error, NoSpaceError):
                state.record.keep_on_full_disk()
            raise error from exc
        except HashMismatch as exc:  # every range held its hash, the file failed: a lying root
            if self.check is not None and not self.check.bad:  # (left early: told, refused)
                self._refuted(self.check, f"its {exc.kind} refused the file")
            self._refuse(state, exc, self.resumed_from)
            raise
        except (MdlError, KeyboardInterrupt, httpx2.HTTPError):
            self._keep(state)
            raise
        finally:
            state.hasher.close()
            os.close(self.fd)
        self._finish(state, written)
        return self._result(state, size)

    def ahead(self, end: int) -> bool:
        """Bytes ``[0, end)`` fetched now, the fetch then paused (its ``.part``, record and check
        kept: the check goes on serving what verified) till ``run`` fetches the rest on them;
        False: they did not all come (what did is kept, as any stopped run's; ``run`` is then a
        fresh ``PartFetch``'s)."""
        state = self._begin()
        try:
            self._prepare(state)
            Restarts(self.shared, state, until=end).run()
            state.record.save(durable=True)
        except (MdlError, OSError, httpx2.HTTPError, KeyboardInterrupt) as exc:
            self.abandon()
            if isinstance(exc, KeyboardInterrupt):
                raise
            log.info("%s: its head was not fetched first: %s", self.job.label, exc)
            return False
        state.hasher.close()  # (its slabs, while it waits: it keeps working after)
        self.paused = True
        return True

    def abandon(self) -> None:
        """A fetch begun (``ahead``), not run on: its bytes kept to resume, its check ended."""
        try:
            with self.running:
                self._keep(self.state)
        finally:
            self.state.hasher.close()
            os.close(self.fd)

    def _begin(self) -> DownloadState:
        self.fd = self._open_part()
        self.check = check = self._range_check(self.fd)
        self.state = state = self._state(self.fd)
        self.resumed_from = state.on_disk()
        if check is not None and self.beside.releases is not None:
            self.running.enter_context(check)
            self.running.enter_context(self.beside.releases.holding(check))
        return state

    def _result(self, state: DownloadState, size: int) -> TransferResult:
        check = self.check
        # the kept bytes were thrown away on the way: every byte was fetched now
        resumed_from = 0 if state.restarted else self.resumed_from
        return TransferResult(
            size=size,
            sha256=state.hasher.sha256.hexdigest(),
            git_oid=state.hasher.sha1.hexdigest() if state.hasher.sha1 is not None else None,
            etag=state.validator,
            resumed_from=resumed_from,
            fetched=self.beside.ledger.fetched,
            verified=not self.unverified
            and (not state.overlaps or (resumed_from == 0 and state.answers <= 1)),
            discarded=state.discarded,
            trust=check.trust.kind if check is not None else None,
            refetched=len(check.refetched) if check is not None else 0,
        )

    def _range_check(self, fd: int) -> RangeCheck | None:
        """The check of each range as it lands, when the job has a range trust that fits; told
        first (it tells a fill's publisher only what verified)."""
        job, beside, trust = self.job, self.beside, self.beside.trust
        if trust is None:  # (loaded only then: a plain fetch runs no check)
            return None
        from mdl.transfer.ranges import RangeCheck, Releases, fits

        if not fits(trust):
            return None
        releases = beside.releases or Releases()  # (a library caller's engine: the fetch's own)
        check = RangeCheck(trust, fd, job.part_path, releases, then=beside.landing, label=job.label)
        self.beside = beside._replace(landing=check, releases=releases)
        return check

    def _refuted(self, check: RangeCheck, why: str) -> None:
        assert self.beside.releases is not None  # (``_range_check``)
        self.beside.releases.refuted(check, why)

    def _open_part(self) -> int:
        job = self.job
        try:
            return open_file(job_root(job), job.part_path, os.O_RDWR | os.O_CREAT)
        except OSError as exc:
            raise LocalFSError(
                f"{job.label}: cannot write {job.part_path}: {exc.strerror}"
            ) from exc

    def _state(self, fd: int) -> DownloadState:
        """The shared progress of the download: the record's, unless no kept byte can be proved."""
        job, loaded = self.job, self.loaded
        if loaded is None:
            state = DownloadState(job, fd, self._plan(), None, self.beside)
        else:
            state = DownloadState(job, fd, loaded.pieces, loaded.validator, self.beside)
            state.record.flushed = loaded.flushed
        if state.overlaps and not state.provable():
            log.info(
                "%s: no bytes on disk can be compared with the server's, starting over", job.label
            )
            if state.on_disk():
                state.discarded = "no kept byte could be compared with the server's"
            state.forget()
        return state

    def _plan(self) -> list[Piece]:
        """The pieces of a fresh fetch: the engine's; for a loader reading it as it lands, its
        trusted ranges in order (``in_order``)."""
        trust = self.beside.trust
        if self.beside.swarm is not None:  # one piece per part: a part is fetched here or not
            return [Piece(start, end) for start, end in self.beside.swarm.spans]
        if self.beside.in_order and trust is not None:
            return in_order(trust.spans, self.shared.config.streams(self.job.identity.size))
        return self.shared.config.plan(self.job.identity.size)

    def _prepare(self, state: DownloadState) -> None:
        """The ``.part`` sized, the record saved, the progress begun, the resumed bytes told."""
        job, fd = self.job, state.fd
        if self.loaded is None and state.size is not None:
            os.ftruncate(fd, state.size)
        # a one-stream file saves its record at the first checkpoint, if it lasts
        if len(state.pieces) > 1:
            state.record.save()
        self.shared.progress.start(
            job.label,
            label=job.label,
            total=state.size,
            completed=state.on_disk(),
            model=job.model,
            path=job.path,
        )
        if (hear := self.beside.landing) is not None:  # the bytes resumed on: landed before
            for piece in state.pieces:
                if piece.done:
                    hear.landed(piece.start, piece.start + piece.done)

    def _download(self, state: DownloadState, check: RangeCheck | None) -> int:
        """Fill the ``.part`` and verify it; returns its size."""
        fd = state.fd
        restarts = Restarts(self.shared, state)
        restarts.run()
        if check is not None:
            self._repair(state, restarts, check)
        if state.size is None:  # unknown size: the stream ended, its length is the size
            state.pieces[0].end = state.pieces[0].done
            os.ftruncate(fd, state.pieces[0].done)
        state.hasher.catch_up(state.contiguous())
        size = os.fstat(fd).st_size
        back = state.hasher.read_back  # (what no stream offered at the hash's frontier)
        log.debug(
            "%s: %d bytes hashed read back (every attempt's), of %d", self.job.label, back, size
        )
        if (bad := state.hasher.mismatch(self.job, size)) is not None:
            if self.job.verify or bad.kind == "size":
                raise bad
            self.job.retries.warn(f"{self.job.label}: {bad.kept()} (--no-verify)")
            self.unverified = True  # (a hash was checked, it failed: never called verified)
        # the bytes (and the size that reads them back); the rename is made durable apart
        os.fdatasync(fd)
        if check is not None and self.beside.in_order and self.beside.releases is not None:
            # (verified whole, a loader's: till the pull ends, its record written by then)
            self.beside.releases.keep(check, self.job.identity.sha256)
        return size

    def _repair(self, state: DownloadState, restarts: Restarts, check: RangeCheck) -> None:
        """Each range that failed its trusted hash fetched again alone (a few rounds at most:
        past them the whole file's hash decides, as it always does); said in one warning."""
        from mdl.transfer.ranges import REFETCH_ROUNDS, refetch_limit

        job, kind = self.job, check.trust.kind
        for round_ in range(REFETCH_ROUNDS + 1):  # (the last round's ranges checked too)
            bad = check.settle(self.shared.cancel)
            self.shared.check_stop(state)
            if not bad or round_ == REFETCH_ROUNDS:
                break
            if len(bad) > refetch_limit(len(check.spans)):
                job.retries.warn(
                    f"{job.label}: {len(bad)} of {len(check.spans)} ranges failed their {kind}"
                    " hash: not fetched again by range (the whole file's hash decides)"
                )
                break
            check.refetching(bad)
            for start, end in bad:
                self.beside.ledger.add("refetched", end - start)
                state.refetch(start, end)
                self.shared.progress.advance(job.label, start - end)
            if job.fallback:  # kept unclaimed: the next source resumes on the rest
                raise IntegrityError(f"{job.label}: {len(bad)} range(s) failed their {kind} hash")
            restarts.run()
        if check.refetched:
            job.retries.warn(
                f"{job.label}: {len(check.refetched)} range(s) failed their {kind} hash"
                " and were fetched again alone"
            )
        if bad:  # (the whole file's hash then fails: this is why)
            shown = ", ".join(f"{start}-{end - 1}" for start, end in bad[:8])
            job.retries.warn(f"{job.label}: bytes {shown} failed their {kind} hash on every try")

    def _refuse(self, state: DownloadState, exc: HashMismatch, resumed_from: int) -> None:
        """The bytes are not the file: removed; an IntegrityError unless a try from zero may
        cure it."""
        job = self.job
        # thrown away: not progress
        self.beside.ledger.add("thrown", state.on_disk())
        self.shared.progress.advance(job.label, resumed_from - state.on_disk())
        discard_partial(job)
        # ranges no version tied together
        spliced = len(state.pieces) > 1 and state.validator is None
        # Only a transfer that may be to blame (kept bytes, ranges no validator tied) is fetched
        # again from zero.
        suspect = (resumed_from > 0 and not state.restarted) or spliced
        if job.retry_on_mismatch and suspect:
            return
        raise exc.error(job.label) from None

    def _keep(self, state: DownloadState) -> None:
        with contextlib.suppress(OSError):
            if state.on_disk() > 0:
                state.record.save(durable=True)  # keep what we have for the next run
            else:
                discard_partial(self.job)  # nothing worth resuming: leave no debris

    def _finish(self, state: DownloadState, written: os.stat_result) -> None:
        job, saved = self.job, self.loaded is not None or state.record.saved_once
        try:
            finish_part(job, self.dirs, record=saved, written=written)
        except OSError as exc:
            raise LocalFSError(
                f"{job.label}: cannot move it into place at {job.final_path}: {exc.strerror or exc}"
            ) from exc


MAX_RESTARTS = 4
COMPRESSED = "the server sent a compressed body, which cannot be resumed"


class Restarts:
    """One file's attempts: its streams run, and run again from zero when the bytes on disk cannot
    be continued."""

    def __init__(self, shared: Shared, state: DownloadState, *, until: float = math.inf) -> None:
        self.shared, self.state = shared, state
        self.until = until  # (head first) only the pieces that start before it, none stolen

    def run(self) -> None:
        """Run the streams; start over when ranges are ignored or, once, when the file changed:
        never two versions.
        """
        try:
            for _ in range(MAX_RESTARTS):
                try:
                    self._run_streams()
                    return
                except RangesIgnoredError:
                    layout, seen = self._ranges_ignored(), None
                except SourceChanged as changed:
                    layout, seen = self._changed(changed), changed.seen
                self._start_over(layout, seen)
            raise NetworkError(
                f"{self.state.job.label}: the server kept changing the file or ignoring ranges;"
                " giving up"
            )
        finally:  # a whole answer no stream read on from
            if (left := self.shared.take_whole(self.state)) is not None:
                left.close()

    def _ranges_ignored(self) -> list[Piece]:
        state, job = self.state, self.state.job
        log.info("%s: server ignores ranges, restarting as one stream", job.label)
        # kept bytes fetched again (a coded body: not ranges)
        if (kept := state.on_disk() > 0) and not state.whole_only:
            self.shared.ignored_range(state)
        if kept:
            why = COMPRESSED if state.whole_only else IGNORED_RANGE
            state.discarded = state.discarded or why
        elif not state.whole_only:  # said where it is seen, not only in the log
            self.shared.announce(
                state, "whole", 1, "the server ignores ranges; fetched as one stream"
            )
        job.retries.add("server ignores ranges, restarted as one stream")
        return [Piece(0, state.size)]

    def _changed(self, changed: SourceChanged) -> list[Piece]:
        state, job = self.state, self.state.job
        state.count_change()
        log.info("%s: the file changed on the server, starting over", job.label)
        job.retries.add("the file changed on the server, started over")
        self.shared.progress.note(
            f"{job.label}: the file changed on the server, downloading the new version"
        )
        if state.on_disk() > 0:
            state.discarded = state.discarded or "the file changed on the server"
        size = state.size if changed.new_size is None else changed.new_size
        return self.shared.config.plan(size)

    def _start_over(self, layout: list[Piece], seen: Version | None) -> None:
        state = self.state
        self.shared.progress.advance(state.job.label, -state.on_disk())
        state.reset(layout)
        if seen is not None:
            with state.lock:
                take_version(state, seen)
        os.ftruncate(state.fd, 0)  # never splice two versions: drop every byte of the old one
        if state.size is not None:
            os.ftruncate(state.fd, state.size)
        state.record.save()

    def _run_streams(self) -> None:
        state, job = self.state, self.state.job
        state.paced = (time.monotonic(), state.fetched)  # (a fetch paused after its head: from now)
        connections = self.shared.config.streams(state.size)
        state.multi = len(state.pieces) > 1
        self.shared.whole_carried(state)
        url = job.located if job.located and not state.restarted else job.url
        if state.multi and not all(p.complete for p in state.pieces):
            url = self._aim_ranges(connections, url)
        # this attempt's streams ask the resolve URL afresh, once for all (Target.aim)
        state.target.start(url, shared=state.multi and job.renewable)
        if (swarm := self._swarm()) is not None:
            self._run_swarm(swarm, connections)
        else:
            # nothing answered a range yet (no probe, no locate: a hash checks the result)
            probed = bool(job.located) and not state.restarted
            unproved = state.multi and not probed and job.verify and job.identity.has_hash
            self._run_pieces(connections, gate=RangeGate() if unproved else None)

    def _run_pieces(self, connections: int, *, gate: RangeGate | None = None) -> None:
        """The pieces left (before ``until``): a small file's one stream, else in parallel."""
        state = self.state
        todo = [p for p in state.pieces if not p.complete and p.start < self.until]
        small = state.size is None or state.size < self.shared.config.split_threshold
        if len(todo) <= 1 and small:
            self._run_alone(todo)
        else:
            self._run_parallel(todo, connections, gate=gate)

    def _run_alone(self, todo: list[Piece]) -> None:
        """A small file: one stream, hashed as it arrives; its record saved by a keeper (a stalled
        answer's bytes are recorded within the interval too, not at its next chunk)."""
        state = self.state
        # a resumed prefix first: then the stream hashes from memory
        state.hasher.catch_up(state.contiguous())
        interval = self.shared.config.checkpoint_interval
        # (a StreamStopped: its keeper failed, which the keeping raises as it ends)
        keeping = state.record.keeping(checkpoint=interval, on_failure=self._stop)
        with keeping, contextlib.suppress(StreamStopped):
            for piece in todo:
                PieceStream(PieceRequests(self.shared, state, piece)).run()
        self.shared.check_stop(state)  # Ctrl-C

    def _run_parallel(
        self,
        todo: list[Piece],
        connections: int,
        *,
        steal: Callable[[], Piece | None] | None = None,
        workers: int | None = None,
        gate: RangeGate | None = None,
    ) -> None:
        """``todo`` on up to ``connections`` streams, an idle one stealing a running piece's tail;
        or (a swarm) ``workers`` streams, each asking ``steal`` for its next piece."""
        state, shared = self.state, self.shared
        streams = max(1, min(connections, len(todo))) if workers is None else workers
        if steal is None and state.multi and self.until == math.inf:
            steal = partial(state.steal, streams)
        # a stream's next piece asked for a round trip before its current one ends (not a swarm's:
        # it waits on the fleet for a part)
        overlap = workers is None and state.multi
        keeping = state.record.keeping(
            checkpoint=shared.config.checkpoint_interval, on_failure=self._stop
        )
        hashing = state.hasher.following(
            state.lock, state.contiguous, name=f"hash:{state.job.label}"
        )
        with keeping, hashing:
            run_pieces(
                todo,
                lambda piece, near: PieceStream(
                    PieceRequests(shared, state, piece, near, gate)
                ).run(),
                connections=connections,
                workers=streams,
                name=f"get:{state.job.label}",
                stopped=lambda: shared.cancel.is_set() or state.stop.is_set(),
                on_failure=self._stop,
                steal=steal,
                overlap=overlap,
            )
        shared.check_stop(state)  # Ctrl-C: the streams ended early

    def _swarm(self) -> PartSource | None:
        """The fleet's swarm this fetch takes part in, while its layout is still one piece per
        part (a restart that is one stream, or a range fetched again alone, runs by itself)."""
        swarm, pieces = self.state.beside.swarm, self.state.pieces
        spans = [(piece.start, piece.end) for piece in pieces]
        fits = swarm is not None and spans == list(swarm.spans) and self.until == math.inf
        return swarm if fits else None

    def _run_swarm(self, swarm: PartSource, connections: int) -> None:
        """A fleet's swarm: each stream fetches the part the swarm says next, whole, and the parts
        the others fetched are written in between (checked by the swarm, told as landed: the
        range check and the record hear them as any), till none is left."""
        state, shared = self.state, self.shared
        pieces = {piece.start: piece for piece in state.pieces}
        have = {i for i, (start, _) in enumerate(swarm.spans) if pieces[start].complete}

        def put(index: int, data: bytes) -> None:
            start, end = swarm.spans[index]  # (a part the swarm hands no stream, checked whole)
            write_at(state.fd, data, start)
            state.hasher.offer(start, data)  # before it is claimed: the frontier's ours
            with state.lock:
                pieces[start].done = end - start
                state.lock.notify_all()  # the hashing thread: the prefix may have grown
            shared.progress.advance(state.job.label, end - start)
            if (hear := state.beside.landing) is not None:  # (its range check: not read back)
                hear.landed(start, end, proved=True)

        def stopped() -> bool:
            return shared.cancel.is_set() or state.stop.is_set()

        def next_piece() -> Piece | None:
            while (index := swarm.next(have, put, stopped)) is not None:
                if not (piece := pieces[swarm.spans[index][0]]).complete:
                    return piece
            return None

        self._run_parallel([], connections, steal=next_piece, workers=swarm.streams(connections))

    def _stop(self) -> None:
        self.state.stop.set()
        self.shared.close(self.state)  # only this file's streams: other files go on

    def _aim_ranges(self, connections: int, url: str) -> str:
        """Where a split file's ranges go (``url``, unless located anew), and whether in parallel
        (``state.multi``: not if nothing tells two versions' ranges apart).
        """
        state, job = self.state, self.state.job
        # A probe of this run found where ranges are answered (``url`` is there), or a hash will
        # prove the result whatever the answers' versions: every stream asks at once, each answer
        # checked as locate's would be (the first one's final URL serves the later requests). Else
        # one round trip first fixes the version.
        if (job.located and not state.restarted) or (job.verify and job.identity.has_hash):
            # after a restart: the version that caused it (``_start_over``), else the next answer's
            if state.validator is None and not state.restarted:
                state.adopt(job.identity.etag)  # If-Range on every range
        else:
            url = self.shared.locate(state)
        if state.validator is None and not job.identity.has_hash and state.on_disk() == 0:
            job.retries.warn(
                f"{job.label}: the server names no version of the file (no strong ETag, no usable"
                " Last-Modified) and no sha256 checks it: fetched as one stream, and an"
                " interruption starts it over"
            )
            with state.lock:
                state.pieces, state.multi = [Piece(0, state.size)], False
            return url
        if state.beside.swarm is None:  # (a swarm's: one piece per part, never split)
            with state.lock:  # a resume down to a few big pieces still uses every connection
                spread(state.pieces, connections=connections, least=MIN_PIECE)
        return url
