"""The Hub's RateLimit / RateLimit-Policy headers read (any text, never raising) and the run's one
gate before the Hub (closed for a stated wait, paced when few requests remain), on a fake clock."""

from __future__ import annotations

import threading

import httpx2
import pytest
from clocks import FakeClock
from hypothesis import given
from hypothesis import strategies as st

from mdl.errors import InterruptedByUserError, NetworkError
from mdl.sources.hub import Hub
from mdl.transfer.failures import RetryableError
from mdl.transfer.http import RetryPolicy, Tries, error_for_status, make_client
from mdl.transfer.rateheaders import HEADER_LIMIT, read_rate_limits
from mdl.transfer.ratelimit import (
    HUB_REFUSALS,
    MAX_HUB_WAIT,
    MIN_HUB_WAIT,
    HubGate,
    Refusal,
    refusal_of,
    refusal_wait,
)

HUB = "http://127.0.0.1:9"


def test_the_hubs_own_headers_are_read() -> None:
    """The Hub writes its policy with a second string (not RFC 8941): still read, not dropped."""
    limits = read_rate_limits('"resolvers";r=0;t=87', '"fixed window";"resolvers";q=1000;w=300')
    assert limits is not None
    (limit,) = limits.limits
    assert (limit.name, limit.remaining, limit.reset) == ("resolvers", 0, 87.0)
    assert (limit.quota, limit.window) == (1000, 300)
    assert limits.wait == 87.0


def test_the_wait_is_the_longest_reset_of_the_policies_used_up() -> None:
    limits = read_rate_limits('"api";r=5;t=900, "resolvers";r=0;t=30, "pages";r=0;t=12')
    assert limits is not None and limits.wait == 30.0
    tight = limits.tightest
    assert tight is not None and (tight.name, tight.reset) == ("resolvers", 30.0)


@pytest.mark.parametrize(
    "value",
    [
        "",
        ",,,",
        '"open',
        "resolvers;r=1e3;t=1",  # a value that is no bare item: the member is dropped
        '"x";R=1',  # upper-case key
        "(a b);r=0;t=1",  # an inner list
        '"x";r=-1;t=-5',  # negative numbers are no count nor time
        "limit=100, remaining=0, reset=5",  # the draft's older dictionary form names no policy
    ],
)
def test_unreadable_members_say_nothing(value: str) -> None:
    limits = read_rate_limits(value)
    assert limits is None or all(x.remaining is None and x.reset is None for x in limits.limits)


def test_a_header_past_the_limit_is_ignored() -> None:
    long = '"x";r=0;t=1, ' * (HEADER_LIMIT // 10)
    assert read_rate_limits(long) is None
    assert read_rate_limits('"x";r=0;t=1') is not None


@given(st.text(max_size=300), st.text(max_size=300))
def test_any_text_never_raises(ratelimit: str, policy: str) -> None:
    limits = read_rate_limits(ratelimit, policy)
    if limits is not None:
        for limit in limits.limits:
            assert limit.remaining is None or limit.remaining >= 0
            assert limit.reset is None or limit.reset >= 0


NAMES = st.from_regex(r"[a-z][a-z0-9 _-]{0,15}", fullmatch=True)
COUNTS = st.integers(min_value=0, max_value=10**15 - 1)


@given(
    st.lists(
        st.tuples(NAMES, COUNTS, COUNTS, COUNTS, COUNTS),
        min_size=1,
        max_size=5,
        unique_by=lambda x: x[0],
    ),
    st.sampled_from([",", ", ", " ,\t"]),
    st.booleans(),
)
def test_generated_headers_round_trip_their_numbers(
    items: list[tuple[str, int, int, int, int]], sep: str, hub_style: bool
) -> None:
    ratelimit = sep.join(f'"{name}";r={r};t={t}' for name, r, t, _, _ in items)
    policy = sep.join(
        (f'"fixed window";"{name}"' if hub_style else f'"{name}"') + f";q={q};w={w}"
        for name, _, _, q, w in items
    )
    limits = read_rate_limits(ratelimit, policy)
    assert limits is not None
    got = [(x.name, x.remaining, x.reset, x.quota, x.window) for x in limits.limits]
    assert got == [(name, r, float(t), q, w) for name, r, t, q, w in items]


# -- the gate, on a fake clock
# -------------------------------------------------------------------------------------


class Sleeper:
    """The gate's wait: moves the fake clock and notes how long it was asked to wait."""

    def __init__(self, clock: FakeClock, cancel: threading.Event | None = None) -> None:
        self.clock, self.cancel, self.waits = clock, cancel, list[float]()

    def __call__(self, seconds: float) -> bool:
        if self.cancel is not None and self.cancel.is_set():
            return True
        self.waits.append(round(seconds, 6))
        self.clock.now += seconds
        return False


def gate_on_fake_clock(**kwargs: object) -> tuple[HubGate, FakeClock, Sleeper]:
    clock = FakeClock()
    sleeper = Sleeper(clock)
    gate = HubGate(HUB, clock=clock, wait=sleeper, **kwargs)  # type: ignore[arg-type]
    return gate, clock, sleeper


def test_a_refusal_closes_the_gate_for_its_stated_wait() -> None:
    gate, _, sleeper = gate_on_fake_clock()
    gate.enter()
    assert sleeper.waits == []
    gate.observe(429, {"RateLimit": '"resolvers";r=0;t=87'})
    gate.observe(429, {"RateLimit": '"resolvers";r=0;t=86'})  # another connection's: the same wait
    gate.enter()
    assert sleeper.waits == [87.0]
    gate.enter()  # open again
    assert sleeper.waits == [87.0]
    assert (gate.waited, gate.waits) == (87.0, 1)


def test_503_and_retry_after_close_it_too_a_wait_past_the_maximum_does_not() -> None:
    gate, _, sleeper = gate_on_fake_clock(retry_after_cap=120.0)
    gate.observe(503, {"RateLimit": '"api";r=0;t=2'})
    gate.enter()
    gate.observe(429, {"Retry-After": "5"})
    gate.enter()
    gate.observe(429, {"Retry-After": "9999"})  # capped as the retry policy caps it
    gate.enter()
    gate.observe(429, {"RateLimit": f'"api";r=0;t={int(MAX_HUB_WAIT) + 1}'})  # fails the file
    gate.enter()
    gate.observe(500, {"Retry-After": "5"})  # not a rate limit
    gate.enter()
    assert sleeper.waits == [2.0, 5.0, 120.0]


def test_few_requests_left_spread_over_the_time_to_the_reset() -> None:
    gate, _, sleeper = gate_on_fake_clock(few=4)
    # 3 of 1000 left for 40 s: under 10 % of the quota, so 4 slots of 10 s
    gate.observe(200, {"RateLimit": '"r";r=3;t=40', "RateLimit-Policy": '"r";q=1000;w=300'})
    for _ in range(3):
        gate.enter()
    assert sleeper.waits == [10.0, 10.0, 10.0]
    # plenty again (a new window): no pacing
    gate.observe(200, {"RateLimit": '"r";r=900;t=300', "RateLimit-Policy": '"r";q=1000;w=300'})
    gate.enter()
    gate.enter()
    assert len(sleeper.waits) == 3
    assert gate.waited == pytest.approx(30.0)


def test_remaining_under_the_connections_paces_without_a_policy() -> None:
    gate, _, sleeper = gate_on_fake_clock(few=8)
    gate.observe(200, {"RateLimit": '"r";r=7;t=16'})  # no quota known: 7 < 8 connections
    gate.enter()
    assert sleeper.waits == [2.0]
    gate, _, sleeper = gate_on_fake_clock(few=2)
    gate.observe(200, {"RateLimit": '"r";r=7;t=16'})
    gate.enter()
    assert sleeper.waits == []


def test_ctrl_c_ends_a_wait_on_the_gate() -> None:
    cancel = threading.Event()
    clock = FakeClock()
    gate = HubGate(HUB, cancel=cancel, clock=clock, wait=Sleeper(clock, cancel))
    gate.observe(429, {"RateLimit": '"r";r=0;t=60'})
    cancel.set()
    with pytest.raises(InterruptedByUserError):
        gate.enter()


def test_the_gate_holds_only_requests_to_the_hubs_origin() -> None:
    gate, _, sleeper = gate_on_fake_clock()
    gate.observe(429, {"RateLimit": '"r";r=0;t=30'})
    gate(httpx2.Request("GET", "http://127.0.0.1:10/blobs/x"))  # the CDN
    assert sleeper.waits == []
    gate(httpx2.Request("GET", f"{HUB}/org/m/resolve/main/x"))
    assert sleeper.waits == [30.0]


# -- the errors: a refusal costs no try
# -----------------------------------------------------------------------------------------


def hub_reply(status: int, headers: dict[str, str], gate: HubGate | None = None) -> httpx2.Response:
    request = httpx2.Request("GET", f"{HUB}/org/m/resolve/main/x")
    if gate is not None:
        request.extensions["mdl_hub_gate"] = gate
    return httpx2.Response(status, headers=headers, request=request)


def test_a_refusal_with_a_stated_wait_spends_no_try() -> None:
    sleeps: list[float] = []
    tries = Tries(RetryPolicy(retries=1, sleep=sleeps.append), "m/x")
    refusal = error_for_status(hub_reply(429, {"RateLimit": '"r";r=0;t=2'}), what="m/x", hub=True)
    assert isinstance(refusal, RetryableError)
    assert refusal.refusal is not None and refusal.refusal.wait == 2.0
    for _ in range(5):
        tries.failed(refusal)
    assert (tries.failures, tries.refusals, sleeps) == (0, 5, [2.0] * 5)
    # on the run's gate, the gate waits: nothing sleeps here
    gated = error_for_status(
        hub_reply(503, {"RateLimit": '"r";r=0;t=2'}, HubGate(HUB)), what="m/x", hub=True
    )
    assert isinstance(gated, RetryableError)
    assert gated.refusal is not None and gated.refusal.held
    tries.failed(gated)
    assert (tries.failures, len(sleeps)) == (0, 5)


def test_refusals_are_bounded_all_the_same() -> None:
    tries = Tries(RetryPolicy(sleep=lambda _: None), "m/x")
    refusal = error_for_status(hub_reply(429, {"RateLimit": '"r";r=0;t=0'}), what="m/x", hub=True)
    assert isinstance(refusal, RetryableError)
    with pytest.raises(NetworkError, match=f"refused {HUB_REFUSALS + 1} times"):
        for _ in range(HUB_REFUSALS + 1):
            tries.failed(refusal)


def test_a_wait_past_the_maximum_is_exit_5_naming_it() -> None:
    error = error_for_status(hub_reply(429, {"RateLimit": '"r";r=0;t=900'}), what="m/x", hub=True)
    assert type(error) is NetworkError and error.exit_code == 5
    assert "the Hub asks to wait 900 s; mdl waits at most 600 s" in error.message


def test_retry_after_alone_still_spends_a_try_and_a_cdn_refusal_is_no_hub_wait() -> None:
    after = error_for_status(hub_reply(429, {"Retry-After": "3"}), what="m/x", hub=True)
    assert isinstance(after, RetryableError)
    assert (after.retry_after, after.refusal) == (3.0, None)
    cdn = error_for_status(hub_reply(429, {"RateLimit": '"r";r=0;t=2'}), what="m/x", hub=False)
    assert isinstance(cdn, RetryableError) and cdn.refusal is None


def test_refusal_wait_reads_only_refusals() -> None:
    assert refusal_wait(200, {"RateLimit": '"r";r=0;t=2'}) is None
    assert refusal_wait(503, {"RateLimit": '"r";r=0;t=2'}) == 2.0
    assert refusal_wait(429, {}) is None


# -- what the refusals may cost: a floor per wait, a budget per run
# ------------------------------------------------------------------------------------------


class RefusingHub:
    """A Hub that answers every request 429 with ``RateLimit: t=<wait>``, noting the (fake) time
    each request reached it."""

    def __init__(self, clock: FakeClock, wait: int) -> None:
        self.clock, self.wait, self.times = clock, wait, list[float]()

    def __call__(self, request: httpx2.Request) -> httpx2.Response:
        self.times.append(self.clock.now)
        headers = {
            "RateLimit": f'"api";r=0;t={self.wait}',
            "RateLimit-Policy": '"api";q=1000;w=300',
        }
        return httpx2.Response(429, headers=headers, content=b"slow down")


def hub_on_fake_clock(wait: int) -> tuple[Hub, HubGate, RefusingHub]:
    """The run's client and gate as a session makes them, on a fake clock, before a refusing Hub."""
    gate, clock, _ = gate_on_fake_clock()
    server = RefusingHub(clock, wait)
    client = make_client(pool_size=1, transport=httpx2.MockTransport(server))
    gate.hook(client)
    return Hub(HUB, None, client=client), gate, server


def test_a_refusal_saying_wait_0_s_still_holds_the_next_request() -> None:
    """A Hub answering "t=0" is not asked again at once: each request at least MIN_HUB_WAIT after
    the last (before: 101 requests back to back)."""
    hub, gate, server = hub_on_fake_clock(0)
    with pytest.raises(NetworkError, match=f"refused {HUB_REFUSALS + 1} times") as caught:
        hub.commit_of("org/m", repo_type="model", revision="main", what="org/m")
    assert caught.value.exit_code == 5
    assert len(server.times) == HUB_REFUSALS + 1
    gaps = [b - a for a, b in zip(server.times, server.times[1:], strict=False)]
    assert min(gaps) >= MIN_HUB_WAIT
    # the last refusal closed the gate too: the run's other requests wait for it
    assert gate.waited == pytest.approx((HUB_REFUSALS + 1) * MIN_HUB_WAIT)


def test_the_run_waits_at_most_the_maximum_in_all() -> None:
    """'t=600' again and again: one wait of 600 s, then the file fails naming the total (before: 100
    waits of 600 s, 16.7 h)."""
    hub, gate, server = hub_on_fake_clock(int(MAX_HUB_WAIT))
    with pytest.raises(NetworkError) as caught:
        hub.commit_of("org/m", repo_type="model", revision="main", what="org/m")
    assert caught.value.exit_code == 5
    assert "waited 600 s on the Hub's rate limit; giving up" in caught.value.message
    assert server.times == [100.0, 100.0 + MAX_HUB_WAIT]
    assert gate.waited == MAX_HUB_WAIT


def test_the_budget_is_the_runs_not_each_operations() -> None:
    """Two operations on one run's gate: the first waits 400 s and fails on the second refusal (400
    more would pass 600 s); the second fails on its first, without another wait."""
    hub, gate, server = hub_on_fake_clock(400)
    for _ in range(2):
        with pytest.raises(NetworkError, match="waited 400 s on the Hub's rate limit; giving up"):
            hub.commit_of("org/m", repo_type="model", revision="main", what="org/m")
    assert server.times == [100.0, 500.0, 500.0]
    assert gate.waited == 400.0


def test_connections_refused_together_spend_the_budget_once() -> None:
    gate, _, sleeper = gate_on_fake_clock()
    for _ in range(8):  # eight connections told "t=0" at the same moment: one hold of 1 s
        gate.observe(429, {"RateLimit": '"api";r=0;t=0'})
    gate.enter()
    assert sleeper.waits == [MIN_HUB_WAIT]
    assert (gate.budget.held, gate.waits) == (MIN_HUB_WAIT, 1)


def test_a_refusal_no_gate_saw_has_the_same_floor_and_budget() -> None:
    """A CDN's refusal (no gate): its operation sleeps at least MIN_HUB_WAIT, MAX_HUB_WAIT in all."""
    sleeps: list[float] = []
    tries = Tries(RetryPolicy(sleep=sleeps.append), "m/x")
    now = error_for_status(hub_reply(429, {"RateLimit": '"r";r=0;t=0'}), what="m/x", hub=True)
    assert isinstance(now, RetryableError)
    assert now.refusal is not None and not now.refusal.held
    tries.failed(now)
    assert sleeps == [MIN_HUB_WAIT]
    long = error_for_status(hub_reply(429, {"RateLimit": '"r";r=0;t=599'}), what="m/x", hub=True)
    assert isinstance(long, RetryableError)
    tries.failed(long)
    with pytest.raises(NetworkError, match="waited 600 s on the Hub's rate limit; giving up"):
        tries.failed(long)
    assert sleeps == [MIN_HUB_WAIT, 599.0]


def test_a_refusal_is_decided_once_where_its_answer_is_first_seen() -> None:
    """The gate's response hook decides a refusal and marks the answer with it; the error and the
    retry budget read that mark: the gate closes once, whoever reads the answer after, and a
    refusal it saw with the run's budget spent fails without a wait."""
    gate, _, sleeper = gate_on_fake_clock()
    refuse = httpx2.MockTransport(
        lambda _: httpx2.Response(429, headers={"RateLimit": '"api";r=0;t=5'})
    )
    client = make_client(pool_size=1, transport=refuse)
    gate.hook(client)
    response = client.get(f"{HUB}/api/models/org/m")
    mark = refusal_of(response)
    assert mark == Refusal(5.0, held=True)
    assert refusal_of(response) is mark
    error = error_for_status(response, what="m", hub=True)
    assert isinstance(error, RetryableError) and error.refusal is mark
    assert (gate.waits, gate.budget.held) == (1, 5.0)  # closed once, for the one refusal
    sleeps: list[float] = []
    Tries(RetryPolicy(sleep=sleeps.append), "m").failed(error)
    assert sleeps == []  # the gate holds the next request: nothing sleeps here
    gate.budget.take(MAX_HUB_WAIT)  # the run's budget spent (by other connections' refusals)
    spent = client.get(f"{HUB}/api/models/org/m")
    assert refusal_of(spent) == Refusal(
        5.0, gave_up="waited 5 s on the Hub's rate limit; giving up"
    )
    late = error_for_status(spent, what="m", hub=True)
    assert isinstance(late, RetryableError)
    with pytest.raises(NetworkError, match="waited 5 s on the Hub's rate limit; giving up"):
        Tries(RetryPolicy(sleep=sleeps.append), "m").failed(late)
    assert sleeps == [] and gate.waits == 1 and sleeper.waits == [5.0]
