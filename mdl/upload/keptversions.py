"""The versions ``prune --mirror`` keeps, and what each costs: those a kept lock pins (the catalog's
catalog.lock, every ``--lock FILE``) and the newest ``--keep-versions N`` published versions of each
model, by their manifests in the mirror (``<prefix>/.mdl/versions/<model>/<id>.json``). Anyone who
may write the mirror can write a manifest, so only a version proven this catalog's counts among the
newest: a kept lock pins it, or the catalog's signer signed exactly its files, and every object it
names is there. A model's versions are known by its name, whatever URL folder each came from. A
manifest is outside bytes: read within ``versions.MAX_MANIFEST_BYTES`` and parsed strictly, it can
only keep objects (what it names, and itself), never have one removed; one that is not a manifest
mdl writes (junk, another model's, an id not its name's) is kept, ignored and said, and one not
proven this catalog's is kept with what it names, never counted."""

from __future__ import annotations

import hashlib
import logging
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from itertools import islice
from pathlib import Path
from typing import Any

from mdl.buckets import names, versions
from mdl.buckets.protocol import Listed, Writer
from mdl.catalog.settings import Settings
from mdl.catalog.specs import NAME_RE, ModelSpec
from mdl.download.resolve import from_lock
from mdl.errors import MdlError, UsageError
from mdl.lockfile.io import read_lock
from mdl.lockfile.model import LockedModel
from mdl.lockfile.policy import LockUse
from mdl.signing.library import MAX_SIGNATURE_BYTES, verify_signature
from mdl.signing.statement import SIGNATURE_FILE, SignedManifest, Trust
from mdl.sources.resolve import ResolvedModel, mirror_targets

log = logging.getLogger("mdl.prune")

# the manifests prune lists under one mirror's versions: more is refused as no mirror mdl keeps
MOST_MANIFESTS = 100_000
KEEP_VERSIONS = 2  # the current version and the one before it: what a node mid roll-out runs
UNKEPT = "a version no longer kept"
UNPROVEN = "not proven this catalog's: kept, never counted"
AHEAD = "newer than the version catalog.lock pins: kept, never counted"
MISSING = "a version whose objects are not all in the mirror: kept, never counted"
# a manifest naming a signature an earlier one (or one a lock pins) names: the same signed files
# under another id (rows the signer leaves out, git's, added or dropped); never the version's time
COPY = "a copy of the signed version's first or locked manifest: kept, never counted"
JUNK = "not a manifest mdl writes: ignored (it keeps nothing), left in place"


@dataclass(frozen=True)
class KeptVersion:
    """One version prune keeps: a model as a kept lock pins it (``origin``: the lock's name), or a
    published version (``manifest``: its manifest's URI; ``published``: its time by the store's
    clock); ``objects``: each of its files' object in the mirror, with its size."""

    model: str
    origin: str
    commit: str | None
    objects: tuple[tuple[str, int], ...]
    id: str | None = None
    manifest: str | None = None
    published: float | None = None
    # how it is proven this catalog's (the kept lock that pins it, the catalog's signer), None: a
    # manifest anyone could have written (planted, another catalog's model of the name, unsigned),
    # or one whose objects are not all there: kept with what it names, never counted
    proof: str | None = None

    @property
    def reason(self) -> str:
        """Why an object it names stays."""
        if self.manifest is None:
            return f"named by {self.origin}"
        commit = f"commit {self.commit[:7]}, " if self.commit else ""
        day = datetime.fromtimestamp(self.published or 0.0, UTC).strftime("%Y-%m-%d")
        unproven = "" if self.proof else f", {UNPROVEN}"
        return f"named by {self.origin} of {self.model} ({commit}published {day}{unproven})"


def lock_version(origin: str, template: str, resolved: ResolvedModel) -> KeptVersion:
    """A model as a kept lock pins it (``resolved``: from that lock): each file's object as a pull
    fills ``template``."""
    objects = {
        url: remote.size or 0
        for remote in resolved.files
        for _, url in mirror_targets([template], remote)
    }
    return KeptVersion(resolved.name, origin, resolved.commit, tuple(objects.items()))


def signature_file(spec: ModelSpec) -> str:
    """The path of a model's signature file (the one ``spec``, its catalog entry, names, else
    model.sig): left out of a version's files wherever one is matched to a lock (a bucket's
    manifest by its id, a registry's by its layers), as ``publish`` leaves a model.sig of its
    own out when it signs the version."""
    named = spec.signature.installed_as if spec.signature is not None else ""
    return named or SIGNATURE_FILE


def lock_ids(locked: LockedModel, spec: ModelSpec) -> tuple[str, ...]:
    """The ids the version a lock pins is published under (its signature file left out)."""
    rows = [(f.path, f.size, f.sha256) for f in locked.files]
    return versions.version_ids(rows, signature=signature_file(spec))


class KeptLocks:
    """The kept locks' versions in the mirror ``template``: the catalog's lock (its fresh entries
    pin the catalog's models) and each ``--lock`` given (every model it holds, fresh or not: a node
    may still be on it)."""

    def __init__(self, settings: Settings, template: str) -> None:
        self.settings, self.template = settings, template
        self.versions: list[KeptVersion] = []
        self.ids: dict[str, dict[str, str]] = {}  # model → a version id a lock pins → that lock
        self.current: dict[str, set[str]] = {}  # model → the ids of the version catalog.lock pins
        self.warnings: list[str] = []
        self.pins: list[tuple[str, ResolvedModel]] = []  # each model a kept lock pins, by which
        # the locks kept so far, resolved: one given twice (or catalog.lock again) counts once
        own = settings.lock_path
        self.seen = {own.resolve()} if own is not None and own.is_file() else set()

    def catalog(
        self, models: Sequence[ModelSpec], locks: Sequence[Path] = ()
    ) -> tuple[list[ResolvedModel], list[str]]:
        """The catalog's lock kept (``--locked``: a model it does not pin is refused before any
        listing), then each of ``locks`` (``add``): the models the catalog's lock pins, as it pins
        them, and the names of those it does not."""
        lock = LockUse(self.settings)
        lock.require(models)
        doing = "keeping every object under its name in the mirror"
        pinned = []
        for spec in models:
            if (locked := lock.pinned(spec, doing=doing)) is not None:
                pinned.append(self._keep(lock.name, spec, locked))
                self.current[spec.name] = set(lock_ids(locked, spec))
        self.warnings.extend(lock.warnings.values())
        for path in locks:
            self.add(path, models)
        held = {model.name for model in pinned}
        return pinned, [spec.name for spec in models if spec.name not in held]

    def add(self, path: Path, models: Sequence[ModelSpec]) -> None:
        """A ``--lock`` kept: every model it holds (the catalog's entry, if any, lends the
        signature's file name); UsageError (exit 2) naming it when it is missing or bad."""
        if path.resolve() in self.seen:
            return
        self.seen.add(path.resolve())
        lock = read_lock(path)
        if lock is None:
            hint = "give a lock file mdl lock wrote"
            raise UsageError(f"--lock: {path}: no such file", hint=hint)
        by_name = {spec.name: spec for spec in models}
        for name, locked in lock.models.items():
            self._keep(str(path), by_name.get(name) or ModelSpec(name), locked)

    def _keep(self, origin: str, spec: ModelSpec, locked: LockedModel) -> ResolvedModel:
        resolved = from_lock(self.settings, spec, locked)
        self.pins.append((origin, resolved))
        self.versions.append(lock_version(origin, self.template, resolved))
        for vid in lock_ids(locked, spec):
            self.ids.setdefault(locked.name, {}).setdefault(vid, origin)
        return resolved


@dataclass
class Published:
    """The published versions of a mirror's models as prune judges them: those kept, the manifests
    that stay (by URI, with why), those of versions no longer kept (judged by mdl's mark and age),
    the bytes each model's signer signed (``owned``), and what was said."""

    kept: list[KeptVersion] = field(default_factory=list)
    staying: dict[str, tuple[int, str]] = field(default_factory=dict)
    unkept: list[Listed] = field(default_factory=list)
    # per model, the bytes (sha256) each signed version's first (or locked) manifest names, its
    # signature's too (``_Judge.signed_bytes``): objects of those bytes are the model's, whatever
    # origin their marks say (a URL model's earlier week); a manifest's ``source`` fields, which no
    # signature covers, say nothing of whose an object is
    owned: dict[str, set[str]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    errors: list[MdlError] = field(default_factory=list)
    # None: every manifest was listed; else why the mirror's objects all stay
    whole: str | None = None


def published_versions(
    writer: Writer,
    prefix: str,
    models: Iterable[str] | None,
    *,
    keep: int,
    locked: Mapping[str, Mapping[str, str]],
    trusts: Mapping[str, Trust] | None = None,
    current: Mapping[str, Iterable[str]] | None = None,
) -> Published:
    """The newest ``keep`` proven versions of each of ``models`` (None: every model's) under the
    content layout's ``prefix``, and every manifest newer than the last of them; ``locked``: per
    model, the ids a kept lock pins, by the origin that pins it (their manifests stay, whatever
    their age); ``trusts``: per model, the catalog's signer; ``current``: per model, the ids of the
    version catalog.lock pins (one the store's clock says is newer is kept, never counted: a
    release not locked yet, or a manifest re-dated). A version is this catalog's (proven,
    :meth:`_Judge.proof`) when a kept lock pins it or the catalog's signer signed exactly its files,
    and every object it names is in the mirror: only those count among the newest; any other
    manifest (junk, planted, another catalog's model of the name) only ever keeps."""
    found = Published()
    where = f"{prefix.rstrip('/')}/{names.NAMESPACE}versions/"
    try:
        listed = list(islice(writer.listing(where, most=MOST_MANIFESTS + 1), MOST_MANIFESTS + 1))
    except MdlError as exc:
        found.errors.append(exc)
        found.whole = "the mirror's published versions could not be listed: every object is kept"
        return found
    if len(listed) > MOST_MANIFESTS:
        found.whole = (
            f"more than {MOST_MANIFESTS} manifests under {where}: the newest versions cannot be"
            " told, every object is kept"
        )
        found.warnings.append(found.whole)
        return found
    for model, newest in _by_model(listed, models).items():
        trust = (trusts or {}).get(model)
        judge = _Judge(writer, found, where.removesuffix("/"), model, trust)
        pins = locked.get(model, {})
        judge.look_first(newest, pins)
        now = set((current or {}).get(model, ()))
        # the earliest of its manifests: one written later (its other id) only keeps more
        anchor = min((item.modified for item, vid in newest if vid in now), default=None)
        judge.judge(newest, keep, pins, anchor)
        found.owned[model] = judge.signed_bytes()
    return found


def _by_model(
    listed: Iterable[Listed], models: Iterable[str] | None
) -> dict[str, list[tuple[Listed, str]]]:
    """The manifests listed of ``models`` (None: every model's), each with its version's id, by
    model, newest first by the store's clock (which orders only what is proven this catalog's:
    nothing planted counts)."""
    wanted = None if models is None else set(models)
    by_model: dict[str, list[tuple[Listed, str]]] = {}
    for item in listed:
        version = names.parse(item.uri)
        if not isinstance(version, names.Version) or not NAME_RE.fullmatch(version.model):
            continue  # not a manifest's name (of a model a catalog may name): not prune's to judge
        if wanted is None or version.model in wanted:
            by_model.setdefault(version.model, []).append((item, version.id))
    return {
        model: sorted(manifests, key=lambda m: (-m[0].modified, m[0].uri))
        for model, manifests in by_model.items()
    }


@dataclass
class _Judge:
    """Judges one mirror's manifests of one model (``where``: its ``<prefix>/.mdl/versions``;
    ``trust``: the catalog's signer of the model, None: it names none)."""

    writer: Writer
    found: Published
    where: str
    model: str
    trust: Trust | None
    # each signature's sha256 → the first proven manifest naming it, and the bytes (sha256) that
    # manifest names, a pinned one's if any (``look_first``); the signatures a pinned one names
    first: dict[str, str] = field(default_factory=dict)
    bytes_of: dict[str, set[str]] = field(default_factory=dict)
    pinned: set[str] = field(default_factory=set)
    # each signature read by its sha256: what it signs (None: not the signer's, or not there)
    statements: dict[str, SignedManifest | None] = field(default_factory=dict)

    @property
    def prefix(self) -> str:
        return self.where.removesuffix(f"/{names.NAMESPACE}versions")

    def judge(
        self,
        newest: list[tuple[Listed, str]],
        keep: int,
        locked: Mapping[str, str],
        anchor: float | None = None,
    ) -> None:
        """The model's manifests, newest first by the store's clock: the newest ``keep`` proven
        versions (and any as new as the last of them: the clock cannot order those) count and are
        kept; every manifest newer than the last of them stays too, with what it names, proven or
        not (junk is ignored and said), but counts for nothing, and so do one newer than
        ``anchor`` (the time of catalog.lock's version's manifest) and a copy of a signed version
        (``look_first``); a version counts once (by the lock that pins it, or its
        signature), however many ids its manifests have, and a pinned one's manifests stay
        whatever their age; the rest are versions no longer kept."""
        found = self.found
        count, last = 0, None  # the proven versions kept so far; the time of the last one
        counted: set[str] = set()  # the versions counted (one version, several ids)
        for item, vid in newest:
            pins = locked.get(vid)
            if pins is not None:
                found.staying[item.uri] = (item.size, f"the manifest of a version {pins} pins")
            if not (count < keep or item.modified == last):
                if pins is None:
                    found.unkept.append(item)
                continue
            ahead = anchor is not None and item.modified > anchor
            key = self.counts(item, vid, pins, AHEAD if ahead else f"{keep} newest")
            if key is not None and key not in counted:
                count, last = count + 1, item.modified
                counted.add(key)

    def counts(self, item: Listed, vid: str, pins: str | None, why: str) -> str | None:
        """A manifest among the newest, kept with what it names (``why``: how it counts; one newer
        than the version deployed, or a copy, is kept whole and never counted): whether it
        counts (it is proven this catalog's), as which version: the lock that pins it, or its
        signature; None: it does not."""
        if (read := self.read(item, vid, pins)) is None:
            return None  # junk: never counted
        version, copy, signature = read
        why = COPY if copy and pins is None else why  # (a lock's pin counts: the user's)
        counted = version.proof is not None and why not in (COPY, AHEAD)
        if pins is None:
            self.found.kept.append(version if counted else replace(version, proof=None))
            shown = why if version.proof is not None else UNPROVEN
            self.found.staying[item.uri] = (item.size, f"the manifest of a kept version ({shown})")
        return (pins or signature or vid) if counted else None

    def look_first(self, newest: list[tuple[Listed, str]], locked: Mapping[str, str]) -> None:
        """Each signature's first proven manifest, the bytes it names and the signatures a pinned
        manifest names. A later one naming a signature, or an unpinned one naming a pinned one's,
        is the same signed version under another id (the signer leaves git's files out, so a
        writer may add such a row, or drop one), written since: the store's clock says only when a
        manifest was written, so the version's time is its first manifest's, and a copy
        (re-dated by being written) must not push another version out."""
        if self.trust is None:
            return  # no signature proves a version: only a lock's pin (by its id) counts
        for item, vid in reversed(newest):  # oldest first
            try:
                manifest = self.manifest_at(item, vid)
            except MdlError:
                continue  # judged where it is read again (unreadable: every object is kept)
            if manifest is None or manifest.signature is None or not self.signed(manifest):
                continue
            sig = manifest.signature.sha256
            named = {sig, *(f.sha256 for f in manifest.files)}
            if vid in locked:
                self.pinned.add(sig)
                self.bytes_of[sig] = named  # the user's pin says which bytes
            self.bytes_of.setdefault(sig, named)
            self.first.setdefault(sig, item.uri)

    def signed_bytes(self) -> set[str]:
        """The bytes (sha256) of each signed version's first (or pinned) manifest in the mirror:
        its files (those the signer leaves out, and those a BLAKE or sharded signature names by
        other digests, as that manifest states them) and its signature are this model's,
        whichever origin their objects' marks say."""
        return set().union(*self.bytes_of.values())

    def manifest_at(self, item: Listed, vid: str) -> versions.Manifest | None:
        """The manifest at ``item`` (read bounded, parsed strictly); None when gone, or not one mdl
        writes for this model and this id."""
        read = self.writer.read(item.uri, limit=versions.MAX_MANIFEST_BYTES)
        if read is None:
            return None  # removed meanwhile
        manifest = versions.parse_manifest(read[0])
        if manifest is None or manifest.model != self.model or manifest.id != vid:
            return None
        return manifest

    def read(
        self, item: Listed, vid: str, pins: str | None
    ) -> tuple[KeptVersion, bool, str | None] | None:
        """A manifest among the newest, read and judged (``proof``), whether it is a copy of a
        signed version (``look_first``: judged as it reads now, whatever it read before), and its
        signature's sha256; None, said and left in place, when it is not one mdl writes for this
        model and this id (a version that cannot be read: every object is kept)."""
        found = self.found
        try:
            manifest = self.manifest_at(item, vid)
            if manifest is None:
                found.staying.setdefault(item.uri, (item.size, JUNK))
                found.warnings.append(f"{item.uri}: {JUNK}")
                return None
            proof = self.proof(manifest, item.uri, pins)
        except MdlError as exc:  # a version that may be kept is not known: nothing goes
            found.errors.append(exc)
            found.staying[item.uri] = (item.size, "could not be read: kept")
            found.whole = f"{item.uri} could not be read: every object is kept"
            return None
        objects = {uri: size for uri, size, _ in self.objects(manifest)}
        sig = manifest.signature
        copy = sig is not None and (
            self.first.get(sig.sha256, item.uri) != item.uri or sig.sha256 in self.pinned
        )
        kept = KeptVersion(
            self.model,
            f"version {vid[:8]}…",
            manifest.commit,
            tuple(objects.items()),
            id=vid,
            manifest=item.uri,
            published=item.modified,
            proof=proof,
        )
        return kept, copy, None if sig is None else sig.sha256

    def proof(self, manifest: versions.Manifest, uri: str, pins: str | None) -> str | None:
        """How this version is proven this catalog's, None when it is not: a kept lock pins it
        (``pins``), or the catalog's signer signed exactly its files; and every object it names is
        in the mirror, as written for it (its size, mdl's mark for its sha256)."""
        by = pins if pins is not None else "the catalog's signer" if self.signed(manifest) else None
        if by is None:
            return None
        if not self.there(manifest):
            self.found.warnings.append(f"{uri}: {MISSING}")
            return None
        return by

    def objects(self, manifest: versions.Manifest) -> list[tuple[str, int, str]]:
        """Each object the version names (its files' and its signature's): URI, size, sha256."""
        signature = () if manifest.signature is None else (manifest.signature,)
        rows = {f.sha256: f.size for f in (*manifest.files, *signature)}
        return [(f"{self.prefix}/{self.model}/{sha}", size, sha) for sha, size in rows.items()]

    def there(self, manifest: versions.Manifest) -> bool:
        """Whether every object the version names is in the mirror: of its size, and marked by mdl
        as those bytes at that name (what prune asks of any object it removes)."""
        for uri, size, sha256 in self.objects(manifest):
            seen = self.writer.owned(uri, root=self.prefix + "/")
            if seen is None or seen.size != size or seen.mark is None:
                return False
            if seen.mark.sha256 != sha256:
                return False
        return True

    def signed(self, manifest: versions.Manifest) -> bool:
        """Whether the catalog's signer signed exactly this version: the signature the manifest
        names is in the mirror as those bytes, verifies with the catalog's key (or certificates,
        or identity), and covers every file of the version and no other."""
        row = manifest.signature
        if self.trust is None or row is None:
            return False
        if row.sha256 not in self.statements:  # each signature read and verified once
            self.statements[row.sha256] = self._verified(row.sha256, self.trust)
        if (statement := self.statements[row.sha256]) is None:
            return False
        paths = {f.path for f in manifest.files}
        return set(statement.files) <= paths and all(
            statement.covers(f.path, f.size, f.sha256) for f in manifest.files
        )

    def _verified(self, sha256: str, trust: Trust) -> SignedManifest | None:
        """What the signature stored as ``sha256`` signs, when it is there as those bytes and
        verifies with ``trust``; None otherwise."""
        uri = f"{self.prefix}/{self.model}/{sha256}"
        read = self.writer.read(uri, limit=MAX_SIGNATURE_BYTES)
        if read is None or hashlib.sha256(read[0]).hexdigest() != sha256:
            return None
        try:
            return verify_signature(read[0], trust, what=uri)
        except MdlError as exc:  # not the signer's: proves nothing (it still keeps)
            log.info("%s: %s", uri, exc.message)
            return None


def costs(kept: Sequence[KeptVersion]) -> list[dict[str, Any]]:
    """What each kept version costs in the mirror: its objects, their bytes, and the bytes of those
    no other kept version names (what keeping it alone costs)."""
    named = Counter(uri for version in kept for uri in dict(version.objects))
    return [
        {
            "model": v.model,
            "from": v.origin,
            "manifest": v.manifest,
            "id": v.id,
            "commit": v.commit,
            "files": len(v.objects),
            "bytes": sum(size for _, size in v.objects),
            "only_bytes": sum(size for uri, size in v.objects if named[uri] == 1),
        }
        for v in kept
    ]
