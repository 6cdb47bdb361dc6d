"""``mdl prune --mirror oci://REGISTRY/NAMESPACE/{model}``: a registry mirror kept from growing
forever. Each catalog model's repository is listed by its tags (bounded), each tag's manifest read
(bounded, parsed strictly); a manifest is a version of the model when it is a ModelPack artifact
whose layers are files. Kept: the versions a kept lock pins (its manifest digest, for an ``oci``
model; its files, the signature file left out as ``publish --sign`` leaves it, for one published
there: the bucket's rule, ``keptversions.lock_ids``) — the only proof a registry gives that a
version is this catalog's; a manifest any kept lock pins for any model is never deleted, and only
counted for its own. The newest ``--keep-versions N`` count by times the user's locks vouch for:
catalog.lock's version (the earliest time its manifests state: a copy can only make it older; not
there, or no time stated: nothing is counted, nothing goes by its age), and a version whose manifest
a lock pins by digest (the time is in the bytes it pins). What a registry says (a tag, a time)
proves nothing: a version matched by its files alone is kept, never counted (anyone who may push can
write its files stating any time), and a manifest no lock pins is kept while it is as new as the
last version counted (or states no time).
The others' manifests are deleted by digest where the registry allows it; the registry's own
garbage collection frees their blobs. A repository several models share is kept."""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from mdl.buckets.versions import version_id
from mdl.catalog.settings import (
    MIRROR_FIELDS,
    Settings,
    check_mirror,
    fill_template,
    parse_template,
)
from mdl.catalog.specs import ModelSpec
from mdl.errors import (
    AuthError,
    IntegrityError,
    MdlError,
    NotFoundError,
    RegistryReplyError,
    UsageError,
)
from mdl.paths import OciRef, parse_oci_ref, parse_oci_source
from mdl.redact import printable
from mdl.sources.oci import Registry
from mdl.sources.ocimanifest import CREATED, MODELPACK_ARTIFACT, Manifest, layer_files
from mdl.sources.resolve import ResolvedModel
from mdl.transfer.http import RetryPolicy, make_client
from mdl.upload.keptversions import AHEAD, JUNK, UNKEPT, UNPROVEN, KeptLocks, signature_file
from mdl.upload.mirrorprune import MirrorEntry, MirrorPruneReport, Tally

log = logging.getLogger("mdl.prune")

Files = frozenset[tuple[str, int, str]]  # a version: its files' paths, sizes and sha256
MOST_TAGS = 10_000  # a repository's tags prune reads: more, and every version of it is kept
MOST_PAGES = 100  # and pages of them (a registry may send fewer than asked), none read twice
NO_VERSION = "not a version of the model (an index, a referrer, another artifact): kept"
UNDATED = f"states no time ({CREATED}): kept, never counted (--keep-versions 0: the locks' only)"
SHARED = "a repository several of the catalog's models share: every version kept"
NO_DELETES = "the registry does not allow deletes: kept"
DELETES_HINT = (
    "let the registry delete manifests (distribution: storage.delete.enabled: true; Harbor,"
    " GHCR, ECR: a robot or token allowed to delete); nothing else was changed"
)


@dataclass
class _Found:
    """One manifest of a model's repository: its digest, its tags, its files and its version's id
    (None: no version of the model) and the time it states (None: none)."""

    digest: str
    tags: list[str]
    files: Files | None
    vid: str | None
    created: float | None


@dataclass(frozen=True)
class _Pins:
    """What the kept locks pin of one model, each by the lock that pins it: its versions' ids
    (``lock_ids``), and the manifests an ``oci`` model's locks pin by digest (whose stated times
    are bytes a lock pins); ``current``: the ids of catalog.lock's version; ``signature``: the
    model's signature file, left out of a manifest's files as of a lock's."""

    ids: Mapping[str, str]
    digests: Mapping[str, str]
    current: frozenset[str]
    signature: str

    def pinned_by(self, item: _Found) -> str | None:
        """The kept lock that pins this manifest (its digest, else its version), None: none."""
        return self.digests.get(item.digest) or (self.ids.get(item.vid) if item.vid else None)


def prune_registry(
    models: Sequence[ModelSpec],
    settings: Settings,
    *,
    mirror: str,
    all_models: bool = False,
    locks: Sequence[Path] = (),
    keep_versions: int,
) -> MirrorPruneReport:
    """``prune --mirror oci://…``: each catalog model's repository against the kept locks."""
    if all_models:
        raise UsageError(
            "--all-models: a registry's repositories are not listed; prune reads the catalog"
            " models' own (drop --all-models)"
        )
    template = check_mirror(mirror, where="--mirror")
    kept = KeptLocks(settings, template)
    _, unpinned = kept.catalog(models, locks)
    retry = RetryPolicy(retries=settings.retries, max_time=settings.retry_max_time)
    client = make_client(pool_size=4, timeout=settings.timeout, environ=settings.environ)
    registry = Registry(
        client, environ=settings.environ or {}, secrets=settings.secrets, retry=retry
    )
    run = _RegistryRun(registry, settings.dry_run, keep_versions, _held(kept.pins))
    refs = {spec.name: (spec, _repository(template, spec.name)) for spec in models}
    shared = Counter(ref.repository for _, ref in refs.values() if ref is not None)
    with client:
        for name, (spec, ref) in refs.items():
            if ref is None:
                run.warnings.append(f"{name}: no repository can have this name; nothing pruned")
            elif shared[ref.repository] > 1 or name in unpinned:
                why = SHARED if shared[ref.repository] > 1 else f"{name} has no fresh lock entry"
                run.kept.append(MirrorEntry(ref.given, 0, why))
            else:
                run.model(ref, _pins(kept, spec))
    return MirrorPruneReport(
        template,
        0.0,
        tuple(run.removed),
        tuple(run.kept),
        warnings=(*run.warnings, *kept.warnings),
        errors=tuple(run.errors),
        dry_run=settings.dry_run,
        now=time.time(),
        versions=tuple(kept.versions),
    )


def _repository(template: str, model: str) -> OciRef | None:
    parts = parse_template(template, fields=MIRROR_FIELDS, where="--mirror")
    try:
        return parse_oci_ref(fill_template(parts, {"model": model}))
    except UsageError:
        return None


def _pins(kept: KeptLocks, spec: ModelSpec) -> _Pins:
    """What the kept locks pin of the model ``spec`` names."""
    digests: dict[str, str] = {}
    for origin, model in (pin for pin in kept.pins if pin[1].name == spec.name):
        for digest in _digests(model):
            digests.setdefault(digest, origin)
    current = frozenset(kept.current.get(spec.name, ()))
    return _Pins(kept.ids.get(spec.name, {}), digests, current, signature_file(spec))


def _held(pins: Sequence[tuple[str, ResolvedModel]]) -> dict[str, str]:
    """Every manifest digest a kept lock pins, whichever model's (an ``oci`` model deployed from
    another's repository): why it stays wherever prune finds it, never counted there."""
    held: dict[str, str] = {}
    for origin, model in pins:
        for digest in _digests(model):
            held.setdefault(
                digest, f"the manifest {origin} pins for {model.name}: kept, never counted"
            )
    return held


def _digests(model: ResolvedModel) -> set[str]:
    """The manifest digests an ``oci`` model's files come from (none for another source's)."""
    sources = (parse_oci_source(file.source) for file in model.files)
    return {source[0].digest for source in sources if source is not None and source[0].digest}


def _created(manifest: Manifest) -> float | None:
    try:
        return datetime.fromisoformat(manifest.annotations[CREATED]).timestamp()
    except (KeyError, ValueError, TypeError):
        return None


def _version(manifest: Manifest, *, what: str) -> Files | None:
    """The manifest's files when it is a version of a model (a ModelPack artifact whose layers are
    files), else None."""
    if manifest.is_index or manifest.artifact_type != MODELPACK_ARTIFACT:
        return None
    try:
        return frozenset((f.path, f.size, f.sha256) for f in layer_files(manifest, what=what))
    except RegistryReplyError:
        return None


@dataclass
class _RegistryRun(Tally):
    """One registry prune."""

    registry: Registry
    dry_run: bool
    keep: int
    held: Mapping[str, str]  # every manifest digest a kept lock pins → why it stays
    refused: bool = False  # the registry refused a delete: no other is asked

    def model(self, ref: OciRef, pins: _Pins) -> None:
        """One model's repository: its manifests read, judged, the unkept deleted."""
        try:
            tags = self.registry.tags(ref, most=MOST_TAGS, pages=MOST_PAGES, what=ref.given)
        except NotFoundError:
            return  # nothing published there
        except MdlError as exc:
            self.errors.append(exc)
            return
        if tags is None:
            self.warnings.append(
                f"{ref.given}: its tag list does not end within {MOST_TAGS} tags in"
                f" {MOST_PAGES} pages (or names a page again): every version kept"
            )
            return
        found = self.read(ref, tags, pins.signature)
        if found is not None:
            self.judge(ref, found, pins)

    def read(self, ref: OciRef, tags: list[str], signature: str) -> dict[str, _Found] | None:
        """Each tag's manifest, by digest; None: one could not be read (nothing goes)."""
        found: dict[str, _Found] = {}
        for tag in tags:
            try:
                tagged = ref._replace(tag=parse_oci_ref(f"{ref.given}:{tag}").tag)
                digest, manifest = self.registry.manifest(tagged, what=tagged.given)
            except NotFoundError:
                continue  # untagged meanwhile
            except (UsageError, RegistryReplyError, IntegrityError) as exc:
                self.kept.append(MirrorEntry(f"{ref.given}:{printable(tag, limit=130)}", 0, JUNK))
                self.warnings.append(f"{exc.message}: {JUNK}")
                continue
            except MdlError as exc:
                self.errors.append(exc)
                return None
            if digest in found:
                found[digest].tags.append(tag)
            else:
                files = _version(manifest, what=tagged.given)
                vid = None if files is None else version_id(files, signature=signature)
                found[digest] = _Found(digest, [tag], files, vid, _created(manifest))
        return found

    def judge(self, ref: OciRef, found: Mapping[str, _Found], pins: _Pins) -> None:
        """Keep what a kept lock pins (a manifest pinned for another model: never counted here);
        count the newest ``keep`` of this model's versions by the times the locks vouch for
        (``_counted``); delete a manifest no lock pins only when the time it states is older than
        the last version counted."""
        keep: list[tuple[_Found, str]] = []
        unpinned: list[_Found] = []
        for item in found.values():
            if (by := pins.pinned_by(item)) is not None:
                keep.append((item, f"the manifest of a version {by} pins"))
            elif item.digest in self.held:
                keep.append((item, self.held[item.digest]))
            else:
                unpinned.append(item)
        anchor, counted = _counted(found.values(), pins)
        cutoff = _cutoff(counted, self.keep)
        gone: list[_Found] = []
        for item in unpinned:
            why = _unkept_why(item, cutoff, anchor, self.keep)
            if why is None:
                gone.append(item)
            else:
                keep.append((item, why))
        held = {sha for item, _ in keep for _, _, sha in item.files or ()}
        self.kept.extend(
            MirrorEntry(_shown(ref, item), _bytes(item, set()), why) for item, why in keep
        )
        for item in gone:
            self.delete(ref, item, size=_bytes(item, held))

    def delete(self, ref: OciRef, item: _Found, *, size: int) -> None:
        """Delete a manifest by digest (a dry run: only say so); a registry that refuses deletes
        is said once, and asked no more."""
        shown = _shown(ref, item)
        if self.refused:
            self.kept.append(MirrorEntry(shown, size, NO_DELETES))
            return
        if not self.dry_run:
            path = f"manifests/{item.digest}"
            try:
                self.registry.ask(ref, path, method="DELETE", what=shown, missing="no manifest")
            except NotFoundError:
                log.info("%s: gone before prune deleted it", shown)
                return
            except MdlError as exc:
                # distribution without deletes: 405 UNSUPPORTED; a login that may not: 401, 403
                if exc.status in (403, 405) or isinstance(exc, AuthError):
                    self.refused = True
                    exc.hint = DELETES_HINT
                    self.kept.append(MirrorEntry(shown, size, NO_DELETES))
                self.errors.append(exc)
                return
        self.removed.append(MirrorEntry(shown, size, UNKEPT))


def _counted(found: Iterable[_Found], pins: _Pins) -> tuple[float | None, list[float]]:
    """The time of catalog.lock's version (the earliest its manifests state: a copy can only make
    it older; None: none there states one), and the times of the versions counted, each once:
    catalog.lock's (not there: newer than any) and each a lock pins by its manifest's digest (its
    stated time is bytes the lock pins), none newer than catalog.lock's; none when catalog.lock's
    version is not there. A version matched by its files alone is never counted: anyone who may
    push can write them stating any time, and no copy, planted, re-dated or re-tagged away, may
    push another version out."""
    items = list(found)
    anchor = min(
        (i.created for i in items if i.vid in pins.current and i.created is not None), default=None
    )
    if anchor is None:  # (a tag a co-tenant moved away hides it: so that only ever keeps more)
        return None, []
    dated: dict[str | None, float] = {}
    for item in items:
        chained = item.digest in pins.digests and item.vid not in (None, *pins.current)
        if chained and item.created is not None and item.created <= anchor:
            dated[item.vid] = min(dated.get(item.vid, item.created), item.created)
    return anchor, [anchor, *dated.values()]


def _cutoff(counted: list[float], keep: int) -> float | None:
    """The time of the last of the newest ``keep`` versions counted, below which a manifest no
    lock pins goes; None: fewer were counted, nothing goes by its time."""
    newest = sorted(counted, reverse=True)
    return newest[keep - 1] if 0 < keep <= len(newest) else None


def _unkept_why(item: _Found, cutoff: float | None, anchor: float | None, keep: int) -> str | None:
    """Why a manifest no lock pins stays, None: it goes (it states a time before ``cutoff``;
    ``keep`` 0: the locks' versions only, whatever it states)."""
    if item.files is None:
        return NO_VERSION
    if keep == 0:
        return None
    if item.created is None:
        return UNDATED
    if cutoff is not None and item.created < cutoff:
        return None
    return AHEAD if anchor is not None and item.created > anchor else UNPROVEN


def _shown(ref: OciRef, item: _Found) -> str:
    return ref._replace(tag=item.tags[0], digest=item.digest).given


def _bytes(item: _Found, held: set[str]) -> int:
    """The bytes of the version's blobs none of ``held`` are (each once): what deleting its
    manifest lets the registry's garbage collection free."""
    blobs = {sha: size for _, size, sha in item.files or () if sha not in held}
    held.update(blobs)
    return sum(blobs.values())
