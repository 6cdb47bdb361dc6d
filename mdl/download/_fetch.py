"""Stage three of a pull: each planned file fetched under its file lock by the workers
(mdl.download._workers), mirrors first, every byte verified; their records written in batches."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mdl.background import Background
from mdl.download._outcomes import done_outcome, resume_reason
from mdl.download._plan import Action, PlannedFile, identity_of, offline_error, planned
from mdl.download._workers import Crew
from mdl.download.session import FileSources, PullSession, label_of
from mdl.errors import (
    INTERRUPTED,
    InterruptedByUserError,
    LocalFSError,
    MdlError,
    NotFoundError,
    error_for_exit_code,
    worst_exit_code,
)
from mdl.paths import is_http_url
from mdl.report import WARNING_CAUSE, FileOutcome, failed, log_outcome
from mdl.sources.resolve import RemoteFile
from mdl.store.confined import open_file, rename, reused
from mdl.store.filelocks import HeldLocks
from mdl.store.filesystem import hash_descriptor, hash_file
from mdl.store.recordqueue import RECORD_FLUSH_INTERVAL, SERVED_FLUSH_INTERVAL, RecordQueue
from mdl.store.records import FileRecord, adopted_when_found, now_iso
from mdl.store.store import Store
from mdl.transfer.context import Ledger
from mdl.transfer.job import RetryLog, TransferJob, TransferResult
from mdl.units import human_size
from mdl.wait import Wait

if TYPE_CHECKING:
    from mdl.transfer.engine import Paused

log = logging.getLogger("mdl.pull")


def fetch(session: PullSession, plans: Sequence[PlannedFile]) -> list[FileOutcome]:
    """Carry out every plan; Ctrl-C stops the streams and keeps their partial data. One outcome
    per plan. The folders on the way are opened once for all the files (``confined.reused``).
    """
    with reused():
        return _fetch_all(session, plans)


def _fetch_all(session: PullSession, plans: Sequence[PlannedFile]) -> list[FileOutcome]:
    todo = {i: p for i, p in enumerate(plans) if p.decision.action is not Action.SKIP}
    _begin(session, todo.values())
    results = {i: _skipped(session, p) for i, p in enumerate(plans) if i not in todo}
    # A signature verified before the others is placed after them, once every other file of its
    # model that moves is in place: a transfer that fails or stops halfway leaves the signature of
    # the version on disk, never a newer one beside it. (A file refused before any transfer, as not
    # signed or not as signed, is no part of its version.)
    last = {i: p for i, p in todo.items() if p.remote.staged is not None}
    first = {i: p for i, p in todo.items() if i not in last}
    served = session.demand is not None  # loaders read each file once its record is written
    records = RecordQueue(
        session.store,
        dirs=session.owned.dirs,
        interval=SERVED_FLUSH_INTERVAL if served else RECORD_FLUSH_INTERVAL,
    )
    try:
        with Heads(session, first.values()) as heads:
            work = partial(_fetch_one, session, records, heads)
            results |= Crew(session, first, work=work).run()
        if not session.cancel.is_set():
            results |= _place_last(session, records, last, results.values())
    finally:
        records.close()
    if session.cancel.is_set():
        raise InterruptedByUserError(INTERRUPTED)
    return [results[i] for i in sorted(results)]


AT_ONCE = 2  # heads fetched at once, beside the bulk (each a range: 16 MiB and up)


class Head:
    """A file's fetch paused after its head, and the file's lock, taken for it: whoever holds the
    head holds both (the head thread, then ``Heads``, then the crew's fetch of the file, which goes
    on with it); ``close`` ends the fetch, its bytes kept, and lets the lock go."""

    __slots__ = ("held", "paused")

    def __init__(self, paused: Paused, held: HeldLocks) -> None:
        self.paused = paused
        self.held = held

    def close(self) -> None:
        try:
            self.paused.close()
        finally:
            self.held.release()


class Heads:
    """Head first (``serve --pull``), a rule of the crew: a loader reads every shard's header
    (its length is in the first bytes) before any tensor, so beside the bulk, every file's first
    trusted range is fetched as a piece of its own, files in the order loaders read them (the
    crew's first files too: a loader's wait may put another before them; a head not begun when
    the crew takes its file is the crew's fetch's first range). Each is the file's own fetch
    through the engine (its retries, rate limit, progress and accounting, its range check serving
    what verified), paused after its head (``Engine.ahead``) with the file's lock held: a
    ``Head``, till the crew takes the file (``claim``) and the fetch goes on with the rest, from
    the source its head came from (its first live mirror, else its origin: ``FileSources.ahead``).
    A file without a range trust, with bytes on disk, or by Xet, is fetched as before."""

    def __init__(self, session: PullSession, plans: Iterable[PlannedFile]) -> None:
        self.session, self._plans = session, plans
        self._runner: Background | None = None  # (its pool lives in its work, ends with it)
        # each head's ``Head`` (None: not fetched), till the crew claims it
        self._heads: dict[tuple[str, str], Future[Head | None]] = {}

    def __enter__(self) -> Heads:
        """The heads fetched beside the crew, in a serving pull that is not offline (none in any
        other), of the files with nothing on disk yet and a range trust that is checked as it
        lands."""
        session, settings = self.session, self.session.settings
        if session.demand is None or settings.offline:
            return self
        from mdl.download.demand import natural_key  # (a serving pull's)
        from mdl.transfer.ranges import fits

        wanted = sorted(
            (
                plan
                for plan, remote in ((plan, plan.remote) for plan in self._plans)
                if plan.decision.action is Action.DOWNLOAD
                and remote.trust is not None
                and fits(remote.trust)
                and not (remote.xet or remote.staged)
            ),
            key=lambda plan: natural_key(plan.remote.model, plan.remote.path),
        )  # (the crew's first files too: a loader's wait may put another before them)
        self._heads = {(plan.remote.model, plan.remote.path): Future() for plan in wanted}
        self._runner = Background("mdl-heads", partial(self._run, wanted), join=None).start()
        return self

    def _run(self, wanted: list[PlannedFile], stop: threading.Event) -> None:
        """The heads, AT_ONCE at a time: each not cancelled by then (claimed by the crew before
        it began, or the crew done) fetched, its outcome set."""
        with ThreadPoolExecutor(AT_ONCE, thread_name_prefix="head") as pool:
            pool.map(self._one, wanted)

    def _one(self, plan: PlannedFile) -> None:
        head = self._heads.get((plan.remote.model, plan.remote.path))
        if head is not None and head.set_running_or_notify_cancel():
            try:
                head.set_result(self._ahead(plan))
            except Exception as exc:  # said; the file is then fetched as any file
                log.warning("the head of %s was not fetched first: %s", label_of(plan.remote), exc)
                log.debug("head first failed", exc_info=True)
                head.set_result(None)

    def __exit__(self, *exc: object) -> None:
        if self._runner is None:
            return
        for head in self._heads.values():
            head.cancel()  # (not begun: never fetched)
        self._runner.stop()  # (a head under way ends within the engine's timeouts; Ctrl-C: at once)
        for head in self._heads.values():  # no file of the crew claimed it: its bytes kept
            if head.done() and not head.cancelled() and (held := head.result()) is not None:
                held.close()

    def claim(self, remote: RemoteFile) -> Head | None:
        """The file's ``Head``, the crew's from now on, once its head is fetched (it ends within
        the engine's timeouts, and at once on Ctrl-C); None: fetched as any file (its head not
        begun yet is not fetched now)."""
        head = self._heads.pop((remote.model, remote.path), None)
        return None if head is None or head.cancel() else head.result()

    def _ahead(self, plan: PlannedFile) -> Head | None:
        """The file's head, fetched under its lock and its fetch paused; None otherwise."""
        session, remote, placement = self.session, plan.remote, plan.placement
        try:
            held = placement.store.acquire_file_lock(
                remote.model, remote.path, Wait.within(0, session.cancel),
                shared_lock=placement.lock,
            )  # fmt: skip
        except MdlError:  # another run fetches it: its own fetch, as before
            return None
        paused = None
        try:
            # under the lock, as the fetch looks: still nothing of it on disk
            now = _again(session, plan)
            if now.decision.action is Action.DOWNLOAD:
                assert remote.trust is not None  # (``__enter__``)
                sources = FileSources(session, job_of(session, plan, RetryLog()), remote)
                paused = sources.ahead(remote.trust.spans[0][1])
        except MdlError as exc:
            log.info("%s: its head was not fetched first: %s", label_of(remote), exc)
        finally:
            if paused is None:
                held.release()
        if paused is None:
            return None
        log.info("%s: head fetched first", label_of(remote))
        return Head(paused, held)


def _begin(session: PullSession, todo: Iterable[PlannedFile]) -> None:
    """Tell the progress what is to come: the bytes still to fetch, plus those a check hashes (a
    check that fails takes its bytes back); unknown while any file's size is (a server that never
    says it): never a made-up "0 B"."""
    # a staged signature was shown as it came
    moving = [p for p in todo if p.remote.staged is None]
    total: int | None = None
    if all(p.remote.size is not None for p in moving):
        total = sum(p.remote.size or 0 for p in moving) - sum(
            p.partial_bytes for p in moving if p.decision.action is Action.RESUME
        )
    session.progress.begin(total_bytes=total, files=len(moving))


def _skipped(session: PullSession, plan: PlannedFile) -> FileOutcome:
    """The outcome of a file planned as kept (logged)."""
    try:
        outcome = _skip(session, plan)
    except MdlError as exc:
        outcome = _failed(plan, exc)
    log_outcome(outcome)
    return outcome


def _failed(plan: PlannedFile, exc: MdlError) -> FileOutcome:
    """The outcome of a planned file that failed with ``exc``."""
    remote = plan.remote
    return failed(remote.model, remote.path, exc, dest=plan.placement.shown, source=remote.source)


def _place_last(
    session: PullSession,
    records: RecordQueue,
    last: Mapping[int, PlannedFile],
    done: Iterable[FileOutcome],
) -> dict[int, FileOutcome]:
    """The signatures fetched first, placed once their models' other files are: held back when
    one of those failed."""
    failing: dict[str, list[int]] = {}
    for outcome in done:
        if outcome.failing:
            failing.setdefault(outcome.model, []).append(outcome.exit_code)
    return {
        index: (
            _held_back(plan, failing[plan.remote.model])
            if plan.remote.model in failing
            else _fetch_one(session, records, None, plan)
        )
        for index, plan in last.items()
    }


def _held_back(plan: PlannedFile, codes: Sequence[int]) -> FileOutcome:
    """A verified signature not placed: other files of its model failed (with exit ``codes``: its
    own is theirs). It waits under .mdl/partial for the next pull; the one in place still signs the
    files on disk."""
    remote = plan.remote
    exc = error_for_exit_code(worst_exit_code(list(codes)))(
        f"{label_of(remote)}: verified, not placed: other files of {remote.model} failed",
        hint=(
            "the signature in place still signs the files on disk; the next pull places it with"
            " them"
        ),
    )
    outcome = _failed(plan, exc)
    log_outcome(outcome)
    return outcome


def _skip(session: PullSession, plan: PlannedFile) -> FileOutcome:
    session.layout.link(plan.placement)  # the blob may be there for another commit's snapshot
    entry = _kept_entry(session, plan)
    size = (
        plan.remote.size
        if plan.remote.size is not None
        else (entry.size if entry is not None else None)
    )
    return done_outcome(
        plan,
        Action.SKIP,
        size=size,
        sha256=entry.sha256 if entry is not None else plan.remote.sha256,
        verified=_verified_as_kept(plan.remote, entry),
    )


def _kept_entry(session: PullSession, plan: PlannedFile) -> FileRecord | None:
    """The record's entry of a file kept as it is, put anew when it says more now; offline, the
    record that vouched for it stays as it is (its other commits' entries vouch alike)."""
    remote, entry = plan.remote, plan.disk.entry
    if entry is None or session.settings.offline:
        return entry
    if session.store.keeps_revisions:
        # The Hugging Face cache: the blob kept, now the file of the remote's commit (its snapshot
        # entry, linked above); the record of another commit's (its own snapshot entry) goes to
        # ``earlier``, for prune to free (put when the record held another, as the look found it).
        xet = entry.xet or plan.placement.xet
        entry = entry._replace(source=remote.source, commit=remote.commit, xet=xet)
    elif remote.hub and not remote.model:
        entry = entry._replace(revision=remote.revision)  # a get's, asked at another revision
    if plan.disk.current != entry:
        session.store.update_record(remote.model, revision=None, commit=None, put=entry)
    return entry


def _verified_as_kept(remote: RemoteFile, entry: FileRecord | None) -> bool:
    """Whether a file kept on disk is verified: it matches a known hash, or is as verified as
    when it was recorded.
    """
    return bool(remote.sha256 or remote.git_oid) or (entry is not None and entry.verified)


def _fetch_one(
    session: PullSession, records: RecordQueue, heads: Heads | None, plan: PlannedFile
) -> FileOutcome:
    """Lock the file, decide again, act; an expected failure becomes the file's outcome. Logs its
    line.
    """
    started, retries = time.monotonic(), RetryLog()
    remote, label = plan.remote, label_of(plan.remote)
    # a signature fetched before the others: its retries are its outcome's
    for cause in remote.staged_retries:
        retries.add(cause)
    error: MdlError | None = None
    try:
        head = heads.claim(remote) if heads is not None else None
        outcome = _locked(session, records, head, plan, retries, label)
    except MdlError as exc:
        if isinstance(exc, InterruptedByUserError):  # the file's line still tells where it stood
            error = exc
        else:  # the reporter names the file itself: the message without its own "label: " in front
            session.progress.finish(label, ok=False, message=exc.message.removeprefix(f"{label}: "))
        outcome = _failed(plan, exc)
    outcome = outcome._replace(seconds=time.monotonic() - started, retries=retries.causes)
    log_outcome(outcome)
    if error is not None:
        raise error
    return outcome


def _locked(
    session: PullSession,
    records: RecordQueue,
    head: Head | None,
    plan: PlannedFile,
    retries: RetryLog,
    label: str,
) -> FileOutcome:
    """The file fetched under its lock (``head``: its fetch paused after its head, under the
    lock taken for it: both ours now); ``label``: the file's, as its line and bar name it."""
    remote, placement, waited = plan.remote, plan.placement, threading.Event()
    paused, held = (
        (head.paused, head.held)
        if head is not None
        else (
            None,
            file_lock(session, remote, placement.store, shared_lock=placement.lock, waited=waited),
        )
    )
    # to a queued record: released once the record is on disk, so a waiting run finds it done
    handed = False
    try:
        # Another run may have finished (or changed) it while we waited: look again under the lock.
        fresh = plan if session.settings.force else _again(session, plan)
        # it was counted in the batch: close its line or bar
        if fresh.decision.action is Action.SKIP:
            outcome = _skip(session, fresh)
            session.progress.finish(
                label,
                ok=True,
                message="fetched by another mdl run" if waited.is_set() else "up to date",
            )
            return outcome
        outcome, record = _act(session, fresh, retries, paused)
        records.add(remote.model, record, held)
        handed = True
        if fresh.decision.action is Action.CHECK and outcome.action == "skipped":
            session.progress.finish(label, ok=True, message="up to date")
        return outcome
    finally:
        if paused is not None:  # (not gone on with: its bytes kept)
            paused.close()
        if not handed:
            held.release()


def _again(session: PullSession, plan: PlannedFile) -> PlannedFile:
    """The file's plan as the disk is now, under its lock: the plan's one look taken again
    (``Layout.look``; another run may have finished, changed or begun it meanwhile). What it finds
    as the plan found it, the plan stands; else it is judged anew, as the plan was (``planned``)."""
    remote, placement = plan.remote, plan.placement
    disk = session.layout.look(
        placement, remote.model, remote.path, sha256=remote.sha256, git_oid=remote.git_oid
    )
    return plan if disk == plan.disk else planned(remote, placement, disk, force=False)


def file_lock(
    session: PullSession,
    remote: RemoteFile,
    store: Store,
    *,
    shared_lock: Path | None = None,
    waited: threading.Event | None = None,
) -> HeldLocks:
    """The file's lock in ``store`` (``waited``: set when another run held it, as its bar says
    until it is ours).
    """
    label = label_of(remote)

    def on_wait(holder: str) -> None:  # start() replaces the bar's word once the lock is ours
        if waited is not None:
            waited.set()
        by = f" (held by {holder})" if holder else ""
        log.info("%s: another mdl run is fetching it; waiting for its lock%s", label, by)
        session.progress.waiting(label, f"another mdl run is fetching it{by}")

    return store.acquire_file_lock(
        remote.model,
        remote.path,
        Wait.within(session.settings.lock_timeout, session.cancel),
        on_wait=on_wait,
        shared_lock=shared_lock,
    )


def _act(
    session: PullSession, plan: PlannedFile, retries: RetryLog, paused: Paused | None = None
) -> tuple[FileOutcome, FileRecord]:
    """Re-check, download, resume or repair the file (``paused``: its fetch paused after its
    head); its outcome and the record of its verified bytes.
    """
    remote, action = plan.remote, plan.decision.action
    if action is Action.CHECK:
        size, sha256, git_oid = _hash_present(session, plan)
        entry = plan.disk.entry
        if _matches(remote, entry, size=size, sha256=sha256, git_oid=git_oid) and _as_signed(
            session, plan
        ):
            session.layout.link(plan.placement)
            verified = _verified_as_kept(remote, entry)
            adopted = adopted_when_found(entry)  # there before mdl: never mdl's to prune
            record = _record(
                plan,
                size=size,
                sha256=sha256,
                git_oid=git_oid,
                etag=remote.etag,
                verified=verified,
                adopted=adopted,
                kept=entry,
            )
            return (
                done_outcome(plan, Action.CHECK, size=size, sha256=sha256, verified=verified),
                record,
            )
        log.info("%s/%s: local file does not match, fetching it again", remote.model, remote.path)
        # hashed, not kept: the download counts anew
        session.progress.advance(label_of(remote), -size)
        action = Action.REPAIR
    if session.settings.offline:  # no network at all, mirrors included
        raise offline_error(remote)
    job = job_of(session, plan, retries)
    # a signature verified before the others: shown as it came
    result = _from_staged(session, job, remote)
    if result is None:
        fresh = action is Action.DOWNLOAD
        if fresh and plan.partial_bytes:  # kept bytes of another version (``planned``)
            kept = human_size(plan.partial_bytes)
            session.progress.note(
                f"{job.label}: {plan.decision.reason}; the {kept} kept are discarded"
            )
        result = fetch_from_sources(session, job, remote, fresh=fresh, paused=paused)
        session.progress.finish(job.label, ok=True)
    session.layout.link(plan.placement)
    # etag: the validator of the bytes we actually got
    size, sha256 = result.size, result.sha256
    etag = result.etag or remote.etag
    record = _record(
        plan,
        size=size,
        sha256=sha256,
        git_oid=result.git_oid,
        etag=etag,
        verified=result.verified,
        result=result,
    )
    # a partial that could not be used was fetched from zero
    if action in (Action.DOWNLOAD, Action.RESUME):
        action = Action.RESUME if result.resumed_from > 0 else Action.DOWNLOAD
    return (
        done_outcome(
            plan,
            action,
            size=size,
            sha256=sha256,
            result=result,
            reason=resume_reason(plan, result),
        ),
        record,
    )


def job_of(session: PullSession, plan: PlannedFile, retries: RetryLog) -> TransferJob:
    """The engine's job for a planned file."""
    remote = plan.remote
    # A Hugging Face cache blob is named by its hash: it may only ever hold those bytes, --no-verify
    # or not. A signed model's files are held to their signature whatever --no-verify says: the
    # catalog asks for it.
    verify = session.settings.verify or plan.placement.link is not None or remote.signed is not None
    # into the repo blob: huggingface_hub's link to its shared entry replaced, never written through
    return transfer_job(
        session, remote, plan.placement.store, plan.placement.blob, verify=verify, retries=retries
    )


def _as_signed(session: PullSession, plan: PlannedFile) -> bool:
    """A file found in place is as its signature says: free when it signs the sha256 just computed,
    else read once more as the signature hashes it (shards, BLAKE2/3: only a file found in place
    costs this second read)."""
    signed = plan.remote.signed
    if signed is None or signed.sha256 is not None:
        return True
    try:
        signed.check_path(plan.placement.final)
    except MdlError:
        return False
    except OSError as exc:
        raise LocalFSError(
            f"{label_of(plan.remote)}: cannot read {plan.placement.final}: {exc.strerror or exc}"
        ) from exc
    return True


def _matches(
    remote: RemoteFile, entry: FileRecord | None, *, size: int, sha256: str, git_oid: str | None
) -> bool:
    if remote.size is not None and size != remote.size:
        return False
    if remote.sha256:
        return sha256 == remote.sha256
    if remote.git_oid:
        return git_oid == remote.git_oid
    return entry is not None and sha256 == entry.sha256


def _hash_present(session: PullSession, plan: PlannedFile) -> tuple[int, str, str | None]:
    """(size, sha256, git blob id) of the file already there (with a bar: it may be gigabytes)."""
    remote, progress = plan.remote, session.progress
    label = label_of(remote)
    progress.start(
        label,
        label=f"checking {label}",
        total=remote.size,
        model=remote.model or None,
        path=remote.path,
    )
    try:
        return hash_file(
            plan.placement.final,
            git=bool(remote.git_oid),
            on_bytes=partial(progress.advance, label),
        )
    except OSError as exc:
        raise LocalFSError(
            f"{label}: cannot read {plan.placement.final}: {exc.strerror or exc}"
        ) from exc


def _record(
    plan: PlannedFile,
    *,
    size: int,
    sha256: str,
    git_oid: str | None,
    etag: str | None,
    verified: bool,
    adopted: bool = False,
    result: TransferResult | None = None,
    kept: FileRecord | None = None,
) -> FileRecord:
    """The record of the file's verified bytes: how they came (``result``: this run's transfer;
    else, for a file found in place, its record ``kept`` when it names the same bytes)."""
    remote = plan.remote
    known = kept if kept is not None and kept.sha256 == sha256 else None
    xet, reused, fetched = (
        (known.xet, known.reused, known.fetched) if known is not None else (None, 0, None)
    )
    checked = known is not None and known.xet_checked
    if result is not None:
        # only a Xet fetch's, which checked the Xet hash and the sha256 over the same bytes: a
        # record's Xet hash binds it to the file's (``PullSession.xet_bound``), never the Hub's word
        xet, reused, fetched = result.xet, result.reused, result.fetched
        checked = result.xet is not None
    else:  # found in huggingface_hub's shared store: the Xet hash its entry is named by
        xet = xet or plan.placement.xet
    try:  # (the repo blob: what a transfer wrote, else huggingface_hub's link to what was found)
        mtime_ns = plan.placement.blob.stat().st_mtime_ns
    except OSError as exc:
        raise LocalFSError(
            f"{label_of(remote)}: {plan.placement.blob} vanished: {exc.strerror or exc}"
        ) from exc
    return FileRecord(
        remote.path,
        size,
        sha256,
        mtime_ns,
        source=remote.source,
        git_oid=git_oid,
        etag=etag,
        commit=remote.commit,
        fetched_at=now_iso(),
        verified=verified,
        adopted=adopted,
        signed=remote.signed.recorded if remote.signed is not None else None,
        xet=xet,
        xet_checked=checked,
        reused=reused,
        fetched=fetched,
        revision=remote.revision if remote.hub else None,
    )


def transfer_job(
    session: PullSession,
    remote: RemoteFile,
    store: Store,
    final: Path,
    *,
    retries: RetryLog | None = None,
    **more: Any,
) -> TransferJob:
    """The engine's job for the file: into ``final``, resumed from (and verified against) what it
    is known by.
    """
    part, state = store.part_paths(remote.model, remote.path)
    job = TransferJob(
        label=label_of(remote),
        url=remote.url,
        identity=identity_of(remote),
        credentials=session.credentials(remote),
        final_path=final,
        part_path=part,
        root=store.dest,
        state_path=state,
        source=remote.source,
        retries=RetryLog() if retries is None else retries,
        size_pinned=remote.size_pinned,
        # a direct URL that is refused stays refused: asking again cannot help
        renewable=remote.hub,
        model=remote.model or None,  # get's one-off files belong to no model
        path=remote.path,
        located=remote.located,
        signed=remote.signed,
        **more,
    )
    warning = session.netrc_warning(typed=remote.typed)
    if warning is not None:  # logged once by the session; said with each direct URL's outcome
        job.retries.add(WARNING_CAUSE + warning)
    return job


def fetch_from_sources(
    session: PullSession,
    job: TransferJob,
    remote: RemoteFile,
    *,
    fresh: bool = False,
    paused: Paused | None = None,
) -> TransferResult:
    """The file from its mirrors, else its own source (a Xet-backed Hub file by chunk, unless the
    protocol cannot deliver it: then over plain HTTP, as any file), into ``job.final_path``,
    verified. Its ``fetched`` (or its error's) is the file's ledger's, read once: the bytes of
    every source and try (a mirror's refused too: they crossed the network)."""
    # (a fetch paused after its head counts on in the ledger it began)
    sources = FileSources(
        session, job, remote, paused.ledger if paused else Ledger(), fresh=fresh, paused=paused
    )
    try:
        if not remote.url or (remote.signature and not is_http_url(remote.url)):
            # a signature kept in the team's bucket only (kept_in_bucket): its mirrors are all
            result = sources.mirrors() or _unplaced(job.label)
        elif session.settings.fill_mirror:
            # (the fleet's mirror filling, and the leases under it, load only for --fill-mirror)
            from mdl.download._fill import fill_or_fetch

            result = fill_or_fetch(sources)
        else:
            result = sources.mirrors() or sources.origin()
    except NotFoundError as exc:
        from mdl.download._nowhere import not_found_anywhere  # (a file found nowhere: rare)

        found = not_found_anywhere(sources, exc)
        found.fetched = sources.ledger.fetched
        if found is exc:
            raise
        raise found from None
    except MdlError as exc:
        exc.fetched = sources.ledger.fetched
        raise
    return result._replace(fetched=sources.ledger.fetched)


def _unplaced(label: str) -> TransferResult:
    """A file with no place but the team's bucket that no mirror gave: not found (an outage when
    a mirror could not be read: ``not_found_anywhere``)."""
    raise NotFoundError(
        f"{label}: kept in the team's bucket only (publish --sign), and no mirror of the catalog"
        " has it",
        hint="publish the version with --sign, then lock it (docs/releases.md)",
    )


def _from_staged(
    session: PullSession, job: TransferJob, remote: RemoteFile
) -> TransferResult | None:
    """A model's signature, fetched and verified before its other files (mdl.download._signed),
    moved into place; None when it is no longer waiting (another run placed it, or it was cleaned):
    then it is fetched as any file."""
    if remote.staged is None or remote.sha256 is None:
        return None
    root = job.root or job.final_path.parent
    # opened as mdl's own state (no link followed), hashed as it is; rename refuses a hard link's
    # other name
    try:
        opened = open_file(root, remote.staged, os.O_RDONLY | os.O_NONBLOCK)
        written = os.fstat(opened)  # (the file hashed: the one moved into place)
        size, sha256, git_oid = hash_descriptor(opened, remote.staged, git=bool(remote.git_oid))
        if sha256 != remote.sha256:  # changed while it waited: not the bytes that verified
            return None
        rename(root, remote.staged, job.final_path, written=written)
    except (OSError, MdlError):
        return None
    session.owned.dirs.add(job.final_path.parent)  # its progress was shown when it was fetched
    return TransferResult(
        size=size, sha256=sha256, git_oid=git_oid, etag=None, resumed_from=0, fetched=size
    )
