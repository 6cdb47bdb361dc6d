"""``mdl publish --to oci://REGISTRY/REPOSITORY[:TAG]``: each model's verified local files as a
CNCF ModelPack artifact (one raw layer per file, its digest the file's sha256 and its path the
``org.cncf.model.filepath`` annotation; a ModelPack config; the manifest, put by tag last). A
blob the repository holds is not sent again, one another repository of the registry holds is
mounted, the rest go up in chunks (mdl.sources.ocipush)."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mdl.catalog.settings import Settings
from mdl.catalog.specs import ModelSpec
from mdl.errors import (
    IntegrityError,
    InterruptedByUserError,
    MdlError,
    NotFoundError,
    RegistryReplyError,
    UsageError,
)
from mdl.lockfile.model import LockedModel
from mdl.paths import OciRef, is_model_file_name, parse_oci_ref, parse_oci_source
from mdl.progress import Progress
from mdl.report import FileOutcome, failed
from mdl.signing.statement import SIGNATURE_FILE
from mdl.sources.oci import Registry
from mdl.sources.ocimanifest import (
    CREATED,
    MANIFEST,
    MAX_LAYERS,
    MAX_MANIFEST_BYTES,
    MODELPACK_ARTIFACT,
    MODELPACK_PATH,
    TITLE,
    manifest_digest,
)
from mdl.sources.ocipush import CHUNK_SIZE, MOUNTED, Blob, RegistryWriter
from mdl.store.expected import ExpectedFile
from mdl.store.layout import Layout
from mdl.transfer.http import RetryPolicy, make_client
from mdl.upload._bucket import ReadyFile, _meter
from mdl.upload.ocisign import sign_artifact
from mdl.upload.publisher import (
    LocalModel,
    Published,
    PublishReport,
    Signer,
    _ordered,
    local_model,
    manifest_of,
)

log = logging.getLogger("mdl.publish")
# Internal, for tests only (not a setting: CHUNK_SIZE is what a lost connection may cost again):
# the bytes of a chunk, so that a test can cut a chunked upload of a small file.
CHUNK_VARIABLE = "MDL_INTERNAL_OCI_CHUNK"
DEFAULT_TAG = "latest"  # what `mdl get oci://REG/REPO` reads when no tag is given
MODEL_FIELD = "{model}"
CONFIG = "application/vnd.cncf.model.config.v1+json"
WEIGHT = "application/vnd.cncf.model.weight.v1.raw"
WEIGHT_CONFIG = "application/vnd.cncf.model.weight.config.v1.raw"
DOC = "application/vnd.cncf.model.doc.v1.raw"
CODE = "application/vnd.cncf.model.code.v1.raw"
_DOC_NAMES = ("readme", "license", "licence", "notice", "copying", "authors", "citation")
_DOC_SUFFIXES = (".md", ".rst", ".pdf", ".html", ".adoc")
_CODE_SUFFIXES = (".py", ".ipynb", ".sh", ".js", ".ts", ".c", ".cc", ".cpp", ".cu", ".h", ".go",
                  ".rs", ".java", ".swift", ".kt", ".lua", ".rb")  # fmt: skip


def media_type_of(path: str) -> str:
    """A file's ModelPack raw media type: weights, docs, code, else the weights' config
    (``config.json``, tokenizers, vocabularies)."""
    name = path.rsplit("/", 1)[-1].lower()
    if is_model_file_name(name):
        return WEIGHT
    if name.endswith(_DOC_SUFFIXES) or name.split(".")[0] in _DOC_NAMES:
        return DOC
    return CODE if name.endswith(_CODE_SUFFIXES) else WEIGHT_CONFIG


def repository_of(template: str, model: str, *, where: str = "--to") -> OciRef:
    """The reference a model is published to: ``template`` with ``{model}`` as the model's name
    (``oci://REG/NS/{model}`` → repository ``NS/<model>``), its tag ``latest`` when none is
    given; UsageError (exit 2) naming ``where`` (a digest: a publish names its own)."""
    ref = parse_oci_ref(template.replace(MODEL_FIELD, model), where=f"{where} for {model}")
    if ref.digest is not None:
        raise UsageError(
            f"{where}: {template!r} names a manifest digest; publish writes a new manifest",
            hint="give oci://REGISTRY/REPOSITORY[:TAG]",
        )
    return ref._replace(tag=ref.tag or DEFAULT_TAG)


def check_target(to: str, models: Sequence[str]) -> None:
    """``--to oci://…`` checked for the models asked (UsageError, exit 2): a repository per
    model (``{model}``) unless one model is published."""
    if MODEL_FIELD not in to and len(models) > 1:
        raise UsageError(
            f"--to: {to!r} names one repository for {len(models)} models",
            hint="put {model} in the repository: oci://REGISTRY/NAMESPACE/{model}",
        )
    for model in models:
        repository_of(to, model)


def config_of(model: LocalModel, files: Sequence[ReadyFile], *, id: str) -> bytes:
    """The ModelPack config (``descriptor``, ``modelfs`` over the layers' digests, ``config``):
    the same bytes for the same version, so a re-publish finds it there."""
    record = model.record
    descriptor = {"name": model.spec.name, "version": id[:12]}
    if record is not None and record.commit:
        descriptor["revision"] = record.commit[:256]
    doc = {
        "descriptor": descriptor,
        "modelfs": {"type": "layers", "diffIds": [f"sha256:{f.sha256}" for f in files]},
        "config": {},
    }
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


def created_now() -> str:
    """Now by the publisher's clock, as the RFC 3339 time (UTC, to the millisecond) a manifest
    states: what ``prune --mirror oci://…`` orders versions by."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def manifest_body(config: Blob, files: Sequence[ReadyFile], *, created: str | None) -> bytes:
    """The image manifest of the artifact: the config and one raw layer per file, in path order,
    stating ``created`` (None: no time)."""
    layers: list[dict[str, Any]] = [
        {
            "mediaType": media_type_of(f.path),
            "digest": f"sha256:{f.sha256}",
            "size": f.size,
            "annotations": {MODELPACK_PATH: f.path, TITLE: f.path},
        }
        for f in files
    ]
    doc = {
        "schemaVersion": 2,
        "mediaType": MANIFEST,
        "artifactType": MODELPACK_ARTIFACT,
        "config": {"mediaType": CONFIG, "digest": config.digest, "size": config.size},
        "layers": layers,
    }
    if created is not None:
        doc["annotations"] = {CREATED: created}
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()


@dataclass
class _Plan:
    """A model's artifact as this run makes it, where it goes, and which of its contents the
    repository holds already."""

    model: LocalModel
    writer: RegistryWriter
    version: str  # the version's id (mdl.buckets.versions), as a bucket's publish names it
    files: list[ReadyFile]  # by path
    config: Blob
    body: bytes  # the manifest (stating the time of its first publish, once _manifest has run)
    there: set[str]  # sha256 of the contents the repository holds

    @property
    def ref(self) -> OciRef:
        return self.writer.ref

    @property
    def shown(self) -> str:
        return f"oci://{self.ref.registry}/{self.ref.repository}:{self.ref.tag}"

    @property
    def contents(self) -> dict[str, ReadyFile]:
        """Each distinct content's first file (a second file of the same bytes: the same blob)."""
        first: dict[str, ReadyFile] = {}
        for f in self.files:
            first.setdefault(f.sha256, f)
        return first

    @property
    def missing(self) -> list[ReadyFile]:
        """The contents the repository does not hold: the bytes this publish sends."""
        return [f for f in self.contents.values() if f.sha256 not in self.there]


@dataclass
class _Run:
    """One publish to a registry: its registries, the blobs known in which repository (for
    mounts), and how uploads are told and stopped."""

    registry: Registry
    progress: Progress
    pool: ThreadPoolExecutor
    dry_run: bool
    stop: threading.Event
    chunk_size: int = CHUNK_SIZE
    known: dict[str, str] = field(default_factory=dict)  # sha256 → a repository holding it
    signer: Signer | None = None  # --sign: the version's signature attached as a referrer

    def plan(
        self, model: LocalModel, ref: OciRef, locked: LockedModel | None
    ) -> _Plan | FileOutcome:
        """The model's artifact, its config blob put up (it is small; it also settles the login
        and the push scope before the layers go), and its layers looked up; its failure."""
        name = model.spec.name
        files = sorted(model.ready, key=lambda f: f.path)
        version = manifest_of(model, locked).id
        config = Blob.of(config_of(model, files, id=version))
        body = manifest_body(config, files, created=created_now())
        writer = RegistryWriter(self.registry, ref, chunk_size=self.chunk_size, cancel=self.stop)
        plan = _Plan(model, writer, version, files, config, body, set())
        try:
            if len(files) > MAX_LAYERS or len(body) > MAX_MANIFEST_BYTES:
                raise UsageError(
                    f"{name}: {len(files)} files make a manifest larger than a registry takes"
                    f" (at most {MAX_LAYERS} layers, {MAX_MANIFEST_BYTES >> 20} MiB)"
                )
            what = f"{name}: its ModelPack config"
            if not self.dry_run:
                writer.push_blob(config, what=what)
            contents = list(plan.contents.values())
            found = self.pool.map(
                lambda f: writer.has_blob(f"sha256:{f.sha256}", f.size, what=f"{name}/{f.path}"),
                contents,
            )
            plan.there = {f.sha256 for f, held in zip(contents, list(found), strict=True) if held}
        except MdlError as exc:
            return failed(name, None, exc)._replace(dest=plan.shown)
        self.known.update((sha256, ref.repository) for sha256 in plan.there)
        return plan

    def publish(self, plan: _Plan) -> tuple[list[FileOutcome], list[Published]]:
        """The model's missing blobs, then its manifest by tag (signed: by digest, the signature,
        then the tag); a failure of any keeps the tag where it was."""
        name = plan.model.spec.name
        contents = plan.contents
        done = dict(
            zip(
                contents,
                self.pool.map(lambda f: self._layer(plan, f), contents.values()),
                strict=True,
            )
        )
        outcomes = [
            done[f.sha256] if contents[f.sha256] is f else _twin(done[f.sha256], f, contents)
            for f in plan.files
        ]
        if any(o.action == "failed" for o in outcomes):
            return outcomes, []
        what = f"{name}: its manifest ({plan.shown})"
        try:
            # signed: by its digest first (the signature's subject), the tag moved once it is signed
            action = self._manifest(plan, what=what, tag=None if self.signer else plan.ref.tag)
            if self.signer is not None:
                outcomes.append(self._signed(plan, action, what=what))
        except MdlError as exc:
            return [*outcomes, failed(name, None, exc)._replace(dest=plan.shown)], []
        if outcomes[-1].action == "failed":  # its signature: the tag stays where it was
            return outcomes, []
        manifest = f"{plan.shown}@{manifest_digest(plan.body)}"
        return outcomes, [Published(name, plan.version, manifest, action)]

    def _signed(self, plan: _Plan, action: str, *, what: str) -> FileOutcome:
        """The signature's row, once it is attached to the manifest (pushed by its digest) and the
        tag moved to it: a tag never names a version its signature is not attached to yet, so a
        signature that fails leaves the tag where it was (its row says why)."""
        assert self.signer is not None
        name = plan.model.spec.name
        try:
            row = sign_artifact(
                plan.writer, self.signer, name, plan.files, plan.body, dry_run=self.dry_run
            )
        except MdlError as exc:
            return failed(name, SIGNATURE_FILE, exc)._replace(dest=plan.shown)
        if action == "uploaded":  # (skipped: the tag names this version already)
            plan.writer.push_manifest(plan.body, media_type=MANIFEST, what=what, tag=plan.ref.tag)
        return row

    def _manifest(self, plan: _Plan, *, what: str, tag: str | None) -> str:
        """The manifest by ``tag`` (None: by its digest only), unless the tag names this version's
        already: the same config and layers, whatever time it states (its bytes, and so its time,
        are kept: ``plan.body``)."""
        try:
            digest, there = self.registry.manifest(plan.ref, what=what)
        except (NotFoundError, RegistryReplyError, IntegrityError):  # none, or none mdl reads
            digest, there = "", None
        if there is not None:  # (an index never hashes as this manifest)
            kept = manifest_body(plan.config, plan.files, created=there.annotations.get(CREATED))
            if manifest_digest(kept) == digest:
                plan.body = kept
                return "skip" if self.dry_run else "skipped"
        if self.dry_run:
            return "upload"
        plan.writer.push_manifest(plan.body, media_type=MANIFEST, what=what, tag=tag)
        log.info("%s: written", what)
        return "uploaded"

    def _layer(self, plan: _Plan, f: ReadyFile) -> FileOutcome:
        """One content's blob in the repository: there, mounted, or uploaded (its progress
        told)."""
        label, url = f"{f.model}/{f.path}", plan.ref.blob_url(f"sha256:{f.sha256}")
        if f.sha256 in plan.there:
            return _row(f, url, "skip" if self.dry_run else "skipped", "already in the registry")
        source = self._mount_source(plan.ref, f)
        if self.dry_run:
            why = f"to be mounted from {source}" if source is not None else ""
            return _row(f, url, "skip" if source is not None else "upload", why)
        blob = Blob(f"sha256:{f.sha256}", f.size, path=f.local)
        try:
            action = plan.writer.push_blob(
                blob,
                what=label,
                mount_from=source,
                sent=_meter(self.progress, f, self.stop),
                head=False,
            )
        except MdlError as exc:
            if self.stop.is_set():
                raise
            self.progress.finish(label, ok=False, message=exc.message.removeprefix(f"{label}: "))
            return failed(f.model, f.path, exc)._replace(dest=url)
        self.known[f.sha256] = plan.ref.repository
        if f.size == 0 or action == MOUNTED:  # no bytes went: its row starts here
            self.progress.start(label, label=label, total=f.size, model=f.model, path=f.path)
        self.progress.finish(label, ok=True)
        if action == MOUNTED:
            return _row(f, url, "skipped", f"mounted from {source} (the registry holds it)")
        return _row(f, url, "uploaded", "", fetched=f.size)

    def _mount_source(self, ref: OciRef, f: ReadyFile) -> str | None:
        """A repository of ``ref``'s registry that holds the file's bytes: one this run found
        or put them in, else the one the file was pulled from."""
        if (repository := self.known.get(f.sha256)) is not None:
            return repository
        pulled = parse_oci_source(f.source)
        if pulled is not None and pulled[0].registry == ref.registry:
            return pulled[0].repository
        return None


def _twin(first: FileOutcome, f: ReadyFile, contents: Mapping[str, ReadyFile]) -> FileOutcome:
    """A second file of the same bytes: the same blob, sent once."""
    if first.action == "failed":
        return first._replace(path=f.path)
    why = f"the same blob as {contents[f.sha256].path}"
    return first._replace(path=f.path, action=first.action.replace("uploaded", "skipped"),
                   reason=why, fetched=0)  # fmt: skip


def _row(f: ReadyFile, url: str, action: str, reason: str, *, fetched: int = 0) -> FileOutcome:
    return FileOutcome(
        f.model, f.path, url, f.size, f.sha256, action, reason=reason, fetched=fetched
    )


def publish_to_registry(
    specs: Sequence[ModelSpec],
    settings: Settings,
    target: str,
    *,
    progress: Progress,
    pins: Mapping[str, Sequence[ExpectedFile]],
    locked: Mapping[str, LockedModel],
    dry_run: bool = False,
    sign: Path | None = None,
    force: bool = False,
) -> PublishReport:
    """Publish each model's verified files to ``target`` (``oci://REG/REPO[:TAG]``, ``{model}``
    in it for a repository per model) as a ModelPack artifact: every model's contents looked up
    first, then the missing ones sent, then each model's manifest. ``dry_run``: nothing sent."""
    signer = Signer(sign, force=force) if sign is not None else None  # exit 2 naming the key first
    layout = Layout(settings)
    models = [
        local_model(
            spec, layout, pinned=pins.get(spec.name), progress=progress, signing=signer is not None
        )
        for spec in specs
    ]
    if signer is not None:  # a model.sig of its own is not published beside ours
        models = [signer.without_own(model) for model in models]
    environ = dict(settings.environ or {})
    retry = RetryPolicy(retries=settings.retries, max_time=settings.retry_max_time)
    workers = max(1, min(settings.connections, 8))  # blobs at once
    stop = threading.Event()
    client = make_client(
        pool_size=workers + 2, timeout=settings.timeout, environ=environ, secrets=settings.secrets
    )
    pool = ThreadPoolExecutor(max_workers=workers)
    try:
        registry = Registry(
            client, environ=environ, secrets=settings.secrets, retry=retry, cancel=stop
        )
        chunk_size = int(environ.get(CHUNK_VARIABLE) or CHUNK_SIZE)
        run = _Run(registry, progress, pool, dry_run, stop, chunk_size, signer=signer)
        outcomes, published = _published(run, models, target, locked)
    except KeyboardInterrupt:
        stop.set()
        raise InterruptedByUserError("interrupted while uploading") from None
    finally:
        pool.shutdown(cancel_futures=True)
        client.close()
    ordered = _ordered(outcomes, models)
    return PublishReport(ordered, dry_run=dry_run, target=target, versions=tuple(published))


def _published(
    run: _Run, models: Sequence[LocalModel], target: str, locked: Mapping[str, LockedModel]
) -> tuple[list[FileOutcome], list[Published]]:
    """Every complete model planned (its config up, its layers looked up), the bytes missing
    counted for the progress, then each model's blobs and manifest."""
    outcomes: list[FileOutcome] = [f for model in models for f in model.failures]
    published: list[Published] = []
    plans: list[_Plan] = []
    for model in (m for m in models if m.complete):
        ref = repository_of(target, model.spec.name)
        made = run.plan(model, ref, locked.get(model.spec.name))
        if isinstance(made, _Plan):
            plans.append(made)
        else:
            outcomes.append(made)
    missing = [f for plan in plans for f in plan.missing]
    if not run.dry_run:
        run.progress.begin(total_bytes=sum(f.size for f in missing), files=len(missing))
    for plan in plans:
        rows, version = run.publish(plan)
        outcomes.extend(rows)
        published.extend(version)
    return outcomes, published
