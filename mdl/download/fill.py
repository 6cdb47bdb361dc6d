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
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Protocol

from mdl.buckets import (
    TERM,
    ConditionalWritesIgnored,
    Lease,
    Renewing,
    Writer,
    honours_conditions,
    lease_uri,
    store_for,
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
PROBE_PREFIX = ".mdl-probe-"  # the probe's scratch object, beside the mirror's models

# what fetch.py hands over: the mirrors as today but those skipped; one mirror's (template, URL);
# the origin
Mirrors = Callable[[frozenset[str]], TransferResult | None]
OneMirror = Callable[[str, str], TransferResult | None]
Origin = Callable[[TransferJob], TransferResult]


@dataclass(frozen=True)
class Target:
    """The run's mirror to fill: its template (as shown), and its store, writable."""

    template: str
    shown: str
    writer: Writer


@dataclass(frozen=True)
class Place:
    """One file's object in the mirror to fill."""

    target: Target
    uri: str


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
            retries.warn("no s3:// or file:// mirror to fill (http(s) mirrors are read-only)")
            return None
        store = store_for(template)
        assert store is not None
        shown = safe_text(template)
        endpoint = dict(self.settings.mirror_endpoints).get(template)
        scratch = fixed_part(template) + PROBE_PREFIX + self.token
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
            retries.warn(f"mirror {shown} ignores conditional writes; not filling it")
            return None
        log.info("filling mirror %s (lease holder %s, term %gs)", shown, self.holder, self.term)
        return Target(template, shown, writer)


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
    if place is None or not _missing(place, job):
        return mirrors(frozenset()) or origin(job)
    # the mirror to fill is not asked for what it does not have (no warning for that file)
    return mirrors(frozenset({place.target.template})) or _filled(
        session, job, remote, place, mirror=mirror, origin=origin
    )


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


def _missing(place: Place, job: TransferJob) -> bool:
    """Whether the mirror to fill lacks the object (a failed look: as though it had it, read as
    today, where its failure is said)."""
    try:
        return place.target.writer.head(place.uri) is None
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
) -> TransferResult:
    """Take the object's lease and fill it; or, while another machine holds it, wait on the mirror
    and read it from there once it is filled (again, when its holder gave up)."""
    fills, writer, label = session.fills, place.target.writer, job.label
    shown = safe_text(place.uri)
    waited = 0.0
    while True:
        _stop_if_cancelled(session)
        try:
            lease = take(writer, lease_uri(place.uri), holder=fills.holder, term=fills.term)
        except MdlError as exc:
            job.retries.warn(
                f"{label}: cannot take a lease on mirror {shown} ({exc.message}); fetching it"
                " from the origin"
            )
            return _waited(origin(job), waited)
        if lease is not None:
            return _waited(_holding(session, job, remote, place, lease, mirror, origin), waited)
        log.info("%s: another machine is filling mirror %s; waiting on it", label, shown)
        session.progress.waiting(label, "another machine is filling the mirror")
        started = time.monotonic()
        try:
            state = wait_for(writer, place.uri, cancel=session.cancel, term=fills.term)
        except InterruptedByUserError as exc:  # Ctrl-C: said as every interrupted file is
            raise InterruptedByUserError(INTERRUPTED) from exc
        except MdlError as exc:
            job.retries.warn(
                f"{label}: cannot wait on mirror {shown} ({exc.message}); fetching it from the"
                " origin"
            )
            return _waited(origin(job), waited + time.monotonic() - started)
        waited += time.monotonic() - started
        _stop_if_cancelled(session)
        if state == "ready":
            log.info("waited %.1f s on mirror %s for %s", waited, shown, label)
            # a mismatch there is warned of, and the origin's turn, as for any mirror
            return _waited(mirror(place.target.template, place.uri) or origin(job), waited)
        log.info("%s: the lease on mirror %s was given up; taking it", label, shown)


def _holding(
    session: PullSession,
    job: TransferJob,
    remote: RemoteFile,
    place: Place,
    lease: Lease,
    mirror: OneMirror,
    origin: Origin,
) -> TransferResult:
    """With the object's lease: from the origin (verified), then uploaded; the lease renewed all
    along and released whatever happens."""
    writer, shown = place.target.writer, safe_text(place.uri)
    try:
        with Renewing(lease, every=lease.term / 3) as renewing:
            # filled since we looked (its holder done before our take): read from it
            if _present(writer, place.uri):
                found = mirror(place.target.template, place.uri)
                if found is not None:
                    return found
            log.info("%s: filling mirror %s (lease taken)", job.label, shown)
            result = origin(job)
            if renewing.lost.is_set():
                # another machine took it over and may be fetching too; the upload never replaces
                log.info("%s: the lease on mirror %s lapsed while fetching", job.label, shown)
            _upload(place, job, remote, result)
        return result
    finally:
        _release(lease, job.label)


def _present(writer: Writer, uri: str) -> bool:
    try:
        return writer.head(uri) is not None
    except MdlError:
        return False


def _upload(place: Place, job: TransferJob, remote: RemoteFile, result: TransferResult) -> None:
    """The verified file, uploaded to the mirror unless one is there (never replaced); a failure
    is a warning: the file here is verified all the same."""
    label, shown = job.label, safe_text(place.uri)
    if not _as_known(remote, result):
        job.retries.warn(f"{label}: not filling mirror {shown}: its bytes were not verified")
        return
    try:
        done = place.target.writer.upload(
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
        return
    if done:
        log.info("%s: filled mirror %s", label, shown)
    else:
        log.info("%s: mirror %s was filled by another machine meanwhile", label, shown)


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


def _waited(result: TransferResult, waited: float) -> TransferResult:
    return replace(result, waited=result.waited + waited) if waited else result


def _stop_if_cancelled(session: PullSession) -> None:
    if session.cancel.is_set():
        raise InterruptedByUserError(INTERRUPTED)
