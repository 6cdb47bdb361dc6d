"""A lease in the store itself: one machine of a fleet fills a mirror object while the others wait
on it. Taken with a conditional create, renewed with a conditional replace on its own version,
taken over when the store's clock says it was not renewed within its term (a leader killed with
``kill -9`` costs one term, never a stuck deploy). Nothing here trusts a machine's own clock."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from mdl.buckets.protocol import Seen, Writer
from mdl.errors import MdlError

LEASE_SUFFIX = ".mdl-lease"  # the lease of ``<object>`` is the object ``<object>.mdl-lease``
TERM = 30.0  # seconds a lease lives unless renewed (by the store's clock)
RENEW_EVERY = TERM / 3  # a holder renews this often: two renewals may fail before it lapses


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

    def renew(self) -> None:
        """Extend it (If-Match on our version); LeaseLost when it is no longer ours."""
        seen = self.writer.replace(self.uri, _body(self.holder, self.term), etag=self.etag)
        if seen is None:
            raise LeaseLost(self.uri)
        self.etag = seen.etag

    def release(self) -> None:
        """Remove it if it is still ours (another holder's is never removed)."""
        self.writer.delete(self.uri, etag=self.etag)


def _body(holder: str, term: float) -> bytes:
    return json.dumps({"holder": holder, "term": term}).encode()


def _term_of(data: bytes, default: float) -> float:
    """The term its holder wrote in a lease (it judges its own renewals by it), else ours."""
    try:
        term = json.loads(data)["term"]
    except (ValueError, KeyError, TypeError):
        return default
    return float(term) if isinstance(term, int | float) and term > 0 else default


def take(writer: Writer, uri: str, *, holder: str, term: float = TERM) -> Lease | None:
    """The lease ``uri`` for us: created, or taken over when the store's clock says the one there
    lapsed; None while another machine holds a live one."""
    body = _body(holder, term)
    for _ in range(2):  # a lease released between our create and our read: once more
        seen = writer.create(uri, body)
        if seen is not None:
            return Lease(writer, uri, seen.etag, holder, term)
        found = writer.read(uri)
        if found is None:
            continue
        data, there = found
        if not is_stale(there, term=_term_of(data, term)):
            return None
        # If-Match on the lapsed version: of two takers, one wins
        taken = writer.replace(uri, body, etag=there.etag)
        return Lease(writer, uri, taken.etag, holder, term) if taken is not None else None
    return None


def is_stale(seen: Seen, *, term: float = TERM) -> bool:
    """Whether a lease the store describes lapsed: its age by the store's own clock."""
    return seen.now - seen.modified > term


class Renewing:
    """A context that renews ``lease`` every ``every`` seconds on a thread while the work inside
    runs; ``lost`` is set (and the work may check it) when a renewal finds it taken."""

    def __init__(self, lease: Lease, *, every: float = RENEW_EVERY) -> None:
        self.lease = lease
        self.every = every
        self.lost = threading.Event()

        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._renew, name="lease-renewal", daemon=True)

    def _renew(self) -> None:
        while not self._stop.wait(self.every):
            try:
                self.lease.renew()
            except LeaseLost:
                self.lost.set()
                return
            except MdlError:  # a store's hiccup: the next renewal may pass (two may fail)
                continue

    def __enter__(self) -> Renewing:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


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
    every = poll or _poll
    attempt = 0
    while True:
        if writer.head(object_uri) is not None:
            return "ready"
        found = writer.read(lease_uri(object_uri))
        if found is None:  # released: filled just now, or given up
            return "ready" if writer.head(object_uri) is not None else "free"
        data, seen = found
        if is_stale(seen, term=_term_of(data, term)):
            return "free"
        if cancel.wait(every(attempt)):
            return "free"
        attempt += 1


def _poll(attempt: int) -> float:
    """Seconds before the next look: soon at first, then every 2 s (a fleet's many waiters)."""
    return min(0.1 * 2.0 ** min(attempt, 5), 2.0)


def honours_conditions(writer: Writer, scratch_uri: str) -> bool:
    """The once-per-run probe: two conflicting conditional creates of a scratch object; False when
    both succeed (the store ignores the condition: no lease can be held there). The scratch object
    is removed."""
    if writer.create(scratch_uri, b"1") is None:  # a leftover of an earlier probe
        writer.delete(scratch_uri)
        writer.create(scratch_uri, b"1")
    try:
        return writer.create(scratch_uri, b"2") is None
    finally:
        writer.delete(scratch_uri)
