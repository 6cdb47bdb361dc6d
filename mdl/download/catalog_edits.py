"""``mdl add``/``remove``: edit the catalog (mdl.catalog) with the source checked upstream and
catalog.lock kept in step (the new model locked, the removed one dropped)."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from mdl.catalog import edit as catalog_edit
from mdl.catalog import files as catalog_files
from mdl.catalog.load import lock_beside
from mdl.catalog.settings import Settings, settings_for
from mdl.catalog.specs import Catalog, ModelSpec
from mdl.download.lock import lock_catalog
from mdl.download.session import PullSession
from mdl.errors import LocalFSError, MdlError, NotFoundError
from mdl.lockfile.io import exclusive, read_lock
from mdl.lockfile.io import write_lock as write_lock_file
from mdl.lockfile.model import fingerprint
from mdl.paths import home_expanded, is_http_url
from mdl.progress import Progress
from mdl.redact import Secrets, redact_url
from mdl.setting import Overrides, StrPath
from mdl.signing.statement import key_id
from mdl.sources.hubpages import read_hub_pages
from mdl.sources.resolve import kept_in_bucket, resolve_file, resolve_model, signature_spec


def add_model(
    name: str,
    sources: Sequence[str],
    entry: catalog_edit.EntryFields,
    *,
    check: bool,
    catalog: StrPath | None,
    timeout: float | None,
    environ: Mapping[str, str],
    progress: Progress,
    secrets: Secrets | None = None,
) -> catalog_edit.CatalogChange:
    """Add (extend, or with ``entry["force"]`` replace) a model entry; see :func:`mdl.api.add`."""
    asking = _Asking(environ, Overrides(timeout=timeout), secrets or Secrets(), progress)
    name = catalog_edit.check_model_name(name)
    fields = _signer_read(entry)
    path, text, created = catalog_files.catalog_text(catalog, environ, create=True)
    fields["folder"] = path.parent  # what the signature's key is written relative to
    request = _Request(name, _parsed(sources, text, path, asking), fields)
    edit = request.on(text)
    change = _change(path, name, edit, created=created)
    if edit.action == "unchanged":
        return change
    edited = catalog_files.valid(edit.text, path)
    settings = asking.settings(edited)
    fetches = _fetches(text, path, name, edited, updated=edit.action == "updated")
    online = check and not settings.offline and fetches
    if online and edit.action != "updated":
        _check_entry(edited.get(name), settings, added=change.added, progress=progress)
    change, edited = _save(request, change, text=text, edit=edit, edited=edited)
    change = replace(change, checked=online and change.action != "updated")
    if online and fields.get("signed_by") is not None:
        warning = _no_signature_upstream(edited.get(name), settings, progress=progress)
        change = replace(change, warning=warning)
    if not fetches:
        return change
    return _lock_in_step(change, edited, settings, online=online, progress=progress)


@dataclass(frozen=True)
class _Asking:
    """How ``mdl add`` asks upstream: the run's environment, flags and secrets, and its progress."""

    environ: Mapping[str, str]
    overrides: Overrides
    secrets: Secrets
    progress: Progress

    def settings(self, catalog: Catalog) -> Settings:
        return settings_for(catalog, self.environ, self.overrides, secrets=self.secrets)


def _parsed(
    sources: Sequence[str], text: str, path: Path, asking: _Asking
) -> tuple[catalog_edit.AddSource, ...]:
    """The SOURCEs as the catalog takes them: a Hub page URL is added as the hf:// it stands for."""
    if any(is_http_url(source) for source in sources):
        endpoint = asking.settings(catalog_files.valid(text, path)).endpoint
        sources = read_hub_pages(sources, endpoint=endpoint, progress=asking.progress)
    return tuple(catalog_edit.parse_source(source, asking.secrets) for source in sources)


def _change(
    path: Path, name: str, edit: catalog_edit.Edit, *, created: bool
) -> catalog_edit.CatalogChange:
    added = tuple(catalog_edit.save_path(table, where=name) for table in edit.added_files)
    return catalog_edit.CatalogChange(
        path,
        name,
        edit.action,
        edit.entry,
        added=added,
        created=created,
        user_catalog=catalog_files.is_user_catalog(path),
    )


@dataclass(frozen=True)
class _Request:
    """What ``mdl add`` asks of the catalog: made on its text as it is when written."""

    name: str
    sources: tuple[catalog_edit.AddSource, ...]
    fields: catalog_edit.EntryFields

    def on(self, text: str) -> catalog_edit.Edit:
        return catalog_edit.add_entry(text, self.name, self.sources, **self.fields)


def _signer_read(entry: catalog_edit.EntryFields) -> catalog_edit.EntryFields:
    """A copy of the entry with its ``signed_by`` a PEM public key's path, or exit 2 naming it
    before the catalog is read."""
    fields = entry.copy()
    signer = fields.get("signed_by")
    if signer is not None:
        fields["signed_by"] = signer = home_expanded(signer)
        key_id(signer)
    return fields


def _fetches(text: str, path: Path, name: str, edited: Catalog, *, updated: bool) -> bool:
    """Whether the edit changes what the model fetches: a new description or tags alone do not
    (nothing to ask upstream, nothing to lock); a signature does (its file is one of the model's:
    the lock is renewed, the source not asked again)."""
    before = catalog_files.valid(text, path).get(name) if updated else None
    return before is None or fingerprint(before) != fingerprint(edited.get(name))


def _save(
    request: _Request,
    change: catalog_edit.CatalogChange,
    *,
    text: str,
    edit: catalog_edit.Edit,
    edited: Catalog,
) -> tuple[catalog_edit.CatalogChange, Catalog]:
    """Write the edit, made again on the catalog as it is now if another mdl add or remove wrote it
    while this one checked; the change and the catalog as written."""
    path = change.catalog
    if change.created:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise LocalFSError(f"{path}: cannot create its folder: {exc.strerror or exc}") from exc
    with exclusive(path):
        now, created = catalog_files.read_catalog(path, create=True)
        if now != text:  # the same request, made on the catalog as it is now
            edit = request.on(now)
            edited = catalog_files.valid(edit.text, path)
            change = replace(change, action=edit.action, entry=edit.entry, created=created)
        if edit.action != "unchanged":
            catalog_files.write_catalog(path, edit.text, created=created)
    return change, edited


def _lock_in_step(
    change: catalog_edit.CatalogChange,
    edited: Catalog,
    settings: Settings,
    *,
    online: bool,
    progress: Progress,
) -> catalog_edit.CatalogChange:
    """The new model locked in catalog.lock (when there is one), the other entries as they are; a
    failure is the change's error (the catalog stays edited: it is what the user asked for, and
    `mdl lock` can be run again)."""
    lock_file, name = lock_beside(change.catalog), change.model
    if not lock_file.exists():
        return change
    if not online:
        why = "HF_HUB_OFFLINE is set" if settings.offline else "--no-check"
        error = f"{lock_file} was not updated for {name} ({why}); run 'mdl lock {name}'"
        return replace(change, lock_error=error)
    report = lock_catalog(edited, (name,), settings, upgrade=False, progress=progress)
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
    if trust is None or kept_in_bucket(spec, trust):  # (in the team's bucket: found by lock)
        return None
    with contextlib.closing(PullSession(settings, progress=progress)) as session:
        try:
            remote = resolve_file(
                spec.name,
                signature_spec(spec, trust),
                hub=None if trust.file_is_url else session.hub,
                environ=session.environ,
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
    spec: ModelSpec, settings: Settings, *, added: Sequence[str], progress: Progress
) -> None:
    """Raise the error a pull would meet: a whole repo is resolved (an ``include`` that matches
    nothing is found now); each file the edit ``added`` (by save path) is asked about once (a Hub
    file's HEAD also checks ``--sha256``)."""
    with contextlib.closing(PullSession(settings, progress=progress)) as session:
        if spec.is_snapshot:
            resolve_model(spec, hub=session.hub, environ=session.environ)
            return
        for file in [f for f in spec.files if f.save_path in added]:
            hub = session.hub if file.url is None else None
            remote = resolve_file(spec.name, file, hub=hub, environ=session.environ)
            if file.url is not None:
                session.probe(remote)
