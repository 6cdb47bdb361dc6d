"""A lease in the store itself: one machine of a fleet fills a mirror object while the others wait
on it. Leases are numbered generations (``names.Generation``, 1 to ``names.GENERATIONS``), under
mdl's own namespace ``<root>`` (``names.namespace``, which no model file can name): the last of
the run of generations from 1 is the lease, found by looking each up by its name (a HEAD, a
``stat``), never by a listing another tenant can fill or spoil. It is taken with an exclusive
create of the next number (S3 ``If-None-Match: *``, a folder's ``link``), the one write every
store and share keeps atomic; taking over a lapsed generation N is the create of N+1, so of two
takers one wins, without a lock or a compare-and-swap. Past the last number, the last generation
is taken over in place (removed on the version seen, then created): every machine walks to the
same one, so a run filled by another tenant still elects one fetcher. A generation is the lease
only while none exists above it within the walk (past a gap): a taker that finds one above its
own climbs on from there, so every machine converges on the top of the run. Its holder renews
only its own generation, by its version, and counts it lost when the walk finds one above it or
its version changed.
A lapse is judged by the store's clock and mdl's own term, never a body's. Each generation carries
a token no one can guess before it exists: its holder's parts are published under it, so an object
planted at a part's name (both public facts) is no part of any holder's.

A waiting machine trusts a holder for nothing but progress it verifies: parts published under the
holder's token that passed their range's hash. Everything else a co-tenant can write (a part's
presence or size, a token, a timestamp) extends no wait: without a range trust the wait is bounded
from its start by what fetching the file itself would cost at this machine's measured rate from
the origin, else a few terms; then it fetches the rest itself (its parts kept, the whole file's
hash deciding)."""

from __future__ import annotations

import json
import logging
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Literal

from mdl.background import Background
from mdl.buckets import names
from mdl.buckets.protocol import Listed, Seen, Writer
from mdl.errors import InterruptedByUserError, MdlError, NetworkError, OutsideJSONError
from mdl.outsidejson import read_json
from mdl.wait import Wait

log = logging.getLogger("mdl.lease")

TERM = 30.0  # seconds a lease lives unless renewed (by the store's clock); always mdl's own
LOST_MARGIN = 0.1  # a holder counts its lease lost this part of a term before it may lapse
RELEASE_WAIT = 5.0  # seconds a release waits for a renewal in flight, then leaves it to lapse
TAKE_TRIES = 5  # generation numbers tried at one take (a name held by something not a lease)
BODY_LIMIT = 4096  # bytes: a bigger object is not an mdl lease (read no further)
# names one look reads under a part set's folder, and for how long: past either, it shows no
# parts (no progress); names that are not mdl's cost only their listing
LISTED_LIMIT = 20_000
LISTING_TIME = 20.0  # seconds
STALL_TERMS = 3.0  # a follower gives up after this many terms without verified progress
SLOW_RATE = float(1 << 20)  # bytes/s: the slowest fill worth waiting for (the whole wait's bound)


def numbered(
    writer: Writer, prefix: str, cancel: threading.Event | None = None
) -> dict[int, Listed] | None:
    """The objects right under ``prefix`` named as mdl names a part, by number; any other name is
    skipped and costs only its listing.
    None: more than ``LISTED_LIMIT`` names, or a listing longer than ``LISTING_TIME`` (or
    ``cancel`` set: Ctrl-C): unknown."""
    found: dict[int, Listed] = {}
    listing = Wait.within(LISTING_TIME, cancel)
    for count, item in enumerate(writer.listing(prefix, most=LISTED_LIMIT + 1)):
        if count >= LISTED_LIMIT or listing.over:
            return None
        said = None if "/" in item.uri[len(prefix) :] else names.Part.parse(item.uri)
        if said is not None:
            found[said.number] = item
    return found


class LeaseLost(Exception):
    """Another machine holds the lease now (a next generation exists, or ours is gone)."""


def lease_body(
    holder: str, token: str | None = None, *, released: bool = False, every: float | None = None
) -> bytes:
    """A lease's bytes: its holder (for the log), its generation's ``token`` (a new one unless
    told), a nonce (never the same twice: S3's ETag is the MD5 of the body) and, when its holder
    renews it more often than every third of a term, how often (``every``: a swarm's claims; a
    reader judges it dead sooner, never later: ``_claims``)."""
    body: dict[str, object] = {
        "holder": holder,
        "token": token or new_token(),
        "n": secrets.token_hex(8),
    }
    if every:
        body["every"] = every
    return json.dumps({**body, "released": True} if released else body).encode()


def new_token() -> str:
    return secrets.token_hex(16)


State = Literal["none", "live", "lapsed", "released", "foreign", "unknown"]


@dataclass(frozen=True)
class Look:
    """The lease as one look found it: its highest generation and what that says."""

    number: int  # 0: no generation
    state: State
    holder: str = "an unknown holder"  # for the log, escaped (the body is anyone's)
    token: str | None = None  # where its holder publishes its parts (None: not an mdl body)
    uri: str | None = None
    etag: str | None = None  # the version read (the last generation is taken over on it)
    # seconds since it was last written, by the store's clock as read (0: not read, or a time
    # ahead): a claim's reader counts its silence from then at the latest (``_claims``)
    age: float = 0.0
    every: float | None = None  # seconds between its renewals, as its body says (a number > 0)


def look(
    writer: Writer,
    lease: names.Generation,
    *,
    term: float = TERM,
    mine: str | None = None,
    start: int = 0,
) -> Look:
    """The last generation of the run from 1 of ``lease`` (any generation of it: each looked up by
    its name; names that are no generation, or past the last number, are never asked) and its
    state: ``lapsed`` (not renewed within our term by the store's clock, or its token is ``mine``:
    this machine's, whose run holding it ended), ``released``, ``foreign`` (not a body mdl writes:
    too big, not JSON), ``live``; ``none``: no generation (or gone before it was read, or not a
    file: the next number is free all the same). ``start``: a generation an earlier look found
    (walked on from when it is still there). A look that fails raises (its state is unknown:
    never free)."""
    number = _last(writer, lease, start)
    if number == 0:
        return Look(0, "none")
    return read_generation(writer, lease.at(number).uri, number, term=term, mine=mine)


def _last(writer: Writer, lease: names.Generation, start: int) -> int:
    """The last generation of the run from 1 (0: none), each asked by its name (a HEAD each, past
    the last ``TAKE_TRIES`` more: a taker steps over that many names that hold no lease, a
    folder or a FIFO no HEAD shows; ``names.GENERATIONS`` at most); from ``start`` when it is
    still there."""
    there = 0 < start <= names.GENERATIONS and writer.head(lease.at(start).uri)
    last = number = start if there else 0
    while number < min(last + TAKE_TRIES, names.GENERATIONS):
        number += 1
        if writer.head(lease.at(number).uri) is not None:
            last = number
    return last


def read_generation(
    writer: Writer, uri: str, number: int, *, term: float, mine: str | None = None
) -> Look:
    found = writer.read(uri, limit=BODY_LIMIT)
    if found is None:
        return Look(number, "none", uri=uri)
    data, seen = found
    body = _parse(data) if seen.size <= BODY_LIMIT and len(data) <= BODY_LIMIT else None
    if body is None:
        return Look(number, "foreign", uri=uri, etag=seen.etag)
    holder, token = body.get("holder"), body.get("token")
    said = repr(holder[:100])[:200] if isinstance(holder, str) else "an unknown holder"
    ours = token if isinstance(token, str) and names.TOKEN.fullmatch(token) else None
    if body.get("released") is True:
        state: State = "released"
    elif seen.now - seen.modified > term or (ours is not None and ours == mine):
        state = "lapsed"
    else:
        state = "live"
    age = max(0.0, seen.now - seen.modified)
    return Look(number, state, said, ours, uri, seen.etag, age, _every(body.get("every")))


def _every(said: object) -> float | None:
    """A renewal period a body says: a number of seconds above 0 and under a term (never a
    boolean), else None."""
    if isinstance(said, bool) or not isinstance(said, int | float):
        return None
    return float(said) if 0 < said < TERM else None


def renew_every(term: float, every: float | None = None) -> float:
    """Seconds between a lease's renewals: as often as its body says (``every``: a swarm's
    claims), a third of its term at most (two may fail before it lapses); the one period its
    holder renews at (``Renewing``) and its readers judge it by (``_claims.silence``)."""
    return min(every or term, term / 3)


def _parse(data: bytes) -> dict[str, object] | None:
    try:
        parsed = read_json(data, source="a claim", limit=BODY_LIMIT)
    except OutsideJSONError:
        return None
    return parsed if isinstance(parsed, dict) else None


@dataclass
class Lease:
    """A lease we hold: its generation's object, the version we wrote, its token (where our parts
    go) and the token of the generation we took over, if any (where its holder's parts are)."""

    writer: Writer
    name: names.Generation  # our generation
    etag: str
    holder: str
    token: str
    term: float = TERM
    after: str | None = None
    # seconds between its renewals, said in its body (None: a third of its term)
    every: float | None = None

    # renewals run on Renewing's threads: a release waits for one in flight (bounded), so it
    # replaces the version that renewal wrote, never a version it replaced
    _lock: threading.Lock = field(
        default_factory=threading.Lock, init=False, repr=False, compare=False
    )

    @property
    def number(self) -> int:
        return self.name.number

    @property
    def uri(self) -> str:
        return self.name.uri

    def body(self) -> bytes:
        """Its bytes as its holder writes them, at its take and at each renewal: how often it is
        renewed (``every``) said, a new nonce."""
        return lease_body(self.holder, self.token, every=self.every)

    def renew(self) -> None:
        """Extend it (only our own generation is ever written); LeaseLost when a generation exists
        above ours within the walk every machine does (another is the last: taken over) or ours
        changed (the last number: taken over in place)."""
        with self._lock:
            if _last(self.writer, self.name, self.number) != self.number:
                raise LeaseLost(f"the lease {self.uri} was taken over")
            seen = self.writer.replace(self.uri, self.body(), etag=self.etag)
            if seen is None:
                raise LeaseLost(f"the lease {self.uri} was removed or changed")
            self.etag = seen.etag

    def release(self) -> None:
        """Mark our generation released (its number is never used again: the next taker creates the
        next); another holder's is never touched."""
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
            body = lease_body(self.holder, self.token, released=True)
            if self.writer.replace(self.uri, body, etag=self.etag) is None:
                log.info("lease %s is no longer ours: left as it is", self.uri)
        except MdlError as exc:
            # not worth failing a pull that has its bytes: a lease left behind lapses in a term
            log.warning(
                "could not release lease %s (it lapses in %.0f s): %s", self.uri, self.term, exc
            )
        finally:
            self._lock.release()


def take(
    writer: Writer,
    lease: names.Generation,
    *,
    holder: str,
    term: float = TERM,
    mine: str | None = None,
    token: str | None = None,
    dead: Callable[[Look], bool] = lambda seen: False,
    every: float | None = None,
) -> Lease | None:
    """The lease for us: the next generation created, unless the last is live (None); ``dead``
    (told each live generation seen) judges a live one taken over all the same: the caller's
    own observation over time (its version unchanged for a term by the caller's clock, or held
    past what its work costs the caller), never a date a co-tenant can set. A name that
    holds anything but a live lease is stepped over (a few numbers at most); past the last number,
    the last generation is taken over in place. After each create, won or lost, the walk goes on:
    a generation with another above it (past a gap) is not the last, so the take goes on from
    that one (ours released), and every machine converges on the top of the run. ``mine``: the
    token of a generation this machine held (its partial of the file is on disk): a run of it
    that ended, taken over at once. ``token``: our generation's (a new one unless told: a swarm's
    claims all carry its run's, so a restart knows them). ``every``: our renewals' period, said in
    the body (``lease_body``)."""
    seen = look(writer, lease, term=term, mine=mine)
    draft, tries = Lease(writer, lease, "", holder, token or new_token(), term, every=every), 0
    # each turn tries a higher number than the last (or ends): GENERATIONS turns at most
    while (seen.state != "live" or dead(seen)) and tries < TAKE_TRIES:
        number, made = _create(writer, lease, seen, draft.body())
        if made is None and number == seen.number:
            return None  # another machine took the last number over first
        last = _last(writer, lease, number)
        if made is not None:
            ours = replace(draft, name=lease.at(number), etag=made.etag, after=seen.token)
            if last == number:
                if seen.uri is not None:
                    why = "held past the taker's bound" if seen.state == "live" else seen.state
                    log.info("took over lease %s (%s, %s)", seen.uri, why, seen.holder)
                return ours
            ours.release()  # not the last: ours is no lease (its number never used again)
            if last < number:
                return None  # ours gone at once: taken over in place by another machine
        elif last <= number:  # another machine's, or something not a lease, is the last
            tries, last = tries + 1, number
        seen = read_generation(writer, lease.at(last).uri, last, term=term, mine=mine)
    return None  # every number tried is held by something, or live: wait on it as on a held one


def _create(
    writer: Writer, lease: names.Generation, seen: Look, body: bytes
) -> tuple[int, Seen | None]:
    """The generation after ``seen`` created (the last taken over in place), and its number."""
    if seen.number < names.GENERATIONS:
        number = seen.number + 1
        return number, writer.create(lease.at(number).uri, body)
    return seen.number, _in_place(writer, lease, seen, body)


def _in_place(writer: Writer, lease: names.Generation, seen: Look, body: bytes) -> Seen | None:
    """The last generation, not live, taken over in place: removed on the version ``seen`` read
    (another version there, or none: left as it is), then created exclusively (of two takers,
    one wins; a holder of the version removed finds its own gone at its next renewal)."""
    uri = lease.at(names.GENERATIONS).uri
    if seen.etag is not None:
        writer.delete(uri, etag=seen.etag)
    return writer.create(uri, body)


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
        # as often as its body says (``renew_every``): two renewals may fail before it lapses,
        # or before a reader judges it dead (``_claims.silence``)
        self.every = every or renew_every(lease.term, lease.every)
        self.lost = threading.Event()
        # this machine's own clock, only to time its own renewals (never to judge a lease)
        self.clock = clock
        # we count the lease lost this long before a term after our last good renewal was sent:
        # the store stamps it later than we sent it, and this covers clocks that run at
        # different rates and the work's next look at ``lost``
        self.margin = lease.term * LOST_MARGIN
        # the take was sent a moment before this (start renewing at once: the margin covers it)
        self._deadline = clock() + lease.term - self.margin
        self._watcher = Background("mdl-lease-renew", self._watch)
        self._call: Background | None = None  # the renewal in flight, if any

    def __enter__(self) -> Renewing:
        self._watcher.start()
        return self

    def __exit__(self, *exc: object) -> None:
        # the watcher never waits on a renewal, so this is quick; a renewal still in flight is
        # not waited on: the caller's release waits for it, bounded
        self._watcher.stop()

    def _watch(self, stop: threading.Event) -> None:
        """Start a renewal every ``every`` seconds (none while one is in flight) and set ``lost``
        at the deadline, whether or not a renewal is in flight."""
        while not stop.wait(max(0.0, min(self.every, self._deadline - self.clock()))):
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
            if self._call is None or not self._call.alive:
                # told to stop with the watcher (a renewal is one call, bounded by its client)
                self._call = Background("mdl-lease-renewal", self._renew, stop=stop).start()

    def _renew(self, stop: threading.Event) -> None:
        sent = self.clock()  # the store stamps the renewal later than this
        try:
            self.lease.renew()
        except LeaseLost as exc:
            log.warning("%s", exc)
            self.lost.set()
            stop.set()
        except MdlError as exc:
            log.info("renewing lease %s failed, tried again: %s", self.lease.uri, exc)
        else:
            self._deadline = sent + self.lease.term - self.margin


@dataclass(frozen=True)
class GaveUp:
    """A wait given up on: the holder showed no progress, or the wait outlasted its bound."""

    why: str


Waited = Literal["ready", "free", "streamed"] | GaveUp


def default_poll(attempt: int) -> float:
    """Seconds between looks at a held lease: quick at first (small files fill fast), then every
    2 s (a fleet of waiters must not flood the store)."""
    return min(0.25 * 2.0 ** min(attempt, 3), 2.0)


def wait_for(
    writer: Writer,
    object_uri: str,
    lease: names.Generation,
    *,
    size: int,
    wait: Wait,
    term: float = TERM,
    over: str | None = None,
    poll: Callable[[int], float] = default_poll,
    step: Callable[[str | None], int] = lambda token: 0,
    trusted: bool = False,
    rate: Callable[[], float | None] = lambda: None,
    began: float | None = None,
    stale: Callable[[Look], bool] = lambda found: False,
) -> Waited:
    """Wait while another machine holds the object's lease (``lease``): "ready" when the object is
    there (a version other than ``over``, one proved wrong), "free" when the lease is released,
    lapsed or not mdl's (then take it), "streamed" once ``step`` has all of ``size`` while the
    lease is live (the holder makes the object of them), GaveUp past the wait's bound
    (:func:`_bound`). ``step(token)``, the follower's own work at each look, reads the parts
    published under the holder's token and says the bytes it has: with a range trust
    (``trusted``: each part's ranges checked against hashes that chain to the pin) more is
    progress, and looked again at once; without one, a part is no progress (anyone who read the
    lease can write one). ``rate``: this machine's measured rate from the origin (None: not
    measured yet); ``began``: when this file's waits began (by the wait's clock), now unless told.
    ``stale`` (told each live generation seen): the waiter's own judgement that it was not renewed
    (its version unchanged for a term by the waiter's clock, whatever the store's clock says):
    "free", then taken over as ``take``'s ``dead`` judges. A look that fails is waited on as a
    live lease. ``wait``: the run's cancel (heard at once) and this machine's clock."""
    now = wait.clock()
    started = now if began is None else began
    follow = _Following(wait, lambda: _bound(size, term, trusted, rate()), trusted, started, now)
    holder, token, number = "", None, 0  # holder: the last said ("": none)
    while True:
        if wait.cancel.is_set():
            raise InterruptedByUserError(f"interrupted while waiting on {object_uri}")
        try:
            if follow.read(got := step(token)):  # parts arrive: read on at once, within the bound
                continue
            if _there(writer, object_uri, over):
                return "ready"
            found = look(writer, lease, term=term, start=number)
        except NetworkError as exc:  # a look that failed is no progress, and never "free"
            log.info("looking at the lease of %s failed (%s): waiting on", object_uri, exc)
            got, found = follow.had, Look(number, "unknown", holder, token)  # (said as before)
        if found.state not in ("live", "unknown") or (found.state == "live" and stale(found)):
            return _ended(writer, object_uri, over, found)
        if got >= size > 0:  # all read from the holder's parts; it assembles them
            return "streamed"
        number = found.number
        if gave_up := follow.past():
            return gave_up
        token, holder, follow.attempt = _heard(object_uri, found, token, holder, follow.attempt)
        wait.pause(poll(follow.attempt))
        follow.attempt += 1


@dataclass
class _Following:
    """A follower's progress through one wait, by the wait's clock: the bytes it has read of the
    holder's parts (``had``), when they last moved (``moved``: a verified part, with a range trust
    (``trusted``); else the wait's start), the backoff's attempt, and the wait's bound."""

    wait: Wait
    bound: Callable[[], Bound]
    trusted: bool
    started: float
    moved: float
    had: int = 0
    attempt: int = 0

    def read(self, got: int) -> bool:
        """Whether ``got`` bytes read is progress to read on from at once: more than before
        (the backoff starts again; with a range trust the stall is timed anew), within the
        bound."""
        if got <= self.had:
            return False
        self.had, self.attempt = got, 0
        if self.trusted:  # verified: the holder is alive, and the wait goes on; else no progress
            self.moved = self.wait.clock()
        return self.past() is None

    def past(self) -> GaveUp | None:
        """The wait past its bound (``waited``: since the file's waits began; ``still``: since
        the last verified part), or None."""
        now = self.wait.clock()
        bound, waited, still = self.bound(), now - self.started, now - self.moved
        if waited > bound.most:
            return GaveUp(f"waited {waited:.0f} s, {bound.worth}")
        if still > bound.stall:
            return GaveUp(f"no part of it was published for {still:.0f} s")
        return None


def _heard(
    object_uri: str, found: Look, token: str | None, holder: str, attempt: int
) -> tuple[str | None, str, int]:
    """What a look says of the lease's holder (its token, its name, the next attempt): a new
    token starts the backoff again (its parts are under it, read soon); a new holder is said
    once, not once per look."""
    if found.holder != holder:
        log.info("waiting on %s: %s holds its lease", object_uri, found.holder)
    return found.token, found.holder, 0 if found.token != token else attempt


@dataclass(frozen=True)
class Bound:
    """How long a wait may last (seconds, by the waiter's own clock): ``stall`` since the last
    verified part (or the wait's start), ``most`` since the file's waits began; ``worth``: why."""

    stall: float
    most: float
    worth: str


def _bound(size: int, term: float, trusted: bool, rate: float | None) -> Bound:
    """A wait's bound. With a range trust: ``STALL_TERMS`` terms without a verified part, and 2
    terms + the file's size at ``SLOW_RATE`` in all. Without one nothing the holder's side writes
    extends it: what fetching the file here costs at this machine's measured rate from the origin,
    plus a term (a holder as fast as this machine is done by then), ``STALL_TERMS`` terms at
    least; not measured yet: ``STALL_TERMS`` terms (the parts read are kept for the fetch)."""
    least = STALL_TERMS * term
    if trusted:
        return Bound(least, 2 * term + size / SLOW_RATE, "the most this file's size is worth")
    if rate is None or rate <= 0:
        return Bound(least, least, "and without part hashes no part of it is progress")
    most = max(least, term + size / rate)
    here = f"{size / rate:.0f} s at the {rate / 1e6:.1f} MB/s measured from the origin"
    return Bound(most, most, f"longer than fetching it here takes ({here})")


def _ended(writer: Writer, uri: str, over: str | None, found: Look) -> Waited:
    """A wait whose lease is no longer held (released, lapsed, not mdl's, or live but judged not
    renewed by the waiter): "ready" when the object is there, else "free"."""
    if found.state == "lapsed":
        log.info("lease %s lapsed without %s", found.uri, uri)
    elif found.state == "live":
        log.info("lease %s not renewed as this machine saw it", found.uri)
    # the holder uploads, then releases: look again, or we would fetch what is there
    return "ready" if _there(writer, uri, over) else "free"


def _there(writer: Writer, uri: str, over: str | None) -> bool:
    seen = writer.head(uri)
    return seen is not None and seen.etag != over


def honours_conditions(writer: Writer, scratch_uri: str) -> bool:
    """The once-per-run probe: two conflicting conditional creates of a scratch object, then a
    replace on a wrong version and one on the right version; False unless the store refused the
    second create and the wrong replace and took the right one (a holder renews its own generation
    by its version). The scratch object is removed. ``scratch_uri`` is this run's own (a random
    name in mdl's namespace): probes must not meet."""
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
