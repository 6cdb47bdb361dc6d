"""``mdl publish``: verified local files of catalog models → ``<prefix>/<model>/<path>`` in a bucket, then a
manifest per complete model. What the bucket already holds (a SHA-256 the store computed over the object's bytes
matches the file) is skipped, so a re-run after an interruption sends only what is missing."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from mdl.catalog import ModelSpec, Settings
from mdl.errors import InterruptedByUserError, MdlError
from mdl.lockfile import LockedModel
from mdl.progress import Progress
from mdl.report import FileOutcome, RunReport, failed
from mdl.sources import S3Prefix
from mdl.store import Layout, PinnedFile
from mdl.upload.bucket import Bucket, HashingReader, Upload
from mdl.upload.local import LocalModel, ReadyFile, local_model
from mdl.upload.manifest import manifest_bytes, manifest_key

log = logging.getLogger("mdl.publish")
POLL_SECONDS = 0.05  # how often finished uploads are looked for (s3transfer futures have no completion callback)


@dataclass(frozen=True)
class PublishReport(RunReport):
    """What a publish did per file (``uploaded``, ``skipped``, ``failed``, ``missing``), where to, and the
    manifests written or found up to date."""

    target: str = ""
    manifests: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        """``{"ok", "to", "files": [...], "manifests": [...]}``."""
        return {**super().to_json(), "to": self.target, "manifests": list(self.manifests)}


def publish_models(
    specs: Sequence[ModelSpec],
    settings: Settings,
    target: S3Prefix,
    *,
    progress: Progress,
    pins: Mapping[str, Sequence[PinnedFile]],
    locked: Mapping[str, LockedModel],
    endpoint: str | None = None,
) -> PublishReport:
    """Publish each model's verified files and, once all of a model's files are there, its manifest."""
    layout = Layout(settings)
    models = [local_model(spec, layout, pinned=pins.get(spec.name), progress=progress) for spec in specs]
    bucket = Bucket(target, endpoint=endpoint)
    outcomes: dict[tuple[str, str | None], FileOutcome] = {}
    uploads: list[Upload] = []
    for model in models:
        for failure in model.failures:
            outcomes[(failure.model, failure.path)] = failure
        if not model.ready:
            continue
        listed = bucket.listed(model.spec.name)  # the bucket missing or denied ends the run here: exit 4 or 3
        mine = [Upload(f, target.key(f.model, f.path)) for f in model.ready]
        there = bucket.already_there(mine, listed)
        for upload in mine:
            if upload.key in there:
                outcomes[(upload.file.model, upload.file.path)] = _done(target, upload, "skipped")
            else:
                uploads.append(upload)
    _send(bucket, uploads, settings=settings, progress=progress, outcomes=outcomes)
    manifests: list[str] = []
    for model in models:
        if model.ready:  # a model with nothing here says nothing about what the bucket holds
            manifests.extend(_manifest(bucket, model, outcomes, locked=locked.get(model.spec.name)))
    ordered = [outcomes[k] for k in _order(models) if k in outcomes]
    return PublishReport(tuple(ordered), target=target.uri(), manifests=tuple(manifests))


def _send(
    bucket: Bucket,
    uploads: list[Upload],
    *,
    settings: Settings,
    progress: Progress,
    outcomes: dict[tuple[str, str | None], FileOutcome],
) -> None:
    """Upload every file of the batch through one transfer manager (parallel parts and files)."""
    progress.begin(total_bytes=sum(u.file.size for u in uploads), files=len(uploads))
    if not uploads:
        return
    try:
        with bucket.uploader(connections=settings.connections, largest=max(u.file.size for u in uploads)) as manager:
            pending: dict[int, tuple[Upload, Any, HashingReader]] = {}
            try:
                for index, upload in enumerate(uploads):
                    meter = _Meter(progress, upload.file)
                    pending[index] = (upload, *bucket.start(manager, upload, on_bytes=meter.advance))
                while pending:  # each file is closed as soon as it is done, not in submission order
                    done = [index for index, item in pending.items() if item[1].done()]
                    for index in done:
                        _close(bucket, *pending.pop(index), progress=progress, outcomes=outcomes)
                    if not done:
                        time.sleep(POLL_SECONDS)
            finally:
                for _, _, reader in pending.values():  # interrupted: no descriptor is left open
                    reader.close()
    except KeyboardInterrupt:
        # The transfer manager cancelled on its way out, aborting unfinished multipart uploads: what is complete
        # in the bucket stays, and the next run skips it.
        raise InterruptedByUserError(
            "interrupted; files already uploaded are kept, run again to send the rest"
        ) from None


def _close(
    bucket: Bucket,
    upload: Upload,
    future: Any,
    reader: HashingReader,
    *,
    progress: Progress,
    outcomes: dict[tuple[str, str | None], FileOutcome],
) -> None:
    """One file's upload is over: check what was sent, say so, and keep its outcome."""
    f = upload.file
    label = _label(f)
    key = (f.model, f.path)
    try:
        bucket.finish(upload, future, reader)
    except MdlError as exc:
        progress.finish(label, ok=False, message=exc.message.removeprefix(f"{label}: "))
        outcomes[key] = replace(failed(f.model, f.path, exc), dest=bucket.target.uri(f.model, f.path))
        return
    if f.size == 0:  # no bytes, no progress callback: its row starts here
        progress.start(label, label=label, total=0, model=f.model, path=f.path)
    progress.finish(label, ok=True)
    log.info("%s: uploaded to %s", label, bucket.target.uri(f.model, f.path))
    outcomes[key] = _done(bucket.target, upload, "uploaded")


class _Meter:
    """A file's progress: its row starts with its first bytes on the wire (a batch of thousands of files shows
    the ones in flight, not all of them at once); called from the transfer threads."""

    def __init__(self, progress: Progress, file: ReadyFile) -> None:
        self.progress = progress
        self.file = file
        self.label = _label(file)
        self._started = False
        self._lock = threading.Lock()

    def advance(self, nbytes: int) -> None:
        with self._lock:
            if not self._started:
                self._started = True
                f = self.file
                self.progress.start(self.label, label=self.label, total=f.size, model=f.model, path=f.path)
        self.progress.advance(self.label, nbytes)


def _manifest(
    bucket: Bucket,
    model: LocalModel,
    outcomes: dict[tuple[str, str | None], FileOutcome],
    *,
    locked: LockedModel | None,
) -> list[str]:
    """Write the model's manifest when all its files are in the bucket; remove one that no longer tells the
    truth when they are not. The manifest's URI when it is there and current."""
    name = model.spec.name
    key = bucket.target.key(*manifest_key(name))
    uri = f"s3://{bucket.target.bucket}/{key}"
    record = model.record
    body = manifest_bytes(
        name,
        model.ready,
        revision=record.revision if record is not None else None,
        commit=record.commit if record is not None else None,
        locked=locked,
    )
    complete = bool(model.ready) and not any(f.failing for (m, _), f in outcomes.items() if m == name)
    try:
        if not complete:
            # Objects of the model changed in this run but not all are there: an older manifest no longer tells the
            # truth. When nothing was sent (a local file is missing or wrong), the bucket and its manifest stand.
            sent = any(
                f.action in ("uploaded", "failed") and f.path is not None
                for (m, _), f in outcomes.items()
                if m == name and f.dest is not None and f.dest.startswith("s3://")
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
        outcomes.setdefault((name, None), replace(failed(name, None, exc), dest=uri))
        return []
    return [uri]


def _done(target: S3Prefix, upload: Upload, action: str) -> FileOutcome:
    f = upload.file
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


def _label(f: ReadyFile) -> str:
    return f"{f.model}/{f.path}"


def _order(models: Sequence[LocalModel]) -> list[tuple[str, str | None]]:
    """Report order: model by model as asked, a model-wide failure first, then files by path."""
    keys: list[tuple[str, str | None]] = []
    for model in models:
        keys.append((model.spec.name, None))
        paths = sorted({f.path for f in model.ready} | {f.path for f in model.failures if f.path is not None})
        keys.extend((model.spec.name, p) for p in paths)
    return keys
