"""The Hub's rate limits: the one gate every Hub request of a run passes (closed while the Hub says
wait -- at least MIN_HUB_WAIT a refusal, MAX_HUB_WAIT in all a run (HubWaits) -- and paced while it
says few requests remain; docs/transfers.md "The Hub's rate limits"), and a refusal decided once
(``refusal_of``). What the headers say is read by mdl.transfer.rateheaders, loaded when a reply may
state a limit (a Hub reply, a 429 or 503): a plain URL's get never loads it.
"""

# (annotations here are evaluated, not postponed: typing compiles each string annotation of a
# NamedTuple's fields at every start)
import logging
import math
import threading
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, NamedTuple

import httpx2

from mdl.errors import InterruptedByUserError
from mdl.transfer._headers import retry_after_seconds
from mdl.transfer.connection import origin
from mdl.units import human_seconds, plural

if TYPE_CHECKING:
    from mdl.transfer.rateheaders import Limit, RateLimits

log = logging.getLogger("mdl.http")

# The longest stated wait mdl sits through, and the most a run waits on the Hub's refusals in all
# (docs/transfers.md): a Hub asking for more fails the file (exit 5) naming the wait, rather than
# holding a deploy for an unknown time.
MAX_HUB_WAIT = 600.0
# the least one refusal holds the Hub's requests: a Hub that says "wait 0 s" is not asked again at
# once (a hostile or broken one would otherwise get HUB_REFUSALS requests back to back)
MIN_HUB_WAIT = 1.0
# refusals with a stated wait one operation takes before giving up (they cost no try: a Hub that
# says "wait 0 s" forever must still end)
HUB_REFUSALS = 100
# fewer remaining than this share of the quota: the run slows down before it is refused
FEW_SHARE = 0.1
REFUSALS = frozenset({429, 503})
_EXTENSION = "mdl_hub_gate"
_MARK = "mdl_hub_refusal"


def refusal_wait(status: int, headers: Mapping[str, str]) -> float | None:
    """The wait a 429/503 states in its ``RateLimit`` header (None: another answer, or none
    stated)."""
    if status not in REFUSALS:
        return None
    from mdl.transfer.rateheaders import rate_limits_of  # (a refusal: its headers read now)

    limits = rate_limits_of(headers)
    return limits.wait if limits is not None else None


class Refusal(NamedTuple):
    """A Hub 429/503 whose ``RateLimit`` header states a ``wait``, decided once where its answer is
    first seen and marked on it (:func:`refusal_of`). ``held``: the run's gate closed for it, its
    hold taken from the run's budget (nothing else sleeps for it); ``gave_up``: the gate saw it with
    the run's budget spent (the file fails, saying this). Neither: no gate saw it (or its wait is
    past MAX_HUB_WAIT): its operation waits on its own budget (Tries)."""

    wait: float
    held: bool = False
    gave_up: str | None = None


def refusal_of(response: httpx2.Response) -> Refusal | None:
    """The Hub refusal ``response`` is (None: no 429/503 stating a wait), decided once: by the
    gate its request passed (the response hook, which closes the gate for it), else from its
    headers alone; marked on the response for whatever reads it next."""
    if _MARK not in response.extensions:
        gate, status, headers = HubGate.of(response), response.status_code, response.headers
        if gate is not None:
            response.extensions[_MARK] = gate.observe(status, headers)
        # no gate saw it: the wait its headers state, if any, is all there is to it
        elif (wait := refusal_wait(status, headers)) is not None:
            response.extensions[_MARK] = Refusal(wait)
        else:
            response.extensions[_MARK] = None
    mark = response.extensions[_MARK]
    return mark if isinstance(mark, Refusal) else None


class HubWaits:
    """What the Hub's refusals may cost in waiting -- the one place that decides it: each hold at
    least MIN_HUB_WAIT, MAX_HUB_WAIT in all; past that ``spent``, and every later refusal fails its
    file (exit 5). The run's budget is on its gate (every connection's waits, overlaps counted
    once); a refusal no gate saw (a CDN's) spends its operation's own. Not locked: the gate takes
    from it under its lock, an operation from its one thread."""

    def __init__(self, total: float = MAX_HUB_WAIT) -> None:
        self.total = total
        self.held = 0.0
        self.spent = False

    @staticmethod
    def hold(stated: float) -> float:
        """How long a refusal stating ``stated`` seconds holds the next request."""
        return max(stated, MIN_HUB_WAIT)

    def take(self, seconds: float) -> bool:
        """Count ``seconds`` more of waiting; False (and spent from now on) past the budget."""
        if self.spent or self.held + seconds > self.total:
            if not self.spent:
                log.info("%s", self.giving_up())
            self.spent = True
            return False
        self.held += seconds
        return True

    def giving_up(self) -> str:
        return f"waited {human_seconds(self.held)} on the Hub's rate limit; giving up"


class HubGate:
    """The run's one gate before the Hub's origin, on its client's hooks: a request waits while a
    refusal's stated wait runs (every connection of the run alike, cancellable by ``cancel``), and
    is spaced out while replies say few requests remain. Requests to other origins (the CDN, a
    mirror) pass untouched. ``waited``: the seconds the gate was closed or held a paced request,
    overlaps counted once."""

    def __init__(
        self,
        endpoint: str,
        *,
        cancel: threading.Event | None = None,
        few: int = 1,
        retry_after_cap: float = MAX_HUB_WAIT,
        note: Callable[[str], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        wait: Callable[[float], bool] | None = None,
    ) -> None:
        self.origin = origin(endpoint)
        self.cancel = cancel or threading.Event()
        self.few = max(1, few)
        self.retry_after_cap = retry_after_cap
        self.note = note
        self.clock = clock
        self._wait = wait or self.cancel.wait
        self._lock = threading.Lock()
        self._closed_until = 0.0
        self._pace_until = 0.0
        self._interval = 0.0
        self._next_slot = 0.0
        self._mark = 0.0  # the end of the time already counted in waited
        self.waited = 0.0
        self.waits = 0  # times the gate closed (a refusal)
        self.paced = 0.0  # of ``waited``, the seconds requests were spaced out (no refusal)
        self.budget = HubWaits()  # the run's refusal waits

    def hook(self, client: httpx2.Client) -> "HubGate":
        """Put the gate on ``client``'s hooks (once): every request it sends passes it."""
        hooks = client.event_hooks
        if self not in hooks["request"]:
            hooks["request"].append(self)
            hooks["response"].append(refusal_of)  # what a Hub answer says of the limits
        return self

    @staticmethod
    def of(response: httpx2.Response) -> "HubGate | None":
        """The gate the request ``response`` answers passed (None: not a Hub request, or a client
        without one)."""
        try:
            found = response.request.extensions.get(_EXTENSION)
        except RuntimeError:  # a response built without its request
            return None
        return found if isinstance(found, HubGate) else None

    def __call__(self, request: httpx2.Request) -> None:
        """The request hook: a Hub request waits for the gate."""
        if origin(str(request.url)) != self.origin:
            return
        request.extensions[_EXTENSION] = self
        self.enter()

    def enter(self) -> None:
        """Return when a Hub request may go: the gate open and, while pacing, its slot come."""
        while True:
            with self._lock:
                now = self.clock()
                pacing = now < self._pace_until
                if (at := max(now, self._closed_until, self._next_slot if pacing else now)) <= now:
                    if pacing:
                        self._next_slot = now + self._interval
                    return
                # past what a refusal's closing counted: pacing
                self.paced += self._count(now, at)
            if self._wait(at - now):
                raise InterruptedByUserError("interrupted while waiting for the Hub's rate limit")

    def _count(self, start: float, end: float) -> float:
        """Add the time from ``start`` to ``end`` to ``waited``, what was counted already once
        (under the lock; ``start`` never goes back); returns what it added."""
        added = max(0.0, end - max(start, self._mark))
        self.waited += added
        self._mark = max(self._mark, end)
        return added

    def observe(self, status: int, headers: Mapping[str, str]) -> Refusal | None:
        """A refusal with a stated wait closes the gate for it (a wait past MAX_HUB_WAIT does not:
        the file fails instead; a Retry-After alone closes it too, but is an ordinary retry); a
        reply that says few requests remain paces the next ones. Returns the refusal it was."""
        from mdl.transfer.rateheaders import rate_limits_of  # (a Hub reply: its headers read)

        limits = rate_limits_of(headers)
        if status not in REFUSALS:
            if limits is not None and (tight := limits.tightest) is not None:
                self.pace(tight)
            return None
        stated = wait = limits.wait if limits is not None else None
        if wait is None:
            after = retry_after_seconds(headers.get("Retry-After"))
            wait = None if after is None else min(after, self.retry_after_cap)
        held = (
            wait is not None
            and wait <= MAX_HUB_WAIT
            and self.close(wait, status=status, limits=limits)
        )
        if stated is None:
            return None
        spent = not held and stated <= MAX_HUB_WAIT
        return Refusal(stated, held=held, gave_up=self.budget.giving_up() if spent else None)

    def close(self, wait: float, *, status: int, limits: "RateLimits | None") -> bool:
        """Close the gate for the refusal's hold (at least MIN_HUB_WAIT) unless that passes the
        run's budget: then it stays open (False) and the refusal fails its file (Tries)."""
        hold = HubWaits.hold(wait)
        with self._lock:
            now = self.clock()
            until = now + hold
            if not self.budget.take(max(0.0, until - max(now, self._closed_until))):
                return False
            # closed already, and for about as long: another connection's refusal said it
            joined = now < self._closed_until and until <= self._closed_until + 1.0
            self._closed_until = max(self._closed_until, until)
            self._count(now, until)
            if joined:
                return True
            self.waits += 1
        policy, name = "", f"HTTP {status}"
        if limits is not None and (tight := limits.tightest) is not None:
            policy, name = f" (policy {tight.name!r}: {tight.remaining} left)", tight.name
        said = "RateLimit" if limits is not None and limits.wait is not None else "Retry-After"
        held = f" {human_seconds(hold)}" if hold != wait else ""
        line = (
            f"the Hub answered HTTP {status} and asks to wait {human_seconds(wait)} ({said})"
            f"{policy}; every Hub request of the run waits{held}"
        )
        log.info("%s", line)
        if self.note is not None:  # one line on stderr, in every display but -q's
            self.note(f"mdl: waiting {human_seconds(hold)}: the Hub's rate limit ({name})")
        return True

    def pace(self, limit: "Limit") -> None:
        """Few requests left (under ``few``, or FEW_SHARE of the quota): the next ones spread over
        the time to the reset; plenty left: no pacing."""
        remaining, reset = limit.remaining, limit.reset
        assert remaining is not None and reset is not None
        few = max(self.few, math.ceil(limit.quota * FEW_SHARE) if limit.quota else 0)
        with self._lock:
            now = self.clock()
            if remaining >= few or reset > MAX_HUB_WAIT or reset <= 0:
                self._pace_until = 0.0
                return
            started = now >= self._pace_until
            self._interval = reset / (remaining + 1)
            self._pace_until = now + reset
            self._next_slot = max(self._next_slot, now + self._interval)
        if started:
            log.info(
                "the Hub says %d%s requests remain for %s (policy %r); spacing Hub requests %s"
                " apart",
                remaining,
                f" of {limit.quota}" if limit.quota else "",
                human_seconds(reset),
                limit.name,
                human_seconds(self._interval),
            )

    def log_total(self) -> None:
        """The run's total wait on the Hub, said once at its end (nothing when it never waited):
        the refusals' holds and the pacing, each for what it is."""
        if self.waited <= 0:
            return
        parts = []
        if self.waits:
            held = human_seconds(self.waited - self.paced)
            parts.append(f"{plural(self.waits, 'refusal')}: {held}")
        if self.paced > 0:
            parts.append(f"requests spaced out: {human_seconds(self.paced)}")
        log.info(
            "the run waited %s in all on the Hub's rate limits (%s)",
            human_seconds(self.waited),
            "; ".join(parts),
        )
