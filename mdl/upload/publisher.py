"""``mdl publish``: verified local files → ``<prefix>/<model>/<path>``, skipping objects whose store-computed
SHA-256 matches, then per complete model a deterministic manifest ``<prefix>/.mdl/<model>.json`` (sorted, no
timestamps: a re-run that changes nothing writes nothing) naming the commit and each file's size and sha256."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

from mdl.catalog import ModelSpec, Settings
from mdl.errors import IntegrityError, InterruptedByUserError, MdlError, NotFoundError
from mdl.lockfile import LockedModel
from mdl.progress import Progress
from mdl.redact import record_text
from mdl.report import FileOutcome, RunReport, failed
from mdl.sources import S3Prefix
from mdl.store import (
    INSTALLED,
    MODIFIED_MAYBE,
    ExpectedFile,
    Layout,
    ModelRecord,
    ModelStatus,
    model_status,
    verify_file,
)
from mdl.upload.bucket import Bucket, HashingReader, ReadyFile
from mdl.version import __version__

log = logging.getLogger("mdl.publish")
POLL_SECONDS = 0.05  # how often finished uploads are looked for (s3transfer futures have no completion callback)
MANIFEST_VERSION = 1
MANIFEST_FOLDER = ".mdl"  # beside the model folders, as <dest>/.mdl/ is on disk: no model folder holds it
SHOWN = 5  # unfinished files named in the error; a model of thousands says how many more


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
    target: S3Prefix,
    *,
    progress: Progress,
    pins: Mapping[str, Sequence[ExpectedFile]],
    locked: Mapping[str, LockedModel],
    endpoint: str | None = None,
) -> PublishReport:
    """Publish each model's verified files and, once all of a model's files are there, its manifest."""
    layout = Layout(settings)
    models = [local_model(spec, layout, pinned=pins.get(spec.name), progress=progress) for spec in specs]
    bucket = Bucket(target, endpoint=endpoint)
    outcomes: list[FileOutcome] = []
    uploads: list[ReadyFile] = []
    for model in models:
        outcomes.extend(model.failures)
        if not model.ready:
            continue
        listed = bucket.listed(model.spec.name)  # the bucket missing or denied ends the run here: exit 4 or 3
        there = bucket.already_there(model.ready, listed)
        for f in model.ready:
            if f.path in there:
                outcomes.append(_done(target, f, "skipped"))
            else:
                uploads.append(f)
    outcomes.extend(_send(bucket, uploads, settings=settings, progress=progress))
    manifests: list[str] = []
    for model in models:
        if model.ready:  # a model with nothing here says nothing about what the bucket holds
            manifests.extend(_manifest(bucket, model, outcomes, locked=locked.get(model.spec.name)))
    # Report order: model by model as asked, a model-wide failure first, then files by path.
    rank = {model.spec.name: index for index, model in enumerate(models)}
    ordered = sorted(outcomes, key=lambda o: (rank[o.model], o.path is not None, o.path or ""))
    return PublishReport(tuple(ordered), target=target.uri(), manifests=tuple(manifests))


def _send(bucket: Bucket, uploads: list[ReadyFile], *, settings: Settings, progress: Progress) -> list[FileOutcome]:
    progress.begin(total_bytes=sum(f.size for f in uploads), files=len(uploads))
    outcomes: list[FileOutcome] = []
    if not uploads:
        return outcomes
    try:
        with bucket.uploader(connections=settings.connections, largest=max(f.size for f in uploads)) as manager:
            pending: dict[int, tuple[ReadyFile, Any, HashingReader]] = {}
            try:
                for index, f in enumerate(uploads):
                    pending[index] = (f, *bucket.start(manager, f, on_bytes=_meter(progress, f)))
                while pending:  # each file is closed as soon as it is done, not in submission order
                    done = [index for index, item in pending.items() if item[1].done()]
                    for index in done:
                        outcomes.append(_close(bucket, *pending.pop(index), progress=progress))
                    if not done:
                        time.sleep(POLL_SECONDS)
            finally:
                for _, _, reader in pending.values():  # interrupted: no descriptor is left open
                    reader.close()
    except KeyboardInterrupt:
        # The transfer manager cancelled, aborting unfinished multipart uploads: complete objects stay, to be skipped.
        raise InterruptedByUserError(
            "interrupted; files already uploaded are kept, run again to send the rest"
        ) from None
    return outcomes


def _close(bucket: Bucket, f: ReadyFile, future: Any, reader: HashingReader, *, progress: Progress) -> FileOutcome:
    label = f"{f.model}/{f.path}"
    try:
        bucket.finish(f, future, reader)
    except MdlError as exc:
        progress.finish(label, ok=False, message=exc.message.removeprefix(f"{label}: "))
        return replace(failed(f.model, f.path, exc), dest=bucket.target.uri(f.model, f.path))
    if f.size == 0:  # no bytes, no progress callback: its row starts here
        progress.start(label, label=label, total=0, model=f.model, path=f.path)
    progress.finish(label, ok=True)
    log.info("%s: uploaded to %s", label, bucket.target.uri(f.model, f.path))
    return _done(bucket.target, f, "uploaded")


def _meter(progress: Progress, f: ReadyFile) -> Callable[[int], None]:
    """A file's progress from the transfer threads: its row starts with its first bytes on the wire."""
    label, lock, started = f"{f.model}/{f.path}", threading.Lock(), threading.Event()

    def advance(nbytes: int) -> None:
        with lock:
            if not started.is_set():
                started.set()
                progress.start(label, label=label, total=f.size, model=f.model, path=f.path)
        progress.advance(label, nbytes)

    return advance


def _manifest(
    bucket: Bucket,
    model: LocalModel,
    outcomes: list[FileOutcome],
    *,
    locked: LockedModel | None,
) -> list[str]:
    """Write the manifest of a model wholly in the bucket, else remove an untrue one; its URI when current."""
    name = model.spec.name
    key = bucket.target.key(MANIFEST_FOLDER, f"{name}.json")
    uri = f"s3://{bucket.target.bucket}/{key}"
    body = manifest_bytes(model, locked)
    complete = bool(model.ready) and not any(f.failing for f in outcomes if f.model == name)
    try:
        if not complete:
            # Objects of the model changed in this run but not all are there: an older manifest no longer tells the
            # truth. When nothing was sent (a local file is missing or wrong), the bucket and its manifest stand.
            sent = any(
                f.action in ("uploaded", "failed") and f.path is not None
                for f in outcomes
                if f.model == name and f.dest is not None and f.dest.startswith("s3://")
            )
            if sent and bucket.read_small(key) is not None:
                log.warning("%s: not all files are in the bucket; removing its out-of-date manifest %s", name, uri)
                bucket.delete(key)
            return []
        current = bucket.read_small(key)
        if current != body:
            bucket.put_small(key, body, content_type="application/json")
            log.info("%s: manifest written to %s", name, uri)
    except MdlError as exc:  # the files are up; the model is not published until its manifest is
        outcomes.append(replace(failed(name, None, exc), dest=uri))
        return []
    return [uri]


def _done(target: S3Prefix, f: ReadyFile, action: str) -> FileOutcome:
    return FileOutcome(
        model=f.model,
        path=f.path,
        dest=target.uri(f.model, f.path),
        size=f.size,
        sha256=f.sha256,
        action=action,
        reason="already in the bucket (the store's SHA-256 checksum matches)" if action == "skipped" else "",
        fetched=f.size if action == "uploaded" else 0,
    )


@dataclass(frozen=True)
class LocalModel:
    """A model's publishable files, its record (commit, revision), and the failures that keep it back."""

    spec: ModelSpec
    record: ModelRecord | None
    ready: tuple[ReadyFile, ...]
    failures: tuple[FileOutcome, ...]


def local_model(
    spec: ModelSpec, layout: Layout, *, pinned: Sequence[ExpectedFile] | None, progress: Progress
) -> LocalModel:
    """The model's publishable files: those whose size and mtime match their record are trusted unread (as
    ``pull`` does), any other is re-hashed. A model never pulled or not fully installed is ``missing`` (exit 4),
    none of its files offered; other bytes than recorded or pinned are an integrity failure (exit 6)."""
    status = model_status(spec, layout, pinned=pinned)
    record = status.record
    if record is None or status.status != INSTALLED:
        error = _not_ready(status, layout)
        outcome = failed(spec.name, None, error, dest=status.folder)
        missing = replace(outcome, action="missing")
        return LocalModel(spec, record, (), (outcome if isinstance(error, IntegrityError) else missing,))
    expected = {p.path: p.sha256 for p in pinned} if pinned is not None else {f.save_path: f.sha256 for f in spec.files}
    pinned_by = "catalog.lock" if pinned is not None else "catalog"
    ready: list[ReadyFile] = []
    failures: list[FileOutcome] = []
    for file in status.files:
        entry = record.files.get(file.path)
        want = expected.get(file.path)
        if file.state == INSTALLED and entry is not None and (want is None or want == entry.sha256):
            ready.append(ReadyFile(spec.name, file.path, file.final, entry.size, entry.sha256, entry.source))
            continue
        checked = verify_file(layout.records, spec.name, file, record, (want, pinned_by), progress)
        if checked.failing or checked.sha256 is None or checked.size is None:
            failures.append(checked)
            continue
        ready.append(ReadyFile(spec.name, file.path, file.final, checked.size, checked.sha256, file.source))
    return LocalModel(spec, record, tuple(ready), tuple(failures))


def _not_ready(status: ModelStatus, layout: Layout) -> MdlError:
    """Why a model offers no file: never pulled (exit 4), its record damaged (6), or not fully installed (4)."""
    name = status.spec.name
    if status.record is None and layout.records.record_path(name).exists():
        return IntegrityError(
            f"{name}: its record is damaged (the log says how), so no file is trusted", hint=f"run `mdl pull {name}`"
        )
    if status.record is None:
        return NotFoundError(
            f"{name}: not on this disk (never pulled into {status.folder or layout.plain.dest})",
            hint=f"run `mdl pull {name}` first",
        )
    files = [f"{f.path} ({f.state})" for f in status.files if f.state not in (INSTALLED, MODIFIED_MAYBE)]
    listed = ", ".join(files[:SHOWN]) + (f" and {len(files) - SHOWN} more" if len(files) > SHOWN else "")
    return NotFoundError(
        f"{name}: not fully installed ({status.status}): {listed or 'no files, or a download is unfinished'}",
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
