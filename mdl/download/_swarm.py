"""A swarm through the mirror (``--fill-mirror``, a file with a range trust): the machines that want
a file the mirror lacks divide its origin fetch among them part by part, the mirror the only
rendezvous. Each part has a lease of its own (``names.Claim``, taken, renewed and released as a
file's lease is: ``mdl.buckets.lease``); a machine fetches the parts it claims from the origin
through its own engine (``JobContext.swarm``: one piece per part), publishes each once its range
check verified it (``Publisher``, at the version's own ``names.Part``), and writes every other part
from the mirror as it appears, checked against the trust first (a part that fails is refused, and
its bytes come again). Where to start: a random part, then on from the last one claimed, else the
middle of the longest run of parts nobody is known to hold. Another's claim is judged by what this
machine saw of it over time (``mdl.download._claims``): one not renewed for ``silence`` (a renewal
missed) by this machine's clock, or held past what fetching its part here takes (or a term, before
this machine measured a part: the end game), is taken over, by one machine of the fleet, and its
part fetched here; a lapsed or released one is taken over at once. A part fetched twice (a holder
that went on fetching after its claim was taken over) is counted, once the swarm ends here, by
each machine whose fetch of it did not make the mirror's copy (``PartStates.duplicated``). The final
object at its name ends the swarm only once read and verified (``SwarmEnded``, then the fill reads
it): one refused is said, and the swarm goes on part by part (after ``REFUSALS`` of them, the name
is no longer looked at until the swarm ends). What a co-tenant writes costs only the parts it
touches: a forged claim its term (or the time to fetch the part here), a forged part its bytes, a
forged final object one read, names that are not parts a bounded listing (then parts are looked up
by name). A run that ends (killed) left claims under its token, kept beside the partial: its restart
takes them back at once. What this machine knows of each part is one state in ``PartStates``
(``mdl.download._swarmparts``: pure, moved under the swarm's lock); the mirror is read on one pool
of readers the swarm owns for its life."""

from __future__ import annotations

import logging
import secrets
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor, wait
from contextlib import AbstractContextManager
from functools import partial
from typing import TYPE_CHECKING, TypeVar

from mdl.buckets import names
from mdl.buckets.lease import TERM, Lease, Renewing, numbered, take
from mdl.download._claims import SLACK, Claims, Final, SwarmEnded
from mdl.download._parts import READERS, PartSet, verified
from mdl.download._swarmparts import LEFT, PartStates
from mdl.errors import MdlError
from mdl.wait import Wait

if TYPE_CHECKING:
    from mdl.buckets.protocol import Writer
    from mdl.transfer.job import RangeTrust, TransferJob

log = logging.getLogger("mdl.pull")

POLL_FIRST, POLL_MOST = 0.05, 1.0  # seconds between looks at the mirror while nothing is free
LOOKUPS = READERS  # parts looked up by name in one look, when the listing is too long to judge
FEWEST_STREAMS, SHARE = 4, 8  # ``streams``: a machine's parts in flight at once
CLAIMS_REMOVED = 2  # generations of each part's claim the object's maker removes
_T = TypeVar("_T")
REFUSALS = 3  # claims the mirror refuses (errors) before the swarm gives way to the file lease
# seconds between a claim's renewals (said in its body): a killed machine's parts are taken over
# two renewals missed and a period later (``_claims.silence``: 9 s), not after the end game's bound
RENEW_EVERY = 3.0


class SwarmFailed(MdlError):
    """The mirror refuses claims (``REFUSALS`` of them): the file is fetched under its lease."""


class Swarm(AbstractContextManager["Swarm"]):
    """One file's swarm on this machine (a ``PartSource``): its parts' states (``PartStates``,
    under one lock), the claims it holds, and its looks at the mirror (on its own readers)."""

    def __init__(
        self,
        parts: PartSet,
        trust: RangeTrust,
        job: TransferJob,
        *,
        holder: str,
        token: str,
        wait: Wait,
        there: Callable[[], str | None],
        readers: Executor,
        term: float = TERM,
    ) -> None:
        self.parts, self.trust, self.job = parts, trust, job
        self.holder, self.token, self.term, self.wait = holder, token, term, wait
        # the object at the final name (``there``: the version of one of the file's size)
        self.final = Final(there, job.label)
        self.spans: Sequence[tuple[int, int]] = [parts.span(n) for n in range(1, parts.count + 1)]
        # told of each part read from the others before it is written (the publisher: sent not)
        self.heard: Callable[[int], None] = lambda index: None
        self.waiting: Callable[[str], None] = lambda said: None  # the progress display's
        self._lock = threading.Condition()
        # every part's state and the counts (under ``_lock``); a held claim's handle: its lease
        self.state: PartStates[tuple[Lease, Renewing]] = PartStates([e - s for s, e in self.spans])
        self.claims = Claims(term, wait.clock)  # what this machine saw of the others' claims
        self._polling = False
        self._looked = threading.Event()  # the first look of a fetch is done
        self._quiet = 0  # looks in a row that found nothing
        # a listing of the parts failed or was too long to judge: parts are looked up by name from
        # then on (a store whose listing lies or never ends costs one bounded listing, no more)
        self._unlisted = False
        # the mirror's parts read on these, one look at a time: the caller's pool, made once for
        # the swarm and shut down after it (``_fill``: ``with``, the one way a pool is kept)
        self._readers = readers

    # -- the engine's side (``PartSource``) ---------------------------------------------------
    def streams(self, most: int) -> int:
        """Parts fetched here at once: ``most``, an eighth of the parts at most (4 at least), so
        that the first machine leaves the others parts to claim."""
        return max(1, min(most, max(FEWEST_STREAMS, len(self.spans) // SHARE)))

    def next(
        self, have: set[int], put: Callable[[int, bytes], None], stopped: Callable[[], bool]
    ) -> int | None:
        try:
            return self._next(have, put, stopped)
        except SwarmEnded:  # the parts in flight here land first (a term at most): none of
            drain = Wait.within(self.term, self.wait.cancel)  # them is fetched twice here
            with self._lock:
                while self.state.held and not stopped() and drain.pause(POLL_MOST, self._lock):
                    pass
            raise

    def _next(
        self, have: set[int], put: Callable[[int, bytes], None], stopped: Callable[[], bool]
    ) -> int | None:
        with self._lock:
            begins = self.state.begin(have)  # a fetch begins (again: from zero after a mismatch)
            if begins:
                self._looked.clear()
        if begins:  # what the others published so far, read before any stream claims a part
            try:
                self._turn(put)
            finally:
                self._looked.set()
        while not self._looked.wait(POLL_MOST):
            if stopped():
                return None
        while not stopped():
            with self._lock:
                index = self.state.pick(secrets.randbelow)
            if index == LEFT:
                return None
            if index is not None:
                if self._claimed(index):
                    return index
                continue
            self._turn(put)
        return None

    def _claimed(self, index: int) -> bool:
        """Whether this machine fetches part ``index`` now: its claim taken (renewed till it is
        published; another's taken over once ``claims`` judges it over); else it is the others'
        (held by another, or published meanwhile: read at the next look)."""
        lease, published = self._take(index)
        if lease is not None and not published:
            renewing = Renewing(lease).__enter__()
            self.claims.forget(index)
            with self._lock:  # (a part fetched again here: its earlier claim let go)
                before = self.state.claimed(index, (lease, renewing), self.wait.clock())
            if before is not None:
                _release(*before)
            return True
        if lease is not None:  # published meanwhile
            lease.release()
        self.claims.held(index)  # (its generation remembered as the take read it)
        with self._lock:
            self.state.lost(index)
        return False

    def _take(self, index: int) -> tuple[Lease | None, bool]:
        """Part ``index``'s claim, if taken here (another's once ``claims`` judges it over), and
        whether the part is published already; SwarmEnded once an object is at the final name;
        SwarmFailed once the mirror refused ``REFUSALS``."""
        writer, claim = self.parts.writer, names.Claim.on(_part(self.parts, index))
        try:
            lease = _first(writer, claim, self.holder, self.token, self.term) or take(
                writer,
                claim,
                holder=self.holder,
                term=self.term,
                mine=self.token,
                token=self.token,
                dead=partial(self.claims.over, index),
                every=RENEW_EVERY,
            )
        except MdlError as exc:  # held by nobody known: looked at again; refused again: out
            log.info("%s: part %d not claimed: %s", self.job.label, index + 1, exc)
            with self._lock:
                self.state.refusals += 1
                refused = self.state.refusals
            if refused >= REFUSALS:
                raise SwarmFailed(f"{self.job.label}: the mirror refuses claims ({exc})") from exc
            return None, False
        published = lease is not None and self._published(index)
        if lease is not None and not published:
            try:
                self.final.check()
            except SwarmEnded:
                lease.release()
                raise
        return lease, published

    def _published(self, index: int) -> bool:
        """Whether part ``index`` is at its name (and not what this machine refused there)."""
        with self._lock:
            if self.state.parts[index].refused:
                return False
        seen = _unless_failed(
            lambda: self.parts.writer.head(self.parts.uri(index + 1)),
            f"{self.job.label}: a look at the mirror failed",
        )
        return seen is not None and seen.size == self.state.parts[index].size

    def sent(self, index: int) -> None:
        """Part ``index`` is published, or could not be (``Publisher``): its claim released."""
        with self._lock:
            held = self.state.sent(index, self.wait.clock())
            self._lock.notify_all()  # (a stream waits for the parts in flight: ``next``)
        if held is not None:
            _release(*held)
            if (version := self.final.found()) is not None:  # its copy there: duplicated if
                with self._lock:  # that object proves the file (``Final.proved``)
                    self.state.parts[index].late = version

    # -- the looks at the mirror, one stream at a time ------------------------------------------
    def _turn(self, put: Callable[[int, bytes], None]) -> None:
        """One look at the mirror (the other streams wait for it), then a pause if in vain."""
        with self._lock:
            if self._polling:
                self._lock.wait(POLL_MOST)
                return
            self._polling = True
        try:
            changed = self._look(put)
            with self._lock:
                self._quiet = 0 if changed else self._quiet + 1
                quiet, state = self._quiet, self.state
                if not changed:
                    read, held = state.read // max(1, self.parts.part), len(state.theirs())
                    said = f"swarm: {state.fetched} parts here, {read} from others ({held} held)"
            if not changed:
                self.waiting(said)
                self.wait.pause(min(POLL_FIRST * 2**quiet, POLL_MOST))
        finally:
            with self._lock:
                self._polling = False
                self._lock.notify_all()

    def _look(self, put: Callable[[int, bytes], None]) -> bool:
        """The parts the others published since the last look written (each checked first);
        claims to look at again handed back; SwarmEnded once an object is at the final name.
        Whether anything changed."""
        self.final.check()
        found = self._found()
        # every read begun ends before the look does, a failed one's too (``map`` would raise at
        # the first failure, the others still writing into a ``.part`` its fetch then closes): a
        # part in flight is no stream's to fetch
        failed = threading.Event()  # a read of this look failed: the others not begun, never

        def one(index: int) -> bool:
            if failed.is_set():  # (back as it was: the next fetch looks again)
                with self._lock:
                    self.state.read_from_others(index, held=None)
                return False
            try:
                return self._fetch(index, put)
            except BaseException:
                failed.set()
                raise

        reads = [self._readers.submit(one, i) for i in found]
        wait(reads)
        held = [done.result() for done in reads]  # (the first failure raised, once all ended)
        read = any(held)
        # the claims are judged at every look, parts read or not: a dead machine's part is taken
        # over while the others' parts still come in (a loaded box reads them for seconds)
        return self._due_claims() or read

    def _found(self) -> list[int]:
        """Parts to read now (``READING``): the ones listed under the version's own set, or,
        once that listing failed or was too long to judge, a few held by others, by name."""
        parts = self.parts
        listed = None if self._unlisted else _unless_failed(
            lambda: numbered(parts.writer, parts.first.prefix, self.wait.cancel),
            f"{self.job.label}: a look at the mirror failed",
        )  # fmt: skip
        self._unlisted = listed is None
        sizes = None if listed is None else {n - 1: item.size for n, item in listed.items()}
        with self._lock:
            return self.state.found(sizes, lookups=LOOKUPS, most=READERS * 4)

    def _fetch(self, index: int, put: Callable[[int, bytes], None]) -> bool:
        """Part ``index`` read from the mirror, checked, written (``put``); False: not there, or
        not the file's (refused: to do again, free to be claimed, never read again)."""
        span, label = self.spans[index], self.job.label
        found = _unless_failed(
            lambda: self.parts.read(index + 1), f"{label}: part {index + 1} not read"
        )
        data = found[0] if found is not None and len(found[0]) == span[1] - span[0] else None
        # checked by its range hash before a byte of it is written: its one range holds, none fails
        checked = verified(self.trust, span[0], memoryview(data)) if data is not None else None
        held = checked == ([span], False)
        if held and data is not None:
            self.heard(index)
            put(index, data)
        with self._lock:
            first = self.state.read_from_others(index, held=None if data is None else held)
        if data is not None:
            self.claims.forget(index)
        if first:
            self.job.retries.warn(
                f"{label}: another machine's part {self.parts.uri(index + 1)} failed its"
                f" {self.trust.kind} hash; its bytes are fetched again"
            )
        return held

    def _due_claims(self) -> bool:
        """Parts held by others whose claims are due another look (``Claims.due``; the bound:
        twice a part's time here, or a term before one was timed) handed back to be claimed
        (taken over if over); whether any were."""
        with self._lock:
            timing = self.state.timing
            bound = self.claims.bound = timing * 2 + SLACK if timing else self.term
            due = self.claims.due(self.state.theirs())
            self.state.due(due)
        said = "%s: %d part(s) claimed by another machine for over %.0f s (or a renewal missed)"
        if due:
            log.info(said + ": looked at again", self.job.label, len(due), bound)
        return bool(due)

    def __exit__(self, *exc: object) -> None:
        """Every claim still held released (its part not published: the others take it)."""
        with self._lock:
            held = self.state.release()
        for lease, renewing in held:
            _release(lease, renewing)


def _unless_failed(look: Callable[[], _T], failed: str) -> _T | None:
    """What a read of the mirror finds; None when it fails (said in the log after ``failed``): the
    mirror failing never fails the fetch (a part not known published is claimed and fetched here,
    parts not listed are looked up by name, a part not read is claimed again)."""
    try:
        return look()
    except MdlError as exc:
        log.info("%s: %s", failed, exc)
        return None


def _release(lease: Lease, renewing: Renewing) -> None:
    renewing.__exit__(None, None, None)
    try:
        lease.release()
    except MdlError as exc:  # it lapses within its term
        log.info("could not release the claim %s (%s)", lease.uri, exc)


def _part(parts: PartSet, index: int) -> names.Part:
    first = parts.first
    return names.Part(first.folder, first.path, first.pin, first.size, None, index + 1)


def remove_claims(parts: PartSet, label: str) -> None:
    """The claims on every part of ``parts``, once the final object is there (best effort, by
    name: the first generations, the usual ones; ``prune --mirror`` removes what stays)."""
    uris = [
        names.Claim.on(_part(parts, i)).at(number).uri
        for i in range(parts.count)
        for number in range(1, CLAIMS_REMOVED + 1)
    ]
    try:
        with ThreadPoolExecutor(READERS, thread_name_prefix="mdl-swarm") as pool:
            list(pool.map(parts.writer.delete, uris))
    except MdlError as exc:
        log.info("%s: the claims on its parts were not all removed: %s", label, exc)


def _first(
    writer: Writer, claim: names.Claim, holder: str, token: str, term: float
) -> Lease | None:
    """The claim's first generation, created (one request: a part nobody claimed yet, the usual
    case); None: it is there, and the claim is taken as a lease is (``take``). A generation above
    it, a co-tenant's, would make two holders of the part: its bytes fetched twice, never wrong
    (each part is checked by whoever reads it)."""
    ours = Lease(writer, claim, "", holder, token, term, every=RENEW_EVERY)
    made = writer.create(claim.uri, ours.body())
    if made is None:
        return None
    ours.etag = made.etag
    return ours
