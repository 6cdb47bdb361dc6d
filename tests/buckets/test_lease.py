"""mdl/buckets/lease.py: numbered-generation leases in mdl's namespace of a mirror, with
controlled clocks, on an in-memory store (tests/buckets/memstore.py) and on a real folder. Two
takers, renewal lost, takeover of a lapsed generation, a term no body can change, waits bounded by
the holder's progress whatever another machine writes, the probe, and a model check over random
interleavings: never two holders of a live lease."""

from __future__ import annotations

import itertools
import json
import logging
import multiprocessing
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import runfixtures
from buckets.memstore import MemoryStore
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from profiles import examples

from mdl.buckets import lease as lease_module
from mdl.buckets.folder import FolderWriter
from mdl.buckets.lease import (
    BODY_LIMIT,
    LOST_MARGIN,
    SLOW_RATE,
    STALL_TERMS,
    TERM,
    GaveUp,
    Lease,
    LeaseLost,
    Renewing,
    default_poll,
    honours_conditions,
    lease_body,
    look,
    take,
    wait_for,
)
from mdl.buckets.names import Generation, in_namespace, namespace, object_of
from mdl.errors import InterruptedByUserError, NetworkError
from mdl.wait import Wait

TEMPLATE = "s3://mirror/models/{model}/{path}"
ROOT = "s3://mirror/models/.mdl/"
OBJECT = "s3://mirror/models/m/model.safetensors"
PREFIX = ROOT + "leases/m/model.safetensors/"  # where its generations lie, as written on the wire
LEASE = Generation.of(ROOT, OBJECT)
SIZE = 100 << 20  # the object's size: the whole wait's bound is 2 terms + SIZE / SLOW_RATE
BOUND = 30.0  # seconds a thread may take on a busy machine; only reached when a test fails


def gen(number: int) -> str:
    return f"{PREFIX}{number}"


def body(store: MemoryStore, number: int) -> dict[str, object]:
    parsed = json.loads(store.objects()[gen(number)])
    assert isinstance(parsed, dict)
    return parsed


def taken(store: MemoryStore, holder: str, **more: object) -> Lease:
    lease = take(store, LEASE, holder=holder, **more)  # type: ignore[arg-type]
    assert lease is not None
    return lease


# --- the namespace ---


@pytest.mark.parametrize(
    ("template", "root"),
    [
        (TEMPLATE, ROOT),
        ("s3://b/{model}/{path}", "s3://b/.mdl/"),
        ("file:///shared/hub/{repo}/{commit}/{path}", "file:///shared/hub/.mdl/"),
        ("s3://b/by-hash/{sha256}", "s3://b/by-hash/.mdl/"),
        ("s3://b/hub/m-{model}/{path}", "s3://b/hub/.mdl/"),  # 'm-…' is never '.mdl'
        ("s3://b/{path}", None),  # a Hub file may be named '.mdl/…'
        ("s3://b/{revision}/{model}/{path}", None),
        ("s3://b/hub/.{model}/{path}", None),  # a model 'mdl' would be '.mdl'
        ("s3://b/hub/.md{model}/{path}", None),
    ],
)
def test_mdls_namespace_is_a_folder_no_filled_name_can_be(template: str, root: str | None) -> None:
    assert namespace(template) == root


@given(
    model=st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,20}", fullmatch=True),
    path=st.lists(st.text(min_size=1, max_size=8).filter(lambda s: "/" not in s), min_size=1),
)
def test_no_model_file_can_collide_with_an_mdl_object(model: str, path: list[str]) -> None:
    """A catalog model name never starts with '.': no filled object is in the namespace, and its
    lease's generations are under a folder of its own."""
    uri = f"s3://mirror/models/{model}/{'/'.join(path)}"
    assert not in_namespace(uri) and not uri.startswith(ROOT)
    lease = Generation.of(ROOT, uri, 7)
    assert lease.uri.startswith(ROOT + "leases/") and object_of(lease.uri) == uri


# --- taking ---


def test_take_creates_the_first_generation_others_cannot_take() -> None:
    store = MemoryStore()
    lease = taken(store, "a")
    assert lease.uri == gen(1) and body(store, 1)["holder"] == "a"
    assert take(store, LEASE, holder="b") is None
    assert list(store.objects()) == [gen(1)]


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


def test_a_renewal_keeps_its_generations_token() -> None:
    store = MemoryStore()
    lease = taken(store, "a")
    lease.renew()
    assert body(store, 1)["token"] == lease.token == look(store, LEASE).token
    other = taken_after_release(store, lease)
    assert other.token != lease.token and other.after == lease.token  # its parts: reused


def taken_after_release(store: MemoryStore, lease: Lease) -> Lease:
    lease.release()
    return taken(store, "b")


def test_a_lapsed_generation_is_taken_over_by_creating_the_next() -> None:
    """The lapsed generation is never written by the taker, nor removed by it, nor the ones below
    (a generation is found by walking the run from 1 by name: a gap would hand number 1 out
    again; ``prune --mirror`` removes expired ones). Its old holder learns it lost the lease at
    its next renewal."""
    store = MemoryStore()
    first = taken(store, "pod")
    store.advance(TERM + 1)
    second = taken(store, "pod")  # the same host name: the number tells them apart
    assert second.uri == gen(2) and sorted(store.objects()) == [gen(1), gen(2)]
    with pytest.raises(LeaseLost):
        first.renew()
    second.renew()
    store.advance(TERM + 1)
    assert taken(store, "pod").uri == gen(3)
    assert sorted(store.objects()) == [gen(1), gen(2), gen(3)]


def test_a_term_written_in_a_body_is_never_believed() -> None:
    """Today's bug: ``"term": 3600`` held a fleet for an hour. A lease lapses after mdl's term."""
    store = MemoryStore()
    store.put(gen(1), json.dumps({"holder": "x", "term": 3600, "n": "1"}).encode())
    assert take(store, LEASE, holder="b") is None
    store.advance(TERM + 1)
    assert taken(store, "b").uri == gen(2)


def test_a_release_marks_the_generation_and_numbers_are_never_reused() -> None:
    store = MemoryStore()
    lease = taken(store, "a")
    lease.release()
    assert body(store, 1)["released"] is True
    assert taken(store, "b").uri == gen(2)  # at once: no term to wait


def test_a_release_never_touches_another_holders_generation() -> None:
    store = MemoryStore()
    lease = taken(store, "a")
    store.put(gen(1), b'{"holder": "b"}')  # not ours any more (another tool wrote over it)
    lease.release()
    assert json.loads(store.objects()[gen(1)]) == {"holder": "b"}


@pytest.mark.parametrize("failing", ["replace"])
def test_a_release_that_fails_is_logged_not_raised(
    failing: str, caplog: pytest.LogCaptureFixture
) -> None:
    store = MemoryStore()
    lease = taken(store, "a")
    store.fail_next(failing)
    with caplog.at_level(logging.WARNING, logger="mdl.lease"):
        lease.release()
    assert [r.getMessage() for r in caplog.records if "could not release" in r.getMessage()]
    assert "released" not in body(store, 1)  # it lapses within a term


@pytest.mark.parametrize("lapsed", [False, True])
def test_two_takers_racing_one_wins(lapsed: bool) -> None:
    """Both machines reach the same exclusive create at once (a barrier inside the store call): a
    fresh lease, or the takeover of one lapsed generation."""
    for _ in range(30):
        store = MemoryStore()
        if lapsed:
            store.put(gen(1), lease_body("dead"))
            store.advance(TERM + 1)
        barrier = threading.Barrier(2, timeout=BOUND)
        arrived = threading.local()

        def meet(method: str, uri: str, barrier: threading.Barrier = barrier) -> None:
            if method == "create" and not getattr(arrived, "done", False):
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
        number = 2 if lapsed else 1
        assert body(store, number)["holder"] == winners[0]
        assert gen(number + 1) not in store.objects()


def _take_in_process(lease: Generation, go: object, out: object) -> None:
    go.wait(30)  # type: ignore[attr-defined]
    lease = take(FolderWriter(), lease, holder=str(os.getpid()))
    out.put(None if lease is None else lease.number)  # type: ignore[attr-defined]


@pytest.mark.slow  # real processes
def test_processes_taking_over_a_lapsed_lease_on_a_folder_never_both_win(tmp_path: Path) -> None:
    """On a real folder, with no lock anywhere: four processes take over one lapsed generation at
    once; exactly one creates the next."""
    folder = tmp_path / ".mdl" / "leases" / "m" / "w.bin"
    lease = Generation.of(f"file://{tmp_path}/.mdl/", f"file://{tmp_path}/m/w.bin")
    context = multiprocessing.get_context("fork")
    for round_ in range(3):
        lapsed = FolderWriter().create(lease.at(round_ + 1).uri, lease_body("dead"))
        assert lapsed is not None
        old = (folder / str(round_ + 1)).stat().st_mtime - 3600
        os.utime(folder / str(round_ + 1), (old, old))
        go, out = context.Event(), context.Queue()
        processes = [
            context.Process(target=_take_in_process, args=(lease, go, out)) for _ in range(4)
        ]
        for process in processes:
            process.start()
        go.set()
        won = [out.get(timeout=60) for _ in processes]
        for process in processes:
            process.join(timeout=60)
            assert process.exitcode == 0
        assert sorted(won, key=str) == [round_ + 2, None, None, None]
        (folder / str(round_ + 2)).unlink()  # the next round's lapsed generation is ours


# --- any object at a lease's name ---


def _hostile(folder: Path, kind: str) -> None:
    """Something not a lease at generation 1 of ``folder`` (another user of the share)."""
    folder.mkdir(parents=True, exist_ok=True)
    where = folder / "1"
    if kind == "fifo":
        os.mkfifo(where)
    elif kind == "dir":
        (where / "x.bin").parent.mkdir()
        (where / "x.bin").write_bytes(b"x")
    elif kind == "dangling":
        where.symlink_to(folder / "nowhere")
    elif kind == "link":
        (folder.parent / "elsewhere").write_bytes(lease_body("liar"))
        where.symlink_to(folder.parent / "elsewhere")
    elif kind == "huge":
        with where.open("wb") as sparse:
            sparse.truncate(1 << 30)  # 1 GiB, no disk
    elif kind == "garbage":
        where.write_bytes(b"\xff" * 100)


KINDS = ["fifo", "dir", "dangling", "link", "huge", "garbage"]


@pytest.mark.parametrize("kind", KINDS)
def test_any_object_at_a_lease_name_is_stepped_over(
    tmp_path: Path, kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Today a FIFO or a dangling link looped at ~30 turns/s and a folder was exit 1: each is
    now a generation that is not a live lease, taken over at once by the next number, and read
    a few KiB at most."""
    folder = tmp_path / "hub" / ".mdl" / "leases" / "m" / "w.bin"
    _hostile(folder, kind)
    obj = "file://" + str(tmp_path / "hub" / "m" / "w.bin")
    lease = Generation.of(f"file://{tmp_path}/hub/.mdl/", obj)
    sizes: list[int] = []
    real_read = os.read
    monkeypatch.setattr(os, "read", lambda fd, n: sizes.append(n) or real_read(fd, n))
    writer = FolderWriter()
    found = look(writer, lease)
    assert found.state != "live"
    hour = threading.Event()
    state = wait_for(writer, obj, lease, size=10, wait=Wait(cancel=hour), poll=lambda n: 3600.0)
    assert state == "free"  # at once: nothing there holds the object
    took = take(writer, lease, holder="me")
    assert took is not None and took.number >= 2
    assert max(sizes, default=0) <= BODY_LIMIT + 1  # a 1 GiB file: a few KiB read at most
    assert bool(sizes) is (kind in ("huge", "garbage"))  # the others are never opened to read


def test_a_huge_lease_object_in_a_store_is_not_read() -> None:
    store = MemoryStore()
    store.put(gen(1), b"{" + b" " * (1 << 20) + b"}")
    assert look(store, LEASE).state == "foreign"
    assert taken(store, "me").number == 2


@given(st.binary(max_size=300) | st.builds(json.dumps, st.dictionaries(st.text(), st.integers())))
def test_any_lease_body_is_read_without_raising(data: bytes | str) -> None:
    store = MemoryStore()
    store.put(gen(1), data.encode() if isinstance(data, str) else data)
    found = look(store, LEASE)
    assert found.holder.isprintable() and len(found.holder) <= 200
    assert found.token is None or lease_module.TOKEN.fullmatch(found.token)


def test_names_that_are_not_generations_cost_nothing() -> None:
    """2,000 foreign names beside a live generation: the lease is judged as without them (issue
    68: they made every machine take the lease)."""
    store = MemoryStore()
    for n in range(2000):
        store.put(f"{PREFIX}x{n}", b"")
    first = taken(store, "a")
    found = look(store, LEASE)
    assert (found.state, found.number, found.token) == ("live", 1, first.token)
    assert take(store, LEASE, holder="b") is None


@pytest.mark.parametrize("many", [1, 20_001])
def test_names_past_the_last_generation_and_many_names_cost_nothing(many: int) -> None:
    """Issue 75, C: one file named with 30 nines was the "highest generation"; the first machine
    took 10^30, which no other parsed, and every machine went to the origin; 20,001 names made
    the lease "unknown" (4.00x). A generation is looked up by its name (1 to GENERATIONS): the
    names beside it are never listed, whatever they are."""
    store = MemoryStore()
    store.put(f"{PREFIX}{'9' * 30}", b"x")
    store.put(f"{PREFIX}{'9' * 31}", b"x")
    store.put(f"{PREFIX}{lease_module.names.GENERATIONS + 1}", b"x")
    for n in range(many):
        store.put(f"{PREFIX}x{n}", b"")
    first = taken(store, "a")
    assert first.number == 1
    assert take(store, LEASE, holder="b") is None  # one holder
    assert store.calls["listing"] == 0
    found = look(store, LEASE)
    assert (found.state, found.number, found.token) == ("live", 1, first.token)


def test_a_run_of_generations_filled_by_another_tenant_still_elects_one_holder() -> None:
    """Every number 1 to GENERATIONS held by junk: the last is taken over in place, on the
    version read, by one machine; the others wait on it; its holder renews it by its version."""
    store = MemoryStore()
    for n in range(1, lease_module.names.GENERATIONS + 1):
        store.put(gen(n), b"x")
    first = taken(store, "a")
    assert first.number == lease_module.names.GENERATIONS
    assert take(store, LEASE, holder="b") is None
    first.renew()
    assert look(store, LEASE).token == first.token
    store.advance(TERM + 1)  # lapsed: taken over in place again; its old holder lost it
    second = taken(store, "b")
    assert second.number == first.number and second.token != first.token
    with pytest.raises(LeaseLost):
        first.renew()


JUNK_STEP = lease_module.TAKE_TRIES + 1  # junk this far apart: each past the walk's gap


def survivors(leases: list[Lease | None]) -> list[int]:
    """The numbers of the leases that survive a renewal (each renewed once)."""
    live = []
    for lease in leases:
        if lease is not None:
            try:
                lease.renew()
                live.append(lease.number)
            except LeaseLost:
                pass
    return live


def test_a_generation_past_a_gap_above_a_live_one_leaves_one_holder() -> None:
    """Review R1: one junk object at 3 above a live 1 (a gap below it) was the last of the run;
    the next machine took 4, and the holder of 1 renewed on (it looked only at 2): two holders.
    A holder is the lease only while no generation exists above it within the walk: it loses
    it at its next renewal (the junk costs the fleet one machine's fetch at most)."""
    store = MemoryStore()
    first = taken(store, "a")
    store.put(gen(3), b"junk")
    second = taken(store, "b")
    assert second.number == 4
    assert take(store, LEASE, holder="c") is None
    assert survivors([first, second, take(store, LEASE, holder="d")]) == [4]
    assert look(store, LEASE).token == second.token


def spaced_junk() -> MemoryStore:
    store = MemoryStore()
    for n in range(1, lease_module.names.GENERATIONS, JUNK_STEP):
        store.put(gen(n), b"junk")
    return store


def test_junk_every_few_numbers_elects_one_holder() -> None:
    """Review R1: junk at 1, 7, ..., 97 (each past the walk's gap from the last): 20 machines took
    17 leases, all renewed (17x the origin). A generation created with another above it is given
    up (released) and the take goes on from there: every machine converges on the top of the
    run."""
    store = spaced_junk()
    leases = [take(store, LEASE, holder=f"m{machine}") for machine in range(20)]
    assert survivors(leases) == [98]  # the top of the run (nothing within the walk above 97 + 1)
    assert sum(lease is not None for lease in leases) == 1
    for n in range(2, 98, JUNK_STEP):  # the numbers given up on the way: released, not live
        assert body(store, n)["released"] is True


@pytest.mark.parametrize("at", range(0, 200, 7))
def test_takes_racing_up_spaced_junk_converge_on_one_holder(at: int) -> None:
    """The same with a second machine's whole take run at the ``at``-th store call of the
    first's (between its walk, create, walk on and release), then 18 more: one holder."""
    store = spaced_junk()
    calls, leases = itertools.count(), []

    def second(method: str, uri: str) -> None:
        if next(calls) == at:
            store.before = None
            leases.append(take(store, LEASE, holder="m1"))

    store.before = second
    leases.append(take(store, LEASE, holder="m0"))
    store.before = None
    leases += [take(store, LEASE, holder=f"m{machine}") for machine in range(2, 20)]
    assert len(survivors(leases)) == 1, [lease and lease.number for lease in leases]


def test_a_take_that_loses_a_number_below_the_last_climbs_on() -> None:
    """A machine that loses its create to one still climbing (its number not the last: junk
    above it within the walk) climbs on, rather than waiting on a lease that is none (a fill
    gives up on a lease that changes hands too often, and goes to the origin)."""
    store = spaced_junk()

    def another_first(method: str, uri: str) -> None:
        if (method, uri) == ("create", gen(2)):  # another machine creates 2 just before us
            store.before = None
            store.put(gen(2), lease_body("a"))

    store.before = another_first
    lease = taken(store, "b")
    assert lease.number == 98
    assert look(store, LEASE).token == lease.token


@pytest.mark.parametrize("burst", [1, 2, 3, 5, 8])
def test_takes_climbing_spaced_junk_in_lock_step_converge_on_one_holder(burst: int) -> None:
    """Two machines' takes at once, taking turns every ``burst`` store calls (each loses creates
    to the other on the way up): the loser climbs on rather than waiting on a number that is not
    the last, and one holds the top of the run."""
    store = spaced_junk()
    turn, done, count = [0], [False, False], [0]
    changed = threading.Condition()
    me = threading.local()

    def lock_step(method: str, uri: str) -> None:
        with changed:
            assert changed.wait_for(lambda: turn[0] == me.i or done[1 - me.i], BOUND)
            count[0] += 1
            if count[0] % burst == 0:
                turn[0] = 1 - me.i
                changed.notify_all()

    leases: list[Lease | None] = [None, None]

    def machine(i: int) -> None:
        me.i = i
        try:
            leases[i] = take(store, LEASE, holder=f"m{i}")
        finally:
            with changed:
                done[i] = True
                changed.notify_all()

    store.before = lock_step
    threads = [threading.Thread(target=machine, args=(i,)) for i in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(BOUND)
    store.before = None
    assert done == [True, True]
    assert survivors(leases) == [98]
    assert take(store, LEASE, holder="m2") is None


# --- renewing ---


def wait_until(flag: threading.Event) -> None:
    assert flag.wait(BOUND), "not within the bound (the test failed, or the machine is stuck)"


def running() -> set[str]:
    """The names of the threads alive now."""
    return {thread.name for thread in threading.enumerate()}


def replaces(store: MemoryStore, at_least: int) -> threading.Event:
    """Set once the store has seen ``at_least`` replaces (counted as each one starts)."""
    reached = threading.Event()

    def count(method: str, uri: str) -> None:
        if method == "replace" and store.calls["replace"] + 1 >= at_least:
            reached.set()

    store.before = count
    return reached


def test_renewing_keeps_the_lease_and_stops_at_exit() -> None:
    store = MemoryStore()
    lease = taken(store, "a")
    first = lease.etag
    three = replaces(store, 3)
    with Renewing(lease, every=0.001) as renewing:
        wait_until(three)
    assert "mdl-lease-renew" not in running(), "the renewer outlived its context"
    # the renewal in flight at the exit ends on its own (a daemon nobody waits on)
    runfixtures.wait_for(lambda: "mdl-lease-renewal" not in running(), BOUND, "the last renewal")
    assert not renewing.lost.is_set()
    assert lease.etag != first and lease.etag == store.head(gen(1)).etag  # type: ignore[union-attr]


def test_renewing_sets_lost_when_a_next_generation_exists() -> None:
    store = MemoryStore()
    lease = taken(store, "a")
    with Renewing(lease, every=0.001) as renewing:
        store.put(gen(2), lease_body("b"))
        wait_until(renewing.lost)


def test_renewing_tries_again_after_a_network_failure() -> None:
    store = MemoryStore()
    lease = taken(store, "a")
    store.fail_next("replace", 2)
    fourth = replaces(store, 4)
    with Renewing(lease, every=0.001, clock=lambda: 0.0) as renewing:
        wait_until(fourth)
    assert not renewing.lost.is_set()


def test_renewing_gives_up_nearly_a_term_after_its_last_good_renewal() -> None:
    store = MemoryStore()
    lease = taken(store, "a")
    now = [0.0]
    with Renewing(lease, every=0.001, clock=lambda: now[0]) as renewing:
        assert renewing.margin == TERM * LOST_MARGIN
        wait_until(replaces(store, 2))
        store.fail_next("replace", 10**6)
        now[0] = TERM - renewing.margin
        wait_until(renewing.lost)


def test_a_renewal_stuck_in_the_network_loses_the_lease_before_another_can_take_it() -> None:
    """A renewal blocked for minutes: ``lost`` is set at its deadline while it is still in
    flight, before the store's term lets another machine take over."""
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
        assert "mdl-lease-renewal" in running()  # still stuck
    finally:
        unstick.set()


def test_exit_and_release_do_not_wait_on_a_stuck_renewal(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(lease_module, "RELEASE_WAIT", 0.01)
    store = MemoryStore()
    lease = taken(store, "a")
    stuck, unstick, left = threading.Event(), threading.Event(), threading.Event()

    def hang(method: str, uri: str) -> None:
        if method == "replace" and threading.current_thread().name == "mdl-lease-renewal":
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
        lease.release()
        assert "released" not in body(store, 1) and "left to lapse" in caplog.text
    finally:
        unstick.set()


# --- waiting: bounded by progress, whatever another machine writes ---


class Fake:
    """This machine's monotonic clock and the store's, moved together by each poll."""

    def __init__(self, store: MemoryStore) -> None:
        self.store, self.now, self.polls = store, 0.0, 0

    def clock(self) -> float:
        return self.now

    def poll(self, step: Callable[[int], object], every: float = 2.0) -> Callable[[int], float]:
        def poll(attempt: int) -> float:
            self.polls += 1
            self.now += every
            self.store.advance(every)
            step(attempt)
            return 0.0

        return poll


def waiting(
    store: MemoryStore,
    step: Callable[[int], object],
    *,
    size: int = SIZE,
    cancel: threading.Event | None = None,
    fake: Fake | None = None,
    parts: Callable[[str | None], int] = lambda token: 0,
    trusted: bool = False,
    rate: float | None = None,
) -> object:
    fake = fake or Fake(store)
    return wait_for(
        store,
        OBJECT,
        LEASE,
        size=size,
        wait=Wait(cancel=cancel or threading.Event(), clock=fake.clock),
        poll=fake.poll(step),
        step=parts,
        trusted=trusted,
        rate=lambda: rate,
    )


def renew_as(store: MemoryStore, number: int, done: int, **more: object) -> None:
    store.put(gen(number), json.dumps({"holder": "h", "done": done, **more}).encode())


def test_a_lease_renewed_without_progress_is_given_up_on_after_a_few_terms() -> None:
    """Today's bug: a lease renewed every few seconds held the fleet forever."""
    store = MemoryStore()
    renew_as(store, 1, 0)
    fake = Fake(store)
    state = waiting(store, lambda n: renew_as(store, 1, 5), fake=fake)
    assert isinstance(state, GaveUp) and "no part" in state.why
    assert STALL_TERMS * TERM < fake.now <= STALL_TERMS * TERM + 2 * 2.0


@pytest.mark.parametrize("claim", ["rising", "all", SIZE + 1, -5, "lots"])
def test_what_a_lease_claims_is_no_progress(claim: object) -> None:
    """Issue 68: a lease rewritten with ``done`` one byte higher each time held every follower
    for 2 terms + size / 1 MiB/s. Only parts a follower observes are progress: a claim, rising,
    complete or garbage, is given up on after the stall's terms."""
    store = MemoryStore()
    fake = Fake(store)
    held = taken(store, "liar")

    def forge(n: int) -> None:
        said = {"rising": 1000 + n, "all": SIZE}.get(claim, claim)  # type: ignore[call-overload]
        renew_as(store, 1, said, token=held.token)

    state = waiting(store, forge, fake=fake)
    assert isinstance(state, GaveUp) and "no part" in state.why
    assert fake.now <= STALL_TERMS * TERM + 2 * 2.0


def test_a_lease_whose_token_changes_at_every_look_is_still_given_up_on() -> None:
    """Another tenant rewrites the live generation with another token at every look: each is
    read from once, the looks still wait between them, and the stall's terms end the wait."""
    store = MemoryStore()
    fake = Fake(store)
    taken(store, "liar")
    looks: list[str | None] = []

    def flip(n: int) -> None:
        renew_as(store, 1, 0, token=f"{fake.polls % 2:x}" * 32)

    state = waiting(store, flip, fake=fake, parts=lambda token: looks.append(token) or 0)
    assert isinstance(state, GaveUp) and "no part" in state.why
    assert fake.now <= STALL_TERMS * TERM + 2 * 2.0 and len(set(looks)) == 4  # None, 3 tokens


def test_parts_observed_are_progress_until_the_object_is_there() -> None:
    """A holder whose parts the follower reads and verifies against a range trust (a MiB a look)
    is waited on past the stall's terms, until the object is there; the follower reads under the
    holder's token."""
    store = MemoryStore()
    held = taken(store, "leader")
    fake = Fake(store)
    tokens: list[str | None] = []

    def step(n: int) -> None:
        renew_as(store, 1, 0, token=held.token)
        if fake.polls == 60:
            store.put(OBJECT, b"weights")

    def parts(token: str | None) -> int:
        tokens.append(token)
        return fake.polls << 20 if token == held.token else 0

    assert waiting(store, step, fake=fake, parts=parts, trusted=True) == "ready"
    assert fake.now > STALL_TERMS * TERM and set(tokens) == {None, held.token}


BIG = 5 << 30  # a 5 GiB shard


@pytest.mark.parametrize("rate", [None, 100e6, 4e6])
def test_parts_without_a_range_trust_extend_no_wait(rate: float | None) -> None:
    """Issue 75, B: the holder's token is in its lease, so anyone can write parts of the right
    size under it; a new one every look held each follower up to 2 terms + 5 GiB at 1 MiB/s
    (~80 min). Without a range trust a part is no progress: the wait is bounded from its start by
    what fetching the file here costs at this machine's measured origin rate (plus a term, a few
    terms at least), else a few terms."""
    store = MemoryStore()
    held = taken(store, "leader")
    fake = Fake(store)

    def forged(token: str | None) -> int:  # one more junk part of 16 MiB a look, all but one
        return min(fake.polls << 24, BIG - (1 << 24)) if token == held.token else 0

    state = waiting(
        store,
        lambda n: renew_as(store, 1, 0, token=held.token),
        size=BIG,
        fake=fake,
        parts=forged,
        rate=rate,
    )
    assert isinstance(state, GaveUp)
    least = STALL_TERMS * TERM
    bound = least if rate is None else max(least, TERM + BIG / rate)
    assert bound < fake.now <= bound + 2 * 2.0, (state, fake.now)
    assert fake.now < 2 * TERM + BIG / SLOW_RATE  # the bound before: ~83 min


def test_all_parts_read_while_the_lease_is_live_is_streamed() -> None:
    store = MemoryStore()
    held = taken(store, "leader")
    fake = Fake(store)
    state = waiting(store, lambda n: None, fake=fake, parts=lambda t: SIZE if t else 0)
    assert state == "streamed" and held.token


def test_the_wait_ends_ready_when_the_object_comes_between_its_looks() -> None:
    store = MemoryStore()
    taken(store, "leader")

    def upload_and_release(method: str, uri: str) -> None:
        if method == "read":
            store.before = None
            store.put(OBJECT, b"weights")
            store.put(gen(1), lease_body("leader", released=True))

    store.before = upload_and_release
    assert waiting(store, lambda n: None) == "ready"


def test_the_wait_ends_free_when_the_lease_lapses_or_is_released() -> None:
    store = MemoryStore()
    taken(store, "leader")  # then killed: never renewed
    assert waiting(store, lambda n: None) == "free"
    store = MemoryStore()
    taken(store, "leader")
    released = lease_body("leader", released=True)
    assert waiting(store, lambda n: n == 1 and store.put(gen(1), released)) == "free"


def test_the_wait_for_a_replacement_is_not_ended_by_the_bad_object() -> None:
    store = MemoryStore()
    bad = store.put(OBJECT, b"poison")
    held = taken(store, "leader")

    def step(n: int) -> None:
        renew_as(store, 1, 0, token=held.token)
        if n == 3:
            store.put(OBJECT, b"weights")

    fake = Fake(store)
    assert (
        wait_for(
            store,
            OBJECT,
            LEASE,
            size=SIZE,
            wait=Wait(clock=fake.clock),
            over=bad.etag,
            poll=fake.poll(step),
        )
        == "ready"
    )
    assert fake.polls == 4


def test_cancel_ends_a_wait_at_once() -> None:
    """Ctrl-C (the run's cancel event) ends a wait whose poll is an hour long, at once."""
    store = MemoryStore()
    taken(store, "leader")
    renewing = threading.Event()
    store.before = lambda method, uri: renewing.set() if method == "head" else None
    cancel = threading.Event()
    caught: list[BaseException] = []

    def wait() -> None:
        try:
            wait_for(
                store, OBJECT, LEASE, size=SIZE, wait=Wait(cancel=cancel), poll=lambda n: 3600.0
            )
        except InterruptedByUserError as exc:
            caught.append(exc)

    waiter = threading.Thread(target=wait)
    waiter.start()
    wait_until(renewing)
    cancel.set()
    waiter.join(BOUND)
    assert not waiter.is_alive() and caught


def test_the_default_poll_grows_to_two_seconds() -> None:
    assert [default_poll(n) for n in range(6)] == [0.25, 0.5, 1.0, 2.0, 2.0, 2.0]


OTHERS = st.one_of(
    st.tuples(st.just("renew"), st.integers(-3, SIZE + 5), st.integers(1, 4)),
    st.tuples(st.just("body"), st.binary(max_size=50), st.integers(1, 4)),
    st.tuples(st.just("term"), st.integers(0, 10**6), st.integers(1, 4)),
    st.tuples(st.just("release"), st.just(0), st.integers(1, 4)),
    st.tuples(st.just("delete"), st.just(0), st.integers(1, 4)),
    st.tuples(st.just("nothing"), st.just(0), st.just(1)),
)


@settings(max_examples=examples(300), suppress_health_check=[HealthCheck.too_slow])
@given(every=st.sampled_from([0.25, 2.0, 9.0]), pattern=st.lists(OTHERS, min_size=1, max_size=20))
def test_any_lease_state_another_machine_writes_ends_the_wait_within_a_bound(
    every: float, pattern: list[tuple[str, object, int]]
) -> None:
    """Another machine (or tenant) writes anything at the lease's names, in a repeating pattern:
    renewals with any progress claim, garbage bodies, bodies with any term, releases, removals,
    at any generation. The wait ends (ready, free, or given up) within 2 terms + size / 1 MiB/s
    of this machine's clock, never a hang; a take after it never raises."""
    store = MemoryStore()
    renew_as(store, 1, 0)
    fake = Fake(store)

    def step(n: int) -> None:
        kind, value, number = pattern[n % len(pattern)]
        if kind == "renew":
            renew_as(store, number, value)  # type: ignore[arg-type]
        elif kind == "body":
            store.put(gen(number), value)  # type: ignore[arg-type]
        elif kind == "term":
            renew_as(store, number, 0, term=value)
        elif kind == "release":
            store.put(gen(number), lease_body("h", released=True))
        elif kind == "delete":
            store.delete(gen(number))

    state = waiting(store, step, fake=fake)
    assert state in ("ready", "free") or isinstance(state, GaveUp)
    assert fake.now <= 2 * TERM + SIZE / SLOW_RATE + every + 2.0
    take(store, LEASE, holder="me")  # whatever is there: no exception


# --- the probe ---


@pytest.mark.parametrize(
    ("ignoring", "honours"),
    [({}, True), ({"ignore_conditions": True}, False), ({"ignore_if_match": True}, False)],
)
def test_the_probe_tells_a_store_that_ignores_conditions(
    ignoring: dict[str, bool], honours: bool
) -> None:
    store = MemoryStore(**ignoring)
    assert honours_conditions(store, ROOT + "probe-1") is honours
    assert store.objects() == {}


def test_the_probe_removes_what_a_crashed_probe_left() -> None:
    store = MemoryStore()
    store.put(ROOT + "probe-1", b"a")
    assert honours_conditions(store, ROOT + "probe-1") is True
    assert store.objects() == {} and store.calls["create"] == 3


def test_the_probe_removes_its_object_when_its_second_write_fails() -> None:
    store = MemoryStore()

    def fail_second(method: str, uri: str) -> None:
        if method == "create" and store.calls["create"] == 1:
            store.fail_next("create")

    store.before = fail_second
    with pytest.raises(NetworkError):
        honours_conditions(store, ROOT + "probe-1")
    assert store.objects() == {}


def test_a_folder_passes_the_probe(tmp_path: Path) -> None:
    assert honours_conditions(FolderWriter(), "file://" + str(tmp_path / ".mdl" / "probe-1"))


def test_a_store_that_ignores_conditions_gives_two_holders() -> None:
    """Why the probe runs: without it the lease means nothing (and the model check would fail)."""
    store = MemoryStore(ignore_conditions=True)
    other: list[Lease | None] = []

    def b_meanwhile(method: str, uri: str) -> None:
        if method == "create" and not other:
            store.before = None
            other.append(take(store, LEASE, holder="b"))

    store.before = b_meanwhile
    assert take(store, LEASE, holder="a") is not None
    assert other[0] is not None


# --- the model check ---


@dataclass
class Machine:
    name: str
    lease: Lease | None = None
    sent: float = 0.0  # the store's clock before its last good write: its lease is live till +TERM


STEPS = st.tuples(
    st.sampled_from(["act", "act", "release", "advance"]),
    st.integers(0, 2),
    st.sampled_from([1.0, 9.0, TERM - 1, TERM, TERM + 1, 2 * TERM]),
    st.sampled_from([None, None, None, 0, 1, 2, 3]),
)


@pytest.mark.slow  # the model check
@settings(max_examples=examples(1000))
@given(
    machines=st.integers(2, 3),
    one_name=st.booleans(),
    junk=st.booleans(),
    steps=st.lists(STEPS, max_size=40),
)
def test_never_two_holders_of_a_live_lease(
    machines: int, one_name: bool, junk: bool, steps: list[tuple[str, int, float, int | None]]
) -> None:
    """Random interleavings of take, renew, release and the store's clock, by 2-3 machines: a step
    may run in the middle of another's (between its listing, read and create). A holder renews
    only within its own deadline (Renewing's: a margin before a term after its last good write).
    At every store time at most one machine believes it holds a live lease. ``junk``: at every
    few numbers, each past the walk's gap from the one below."""
    store = spaced_junk() if junk else MemoryStore()
    fleet = [Machine("host" if one_name else f"m{i}") for i in range(machines)]
    pending: list[tuple[int, tuple[str, int, float, int | None]]] = []
    current = [-1]

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
            if before - machine.sent > TERM * (1 - LOST_MARGIN):
                machine.lease = None  # its own deadline passed: lost (Renewing.lost)
            else:
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
        while pending:
            run(pending.pop(0)[1])


# --- a holder's restart: it knows its own lease by the token beside its partial (issue 68) ---


def test_a_lease_whose_token_is_mine_is_taken_over_at_once() -> None:
    """A holder kill -9ed and restarted holds its partial and its generation's token: it takes
    its own live lease over at once (and reads the parts it published), while every other
    machine judges it by the term alone."""
    store = MemoryStore()
    dead = taken(store, "killed")
    assert look(store, LEASE).state == "live"
    assert take(store, LEASE, holder="other") is None
    assert take(store, LEASE, holder="other", mine="0" * 32) is None  # not its token
    again = take(store, LEASE, holder="restart", mine=dead.token)
    assert again is not None and again.number == 2 and again.after == dead.token


@pytest.mark.parametrize("process", [None, 7, "", "a:b", "x:y:-1:1"])
def test_a_lease_is_judged_by_the_term_alone_whatever_it_says_of_its_process(
    process: object,
) -> None:
    store = MemoryStore()
    store.put(gen(1), json.dumps({"holder": "o", "n": "1", "process": process}).encode())
    assert look(store, LEASE).state == "live"
    store.advance(TERM + 1)
    assert look(store, LEASE).state == "lapsed"


def test_a_look_that_fails_is_no_progress_and_never_ends_the_wait() -> None:
    """A HEAD or read of the mirror that fails mid-wait (a reset connection, a 503 after the
    client's retries) is an unknown state: never "free", never the end of the wait (every
    follower would go to the origin at once); the holder's object, there later, is read."""
    store = MemoryStore()
    taken(store, "holder")
    store.fail_next("read", 2)
    store.fail_next("head", 2)

    def holder(n: int) -> None:
        if n == 4:
            store.put(OBJECT, b"the file")

    assert waiting(store, holder) == "ready"
    assert store.calls["head"] > 2 and store.calls["read"] >= 1


def test_looks_that_always_fail_are_given_up_on_after_the_stall() -> None:
    """A mirror that cannot be looked at any more: the wait ends after the stall's terms of no
    progress, as for a holder that shows none, never at once, never as "free"."""
    store = MemoryStore()
    taken(store, "holder")
    store.fail_next("head", 10**6)
    fake = Fake(store)
    state = waiting(store, lambda n: None, fake=fake)
    assert isinstance(state, GaveUp) and "no part" in state.why, state
    assert STALL_TERMS * TERM < fake.now <= STALL_TERMS * TERM + 2 * 2.0
