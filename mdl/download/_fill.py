"""Filling a mirror on pull (``--fill-mirror``): a file the fleet's mirror lacks is fetched from its
origin by one machine, under a lease in the mirror itself (mdl.buckets.lease), and published there
in parts as its fetch lands them (mdl.download._parts), the final object made of them once the file
verified; the machines that find the lease read those parts as they appear, then the rest from the
final object, and check the whole file's hash like any source's. A machine that takes over a lapsed
lease continues from the parts published; one that finds its own lease (its run killed: the token
beside its partial) takes it over at once and publishes the bytes it has. Whenever a peer's bytes
fail or a wait is given up, the next source is the final object if it is there (parts that failed
while their holder's lease is live: its object waited on again), then the origin. With a range
trust, each part is checked as it arrives (mdl.download._parts): a wrong one is no progress, and
the fetch of the rest from those sources fetches its bytes alone. An object found at
the final name when the holder writes it is judged by its own bytes, never by being there. A store
that cannot hold a lease (it ignores conditional writes, or refuses ours) is read as today.
"""

from __future__ import annotations

import logging
import math
import threading
import time
import weakref
from collections.abc import Callable
from concurrent.futures import Executor, ThreadPoolExecutor
from contextlib import nullcontext, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from mdl.buckets import names
from mdl.buckets.lease import GaveUp, Lease, Look, Renewing, new_token, take, wait_for
from mdl.buckets.protocol import Seen, Writer, side_of
from mdl.catalog.settings import fixed_part
from mdl.download._claims import Claims, SwarmEnded
from mdl.download._parts import READERS, PartSet, Publisher, Streamer
from mdl.download._swarm import Swarm, SwarmFailed, remove_claims
from mdl.errors import INTERRUPTED, InterruptedByUserError, MdlError
from mdl.sources.resolve import RemoteFile, mirror_targets
from mdl.store.confined import read_bytes, unlink, write_atomic
from mdl.transfer.job import TransferJob, TransferResult
from mdl.transfer.resume import job_root
from mdl.wait import Wait

if TYPE_CHECKING:
    from mdl.download._owned import Target
    from mdl.download.session import FileSources

log = logging.getLogger("mdl.pull")

# what --json and the summary say of a file a fill concerned (FileOutcome.fill): uploaded by this
# machine; read from the mirror as another filled it (its parts as they landed), or once it was
# there; fetched from the origin after all (the holder gave up, or its bytes were not the file's)
FILLED, STREAMED, READ, FROM_ORIGIN = "filled", "streamed", "read", "from origin"
SWARMED = "swarmed"  # its parts shared by the machines that wanted it (the object made by another)
TAKE_ROUNDS = 5  # takes and waits on one file's lease, then the origin (it changes hands so often)


@dataclass(frozen=True)
class Place:
    """One file's object in the mirror to fill."""

    target: Target
    uri: str

    @property
    def lease(self) -> names.Generation:
        return names.Generation.of(self.target.root, self.uri)


def fill_or_fetch(sources: FileSources) -> TransferResult:
    """The file from its mirrors, else its origin; with ``--fill-mirror``, a file the mirror to fill
    lacks is fetched once for the fleet (:func:`_filled`)."""
    place = _place(sources) if sources.session.settings.fill_mirror else None
    if place is None or (seen := _seen(place, sources.job)) is False:
        return sources.mirrors() or sources.origin()
    not_asked = frozenset({place.target.template})  # the mirror to fill
    if seen is None:
        # the mirror to fill is not asked for what it does not have (no warning for that file)
        _older_fill(place, sources.job)
        return sources.mirrors(not_asked) or _shared(sources, place)
    if _theirs(place, seen, sources):  # another catalog's version: left, ours from elsewhere
        return sources.mirrors(not_asked) or sources.origin()
    # there, but no mirror delivered verified bytes: the object (proved wrong, or unreadable) is
    # replaced on the version seen once the origin's are here (unless the mirror went down since),
    # not read by the fleet forever
    return sources.mirrors() or (
        sources.origin()
        if place.target.template in sources.session.owned.dead_mirrors
        else _shared(sources, place, over=seen.etag)
    )


def _shared(sources: FileSources, place: Place, *, over: str | None = None) -> TransferResult:
    """The file the mirror lacks, fetched once for the fleet: by a swarm, part by part, when each
    part can be checked alone (``mdl.download._swarm``); else by one machine under the file's
    lease (:func:`_filled`), and why said in the file's outcome."""
    parts = PartSet.of(
        place.target.writer,
        place.target.root,
        place.uri,
        sources.job,
        side_of(sources.remote.source),
        sources.beside.trust,  # (a lock's: cut at its part size)
        ledger=sources.ledger,
    )
    why = _unswarmable(sources, parts)
    if why is None and parts is not None:  # its mirror reads on one pool for its whole run
        with ThreadPoolExecutor(READERS, thread_name_prefix="mdl-swarm") as readers:
            return _swarm_on(sources, place, over, parts, readers)
    result = _filled(sources, place, parts, over=over)
    return result._replace(unswarmed=why) if why else result


def _unswarmable(sources: FileSources, parts: PartSet | None) -> str | None:
    """Why the file cannot swarm (None: it can; "": one part, nothing to say): a part another
    machine fetched must be checked alone, by hashes that chain to the user's pin."""
    trust = sources.beside.trust
    if parts is None:
        return ""
    if trust is None:
        if sources.remote.xet is not None:
            return "its Xet hash is the Hub's answer, not pinned by the lock (run `mdl lock`)"
        return "the lock has no part hashes for it (run `mdl lock` to record them)"
    ends = {end for _, end in trust.spans}
    if not all(parts.span(n)[1] in ends for n in range(1, parts.count + 1)):
        return f"its {trust.kind} ranges do not line up with the fleet's parts"
    return None


def _swarm_on(
    sources: FileSources, place: Place, over: str | None, parts: PartSet, readers: Executor
) -> TransferResult:
    """The file from the swarm (its parts claimed and fetched here, the rest read from the
    others'), then the final object made of the parts unless another machine made it first; once
    one is there while this machine still swarms, the rest read from it (verified: one that is not
    the file is refused, said, and the swarm goes on; the maker replaces it)."""
    session, job, writer = sources.session, sources.job, place.target.writer
    token = _mine(job) or new_token()  # a run killed before: its claims are taken back at once
    with suppress(OSError, MdlError):
        write_atomic(job_root(job), _token_path(job), token.encode())
    trust = sources.beside.trust
    assert trust is not None  # (``_unswarmable``)
    swarm = Swarm(
        parts,
        trust,
        job,
        holder=session.owned.fills.holder,
        token=token,
        wait=Wait(cancel=session.cancel),
        # (an object of another size is not the file: junk there ends no swarm)
        there=lambda: _version(writer, place.uri, size=sources.remote.size),
        readers=readers,
        term=session.owned.fills.term,
    )
    if over is not None:
        swarm.final.refuse(over)
    publisher = Publisher(parts, job, sent=swarm.sent)
    swarm.heard = publisher.there
    swarm.waiting = lambda said: session.progress.waiting(job.label, said)
    try:
        with swarm, publisher:
            result = None
            while result is None:
                try:
                    result = sources.heard(publisher, swarm).origin()
                except SwarmEnded as ended:
                    result = _rest(sources, place, swarm, ended)
                    if result is None:  # not the file (said): the swarm goes on, the object
                        over = ended.version  # replaced by the machine that makes it
                        swarm.final.refuse(ended.version)
                except SwarmFailed as failed:  # the file's lease, resumed on what the swarm wrote
                    job.retries.warn(f"{failed.message}; fetched under the file's lease")
                    twice = _twice(sources, swarm, publisher)  # (before the lease's fetch)
                    # said as a file that could not swarm: what the lease fetches beside the
                    # others' swarm is no swarm's part, never in ``duplicated``
                    alone = failed.message.removeprefix(f"{job.label}: ")
                    leased = _filled(sources, place, parts, over=over)
                    return leased._replace(
                        duplicated=twice,
                        unswarmed=alone,
                        streamed=leased.streamed + swarm.state.read,
                    )
        result = _made(sources, place, over, result, swarm, publisher)
        if result.fill != FILLED:
            _tidy(place, swarm, job)
    finally:
        with suppress(OSError, MdlError):
            unlink(job_root(job), _token_path(job))
    return result._replace(
        fill=result.fill or SWARMED,
        published=publisher.beside,
        streamed=swarm.state.read,
        parts_here=result.parts_here + swarm.state.fetched,
        parts_peers=result.parts_peers + -(-swarm.state.read // parts.part),
        duplicated=_twice(sources, swarm, publisher),
    )


def _twice(sources: FileSources, swarm: Swarm, publisher: Publisher) -> int:
    """The swarm's bytes fetched here beyond this machine's copies in the mirror (its origin
    bytes but those fetched again after a mismatch, said as ``refetched``), put in the file's
    ledger once, as it ends here (``PartStates.duplicated``); the ledger's count."""
    ways = sources.ledger.bytes
    twice = swarm.state.duplicated(
        ways["origin"] - ways["refetched"],
        publisher.puts,
        swarm.final.proved,
        failed=publisher.failed,
    )
    sources.ledger.add("duplicated", twice)
    return ways["duplicated"]


def _rest(
    sources: FileSources, place: Place, swarm: Swarm, ended: SwarmEnded
) -> TransferResult | None:
    """The rest of a file whose object was made while this machine swarmed: read from it, the
    parts it brought counted as the others'; None when it is not the file (read and refused,
    said as any mirror's bad bytes: the swarm goes on)."""
    log.info("%s: mirror %s was made meanwhile: the rest from it", sources.job.label, place.uri)
    before = sources.ledger.bytes["mirror"]
    rest = sources.mirror(place.target.template, place.uri)
    if rest is None:
        return None
    swarm.final.proved = ended.version
    theirs = -(-(sources.ledger.bytes["mirror"] - before) // swarm.parts.part)
    return rest._replace(parts_here=0, parts_peers=theirs)


def _place(sources: FileSources) -> Place | None:
    """The file's object in the mirror to fill; None: no mirror to fill, or not this file (it has
    no hash a mirror's bytes can be checked against, or the mirror is down for the run)."""
    session = sources.session
    target = session.owned.fills.target(sources.job.retries)
    if target is None or target.template in session.owned.dead_mirrors:
        return None
    for template, url in mirror_targets(session.settings.mirrors, sources.remote):
        if template == target.template:
            return Place(target, url)
    return None


def _seen(place: Place, job: TransferJob) -> Seen | Literal[False] | None:
    """The object in the mirror to fill with its mark (``Writer.owned``), None when it lacks it;
    False: a failed look (read as today, where its failure is said)."""
    try:
        return place.target.writer.owned(place.uri, root=fixed_part(place.target.template))
    except MdlError as exc:
        job.retries.add(f"mirror {place.uri}: cannot look ({exc.message})")
        return False


# what a run said once of its mirror to fill: a model whose name another catalog fills too, an
# older mdl's leases there
_SAID: weakref.WeakKeyDictionary[Target, set[str]] = weakref.WeakKeyDictionary()
_SAID_LOCK = threading.Lock()


def _once(target: Target, key: str) -> bool:
    """Whether ``key`` is news for this run's mirror to fill (said once, then only logged)."""
    with _SAID_LOCK:
        said = _SAID.setdefault(target, set())
        fresh = key not in said
        said.add(key)
    return fresh


def _theirs(place: Place, seen: Seen, sources: FileSources) -> bool:
    """Whether the object there carries mdl's mark for another version of this file from
    another origin: another catalog's model of the same name, filled through the same template.
    Someone's, not poison: never replaced, and this machine gets its own bytes elsewhere. (An
    older version from this file's own origin, or of a mark that names none, is replaced as
    before.) Said once per model and run (the file named), then logged."""
    remote, label, mark = sources.remote, sources.job.label, seen.mark
    if mark is None or not mark.foreign({side_of(remote.source)}, remote.sha256):
        return False
    said = (
        f"{label}: mirror {place.uri} holds another catalog's file of the same name (sha256"
        f" {mark.sha256}; this catalog's: {remote.sha256 or 'another'}): two catalogs name a"
        f" model {remote.model!r} from other origins and fill one template; left as it is, this"
        " file comes from elsewhere (give one of the models another name)"
    )
    if _once(place.target, f"theirs:{remote.model}"):
        sources.job.retries.warn(said)
    else:
        log.info("%s", said)
    return True


def _older_fill(place: Place, job: TransferJob) -> None:
    """Say once per run when an mdl before 0.4 fills this mirror: its lease (``names.OldLease``
    beside the object) is not seen by ours, nor ours by it, so each side fetches from the
    origin what the mirror lacks."""
    old = names.OldLease(place.uri).uri
    with suppress(MdlError, ValueError):
        if place.target.writer.head(old) is not None and _once(place.target, "older"):
            job.retries.warn(
                f"mirror {place.target.template}: {old} is the lease of an mdl before 0.4 filling"
                " it; its machines and this one do not see each other's leases and each fetch"
                " from the origin: run mdl 0.4 or later on every machine of the fleet"
            )


def _made(
    sources: FileSources,
    place: Place,
    over: str | None,
    result: TransferResult,
    swarm: Swarm,
    publisher: Publisher,
) -> TransferResult:
    """The object made of a swarm's parts by one machine: the first to have the file, which takes
    the object's lease (one that finds it held, or the object there and the file, leaves it to
    that holder: a swarm's machine, or an mdl before the swarm fetching it whole; an object there
    that is not the file is replaced); the claims removed after."""
    writer, job, fills = place.target.writer, sources.job, sources.session.owned.fills
    try:
        over = _unproved(place, job, result, swarm, publisher, over)
        lease = (
            None
            if _present(writer, place.uri, over)
            else take(writer, place.lease, holder=fills.holder, term=fills.term)
        )
    except MdlError as exc:
        log.info("%s: mirror %s not made here (%s)", job.label, place.uri, exc.message)
        return result
    if lease is None:
        log.info("%s: mirror %s is made by another machine", job.label, place.uri)
        return result
    try:
        with Renewing(lease):
            if _present(writer, place.uri, over):
                return result
            made = _upload(place, job, sources.remote, result, over, publisher)
    finally:
        _release(lease, job.label)
    if made.fill == FILLED:
        remove_claims(publisher.parts, job.label)
    return made


def _unproved(
    place: Place,
    job: TransferJob,
    result: TransferResult,
    swarm: Swarm,
    publisher: Publisher,
    over: str | None,
) -> str | None:
    """The version to replace at the final name: an object there (but ``over``) that is not
    ``result``'s file by its own bytes (a forged one this machine never read); else ``over``.
    One that is the file is ``Final.proved``. Checked only when it matters: parts of this
    machine not yet sent, parts sent once it was there, or the swarm's parts still there."""
    writer, final, parts = place.target.writer, swarm.final, swarm.parts
    there = _version(writer, place.uri, size=None)
    if there is None or there in (over, final.proved) or not result.sha256:
        return over
    if len(publisher.done) == parts.count and not swarm.state.late and not parts.published():
        return over
    if writer.holds(place.uri, job.final_path, size=result.size, sha256=result.sha256):
        final.proved = there
        return over
    log.info("%s: mirror %s is not the file: replaced", job.label, place.uri)
    return there


def _tidy(place: Place, swarm: Swarm, job: TransferJob) -> None:
    """Once the object proved the file to a machine that did not make it (read here and
    verified, or its own bytes checked against the file here: ``Final.proved``), the swarm's
    parts and claims still there removed (an mdl before the swarm made it whole under the file's
    lease, and knew none of them); best effort."""
    parts, final = swarm.parts, swarm.final
    try:
        if final.proved is None or not parts.published():
            return
    except MdlError as exc:
        log.info("%s: the swarm's parts were left: %s", job.label, exc.message)
        return
    log.info("%s: mirror %s was made by another: its swarm's parts removed", job.label, place.uri)
    parts.remove()
    remove_claims(parts, job.label)


def _filled(
    sources: FileSources, place: Place, parts: PartSet | None, *, over: str | None = None
) -> TransferResult:
    """Take the object's lease and fill it (``over``: the version there, proved wrong, replaced);
    or, while another machine holds it, read the parts it publishes as they appear and the rest
    from the mirror once it is filled (take it, when its holder gave up: the parts read are kept);
    past the wait's bound, the rest from the cheapest source there is (:func:`_cheapest`). Every
    way, the whole file's hash decides."""
    session, job = sources.session, sources.job
    fills, writer, label, shown = session.owned.fills, place.target.writer, job.label, place.uri
    streamer = Streamer(parts, job, sources.beside.trust) if parts is not None else None
    said = _Said(streamer)
    reading = streamer  # None once parts read under a holder's token proved not the file
    # a lease is live only as far as this machine saw it renewed (a future mtime is no renewal)
    seen, stale = Claims(fills.term, whole=True), lambda found: seen.over(0, found)
    seen.bound = math.inf  # (a file's holder is waited on within ``wait_for``'s bounds)
    for _ in range(TAKE_ROUNDS):
        _stop_if_cancelled(session.cancel)
        try:
            lease = take(
                writer,
                place.lease,
                holder=fills.holder,
                term=fills.term,
                mine=_mine(job),
                dead=stale,
            )
        except MdlError as exc:
            why = f"{label}: cannot take a lease on mirror {shown} ({exc.message})"
            return said(*_cheapest(sources, place, over, why))
        if lease is not None:
            return said(_took(sources, place, lease, over, parts, reading), None)
        log.info("%s: another machine is filling mirror %s; waiting on it", label, shown)
        state = _waited(sources, place, over, reading, said, stale)
        if isinstance(state, GaveUp):
            why = f"{label}: gave up waiting on mirror {shown} ({state.why})" if state.why else ""
            return said(*_cheapest(sources, place, over, why))
        if state == "free":
            log.info("%s: the lease on mirror %s was given up; taking it", label, shown)
            continue
        log.info("waited %.1f s on mirror %s for %s", said.waited, shown, label)
        # a mismatch there is warned of: the object read again whole, then the origin
        read = sources.mirror(place.target.template, place.uri)
        if read is not None:
            return said(read, STREAMED)  # (READ when no part read was kept)
        if state != "streamed" or _present(writer, place.uri, over):
            return said(*_cheapest(sources, place, over, ""))
        # every part read under the holder's token, but not the file (anyone who read the lease
        # can write there), and no object yet: the holder is waited on again for its object
        # alone (its parts no longer read), never the origin at once
        reading = None
        log.info(
            "%s: the parts on mirror %s were not the file; waiting on its object", label, shown
        )
    why = f"{label}: the lease on mirror {shown} changed hands {TAKE_ROUNDS} times"
    return said(*_cheapest(sources, place, over, why))


def _took(
    sources: FileSources,
    place: Place,
    lease: Lease,
    over: str | None,
    parts: PartSet | None,
    reading: Streamer | None,
) -> TransferResult:
    """With the lease: the parts of the holder it was taken over from read first (``reading``),
    then the fill (:func:`_holding`)."""
    if reading is not None and parts is not None:
        # Xet fetches by chunk, never on a plain record: its parts go up once it verified
        by_chunk = sources.remote.xet is not None and sources.session.settings.xet
        reading.reuse(
            sources.session.cancel, after=lease.after, cut=None if by_chunk else parts.part // 2
        )
    return _holding(sources, place, lease, over, parts)


def _waited(
    sources: FileSources,
    place: Place,
    over: str | None,
    streamer: Streamer | None,
    said: _Said,
    stale: Callable[[Look], bool],
) -> str | GaveUp:
    """The wait on another machine's lease (:func:`wait_for`), the parts read kept on disk; a
    failure to wait is given up on."""
    session, job = sources.session, sources.job
    started = session.owned.fill_waits.begin()  # (before it is said: the wait is under way)
    session.progress.waiting(job.label, "another machine is filling the mirror")
    try:
        return wait_for(
            place.target.writer,
            place.uri,
            place.lease,
            size=sources.remote.size or 0,
            wait=Wait(cancel=session.cancel),
            term=session.owned.fills.term,
            over=over,
            step=streamer.step if streamer is not None else lambda token: 0,
            # a part is progress only when its ranges verified against hashes bound to the pin
            trusted=sources.beside.trust is not None,
            rate=session.owned.origin_rate.rate,
            began=said.began,
            stale=stale,
        )
    except InterruptedByUserError as exc:  # Ctrl-C: said as every interrupted file is
        raise InterruptedByUserError(INTERRUPTED) from exc
    except (MdlError, OSError) as exc:  # OSError: the partial the parts go to
        why = exc.message if isinstance(exc, MdlError) else exc.strerror or str(exc)
        return GaveUp(f"cannot wait on it: {why}")
    finally:
        said.waited += session.owned.fill_waits.end(started)
        if streamer is not None:  # what it read, kept for whatever fetches the rest
            streamer.seed()
        _stop_if_cancelled(session.cancel)


def _cheapest(
    sources: FileSources, place: Place, over: str | None, why: str
) -> tuple[TransferResult, str]:
    """The file from the cheapest verified source there is: the mirror's final object when it is
    there (its holder made it of its verified file; its bytes are checked as any mirror's), else
    the origin, the dearest, which a fleet must spare; ``why`` (unless empty) is warned, with the
    source. A partial a peer's parts made, that failed the hash, is gone by now: the object is
    read whole."""
    if _present(place.target.writer, place.uri, over):
        if why:
            sources.job.retries.warn(f"{why}; reading the mirror's object")
        read = sources.mirror(place.target.template, place.uri)
        if read is not None:
            return read, READ
    elif why:
        sources.job.retries.warn(f"{why}; fetching it from the origin")
    return sources.origin(), FROM_ORIGIN


@dataclass
class _Said:
    """A fill's result, with the time waited on another machine, the bytes read from its parts
    (kept, when this machine took its lease over), and what the fill made of the file."""

    streamer: Streamer | None
    waited: float = 0.0
    began: float = field(default_factory=time.monotonic)  # the file's waits' bound counts from it

    def __call__(self, result: TransferResult, fill: str | None) -> TransferResult:
        # of the parts read, those the file kept: at most what its last fetch resumed on (a
        # partial they made that failed the hash was thrown away, and they with it)
        read = self.streamer.streamed if self.streamer is not None else 0
        kept = min(read, result.resumed_from)
        fill = fill or result.fill
        return result._replace(
            waited=result.waited + self.waited,
            fill=READ if fill == STREAMED and not kept else fill,
            streamed=kept,
        )


def _mine(job: TransferJob) -> str | None:
    """The token of the lease generation a run of this machine held for ``job``'s file (killed
    before it ended: its partial is on this disk), or None."""
    with suppress(OSError, MdlError, UnicodeDecodeError):
        said = read_bytes(job_root(job), _token_path(job), limit=64).decode()
        return said if names.TOKEN.fullmatch(said) else None
    return None


def _token_path(job: TransferJob) -> Path:
    return job.part_path.with_name(job.part_path.name.removesuffix(".part") + ".lease")


def _holding(
    sources: FileSources, place: Place, lease: Lease, over: str | None, parts: PartSet | None
) -> TransferResult:
    """With the object's lease: from the origin (verified; resumed on the parts already read),
    its parts published as they land (under its token, kept beside the partial for a restart of
    this machine), then the object made (``over``: replacing that version); the lease renewed all
    along and released whatever happens."""
    writer, label, shown, job = place.target.writer, sources.job.label, place.uri, sources.job
    if parts is not None:
        with suppress(OSError, MdlError):  # without it, a restart waits a term as others do
            write_atomic(job_root(job), _token_path(job), lease.token.encode())
    try:
        with Renewing(lease, every=lease.term / 3) as renewing:
            # filled since we looked (its holder done before our take): read from it
            if _present(writer, place.uri, over):
                found = sources.mirror(place.target.template, place.uri)
                if found is not None:
                    return found._replace(fill=READ)
            log.info("%s: filling mirror %s (lease taken)", label, shown)
            publisher = Publisher(parts.under(lease.token), job) if parts is not None else None
            with publisher or nullcontext():
                # its fetch tells the publisher what lands (and what it takes back)
                result = sources.heard(publisher).origin()
            if renewing.lost.is_set():
                # another machine took it over and may be fetching too; the upload never replaces
                log.info("%s: the lease on mirror %s lapsed while fetching", label, shown)
            filled = _upload(place, job, sources.remote, result, over, publisher)
            if parts is not None:  # the holders' before us (the object is there, or failed)
                parts.remove_holders()
            return filled._replace(published=publisher.beside if publisher is not None else 0)
    finally:
        _release(lease, label)
        with suppress(OSError, MdlError):
            unlink(job_root(job), _token_path(job))


def _present(writer: Writer, uri: str, over: str | None) -> bool:
    """Whether an object is at ``uri``, not the version ``over``."""
    return _version(writer, uri, size=None) not in (None, over)


def _version(writer: Writer, uri: str, *, size: int | None) -> str | None:
    """The version of the object at ``uri`` when it is of ``size`` bytes, if known (None: none,
    another size, or a look that failed)."""
    try:
        seen = writer.head(uri)
    except MdlError:
        return None
    return seen.etag if seen is not None and size in (None, seen.size) else None


def _upload(
    place: Place,
    job: TransferJob,
    remote: RemoteFile,
    result: TransferResult,
    over: str | None,
    publisher: Publisher | None,
) -> TransferResult:
    """The verified file in the mirror unless one is there (never replaced but the version
    ``over``, proved wrong, removed first): made of its parts in the store where it can, else
    uploaded; the parts removed after. A failure is a warning: the file here is verified all the
    same."""
    label, shown, writer = job.label, place.uri, place.target.writer
    if not _as_known(remote, result):
        job.retries.warn(f"{label}: not filling mirror {shown}: its bytes were not verified")
        if publisher is not None:
            publisher.parts.remove()
        return result
    try:
        if over is not None and writer.delete(place.uri, etag=over):
            log.info("%s: removed mirror %s: its bytes were not the file's", label, shown)
        done = _written(place, job, result, publisher, side_of(remote.source))
        if not done and (wrong := _not_the_file(place, job, result, side_of(remote.source))):
            # another writer's bytes at the name this fill creates: never taken for the file
            job.retries.warn(
                f"{label}: mirror {shown} held bytes that are not the file's: replaced"
            )
            done = writer.delete(place.uri, etag=wrong) and _written(
                place, job, result, None, side_of(remote.source)
            )
    except MdlError as exc:
        job.retries.warn(
            f"{label}: could not fill mirror {shown} ({exc.message}); the file here is verified"
        )
        return result
    if done:
        log.info("%s: filled mirror %s", label, shown)
        return result._replace(fill=FILLED)
    log.info("%s: mirror %s was filled by another machine meanwhile", label, shown)
    return result


def _written(
    place: Place, job: TransferJob, result: TransferResult, publisher: Publisher | None, side: str
) -> bool:
    """The object made of the parts in the store (every part proved the verified file's), else
    uploaded from the file here, marked as ``side``'s; False: one was there already."""
    writer, root = place.target.writer, fixed_part(place.target.template)
    size, sha256 = result.size, result.sha256
    try:
        if publisher is not None:
            made = writer.assemble(
                place.uri,
                publisher.finish(),
                job.final_path,
                size=size,
                sha256=sha256,
                root=root,
                side=side,
            )
            if made is not None:
                return made
            log.info(
                "%s: mirror %s not made of its parts there; uploading it", job.label, place.uri
            )
        return writer.upload(
            place.uri, job.final_path, size=size, sha256=sha256, root=root, side=side
        )
    finally:
        if publisher is not None:
            publisher.parts.remove()


def _not_the_file(place: Place, job: TransferJob, result: TransferResult, side: str) -> str | None:
    """The version of the object a fill found at its name when it is not the verified file (by
    the object's own bytes, ``Writer.holds``, never its mark): to be replaced on that version;
    None: it is the file (another machine filled it meanwhile), it is gone, or another catalog's
    file of the same name (left, as ``_theirs`` leaves it)."""
    writer = place.target.writer
    seen = writer.owned(place.uri, root=fixed_part(place.target.template))
    if seen is None or (seen.mark is not None and seen.mark.foreign({side}, result.sha256)):
        return None
    held = writer.holds(place.uri, job.final_path, size=result.size, sha256=result.sha256)
    return None if held else seen.etag


def _as_known(remote: RemoteFile, result: TransferResult) -> bool:
    """Whether the bytes fetched are those the fleet expects (its hash, else a verified fetch):
    --no-verify's bytes never reach a mirror other machines read."""
    if remote.sha256:
        return result.sha256 == remote.sha256
    return result.git_oid == remote.git_oid if remote.git_oid else result.verified


def _release(lease: Lease, label: str) -> None:
    try:
        lease.release()
    except MdlError as exc:  # it lapses by itself within its term
        log.info("%s: could not release the lease %s (%s)", label, lease.uri, exc)


def _stop_if_cancelled(cancel: threading.Event) -> None:
    if cancel.is_set():
        raise InterruptedByUserError(INTERRUPTED)
