"""What a fetch is handed beside its ``TransferJob`` (what the file is): who hears it land, the
trust its ranges are checked against, the order its pieces go in, this run's probe answer, and
where its range check is found while it runs. The one place a new listener of a fetch plugs in
(docs/maintaining.md)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mdl.transfer.job import Landing, Opening, PartSource, RangeTrust
    from mdl.transfer.ranges import Releases


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
