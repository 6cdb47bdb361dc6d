"""A lease in the store itself: one machine of a fleet fills a mirror object while the others wait
on it. Leases are numbered generations, ``<root>leases/<object>/<N>``, under mdl's own namespace
``<root>`` (``<the template's folder>/.mdl/``, which no model file can name): the highest number is
the lease. It is taken with an exclusive create of the next number (S3 ``If-None-Match: *``, a
folder's ``link``), the one write every store and share keeps atomic; taking over a lapsed
generation N is the create of N+1, so of two takers one wins, without a lock or a compare-and-swap.
Its holder renews only its own generation (bytes done, for those who wait) and counts it lost when
a next one exists. A lapse is judged by the store's clock and mdl's own term, never a body's.

A waiting machine trusts a holder for nothing but progress: past a few terms without more bytes
done, or a bound from the file's size at a slow rate, it fetches from the origin itself."""

from __future__ import annotations

import json
import logging
import os
import secrets
import threading
import time
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Literal

from mdl.buckets._parts import fill_part
from mdl.buckets.protocol import NAMESPACE, Writer, folder_of
from mdl.errors import InterruptedByUserError, MdlError
from mdl.paths import read_small_file

log = logging.getLogger("mdl.lease")

LEASES = "leases/"
PARTS = "parts/"  # a fill's parts, published as its fetch lands (mdl.download._parts)
TERM = 30.0  # seconds a lease lives unless renewed (by the store's clock); always mdl's own
LOST_MARGIN = 0.1  # a holder counts its lease lost this part of a term before it may lapse
RELEASE_WAIT = 5.0  # seconds a release waits for a renewal in flight, then leaves it to lapse
TAKE_TRIES = 5  # generation numbers tried at one take (a name held by something not a lease)
BODY_LIMIT = 4096  # bytes: a bigger object is not an mdl lease (read no further)
LISTED_LIMIT = 1000  # objects under one object's leases: more is not mdl's (judged foreign)
BOOT_ID = "/proc/sys/kernel/random/boot_id"  # Linux: changes at every boot
STALL_TERMS = 3.0  # a follower gives up after this many terms without the holder's progress
SLOW_RATE = float(1 << 20)  # bytes/s: the slowest fill worth waiting for (the whole wait's bound)


def namespace(template: str) -> str | None:
    """mdl's namespace in a mirror: ``<the folder of the template's fixed part>/.mdl/``; None when
    a filled name could be ``.mdl`` there (the first thing after that folder is ``{path}`` or
    ``{revision}``, or literal text ``.``, ``.m``…): such a mirror is not filled. ``{model}``
    (catalog names never start with '.'), ``{repo}`` (nor Hub ids), ``{sha256}`` and ``{commit}``
    (hex) cannot."""
    folder = folder_of(template)
    tail, _, after = template[len(folder) :].partition("{")
    if tail and ".mdl".startswith(tail):
        return None
    if not tail and not f"{{{after}".startswith(("{model}", "{repo}", "{sha256}", "{commit}")):
        return None
    return f"{folder}{NAMESPACE}"


def lease_prefix(root: str, object_uri: str) -> str:
    """Where the generations of ``object_uri``'s lease live (``root``: its mirror's namespace)."""
    folder = root.removesuffix(NAMESPACE)
    if not object_uri.startswith(folder):
        raise ValueError(f"{object_uri!r} is not under {folder!r}")
    return f"{root}{LEASES}{object_uri[len(folder) :]}/"


def parts_prefix(root: str, object_uri: str) -> str:
    """Where the parts a fill publishes of ``object_uri`` live (``root``: its mirror's namespace);
    one set per version and part size below it."""
    return lease_prefix(root, object_uri).replace(f"{root}{LEASES}", f"{root}{PARTS}", 1)


def part_set(root: str, object_uri: str, *, pin: str, size: int) -> tuple[str, int]:
    """The prefix of one version's parts (``pin``: its hash; ``size``: the file's) and the bytes
    of each but the last: ``<parts_prefix>/<pin>-<part size>/``."""
    part = fill_part(size)
    return f"{parts_prefix(root, object_uri)}{pin}-{part}/", part


def is_lease(uri: str) -> bool:
    """Whether ``uri`` is one of mdl's own objects in a mirror (a lease, a probe, a clock)."""
    return f"/{NAMESPACE}" in uri


def object_of(lease: str) -> str:
    """The mirror object a lease generation's URI is for."""
    folder, _, rest = lease.partition(f"/{NAMESPACE}{LEASES}")
    return f"{folder}/{rest.rpartition('/')[0]}"


class LeaseLost(Exception):
    """Another machine holds the lease now (a next generation exists, or ours is gone)."""


def lease_body(holder: str, done: int = 0, *, released: bool = False) -> bytes:
    """A lease's bytes: its holder, the bytes it has done, its process (``process_of``), and a
    nonce (never the same twice: S3's ETag is the MD5 of the body)."""
    body: dict[str, object] = {"holder": holder, "done": done, "n": secrets.token_hex(8)}
    body["process"] = process_of(os.getpid())
    return json.dumps({**body, "released": True} if released else body).encode()


def process_of(pid: int) -> str | None:
    """``<boot id>:<pid namespace>:<pid>:<start time>`` of a running process of this machine (as
    Linux's /proc says), None: none, or no /proc to say. Two processes that share a boot and a pid
    namespace tell by it whether the other still runs: pids are reused, start times are not."""
    try:
        boot = read_small_file(BOOT_ID, limit=64).decode().strip()
        space = Path("/proc/self/ns/pid").stat().st_ino
        said = read_small_file(f"/proc/{pid}/stat", limit=4096).rpartition(b")")[2].split()
    except (OSError, UnicodeDecodeError):
        return None
    return f"{boot}:{space}:{pid}:{int(said[19])}" if len(said) > 19 else None


def _gone(said: object) -> bool:
    """Whether a lease's process (``process_of`` when it wrote it) ran on this machine, in this
    pid namespace, and runs no more: killed, or crashed. Its restart takes the lease over at once,
    not a term later; another machine's process is judged by the term alone, and so is one this
    process cannot see (another user's, /proc mounted hidepid)."""
    mine = process_of(os.getpid())
    if not isinstance(said, str) or mine is None or said.count(":") != 3:
        return False
    here, pid = said.rsplit(":", 2)[0], said.split(":")[2]
    if here != mine.rsplit(":", 2)[0] or not (
        pid.isascii() and pid.isdigit() and 0 < len(pid) < 10
    ):
        return False
    try:
        os.kill(int(pid), 0)  # no signal: only whether it exists
    except ProcessLookupError:
        return True
    except PermissionError:  # another user's: it exists
        pass
    now = process_of(int(pid))
    return now is not None and now != said  # its pid now another process's


State = Literal["none", "live", "lapsed", "released", "foreign"]


@dataclass(frozen=True)
class Look:
    """The lease as one look found it: its highest generation and what that says."""

    number: int  # 0: no generation
    state: State
    holder: str = "an unknown holder"  # for the log, escaped (the body is anyone's)
    done: int | None = None  # bytes the holder says it has done
    uri: str | None = None


def look(writer: Writer, prefix: str, *, term: float = TERM) -> Look:
    """The highest generation under ``prefix`` and its state: ``lapsed`` (not renewed within our
    term by the store's clock), ``released``, ``foreign`` (not a body mdl writes: too big, not
    JSON, or more objects than a lease ever has), ``live``; ``none``: no generation (or gone
    before it was read, or not a file: the next number is free all the same)."""
    numbers: dict[int, str] = {}
    listed = list(islice(writer.listing(prefix, most=LISTED_LIMIT + 1), LISTED_LIMIT + 1))
    for item in listed:
        name = item.uri[len(prefix) :]
        if name.isascii() and name.isdigit() and len(name) <= 18:
            numbers[int(name)] = item.uri
    if not numbers:
        return Look(0, "foreign" if len(listed) > LISTED_LIMIT else "none")
    number = max(numbers)
    if len(listed) > LISTED_LIMIT:
        return Look(number, "foreign", uri=numbers[number])
    return read_generation(writer, numbers[number], number, term=term)


def read_generation(writer: Writer, uri: str, number: int, *, term: float) -> Look:
    found = writer.read(uri, limit=BODY_LIMIT)
    if found is None:
        return Look(number, "none", uri=uri)
    data, seen = found
    body = _parse(data) if seen.size <= BODY_LIMIT and len(data) <= BODY_LIMIT else None
    if body is None:
        return Look(number, "foreign", uri=uri)
    holder, done = body.get("holder"), body.get("done")
    said = repr(holder[:100])[:200] if isinstance(holder, str) else "an unknown holder"
    count = done if isinstance(done, int) and not isinstance(done, bool) and done >= 0 else None
    if body.get("released") is True:
        state: State = "released"
    elif seen.now - seen.modified > term or _gone(body.get("process")):
        state = "lapsed"
    else:
        state = "live"
    return Look(number, state, said, count, uri)


def _parse(data: bytes) -> dict[str, object] | None:
    try:
        parsed = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        return None
    return parsed if isinstance(parsed, dict) else None


@dataclass
class Lease:
    """A lease we hold: its generation's object, the version we wrote, how to say bytes done."""

    writer: Writer
    prefix: str
    number: int
    etag: str
    holder: str
    term: float = TERM
    done: Callable[[], int] = lambda: 0

    # renewals run on Renewing's threads: a release waits for one in flight (bounded), so it
    # replaces the version that renewal wrote, never a version it replaced
    _lock: threading.Lock = field(
        default_factory=threading.Lock, init=False, repr=False, compare=False
    )

    @property
    def uri(self) -> str:
        return f"{self.prefix}{self.number}"

    def renew(self) -> None:
        """Extend it with the bytes done (only our own generation is ever written); LeaseLost when
        a next generation exists (taken over) or ours changed."""
        with self._lock:
            if self.writer.head(f"{self.prefix}{self.number + 1}") is not None:
                raise LeaseLost(f"the lease {self.uri} was taken over")
            body = lease_body(self.holder, self.done())
            seen = self.writer.replace(self.uri, body, etag=self.etag)
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
            body = lease_body(self.holder, self.done(), released=True)
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
    prefix: str,
    *,
    holder: str,
    term: float = TERM,
    done: Callable[[], int] = lambda: 0,
) -> Lease | None:
    """The lease for us: the next generation created, unless the highest is live (None). A name
    that holds anything but a live lease of ours is stepped over (a few numbers at most)."""
    seen_look = look(writer, prefix, term=term)
    if seen_look.state == "live":
        return None
    number = seen_look.number + 1
    for _ in range(TAKE_TRIES):
        made = writer.create(f"{prefix}{number}", lease_body(holder))
        if made is not None:
            if seen_look.uri is not None:
                log.info(
                    "took over lease %s (%s, %s)", seen_look.uri, seen_look.state, seen_look.holder
                )
                # Tidy the one below the generation taken over, never that one: a folder's scan
                # running now may miss the name just made, and must still see a generation to
                # step over (with both gone it would create number 1 beside ours).
                with suppress(MdlError):
                    writer.delete(f"{prefix}{seen_look.number - 1}")
            return Lease(writer, prefix, number, made.etag, holder, term, done)
        there = read_generation(writer, f"{prefix}{number}", number, term=term)
        if there.state == "live":
            return None  # another machine took this number first
        number += 1
    return None  # every number tried is held by something: wait on it as on a held one


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


@dataclass(frozen=True)
class GaveUp:
    """A wait given up on: the holder showed no progress, or the wait outlasted its bound."""

    why: str


Waited = Literal["ready", "free", "streamed"] | GaveUp


def wait_for(
    writer: Writer,
    object_uri: str,
    prefix: str,
    *,
    size: int,
    cancel: threading.Event,
    term: float = TERM,
    over: str | None = None,
    poll: Callable[[int], float] | None = None,
    clock: Callable[[], float] = time.monotonic,
    step: Callable[[], int] = lambda: 0,
) -> Waited:
    """Wait while another machine holds the object's lease (``prefix``): "ready" when the object is
    there (a version other than ``over``, one proved wrong), "free" when the lease is released,
    lapsed or not mdl's (then take it), GaveUp when its holder showed no progress for
    ``STALL_TERMS`` terms (by this machine's clock of its own wait; a claim past ``size`` or
    going back is none; all of ``size`` done is judged by the whole bound alone: it uploads) or the
    wait passed ``2 terms + size / SLOW_RATE``. ``cancel``: the run's (heard at once). ``step``: the
    follower's own work at each look (it reads the parts the holder published), the bytes it has:
    progress as the holder's is, and looked again at once; "streamed" once it has all of ``size``
    while the lease is live (the holder makes the object of them)."""
    schedule = poll or default_poll
    started = moved = clock()
    bound = 2 * term + size / SLOW_RATE
    generation, best, attempt, holder, had = -1, -1, 0, None, 0
    while True:
        if cancel.is_set():
            raise InterruptedByUserError(f"interrupted while waiting on {object_uri}")
        if (got := step()) > had:  # parts arrive: the holder is alive, read on at once
            had, moved, attempt = got, clock(), 0
            continue
        if _there(writer, object_uri, over):
            return "ready"
        found = look(writer, prefix, term=term)
        if found.state != "live":
            if found.state == "lapsed":
                log.info("lease %s%d lapsed without %s", prefix, found.number, object_uri)
            # the holder uploads, then releases: look again, or we would fetch what is there
            return "ready" if _there(writer, object_uri, over) else "free"
        if got >= size > 0:  # all read from the holder's parts; it assembles them
            return "streamed"
        now = clock()
        done = found.done if found.done is not None and found.done <= size else -1
        if found.number != generation:  # a new holder starts from its own bytes
            generation, best, moved = found.number, done, now
        elif done > best:
            best, moved = done, now
        if best < size and now - moved > STALL_TERMS * term:
            return GaveUp(f"its holder {found.holder} showed no progress for {now - moved:.0f} s")
        if now - started > bound:
            return GaveUp(f"waited {now - started:.0f} s, the most this file's size is worth")
        if found.holder != holder:  # said once per holder, not once per look
            holder = found.holder
            log.info("waiting on %s: %s holds its lease", object_uri, holder)
        cancel.wait(schedule(attempt))
        attempt += 1


def _there(writer: Writer, uri: str, over: str | None) -> bool:
    seen = writer.head(uri)
    return seen is not None and seen.etag != over


def default_poll(attempt: int) -> float:
    """Seconds between looks at a held lease: quick at first (small files fill fast), then every
    2 s (a fleet of waiters must not flood the store)."""
    return min(0.25 * 2.0 ** min(attempt, 3), 2.0)


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
