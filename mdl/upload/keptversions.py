"""The versions ``prune --mirror`` keeps, and what each costs: those a kept lock pins (the catalog's
catalog.lock, every ``--lock FILE``) and the newest ``--keep-versions N`` published versions of each
model, by their manifests in the mirror (``<prefix>/.mdl/versions/<model>/<id>.json``, newest by the
store's clock). A manifest is outside bytes: read within ``versions.MAX_MANIFEST_BYTES`` and
parsed strictly, it can only keep objects (what it names, and itself), never have one removed; one
that is not a manifest mdl writes (junk, another model's, an id not its name's) is kept, ignored
and said."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import islice
from pathlib import Path
from typing import Any

from mdl.buckets import names, versions
from mdl.buckets.protocol import Listed, Writer, side_of
from mdl.catalog.settings import Settings
from mdl.catalog.specs import NAME_RE, ModelSpec
from mdl.download.resolve import from_lock
from mdl.errors import MdlError, UsageError
from mdl.lockfile.io import read_lock
from mdl.lockfile.model import LockedModel
from mdl.lockfile.policy import LockUse
from mdl.signing.statement import SIGNATURE_FILE
from mdl.sources.resolve import ResolvedModel, mirror_targets

# the manifests prune lists under one mirror's versions: more is refused as no mirror mdl keeps
MOST_MANIFESTS = 100_000
KEEP_VERSIONS = 2  # the current version and the one before it: what a node mid roll-out runs
UNKEPT = "a version no longer kept"
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
    # another catalog's version of a model of the same name (its files from other origins): kept,
    # never counted among this catalog's newest (its publishes must not push this one's out)
    theirs: bool = False

    @property
    def reason(self) -> str:
        """Why an object it names stays."""
        if self.manifest is None:
            return f"named by {self.origin}"
        commit = f"commit {self.commit[:7]}, " if self.commit else ""
        day = datetime.fromtimestamp(self.published or 0.0, UTC).strftime("%Y-%m-%d")
        whose = "another catalog's " if self.theirs else ""
        return f"named by {whose}{self.origin} of {self.model} ({commit}published {day})"


def lock_version(origin: str, template: str, resolved: ResolvedModel) -> KeptVersion:
    """A model as a kept lock pins it (``resolved``: from that lock): each file's object as a pull
    fills ``template``."""
    objects = {
        url: remote.size or 0
        for remote in resolved.files
        for _, url in mirror_targets([template], remote)
    }
    return KeptVersion(resolved.name, origin, resolved.commit, tuple(objects.items()))


def lock_ids(locked: LockedModel, signature: str | None) -> tuple[str, ...]:
    """The ids the version a lock pins is published under (``signature``: the path of its
    signature file, else model.sig: what ``publish`` leaves out)."""
    rows = [(f.path, f.size, f.sha256) for f in locked.files]
    return versions.version_ids(rows, signature=signature or SIGNATURE_FILE)


class KeptLocks:
    """The kept locks' versions in the mirror ``template``: the catalog's lock (its fresh entries
    pin the catalog's models) and each ``--lock`` given (every model it holds, fresh or not: a node
    may still be on it)."""

    def __init__(self, settings: Settings, template: str) -> None:
        self.settings, self.template = settings, template
        self.versions: list[KeptVersion] = []
        self.ids: dict[str, dict[str, str]] = {}  # model → a version id a lock pins → that lock
        self.warnings: list[str] = []
        # the locks kept so far, resolved: one given twice (or catalog.lock again) counts once
        own = settings.lock_path
        self.seen = {own.resolve()} if own is not None and own.is_file() else set()

    def catalog(self, models: Sequence[ModelSpec]) -> tuple[list[ResolvedModel], list[str]]:
        """The catalog's lock kept (``--locked``: a model it does not pin is refused before any
        listing): the models it pins, as it pins them, and the names of those it does not."""
        lock = LockUse(self.settings)
        lock.require(models)
        doing = "keeping every object under its name in the mirror"
        pinned = []
        for spec in models:
            if (locked := lock.pinned(spec, doing=doing)) is not None:
                pinned.append(self._keep(lock.name, spec, locked))
        self.warnings.extend(lock.warnings.values())
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
        self.versions.append(lock_version(origin, self.template, resolved))
        signature = spec.signature.installed_as if spec.signature is not None else None
        for vid in lock_ids(locked, signature):
            self.ids.setdefault(locked.name, {}).setdefault(vid, origin)
        return resolved


@dataclass
class Published:
    """The published versions of a mirror's models as prune judges them: those kept, the manifests
    that stay (by URI, with why), those of versions no longer kept (judged by mdl's mark and age),
    and what was said."""

    kept: list[KeptVersion] = field(default_factory=list)
    staying: dict[str, tuple[int, str]] = field(default_factory=dict)
    unkept: list[Listed] = field(default_factory=list)
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
    sides: Mapping[str, frozenset[str]] | None = None,
) -> Published:
    """The newest ``keep`` valid published versions of each of ``models`` (None: every model's)
    under the content layout's ``prefix``; ``locked``: per model, the ids a kept lock pins, by the
    origin that pins it (their manifests stay, whatever their age); ``sides``: per model, whose its
    files are (``side_of`` their origins, as the catalog's lock pins them): a version whose files
    are all another origin's is another catalog's, kept but not counted."""
    found = Published()
    where = f"{prefix.rstrip('/')}/{names.NAMESPACE}versions/"
    wanted = None if models is None else set(models)
    by_model: dict[str, list[tuple[Listed, str]]] = {}
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
    for item in listed:
        version = names.parse(item.uri)
        if not isinstance(version, names.Version) or not NAME_RE.fullmatch(version.model):
            continue  # not a manifest's name (of a model a catalog may name): not prune's to judge
        if wanted is None or version.model in wanted:
            by_model.setdefault(version.model, []).append((item, version.id))
    for model, manifests in by_model.items():
        newest = sorted(manifests, key=lambda m: (-m[0].modified, m[0].uri))
        judge = _Judge(writer, found, where.removesuffix("/"), (sides or {}).get(model))
        judge.model(model, newest, keep, locked.get(model, {}))
    return found


@dataclass
class _Judge:
    """Judges one mirror's manifests of a model (``where``: its ``<prefix>/.mdl/versions``;
    ``sides``: whose this catalog's model is, None: not known)."""

    writer: Writer
    found: Published
    where: str
    sides: frozenset[str] | None

    def model(
        self, model: str, newest: list[tuple[Listed, str]], keep: int, locked: Mapping[str, str]
    ) -> None:
        """One model's manifests, newest first: the newest ``keep`` versions (and any as new as
        the last of them: the store's clock cannot order those) are kept, by a kept lock's pins or
        by their manifest read; junk among them stays, ignored and not counted, and so does
        another catalog's version (kept, its objects too); a manifest a kept lock pins stays
        whatever its age; the rest are versions no longer kept."""
        found = self.found
        count, last = 0, None  # the versions kept by age so far; the time of the last one
        for item, vid in newest:
            by_age = count < keep or item.modified == last
            if vid in locked:
                pins = f"the manifest of a version {locked[vid]} pins"
                found.staying[item.uri] = (item.size, pins)
            elif not by_age:
                found.unkept.append(item)
                continue
            elif (version := self.read(item, model, vid)) is not None:
                found.kept.append(version)
                why = "another catalog's version" if version.theirs else f"{keep} newest"
                found.staying[item.uri] = (item.size, f"the manifest of a kept version ({why})")
                if version.theirs:
                    continue
            else:
                continue  # junk: never counted
            if by_age:
                count, last = count + 1, item.modified

    def read(self, item: Listed, model: str, vid: str) -> KeptVersion | None:
        """A manifest read (bounded) and parsed; None, said and left in place, when it is not one
        mdl writes for this model and this id."""
        found = self.found
        prefix = self.where.removesuffix(f"/{names.NAMESPACE}versions")
        try:
            read = self.writer.read(item.uri, limit=versions.MAX_MANIFEST_BYTES)
        except MdlError as exc:  # a version that may be kept is not known: nothing goes
            found.errors.append(exc)
            found.staying[item.uri] = (item.size, "could not be read: kept")
            found.whole = f"{item.uri} could not be read: every object is kept"
            return None
        if read is None:
            return None  # removed meanwhile
        manifest = versions.parse_manifest(read[0])
        if manifest is None or manifest.model != model or manifest.id != vid:
            found.staying[item.uri] = (item.size, JUNK)
            found.warnings.append(f"{item.uri}: {JUNK}")
            return None
        files = (*manifest.files, *(() if manifest.signature is None else (manifest.signature,)))
        objects = {f"{prefix}/{model}/{f.sha256}": f.size for f in files}
        said = {side_of(f.source) for f in manifest.files if f.source}
        return KeptVersion(
            model,
            f"version {vid[:8]}…",
            manifest.commit,
            tuple(objects.items()),
            id=vid,
            manifest=item.uri,
            published=item.modified,
            theirs=self.sides is not None and bool(said) and not said & self.sides,
        )


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
