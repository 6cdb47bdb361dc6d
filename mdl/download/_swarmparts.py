"""What one machine of a swarm (``mdl.download._swarm``) knows of its file's parts: one list, a
state per part, and the moves between states. Pure: no I/O, no clock, no thread; the swarm calls
it under its own lock, with the time and the handles of the claims it holds (its leases).

A part is
- ``FREE``: to do here, nobody known to hold it: claimed next (the first pick anywhere, then on
  from the last one, else the middle of the longest run of free parts);
- ``THEIRS``: to do, another machine held its claim when last tried: read once published, or
  handed back (``FREE``) once that claim is due another look;
- ``MINE``: picked here: its claim being taken, then fetched here (``handle``: the claim held);
- ``READING``: being read from the mirror (``back``: what it was, if it turns out not there);
- ``READ``: read from the others' part, verified, written here;
- ``SENT``: fetched here, its claim let go once the part was published (or could not be);
- ``HAVE``: on disk when the fetch began.
Two marks outlive a state: ``refused`` (its bytes in the mirror failed their hash: never read
again, so it is claimed and fetched here) and ``late`` (sent once an object was at the final name:
that object's version). A new fetch (``begin``: from zero after a mismatch) puts every part not
on disk back to do, as it was (``THEIRS``) or ``FREE``; the claims held stay held."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Generic, TypeVar

H = TypeVar("H")  # the swarm's handle of a claim it holds
LEFT = -1  # ``pick``: no part is left to do here


State = Enum("State", "FREE THEIRS MINE READING READ SENT HAVE")  # (the module's docstring)
TODO = (State.FREE, State.THEIRS)


@dataclass
class Part(Generic[H]):
    """One part, as this machine knows it."""

    size: int
    state: State = State.FREE
    back: State = State.FREE  # READING: the state it goes back to when it is not there
    refused: bool = False  # its bytes in the mirror failed their hash: never read again
    claims: int = 0  # times its claim was taken here
    handle: H | None = None  # the claim held here
    since: float = 0.0  # when that claim was taken (this machine's clock)
    late: str | None = None  # sent once this version of an object was at the final name


class PartStates(Generic[H]):
    """The parts of one swarm's file (``sizes``: each part's bytes) and the counts the fill says
    (``fetched``: claims taken here, ``read``/``refused``: bytes read from the others' parts that
    held or failed, ``refusals``: claims the mirror refused, ``timing``: the longest a part took
    here, claimed to sent: another machine's streams share its link as this one's do, so its
    parts take about as long)."""

    def __init__(self, sizes: Sequence[int]) -> None:
        self.parts: list[Part[H]] = [Part(size) for size in sizes]
        self.have: object = None  # the engine's set of parts on disk when the fetch began
        self.last = -1  # the last part picked here
        self.read = self.refused = self.refusals = 0
        self.timing = 0.0

    def begin(self, have: set[int]) -> bool:
        """Whether ``have`` starts a new fetch (the engine's set of parts on disk): then every
        other part is to do again (``THEIRS`` as it was, else ``FREE``)."""
        if have is self.have:
            return False
        self.have = have
        for index, part in enumerate(self.parts):
            theirs = State.THEIRS if _theirs(part) else State.FREE
            part.state = State.HAVE if index in have else theirs
        return True

    def pick(self, choose: Callable[[int], int]) -> int | None:
        """A free part, now ``MINE`` (``choose(n)``: one of n at random, for the first); None: all
        to do are others'; ``LEFT``: none is to do."""
        if not self.indexes(*TODO):
            return LEFT
        free = self.indexes(State.FREE)
        if not free:
            return None
        after = self.last + 1
        if self.last < 0:  # start where others are not: anywhere
            index = free[choose(len(free))]
        else:
            index = after if after in free else _middle_of_longest(free)
        self.parts[index].state, self.last = State.MINE, index
        return index

    def claimed(self, index: int, handle: H, now: float) -> H | None:
        """Part ``index``'s claim taken here (``MINE``, fetched here); the handle of the claim
        this machine held on it before, if any (let go by the caller)."""
        part = self.parts[index]
        before, part.handle, part.since, part.state = part.handle, handle, now, State.MINE
        part.claims += 1
        return before

    def lost(self, index: int) -> None:
        """Part ``index`` not claimed here: another machine holds it (or published it)."""
        self.parts[index].state = State.THEIRS

    def sent(self, index: int, now: float) -> H | None:
        """Part ``index`` published here, or could not be: its claim's handle (None: none held),
        the time it took counted."""
        part = self.parts[index]
        handle, part.handle = part.handle, None
        if handle is not None:
            self.timing = max(self.timing, now - part.since)
            if part.state is State.MINE:
                part.state = State.SENT
        return handle

    def duplicated(
        self, fetched: int, puts: Mapping[int, str], proved: str | None, *, failed: bool
    ) -> int:
        """Of the bytes ``fetched`` here from the origin, those beyond this machine's copies in
        the mirror. A part claimed here is its copy when its first send made it there (``puts``:
        what each part's first send found, by number) before the object ``proved`` the file was
        (the part's name is the one arbiter: whoever made it holds the copy). Any other fetch
        here (found there, another's left there, never sent, sent once another's object proved
        the file, fetched again, cut short) went beside another copy; but when this machine's
        sends ``failed`` and no other's object proved the file, the parts it never sent are its
        own copies (nobody may have made them). A send that replaced other bytes (a forger's)
        made the copy."""
        unsent = "made" if failed and proved is None else "there"
        copies = sum(
            part.size
            for number, part in enumerate(self.parts, 1)
            if part.claims
            and puts.get(number, unsent) == "made"
            and (proved is None or part.late != proved)
        )
        return max(0, fetched - copies)

    def found(self, listed: Mapping[int, int] | None, *, lookups: int, most: int) -> list[int]:
        """The parts to read now (``READING``): of the ones ``listed`` (index: size) those to do,
        of their size and not refused (``most`` of them); when the listing is too long to judge
        (None), ``lookups`` of the others' parts, looked up by name."""
        parts = self.parts
        if listed is None:
            found = [i for i in self.indexes(State.THEIRS) if not parts[i].refused][:lookups]
        else:
            found = [
                i
                for i, size in sorted(listed.items())
                if 0 <= i < len(parts)
                and parts[i].state in TODO
                and size == parts[i].size
                and not parts[i].refused
            ][:most]
        for i in found:
            parts[i].back, parts[i].state = parts[i].state, State.READING
        return found

    def read_from_others(self, index: int, *, held: bool | None) -> bool:
        """Part ``index`` read from the mirror: it ``held`` its hash (``READ``), failed it
        (refused: ``FREE``, never read again), or (None) was not there whole (back as it was).
        Whether it is the first part refused (said once)."""
        part = self.parts[index]
        if held is None:
            part.state = part.back
        elif held:
            part.state = State.READ
            self.read += part.size
        else:
            part.state, part.refused = State.FREE, True
            self.refused += part.size
        return held is False and self.refused == part.size

    def theirs(self) -> set[int]:
        """The parts another machine held when last tried (being read or not)."""
        return {i for i, part in enumerate(self.parts) if _theirs(part)}

    def due(self, indexes: set[int]) -> None:
        """The others' parts ``indexes`` handed back (``FREE``): their claims are due a look."""
        for part in (self.parts[i] for i in indexes):  # (``theirs``: being read, or not)
            if part.state is State.READING:
                part.back = State.FREE
            else:
                part.state = State.FREE

    def release(self) -> list[H]:
        """Every claim held here, let go (the swarm ends)."""
        held = [part.handle for part in self.parts if part.handle is not None]
        for part in self.parts:
            part.handle = None
        return held

    def indexes(self, *states: State) -> list[int]:
        return [i for i, part in enumerate(self.parts) if part.state in states]

    @property
    def held(self) -> bool:
        """Whether a claim is held here (a part in flight)."""
        return any(part.handle is not None for part in self.parts)

    @property
    def fetched(self) -> int:
        """Parts handed to this machine's fetch (claimed here; a part claimed again, again)."""
        return sum(part.claims for part in self.parts)

    @property
    def mine(self) -> set[int]:
        """The parts claimed here."""
        return {i for i, part in enumerate(self.parts) if part.claims}

    @property
    def late(self) -> dict[int, str]:
        """Of them, those sent once an object was there: its version."""
        return {i: part.late for i, part in enumerate(self.parts) if part.late is not None}


def _theirs(part: Part[H]) -> bool:
    return State.THEIRS in (part.state, part.back if part.state is State.READING else None)


def _middle_of_longest(free: list[int]) -> int:
    """The middle of the longest run of consecutive parts in ``free`` (sorted): the part farthest
    from any held one."""
    best_start, best_len, start = free[0], 0, 0
    for i in range(1, len(free) + 1):
        if i == len(free) or free[i] != free[i - 1] + 1:
            if i - start > best_len:
                best_start, best_len = free[start], i - start
            start = i
    return best_start + best_len // 2
