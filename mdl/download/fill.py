"""Filling a mirror on pull (``--fill-mirror``): a file the fleet's mirror lacks is fetched from its
origin by one machine, under a lease in the mirror itself (mdl.buckets.lease), and uploaded there;
the machines that find the lease wait on the mirror and then read the verified bytes from it. A
store that cannot hold a lease (it ignores conditional writes, or refuses ours) is read as today.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Mapping
from contextlib import suppress
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Literal, Protocol

from mdl.buckets import (
    TERM,
    ConditionalWritesIgnored,
    GaveUp,
    Lease,
    Renewing,
    Seen,
    Writer,
    honours_conditions,
    lease_prefix,
    namespace,
    store_for,
    store_schemes,
    take,
    wait_for,
)
from mdl.catalog import fixed_part
from mdl.errors import INTERRUPTED, AuthError, InterruptedByUserError, MdlError
from mdl.redact import safe_text
from mdl.sources import RemoteFile, mirror_targets
from mdl.transfer import RetryLog, TransferJob, TransferResult

if TYPE_CHECKING:
    from mdl.catalog import Settings
    from mdl.progress import Progress


class PullSession(Protocol):
    """What filling needs of the run (mdl.download.session.PullSession, which makes ``fills``: a
    Protocol, as the session imports this module)."""

    settings: Settings
    dead_mirrors: set[str]
    progress: Progress
    cancel: threading.Event

    @property
    def fills(self) -> Fills: ...


log = logging.getLogger("mdl.pull")

# Internal, for tests only (not a setting: a fleet has no reason to change it): a lease's term in
# seconds, so that a test can see a lapsed S3 lease taken over without waiting the real term.
TERM_VARIABLE = "MDL_INTERNAL_LEASE_TERM"
PROBE_PREFIX = "probe-"  # the probe's scratch object, in mdl's namespace of the mirror
# what --json and the summary say of a file a fill concerned (FileOutcome.fill)
FILLED, READ, GAVE_UP = "filled", "read", "gave up waiting"
TAKE_ROUNDS = 5  # takes and waits on one file's lease, then the origin (it changes hands so often)

# what fetch.py hands over: the mirrors as today but those skipped; one mirror's (template, URL);
# the origin
Mirrors = Callable[[frozenset[str]], TransferResult | None]
OneMirror = Callable[[str, str], TransferResult | None]
Origin = Callable[[TransferJob], TransferResult]


@dataclass(frozen=True)
class Target:
    """The run's mirror to fill: its template (as shown), its store, writable, and mdl's namespace
    in it."""

    template: str
    shown: str
    writer: Writer
    root: str


@dataclass(frozen=True)
class Place:
    """One file's object in the mirror to fill."""

    target: Target
    uri: str

    @property
    def leases(self) -> str:
        return lease_prefix(self.target.root, self.uri)


class Fills:
    """The run's mirror to fill, chosen and probed once, by the first file that needs it (the
    others wait on the probe): the first mirror in a store; None when there is none or it cannot
    hold a lease."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.token = os.urandom(6).hex()
        # who holds a lease, for the people who look at one: this machine, this process, this run
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{self.token}"
        self.term = lease_term(settings.environ)
        self._lock = threading.Lock()
        self._chosen = False
        self._target: Target | None = None

    def target(self, retries: RetryLog) -> Target | None:
        """The mirror to fill (the probe's warning, if any, said with the file that asked first)."""
        with self._lock:
            if not self._chosen:
                self._chosen = True
                self._target = self._probed(retries)
            return self._target

    def _probed(self, retries: RetryLog) -> Target | None:
        template = next((t for t in self.settings.mirrors if store_for(t) is not None), None)
        if template is None:
            retries.warn(f"no {store_schemes()} mirror to fill (http(s) mirrors are read-only)")
            return None
        store = store_for(template)
        assert store is not None
        shown = safe_text(template)
        root = namespace(template)
        if root is None:
            retries.warn(
                f"mirror {shown}: a file's name there could be mdl's own '.mdl' (the template's"
                " first folder is filled from {path} or starts with '.'); not filling it"
            )
            return None
        endpoint = dict(self.settings.mirror_endpoints).get(template)
        scratch = root + PROBE_PREFIX + self.token
        try:
            writer = store.writer(endpoint=endpoint, secrets=self.settings.secrets)
            honoured = honours_conditions(writer, scratch)
        except ConditionalWritesIgnored:
            honoured = False
        except MdlError as exc:
            cannot = "cannot be written here" if isinstance(exc, AuthError) else "cannot be filled"
            retries.warn(f"mirror {shown} {cannot} ({exc.message}); not filling it")
            return None
        if not honoured:
            what = (
                "ignores exclusive creates or does not keep a file's version (inode, mtime, size)"
                if store.scheme == "file"
                else "ignores conditional writes"
            )
            retries.warn(f"mirror {shown} {what}; not filling it")
            return None
        log.info("filling mirror %s (lease holder %s, term %gs)", shown, self.holder, self.term)
        return Target(template, shown, writer, root)


def lease_term(environ: Mapping[str, str]) -> float:
    """The lease term: TERM, or (tests) the internal variable's seconds."""
    text = environ.get(TERM_VARIABLE)
    try:
        term = float(text) if text else TERM
    except ValueError:
        return TERM
    return term if term > 0 else TERM


def fill_or_fetch(
    session: PullSession,
    job: TransferJob,
    remote: RemoteFile,
    *,
    mirrors: Mirrors,
    mirror: OneMirror,
    origin: Origin,
) -> TransferResult:
    """The file from its mirrors, else its origin; with ``--fill-mirror``, a file the mirror to fill
    lacks is fetched once for the fleet (:func:`_filled`)."""
    place = _place(session, job, remote) if session.settings.fill_mirror else None
    seen = _seen(place, job) if place is not None else False
    if place is None or seen is False:
        return mirrors(frozenset()) or origin(job)
    if seen is None:
        # the mirror to fill is not asked for what it does not have (no warning for that file)
        return mirrors(frozenset({place.target.template})) or _filled(
            session, job, remote, place, mirror=mirror, origin=origin
        )
    # there, but no mirror delivered verified bytes: the object (proved wrong, or unreadable) is
    # replaced on the version seen once the origin's are here, not read by the fleet forever
    read = mirrors(frozenset())
    if read is not None or place.target.template in session.dead_mirrors:
        return read or origin(job)
    return _filled(session, job, remote, place, mirror=mirror, origin=origin, over=seen.etag)


def _place(session: PullSession, job: TransferJob, remote: RemoteFile) -> Place | None:
    """The file's object in the mirror to fill; None: no mirror to fill, or not this file (it has
    no hash a mirror's bytes can be checked against, or the mirror is down for the run)."""
    target = session.fills.target(job.retries)
    if target is None or target.template in session.dead_mirrors:
        return None
    for template, url in mirror_targets(session.settings.mirrors, remote):
        if template == target.template:
            return Place(target, url)
    return None


def _seen(place: Place, job: TransferJob) -> Seen | Literal[False] | None:
    """The object in the mirror to fill, None when it lacks it; False: a failed look (read as
    today, where its failure is said)."""
    try:
        return place.target.writer.head(place.uri)
    except MdlError as exc:
        job.retries.add(f"mirror {safe_text(place.uri)}: cannot look ({exc.message})")
        return False


def _filled(
    session: PullSession,
    job: TransferJob,
    remote: RemoteFile,
    place: Place,
    *,
    mirror: OneMirror,
    origin: Origin,
    over: str | None = None,
) -> TransferResult:
    """Take the object's lease and fill it (``over``: the version there, proved wrong, replaced);
    or, while another machine holds it, wait on the mirror and read it from there once it is
    filled (again, when its holder gave up); past the wait's bound, fetch from the origin."""
    fills, writer, label = session.fills, place.target.writer, job.label
    shown = safe_text(place.uri)
    waited = 0.0
    for _ in range(TAKE_ROUNDS):
        _stop_if_cancelled(session)
        try:
            lease = take(
                writer, place.leases, holder=fills.holder, term=fills.term, done=_done(job)
            )
        except MdlError as exc:
            job.retries.warn(
                f"{label}: cannot take a lease on mirror {shown} ({exc.message}); fetching it"
                " from the origin"
            )
            return _said(origin(job), waited, None)
        if lease is not None:
            held = _holding(session, job, remote, place, lease, mirror, origin, over)
            return _said(held, waited, None)
        log.info("%s: another machine is filling mirror %s; waiting on it", label, shown)
        session.progress.waiting(label, "another machine is filling the mirror")
        started = time.monotonic()
        try:
            state = wait_for(
                writer,
                place.uri,
                place.leases,
                size=remote.size or 0,
                cancel=session.cancel,
                term=fills.term,
                over=over,
            )
        except InterruptedByUserError as exc:  # Ctrl-C: said as every interrupted file is
            raise InterruptedByUserError(INTERRUPTED) from exc
        except MdlError as exc:
            job.retries.warn(
                f"{label}: cannot wait on mirror {shown} ({exc.message}); fetching it from the"
                " origin"
            )
            return _said(origin(job), waited + time.monotonic() - started, GAVE_UP)
        waited += time.monotonic() - started
        _stop_if_cancelled(session)
        if isinstance(state, GaveUp):
            job.retries.warn(
                f"{label}: gave up waiting on mirror {shown} ({state.why}); fetching it from the"
                " origin"
            )
            return _said(origin(job), waited, GAVE_UP)
        if state == "ready":
            log.info("waited %.1f s on mirror %s for %s", waited, shown, label)
            # a mismatch there is warned of, and the origin's turn, as for any mirror
            read = mirror(place.target.template, place.uri)
            return _said(read, waited, READ) if read else _said(origin(job), waited, None)
        log.info("%s: the lease on mirror %s was given up; taking it", label, shown)
    job.retries.warn(
        f"{label}: the lease on mirror {shown} changed hands {TAKE_ROUNDS} times; fetching it"
        " from the origin"
    )
    return _said(origin(job), waited, GAVE_UP)


def _done(job: TransferJob) -> Callable[[], int]:
    """The bytes of the file this machine has on disk so far (its partial's blocks: the engine
    writes ranges into a sparse file), for the lease's followers."""

    def done() -> int:
        for path in (job.part_path, job.final_path):
            with suppress(OSError):
                st = path.stat()
                return min(st.st_size, st.st_blocks * 512)
        return 0

    return done


def _holding(
    session: PullSession,
    job: TransferJob,
    remote: RemoteFile,
    place: Place,
    lease: Lease,
    mirror: OneMirror,
    origin: Origin,
    over: str | None,
) -> TransferResult:
    """With the object's lease: from the origin (verified), then uploaded (``over``: replacing
    that version); the lease renewed all along and released whatever happens."""
    writer, shown = place.target.writer, safe_text(place.uri)
    try:
        with Renewing(lease, every=lease.term / 3) as renewing:
            # filled since we looked (its holder done before our take): read from it
            if _present(writer, place.uri, over):
                found = mirror(place.target.template, place.uri)
                if found is not None:
                    return replace(found, fill=READ)
            log.info("%s: filling mirror %s (lease taken)", job.label, shown)
            result = origin(job)
            if renewing.lost.is_set():
                # another machine took it over and may be fetching too; the upload never replaces
                log.info("%s: the lease on mirror %s lapsed while fetching", job.label, shown)
            return _upload(place, job, remote, result, over)
    finally:
        _release(lease, job.label)


def _present(writer: Writer, uri: str, over: str | None) -> bool:
    try:
        seen = writer.head(uri)
    except MdlError:
        return False
    return seen is not None and seen.etag != over


def _upload(
    place: Place, job: TransferJob, remote: RemoteFile, result: TransferResult, over: str | None
) -> TransferResult:
    """The verified file, uploaded to the mirror unless one is there (never replaced but the
    version ``over``, proved wrong, removed first); a failure is a warning: the file here is
    verified all the same."""
    label, shown, writer = job.label, safe_text(place.uri), place.target.writer
    if not _as_known(remote, result):
        job.retries.warn(f"{label}: not filling mirror {shown}: its bytes were not verified")
        return result
    try:
        if over is not None and writer.delete(place.uri, etag=over):
            log.info("%s: removed mirror %s: its bytes were not the file's", label, shown)
        done = writer.upload(
            place.uri,
            job.final_path,
            size=result.size,
            sha256=result.sha256,
            root=fixed_part(place.target.template),
        )
    except MdlError as exc:
        job.retries.warn(
            f"{label}: could not fill mirror {shown} ({exc.message}); the file here is verified"
        )
        return result
    if done:
        log.info("%s: filled mirror %s", label, shown)
        return replace(result, fill=FILLED)
    log.info("%s: mirror %s was filled by another machine meanwhile", label, shown)
    return result


def _as_known(remote: RemoteFile, result: TransferResult) -> bool:
    """Whether the bytes fetched are those the fleet expects (its hash, else a verified fetch):
    --no-verify's bytes never reach a mirror other machines read."""
    if remote.sha256:
        return result.sha256 == remote.sha256
    if remote.git_oid:
        return result.git_oid == remote.git_oid
    return result.verified


def _release(lease: Lease, label: str) -> None:
    try:
        lease.release()
    except MdlError as exc:  # it lapses by itself within its term
        log.info("%s: could not release the lease %s (%s)", label, safe_text(lease.uri), exc)


def _said(result: TransferResult, waited: float, fill: str | None) -> TransferResult:
    """The result with the time waited on another machine and what the fill made of the file."""
    return replace(result, waited=result.waited + waited, fill=fill or result.fill)


def _stop_if_cancelled(session: PullSession) -> None:
    if session.cancel.is_set():
        raise InterruptedByUserError(INTERRUPTED)
