"""A model check of a fill in parts (issue 61): 2-3 machines fill one file of a mirror, on an
in-memory store whose clock the test moves (tests/buckets/memstore.py), in random interleavings (a
step may run in the middle of another's store call). The code under test is mdl's: ``take``,
``Lease.renew``/``release`` and ``wait_for`` (mdl.buckets.lease), ``PartSet``, ``Publisher`` and
``Streamer`` (mdl.download._parts), ``seed``/``load_state`` (mdl.transfer.resume) and the end of a
fill, ``_written`` (mdl.download._fill). The model stands in for the fetch engine only: a machine
resumes on what ``load_state`` says it has, fetches the gaps from the object or the origin (the
true bytes), checks the whole file's sha256 and, on a mismatch, fetches the whole from the origin.

Properties (at every step, at every install, at every fill's end, at the end of the run):
1. at most one machine believes it holds a live lease;
2. the final object, whenever it exists, is exactly the file's bytes (never a wrong part's);
3. every machine that installs has exactly the file's bytes;
4. what a machine resumes on is exactly what its Streamer read (the seeded record); when every
   part it read was right, its origin bytes == size - bytes of those parts - bytes read from the
   object; when one was wrong, the whole-hash check failed and the origin gave the whole file;
5. every part left after a fill ended was published after that fill began writing the object
   (by a machine that kept publishing with a lapsed lease: its own end, or prune, removes it);
   when every machine ended its fill (none died or quit), no part remains."""

from __future__ import annotations

import hashlib
import itertools
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple
from unittest import mock

import pytest
from buckets.memstore import MemoryStore
from hypothesis import example, given, settings
from hypothesis import strategies as st
from profiles import examples
from runfixtures import transfer_job

import mdl.download._parts as parts_module
import mdl.transfer.ranges as ranges_module
from mdl.buckets.lease import LOST_MARGIN, TERM, Lease, LeaseLost, Waited, take, wait_for
from mdl.buckets.names import Generation, Part
from mdl.buckets.protocol import Seen
from mdl.download._fill import TAKE_ROUNDS, Place, _release, _written
from mdl.download._owned import Target
from mdl.download._parts import PartSet, Publisher, Streamer
from mdl.errors import InterruptedByUserError
from mdl.transfer.job import TransferJob, TransferResult
from mdl.transfer.resume import load_state
from mdl.wait import Wait

TEMPLATE = "s3://mirror/models/{model}/{path}"
ROOT = "s3://mirror/models/.mdl/"
OBJECT = "s3://mirror/models/m/f.bin"
LEASE = Generation.of(ROOT, OBJECT)
PART = 200  # bytes per part: 3 whole parts and a short last one
SIZE = 3 * PART + 37
COUNT = 4
DATA = b"".join(hashlib.sha256(b"%d" % i).digest() for i in range(SIZE // 32 + 1))[:SIZE]
SHA = hashlib.sha256(DATA).hexdigest()
FIRST = Part("s3://mirror/models/", "m/f.bin", SHA, PART, None, 1)
PREFIX = FIRST.prefix

Range = tuple[int, int]


class Store(MemoryStore):
    """The memory store, with the order in which each object was last created (``born``)."""

    def __init__(self) -> None:
        super().__init__()
        self.serial = itertools.count()
        self.born: dict[str, int] = {}

    def create(self, uri: str, data: bytes, *, side: str | None = None) -> Seen | None:
        made = super().create(uri, data, side=side)
        if made is not None:
            self.born[uri] = next(self.serial)
        return made

    def parts(self) -> dict[str, bytes]:
        return {uri: data for uri, data in self.objects().items() if uri.startswith(PREFIX)}


class Step(NamedTuple):
    action: str
    who: int
    seconds: float
    at: int | None  # run it inside the next step's store call number ``at`` (another machine's)
    part: int  # 0: the first it has not published (a fetch lands mostly in order)
    wrong: bool  # a part published with a flipped byte (a liar, or a store that corrupts)


# "act": a new machine starts (reads the object, else takes the lease, else waits on it), a
# holder publishes a part, a waiting one looks once (reading the parts published); "finish": a
# holder ends its fill, a waiting one gives up (the origin); "die": killed; "quit": Ctrl-C (a
# holder releases); "advance": the store's clock
STEPS = st.builds(
    Step,
    st.sampled_from(
        ["act"] * 5 + ["renew", "renew", "finish", "die", "quit", "advance", "advance"]
    ),
    st.integers(0, 2),
    st.sampled_from([1.0, 9.0, 9.0, TERM - 1, TERM, TERM + 1, 2 * TERM]),
    st.sampled_from([None, None, None, 0, 1, 2, 3, 5]),
    st.sampled_from([0, 0, 0, *range(1, COUNT + 1)]),
    st.sampled_from([False, False, False, True]),
)


def covered(ranges: list[Range]) -> int:
    return sum(end - start for start, end in ranges)


def gaps(ranges: list[Range], start: int, end: int) -> list[Range]:
    found, at = [], start
    for low, high in sorted(ranges):
        if low > at and at < end:
            found.append((at, min(low, end)))
        at = max(at, high)
    if at < end:
        found.append((at, end))
    return found


@dataclass
class Machine:
    name: str
    job: TransferJob
    streamer: Streamer
    state: str = "new"  # new, holding, waiting, done, stopped (killed, or Ctrl-C)
    lease: Lease | None = None
    sent: float = 0.0  # the store's clock before its last good take or renewal
    believes: bool = False  # that it holds the lease (Renewing has not set ``lost``)
    publisher: Publisher | None = None
    buf: bytearray = field(default_factory=lambda: bytearray(SIZE))  # its file as it fetches
    have: list[Range] = field(default_factory=list)
    resumed: int = 0  # bytes it resumed on (parts read: streamed, or reused on a take)
    wrong: bool = False  # one of those was not the file's
    origin: int = 0
    from_object: int = 0
    refetched: bool = False  # its whole-hash check failed: the whole file from the origin
    rounds: int = 0


class Fleet:
    """The model: the machines, the store, and the steps each takes."""

    def __init__(self, store: Store, folder: Path, machines: int) -> None:
        self.store = store
        self.parts = PartSet(store, FIRST, SIZE)
        self.place = Place(Target(TEMPLATE, store, ROOT), OBJECT)
        self.machines: list[Machine] = []
        for i in range(machines):
            job = transfer_job(folder / f"m{i}", "https://origin.invalid/f.bin", DATA)
            job.final_path.parent.mkdir(parents=True)
            self.machines.append(Machine(f"m{i}", job, Streamer(self.parts, job)))
        self.fills = 0

    def check(self) -> None:
        clock = self.store.clock
        live = [m.name for m in self.machines if m.believes and clock <= m.sent + TERM]
        assert len(live) <= 1, (live, clock)  # 1
        made = self.store.objects().get(OBJECT)
        assert made is None or made == DATA  # 2

    def run(self, step: Step) -> None:
        m = self.machines[step.who % len(self.machines)]
        before = self.store.clock
        if m.believes and before - m.sent > TERM * (1 - LOST_MARGIN):
            m.believes = False  # its own deadline passed: Renewing sets ``lost``
        if step.action == "advance":
            self.store.advance(step.seconds)
        elif m.state == "new" and step.action == "act":
            self.start(m)
        elif m.state == "holding":
            self.hold(m, step, before)
        elif m.state == "waiting":
            self.wait(m, step)
        self.check()

    def start(self, m: Machine) -> None:
        if self.store.head(OBJECT) is not None:  # the mirror has it: read as any mirror
            self.from_mirror(m)
        else:
            self.take_round(m)

    def take_round(self, m: Machine) -> None:
        """``_filled``'s round: take the lease (the parts published reused), else wait on it."""
        m.rounds += 1
        if m.rounds > TAKE_ROUNDS:
            self.from_origin(m)
            return
        before = self.store.clock
        lease = take(self.store, LEASE, holder=m.name, term=TERM)
        if lease is None:
            m.state = "waiting"
            return
        m.lease, m.sent, m.believes, m.state = lease, before, True, "holding"
        m.streamer.reuse(threading.Event(), after=lease.after, cut=self.parts.part // 2)
        if self.store.head(OBJECT) is not None:  # ``_present``: filled since it looked
            self.from_mirror(m)
            self.release(m)
            return
        m.publisher = Publisher(self.parts.under(lease.token), m.job)  # (without its thread)
        self.load(m)

    def hold(self, m: Machine, step: Step, before: float) -> None:
        assert m.lease is not None and m.publisher is not None
        if step.action == "act":
            self.publish(m, step.part, wrong=step.wrong)
        elif step.action == "renew" and m.believes:
            try:
                m.lease.renew()
                m.sent = before
            except LeaseLost:
                m.believes = False
        elif step.action == "finish":
            self.fill(m)
        elif step.action == "die":
            m.state, m.believes = "stopped", False  # its lease lapses; its parts stay
        elif step.action == "quit":  # Ctrl-C: released on the way out
            self.release(m)
            m.state = "stopped"

    def publish(self, m: Machine, number: int, *, wrong: bool) -> None:
        """Part ``number`` landed (its gaps fetched from the origin) and sent as Publisher sends
        it: from the file on disk, by a conditional create."""
        assert m.publisher is not None
        if number == 0:
            number = min(set(range(1, COUNT + 1)) - m.publisher.done, default=COUNT)
        if number in m.publisher.done:
            return
        start, end = self.parts.span(number)
        self.fetch(m, gaps(m.have, start, end), None)
        data = bytes(m.buf[start:end])
        if wrong:
            data = bytes([data[0] ^ 1]) + data[1:]
        self.store.create(m.publisher.parts.uri(number), data)
        m.publisher.done.add(number)

    def fill(self, m: Machine) -> None:
        """The holder's end: the rest from the origin, the file checked, the object made of the
        parts (else uploaded), the parts removed (``_written``), the lease released."""
        assert m.publisher is not None
        mark = next(self.store.serial)
        self.fetch(m, gaps(m.have, 0, SIZE), None)
        self.install(m)
        m.job.final_path.write_bytes(m.buf)
        result = TransferResult(SIZE, SHA, None, None, resumed_from=0, fetched=SIZE)
        _written(self.place, m.job, result, m.publisher, "tests")
        self.parts.remove_holders()  # as ``_holding`` does: the holders' before it
        self.release(m)
        self.fills += 1
        left = {uri: self.store.born[uri] for uri in self.store.parts()}
        assert all(born > mark for born in left.values()), (mark, left)  # 5

    def release(self, m: Machine) -> None:
        assert m.lease is not None
        _release(m.lease, m.name)
        m.believes = False

    def wait(self, m: Machine, step: Step) -> None:
        if step.action == "act":
            state = self.look(m)
            if state is None:
                return  # still held: it looks again
            m.streamer.seed()  # ``_filled``'s finally: what it read, kept
            if state == "free":
                self.take_round(m)
            else:  # "ready", "streamed": the rest from the mirror, if there
                self.from_mirror(m)
        elif step.action == "finish":  # its wait's bound passed: the origin
            self.from_origin(m)
        elif step.action in ("die", "quit"):
            m.streamer.seed()
            m.state = "stopped"

    def look(self, m: Machine) -> Waited | None:
        """One look of ``wait_for`` (its poll stops it at the next): None while it waits."""
        cancel = threading.Event()

        def once(attempt: int) -> float:
            cancel.set()
            return 0.0

        try:
            return wait_for(
                self.store,
                OBJECT,
                LEASE,
                size=SIZE,
                wait=Wait(cancel=cancel, clock=lambda: 0.0),  # its bounds: the "finish" step's
                term=TERM,
                poll=once,
                step=m.streamer.step,
            )
        except InterruptedByUserError:
            return None

    def load(self, m: Machine) -> None:
        """The fetch engine's start: it resumes on the record the Streamer seeded."""
        m.streamer.seed()
        loaded = load_state(m.job)
        m.have = [] if loaded is None else [(p.start, p.start + p.done) for p in loaded.pieces]
        # (pieces cut at half parts: adjacent ones are one range)
        m.have = ranges_module.merged([(start, end) for start, end in m.have if end > start])
        # 4: the record claims what the Streamer read, no more, no less
        assert m.have == (m.streamer.ranges if m.streamer.streamed else []), m.have
        if m.have:
            on_disk = m.job.part_path.read_bytes()
            for start, end in m.have:
                m.buf[start:end] = on_disk[start:end]
        m.resumed = covered(m.have)
        m.wrong = any(m.buf[start:end] != DATA[start:end] for start, end in m.have)

    def fetch(self, m: Machine, missing: list[Range], source: bytes | None) -> None:
        """``missing`` from ``source`` (the object's bytes), else the origin."""
        for start, end in missing:
            m.buf[start:end] = (source or DATA)[start:end]
            if source is None:
                m.origin += end - start
            else:
                m.from_object += end - start
        m.have = sorted([*m.have, *missing])

    def from_mirror(self, m: Machine) -> None:
        self.load(m)
        found = self.store.read(OBJECT, limit=SIZE)
        self.fetch(m, gaps(m.have, 0, SIZE), found[0] if found is not None else None)
        self.install(m)

    def from_origin(self, m: Machine) -> None:
        self.load(m)
        self.fetch(m, gaps(m.have, 0, SIZE), None)
        self.install(m)

    def install(self, m: Machine) -> None:
        if hashlib.sha256(m.buf).hexdigest() != SHA:
            m.buf[:], m.origin, m.refetched = DATA, m.origin + SIZE, True
        assert bytes(m.buf) == DATA  # 3
        if m.wrong:  # 4
            assert m.refetched
        else:
            assert not m.refetched
            assert m.origin == SIZE - m.resumed - m.from_object, (m.origin, m.resumed)
        m.state = "done"

    def drain(self) -> None:
        """The run's end: the holders finish, then the others look once more, else give up."""
        for _ in range(TAKE_ROUNDS + 2):
            for m in self.machines:
                if m.state == "holding":
                    self.fill(m)
            for m in self.machines:
                if m.state == "new":
                    self.start(m)
                elif m.state == "waiting":
                    self.wait(m, Step("act", 0, 0.0, None, 1, False))
                    if m.state == "waiting":
                        self.from_origin(m)
                self.check()
        assert all(m.state in ("done", "stopped") for m in self.machines)

    def close(self) -> None:
        for m in self.machines:
            m.streamer.seed()


def steps_of(*said: str) -> list[Step]:
    """Steps written ``"act 0"`` (machine 0 acts), ``"act 0 wrong"``, ``"advance 31"``..."""
    made = []
    for one in said:
        action, number, *wrong = one.split()
        who, seconds = (0, float(number)) if action == "advance" else (int(number), 1.0)
        made.append(Step(action, who, seconds, None, 0, bool(wrong)))
    return made


@pytest.mark.slow  # the model check
@settings(max_examples=examples(300))
@given(machines=st.integers(2, 3), steps=st.lists(STEPS, max_size=50))
# m1 streams every part m0 publishes while m0 holds the lease ("streamed")
@example(2, steps_of("act 0", "act 0", "act 0", "act 0", "act 0", "act 1", "act 1"))
# m0 dies after two parts; m1 takes its lapsed lease over and fetches only the rest
@example(2, steps_of("act 0", "act 0", "act 0", "die 0", f"advance {TERM + 1}", "act 1"))
# m1 streams a wrong part: its whole-hash check sends it to the origin; the object is uploaded
@example(2, steps_of("act 0", "act 0 wrong", "act 1", "act 1"))
def test_a_fill_in_parts_leaves_only_the_files_bytes(machines: int, steps: list[Step]) -> None:
    """Random interleavings of take, publish (right or wrong bytes), renew, die, quit, a
    follower's looks (its Streamer reading the parts), finishing and the store's clock, by 2-3
    machines filling one file: the properties of the module's docstring hold throughout."""
    store = Store()
    with (
        tempfile.TemporaryDirectory() as folder,
        mock.patch.object(parts_module, "READERS", 1),  # one part at a time: deterministic
    ):
        fleet = Fleet(store, Path(folder), machines)
        pending: list[Step] = []
        current = [-1]
        calls = [itertools.count()]

        def interleave(method: str, uri: str) -> None:
            index, nested = next(calls[0]), pending[0] if pending else None
            if nested and (nested.at or 0) <= index and nested.who % machines != current[0]:
                store.before = None
                fleet.run(pending.pop(0))
                store.before = interleave

        store.before = interleave
        try:
            for step in steps:
                calls[0] = itertools.count()
                if step.at is not None and not pending:
                    pending.append(step)
                    continue
                current[0] = step.who % machines
                fleet.run(step)
                current[0] = -1
                while pending:
                    fleet.run(pending.pop(0))
            store.before = None
            fleet.drain()
        finally:
            fleet.close()
        left = store.parts()
        if all(m.state == "done" for m in fleet.machines):
            assert not left, sorted(left)  # 5
        if fleet.fills:
            assert store.objects().get(OBJECT) == DATA
