"""One file over HTTP: .part + resume record, ranges over parallel streams, verification, atomic finish."""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import logging
import os

import httpx2

from mdl.errors import IntegrityError, InterruptedByUserError, LocalFSError, MdlError, NetworkError, NoSpaceError
from mdl.store import open_file
from mdl.transfer.job import EngineConfig, HashMismatch, RangesIgnoredError, SourceChanged, TransferJob, TransferResult
from mdl.transfer.replies import kept_changing, probe
from mdl.transfer.resume import DownloadState, discard_partial, finish_part, job_root, keeping, load_state
from mdl.transfer.scheduling import MIN_PIECE, MiB, Piece, plan_pieces, run_pieces, spread
from mdl.transfer.stream import Streamer

log = logging.getLogger("mdl.transfer")

MAX_RESTARTS = 4
BYTES_PER_CONNECTION = 32 * MiB  # without --connections, a big file gets one stream per this many bytes ...
MAX_AUTO_CONNECTIONS = 16  # ... up to this many


def streams_for(config: EngineConfig, size: int | None) -> int:
    """``--connections`` when given; else one per ``BYTES_PER_CONNECTION`` (at least the default, at most 16)."""
    if not config.scale_connections or size is None:
        return config.connections
    return max(config.connections, min(MAX_AUTO_CONNECTIONS, size // BYTES_PER_CONNECTION))


def plan_for(config: EngineConfig, size: int | None) -> list[Piece]:
    return plan_pieces(size, connections=streams_for(config, size), split_threshold=config.split_threshold)


class Engine(Streamer):
    def fetch(self, job: TransferJob) -> TransferResult:
        """Download (or resume) one file into place, verified; a bad hash is tried again from zero only when suspect."""
        if job.retry_on_mismatch:
            try:
                return self._fetch_once(job)
            except HashMismatch as exc:  # suspect: the transfer may be to blame
                log.warning("%s: %s mismatch, retrying once from zero", job.label, exc.kind)
                job.retries.add(f"{exc.kind} mismatch, fetched again from zero")
                self.progress.note(f"{job.label}: {exc.kind} mismatch, downloading again from zero")
        return self._fetch_once(dataclasses.replace(job, retry_on_mismatch=False))  # the last try

    def _fetch_once(self, job: TransferJob) -> TransferResult:
        loaded = load_state(job)
        if loaded is None and job.identity.size is None and job.opening is None:
            job = _probed(self, job)
        try:
            return self._fetch_known(job, loaded)
        finally:
            if job.opening is not None:  # a probe's answer this download did not take: free its connection
                job.opening.close()

    def _fetch_known(self, job: TransferJob, loaded: tuple[list[Piece], str | None] | None) -> TransferResult:
        pieces, validator = loaded or (plan_for(self.config, job.identity.size), None)
        try:
            fd = open_file(job_root(job), job.part_path, os.O_RDWR | os.O_CREAT)
        except OSError as exc:
            raise LocalFSError(f"{job.label}: cannot write {job.part_path}: {exc.strerror}") from exc
        state = DownloadState(job, fd, pieces, validator)
        resumed_from = state.on_disk()
        try:
            if loaded is None and state.size is not None:
                os.ftruncate(fd, state.size)
            if len(state.pieces) > 1:  # a one-stream file saves its record at the first checkpoint, if it lasts
                state.save()
            self.progress.start(
                job.label, label=job.label, total=state.size, completed=resumed_from, model=job.model, path=job.path
            )
            self._run_until_done(state)
            if state.size is None:  # unknown size: the stream ended, its length is the size
                state.pieces[0].end = state.pieces[0].done
                os.ftruncate(fd, state.pieces[0].done)
            state.hasher.catch_up(state.contiguous())
            size = os.fstat(fd).st_size
            state.verify(size)
            os.fdatasync(fd)  # the bytes (and the size that reads them back); the rename is made durable apart
        except OSError as exc:
            if exc.errno == errno.ENOSPC:
                discard_partial(job)  # the space comes back when ``finally`` closes the file
                raise NoSpaceError(f"{job.label}: no space left on device while writing {job.part_path}") from exc
            raise LocalFSError(f"{job.label}: {exc.strerror or exc} ({job.part_path})") from exc
        except HashMismatch as exc:
            self.progress.advance(job.label, resumed_from - state.on_disk())  # thrown away: not progress
            discard_partial(job)
            spliced = len(state.pieces) > 1 and state.validator is None  # ranges no version tied together
            # Only a transfer that may be to blame (kept bytes, ranges no validator tied) is fetched again from zero.
            if not job.retry_on_mismatch or not ((resumed_from > 0 and not state.restarted) or spliced):
                raise IntegrityError(
                    f"{job.label}: {exc.kind} mismatch: expected {exc.expected}, got {exc.actual}",
                    hint="the source changed or is corrupt; the partial file was removed",
                ) from None
            raise
        except (MdlError, KeyboardInterrupt, httpx2.HTTPError):
            with contextlib.suppress(OSError):
                if state.on_disk() > 0:
                    state.save()  # keep what we have for the next run
                else:
                    discard_partial(job)  # nothing worth resuming: leave no debris
            raise
        finally:
            os.close(fd)
        if state.restarted:  # the kept bytes were thrown away on the way: every byte was fetched now
            resumed_from = 0
        try:
            finish_part(job, self.dirs)
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
        )

    def _run_until_done(self, state: DownloadState) -> None:
        """Run the streams; start over when ranges are ignored or, once, when the file changed: never two versions."""
        job, fd = state.job, state.fd
        for _ in range(MAX_RESTARTS):
            try:
                self._run_streams(state)
                return
            except RangesIgnoredError:
                log.info("%s: server ignores ranges, restarting as one stream", job.label)
                job.retries.add("server ignores ranges, restarted as one stream")
                layout = [Piece(0, state.size)]
            except SourceChanged as changed:
                state.changes += 1
                if state.changes > 1:
                    raise kept_changing(job, state.changes) from None
                log.info("%s: the file changed on the server, starting over", job.label)
                job.retries.add("the file changed on the server, started over")
                self.progress.note(f"{job.label}: the file changed on the server, downloading the new version")
                size = changed.new_size if changed.new_size is not None else state.size
                layout = plan_for(self.config, size)
            self.progress.advance(job.label, -state.on_disk())
            state.reset(layout)
            os.ftruncate(fd, 0)  # never splice two versions: drop every byte of the old one
            if state.size is not None:
                os.ftruncate(fd, state.size)
            state.save()
        raise NetworkError(f"{job.label}: the server kept changing the file or ignoring ranges; giving up")

    def _run_streams(self, state: DownloadState) -> None:
        job, connections = state.job, streams_for(self.config, state.size)
        state.multi, state.url = len(state.pieces) > 1, job.url
        todo = [p for p in state.pieces if not p.complete]
        if state.multi and todo:
            state.multi = _aim_ranges(self, state, connections)
            todo = [p for p in state.pieces if not p.complete]
        if len(todo) <= 1 and (state.size is None or state.size < self.config.split_threshold):
            state.hasher.catch_up(state.contiguous())  # a resumed prefix first: then the stream hashes from memory
            for piece in todo:  # small file: one stream, hashed as it arrives
                self.run_piece(state, piece)
            return

        def on_failure() -> None:
            state.stop.set()
            self.close(state.responses)  # only this file's streams: other files go on

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
        if self.cancel.is_set():
            raise InterruptedByUserError(f"{job.label}: interrupted")


def _probed(engine: Engine, job: TransferJob) -> TransferJob:
    """A file of unknown size: its first request learns the size and carries the first bytes."""
    found = engine.config.retry.run(
        lambda: probe(engine.client, job.url, credentials=job.credentials, what=job.label, carry=True),
        what=job.label,
        wait=engine.cancel.wait,
        on_retry=job.retries.add,
    )
    if found.size is None or not found.ranged:  # no ranges here (or a coded body): one stream, as before
        return job
    identity = dataclasses.replace(job.identity, size=found.size, etag=job.identity.etag or found.validator)
    return dataclasses.replace(job, identity=identity, size_pinned=False, located=found.url, opening=found.opening)


def _aim_ranges(engine: Engine, state: DownloadState, connections: int) -> bool:
    """Where a split file's ranges go (the probe's final URL, else located) and whether they may run in parallel:
    not when no validator and no hash could tell ranges of two versions apart."""
    job, fresh = state.job, state.on_disk() == 0 and not state.restarted
    if job.located and fresh:
        state.url = job.located
        if state.validator is None:
            state.adopt(job.identity.etag)  # If-Range on every range
    else:
        state.url = engine.locate_retrying(state)
    if state.validator is None and not job.identity.has_hash and state.on_disk() == 0:
        job.retries.warn(
            f"{job.label}: the server names no version of the file (no strong ETag, no usable Last-Modified) and no "
            "sha256 checks it: fetched as one stream, and an interruption starts it over"
        )
        with state.lock:
            state.pieces = [Piece(0, state.size)]
        return False
    with state.lock:  # a resume down to a few big pieces still uses every connection
        spread(state.pieces, connections=connections, least=MIN_PIECE)
    return True
