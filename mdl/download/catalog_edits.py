"""``mdl add``/``remove``: edit the catalog (mdl.catalog) with the source checked upstream and
catalog.lock kept in step (the new model locked, the removed one dropped)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from mdl.catalog import FileSpec, ModelSpec, Settings, lock_beside, settings_for
from mdl.catalog import edit as catalog_edit
from mdl.catalog import files as catalog_files
from mdl.download.lock import lock_catalog
from mdl.download.session import PullSession
from mdl.errors import LocalFSError, MdlError, NotFoundError
from mdl.lockfile import exclusive, fingerprint, read_lock
from mdl.lockfile import write_lock as write_lock_file
from mdl.paths import is_http_url
from mdl.progress import Progress
from mdl.redact import Secrets, redact_url
from mdl.setting import Overrides
from mdl.signing import key_id
from mdl.sources import read_hub_pages, resolve_file, resolve_model, signature_spec

StrPath = str | os.PathLike[str]


def add_model(
    name: str,
    sources: Sequence[str],
    entry: Mapping[str, Any],
    *,
    check: bool,
    catalog: StrPath | None,
    timeout: float | None,
    environ: Mapping[str, str],
    progress: Progress,
    secrets: Secrets | None = None,
) -> catalog_edit.CatalogChange:
    """Add (extend, or with ``entry["force"]`` replace) a model entry; see :func:`mdl.api.add`."""
    secrets = secrets or Secrets()
    name = catalog_edit.check_model_name(name)
    # a PEM public key, or exit 2 naming it before the catalog is read
    if entry.get("signed_by") is not None:
        entry = {**entry, "signed_by": Path(entry["signed_by"]).expanduser()}
        key_id(entry["signed_by"])
    path, text, created = catalog_files.catalog_text(catalog, environ, create=True)
    entry = {**entry, "folder": path.parent}  # what the signature's key is written relative to
    # a Hub page URL is added as the hf:// it stands for
    if any(is_http_url(source) for source in sources):
        valid = catalog_files.valid(text, path)
        endpoint = settings_for(
            valid, environ, Overrides(timeout=timeout), secrets=secrets
        ).endpoint
        sources = read_hub_pages(sources, endpoint=endpoint, progress=progress)
    parsed = [catalog_edit.parse_source(source, secrets) for source in sources]
    edit = catalog_edit.add_entry(text, name, parsed, **entry)
    added = tuple(catalog_edit.save_path(table, where=name) for table in edit.added_files)
    user_catalog = catalog_files.is_user_catalog(path)
    change = catalog_edit.CatalogChange(
        path, name, edit.action, edit.entry, added=added, created=created, user_catalog=user_catalog
    )
    if edit.action == "unchanged":
        return change
    edited = catalog_files.valid(edit.text, path)
    settings = settings_for(edited, environ, Overrides(timeout=timeout), secrets=secrets)
    # a new description or tags alone change nothing to fetch: nothing to ask upstream, nothing to
    # lock; a signature does (its file is one of the model's): the lock is renewed, the source not
    # asked again
    before = catalog_files.valid(text, path).get(name) if edit.action == "updated" else None
    fetches = before is None or fingerprint(before) != fingerprint(edited.get(name))
    online = check and not settings.offline and fetches
    if online and edit.action != "updated":
        spec = edited.get(name)
        _check_entry(
            spec, settings, files=[f for f in spec.files if f.save_path in added], progress=progress
        )
    if created:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise LocalFSError(f"{path}: cannot create its folder: {exc.strerror or exc}") from exc
    # another mdl add or remove may have written the catalog while this one checked
    with exclusive(path):
        now, created = catalog_files.read_catalog(path, create=True)
        if now != text:  # the same request, made on the catalog as it is now
            edit = catalog_edit.add_entry(now, name, parsed, **entry)
            edited = catalog_files.valid(edit.text, path)
            change = replace(change, action=edit.action, entry=edit.entry, created=created)
        if edit.action != "unchanged":
            catalog_files.write_catalog(path, edit.text, created=created)
    change = replace(change, checked=online and edit.action != "updated")
    if online and entry.get("signed_by") is not None:
        change = replace(
            change, warning=_no_signature_upstream(edited.get(name), settings, progress=progress)
        )
    lock_file = lock_beside(path)
    if not lock_file.exists() or not fetches:
        return change
    if not online:
        why = "HF_HUB_OFFLINE is set" if settings.offline else "--no-check"
        return replace(
            change,
            lock_error=f"{lock_file} was not updated for {name} ({why}); run 'mdl lock {name}'",
        )
    # The new model locked in catalog.lock, the other entries as they are; a failure is the change's
    # error (the catalog stays edited: it is what the user asked for, and `mdl lock` can be run
    # again).
    report = lock_catalog(edited, (name,), settings, upgrade=False, check=False, progress=progress)
    if report.failures:
        error = report.failures[0].error or "failed"
        return replace(
            change, lock_error=f"{report.path} was not updated: {error}", exit_code=report.exit_code
        )
    return replace(change, lock=report.path)


def remove_model(
    name: str, *, catalog: StrPath | None, environ: Mapping[str, str], dry_run: bool = False
) -> catalog_edit.CatalogChange:
    """Take a model out of the catalog and its lock (``dry_run``: check it could, write nothing);
    see :func:`mdl.api.remove`."""
    path, _, _ = catalog_files.catalog_text(catalog, environ, create=False)
    lock_file = lock_beside(path)
    # the catalog and its lock as they are now, edited by nobody else meanwhile
    with exclusive(path):
        text, _ = catalog_files.read_catalog(path, create=False)
        # an unknown model: UsageError with a did-you-mean
        old = catalog_files.valid(text, path).get(name)
        edited = catalog_edit.remove_entry(text, name)
        catalog_files.valid(edited, path)
        lock = read_lock(lock_file)  # a broken lock is refused before the catalog is touched
        if not dry_run:
            catalog_files.write_catalog(path, edited, created=False)
        user_catalog = catalog_files.is_user_catalog(path)
        if lock is None or name not in lock.models:
            return catalog_edit.CatalogChange(path, old.name, "removed", user_catalog=user_catalog)
        if not dry_run:
            write_lock_file(lock_file, lock.with_models({}, keep=lambda other: other != name))
    return catalog_edit.CatalogChange(
        path, old.name, "removed", lock=lock_file, user_catalog=user_catalog
    )


def _no_signature_upstream(
    spec: ModelSpec, settings: Settings, *, progress: Progress
) -> str | None:
    """Why a pull of ``spec`` will find no signature at its source (one HEAD request), or None: it
    is there, or it could not be asked (the pull will say). Said as a warning: a publisher may sign
    later, a mirror may have one."""
    trust = spec.signature
    if trust is None:
        return None
    with contextlib.closing(PullSession(settings, progress=progress)) as session:
        try:
            hub = None if trust.file_is_url else session.hub
            remote = resolve_file(
                spec.name, signature_spec(spec, trust), hub=hub, environ=session.environ
            )
            if trust.file_is_url:
                session.probe(remote)
        except NotFoundError:
            repo = spec.repo or spec.files[0].repo
            where = (
                f"no signature at {redact_url(trust.file)}"
                if trust.file_is_url
                else f"{repo} has no {trust.file}"
            )
            return (
                f"{spec.name}: {where}: `mdl pull {spec.name}` fails (exit 6) until the model is"
                " signed there (model_signing sign), or a mirror has its model.sig (mdl publish"
                " --sign)"
            )
        except MdlError:
            return None
    return None


def _check_entry(
    spec: ModelSpec, settings: Settings, *, files: Sequence[FileSpec], progress: Progress
) -> None:
    """Raise the error a pull would meet: a whole repo is resolved (an ``include`` that matches
    nothing is found now); each of ``files`` is asked about once (a Hub file's HEAD also checks
    ``--sha256``)."""
    with contextlib.closing(PullSession(settings, progress=progress)) as session:
        if spec.is_snapshot:
            resolve_model(spec, hub=session.hub, environ=session.environ)
            return
        for file in files:
            hub = session.hub if file.url is None else None
            remote = resolve_file(spec.name, file, hub=hub, environ=session.environ)
            if file.url is not None:
                session.probe(remote)
