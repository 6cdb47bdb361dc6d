"""One planned file, under its lock: skip, re-check, download, resume or repair (mirrors first), then record it."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import replace
from functools import partial

from mdl.download.filelog import log_outcome
from mdl.download.mirrored import fetch_from_mirrors
from mdl.download.outcomes import done_outcome
from mdl.download.plan import Action
from mdl.download.planner import PlannedFile, Planner, identity_of, label_of, offline_error
from mdl.download.record_queue import Commit, RecordQueue
from mdl.download.session import PullSession
from mdl.errors import InterruptedByUserError, LocalFSError, MdlError
from mdl.progress import Progress
from mdl.report import FileOutcome, failed
from mdl.sources import RemoteFile
from mdl.store import FileRecord, hash_file, now_iso
from mdl.transfer import RetryLog, TransferJob, TransferResult

log = logging.getLogger("mdl.pull")


class FileFetcher:
    """Carries out planned files, one per job thread, and queues the record of each verified file."""

    def __init__(self, session: PullSession, planner: Planner, records: RecordQueue) -> None:
        self.session = session
        self.settings = session.settings
        self.planner = planner
        self.records = records
        self._held = threading.local()  # the file lock the current job thread holds
        self._held.lock = None

    def skip(self, plan: PlannedFile) -> FileOutcome:
        """An up-to-date file: only (re)link it, the blob may be there for another commit's snapshot. Its log
        line is the caller's to write: each file gets one per run (``pull_one``, or the batch's skip)."""
        self.session.layout.link(plan.placement)
        size = plan.remote.size if plan.remote.size is not None else self._recorded_size(plan)
        return done_outcome(plan, Action.SKIP, size=size, sha256=self._recorded_sha(plan))

    def pull_one(self, plan: PlannedFile, commit: Commit) -> FileOutcome:
        """Lock the file, decide again, act; an expected failure becomes the file's outcome. Logs its line."""
        started = time.monotonic()
        retries = RetryLog()
        try:
            outcome = self._pull_one(plan, commit, retries)
        except MdlError as exc:  # interrupted: the file's line still tells where it stood
            outcome = failed(plan.remote.model, plan.remote.path, exc, dest=plan.placement.shown)
            log_outcome(
                replace(outcome, source=plan.remote.source, seconds=time.monotonic() - started, retries=retries.causes)
            )
            raise
        outcome = replace(outcome, seconds=time.monotonic() - started, retries=retries.causes)
        if outcome.source is None:
            outcome = replace(outcome, source=plan.remote.source)
        log_outcome(outcome)
        return outcome

    def _pull_one(self, plan: PlannedFile, commit: Commit, retries: RetryLog) -> FileOutcome:
        remote = plan.remote
        label = label_of(remote)
        session = self.session
        waited = threading.Event()

        def on_wait(holder: str) -> None:  # the file's bar says so until the lock is ours (then start() replaces it)
            waited.set()
            by = f" (held by {holder})" if holder else ""
            log.info("%s: another mdl run is fetching it; waiting for its lock%s", label, by)
            session.progress.waiting(label, f"another mdl run is fetching it{by}")

        try:
            self._held.lock = plan.placement.store.acquire_file_lock(
                remote.model,
                remote.path,
                timeout=self.settings.lock_timeout,
                on_wait=on_wait,
                cancel=session.cancel,
                shared_lock=plan.placement.lock,
            )
            try:
                # Another run may have finished (or changed) it while we waited: decide again under the lock.
                fresh = self.planner.plan(remote) if not self.settings.force else plan
                if fresh.decision.action is Action.SKIP:  # it was counted in the batch: close its line or bar
                    outcome = self.skip(fresh)
                    done = "fetched by another mdl run" if waited.is_set() else "up to date"
                    session.progress.finish(label, ok=True, message=done)
                    return outcome
                return self._act(fresh, commit, retries)
            finally:
                if self._held.lock is not None:  # not handed over to a queued record: release it now
                    self._held.lock.release()
                    self._held.lock = None
        except InterruptedByUserError:
            raise
        except MdlError as exc:
            # The reporter names the file itself: the message without its own "label: " in front.
            session.progress.finish(label, ok=False, message=exc.message.removeprefix(f"{label}: "))
            return failed(remote.model, remote.path, exc, dest=plan.placement.shown)

    def _act(self, plan: PlannedFile, commit: Commit, retries: RetryLog) -> FileOutcome:
        remote = plan.remote
        action = plan.decision.action
        if action is Action.SKIP:
            return self.skip(plan)
        if action is Action.CHECK:
            size, sha256, git_oid = _hash_present(plan, self.session.progress)
            if _matches(remote, size=size, sha256=sha256, git_oid=git_oid, record_sha=self._recorded_sha(plan)):
                self.session.layout.link(plan.placement)
                self._record(plan, size=size, sha256=sha256, git_oid=git_oid, etag=remote.etag, commit=commit)
                self.session.progress.finish(label_of(remote), ok=True, message="up to date")
                return done_outcome(plan, Action.CHECK, size=size, sha256=sha256)
            log.info("%s/%s: local file does not match, fetching it again", remote.model, remote.path)
            self.session.progress.advance(label_of(remote), -size)  # hashed, not kept: the download counts anew
            action = Action.REPAIR
        if self.settings.offline:  # no network at all, mirrors included
            raise offline_error(remote)
        result = self._transfer(plan, retries)
        self.session.layout.link(plan.placement)
        self._record(
            plan,
            size=result.size,
            sha256=result.sha256,
            git_oid=result.git_oid,
            etag=result.etag or remote.etag,  # the validator of the bytes we actually got
            commit=commit,
        )
        if action is Action.DOWNLOAD and result.resumed_from > 0:
            action = Action.RESUME
        elif action is Action.RESUME and result.resumed_from == 0:
            action = Action.DOWNLOAD  # the partial could not be used: it was fetched from zero
        return done_outcome(
            plan, action, size=result.size, sha256=result.sha256, fetched=result.fetched, mirror=result.mirror
        )

    def _transfer(self, plan: PlannedFile, retries: RetryLog) -> TransferResult:
        remote = plan.remote
        label = label_of(remote)
        session = self.session
        part, state = plan.placement.store.part_paths(remote.model, remote.path)
        job = TransferJob(
            label=label,
            url=remote.url,
            identity=identity_of(remote),
            credentials=session.credentials(remote),
            final_path=plan.final_path,
            part_path=part,
            root=plan.placement.store.dest,
            state_path=state,
            source=remote.source,
            # A Hugging Face cache blob is named by its hash: it may only ever hold those bytes, --no-verify or not.
            verify=self.settings.verify or plan.placement.link is not None,
            size_pinned=remote.size_pinned,
            renewable=remote.hub,  # a direct URL that is refused stays refused: asking again cannot help
            retries=retries,
            model=remote.model or None,  # get's one-off files belong to no model
            path=remote.path,
            located=remote.located,
            opening=remote.opening,
        )
        mirrored = fetch_from_mirrors(session, job, remote, retries=retries)
        if mirrored is not None:
            return mirrored
        result = session.engine.fetch(job)
        session.progress.finish(label, ok=True)
        return result

    def _record(
        self, plan: PlannedFile, *, size: int, sha256: str, git_oid: str | None, etag: str | None, commit: Commit
    ) -> None:
        remote = plan.remote
        try:
            stat = plan.final_path.stat()
        except OSError as exc:
            raise LocalFSError(f"{label_of(remote)}: {plan.final_path} vanished: {exc.strerror or exc}") from exc
        record = FileRecord(
            path=remote.path,
            size=size,
            sha256=sha256,
            mtime_ns=stat.st_mtime_ns,
            source=remote.source,
            git_oid=git_oid,
            etag=etag,
            commit=remote.commit,
            fetched_at=now_iso(),
        )
        # The file lock goes with the record: released once the record is on disk, so a waiting run finds it done.
        lock, self._held.lock = getattr(self._held, "lock", None), None
        self.records.add(remote.model, commit, record, lock)

    def _recorded_size(self, plan: PlannedFile) -> int | None:
        record = self.session.store.read_record(plan.remote.model)
        entry = record.files.get(plan.remote.path) if record is not None else None
        return entry.size if entry is not None else None

    def _recorded_sha(self, plan: PlannedFile) -> str | None:
        record = self.session.store.read_record(plan.remote.model)
        entry = record.files.get(plan.remote.path) if record is not None else None
        return entry.sha256 if entry is not None else plan.remote.sha256


def _matches(remote: RemoteFile, *, size: int, sha256: str, git_oid: str | None, record_sha: str | None) -> bool:
    if remote.size is not None and size != remote.size:
        return False
    if remote.sha256:
        return sha256 == remote.sha256
    if remote.git_oid:
        return git_oid == remote.git_oid
    return record_sha is not None and sha256 == record_sha


def _hash_present(plan: PlannedFile, progress: Progress) -> tuple[int, str, str | None]:
    """Hash the file already there (with a bar: it may be gigabytes); (size, sha256, git blob id)."""
    remote = plan.remote
    label = label_of(remote)
    progress.start(label, label=f"checking {label}", total=remote.size, model=remote.model or None, path=remote.path)
    try:
        return hash_file(plan.final_path, git=bool(remote.git_oid), on_bytes=partial(progress.advance, label))
    except OSError as exc:
        raise LocalFSError(f"{label}: cannot read {plan.final_path}: {exc.strerror or exc}") from exc
