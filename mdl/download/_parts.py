"""A file's parts in the mirror a fleet fills (``--fill-mirror``): the machine holding the lease
publishes them as its fetch lands them (``Publisher``), the machines waiting on it read them as they
appear into their own partial file (``Streamer``), and the final object is then made of them in the
store. A part is trusted for nothing: whoever reads them checks the whole file's hash before it is
installed, and a mismatch is the final object's turn (then the origin's). With a range trust
(``JobContext.trust``) the holder publishes only verified ranges (its fetch's ``RangeCheck`` tells
it what verified, and only that), and a follower checks each part as it arrives: a wrong one is
neither written nor claimed, and only its bytes come again.

Layout: ``mdl.buckets.names.Part``, one set per version of the file (``pin``: its sha256, else
its git blob id), part size and holder (``token``: its lease generation's, unknown before the lease
exists), every part that size but the last. An object already at a name the holder creates is
its part only if it holds its bytes."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from dataclasses import dataclass, field, replace
from functools import partial
from itertools import islice
from pathlib import Path
from typing import Literal, NamedTuple

from mdl import partsize
from mdl.buckets import names
from mdl.buckets.lease import LISTED_LIMIT, numbered
from mdl.buckets.protocol import Seen, Writer
from mdl.errors import MdlError
from mdl.store.confined import open_file
from mdl.transfer.context import Ledger
from mdl.transfer.job import RangeTrust, TransferJob
from mdl.transfer.ranges import Landings, covered, merged, touching
from mdl.transfer.resume import job_root, load_state, seed
from mdl.writes import write_at

log = logging.getLogger("mdl.pull")

# parts read (or sent, at the end) at once: each is held in memory on the way; a follower's look
# reads no more (a Ctrl-C, or the fetch's end, is heard between looks)
READERS = 4
JOIN_WAIT = 120.0  # seconds the fetch's end waits for a part still being sent


@dataclass(frozen=True)
class PartSet:
    """One version of one mirror object, cut in parts under mdl's namespace."""

    writer: Writer
    first: names.Part  # its first part: the version's, then (``under``) a holder's
    size: int
    side: str | None = None  # whose the file is (``side_of``): parts are marked as every upload
    # the file's (``JobContext.ledger``): every part read counts there, as the others' bytes
    ledger: Ledger = field(default_factory=Ledger, compare=False)

    @classmethod
    def of(
        cls,
        writer: Writer,
        root: str,
        uri: str,
        job: TransferJob,
        side: str | None = None,
        trust: RangeTrust | None = None,
        *,
        ledger: Ledger | None = None,
    ) -> PartSet | None:
        """The set for ``job``'s file at ``uri`` (``root``: the mirror's namespace; ``side``: whose
        it is), cut at its lock's part size when ``trust`` is its lock's (``partsize.cut_at``);
        None for a file of unknown size, without a hash (nothing could check its parts), or of one
        part."""
        ident = job.identity
        pin = ident.sha256 or ident.git_oid
        if not pin or not ident.size:
            return None
        locked = trust.spans[0][1] if trust is not None and trust.kind == "lock" else None
        part = partsize.cut_at(ident.size, locked)
        first = names.Part.of(root, uri, pin=pin, size=ident.size, part=part)
        # one part: the object itself comes as soon
        return (
            cls(writer, first, ident.size, side, ledger or Ledger())
            if ident.size > first.size
            else None
        )

    def read(self, number: int) -> tuple[bytes, Seen] | None:
        """Part ``number`` as the mirror holds it (no more than its size; None: not there), its
        bytes counted as the others' however they check."""
        start, end = self.span(number)
        found = self.writer.read(self.uri(number), limit=end - start, aged=False)
        self.ledger.add("peers", len(found[0]) if found is not None else 0)
        return found

    def under(self, token: str) -> PartSet:
        """The parts the holder of the lease generation ``token`` publishes."""
        return replace(self, first=replace(self.first, token=token))

    @property
    def part(self) -> int:
        """Bytes per part (the last may be shorter)."""
        return self.first.size

    @property
    def count(self) -> int:
        return -(-self.size // self.part)

    def uri(self, number: int) -> str:
        return replace(self.first, number=number).uri

    def span(self, number: int) -> tuple[int, int]:
        """Part ``number``'s bytes of the file (1-based)."""
        start = (number - 1) * self.part
        return start, min(start + self.part, self.size)

    def published(self) -> set[int]:
        """The parts there now (a name of another shape or size is no part of ours, and costs
        only its listing; a listing too long to judge shows none)."""
        listed = numbered(self.writer, self.first.prefix) or {}
        return {
            n
            for n, item in listed.items()
            if n <= self.count and item.size == self.span(n)[1] - self.span(n)[0]
        }

    def remove(self) -> None:
        """Every part (once the final object is there, or its bytes proved wrong), by name: a
        listing another writer filled with other names hides none; best effort: what stays,
        ``prune --mirror`` removes."""
        try:
            for number in range(1, self.count + 1):
                self.writer.delete(self.uri(number))
        except MdlError as exc:
            log.info("could not remove the parts under %s: %s", self.first.prefix, exc)

    def remove_holders(self) -> None:
        """Every holder's parts of this version (the holders before us: dead, or their lease
        taken over), found by a bounded listing of the names mdl gives them; best effort."""
        try:
            for item in islice(
                self.writer.listing(self.first.prefix, most=LISTED_LIMIT), LISTED_LIMIT
            ):
                found = names.parse(item.uri)
                if isinstance(found, names.Part) and found.token is not None:
                    self.writer.delete(item.uri)
        except MdlError as exc:
            log.info("could not remove the parts under %s: %s", self.first.prefix, exc)


def _put(parts: PartSet, number: int, data: bytes) -> Literal["made", "there"] | None:
    """Part ``number``'s ``data``, marked as mdl's (``parts.side``'s) as every upload is: created
    or (another writer's bytes) replaced on the version found ("made"), or found there already as
    these very bytes ("there"); None: not ours there (the end proves every part, and uploads the
    file when one is not its bytes)."""
    writer, uri, side = parts.writer, parts.uri(number), parts.side
    if writer.create(uri, data, side=side) is not None:
        return "made"
    found = writer.read(uri, limit=len(data), aged=False)
    if found is None:
        return "made" if writer.create(uri, data, side=side) is not None else None
    there, seen = found
    if there == data:
        return "there"
    log.warning("%s was not this holder's part: replaced", uri)
    return "made" if writer.replace(uri, data, etag=seen.etag, side=side) is not None else None


@dataclass(eq=False)
class Publisher(Landings):
    """The holder's: the parts its fetch has landed, sent as they become whole beside the fetch,
    which tells it what lands and what is taken back (it is the fetch's ``JobContext.landing``;
    with a range trust, the fetch's check tells it verified bytes only); ``finish`` sends the rest
    from the verified file. A part counts as sent only if no byte was taken back from before its
    read to after its send (``Landings``' epoch): else it goes again, as it lands again or at the
    end. A failure to send is said once, then left to the end (the final object is written all the
    same)."""

    parts: PartSet  # under the holder's own token
    job: TransferJob
    done: set[int] = field(default_factory=set)  # parts there, of our bytes (or a peer's: a swarm)
    beside: int = 0  # bytes sent while the fetch ran
    # what the first send of each part (by number) found: "made" (this copy is the store's), or
    # "there"/"lost" (another fetch's copy was, or stayed: a swarm's fetch here was ``duplicated``)
    puts: dict[int, str] = field(default_factory=dict)
    # told of each part sent as it landed, or that could not be (its claim is not kept)
    sent: Callable[[int], None] = lambda index: None
    failed: bool = False  # a send failed: the rest is left to the end (the object is written)

    def __post_init__(self) -> None:
        # a part in flight ends within the store client's timeouts; past JOIN_WAIT the run goes
        # on (the daemon's parts are sent again at the end, or never needed)
        spans = [self.parts.span(n) for n in range(1, self.parts.count + 1)]
        super().__init__(
            spans,
            self._send_landed,
            name="mdl-parts",
            forget=lambda touched: self.done.difference_update(i + 1 for i in touched),
            join=JOIN_WAIT,
        )

    def _send_landed(self, index: int, epoch: int, stop: threading.Event) -> bool:
        """Part ``index + 1``, whole on disk, sent from the ``.part``, or from the verified file
        once that moved into place (before its claim is let go: a claim released on a part not
        published sends another machine to the origin for it); once: a failure to send ends the
        sending beside the fetch; False: taken back meanwhile, sent again later."""
        if index + 1 in self.done:
            return True
        sent = (
            None
            if self.failed
            else self._send(index + 1, self.job.part_path, still=lambda: self.epoch == epoch)
        )
        if sent is None and not self.failed:  # moved into place: its bytes verified
            sent, epoch = self._send(index + 1, self.job.final_path), self.epoch
        if sent is None:  # not published (or moved into place): its claim, if any, not kept
            self.sent(index)
            return True
        with self.changed:
            if not sent or self.epoch != epoch:
                return False  # its bytes may have changed as they were read: sent again later
            self.done.add(index + 1)
        self.beside += sent
        self.sent(index)
        return True

    def there(self, index: int) -> None:
        """Part ``index + 1`` is in the store already (a peer's, read by a swarm): never sent
        (its copy there is the peer's, whatever this machine fetched of it)."""
        with self.changed:
            self.done.add(index + 1)
            self.puts.setdefault(index + 1, "there")

    def finish(self) -> list[str]:
        """Every part there (the rest sent from the verified file): their URIs in order; none
        when the rest could not be sent (the caller uploads the file)."""
        self.failed = False
        numbers = [n for n in range(1, self.parts.count + 1) if n not in self.done]
        with ThreadPoolExecutor(READERS, thread_name_prefix="mdl-part") as pool:
            sending = pool.map(partial(self._send, path=self.job.final_path), numbers)
            for number, sent in zip(numbers, sending, strict=True):
                if sent is not None:
                    self.done.add(number)
        # none, when they could not all be sent: the store cannot make the object of them
        return [] if self.failed else [self.parts.uri(n) for n in range(1, self.parts.count + 1)]

    def _send(
        self, number: int, path: Path, *, still: Callable[[], bool] = lambda: True
    ) -> int | None:
        """Part ``number`` read from ``path`` and sent: its bytes; None when not (the file moved
        into place meanwhile: the end sends it; a failure: said once, the file is uploaded at the
        end); 0: not sent, its bytes taken back as they were read (``still`` no longer holds:
        never sent, since every machine of a swarm reads what is at its name)."""
        job, (start, end) = self.job, self.parts.span(number)
        if self.failed:
            return None
        try:
            fd = open_file(job_root(job), path, os.O_RDONLY)
        except (OSError, MdlError) as exc:  # renamed into place meanwhile: the end sends the rest
            log.debug("%s: part %d not read now: %s", job.label, number, exc)
            return None
        try:
            data = os.pread(fd, end - start, start)
            if not still():
                return 0
            put = _put(self.parts, number, data) if len(data) == end - start else None
            with self.changed:  # ("lost": another writer's bytes stayed at its name)
                self.puts.setdefault(number, put or "lost")
            return len(data) if put is not None else None
        except (OSError, MdlError) as exc:  # the object is still written (``finish``)
            if not self.failed:
                job.retries.add(f"parts not published ({exc}); the file is uploaded at the end")
            self.failed = True
            return None
        finally:
            os.close(fd)


@dataclass
class Streamer:
    """A waiting machine's: the parts published so far read into its own ``.part`` (at their
    places), and a resume record claiming them (``seed``) before any fetch of the rest. With a
    range trust (``trust``), each part is checked as it arrives: only the trusted ranges
    wholly inside it that verify are written and claimed; a part with one that fails is said once
    per file, never read again from that holder, and its bytes are left to the fetch of the rest
    (the final object's, else the origin's): a wait counts only verified bytes."""

    parts: PartSet  # the version's: each holder's are under its token
    job: TransferJob
    trust: RangeTrust | None = None  # the file's range trust, if any
    ranges: list[tuple[int, int]] = field(default_factory=list)  # on disk: kept, then streamed
    streamed: int = 0  # bytes read from parts by this run (verified ones, with a trust)
    refused: int = 0  # bytes read from parts by this run that the trust refused (not claimed)
    wrong: set[str] = field(default_factory=set)  # parts (URIs) not to read again: refused
    warned: bool = False  # a part refused by the trust was said (once per file)
    _fd: int | None = None

    def step(self, token: str | None) -> int:
        """Read the parts the holder of the lease generation ``token`` published since the last
        step (None: a holder unknown, none read); the bytes on disk now (verified, with a
        trust: a part that is not the file is no progress)."""
        fd = self._fd if self._fd is not None else self._open()
        if token is None:
            return sum(end - start for start, end in self.ranges)
        parts = self.parts.under(token)
        new = self._unread(parts)[:READERS]
        if new:
            reading = partial(_read, parts, fd, self.trust)
            # readers for this step's parts only: no thread outlives the call on any path
            with ThreadPoolExecutor(READERS, thread_name_prefix="mdl-part") as pool:
                got = list(pool.map(reading, new))
            self._took([x for x in got if x is not None])
        return sum(end - start for start, end in self.ranges)

    def _took(self, got: list[_Got]) -> None:
        """The parts read: what of them was claimed, refused, and is not to be read again."""
        read = [span for x in got for span in x.spans]
        self.ranges = merged([*self.ranges, *read])
        claimed = sum(end - start for start, end in read)
        self.streamed += claimed
        self.refused += sum(x.size for x in got) - claimed
        log.info("%s: read %d parts another machine published", self.job.label, len(got))
        self._said([x.uri for x in got if x.wrong])
        # a part of which nothing could be claimed (refused, or no range of the trust lies wholly
        # in it) is not read again from this holder: the fetch of the rest brings its bytes
        self.wrong.update(x.uri for x in got if not x.spans)

    def _unread(self, parts: PartSet) -> list[int]:
        """The parts published under a holder's token not on disk yet (nor proved wrong)."""
        return [
            n
            for n in sorted(parts.published())
            if not covered(parts.span(n), self.ranges) and parts.uri(n) not in self.wrong
        ]

    def _said(self, wrong: list[str]) -> None:
        """Parts that failed the trust: never read again; the first said (once per file)."""
        if wrong and not self.warned:
            self.warned = True
            kind = self.trust.kind if self.trust is not None else ""
            self.job.retries.warn(
                f"{self.job.label}: another machine's part {wrong[0]} failed its {kind} hash;"
                " its bytes are fetched again alone"
            )
        self.wrong.update(wrong)

    def reuse(self, cancel: threading.Event, *, after: str | None, cut: int | None) -> None:
        """On taking the lease: the parts the holder we took over from (``after``: its token)
        published, read and claimed first (a failure to read them costs only their bytes: the
        fetch makes them); ``cut``: the fetch's pieces end at every multiple of it (half a part:
        two streams to a part, whole parts land in order and soon), fetched in order."""
        had, refused = -1, -1
        try:  # (parts refused are no bytes, but more may follow them)
            while not cancel.is_set() and (
                (now := self.step(after)) > had or self.refused > refused
            ):
                had, refused = now, self.refused
        except (OSError, MdlError) as exc:
            log.info("%s: the parts published before were not read: %s", self.job.label, exc)
        self.seed(cut=cut)

    def _open(self) -> int:
        kept = load_state(self.job)  # an earlier run's bytes of this very file, if any
        self._fd = open_file(job_root(self.job), self.job.part_path, os.O_RDWR | os.O_CREAT)
        if kept is None:
            os.ftruncate(self._fd, self.parts.size)
        else:
            self.ranges = merged([(p.start, p.start + p.done) for p in kept.pieces if p.done])
        return self._fd

    def seed(self, *, cut: int | None = None) -> None:
        """The bytes read so far claimed in a resume record (``cut``: see ``reuse``), the file
        closed: the fetch of the rest (from the final object, or the origin) resumes on them, and
        its hash checks them all."""
        if self._fd is None:
            return
        with suppress(OSError):
            os.close(self._fd)
        self._fd = None
        if self.streamed or cut:
            seed(self.job, self.ranges, cut=cut)


class _Got(NamedTuple):
    """A part read: the spans of it written and claimed, its bytes, its URI, and whether the
    trust refused a range of it."""

    spans: list[tuple[int, int]]
    size: int
    uri: str
    wrong: bool = False


def _read(parts: PartSet, fd: int, trust: RangeTrust | None, number: int) -> _Got | None:
    """Part ``number`` written at its place in ``fd`` (with ``trust``, only its verified ranges:
    :func:`_verified`); None: gone (the object is there), or not whole yet."""
    start, end = parts.span(number)
    found = parts.read(number)
    if found is None or len(found[0]) != end - start:
        return None
    if trust is None:
        write_at(fd, found[0], start)
        return _Got([(start, end)], end - start, parts.uri(number))
    data = memoryview(found[0])
    good, failed = verified(trust, start, data)
    for s, e in good:
        write_at(fd, data[s - start : e - start], s)
    return _Got(good, end - start, parts.uri(number), failed)


def verified(trust: RangeTrust, start: int, data: memoryview) -> tuple[list[tuple[int, int]], bool]:
    """The trusted ranges wholly inside the bytes ``data`` at ``start`` that hold (merged), and
    whether one failed. A range reaching past the part (the trust cut the file otherwise) cannot
    be checked from it: its bytes are left to the fetch of the rest."""
    end, spans = start + len(data), trust.spans
    good: list[tuple[int, int]] = []
    failed = False
    for index in touching(spans, start, end):
        s, e = spans[index]
        if start <= s and e <= end:
            try:
                holds = trust.holds(index, data[s - start : e - start])
            except ValueError:  # (as the fetch's own check: not proved, so refused)
                holds = False
            good += [(s, e)] if holds else []
            failed |= not holds
    return merged(good), failed
