"""What a fetch is handed beside its ``TransferJob`` (what the file is): who hears it land, the
trust its ranges are checked against, the order its pieces go in, this run's probe answer, and
where its range check is found while it runs, and the ledger its bytes are counted in. The one
place a new listener of a fetch plugs in (docs/maintaining.md)."""

# (annotations here are evaluated, not postponed: typing compiles each string annotation of a
# NamedTuple's fields at every start)
import threading
from collections import Counter
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Literal, NamedTuple

from mdl.transfer.job import Landing, Opening, PartSource, RangeTrust, TransferJob

if TYPE_CHECKING:  # (a plain get loads no range check: this one annotation stays a string)
    from mdl.transfer.ranges import Releases


# how bytes move: from a file's origin, a mirror, the others' parts (a swarm, a fill); copied from
# files here; and, of those, fetched again (a range that failed its hash), thrown away (taken
# back, refused) or fetched by another machine too (a swarm's part published twice)
Way = Literal["origin", "mirror", "peers", "reused", "refetched", "thrown", "duplicated"]
NETWORK: tuple[Way, ...] = ("origin", "mirror", "peers")  # a file's ``fetched``: their sum


class Ledger:
    """The bytes of one file's fetch by the way they moved, counted where they move: every source
    and try of the file adds to one ledger, from any thread; read once into its result
    (``bytes``: by way)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.bytes: Counter[Way] = Counter()

    def add(self, way: Way, n: int) -> None:
        with self._lock:
            self.bytes[way] += n

    def counting(
        self, job: TransferJob, chunks: Iterable[bytes | memoryview]
    ) -> Iterator[bytes | memoryview]:
        """The body of an answer to ``job``, each chunk counted as it comes (cut short or not):
        a mirror's bytes (a job that falls back), else its origin's."""
        way: Way = "mirror" if job.fallback else "origin"
        for chunk in chunks:
            self.add(way, len(chunk))
            yield chunk

    @property
    def fetched(self) -> int:
        """The bytes that crossed the network, whatever became of them."""
        return sum(self.bytes[way] for way in NETWORK)


class JobContext(NamedTuple):
    """Who hears a fetch, and what it is handed, beside its ``TransferJob``. (A NamedTuple: a
    frozen dataclass's generated methods were compiled at every start, issue 90.)"""

    # the bytes the fetch moves, counted where they move (a file's sources share one)
    ledger: Ledger

    # Told what of the ``.part`` lands and what is taken back (``Landing``); None: nobody asks
    landing: Landing | None = None
    # A trusted hash for each range (``mdl.transfer.ranges``): each is checked as it lands, and
    # one that fails is fetched again alone; None: only the whole file is checked
    trust: RangeTrust | None = None
    # True: a loader reads it as it lands (``serve --pull``): with a ``trust``, its ranges in
    # order, so they verify from the front, every stream busy to the end (``_part.in_order``)
    in_order: bool = False
    # the probe's answer (of this run), its body still unread: the first stream takes it
    opening: Opening | None = None
    # where the fetch's range check is found while it runs (``mdl.transfer.ranges.Releases``:
    # the pull that serves loaders owns it); None: nobody reads the file before it verified
    releases: "Releases | None" = None
    # the fleet's swarm (``PartSource``): the parts this machine fetches are the ones it says,
    # one piece each; the rest it writes from the others' (checked); None: every part fetched here
    swarm: PartSource | None = None

    @property
    def bare(self) -> bool:
        """Nothing beside the fetch hears or shapes it (its ledger aside)."""
        beside = (self.landing, self.trust, self.opening, self.releases, self.swarm)
        return not self.in_order and all(one is None for one in beside)
