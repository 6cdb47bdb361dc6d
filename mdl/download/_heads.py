"""Head first (``serve --pull``): before the bulk, the first trusted range of every file a loader
will read, all files at once: a loader reads every shard's header (its length is in the first
bytes) before any tensor, so no shard's header waits for the shards before it. Each head is
checked against its file's range trust as it came, written into the file's ``.part`` with a resume
record claiming it (the file's own fetch resumes on it, and checks it again first), and kept
served (``mdl.transfer.ranges.live``) until that fetch takes over. Best effort: a file without a
range trust, with bytes on disk, from a mirror or by Xet, or whose head does not come as asked or
does not verify, is fetched as before, whole."""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx2

from mdl.download._plan import Action, PlannedFile, look
from mdl.download.demand import natural_key
from mdl.download.session import PullSession
from mdl.errors import MdlError
from mdl.store.confined import open_file
from mdl.transfer.body import promised
from mdl.transfer.http import follow
from mdl.transfer.job import RetryLog, TransferJob
from mdl.transfer.ranges import RangeCheck, fits
from mdl.transfer.resume import job_root, seed

log = logging.getLogger("mdl.pull")

AT_ONCE = 2  # heads fetched at once (each held in memory till checked: a range, 16 MiB and up;
# with the checks' and the served ranges' budgets, the process stays within engine rule 5)


@contextlib.contextmanager
def heads_first(
    session: PullSession,
    plans: Iterable[PlannedFile],
    *,
    job_of: Callable[[PullSession, PlannedFile, RetryLog], TransferJob],
) -> Iterator[None]:
    """Every eligible file's head fetched, checked and served from the time it verified till
    the block ends; fetched beside the block (the bulk), the files a loader reads first first.
    The first file is left to its own fetch, which starts at once from its first range.
    ``job_of``: the pull's job for a file (its range trust with it)."""
    wanted = sorted(
        (plan for plan in plans if _eligible(session, plan)),
        key=lambda plan: natural_key(plan.remote.model, plan.remote.path),
    )[1:]
    kept, lock = contextlib.ExitStack(), threading.Lock()

    def keep(check: RangeCheck) -> None:
        with lock:
            kept.enter_context(check)

    def one(plan: PlannedFile) -> None:
        _head(session, job_of(session, plan, RetryLog()), plan, keep=keep)

    with kept, ThreadPoolExecutor(AT_ONCE, thread_name_prefix="head") as pool:
        for plan in wanted:
            pool.submit(one, plan)
        try:
            yield
        finally:
            pool.shutdown(cancel_futures=True)


def _eligible(session: PullSession, plan: PlannedFile) -> bool:
    remote = plan.remote
    return (
        plan.decision.action is Action.DOWNLOAD  # nothing of it on disk yet
        and remote.size is not None
        and remote.xet is None
        and remote.staged is None
        and not session.settings.mirrors
        and not session.settings.offline
    )


def _head(
    session: PullSession, job: TransferJob, plan: PlannedFile, *, keep: Callable[[RangeCheck], None]
) -> None:
    """The file's head fetched, checked, claimed and its check kept (``keep``), all under the
    file's lock: the file's own fetch, which waits for it, takes over from there. Nothing when
    anything is amiss: the file is fetched as before."""
    if job.trust is None or not fits(job.trust) or session.cancel.is_set():
        return  # (ranges too big to hold are checked whole, by the file's own fetch)
    remote, (_, end) = plan.remote, job.trust.spans[0]
    try:
        held = plan.placement.store.acquire_file_lock(
            remote.model, remote.path, timeout=0, cancel=session.cancel
        )
    except MdlError:  # another run fetches it: its own fetch, as before
        return
    try:
        # under the lock, as the fetch looks: still nothing of it on disk (no run began it since)
        now = look(remote, plan.placement, session.store, force=False)
        if now.decision.action is not Action.DOWNLOAD:
            return
        data = _fetched(session, job, end)
        if data is None or not job.trust.holds(0, memoryview(data)):
            log.info("%s: its head did not come as asked: fetched with the rest", job.label)
            return
        fd = _written(job, data)
        if fd is None:
            return
        try:  # (the check reads through a descriptor of its own)
            check = RangeCheck(job.trust, fd, job.part_path, label=job.label)
        finally:
            os.close(fd)
        check.vouch(0, memoryview(data))
        keep(check)
        session.heads[(remote.model, remote.path)] = end
        log.info("%s: head fetched first (bytes 0-%d, verified)", job.label, end - 1)
    finally:
        held.release()


def _fetched(session: PullSession, job: TransferJob, end: int) -> bytearray | None:
    """Bytes ``[0, end)`` of the job's file as its source answers them (None: any surprise)."""
    try:
        with follow(
            session.client,
            job.url,
            credentials=job.credentials,
            headers={"Range": f"bytes=0-{end - 1}"},
            what=job.label,
            saved_as=job.path,
        ) as response:
            coded = response.headers.get("Content-Encoding", "identity") != "identity"
            if response.status_code != 206 or coded:
                return None
            span = promised(response, what=job.label)
            if (span.start, span.end, span.total) != (0, end, job.identity.size):
                return None
            data, at = bytearray(end), 0
            limiter = session.engine.limiter  # --limit-rate counts heads as every fetch
            for chunk in response.iter_raw():
                if at + len(chunk) > end or session.cancel.is_set():
                    return None
                if limiter is not None:
                    limiter.consume(len(chunk), session.cancel)
                data[at : at + len(chunk)] = chunk
                at += len(chunk)
            return data if at == end else None
    except (MdlError, httpx2.HTTPError, OSError) as exc:
        log.info("%s: its head was not fetched first: %s", job.label, exc)
        return None


def _written(job: TransferJob, data: bytearray) -> int | None:
    """``data`` as the start of the job's new ``.part``, claimed by its resume record (in pieces
    of the head's size, fetched in order); its descriptor, or None when a ``.part`` is there."""
    try:
        fd = open_file(job_root(job), job.part_path, os.O_RDWR | os.O_CREAT | os.O_EXCL)
    except (OSError, MdlError):
        return None
    try:
        view, at = memoryview(data), 0
        while at < len(view):
            at += os.pwrite(fd, view[at:], at)
        seed(job, [(0, len(data))], cut=len(data))
    except OSError:
        os.close(fd)
        return None
    return fd
