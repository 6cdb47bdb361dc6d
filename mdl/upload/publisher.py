"""``mdl publish``: verified local files to the bucket, then per complete model a manifest a re-run
leaves as is, and with ``--sign KEY.pem`` a model.sig made from the sha256 each file was checked by
(nothing is read again)."""

from __future__ import annotations

import hashlib
import json
import logging
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from mdl.buckets import names
from mdl.buckets.registry import store_for
from mdl.catalog.settings import Settings
from mdl.catalog.specs import ModelSpec
from mdl.errors import IntegrityError, MdlError, NotFoundError, UsageError
from mdl.lockfile.model import LockedModel
from mdl.progress import Progress
from mdl.redact import record_text
from mdl.report import FileOutcome, RunReport, failed
from mdl.signing.library import MAX_SIGNATURE_BYTES, public_key_of, sign_digests, verify_signature
from mdl.signing.statement import SIGNATURE_FILE, Trust, skipped_by_signature
from mdl.store.inventory import INSTALLED, MODIFIED_MAYBE, LocalFile, ModelStatus, model_status
from mdl.store.layout import Layout
from mdl.store.records import ExpectedFile, ModelRecord
from mdl.store.verify import verify_file
from mdl.upload._bucket import Bucket, ReadyFile
from mdl.version import __version__

log = logging.getLogger("mdl.publish")
MANIFEST_VERSION = 1
SHOWN = 5  # unfinished files named in the error; a model of thousands says how many more
# What a signature leaves out, as model_signing's own `sign` and `verify` do: itself and the .git*
# files.
LEFT_OUT = (SIGNATURE_FILE,)


@dataclass(frozen=True)
class Signature:
    """A model's model.sig and the digests it signs (path → sha256)."""

    model: str
    digests: dict[str, str]
    data: bytes


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
        ``--force``; without it, UsageError (exit 2), as our signature would replace it in the
        bucket."""
        if SIGNATURE_FILE not in {
            *(f.path for f in model.ready),
            *(f.path for f in model.failures),
        }:
            return model
        if not self.force:
            raise UsageError(
                f"{model.spec.name}/{SIGNATURE_FILE}: the model has a signature of its own (from"
                " its source), which --sign would replace in the bucket",
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

    def sign(self, model: str, files: Sequence[ReadyFile]) -> Signature:
        """The signature over every file published but those a signature leaves out (model.sig,
        ``.git*``).
        """
        digests = {f.path: f.sha256 for f in files if not skipped_by_signature(f.path, LEFT_OUT)}
        return Signature(
            model, digests, sign_digests(digests, private_key=self.key, model_name=model)
        )

    def there(self, bucket: Bucket, signature: Signature) -> Signature | None:
        """The bucket's model.sig when it already signs these digests for this model with this key
        (a re-run then writes nothing): verified with the key, never taken for its looks. Another
        key's, another statement's or a damaged one is None: replaced."""
        uri = bucket.uri(signature.model, SIGNATURE_FILE)
        if (found := bucket.writer.read(uri, limit=MAX_SIGNATURE_BYTES, aged=False)) is None:
            return None
        data = found[0]  # a bigger one is not read: it equals nothing mdl writes
        with tempfile.TemporaryDirectory(prefix="mdl-publish-") as folder:
            public = Path(folder, "key.pub")
            public.write_bytes(self.public_key)
            try:
                signed = verify_signature(data, Trust(key=public), what=bucket.uri(signature.model))
            except IntegrityError:
                return None
        files = {path: f.sha256 for path, f in signed.files.items()}
        same = signed.model_name == signature.model and signed.free and files == signature.digests
        return replace(signature, data=data) if same else None

    def outcome(self, bucket: Bucket, signature: Signature, action: str) -> FileOutcome:
        """The model.sig's row: ``uploaded``, ``skipped`` (already there), or a dry run's
        ``upload``/``skip``.
        """
        data, reason = signature.data, f"signed with {self.key}"
        if action.startswith("skip"):
            reason = "already in the bucket (verified: this key signed these files)"
        return FileOutcome(
            signature.model,
            SIGNATURE_FILE,
            bucket.uri(signature.model, SIGNATURE_FILE),
            len(data),
            hashlib.sha256(data).hexdigest(),
            action,
            reason=reason,
            fetched=len(data) if action == "uploaded" else 0,
        )

    def publish(self, bucket: Bucket, signature: Signature) -> FileOutcome:
        """Put the model.sig at ``<prefix>/<model>/model.sig``, unless the one there already
        signs the same.
        """
        dest = bucket.uri(signature.model, SIGNATURE_FILE)
        try:
            if (kept := self.there(bucket, signature)) is not None:
                return self.outcome(bucket, kept, "skipped")
            _put_small(bucket, dest, signature.data, compare=False)  # there() compared it
        except MdlError as exc:
            return replace(failed(signature.model, SIGNATURE_FILE, exc), dest=dest)
        log.info("%s: signature written to %s", signature.model, dest)
        return self.outcome(bucket, signature, "uploaded")


@dataclass(frozen=True)
class PublishReport(RunReport):
    """What a publish did per file, where to, and the manifests written or found up to date."""

    target: str = ""
    manifests: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {**super().to_json(), "to": self.target, "manifests": list(self.manifests)}


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
    """Publish each model's verified files and, once all of a model's files are there, its manifest,
    and with ``sign`` (an EC private key) then its model.sig. ``dry_run``: say what would go up,
    sending nothing."""
    # before anything: exit 2 naming the key
    signer = Signer(sign, force=force) if sign is not None else None
    layout = Layout(settings)
    models = [
        local_model(spec, layout, pinned=pins.get(spec.name), progress=progress) for spec in specs
    ]
    signing = _Signing.made(signer, models)
    models = signing.models
    bucket = Bucket(
        target, endpoint=endpoint, secrets=settings.secrets, connections=settings.connections
    )
    outcomes, uploads = _compared(bucket, models)
    if dry_run:
        planned = _planned(bucket, outcomes, uploads) + signing.planned(bucket)
        return PublishReport(_ordered(planned, models), dry_run=True, target=target)
    progress.begin(total_bytes=sum(f.size for f in uploads), files=len(uploads))
    if uploads:
        outcomes.extend(bucket.send(uploads, progress=progress))
    manifests: list[str] = []
    for model in models:
        if not model.ready:  # a model with nothing here says nothing about what the bucket holds
            continue
        written = _manifest(bucket, model, outcomes, locked=locked.get(model.spec.name))
        manifests.extend(written)
        if written:  # last: every object it names is there
            outcomes.extend(signing.publish(bucket, model.spec.name))
    return PublishReport(_ordered(outcomes, models), target=target, manifests=tuple(manifests))


def _compared(
    bucket: Bucket, models: Sequence[LocalModel]
) -> tuple[list[FileOutcome], list[ReadyFile]]:
    """Each model's failures and the files the bucket already holds (skipped), and the files to
    send; the bucket missing or denied ends the run (4, 3)."""
    outcomes: list[FileOutcome] = []
    uploads: list[ReadyFile] = []
    for model in models:
        outcomes.extend(model.failures)
        if not model.ready:
            continue
        there = bucket.already_there(model.spec.name, model.ready)
        outcomes += [bucket.outcome(f, "skipped") for f in model.ready if f.path in there]
        uploads += [f for f in model.ready if f.path not in there]
    return outcomes, uploads


def _planned(
    bucket: Bucket, outcomes: Sequence[FileOutcome], uploads: Sequence[ReadyFile]
) -> list[FileOutcome]:
    """A dry run's rows for the files: ``skip`` what is there, ``upload`` the rest."""
    planned = [replace(o, action="skip") if o.action == "skipped" else o for o in outcomes]
    planned += [replace(bucket.outcome(f, "uploaded"), action="upload", fetched=0) for f in uploads]
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
        signatures = {
            m.spec.name: signer.sign(m.spec.name, m.ready)
            for m in models
            if m.ready and not m.failures
        }
        return cls(signer, models, signatures)

    def planned(self, bucket: Bucket) -> list[FileOutcome]:
        """A dry run's rows: each model.sig to ``upload``, or to ``skip`` (already there)."""
        if self.signer is None:
            return []
        rows: list[FileOutcome] = []
        for signature in self.signatures.values():
            kept = self.signer.there(bucket, signature)
            rows.append(
                self.signer.outcome(bucket, kept or signature, "upload" if kept is None else "skip")
            )
        return rows

    def publish(self, bucket: Bucket, model: str) -> list[FileOutcome]:
        """The model's model.sig put in the bucket (its row), when it has one."""
        if self.signer is None or model not in self.signatures:
            return []
        return [self.signer.publish(bucket, self.signatures[model])]


def _ordered(
    outcomes: Sequence[FileOutcome], models: Sequence[LocalModel]
) -> tuple[FileOutcome, ...]:
    """Report order: model by model as asked, a model-wide failure first, then files by path."""
    rank = {model.spec.name: index for index, model in enumerate(models)}
    return tuple(sorted(outcomes, key=lambda o: (rank[o.model], o.path is not None, o.path or "")))


def _manifest(
    bucket: Bucket, model: LocalModel, outcomes: list[FileOutcome], *, locked: LockedModel | None
) -> list[str]:
    """Write the manifest of a model wholly in the bucket, else remove an untrue one; its URI
    when current.
    """
    name = model.spec.name
    uri = names.Manifest(bucket.root, name).uri  # beside the model folders, in none
    try:
        if any(f.failing for f in outcomes if f.model == name):
            # Objects of the model changed in this run but not all are there: an older manifest no
            # longer tells the truth. When nothing was sent (a local file is missing or wrong), the
            # bucket and its manifest stand.
            if _sent(outcomes, name) and bucket.writer.delete(uri):
                log.warning(
                    "%s: not all files are in the bucket; removed its out-of-date manifest %s",
                    name,
                    uri,
                )
            return []
        if _put_small(bucket, uri, manifest_bytes(model, locked)):
            log.info("%s: manifest written to %s", name, uri)
    except MdlError as exc:  # the files are up; the model is not published until its manifest is
        outcomes.append(replace(failed(name, None, exc), dest=uri))
        return []
    return [uri]


def _put_small(bucket: Bucket, uri: str, data: bytes, *, compare: bool = True) -> bool:
    """``data`` (a manifest, a model.sig) at ``uri`` unless the object there is these bytes
    (``compare``), uploaded as every file (checksummed, marked); whether it was."""
    sha256 = hashlib.sha256(data).hexdigest()
    with tempfile.TemporaryDirectory(prefix="mdl-publish-") as folder:
        local = Path(folder, "object")
        local.write_bytes(data)
        if compare and bucket.writer.holds(uri, local, size=len(data), sha256=sha256):
            return False
        bucket.writer.upload(
            uri, local, size=len(data), sha256=sha256, root=bucket.root, overwrite=True
        )
    return True


def _sent(outcomes: Sequence[FileOutcome], model: str) -> bool:
    """Whether this run sent (or tried to send) a file of ``model`` to the bucket."""
    return any(
        f.model == model
        and f.dest is not None
        and store_for(f.dest) is not None
        and f.action in ("uploaded", "failed")
        and f.path is not None
        for f in outcomes
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


def local_model(
    spec: ModelSpec, layout: Layout, *, pinned: Sequence[ExpectedFile] | None, progress: Progress
) -> LocalModel:
    """The model's publishable files: those whose size and mtime match their record are trusted
    unread (as ``pull`` does), any other is re-hashed. A model never pulled or not fully installed
    is ``missing`` (exit 4), none of its files offered; other bytes than recorded or pinned are an
    integrity failure (exit 6)."""
    status = model_status(spec, layout, pinned=pinned)
    record = status.record
    if record is None or status.status != INSTALLED:
        error = _not_ready(status, layout)
        outcome = failed(spec.name, None, error, dest=status.folder)
        missing = replace(outcome, action="missing")
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
    listed = ", ".join(files[:SHOWN]) + (
        f" and {len(files) - SHOWN} more" if len(files) > SHOWN else ""
    )
    return NotFoundError(
        f"{name}: not fully installed ({status.status}):"
        f" {listed or 'no files, or a download is unfinished'}",
        hint=f"run `mdl pull {name}` to finish it, then publish again",
    )


def manifest_bytes(model: LocalModel, locked: LockedModel | None) -> bytes:
    pinned = locked or model.record  # the lock's revision and commit, else the record's
    doc: dict[str, Any] = {
        "version": MANIFEST_VERSION,
        "model": model.spec.name,
        "revision": record_text(pinned.revision if pinned is not None else None),
        "commit": record_text(pinned.commit if pinned is not None else None),
        "files": [
            {"path": f.path, "size": f.size, "sha256": f.sha256, "source": record_text(f.source)}
            for f in sorted(model.ready, key=lambda f: f.path)
        ],
        "published_by": f"mdl {__version__}",
    }
    if locked is not None:
        doc["lock"] = {
            "fingerprint": locked.fingerprint,
            "files": [
                {key: value for key, value in asdict(f).items() if value is not None}
                for f in sorted(locked.files, key=lambda f: f.path)
            ],
        }
    return (json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode("utf-8")
