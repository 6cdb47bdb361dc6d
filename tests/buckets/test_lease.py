"""mdl/buckets/lease.py: the lease protocol's races with controlled clocks, on an in-memory store
(tests/buckets/memstore.py) that stands in for the store only. Two takers, renewal lost, takeover
of a stale lease, machines whose clocks disagree, a leader that comes back, waiting, the probe,
and a model check over random interleavings: never two holders of a live lease."""

from __future__ import annotations

import itertools
import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from buckets.memstore import MemoryStore
from hypothesis import given, settings
from hypothesis import strategies as st

from mdl.buckets import lease as lease_module
from mdl.buckets.lease import (
    LOST_MARGIN,
    TERM,
    TERMS,
    Lease,
    LeaseLost,
    Renewing,
    default_poll,
    holder_of,
    honours_conditions,
    lease_uri,
    take,
    term_of,
    wait_for,
)
from mdl.errors import InterruptedByUserError, NetworkError

OBJECT = "s3://mirror/models/m/model.safetensors"
LEASE = lease_uri(OBJECT)
BOUND = 30.0  # seconds a thread may take on a busy machine; only reached when a test fails


def body(store: MemoryStore, uri: str = LEASE) -> dict[str, object]:
    parsed = json.loads(store.objects()[uri])
    assert isinstance(parsed, dict)
    return parsed


def taken(store: MemoryStore, holder: str) -> Lease:
    lease = take(store, LEASE, holder=holder)
    assert lease is not None
    return lease


# --- taking ---


def test_take_creates_a_lease_others_cannot_take() -> None:
    store = MemoryStore()
    lease = taken(store, "a")
    assert body(store)["holder"] == "a" and body(store)["term"] == TERM
    assert take(store, LEASE, holder="b") is None
    assert body(store)["holder"] == "a"
    assert lease.etag == store.head(LEASE).etag  # type: ignore[union-attr]


def test_every_write_of_a_lease_has_new_bytes() -> None:
    """S3's ETag is the MD5 of the body (as the memory store's): a renewal that wrote the same
    bytes would keep the same ETag, and a stale If-Match would still match."""
    store = MemoryStore()
    lease = taken(store, "a")
    etags = {lease.etag}
    for _ in range(5):
        lease.renew()
        etags.add(lease.etag)
    assert len(etags) == 6


def test_two_pods_with_one_host_name_never_both_hold() -> None:
    """The nonce keeps a takeover's ETag apart from the lapsed lease's, holder names alike."""
    store = MemoryStore()
    first = taken(store, "pod")
    store.advance(TERM + 1)
    second = taken(store, "pod")
    with pytest.raises(LeaseLost):
        first.renew()
    second.renew()


@pytest.mark.parametrize("stale", [False, True])
def test_two_takers_racing_one_wins(stale: bool) -> None:
    """Both machines reach the same conditional write at once (a barrier inside the store call):
    a fresh create, or the takeover of one stale lease by If-Match on its ETag."""
    racing = "replace" if stale else "create"
    for _ in range(50):
        store = MemoryStore()
        if stale:
            store.put(LEASE, b'{"holder": "dead", "term": 30, "n": "1"}')
            store.advance(TERM + 1)
        barrier = threading.Barrier(2, timeout=BOUND)
        arrived = threading.local()

        def meet(method: str, uri: str, barrier: threading.Barrier = barrier) -> None:
            if method == racing and not getattr(arrived, "done", False):
                arrived.done = True
                barrier.wait()

        store.before = meet
        got: dict[str, Lease | None] = {}

        def run(name: str, store: MemoryStore = store, got: dict[str, Lease | None] = got) -> None:
            got[name] = take(store, LEASE, holder=name)

        threads = [threading.Thread(target=run, args=(name,)) for name in ("a", "b")]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(BOUND)
        winners = [name for name, lease in got.items() if lease is not None]
        assert len(got) == 2 and len(winners) == 1, got
        assert body(store)["holder"] == winners[0]
        assert store.calls[racing] == 2


def test_a_lease_released_between_create_and_read_is_created_again() -> None:
    store = MemoryStore()
    store.put(LEASE, b"held")

    def release_it(method: str, uri: str) -> None:
        if method == "read":
            store.before = None
            assert store.delete(LEASE)

    store.before = release_it
    lease = taken(store, "a")
    assert store.calls["create"] == 2 and body(store)["holder"] == "a"
    assert lease.etag == store.head(LEASE).etag  # type: ignore[union-attr]


def test_a_lease_that_keeps_vanishing_is_given_up_on() -> None:
    """Another machine creates and releases it between each of our looks: a bounded loop."""
    store = MemoryStore()

    def churn(method: str, uri: str) -> None:
        store.before = None
        if method == "create":
            store.put(LEASE, b"theirs")
        elif method == "read":
            store.delete(LEASE)
        store.before = churn

    store.before = churn
    assert take(store, LEASE, holder="a") is None
    assert store.calls["create"] == store.calls["read"] == 5


# --- staleness: the store's clock, never the machine's ---


def test_a_stale_lease_is_taken_over_and_the_old_leader_loses_it() -> None:
    store = MemoryStore()
    leader = taken(store, "leader")
    store.advance(TERM)
    assert take(store, LEASE, holder="next") is None  # exactly one term old: still live
    store.advance(0.5)
    successor = taken(store, "next")
    assert body(store)["holder"] == "next"
    # the leader comes back (a long GC pause, a network partition): it holds nothing
    with pytest.raises(LeaseLost):
        leader.renew()
    leader.release()
    assert body(store)["holder"] == "next"
    assert successor.etag == store.head(LEASE).etag  # type: ignore[union-attr]
    successor.release()
    assert store.objects() == {}


@pytest.mark.parametrize("skew", [-60.0, 60.0])
def test_the_machines_clock_never_judges_a_lease(
    skew: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Machines may disagree by a minute: a live lease is never taken over however fast this
    machine's clock runs, and a lapsed one is taken however slow it runs."""
    store = MemoryStore(clock=time.time())
    real = time.time
    monkeypatch.setattr(time, "time", lambda: real() + skew)
    taken(store, "a")
    store.advance(TERM - 1)
    assert take(store, LEASE, holder="b") is None
    store.advance(2)
    assert taken(store, "b").holder == "b"


def test_the_term_written_in_a_lease_is_its_holders() -> None:
    """A holder running with a longer term is not taken over at ours."""
    store = MemoryStore()
    store.put(LEASE, json.dumps({"holder": "slow", "term": 120, "n": "x"}).encode())
    store.advance(TERM + 1)
    assert take(store, LEASE, holder="a") is None
    store.advance(120)
    assert taken(store, "a").holder == "a"


@pytest.mark.parametrize(
    "there",
    [
        b"\xff\xfe not json",
        b"[1, 2]",
        b'{"term": "soon"}',
        b'{"term": true}',
        b'{"term": 1e300}',  # a garbage term must not hold the object for ages
        b'{"term": NaN}',
        b'{"term": 0.001}',  # nor make a live lease look lapsed
        b"[" * 100_000,
    ],
)
def test_a_lease_body_not_ours_is_a_lease_of_our_term(there: bytes) -> None:
    store = MemoryStore()
    store.put(LEASE, there)
    store.advance(TERM - 1)
    assert take(store, LEASE, holder="a") is None
    store.advance(2)
    assert taken(store, "a").holder == "a"


# --- renewing and releasing ---


def test_renew_raises_when_another_holder_replaced_the_lease() -> None:
    store = MemoryStore()
    lease = taken(store, "a")
    store.put(LEASE, b'{"holder": "b"}')
    with pytest.raises(LeaseLost):
        lease.renew()


def test_release_leaves_another_holders_lease_and_removes_ours() -> None:
    store = MemoryStore()
    lease = taken(store, "a")
    store.put(LEASE, b'{"holder": "b"}')
    lease.release()
    assert body(store) == {"holder": "b"}
    store.delete(LEASE)
    mine = taken(store, "a")
    mine.release()
    assert store.objects() == {}


@pytest.mark.parametrize("failing", ["head", "delete"])
def test_a_release_that_fails_is_logged_not_raised(
    failing: str, caplog: pytest.LogCaptureFixture
) -> None:
    store = MemoryStore()
    lease = taken(store, "a")
    store.fail_next(failing)
    with caplog.at_level(logging.WARNING, logger="mdl.lease"):
        lease.release()
    assert [r.getMessage() for r in caplog.records if "could not release" in r.getMessage()]
    assert LEASE in store.objects()  # it lapses within a term


def wait_until(flag: threading.Event) -> None:
    assert flag.wait(BOUND), "not within the bound (the test failed, or the machine is stuck)"


def test_renewing_keeps_the_lease_and_stops_at_exit() -> None:
    store = MemoryStore()
    lease = taken(store, "a")
    first = lease.etag
    three = threading.Event()

    def count(method: str, uri: str) -> None:
        if method == "replace" and store.calls["replace"] >= 3:
            three.set()

    store.before = count
    with Renewing(lease, every=0.001) as renewing:
        wait_until(three)
    assert not renewing._thread.is_alive()  # it starts the renewals: none starts after the exit
    assert renewing._call is not None
    renewing._call.join(BOUND)  # one may have been in flight
    assert not renewing.lost.is_set()
    assert lease.etag != first and lease.etag == store.head(LEASE).etag  # type: ignore[union-attr]


def test_renewing_sets_lost_when_the_lease_was_taken() -> None:
    store = MemoryStore()
    lease = taken(store, "a")
    with Renewing(lease, every=0.001) as renewing:
        store.put(LEASE, b'{"holder": "b"}')
        wait_until(renewing.lost)
    assert body(store) == {"holder": "b"}


def test_renewing_tries_again_after_a_network_failure() -> None:
    store = MemoryStore()
    lease = taken(store, "a")
    store.fail_next("replace", 2)
    fourth = threading.Event()
    store.before = lambda method, uri: fourth.set() if store.calls["replace"] >= 3 else None
    with Renewing(lease, every=0.001, clock=lambda: 0.0) as renewing:
        wait_until(fourth)
    assert not renewing.lost.is_set()
    assert renewing._call is not None
    renewing._call.join(BOUND)
    assert lease.etag == store.head(LEASE).etag  # type: ignore[union-attr]


def replaces(store: MemoryStore, at_least: int) -> threading.Event:
    """Set once the store has seen ``at_least`` replaces (counted as each one starts)."""
    reached = threading.Event()

    def count(method: str, uri: str) -> None:
        if method == "replace" and store.calls["replace"] + 1 >= at_least:
            reached.set()

    store.before = count
    return reached


def test_renewing_gives_up_nearly_a_term_after_its_last_good_renewal() -> None:
    """Lost a margin before a term after the last good renewal was sent (the store stamps it
    later): the lease is counted lost before the store lets another machine take it."""
    store = MemoryStore()
    lease = taken(store, "a")
    now = [0.0]
    with Renewing(lease, every=0.001, clock=lambda: now[0]) as renewing:
        assert renewing.every == 0.001 and renewing.margin == TERM * LOST_MARGIN
        wait_until(replaces(store, 2))
        now[0] = 20.0  # renewals sent at 20 s get through (the third started: the second done)
        wait_until(replaces(store, store.calls["replace"] + 3))
        store.fail_next("replace", 10**6)
        now[0] = TERM  # past the first deadline (27 s), not the one of the renewal sent at 20 s
        wait_until(replaces(store, store.calls["replace"] + 2))  # the watcher looked at 30 s
        assert not renewing.lost.is_set()
        now[0] = 20.0 + TERM - renewing.margin
        wait_until(renewing.lost)


def test_a_renewal_stuck_in_the_network_loses_the_lease_before_another_can_take_it() -> None:
    """A renewal blocked for minutes (a read timeout times botocore's attempts): ``lost`` is set
    at its deadline while it is still in flight, before the store's term lets another take over;
    the exit does not wait on it."""
    store = MemoryStore()
    lease = taken(store, "a")
    now = [0.0]
    stuck, unstick = threading.Event(), threading.Event()

    def hang(method: str, uri: str) -> None:
        if method == "replace" and threading.current_thread().name == "mdl-lease-renewal":
            stuck.set()
            unstick.wait()

    store.before = hang
    try:
        with Renewing(lease, every=0.001, clock=lambda: now[0]) as renewing:
            wait_until(stuck)
            now[0] = TERM - renewing.margin  # the store's term is not over: nobody can take it
            assert take(store, LEASE, holder="b") is None
            wait_until(renewing.lost)
            store.advance(TERM + 1)
            assert take(store, LEASE, holder="b") is not None  # only now another holds it
        assert renewing._call is not None and renewing._call.is_alive()  # still stuck
    finally:
        unstick.set()


def test_exit_and_release_do_not_wait_on_a_stuck_renewal(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Ctrl-C while a renewal hangs: the ``with`` ends at once and the release gives up after
    RELEASE_WAIT, leaving the lease to lapse."""
    monkeypatch.setattr(lease_module, "RELEASE_WAIT", 0.01)
    store = MemoryStore()
    lease = taken(store, "a")
    stuck, unstick, left = threading.Event(), threading.Event(), threading.Event()

    def hang(method: str, uri: str) -> None:
        if method == "replace":
            stuck.set()
            unstick.wait()

    def run() -> None:
        try:
            with Renewing(lease, every=0.001):
                wait_until(stuck)
                raise KeyboardInterrupt
        except KeyboardInterrupt:
            left.set()

    store.before = hang
    try:
        threading.Thread(target=run, daemon=True).start()
        wait_until(left)
        lease.release()  # the renewal holds the lease's lock: bounded by RELEASE_WAIT
        assert LEASE in store.objects() and store.calls["delete"] == 0
        assert "left to lapse" in caplog.text
    finally:
        unstick.set()


def test_renewing_runs_at_a_third_of_the_leases_term() -> None:
    lease = take(MemoryStore(), LEASE, holder="a", term=6.0)
    assert lease is not None
    assert Renewing(lease).every == 2.0


def test_renewing_exits_at_once_between_renewals() -> None:
    store = MemoryStore()
    renewing = Renewing(taken(store, "a"), every=3600.0)
    leaving = threading.Thread(target=lambda: renewing.__enter__().__exit__(None, None, None))
    leaving.start()
    leaving.join(BOUND)
    assert not leaving.is_alive() and not renewing._thread.is_alive()
    assert store.calls["replace"] == 0


# --- waiting on another machine's lease ---


def waiting(
    store: MemoryStore, step: Callable[[int], object], *, cancel: threading.Event | None = None
) -> str:
    """wait_for with no sleeps: each poll runs ``step(attempt)`` and waits 0 s."""

    def poll(attempt: int) -> float:
        step(attempt)
        return 0.0

    return wait_for(store, OBJECT, cancel=cancel or threading.Event(), poll=poll)


def test_wait_ends_ready_when_the_object_appears(caplog: pytest.LogCaptureFixture) -> None:
    store = MemoryStore()
    taken(store, "leader")
    seen: list[int] = []

    def step(attempt: int) -> None:
        seen.append(attempt)
        store.advance(TERM / 2)  # the leader keeps renewing
        store.put(LEASE, json.dumps({"holder": "leader", "n": attempt}).encode())
        if attempt == 3:
            store.put(OBJECT, b"weights")

    with caplog.at_level(logging.INFO, logger="mdl.lease"):
        assert waiting(store, step) == "ready"
    assert seen == [0, 1, 2, 3]
    said = [r.getMessage() for r in caplog.records]
    assert said == [f"waiting on {OBJECT}: 'leader' holds its lease"]


def test_wait_ends_free_when_the_lease_is_released_without_the_object() -> None:
    store = MemoryStore()
    taken(store, "leader")
    assert waiting(store, lambda attempt: attempt == 1 and store.delete(LEASE)) == "free"


def test_wait_ends_ready_when_the_object_comes_between_its_looks() -> None:
    """The leader uploads and releases between our look at the object and our look at the
    lease: the object is looked at again rather than fetched from the source."""
    store = MemoryStore()
    taken(store, "leader")

    def upload_and_release(method: str, uri: str) -> None:
        if method == "read":
            store.before = None
            store.put(OBJECT, b"weights")
            store.delete(LEASE)

    store.before = upload_and_release
    assert waiting(store, lambda attempt: None) == "ready"


def test_wait_ends_free_when_the_lease_lapses() -> None:
    store = MemoryStore()
    taken(store, "leader")  # then killed: never renewed
    assert waiting(store, lambda attempt: store.advance(TERM / 4)) == "free"
    assert store.clock - store.head(LEASE).modified > TERM  # type: ignore[union-attr]


def test_wait_raises_when_the_run_is_cancelled() -> None:
    store = MemoryStore()
    taken(store, "leader")
    cancel = threading.Event()

    def interrupt(attempt: int) -> None:
        if attempt == 2:
            cancel.set()

    with pytest.raises(InterruptedByUserError):
        waiting(store, interrupt, cancel=cancel)
    assert store.calls["read"] == 3


def test_the_default_poll_grows_to_two_seconds() -> None:
    assert [default_poll(n) for n in range(6)] == [0.25, 0.5, 1.0, 2.0, 2.0, 2.0]
    assert default_poll(10**6) == 2.0


# --- the probe ---


@pytest.mark.parametrize(
    ("ignoring", "honours"),
    [({}, True), ({"ignore_conditions": True}, False), ({"ignore_if_match": True}, False)],
)
def test_the_probe_tells_a_store_that_ignores_conditions(
    ignoring: dict[str, bool], honours: bool
) -> None:
    store = MemoryStore(**ignoring)
    assert honours_conditions(store, "s3://mirror/.mdl-probe-1") is honours
    assert store.objects() == {}


def test_the_probe_needs_the_right_version_replaced() -> None:
    """A store that refuses every If-Match (or every replace) cannot renew a lease either."""
    store = MemoryStore()
    store.before = lambda method, uri: store.put(uri, b"x") if method == "replace" else None
    assert honours_conditions(store, "s3://mirror/.mdl-probe-1") is False
    assert store.objects() == {"s3://mirror/.mdl-probe-1": b"x"}  # not our version: left


def test_the_probe_removes_what_a_crashed_probe_left() -> None:
    store = MemoryStore()
    store.put("s3://mirror/.mdl-probe-1", b"a")
    assert honours_conditions(store, "s3://mirror/.mdl-probe-1") is True
    assert store.objects() == {} and store.calls["create"] == 3


def test_the_probe_removes_its_object_when_its_second_write_fails() -> None:
    store = MemoryStore()

    def fail_second(method: str, uri: str) -> None:
        if method == "create" and store.calls["create"] == 1:
            store.fail_next("create")

    store.before = fail_second
    with pytest.raises(NetworkError):
        honours_conditions(store, "s3://mirror/.mdl-probe-1")
    assert store.objects() == {}


def test_a_store_that_ignores_conditions_gives_two_holders() -> None:
    """Why the probe runs: without it the lease means nothing (and the model check below would
    fail)."""
    store = MemoryStore(ignore_conditions=True)
    assert take(store, LEASE, holder="a") is not None
    assert take(store, LEASE, holder="b") is not None


def test_a_store_that_ignores_if_match_gives_two_holders_at_a_takeover() -> None:
    """Why the probe replaces on a wrong version too: If-None-Match alone does not make a lease.
    Two machines read the same lapsed lease and both replace it on its version."""
    store = MemoryStore(ignore_if_match=True)
    taken(store, "a")
    store.advance(TERM + 1)
    other: list[Lease | None] = []

    def c_first(method: str, uri: str) -> None:
        if method == "replace" and not other:
            store.before = None
            other.append(take(store, LEASE, holder="c"))

    store.before = c_first
    assert take(store, LEASE, holder="b") is not None
    assert other[0] is not None


# --- the model check ---


@dataclass
class Machine:
    name: str
    lease: Lease | None = None
    sent: float = 0.0  # the store's clock before its last good write: its lease is live till +TERM


# (action, machine, seconds the store's clock moves, before which store call of the next step
# this one runs: None = on its own). "act": take when the machine holds none, else renew (no step
# is wasted, so short runs reach the races).
STEPS = st.tuples(
    st.sampled_from(["act", "act", "release", "advance"]),
    st.integers(0, 2),
    st.sampled_from([1.0, 9.0, TERM - 1, TERM, TERM + 1, 2 * TERM]),
    st.sampled_from([None, None, None, 0, 1, 2, 3]),
)


@settings(max_examples=1000)
@given(machines=st.integers(2, 3), one_name=st.booleans(), steps=st.lists(STEPS, max_size=40))
def test_never_two_holders_of_a_live_lease(
    machines: int, one_name: bool, steps: list[tuple[str, int, float, int | None]]
) -> None:
    """Random interleavings of take, renew, release and the store's clock, by 2-3 machines (with
    one host name, or not): a step may run in the middle of another's (between its create and
    read, its read and replace). At every store time at most one machine believes it holds a live
    lease, believing it from the store time before its last good write."""
    store = MemoryStore()
    fleet = [Machine("host" if one_name else f"m{i}") for i in range(machines)]
    pending: list[tuple[int, tuple[str, int, float, int | None]]] = []
    current = [-1]  # the machine whose step runs now: a machine never interrupts itself

    def check() -> None:
        live = [m for m in fleet if m.lease is not None and store.clock <= m.sent + TERM]
        assert len(live) <= 1, [(m.name, m.sent, store.clock) for m in live]

    def run(step: tuple[str, int, float, int | None]) -> None:
        action, who, seconds, _ = step
        machine = fleet[who % machines]
        before = store.clock
        if action == "advance":
            store.advance(seconds)
        elif action == "act" and machine.lease is None:
            machine.lease = take(store, LEASE, holder=machine.name)
            machine.sent = before
        elif action == "act" and machine.lease is not None:
            try:
                machine.lease.renew()
                machine.sent = before
            except LeaseLost:
                machine.lease = None
        elif action == "release" and machine.lease is not None:
            machine.lease.release()
            machine.lease = None
        check()

    calls = itertools.count()

    def interleave(method: str, uri: str) -> None:
        # run a pending step before the n-th store call of the current one (not inside itself)
        index = next(calls)
        if pending and pending[0][0] <= index and pending[0][1][1] % machines != current[0]:
            store.before = None
            run(pending.pop(0)[1])
            store.before = interleave

    store.before = interleave
    for step in steps:
        if step[3] is not None and not pending:
            calls = itertools.count()
            pending.append((step[3], step))
            continue
        calls = itertools.count()
        current[0] = step[1] % machines
        run(step)
        current[0] = -1
        while pending:  # the step made fewer store calls than asked: run it after
            run(pending.pop(0)[1])


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.floats() | st.integers() | st.text(),
    lambda inner: st.lists(inner) | st.dictionaries(st.text(), inner),
    max_leaves=10,
)
LEASE_BODIES = st.binary(max_size=300) | st.builds(
    lambda holder, term, more: json.dumps({"holder": holder, "term": term, **more}).encode(),
    JSON_VALUES,
    JSON_VALUES,
    st.dictionaries(st.text(max_size=5), JSON_VALUES, max_size=3),
)


@given(LEASE_BODIES)
def test_any_lease_body_is_read_without_raising(data: bytes) -> None:
    """A lease's body is anyone's bytes: its term is believed only in range, else ours; its
    holder is shown escaped and short."""
    term = term_of(data, default=TERM)
    assert term == TERM or TERMS[0] <= term <= TERMS[1]
    shown = holder_of(data)
    assert shown.isprintable() and len(shown) <= 200
