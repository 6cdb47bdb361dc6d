"""The swarm's parts as states (``mdl.download._swarmparts.PartStates``, issue 89): a Hypothesis
state machine drives it as the swarm's streams and looks do (picks, claims won and lost, parts
sent, listings read, refused or not there, claims due, a fetch begun again) beside a model of the
seven collections it replaced (the parts to do, the others', the claims held, the parts refused,
claimed, sent late, and the counts), and checks after every step that both say the same of every
part, and that no part is ever picked, read or counted twice where the swarm must not."""

from __future__ import annotations

from dataclasses import dataclass, field

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule
from profiles import examples

from mdl.download._swarmparts import LEFT, PartStates, State

PART = 10


@dataclass
class Collections:
    """The swarm's state before issue 89, as its methods moved it (the reference)."""

    sizes: list[int]
    have: object = None
    todo: set[int] = field(default_factory=set)
    theirs: set[int] = field(default_factory=set)
    held: dict[int, tuple[object, float]] = field(default_factory=dict)
    wrong: set[int] = field(default_factory=set)
    mine: set[int] = field(default_factory=set)
    late: dict[int, str] = field(default_factory=dict)
    fetched: int = 0
    read: int = 0
    refused: int = 0
    last: int = -1
    timing: float = 0.0

    def begin(self, have: set[int]) -> bool:
        if have is self.have:
            return False
        self.have, self.todo = have, set(range(len(self.sizes))) - have
        return True

    def pick(self, k: int) -> int | None:
        if not self.todo:
            return LEFT
        free = self.todo - self.theirs
        if not free:
            return None
        after = self.last + 1
        if self.last < 0:
            index = sorted(free)[k % len(free)]
        else:
            index = after if after in free else middle_of_longest(sorted(free))
        self.todo.discard(index)
        self.last = index
        return index

    def claimed(self, index: int, handle: object, now: float) -> object:
        before = self.held.pop(index, None)
        self.held[index] = (handle, now)
        self.fetched += 1
        self.mine.add(index)
        return None if before is None else before[0]

    def lost(self, index: int) -> None:
        self.todo.add(index)
        self.theirs.add(index)

    def sent(self, index: int, now: float) -> object:
        held = self.held.pop(index, None)
        if held is None:
            return None
        self.timing = max(self.timing, now - held[1])
        return held[0]

    def found(self, listed: dict[int, int] | None, lookups: int, most: int) -> list[int]:
        if listed is None:
            found = [i for i in sorted(self.todo & self.theirs) if i not in self.wrong][:lookups]
        else:
            found = [
                n - 1
                for n, size in sorted((i + 1, s) for i, s in listed.items())
                if n - 1 in self.todo and size == self.sizes[n - 1] and n - 1 not in self.wrong
            ][:most]
        self.todo.difference_update(found)
        return found

    def read_from_others(self, index: int, held: bool | None) -> None:
        size = self.sizes[index]
        if held:
            self.read += size
            self.theirs.discard(index)
            return
        self.todo.add(index)
        if held is not None:
            self.refused += size
            self.wrong.add(index)
            self.theirs.discard(index)


def middle_of_longest(free: list[int]) -> int:
    runs: list[list[int]] = []
    for i in free:
        if runs and runs[-1][-1] == i - 1:
            runs[-1].append(i)
        else:
            runs.append([i])
    longest = max(runs, key=len)  # (the first of the longest)
    return longest[len(longest) // 2]


class Swarming(RuleBasedStateMachine):
    """One machine's parts, moved as the swarm moves them, against the reference."""

    @initialize(count=st.integers(1, 9), short=st.integers(1, PART))
    def cut(self, count: int, short: int) -> None:
        sizes = [PART] * (count - 1) + [short]
        self.states: PartStates[object] = PartStates(sizes)
        self.old = Collections(sizes)
        self.now = 0.0
        self.picking: set[int] = set()  # picked by a stream, its claim being taken
        self.reading: set[int] = set()  # being read by the look
        have: set[int] = set()
        assert self.states.begin(have) == self.old.begin(have)

    @rule(k=st.integers(0, 1000))
    def pick(self, k: int) -> None:
        got = self.states.pick(lambda n: k % n)
        assert got == self.old.pick(k)
        if got is not None and got != LEFT:
            assert got not in self.picking and got not in self.reading
            self.picking.add(got)

    @precondition(lambda self: self.picking)
    @rule(data=st.data(), won=st.booleans(), took=st.floats(0, 100))
    def claim(self, data: st.DataObject, won: bool, took: float) -> None:
        index = data.draw(st.sampled_from(sorted(self.picking)))
        self.picking.discard(index)
        self.now += took
        if won:
            handle = object()
            assert self.states.claimed(index, handle, self.now) is self.old.claimed(
                index, handle, self.now
            )
        else:
            self.states.lost(index)
            self.old.lost(index)

    @precondition(lambda self: self.old.held)
    @rule(data=st.data(), took=st.floats(0, 100), late=st.sampled_from([None, "v1", "v2"]))
    def send(self, data: st.DataObject, took: float, late: str | None) -> None:
        index = data.draw(st.sampled_from(sorted(self.old.held)))
        self.now += took
        assert self.states.sent(index, self.now) is self.old.sent(index, self.now)
        assert self.states.sent(index, self.now) is None  # (a claim is let go once)
        if late is not None:
            self.states.parts[index].late = late
            self.old.late[index] = late

    @rule(
        listed=st.none() | st.dictionaries(st.integers(-1, 10), st.sampled_from([PART, 1, 3])),
        lookups=st.integers(1, 4),
        most=st.integers(1, 16),
    )
    def look(self, listed: dict[int, int] | None, lookups: int, most: int) -> None:
        found = self.states.found(listed, lookups=lookups, most=most)
        assert found == self.old.found(listed, lookups, most)
        assert not set(found) & (self.reading | self.picking)
        assert not [i for i in found if self.states.parts[i].refused], "a refused part read again"
        self.reading.update(found)

    @precondition(lambda self: self.reading)
    @rule(data=st.data(), held=st.sampled_from([True, False, None]))
    def read(self, data: st.DataObject, held: bool | None) -> None:
        index = data.draw(st.sampled_from(sorted(self.reading)))
        self.reading.discard(index)
        self.states.read_from_others(index, held=held)
        self.old.read_from_others(index, held)

    @rule(data=st.data())
    def due(self, data: st.DataObject) -> None:
        theirs = self.states.theirs()
        due = data.draw(st.sets(st.sampled_from(sorted(theirs)))) if theirs else set()
        self.states.due(due)
        self.old.theirs -= due

    @precondition(lambda self: not self.picking and not self.reading)
    @rule(data=st.data())
    def begin(self, data: st.DataObject) -> None:
        """A new fetch (the streams ended; claims may still be held): on what is on disk."""
        done = self.states.indexes(State.READ, State.SENT, State.HAVE)
        have = data.draw(st.sets(st.sampled_from(done))) if done else set()
        assert self.states.begin(have) == self.old.begin(have) is True
        assert self.states.begin(have) is False  # (the same fetch's streams)
        self.old.begin(have)

    @invariant()
    def the_same_as_the_collections(self) -> None:
        states, old = self.states, self.old
        assert set(states.indexes(State.FREE)) == old.todo - old.theirs
        assert set(states.indexes(State.THEIRS)) == old.todo & old.theirs
        assert states.theirs() == old.theirs
        assert {i for i, p in enumerate(states.parts) if p.handle is not None} == set(old.held)
        assert states.held == bool(old.held)
        assert {i for i, p in enumerate(states.parts) if p.refused} == old.wrong
        assert (states.mine, states.late, states.fetched) == (old.mine, old.late, old.fetched)
        assert (states.read, states.refused, states.timing) == (old.read, old.refused, old.timing)
        assert states.last == old.last

    @invariant()
    def each_part_where_the_streams_and_the_look_have_it(self) -> None:
        assert set(self.states.indexes(State.READING)) == self.reading
        mine = set(self.states.indexes(State.MINE))
        # (a part picked again after a new fetch began may hear its earlier claim let go: sent)
        assert self.picking <= mine | set(self.states.indexes(State.SENT))
        # a part fetched here is held (or its claim's send is on the way) or being claimed
        assert mine <= self.picking | set(self.old.held)

    def teardown(self) -> None:
        if hasattr(self, "states"):
            held = self.states.release()
            assert len(held) == len(self.old.held) and not self.states.held


Swarming.TestCase.settings = settings(max_examples=examples(60), stateful_step_count=40)
test_swarm_states = Swarming.TestCase
