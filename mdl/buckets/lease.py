"""A lease in the store itself: one machine of a fleet fills a mirror object while the others wait
on it. Taken with a conditional create, renewed with a conditional replace on its own version,
taken over when the store's clock says it was not renewed within its term (a leader killed with
``kill -9`` costs one term, never a stuck deploy). Nothing here trusts a machine's own clock."""

from __future__ import annotations

import json
import logging
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from mdl.buckets.protocol import Seen, Writer
from mdl.errors import InterruptedByUserError, MdlError

log = logging.getLogger("mdl.lease")

LEASE_SUFFIX = ".mdl-lease"  # the lease of ``<object>`` is the object ``<object>.mdl-lease``
TERM = 30.0  # seconds a lease lives unless renewed (by the store's clock)
LOST_MARGIN = 0.1  # a holder counts its lease lost this part of a term before it may lapse
RELEASE_WAIT = 5.0  # seconds a release waits for a renewal in flight, then leaves it to lapse
# A term read from a lease's body is believed only in this range: a garbage or hostile body must
# not hold an object for a day, nor make a live holder's lease look lapsed at once.
TERMS = (1.0, 3600.0)
TAKE_TRIES = 5  # a lease that vanishes between our create and our read: create again, this often


def lease_uri(object_uri: str) -> str:
    """The lease object of a mirror object."""
    return object_uri + LEASE_SUFFIX


def is_lease(uri: str) -> bool:
    return uri.endswith(LEASE_SUFFIX)


class LeaseLost(Exception):
    """Another machine holds the lease now (ours lapsed and was taken over, or was removed)."""


@dataclass
class Lease:
    """A lease we hold: its object and the version we wrote."""

    writer: Writer
    uri: str
    etag: str
    holder: str
    term: float = TERM

    # renewals run on Renewing's threads: a release waits for one in flight (bounded), so it
    # deletes the version that renewal wrote, never a version it replaced
    _lock: threading.Lock = field(
        default_factory=threading.Lock, init=False, repr=False, compare=False
    )

    def renew(self) -> None:
        """Extend it (If-Match on our version); LeaseLost when it is no longer ours."""
        with self._lock:
            seen = self.writer.replace(self.uri, lease_body(self.holder, self.term), etag=self.etag)
            if seen is None:
                raise LeaseLost(f"the lease {self.uri} was taken over or removed")
            self.etag = seen.etag

    def release(self) -> None:
        """Remove it if it is still ours (another holder's is never removed)."""
        # a renewal stuck in the network must not hold up a run that is ending (Ctrl-C): the
        # lease it leaves lapses in a term
        if not self._lock.acquire(timeout=RELEASE_WAIT):
            log.warning(
                "lease %s left to lapse (in %.0f s): a renewal of it is still in flight",
                self.uri,
                self.term,
            )
            return
        try:
            # A store that cannot condition a DELETE on the version removes whatever is there:
            # looking first narrows that to a window of one request.
            seen = self.writer.head(self.uri)
            if seen is None or seen.etag != self.etag:
                log.info("lease %s is no longer ours: left as it is", self.uri)
            elif not self.writer.delete(self.uri, etag=self.etag):
                log.info("lease %s changed as it was released: left as it is", self.uri)
        except MdlError as exc:
            # not worth failing a pull that has its bytes: a lease left behind lapses in a term
            log.warning(
                "could not release lease %s (it lapses in %.0f s): %s", self.uri, self.term, exc
            )
        finally:
            self._lock.release()


def lease_body(holder: str, term: float) -> bytes:
    """A lease's bytes. Never the same twice: S3's ETag is the MD5 of the body, and two writes
    with one ETag would let a holder's If-Match succeed over another's lease (two pods may share
    a host name)."""
    return json.dumps({"holder": holder, "term": term, "n": secrets.token_hex(8)}).encode()


def _read_body(data: bytes) -> dict[str, object]:
    """A lease's body as written by ``lease_body``; {} for anything else (a lease all the same)."""
    try:
        parsed = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        return {}
    return parsed if isinstance(parsed, dict) else {}


def term_of(data: bytes, *, default: float) -> float:
    """The term a lease's holder wrote in it (it may run with another than ours), else ours."""
    term = _read_body(data).get("term")
    # NaN and infinities fall outside the range too
    if (
        isinstance(term, int | float)
        and not isinstance(term, bool)
        and TERMS[0] <= term <= TERMS[1]
    ):
        return float(term)
    return default


def holder_of(data: bytes) -> str:
    """Who wrote a lease, for the log (shown escaped: the body is anyone's)."""
    holder = _read_body(data).get("holder")
    return repr(holder[:100])[:200] if isinstance(holder, str) else "an unknown holder"


def take(writer: Writer, uri: str, *, holder: str, term: float = TERM) -> Lease | None:
    """The lease ``uri`` for us: created, or taken over when the store's clock says the one there
    lapsed; None while another machine holds a live one."""
    for _ in range(TAKE_TRIES):
        seen = writer.create(uri, lease_body(holder, term))
        if seen is not None:
            return Lease(writer, uri, seen.etag, holder, term)
        found = writer.read(uri)
        if found is None:
            continue  # released between our create and our read: it is free again
        data, there = found
        if not is_stale(there, term=term_of(data, default=term)):
            return None
        # If-Match on the lapsed version: of two machines taking it over, one wins
        took = writer.replace(uri, lease_body(holder, term), etag=there.etag)
        if took is None:
            return None
        log.info(
            "took over lease %s from %s (not renewed for %.0f s by the store's clock)",
            uri,
            holder_of(data),
            there.now - there.modified,
        )
        return Lease(writer, uri, took.etag, holder, term)
    return None  # it comes and goes faster than we can look: wait on it as on a held one


def is_stale(seen: Seen, *, term: float = TERM) -> bool:
    """Whether a lease the store describes lapsed: its age by the store's own clock."""
    return seen.now - seen.modified > term


class Renewing:
    """A context that renews ``lease`` every ``every`` seconds (a third of its term unless told)
    while the work inside runs; ``lost`` is set (and the work may check it) when a renewal finds
    it taken, or when no renewal got through for nearly a term: a renewal stuck in the network
    must not leave us believing we hold a lease another machine may take over."""

    def __init__(
        self,
        lease: Lease,
        *,
        every: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.lease = lease
        self.every = lease.term / 3 if every is None else every  # two may fail before it lapses
        self.lost = threading.Event()
        # this machine's own clock, only to time its own renewals (never to judge a lease)
        self.clock = clock
        # we count the lease lost this long before a term after our last good renewal was sent:
        # the store stamps it later than we sent it, and this covers clocks that run at
        # different rates and the work's next look at ``lost``
        self.margin = lease.term * LOST_MARGIN
        # the take was sent a moment before this (start renewing at once: the margin covers it)
        self._deadline = clock() + lease.term - self.margin
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="mdl-lease-renew", daemon=True)
        self._call: threading.Thread | None = None  # the renewal in flight, if any

    def __enter__(self) -> Renewing:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        # the watcher never waits on a renewal, so this is quick; a renewal still in flight
        # (daemon) is not waited on: the caller's release waits for it, bounded
        self._thread.join()

    def _watch(self) -> None:
        """Start a renewal every ``every`` seconds (none while one is in flight) and set ``lost``
        at the deadline, whether or not a renewal is in flight."""
        while not self._stop.wait(max(0.0, min(self.every, self._deadline - self.clock()))):
            if self.lost.is_set():
                return
            if self.clock() >= self._deadline:
                log.warning(
                    "lease %s lapsed: no renewal got through for %.0f s",
                    self.lease.uri,
                    self.lease.term - self.margin,
                )
                self.lost.set()
                return
            if self._call is None or not self._call.is_alive():
                self._call = threading.Thread(
                    target=self._renew, name="mdl-lease-renewal", daemon=True
                )
                self._call.start()

    def _renew(self) -> None:
        sent = self.clock()  # the store stamps the renewal later than this
        try:
            self.lease.renew()
        except LeaseLost as exc:
            log.warning("%s", exc)
            self.lost.set()
            self._stop.set()
        except MdlError as exc:
            log.info("renewing lease %s failed, tried again: %s", self.lease.uri, exc)
        else:
            self._deadline = sent + self.lease.term - self.margin


Waited = Literal["ready", "free"]


def wait_for(
    writer: Writer,
    object_uri: str,
    *,
    cancel: threading.Event,
    term: float = TERM,
    poll: Callable[[int], float] | None = None,
) -> Waited:
    """Wait while another machine holds the object's lease: "ready" when the object is there,
    "free" when the lease is gone or lapsed without it (then take it). ``cancel``: the run's."""
    schedule = poll or default_poll
    uri = lease_uri(object_uri)
    holder, attempt = None, 0
    while True:
        if cancel.is_set():
            raise InterruptedByUserError(f"interrupted while waiting on {object_uri}")
        if writer.head(object_uri) is not None:
            return "ready"
        found = writer.read(uri)
        if found is None:
            # the holder uploads, then releases: look again, or we would fetch what is there
            return "ready" if writer.head(object_uri) is not None else "free"
        data, seen = found
        if is_stale(seen, term=term_of(data, default=term)):
            log.info("lease %s lapsed without %s", uri, object_uri)
            return "free"
        if holder_of(data) != holder:  # said once per holder, not once per look
            holder = holder_of(data)
            log.info("waiting on %s: %s holds its lease", object_uri, holder)
        cancel.wait(schedule(attempt))
        attempt += 1


def default_poll(attempt: int) -> float:
    """Seconds between looks at a held lease: quick at first (small files fill fast), then every
    2 s (a fleet of waiters must not flood the store)."""
    return min(0.25 * 2.0 ** min(attempt, 3), 2.0)


def honours_conditions(writer: Writer, scratch_uri: str) -> bool:
    """The once-per-run probe: two conflicting conditional creates of a scratch object, then a
    replace on a wrong version and one on the right version; False unless the store refused the
    second create and the wrong replace and took the right one (a store that ignores If-Match
    gives two holders at a takeover as surely as one that ignores If-None-Match). The scratch
    object is removed. ``scratch_uri`` is this run's own (a random name): probes must not meet."""
    first = writer.create(scratch_uri, b"a")
    if first is None:
        # left by a probe killed before its delete: remove it (that version only) and probe again
        left = writer.head(scratch_uri)
        if left is not None:
            writer.delete(scratch_uri, etag=left.etag)
        first = writer.create(scratch_uri, b"a")
        if first is None:
            return False  # refused twice, so no version of ours to test If-Match on: no leases
    latest, honoured = first, False  # the latest version we wrote: the one to remove
    try:
        second = writer.create(scratch_uri, b"b")
        latest = second or latest
        if second is None:
            wrong = writer.replace(scratch_uri, b"c", etag=_WRONG_ETAG)
            latest = wrong or latest
            if wrong is None:
                right = writer.replace(scratch_uri, b"d", etag=first.etag)
                latest = right or latest
                honoured = right is not None
    finally:
        writer.delete(scratch_uri, etag=latest.etag)
    return honoured


# no object has this version: S3's ETags are MD5s, and "a" is not one that hashes to zeros
_WRONG_ETAG = '"' + "0" * 32 + '"'
