"""What a fetch is handed beside its ``TransferJob`` (what the file is): who hears it land, the
trust its ranges are checked against, the order its pieces go in, this run's probe answer, and
where its range check is found while it runs, and the ledger its bytes are counted in. The one
place a new listener of a fetch plugs in (docs/maintaining.md)."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Sized
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, TypeVar

if TYPE_CHECKING:
    from mdl.transfer.job import Landing, Opening, PartSource, RangeTrust, TransferJob
    from mdl.transfer.ranges import Releases


# how bytes move: from a file's origin, a mirror, the others' parts (a swarm, a fill); copied from
# files here; and, of those, fetched again (a range that failed its hash), fetched twice (a
# part another machine fetched too) or thrown away (taken back, dropped, refused)
Way = Literal["origin", "mirror", "peers", "reused", "refetched", "duplicated", "thrown"]
NETWORK: tuple[Way, ...] = ("origin", "mirror", "peers")  # a file's ``fetched``: their sum
C = TypeVar("C", bound=Sized)


class Ledger:
    """The bytes of one file's fetch by the way they moved, counted where they move: every source
    and try of the file adds to one ledger, from any thread; read once into its result."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._bytes: dict[Way, int] = dict.fromkeys(NETWORK, 0)

    def add(self, way: Way, n: int) -> None:
        with self._lock:
            self._bytes[way] = self._bytes.get(way, 0) + n

    def counting(self, way: Way, chunks: Iterable[C]) -> Iterator[C]:
        """``chunks`` as they come, each counted as it comes (a body read: cut short or not)."""
        for chunk in chunks:
            self.add(way, len(chunk))
            yield chunk

    def __getitem__(self, way: Way) -> int:
        return self._bytes.get(way, 0)

    @property
    def fetched(self) -> int:
        """The bytes that crossed the network, whatever became of them."""
        with self._lock:
            return sum(self._bytes[way] for way in NETWORK)


def sent_by(job: TransferJob) -> Way:
    """The way a job's answers move bytes: a mirror's (a job that falls back), else the origin's."""
    return "mirror" if job.fallback else "origin"


@dataclass(frozen=True)
class JobContext:
    """Who hears a fetch, and what it is handed, beside its ``TransferJob``."""

    # Told what of the ``.part`` lands and what is taken back (``Landing``); None: nobody asks
    landing: Landing | None = None
    # A trusted hash for each range (``mdl.transfer.ranges``): each is checked as it lands, and
    # one that fails is fetched again alone; None: only the whole file is checked
    trust: RangeTrust | None = None
    # True: a loader reads it as it lands (``serve --pull``): with a ``trust``, one piece per
    # range, fetched in order, so ranges verify from the front
    in_order: bool = False
    # the probe's answer (of this run), its body still unread: the first stream takes it
    opening: Opening | None = None
    # where the fetch's range check is found while it runs (``mdl.transfer.ranges.Releases``:
    # the pull that serves loaders owns it); None: nobody reads the file before it verified
    releases: Releases | None = None
    # the fleet's swarm (``PartSource``): the parts this machine fetches are the ones it says,
    # one piece each; the rest it writes from the others' (checked); None: every part fetched here
    swarm: PartSource | None = None
    # the bytes the fetch moves, counted where they move (a file's sources share one)
    ledger: Ledger = field(default_factory=Ledger, compare=False)
