"""``mdl prune --mirror URL``: a mirror (a bucket, a shared folder) kept from growing forever, on a
bucket other teams share as well. It removes only objects mdl wrote (each upload carries mdl's
mark: S3 metadata, a folder's mark file) under the prefixes of this catalog's models (any model's
with ``all_models``) that no kept version names (``keptversions``: this catalog's lock, every
``--lock`` given and the newest published versions, as a pull fills the template), once older than
N days by the store's clock, and the manifests of versions no longer kept; and expired leases and
a dead fill's writes. It never removes a live lease or the object one guards, and keeps whatever
lies under a model the lock does not pin (its files are not known without asking upstream)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from mdl.buckets import names, versions
from mdl.buckets.lease import TERM, read_generation
from mdl.buckets.protocol import Listed, Mark, Seen, Writer, side_of
from mdl.buckets.registry import store_for
from mdl.catalog.settings import MIRROR_FIELDS, Placeholder, Settings, fixed_part, parse_template
from mdl.catalog.specs import NAME_RE, ModelSpec
from mdl.errors import MdlError, UsageError, worst_exit_code
from mdl.sources.resolve import ResolvedModel
from mdl.upload.keptversions import (
    KEEP_VERSIONS,
    UNKEPT,
    KeptLocks,
    KeptVersion,
    Published,
    costs,
    published_versions,
)

log = logging.getLogger("mdl.prune")

# An unnamed object stays this long after it was last written (by the store's clock): a pull from
# a newer lock may be filling it, and a catalog rolled back finds its bytes still there. A week, as
# the usual bucket lifecycle rule.
KEEP_DAYS = 7.0
DAY = 86_400.0

MANIFEST = "a catalog model's manifest (publish)"
LEASED = "a fill holds its lease"
LIVE_LEASE = "a live lease (a fill is under way)"
RELEASED = "a released lease (its fill is done; removed once expired)"
UNNAMED = "named by no kept version"
NOT_OURS = "not a model of this catalog (--all-models prunes every model's)"
NOT_BY_MODEL = "the mirror's objects are not by model: only what the catalog names is known"
UNMARKED = "not written by mdl at this name (no mdl mark made for it: a copy, another tool's)"
OLD_MARK = "marked by mdl 0.6 or before, a mark a copy keeps too: remove it by hand once"
THEIRS = "written by another catalog's model of this name (another origin)"
UNFINISHED = "an unfinished upload (a fill under way, or killed)"
FILL_PARTS = "a fill's parts (one under way, or killed)"
OLDER_LEASE = "the lease of an mdl before 0.4 (it fills this mirror beside this one)"
EXPIRED = "expired lease"
LIVE_CLAIM = "a live claim (a swarm is fetching its part)"
RELEASED_CLAIM = "a released claim (its part is published; removed once expired)"
EXPIRED_CLAIM = "expired claim"
LEFTOVER = "a swarm's parts left once its object was made"
CANNOT_ADDRESS = "a name the store cannot address"
ABANDONED = "abandoned upload"
ABANDONED_DAYS = 1.0  # a write's temp file this old (by the store's clock) was left by a killed one


@dataclass(frozen=True)
class MirrorEntry:
    """One object prune looked at: its URI as the store lists it, its size, and why it went or
    stayed."""

    uri: str
    size: int
    reason: str
    # kept only for its age: when the same command removes it (the store's clock, epoch seconds)
    after: float | None = None


@dataclass(frozen=True)
class MirrorPruneReport:
    """What prune removed from the mirror (with dry_run: would remove) and what it kept."""

    mirror: str
    keep_days: float
    removed: tuple[MirrorEntry, ...]
    kept: tuple[MirrorEntry, ...]
    warnings: tuple[str, ...] = ()
    errors: tuple[MdlError, ...] = ()
    dry_run: bool = False
    now: float = 0.0  # the store's clock when prune looked
    versions: tuple[KeptVersion, ...] = ()  # the kept versions, each with what it names

    @property
    def freed(self) -> int:
        return sum(entry.size for entry in self.removed)

    def later(self, entry: MirrorEntry) -> str | None:
        """When the same command removes an object kept for its age, in words (None: never)."""
        if not (when := self._later(entry)):
            return None
        return (
            f"would be removed after {when['removed_after']}"
            f" (in {when['removed_in_days']:.1f} day(s))"
        )

    @property
    def exit_code(self) -> int:
        return worst_exit_code([int(e.exit_code) for e in self.errors])

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": not self.errors,
            "dry_run": self.dry_run,
            "mirror": self.mirror,
            "keep_days": self.keep_days,
            "freed": self.freed,
            "removed": [
                {"uri": e.uri, "size": e.size, "reason": e.reason, "removed": not self.dry_run}
                for e in self.removed
            ],
            "kept": [
                {"uri": e.uri, "size": e.size, "reason": e.reason, **self._later(e)}
                for e in self.kept
            ],
            "versions": costs(self.versions),
            "warnings": list(self.warnings),
            "errors": [e.message for e in self.errors],
        }

    def _later(self, entry: MirrorEntry) -> dict[str, Any]:
        """When an object kept for its age goes (the store's clock), and in how many days."""
        if entry.after is None:
            return {}
        return {
            "removed_after": _when(entry.after),
            "removed_in_days": round(max(entry.after - self.now, 0.0) / DAY, 3),
        }


@dataclass(frozen=True)
class Named:
    """What a catalog names in one mirror: objects by URI, and prefixes whose every object stays
    (a model the lock does not pin), each with why."""

    objects: Mapping[str, str]
    prefixes: Mapping[str, str] = field(default_factory=dict)
    # where this catalog's models' objects start: only there is anything removed (None: anywhere)
    models: tuple[str, ...] | None = ()
    outside: str = NOT_OURS  # why what lies elsewhere stays
    # whose each pinned model's objects are (``side_of`` its files' origins), by its prefix
    sides: Mapping[str, frozenset[str]] = field(default_factory=dict)
    # bytes (sha256) the model's signer signed, by its prefix: its own, whatever origin is said
    owned: Mapping[str, frozenset[str]] = field(default_factory=dict)

    def why(self, uri: str) -> str | None:
        """Why ``uri`` is named (None: it is not)."""
        if uri in self.objects:
            return self.objects[uri]
        return next((why for prefix, why in self.prefixes.items() if uri.startswith(prefix)), None)

    def ours(self, uri: str) -> bool:
        """Whether ``uri`` lies under one of the catalog's models (or any model's is pruned)."""
        return self.models is None or uri.startswith(self.models)

    def theirs(self, uri: str, mark: Mark) -> bool:
        """Whether an object mdl wrote (its ``mark``) lies under a model of this catalog whose
        origins are others: another catalog's model of the same name wrote it."""
        return any(
            uri.startswith(prefix)
            and mark.foreign(sides)
            and mark.sha256 not in self.owned.get(prefix, ())
            for prefix, sides in self.sides.items()
        )


def model_prefix(template: str, model: str) -> str:
    """Where every object of ``model`` starts, and no other model's: the template filled through
    ``{model}`` and the text after it up to a character no model name holds (``/``); the fixed
    part alone when ``{model}`` does not come first or no such character follows it before the next
    placeholder (``{model}-{revision}``: ``tiny-`` starts ``tiny-x-main/`` too)."""
    prefix = ""
    filled = False  # {model} is in the prefix: it ends at the first character no name holds
    for part in parse_template(template, fields=MIRROR_FIELDS, where="--mirror"):
        if isinstance(part, Placeholder):
            if part.name != "model":
                break
            prefix, filled = prefix + model, True
            continue
        end = (
            next((i for i, c in enumerate(part) if NAME_RE.fullmatch(c) is None), None)
            if filled
            else None
        )
        if end is not None:
            return prefix + part[: end + 1]
        prefix += part
    return fixed_part(template) if filled else prefix


def named_in(
    template: str,
    pinned: Sequence[ResolvedModel],
    unpinned: Sequence[str],
    *,
    kept: Sequence[KeptVersion] = (),
    all_models: bool = False,
    locked: Sequence[ResolvedModel] = (),
    owned: Mapping[str, Iterable[str]] | None = None,
) -> tuple[Named, list[str]]:
    """What the catalog names in the mirror ``template``: each object a ``kept`` version names
    (the first to name it says why; ``pinned``: the models this catalog's lock pins), each model's
    manifest, and everything under an unpinned model's prefix; where its models' objects lie
    (anywhere: ``all_models``); whose each pinned model's objects are (the origins its kept locks
    pin, ``locked``: every model of every kept lock, and ``owned``: per model, the bytes its signer
    signed, a URL model's earlier week); and the warnings (objects that cannot be told from other
    models')."""
    objects: dict[str, str] = {}
    for version in kept:
        for uri, _ in version.objects:
            objects.setdefault(uri, version.reason)
    fixed = fixed_part(template)
    every = [*(m.name for m in pinned), *unpinned]
    objects.update((names.Manifest(fixed, name).uri, MANIFEST) for name in every)
    prefixes: dict[str, str] = {}
    warnings: list[str] = []
    for name in unpinned:
        prefix = model_prefix(template, name)
        prefixes[prefix] = f"{name} has no fresh catalog.lock entry: its objects are kept"
        if prefix == fixed:
            warnings.append(
                f"{name}: not pinned by catalog.lock and the mirror's objects are not by model:"
                " every object is kept (run mdl lock)"
            )
    models = tuple(model_prefix(template, name) for name in every)
    sides, signed = _whose(template, pinned, locked, owned or {})
    if all_models:
        return Named(objects, prefixes, None, sides=sides, owned=signed), warnings
    if fixed in models:
        warnings.append(
            f"{template}: {{model}} does not come first or is not followed by '/', so the objects"
            " of this catalog's models cannot be told from others': only what the catalog names"
            " is known, every other"
            " object is kept (--all-models prunes them)"
        )
        return Named(objects, prefixes, (), outside=NOT_BY_MODEL), warnings
    return Named(objects, prefixes, models, sides=sides, owned=signed), warnings


def _whose(
    template: str,
    pinned: Sequence[ResolvedModel],
    locked: Sequence[ResolvedModel],
    owned: Mapping[str, Iterable[str]],
) -> tuple[dict[str, frozenset[str]], dict[str, frozenset[str]]]:
    """By each pinned model's prefix: the origins its kept locks pin (``side_of``), and the bytes
    its signer signed (``owned``); none where the template's objects are not by model."""
    origins: dict[str, set[str]] = {}
    for m in (*pinned, *locked):
        origins.setdefault(m.name, set()).update(side_of(f.source) for f in m.files)
    sides = {model_prefix(template, m.name): frozenset(origins[m.name]) for m in pinned}
    sides.pop(fixed_part(template), None)  # not by model: whose cannot be told by where
    signed = {model_prefix(template, name): frozenset(shas) for name, shas in owned.items()}
    return sides, signed


def prune_mirror(
    writer: Writer,
    template: str,
    named: Named,
    *,
    keep_days: float = KEEP_DAYS,
    dry_run: bool = False,
    published: Published | None = None,
) -> MirrorPruneReport:
    """Remove from the mirror what mdl wrote (its mark) under ``named``'s models that it does not
    name and is older than ``keep_days`` (by the store's clock), the leases that expired, and the
    manifests ``published`` no longer keeps (by the same rule); never another object, a live lease
    or the object it guards."""
    # a folder's marks of what mdl wrote (S3 keeps none): never objects
    folder = names.folder_of(template)
    marks = names.within(folder, names.MARKS)
    listed = [
        item for item in writer.listing(fixed_part(template)) if not item.uri.startswith(marks)
    ]
    if not listed:  # an empty mirror (a folder not made yet has no clock to ask)
        return MirrorPruneReport(template, keep_days, (), (), dry_run=dry_run)
    now = writer.now()
    run = _MirrorRun(writer, dry_run)
    run.abandoned(fixed_part(template), before=now - ABANDONED_DAYS * DAY, now=now)
    filled = names.namespace(template) is not None  # else never filled: no leases, no parts
    leases = list(writer.listing(names.within(folder, names.LEASES))) if filled else []
    guarded = run.leases(leases, now)
    if filled:  # a leased object's parts may be a live fill's; another model's are not ours
        guarded |= run.claims(folder, now)
        run.parts(folder, named, before=now - ABANDONED_DAYS * DAY, guarded=guarded)
    for item in listed:
        if names.in_namespace(item.uri):
            continue
        if (why := _kept_why(item.uri, named, guarded)) is not None:
            run.kept.append(MirrorEntry(item.uri, item.size, why))
        else:
            run.unnamed(item, template, named, keep_days=keep_days, now=now)
    if published is not None:
        run.manifests(published, template, named, keep_days=keep_days, now=now)
    run.forget_marks(folder, fixed_part(template), listed)
    return MirrorPruneReport(
        template,
        keep_days,
        tuple(run.removed),
        tuple(run.kept),
        warnings=tuple(run.warnings),
        errors=tuple(run.errors),
        dry_run=dry_run,
        now=now,
    )


@dataclass(kw_only=True)
class Tally:
    """A mirror prune's tally (a bucket's, a folder's, a registry's): what it removed and kept,
    what failed, what was said."""

    removed: list[MirrorEntry] = field(default_factory=list)
    kept: list[MirrorEntry] = field(default_factory=list)
    errors: list[MdlError] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


@dataclass
class _MirrorRun(Tally):
    """One prune of a bucket or a folder."""

    writer: Writer
    dry_run: bool

    def leases(self, leases: Sequence[Listed], now: float, held: _Held | None = None) -> set[str]:
        """Each lease judged (:meth:`lease`), the last generation of each run first (``held``:
        what a run is, and the words; a file's lease by default): one below a live one is kept (a
        generation is found by walking the run from 1 by name, and a gap there would let a
        machine take a number below the live holder's); the runs whose lease is live."""
        held = held or _LEASE
        guarded: set[str] = set()
        last = sorted(leases, key=lambda x: (held.run(x.uri), -_number(x.uri)))
        for lease in last:
            run = held.run(lease.uri)
            if run in guarded:
                self.kept.append(MirrorEntry(lease.uri, lease.size, held.live))
            elif self.lease(lease, now, held):
                guarded.add(run)
        return guarded

    def claims(self, folder: str, now: float) -> set[str]:
        """A swarm's claims (``names.Claim``: a lease per part, ``folder`` the mirror's), judged
        as leases are, part by part; the objects with a live claim (their parts and the object
        stay). A name under ``claims/`` that is no claim is not mdl's: left, not reported."""
        listed = self.writer.listing(names.within(folder, names.CLAIMS))
        claims = [item for item in listed if isinstance(names.parse(item.uri), names.Claim)]
        return {_claimed(run) for run in self.leases(claims, now, _CLAIM)}

    def lease(self, lease: Listed, now: float, held: _Held) -> bool:
        """Keep a live lease (True: its object stays too), remove an expired one. An expired one is
        looked at again before it goes, and removed only in the version seen: its holder may have
        renewed it since the listing."""
        if now - lease.modified <= TERM:  # mdl's own term, by the store's clock
            return self.young_lease(lease, held)
        try:
            seen = self.writer.head(lease.uri)
        except MdlError as exc:
            self.errors.append(exc)
            return True
        if seen is None:
            return False  # released meanwhile
        # judged by the listing's clock: a head need not say the store's (a folder's does not)
        if now - seen.modified <= TERM:
            self.kept.append(MirrorEntry(lease.uri, seen.size, held.live))
            return True
        self.remove(Listed(lease.uri, seen.size, seen.modified), held.expired, etag=seen.etag)
        return False

    def young_lease(self, lease: Listed, held: _Held) -> bool:
        """A lease within its term: kept, live (True: its object stays too) unless its holder
        released it (its fill is done)."""
        try:
            state = read_generation(self.writer, lease.uri, 0, term=TERM).state
        except MdlError as exc:
            self.errors.append(exc)
            state = "live"
        live = state != "released"
        self.kept.append(MirrorEntry(lease.uri, lease.size, held.live if live else held.released))
        return live

    def manifests(
        self, published: Published, template: str, named: Named, *, keep_days: float, now: float
    ) -> None:
        """The published versions' manifests: those of kept versions (and junk) stay, those of
        versions no longer kept go as an unnamed object does (mdl's mark, and age)."""
        staying = published.staying.items()
        self.kept.extend(MirrorEntry(uri, size, why) for uri, (size, why) in staying)
        for item in published.unkept:
            if published.whole is not None:  # the newest versions are not known
                self.kept.append(MirrorEntry(item.uri, item.size, published.whole))
            else:
                self.unnamed(item, template, named, keep_days=keep_days, now=now, reason=UNKEPT)
        self.warnings.extend(published.warnings)
        self.errors.extend(published.errors)

    def unnamed(
        self,
        item: Listed,
        template: str,
        named: Named,
        *,
        keep_days: float,
        now: float,
        reason: str = UNNAMED,
    ) -> None:
        """An object no model names: removed if mdl wrote it at this name (its mark, on the
        version removed), for a model of this catalog's origin, and it is older than
        ``keep_days``; else kept, saying until when when only its age keeps it."""
        if names.OldLease.parse(item.uri):  # not mdl's to remove now: said, once
            self.older_lease(item)
            return
        root = fixed_part(template)
        if (seen := self.asked(item, lambda: self.writer.owned(item.uri, root=root))) is None:
            return  # removed meanwhile, or said
        if (why := _not_ours(seen, named, item.uri)) is not None:
            self.kept.append(MirrorEntry(item.uri, seen.size, why))
        elif now - seen.modified < keep_days * DAY:
            young = f"younger than {keep_days:g} day(s)"
            self.kept.append(
                MirrorEntry(item.uri, seen.size, young, after=seen.modified + keep_days * DAY)
            )
        else:
            self.remove(Listed(item.uri, seen.size, seen.modified), reason, etag=seen.etag)

    def forget_marks(self, folder: str, fixed: str, listed: Sequence[Listed]) -> None:
        """Remove the marks (a folder's) of this mirror's objects no longer there: removed now, or
        by someone else. mdl's own files, never objects: not reported."""
        if self.dry_run:
            return
        objects = {item.uri for item in listed} - {entry.uri for entry in self.removed}
        # the objects' marks, and the parts' (mdl's namespace is never listed with the objects:
        # a part removed by an mdl before 0.8, or a kill between a part and its mark, leaves one)
        for under in (fixed.removeprefix(folder), *(names.NAMESPACE + k for k in _OWN_MARKED)):
            self.forget(names.Mark(folder, under).uri, objects)

    def forget(self, marks: str, objects: set[str]) -> None:
        """Remove the marks listed under ``marks`` of objects not in ``objects`` (and not there
        when looked at again: a fill may have written one since the listing)."""
        try:
            found = [names.Mark.parse(item.uri) for item in self.writer.listing(marks)]
            for mark in (m for m in found if m and m.object not in objects):
                if self.writer.head(mark.object) is None:
                    self.writer.delete(mark.uri)
        except MdlError as exc:  # a mark left costs a few bytes: said in the log
            log.info("%s: could not remove a mark: %s", marks, exc.message)

    def older_lease(self, item: Listed) -> None:
        """mdl 0.3's lease beside its object: kept, and said once (its fleet and this mdl's do
        not see each other's leases)."""
        self.kept.append(MirrorEntry(item.uri, item.size, OLDER_LEASE))
        if not any(OLDER_LEASE in said for said in self.warnings):
            self.warnings.append(
                f"{item.uri} is {OLDER_LEASE}: its machines and this mdl's do not see each"
                " other's leases and each fetch from the origin what the mirror lacks; run mdl"
                " 0.4 or later on every machine of the fleet"
            )

    def abandoned(self, prefix: str, *, before: float, now: float) -> None:
        """Remove the writes a killed fill left; younger ones (a live fill's, or one killed
        today) are kept, saying when they go."""
        try:
            found = self.writer.abandoned(prefix, before=before, remove=not self.dry_run)
        except MdlError as exc:
            if exc.status == 501:  # a store without the verb (s3rver): none to list, said
                self.warnings.append(f"{exc.message}: unfinished uploads were not looked for")
                return
            self.errors.append(exc)
            return
        for item in found:
            if item.modified < before:
                self.removed.append(MirrorEntry(item.uri, item.size, ABANDONED))
            else:
                after = item.modified + ABANDONED_DAYS * DAY
                self.kept.append(MirrorEntry(item.uri, item.size, UNFINISHED, after=after))

    def parts(self, folder: str, named: Named, *, before: float, guarded: set[str]) -> None:
        """Remove the parts a dead fill published (``folder``: the mirror's), an object's at a
        time: those whose newest part is older than ``before`` (a live leader's are younger: left,
        not reported) unless their object is leased (``guarded``) or not this catalog's. A name
        not shaped as a part is left; each part is judged by its mark (``part_gone``)."""
        for target, every in self.part_sets(folder).items():
            keep = target in guarded or not named.ours(target)
            if not (parts := every if keep else self.leftovers(target, every, folder, named)):
                continue
            # a set is one entry (its folder, the bytes), as an abandoned upload is
            where, newest = parts[0].uri.rpartition("/")[0] + "/", max(p.modified for p in parts)
            if keep or newest >= before:
                after = None if keep else newest + ABANDONED_DAYS * DAY
                size = sum(part.size for part in parts)
                self.kept.append(MirrorEntry(where, size, FILL_PARTS, after=after))
            elif sizes := [p.size for p in parts if self.part_gone(p, target, folder, named)]:
                self.removed.append(MirrorEntry(where, sum(sizes), ABANDONED))

    def leftovers(
        self, target: str, parts: list[Listed], folder: str, named: Named
    ) -> list[Listed]:
        """The version's own parts of ``target`` (no token: a swarm's, or an mdl before 0.7's
        holder's) go whatever their age once ``target`` is there as that version (its mark says
        that sha256): the swarm's assembler removes them once it made it, and one killed first
        leaves them. No claim on the object is live (its caller's rule). The other parts."""
        own: dict[str, list[Listed]] = {}  # by set (its folder), of this version (its pin)
        pins: dict[str, str] = {}
        for item in parts:
            if (part := names.Part.parse(item.uri)) is not None and part.token is None:
                own.setdefault(part.prefix, []).append(item)
                pins[part.prefix] = part.pin
        made = self.made(target, folder) if own else None
        rest = [item for item in parts if item.uri.rpartition("/")[0] + "/" not in own]
        for where, left in own.items():
            if made is None or pins[where] != made:
                rest.extend(left)
            elif sizes := [p.size for p in left if self.part_gone(p, target, folder, named)]:
                self.removed.append(MirrorEntry(where, sum(sizes), LEFTOVER))
        return rest

    def made(self, target: str, folder: str) -> str | None:
        """The sha256 the object ``target`` is, by mdl's mark (None: not there, no mark saying,
        or it could not be asked: its parts then go by their age)."""
        try:
            seen = self.writer.owned(target, root=folder)
        except MdlError as exc:  # a name the store cannot address too: its parts age out
            log.info("%s: could not judge its parts: %s", target, exc.message)
            return None
        return seen.mark.sha256 if seen is not None and seen.mark is not None else None

    def part_sets(self, folder: str) -> dict[str, list[Listed]]:
        """The parts published under ``folder`` (the mirror's), by the object they make; a name
        not shaped as a part is left out."""
        sets: dict[str, list[Listed]] = {}
        for item in self.writer.listing(names.within(folder, names.PARTS)):
            if isinstance(found := names.parse(item.uri), names.Part):
                sets.setdefault(found.object, []).append(item)
        return sets

    def part_gone(self, part: Listed, target: str, folder: str, named: Named) -> bool:
        """A dead fill's part removed, judged by its mark as any object (on the version judged):
        one mdl wrote for another catalog's model of the name stays; one without mdl's mark at
        this name (a part of mdl 0.7 or before, which marked none) goes by its name and age."""
        if (seen := self.asked(part, lambda: self.writer.owned(part.uri, root=folder))) is None:
            return False  # removed meanwhile, or said
        if seen.mark is not None and named.theirs(target, seen.mark):
            self.kept.append(MirrorEntry(part.uri, seen.size, THEIRS))
            return False
        return self.gone(Listed(part.uri, seen.size, seen.modified), etag=seen.etag)

    def asked(self, item: Listed, ask: Callable[[], _T]) -> _T | None:
        """What the store answers ``ask`` of ``item``; None when it could not be asked (said: a
        name the store lists but cannot address is kept, another failure is an error)."""
        try:
            return ask()
        except UsageError as exc:  # a name the store lists but cannot address (a folder's)
            self.cannot_address(item, exc)
        except MdlError as exc:
            self.errors.append(exc)
        return None

    def cannot_address(self, item: Listed, exc: UsageError) -> None:
        self.kept.append(MirrorEntry(item.uri, item.size, CANNOT_ADDRESS))
        self.warnings.append(f"kept: {exc.message}")

    def remove(self, item: Listed, reason: str, *, etag: str | None = None) -> None:
        """Remove one object (with dry_run, only say so)."""
        if self.gone(item, etag=etag):
            self.removed.append(MirrorEntry(item.uri, item.size, reason))

    def gone(self, item: Listed, *, etag: str | None = None) -> bool:
        """Delete one object (with dry_run, not); False: it was not removed. A failure is this
        object's, the others go on."""
        if self.dry_run:
            return True
        if (deleted := self.asked(item, lambda: self.writer.delete(item.uri, etag=etag))) is False:
            log.info("%s: gone or changed before prune removed it", item.uri)
        return bool(deleted)


_T = TypeVar("_T")

# what mdl marks in its namespace (a folder's marks of those are forgotten with them)
_OWN_MARKED = (names.PARTS, "versions/")


@dataclass(frozen=True)
class _Held:
    """A kind of lease prune judges: what a run of its generations is (one name's, by a
    generation's URI) and what it says of one live, released or expired."""

    run: Callable[[str], str]
    live: str
    released: str
    expired: str


# a file's lease: a run per object; a swarm's claim: a run per part (its URI's folder)
_LEASE = _Held(names.object_of, LIVE_LEASE, RELEASED, EXPIRED)
_CLAIM = _Held(lambda uri: uri.rpartition("/")[0], LIVE_CLAIM, RELEASED_CLAIM, EXPIRED_CLAIM)


def _claimed(run: str) -> str:
    """The object a run of claims (``<folder>.mdl/claims/<path>/<pin>-<size>/<part>``) is on."""
    claim = names.Claim.parse(f"{run}/1")
    assert claim is not None and claim.part is not None  # a run of claims parsed
    return claim.part.object


def _number(uri: str) -> int:
    """A lease generation's (or claim's) number (0: a name that is none)."""
    found = names.parse(uri)
    return found.number if isinstance(found, names.Generation) else 0


def _kept_why(uri: str, named: Named, guarded: set[str]) -> str | None:
    """Why an object of the mirror stays whatever its age: its lease is live, a model names it,
    or no model of the catalog holds it. None: it goes once old."""
    if uri in guarded:
        return LEASED
    why = named.why(uri)
    return named.outside if why is None and not named.ours(uri) else why


def _not_ours(seen: Seen, named: Named, uri: str) -> str | None:
    """Why an object stays whatever its age, by its mark (``protocol.authorship`` read it): none
    made for this name (a copy, another tool's), mdl 0.6's (a copy keeps it), or another
    catalog's model of the same name's. None: this catalog's to prune."""
    mark = seen.mark
    if mark is None:
        return UNMARKED
    if not mark.bound:
        return OLD_MARK
    return THEIRS if named.theirs(uri, mark) else None


def prune_mirror_models(
    models: Sequence[ModelSpec],
    settings: Settings,
    *,
    template: str,
    keep_days: float = KEEP_DAYS,
    all_models: bool = False,
    locks: Sequence[Path] = (),
    keep_versions: int = KEEP_VERSIONS,
) -> MirrorPruneReport:
    """``prune --mirror``: the catalog's models (``models``) against the mirror ``template``,
    keeping what any kept version names: the catalog's lock, each of ``locks`` and the newest
    ``keep_versions`` published versions of each model (``all_models``: any model's objects mdl
    wrote may go, not only theirs); its endpoint is the catalog's when the catalog names that
    mirror."""
    store = store_for(template)
    if store is None:
        raise UsageError(
            f"--mirror: {template!r} is not in an object store; prune lists a bucket or a shared"
            " folder (s3://bucket/prefix/{model}/{sha256}, file:///shared/{model}/{sha256})"
        )
    kept = KeptLocks(settings, template)
    pinned, unpinned = kept.catalog(models, locks)
    endpoint = dict(settings.mirror_endpoints).get(template)
    writer = store.writer(endpoint=endpoint, secrets=settings.secrets)
    published = None
    if (prefix := versions.prefix_of(template)) is not None:
        names_of = None if all_models else [spec.name for spec in models]
        trusts = {spec.name: spec.signature for spec in models if spec.signature is not None}
        published = published_versions(
            writer,
            prefix,
            names_of,
            keep=keep_versions,
            locked=kept.ids,
            trusts=trusts,
            current=kept.current,
        )
    every = [*kept.versions, *(published.kept if published else ())]
    named, unsure = named_in(
        template,
        pinned,
        unpinned,
        kept=every,
        all_models=all_models,
        locked=[resolved for _, resolved in kept.pins],
        owned=published.owned if published is not None else None,
    )
    if published is not None and published.whole is not None:
        named = replace(named, prefixes={fixed_part(template): published.whole})
    report = prune_mirror(
        writer, template, named, keep_days=keep_days, dry_run=settings.dry_run, published=published
    )
    warnings = (*report.warnings, *kept.warnings, *unsure)
    return replace(report, warnings=warnings, versions=tuple(every))


def _when(epoch: float) -> str:
    """A time of the store's clock as ISO 8601, UTC, to the second."""
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
