"""``mdl publish``: verified local files to the bucket, each once by its content
(``<prefix>/<model>/<sha256>``), then per complete model its version's manifest
(``mdl.buckets.versions``), which a re-run of the same version finds and leaves as is; with
``--sign KEY.pem`` a model.sig made from the sha256 each file was checked by (nothing is read
again), stored by content too and named by that version's manifest. Nothing of another version is
touched.
"""

from __future__ import annotations

import hashlib
import logging
import re
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from mdl.buckets import versions
from mdl.catalog.settings import Settings
from mdl.catalog.specs import ModelSpec
from mdl.errors import IntegrityError, MdlError, NotFoundError, UsageError
from mdl.lockfile.model import LockedModel
from mdl.progress import Progress
from mdl.redact import record_text
from mdl.report import FileOutcome, RunReport, failed
from mdl.signing.library import MAX_SIGNATURE_BYTES, public_key_of, sign_digests, verify_signature
from mdl.signing.statement import SIGNATURE_FILE, SignedManifest, Trust, skipped_by_signature
from mdl.store.expected import ExpectedFile
from mdl.store.inventory import LocalFile, ModelStatus, model_status
from mdl.store.layout import Layout
from mdl.store.records import ModelRecord
from mdl.store.states import INSTALLED, MODIFIED_MAYBE
from mdl.store.verify import read_signature, verify_file
from mdl.units import first_few
from mdl.upload._bucket import Bucket, ReadyFile

log = logging.getLogger("mdl.publish")
# What a signature leaves out, as model_signing's own `sign` and `verify` do: itself and the .git*
# files.
LEFT_OUT = (SIGNATURE_FILE,)


@dataclass(frozen=True)
class Signature:
    """A model's model.sig and the digests it signs (path → sha256)."""

    model: str
    digests: dict[str, str]
    data: bytes

    @property
    def row(self) -> versions.ManifestFile:
        """As its version's manifest names it (its object: ``<prefix>/<model>/<sha256>``)."""
        return versions.ManifestFile(
            SIGNATURE_FILE, len(self.data), hashlib.sha256(self.data).hexdigest()
        )


class Signer:
    """Signs with one EC private key (PEM): refused at once (exit 2 naming it, or ``mdl[sign]``)
    when not usable.
    """

    def __init__(self, key: Path, *, force: bool) -> None:
        # the library and the key, before anything is read or sent
        sign_digests({}, private_key=key, model_name="")
        self.key, self.force = key, force
        self.public_key = public_key_of(key)  # to check a model.sig already in the bucket

    def without_own(self, model: LocalModel) -> LocalModel:
        """The model without a model.sig of its own (from its source), where ours goes: with
        ``--force``; without it, UsageError (exit 2), as our signature would take its place in the
        version's manifest. One this key made (an earlier version's, installed from the bucket)
        is no one else's: left out without ``--force``."""
        if SIGNATURE_FILE not in {
            *(f.path for f in model.ready),
            *(f.path for f in model.failures),
        }:
            return model
        if not self._replaces(next((f for f in model.ready if f.path == SIGNATURE_FILE), None)):
            raise UsageError(
                f"{model.spec.name}/{SIGNATURE_FILE}: the model has a signature of its own (from"
                " its source), which --sign would replace as its version's signature",
                hint=(
                    "--force publishes mdl's signature in its place; without --sign the model's own"
                    " is published"
                ),
            )
        return replace(
            model,
            ready=tuple(f for f in model.ready if f.path != SIGNATURE_FILE),
            failures=tuple(f for f in model.failures if f.path != SIGNATURE_FILE),
        )

    def _replaces(self, own: ReadyFile | None) -> bool:
        """Whether our signature may take the place of the model's ``own`` model.sig (None: a
        failed one): with ``--force``, or when this key made it."""
        return self.force or (own is not None and self.made(own.local, what=str(own.local)))

    def sign(self, model: str, files: Sequence[ReadyFile]) -> Signature:
        """The signature over every file published but those a signature leaves out (model.sig,
        ``.git*``).
        """
        digests = {f.path: f.sha256 for f in files if not skipped_by_signature(f.path, LEFT_OUT)}
        return Signature(
            model, digests, sign_digests(digests, private_key=self.key, model_name=model)
        )

    def there(
        self, bucket: Bucket, signature: Signature, named: versions.ManifestFile | None
    ) -> Signature | None:
        """The signature the version's manifest names (``named``), when it signs these digests
        for this model with this key (a re-run then writes nothing): read within
        ``MAX_SIGNATURE_BYTES``, held to the sha256 it is named by, verified with the key, never
        taken for its looks. Another key's, another statement's, a damaged or a missing one is
        None: ours is named instead."""
        if named is None:
            return None
        uri = bucket.uri(signature.model, named.sha256)
        if (found := bucket.writer.read(uri, limit=MAX_SIGNATURE_BYTES, aged=False)) is None:
            return None
        data = found[0]  # a bigger one is cut short: its sha256 is not the one named
        if hashlib.sha256(data).hexdigest() != named.sha256:
            return None
        if (signed := self.verified(data, what=uri)) is None:
            return None
        files = {path: f.sha256 for path, f in signed.files.items()}
        same = signed.model_name == signature.model and signed.free and files == signature.digests
        return replace(signature, data=data) if same else None

    def verified(self, data: bytes, *, what: str) -> SignedManifest | None:
        """What ``data`` signs when this key made it; None: not a signature by this key."""
        with tempfile.TemporaryDirectory(prefix="mdl-publish-") as folder:
            public = Path(folder, "key.pub")
            public.write_bytes(self.public_key)
            try:
                return verify_signature(data, Trust(key=public), what=what)
            except IntegrityError:
                return None

    def made(self, local: Path, *, what: str) -> bool:
        """Whether the installed signature at ``local`` was made by this key (read within
        ``MAX_SIGNATURE_BYTES``: a bigger file is none mdl signs)."""
        try:  # never through a link, never a FIFO, never more than a signature's bytes
            data = read_signature(local.parent, local, what=what)
        except IntegrityError:
            return False
        return self.verified(data, what=what) is not None

    def outcome(self, bucket: Bucket, signature: Signature, action: str) -> FileOutcome:
        """The model.sig's row: ``uploaded``, ``skipped`` (already there), or a dry run's
        ``upload``/``skip``.
        """
        row, reason = signature.row, f"signed with {self.key}"
        if action.startswith("skip"):
            reason = (
                "already named by its version's manifest (verified: this key signed these files)"
            )
        return FileOutcome(
            signature.model,
            SIGNATURE_FILE,
            bucket.uri(signature.model, row.sha256),
            row.size,
            row.sha256,
            action,
            reason=reason,
            fetched=row.size if action == "uploaded" else 0,
        )

    def publish(
        self,
        bucket: Bucket,
        signature: Signature,
        named: versions.ManifestFile | None,
        *,
        dry_run: bool,
    ) -> tuple[FileOutcome, Signature]:
        """Put the model.sig at ``<prefix>/<model>/<its sha256>``, unless the one the version's
        manifest names (``named``) already signs the same: its row, and the signature to name."""
        if (kept := self.there(bucket, signature, named)) is not None:
            return self.outcome(bucket, kept, "skip" if dry_run else "skipped"), kept
        if dry_run:
            return self.outcome(bucket, signature, "upload"), signature
        _put_small(bucket, bucket.uri(signature.model, signature.row.sha256), signature.data)
        log.info("%s: signature written to %s", signature.model, bucket.uri(signature.model))
        return self.outcome(bucket, signature, "uploaded"), signature


@dataclass(frozen=True)
class Published:
    """A model's version as this run left it: its id, its manifest's URI, and whether the manifest
    was written (``uploaded``), already there as it is (``skipped``), or a dry run's
    ``upload``/``skip``."""

    model: str
    id: str
    manifest: str
    action: str
    warning: str | None = None  # what lay at the manifest's name and was not believed

    def to_json(self) -> dict[str, str | None]:
        """As ``--json`` says it."""
        return {
            "model": self.model,
            "id": self.id,
            "manifest": self.manifest,
            "action": self.action,
            "warning": self.warning,
        }


@dataclass(frozen=True)
class PublishReport(RunReport):
    """What a publish did per file, where to, the template nodes read it with, and each model's
    version (its manifest written or found up to date)."""

    target: str = ""
    versions: tuple[Published, ...] = ()

    @property
    def template(self) -> str:
        """The mirror template nodes pull what was published with (a registry's: its
        repositories, the tag left out)."""
        if self.target.startswith("oci://"):  # the tag: a literal one or {model}'s
            return re.sub(r":[^/:]*$", "", self.target)
        return versions.template_of(self.target)

    @property
    def manifests(self) -> tuple[str, ...]:
        """The manifests of the versions published (written, or there already)."""
        return tuple(v.manifest for v in self.versions)

    def to_json(self) -> dict[str, Any]:
        return {
            **super().to_json(),
            "to": self.target,
            "template": self.template,
            "manifests": list(self.manifests),
            "versions": [v.to_json() for v in self.versions],
        }


def publish_models(
    specs: Sequence[ModelSpec],
    settings: Settings,
    target: str,
    *,
    progress: Progress,
    pins: Mapping[str, Sequence[ExpectedFile]],
    locked: Mapping[str, LockedModel],
    endpoint: str | None = None,
    sign: Path | None = None,
    force: bool = False,
    dry_run: bool = False,
) -> PublishReport:
    """Publish each model's verified files by content and, once all of a model's files are there,
    its version's manifest (naming, with ``sign``, an EC private key, the model.sig made with it).
    ``dry_run``: say what would go up, sending nothing."""
    # before anything: exit 2 naming the key
    signer = Signer(sign, force=force) if sign is not None else None
    layout = Layout(settings)
    models = [
        local_model(
            spec, layout, pinned=pins.get(spec.name), progress=progress, signing=signer is not None
        )
        for spec in specs
    ]
    signing = _Signing.made(signer, models)
    models = signing.models
    bucket = Bucket(
        target, endpoint=endpoint, secrets=settings.secrets, connections=settings.connections
    )
    outcomes, uploads = _compared(bucket, models)
    if dry_run:
        outcomes = _planned(bucket, outcomes, uploads)
    elif uploads:
        progress.begin(total_bytes=sum(f.size for f in uploads), files=len(uploads))
        outcomes.extend(bucket.send(uploads, progress=progress))
    else:
        progress.begin(total_bytes=0, files=0)
    published: list[Published] = []
    for model in models:
        # a model with nothing here, or not all of it there, says nothing about a version
        if not model.ready or any(f.failing for f in outcomes if f.model == model.spec.name):
            continue
        rows, version = _version(
            bucket, model, locked.get(model.spec.name), signing, dry_run=dry_run
        )
        outcomes.extend(rows)
        published.extend(version)
    return PublishReport(
        _ordered(outcomes, models), dry_run=dry_run, target=target, versions=tuple(published)
    )


def _compared(
    bucket: Bucket, models: Sequence[LocalModel]
) -> tuple[list[FileOutcome], list[ReadyFile]]:
    """Each model's failures and the files whose contents the bucket already holds (skipped), and
    the contents to send, each once (a second file of the same bytes is skipped: stored once);
    the bucket missing or denied ends the run (4, 3)."""
    outcomes: list[FileOutcome] = []
    uploads: list[ReadyFile] = []
    for model in models:
        outcomes.extend(model.failures)
        if not model.ready:
            continue
        there = bucket.already_there(model.spec.name, model.ready)
        first: dict[str, ReadyFile] = {}
        for f in model.ready:
            if f.sha256 in there:
                outcomes.append(bucket.outcome(f, "skipped"))
            elif (twin := first.setdefault(f.sha256, f)) is not f:
                why = f"stored once: the same bytes as {twin.path}"
                outcomes.append(bucket.outcome(f, "skipped", reason=why))
            else:
                uploads.append(f)
    return outcomes, uploads


def _planned(
    bucket: Bucket, outcomes: Sequence[FileOutcome], uploads: Sequence[ReadyFile]
) -> list[FileOutcome]:
    """A dry run's rows for the files: ``skip`` what is there, ``upload`` the rest."""
    planned = [o._replace(action="skip") if o.action == "skipped" else o for o in outcomes]
    planned += [bucket.outcome(f, "uploaded")._replace(action="upload", fetched=0) for f in uploads]
    return planned


@dataclass(frozen=True)
class _Signing:
    """A publish's signatures (none without ``--sign``): the models as signed, and each complete
    model's signature."""

    signer: Signer | None
    models: list[LocalModel]
    signatures: dict[str, Signature]

    @classmethod
    def made(cls, signer: Signer | None, models: list[LocalModel]) -> _Signing:
        """Made before any object goes up, for each model that can be complete: the digests its
        files were checked by."""
        if signer is None:
            return cls(None, models, {})
        models = [signer.without_own(model) for model in models]
        signatures = {m.spec.name: signer.sign(m.spec.name, m.ready) for m in models if m.complete}
        return cls(signer, models, signatures)


def _ordered(
    outcomes: Sequence[FileOutcome], models: Sequence[LocalModel]
) -> tuple[FileOutcome, ...]:
    """Report order: model by model as asked, a model-wide failure first, then files by path."""
    rank = {model.spec.name: index for index, model in enumerate(models)}
    return tuple(sorted(outcomes, key=lambda o: (rank[o.model], o.path is not None, o.path or "")))


def _version(
    bucket: Bucket,
    model: LocalModel,
    locked: LockedModel | None,
    signing: _Signing,
    *,
    dry_run: bool,
) -> tuple[list[FileOutcome], list[Published]]:
    """The version's manifest, last (every file it names is there): read first, and written only
    when it is not these bytes; its signature (ours, the model's own, else the one the manifest
    there names: a manifest only gains) goes up before it. The model.sig's row and the version."""
    made = manifest_of(model, locked)
    name, uri = made.model, versions.manifest_uri(bucket.target, made.model, made.id)
    rows: list[FileOutcome] = []
    try:
        data, found = _found(bucket, uri, made)
        warning = None
        if data is not None and found is None:
            warning = f"{name}: {uri} is not this version's manifest; replacing it"
            log.warning("%s", warning)
        made, rows = _signed(bucket, made, found, signing, dry_run=dry_run)
        new = made.to_bytes()
        action = ("skip" if dry_run else "skipped") if new == data else "upload"
        if action == "upload" and not dry_run:
            _put_small(bucket, uri, new)
            action = "uploaded"
            log.info("%s: version %s, manifest written to %s", name, made.id, uri)
    except MdlError as exc:  # the files are up; the version is not published until its manifest is
        return [*rows, failed(name, None, exc)._replace(dest=uri)], []
    return rows, [Published(name, made.id, uri, action, warning)]


def _signed(
    bucket: Bucket,
    made: versions.Manifest,
    found: versions.Manifest | None,
    signing: _Signing,
    *,
    dry_run: bool,
) -> tuple[versions.Manifest, list[FileOutcome]]:
    """The manifest with the signature it names (ours, put up first: its row; else the model's
    own; else the one the manifest there names: a manifest only gains)."""
    signature = signing.signatures.get(made.model)
    if signing.signer is not None and signature is not None:
        named = found.signature if found is not None else None
        row, signature = signing.signer.publish(bucket, signature, named, dry_run=dry_run)
        return replace(made, signature=signature.row), [row]
    if made.signature is None and found is not None:
        return replace(made, signature=found.signature), []
    return made, []


def _found(
    bucket: Bucket, uri: str, made: versions.Manifest
) -> tuple[bytes | None, versions.Manifest | None]:
    """What lies at the version's manifest name (read within ``MAX_MANIFEST_BYTES``), and it as
    this very version's manifest: None when it is not one (junk, another model's or version's, a
    manifest whose id is not its files'), then replaced."""
    got = bucket.writer.read(uri, limit=versions.MAX_MANIFEST_BYTES, aged=False)
    if got is None:
        return None, None
    found = versions.parse_manifest(got[0])
    if found is None or _said(found) != _said(made):
        return got[0], None
    return got[0], found


def _said(manifest: versions.Manifest) -> tuple[str, str, set[tuple[str, int, str]]]:
    """What makes a manifest this version's: its model, id and files."""
    return manifest.model, manifest.id, {(f.path, f.size, f.sha256) for f in manifest.files}


def manifest_of(model: LocalModel, locked: LockedModel | None) -> versions.Manifest:
    """The version's manifest as this run makes it: its files (a signature of its own, at the path
    the catalog's signer names or model.sig, named as its signature, not among them), the revision
    and commit from the lock, else the record (each clipped to what a manifest holds)."""
    trust = model.spec.signature
    left_out = trust.installed_as if trust is not None else SIGNATURE_FILE
    pinned = locked or model.record
    files = tuple(
        versions.ManifestFile(f.path, f.size, f.sha256, _clipped(f.source, 8192) or "")
        for f in sorted(model.ready, key=lambda f: f.path)
    )
    kept = tuple(f for f in files if f.path != left_out)
    return versions.Manifest(
        model=model.spec.name,
        id=versions.version_id(((f.path, f.size, f.sha256) for f in kept), signature=left_out),
        files=kept,
        revision=_clipped(pinned.revision if pinned is not None else None, 256),
        commit=_clipped(pinned.commit if pinned is not None else None, 256),
        signature=next((f for f in files if f.path == left_out), None),
    )


def _clipped(text: str | None, most: int) -> str | None:
    """Recorded text (a source, a revision) as a manifest holds it: data, at most ``most``
    characters (a longer one says where it came from all the same)."""
    shown = record_text(text)
    return None if shown is None else shown[:most]


def _put_small(bucket: Bucket, uri: str, data: bytes) -> None:
    """``data`` (a manifest, a model.sig) at ``uri``, uploaded as every file (checksummed,
    marked), over what is there (the caller compared it)."""
    sha256 = hashlib.sha256(data).hexdigest()
    with tempfile.TemporaryDirectory(prefix="mdl-publish-") as folder:
        local = Path(folder, "object")
        local.write_bytes(data)
        bucket.writer.upload(
            uri, local, size=len(data), sha256=sha256, root=bucket.root, overwrite=True
        )


@dataclass(frozen=True)
class LocalModel:
    """A model's publishable files, its record (commit, revision), and the failures that keep it
    back.
    """

    spec: ModelSpec
    record: ModelRecord | None
    ready: tuple[ReadyFile, ...]
    failures: tuple[FileOutcome, ...]

    @property
    def complete(self) -> bool:
        """Whether the model can be published whole: files ready and none failing."""
        return bool(self.ready) and not self.failures


def local_model(
    spec: ModelSpec,
    layout: Layout,
    *,
    pinned: Sequence[ExpectedFile] | None,
    progress: Progress,
    signing: bool = False,
) -> LocalModel:
    """The model's publishable files: those whose size and mtime match their record are trusted
    unread (as ``pull`` does), any other is re-hashed. A model never pulled or not fully installed
    is ``missing`` (exit 4), none of its files offered; other bytes than recorded or pinned are an
    integrity failure (exit 6). ``signing`` (``--sign``): the signature is what this publish makes,
    so the catalog signer's file is not asked of the installed copy when it lacks it
    (``_status``); every other file is held to its record and pin all the same."""
    status = _status(spec, layout, pinned, signing=signing)
    record = status.record
    if record is None or status.status != INSTALLED:
        error = _not_ready(status, layout)
        outcome = failed(spec.name, None, error, dest=status.folder)
        missing = outcome._replace(action="missing")
        return LocalModel(
            spec, record, (), (outcome if isinstance(error, IntegrityError) else missing,)
        )
    expected = (
        {p.path: p.sha256 for p in pinned}
        if pinned is not None
        else {f.save_path: f.sha256 for f in spec.files}
    )
    pinned_by = "catalog.lock" if pinned is not None else "catalog"
    ready: list[ReadyFile] = []
    failures: list[FileOutcome] = []
    for file in status.files:
        want = (expected.get(file.path), pinned_by)
        checked = _checked(spec.name, file, record, want, layout=layout, progress=progress)
        if isinstance(checked, ReadyFile):
            ready.append(checked)
        else:
            failures.append(checked)
    return LocalModel(spec, record, tuple(ready), tuple(failures))


def _status(
    spec: ModelSpec, layout: Layout, pinned: Sequence[ExpectedFile] | None, *, signing: bool
) -> ModelStatus:
    """The model's state; with ``--sign``, without the catalog signer's file when that alone is
    missing: what a lock pins (the version's signature), or what a pull that found no signature
    anywhere still expects (it fetched and checked every other file for this)."""
    status = model_status(spec, layout, pinned=pinned)
    if not signing or spec.signature is None or status.status == INSTALLED:
        return status
    record = status.record
    wanted = pinned
    if wanted is None and record is not None and record.expected is not None:
        wanted = list(record.expected.values())
    path = spec.signature.installed_as
    if wanted is None or path not in {want.path for want in wanted}:
        return status
    return model_status(spec, layout, pinned=[want for want in wanted if want.path != path])


def _checked(
    model: str,
    file: LocalFile,
    record: ModelRecord,
    want: tuple[str | None, str],
    *,
    layout: Layout,
    progress: Progress,
) -> ReadyFile | FileOutcome:
    """One file of an installed model, publishable: trusted unread when its record says so and
    matches ``want`` (the sha256 pinned, and by what), else re-hashed; its failure if not."""
    entry = record.files.get(file.path)
    sha256 = want[0]
    if file.state == INSTALLED and entry is not None and sha256 in (None, entry.sha256):
        return ReadyFile(model, file.path, file.final, entry.size, entry.sha256, entry.source)
    checked = verify_file(layout.records, model, file, record, want, progress)
    if checked.failing or checked.sha256 is None or checked.size is None:
        return checked
    return ReadyFile(model, file.path, file.final, checked.size, checked.sha256, file.source)


def _not_ready(status: ModelStatus, layout: Layout) -> MdlError:
    """Why a model offers no file: never pulled (exit 4), its record damaged (6), or not fully
    installed (4).
    """
    name = status.spec.name
    if status.record is None and layout.records.record_path(name).exists():
        return IntegrityError(
            f"{name}: its record is damaged (the log says how), so no file is trusted",
            hint=f"run `mdl pull {name}`",
        )
    if status.record is None:
        return NotFoundError(
            f"{name}: not on this disk (never pulled into {status.folder or layout.plain.dest})",
            hint=f"run `mdl pull {name}` first",
        )
    files = [
        f"{f.path} ({f.state})" for f in status.files if f.state not in (INSTALLED, MODIFIED_MAYBE)
    ]
    listed = first_few(files)
    return NotFoundError(
        f"{name}: not fully installed ({status.status}):"
        f" {listed or 'no files, or a download is unfinished'}",
        hint=f"run `mdl pull {name}` to finish it, then publish again",
    )
