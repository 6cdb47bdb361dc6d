"""One file from a known layout (a fresh plan, or an earlier run's record) into its ``.part``: run,
verified and moved into place; on a failure, what is on disk kept for a resume (or removed)."""

from __future__ import annotations

import contextlib
import errno
import logging
import os

import httpx2

from mdl.errors import IntegrityError, LocalFSError, MdlError, NoSpaceError
from mdl.store import DirSyncs, open_file
from mdl.transfer.job import HashMismatch, TransferJob, TransferResult
from mdl.transfer.restarts import Restarts
from mdl.transfer.resume import DownloadState, Loaded, discard_partial, finish_part, job_root
from mdl.transfer.shared import Shared

log = logging.getLogger("mdl.transfer")


class PartFetch:
    """One try at one file: its ``.part`` opened, filled by ``Restarts``, verified, finished."""

    def __init__(
        self, shared: Shared, job: TransferJob, loaded: Loaded | None, dirs: DirSyncs | None
    ) -> None:
        self.shared, self.job, self.loaded, self.dirs = shared, job, loaded, dirs

    def run(self) -> TransferResult:
        """The file in place, verified; else an error, the bytes on disk kept if worth a resume."""
        fd = self._open_part()
        state = self._state(fd)
        resumed_from = state.on_disk()
        try:
            size = self._download(state, resumed_from)
        except OSError as exc:
            raise self._disk_error(exc) from exc
        except HashMismatch as exc:
            self._refuse(state, exc, resumed_from)
            raise
        except (MdlError, KeyboardInterrupt, httpx2.HTTPError) as exc:
            self._keep(state, exc)
            raise
        finally:
            os.close(fd)
        self._finish(state)
        # the kept bytes were thrown away on the way: every byte was fetched now
        if state.restarted:
            resumed_from = 0
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
            state = DownloadState(job, fd, self.shared.config.plan(job.identity.size), None)
        else:
            state = DownloadState(job, fd, loaded.pieces, loaded.validator)
            state.flushed = loaded.flushed
        if state.overlaps and not state.provable():
            log.info(
                "%s: no bytes on disk can be compared with the server's, starting over", job.label
            )
            if state.on_disk():
                state.discarded = "no kept byte could be compared with the server's"
            state.forget()
        return state

    def _download(self, state: DownloadState, resumed_from: int) -> int:
        """Fill the ``.part`` and verify it; returns its size."""
        job, fd = self.job, state.fd
        if self.loaded is None and state.size is not None:
            os.ftruncate(fd, state.size)
        # a one-stream file saves its record at the first checkpoint, if it lasts
        if len(state.pieces) > 1:
            state.save()
        self.shared.progress.start(
            job.label,
            label=job.label,
            total=state.size,
            completed=resumed_from,
            model=job.model,
            path=job.path,
        )
        Restarts(self.shared, state).run()
        if state.size is None:  # unknown size: the stream ended, its length is the size
            state.pieces[0].end = state.pieces[0].done
            os.ftruncate(fd, state.pieces[0].done)
        state.hasher.catch_up(state.contiguous())
        size = os.fstat(fd).st_size
        state.verify(size)
        # the bytes (and the size that reads them back); the rename is made durable apart
        os.fdatasync(fd)
        return size

    def _disk_error(self, exc: OSError) -> MdlError:
        job = self.job
        if exc.errno == errno.ENOSPC:
            discard_partial(job)  # the space comes back when ``run`` closes the file
            return NoSpaceError(
                f"{job.label}: no space left on device while writing {job.part_path}"
            )
        return LocalFSError(f"{job.label}: {exc.strerror or exc} ({job.part_path})")

    def _refuse(self, state: DownloadState, exc: HashMismatch, resumed_from: int) -> None:
        """The bytes are not the file: removed; an IntegrityError unless a try from zero may
        cure it."""
        job = self.job
        # thrown away: not progress
        self.shared.progress.advance(job.label, resumed_from - state.on_disk())
        discard_partial(job)
        # ranges no version tied together
        spliced = len(state.pieces) > 1 and state.validator is None
        # Only a transfer that may be to blame (kept bytes, ranges no validator tied) is fetched
        # again from zero.
        suspect = (resumed_from > 0 and not state.restarted) or spliced
        exc.fetched = state.fetched
        if job.retry_on_mismatch and suspect:
            return
        error = IntegrityError(
            f"{job.label}: {exc.kind} mismatch: expected {exc.expected}, got {exc.actual}",
            hint="the source changed or is corrupt; the partial file was removed",
        )
        # fetched, then refused: the run's byte counts include them
        error.fetched = state.fetched
        raise error from None

    def _keep(self, state: DownloadState, exc: BaseException) -> None:
        if isinstance(exc, MdlError):
            exc.fetched += state.fetched
        with contextlib.suppress(OSError):
            if state.on_disk() > 0:
                state.save(durable=True)  # keep what we have for the next run
            else:
                discard_partial(self.job)  # nothing worth resuming: leave no debris

    def _finish(self, state: DownloadState) -> None:
        job = self.job
        try:
            finish_part(job, self.dirs, record=self.loaded is not None or state.saved_once)
        except OSError as exc:
            raise LocalFSError(
                f"{job.label}: cannot move it into place at {job.final_path}: {exc.strerror or exc}"
            ) from exc
