"""A lease in the store itself: one machine of a fleet fills a mirror object while the others wait
on it. Taken with a conditional create, renewed with a conditional replace on its own version,
taken over when the store's clock says it was not renewed within its term (a leader killed with
``kill -9`` costs one term, never a stuck deploy). Nothing here trusts a machine's own clock."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from mdl.buckets.protocol import Seen, Writer

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
        raise NotImplementedError

    def release(self) -> None:
        """Remove it if it is still ours (another holder's is never removed)."""
        raise NotImplementedError


def take(writer: Writer, uri: str, *, holder: str, term: float = TERM) -> Lease | None:
    """The lease ``uri`` for us: created, or taken over when the store's clock says the one there
    lapsed; None while another machine holds a live one."""
    raise NotImplementedError


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

    def __enter__(self) -> Renewing:
        raise NotImplementedError

    def __exit__(self, *exc: object) -> None:
        raise NotImplementedError


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
    raise NotImplementedError


def honours_conditions(writer: Writer, scratch_uri: str) -> bool:
    """The once-per-run probe: two conflicting conditional creates of a scratch object; False when
    both succeed (the store ignores the condition: no lease can be held there). The scratch object
    is removed."""
    raise NotImplementedError
