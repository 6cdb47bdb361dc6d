"""What one machine of a swarm (``mdl.download._swarm``) knows of the other machines' claims on
a file's parts, by its own monotonic clock: a claim's liveness counts only as far as this machine
can check it. A claim another holds is taken over (the next generation, an exclusive create: of
the machines that judge so at once, one wins the part) once this machine has seen the same
generation either

- at one version for ``silence``: a renewal missed and slack (a holder renews every third of a
  term), or two and a period when it renews as often as its body says (``every``: a swarm's
  claims, so that a killed machine's parts are taken over within seconds; each renewal a new
  version: S3's ETag is the MD5 of a body with a nonce, a folder's the file's inode and time),
  whatever the store's clock says to make it younger (a future mtime set once on a shared
  folder, a body written once); what the store says of its age (when it was last written) only
  ever makes it older, here and below, by a period at most (another machine's clock) unless
  past an older body's silence: a dead machine's claim, first seen long after its last write, is
  taken over at once, or
- held for longer than fetching its part here takes (``bound``, what the swarm measured: a term
  before it timed one), or the part held by anyone for twice that (a new generation every so
  often is no renewal; counted anew, once, from a generation over one that outstayed here, held
  past ``bound`` or not renewed: its taker's bound is its own, not used up by the holder before
  and a starved take): renewed or not, the part is fetched here (the end game). Of the two
  fetches of it, the one whose copy the mirror does not hold counts its bytes as ``duplicated``.

Nothing a co-tenant writes in a claim or sets on it (its mtime, a time in its body) lengthens
either, and each costs the part it names: never the whole file on every machine."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from mdl.buckets.lease import Look, renew_every
from mdl.errors import MdlError

REFUSALS = 3  # objects at the final name refused (not the file) before it is no longer looked at
SLACK = 2.0  # seconds: a late renewal's, or a part's fetch time's, allowance
MISSED = 2  # renewals that may fail before a claim whose body says its period is judged dead


class SwarmEnded(MdlError):
    """An object is at the final name (another machine made it, most likely): the rest is read
    from it, its bytes checked; ``version``: its ETag (refused: ``Final.refuse``)."""

    def __init__(self, message: str, version: str) -> None:
        super().__init__(message)
        self.version = version


class Final:
    """The object at a swarm's final name, as this machine found it: there only once read and
    verified (``SwarmEnded``, then the fill reads it); a version refused (not the file) never
    ends the swarm again, and after ``REFUSALS`` of them the name is no longer looked at (the
    machine that makes the object replaces what is there)."""

    def __init__(self, there: Callable[[], str | None], label: str) -> None:
        self.there, self.label = there, label  # ``there``: the version of one of the file's size
        self.refused: set[str] = set()
        self.proved: str | None = None  # the version read or checked and found the file
        self._lock = threading.Lock()

    def check(self) -> None:
        """SwarmEnded when an object is at the final name, but a version refused here."""
        if (version := self.found()) is not None:
            raise SwarmEnded(f"{self.label}: an object was made at its name meanwhile", version)

    def found(self) -> str | None:
        """The version of an object at the final name, but a version refused here (None: none,
        or after ``REFUSALS`` refused, not looked at)."""
        with self._lock:
            blind = len(self.refused) >= REFUSALS
        version = None if blind else self.there()
        return version if version not in self.refused else None

    def refuse(self, version: str) -> None:
        """The object ``version`` is not the file (read, refused, said): the swarm goes on."""
        with self._lock:
            self.refused.add(version)


@dataclass
class _Seen:
    """One part's claim as this machine last saw it held by another."""

    uri: str | None  # its generation (None: not read: a take that failed, a race lost)
    etag: str | None  # the version read
    first: float  # when this machine first saw this generation held
    changed: float  # when it last saw its version change (or first saw it)
    since: float  # when this machine first saw the part held, by any generation (or restarted)
    silent: float  # seconds at one version: not renewed (``silence``, as its body says)
    restarted: bool = False  # ``since`` restarted at a generation over one that outstayed

    def over(self, now: float, bound: float) -> bool:
        """Not renewed for ``silent``, held past ``bound``, or the part held for twice that."""
        return self.outstayed(now, bound) or now - self.since > 2 * bound

    def outstayed(self, now: float, bound: float) -> bool:
        """This generation not renewed for ``silent`` or held past ``bound`` (the part aside)."""
        return now - self.changed > self.silent or now - self.first > bound


def silence(term: float, every: float | None = None) -> float:
    """Seconds a claim may stay at one version before it is judged dead: ``MISSED`` renewals
    and a period when its holder renews it as often as its body says (``renew_every``; a slow
    renewal pushes the next one back: two may fail), one and the slack when every third of a
    term (an older body's); a period and ``SLACK`` at least, never a term, and never longer than
    an older body's (what a body says makes its claim judged dead sooner, never later)."""
    period = renew_every(term, every)
    missed = MISSED if period < term / 3 else 1
    said = min(term, period + max(missed * period, SLACK))
    return said if every is None else min(said, silence(term))


class Claims:
    """The claims this machine found held by others, each part's generation and versions as it
    saw them; thread-safe (the swarm's streams take parts at once)."""

    def __init__(
        self, term: float, clock: Callable[[], float] = time.monotonic, *, whole: bool = False
    ) -> None:
        # ``whole``: a file's lease (judged dead after a term: wrongly, it costs the whole file)
        self.clock, self.term, self.whole = clock, term, whole
        self.silent = term if whole else silence(term)  # seconds at one version: not renewed
        self.bound = term  # seconds a generation may stay held: a part's fetch here (the swarm's)
        self._seen: dict[int, _Seen] = {}
        self._lock = threading.Lock()

    def over(self, index: int, found: Look) -> bool:
        """Whether ``found``, a live generation of part ``index``'s claim, is to be taken over
        (not renewed for ``silent``, or held past ``bound``, as this machine saw it); it is
        remembered either way."""
        now = self.clock()
        # (a body that says it is renewed more often is judged dead sooner, never later)
        silent = self.silent if self.whole else silence(self.term, found.every)
        # its last write, by the store's age of it: never later than now (held since then at
        # least), and a period at most before now (the store's clock is another machine's: a
        # shared folder's mtime, an S3 date the store sent none of), unless older than an
        # older body's silence: a claim first seen here long after it was written is that old
        age = found.age
        if not self.whole and age <= self.silent:
            age = min(age, renew_every(self.term, found.every))
        written = now - age
        with self._lock:
            seen = self._seen.get(index)
            if seen is None or seen.uri != found.uri:  # a new generation: its time starts now
                # the part's too, once, when it took over one that outstayed here: its taker has
                # a bound of its own, not what the holder before and a starved take used up
                # (judged over at first sight, a part is fetched by machine after machine)
                again = seen is not None and not seen.restarted and seen.outstayed(now, self.bound)
                since = written if seen is None or again else seen.since
                restarted = again or (seen is not None and seen.restarted)
                seen = _Seen(found.uri, found.etag, written, written, since, silent, restarted)
                self._seen[index] = seen
            elif seen.etag != found.etag:  # renewed since the last look
                seen.etag, seen.changed = found.etag, max(seen.changed, written)
            seen.silent = silent
            return seen.over(now, self.bound)

    def held(self, index: int) -> None:
        """Part ``index`` is another's, whose claim was not read (a take refused, or lost to
        another taker): looked at again after a term."""
        now = self.clock()
        with self._lock:
            self._seen.setdefault(index, _Seen(None, None, now, now, now, self.silent))

    def due(self, indexes: set[int]) -> set[int]:
        """Of ``indexes`` (parts held by others), those to look at again now: a generation seen
        at one version for ``silent`` (to see whether it was renewed) or held past ``bound``."""
        now = self.clock()
        with self._lock:
            return {
                i
                for i in indexes
                if (seen := self._seen.get(i)) is None or seen.over(now, self.bound)
            }

    def forget(self, index: int) -> None:
        """Part ``index`` is no one's to wait on (read, refused, or claimed here)."""
        with self._lock:
            self._seen.pop(index, None)
