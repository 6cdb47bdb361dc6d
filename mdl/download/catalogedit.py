"""``mdl add``/``remove``: the catalog edited in place (validated, atomic), sources checked upstream, lock in step."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from contextlib import closing
from dataclasses import replace
from pathlib import Path
from typing import Any

from mdl.catalog import (
    Catalog,
    FileSpec,
    ModelSpec,
    Settings,
    find_catalog,
    lock_beside,
    parse_catalog,
    parse_source,
    settings_for,
    user_config_dir,
)
from mdl.catalog import edit as catalog_edit
from mdl.download.lock_command import lock_catalog
from mdl.download.session import PullSession
from mdl.errors import CatalogError, LocalFSError, UsageError
from mdl.lockfile import exclusive, read_lock, write_lock
from mdl.paths import url_basename
from mdl.progress import Progress
from mdl.sources import resolve_file, resolve_model
from mdl.store import write_atomic


def add_model(
    name: str,
    sources: Sequence[str],
    entry: Mapping[str, Any],
    *,
    check: bool,
    catalog: str | os.PathLike[str] | None,
    timeout: float | None,
    environ: Mapping[str, str],
    progress: Progress,
) -> catalog_edit.CatalogChange:
    """Add (extend, or with ``entry["force"]`` replace) a model entry; see :func:`mdl.api.add`."""
    name = catalog_edit.check_model_name(name)
    parsed = [parse_source(source) for source in sources]
    path, text, created = _catalog_text(catalog, environ, create=True)
    edit = catalog_edit.add_entry(text, name, parsed, **entry)
    added = tuple(_save_path(table, name) for table in edit.added_files)
    change = catalog_edit.CatalogChange(path, name, edit.action, edit.entry, added=added, created=created)
    if edit.action == "unchanged":
        return change
    edited = _valid(edit.text, path)
    settings = settings_for(edited, environ, dest=None, timeout=timeout)
    online = check and not settings.offline
    if online:
        spec = edited.get(name)
        _check_entry(spec, settings, files=[f for f in spec.files if f.save_path in added], progress=progress)
    if created:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise LocalFSError(f"{path}: cannot create its folder: {exc.strerror or exc}") from exc
    with exclusive(path):  # another mdl add or remove may have written the catalog while this one checked
        now, created = _read(path, create=True)
        if now != text:  # the same request, made on the catalog as it is now
            edit = catalog_edit.add_entry(now, name, parsed, **entry)
            edited = _valid(edit.text, path)
            change = replace(change, action=edit.action, entry=edit.entry, created=created)
        if edit.action != "unchanged":
            _write_catalog(path, edit.text, created=created)
    change = replace(change, checked=online)
    lock_file = lock_beside(path)
    if not lock_file.exists():
        return change
    if not online:
        why = "HF_HUB_OFFLINE is set" if settings.offline else "--no-check"
        return replace(change, lock_error=f"{lock_file} was not updated for {name} ({why}); run 'mdl lock {name}'")
    # The new model locked in catalog.lock, the other entries as they are; a failure is the change's error (the
    # catalog stays edited: it is what the user asked for, and `mdl lock` can be run again).
    report = lock_catalog(edited, (name,), settings, progress=progress)
    if report.failures:
        error = report.failures[0].error or "failed"
        return replace(change, lock_error=f"{report.path} was not updated: {error}", exit_code=report.exit_code)
    return replace(change, lock=report.path)


def remove_model(
    name: str, *, catalog: str | os.PathLike[str] | None, environ: Mapping[str, str]
) -> catalog_edit.CatalogChange:
    """Take a model out of the catalog and its lock; see :func:`mdl.api.remove`."""
    path, _, _ = _catalog_text(catalog, environ, create=False)
    lock_file = lock_beside(path)
    with exclusive(path):  # the catalog and its lock as they are now, edited by nobody else meanwhile
        text, _ = _read(path, create=False)
        old = _valid(text, path).get(name)  # an unknown model: UsageError with a did-you-mean
        edited = catalog_edit.remove_entry(text, name)
        _valid(edited, path)
        lock = read_lock(lock_file)  # a broken lock is refused before the catalog is touched
        _write_catalog(path, edited, created=False)
        change = catalog_edit.CatalogChange(path, old.name, "removed")
        if lock is None or name not in lock.models:
            return change
        write_lock(lock_file, lock.with_models({}, keep=lambda other: other != name))
    return replace(change, lock=lock_file)


def _save_path(table: dict[str, object], name: str) -> str:
    path = next((table[key] for key in ("as", "path") if isinstance(table.get(key), str)), None)
    return str(path) if path is not None else url_basename(str(table.get("url", "")), where=name)


def _catalog_text(
    catalog: str | os.PathLike[str] | None, environ: Mapping[str, str], *, create: bool
) -> tuple[Path, str, bool]:
    """The catalog to edit, its text (without a BOM) and whether it is yet to be created."""
    find = catalog_edit.catalog_to_edit if create else find_catalog  # the one to create, or the one there is
    given = Path(catalog) if catalog is not None else None
    path = find(flag=given, environ=environ, cwd=Path.cwd(), config_dir=user_config_dir())
    if path is None:
        raise UsageError("no catalog found: pass --catalog, set MDL_CATALOG, or put catalog.toml in this folder")
    return (path, *_read(path, create=create))


def _read(path: Path, *, create: bool) -> tuple[str, bool]:
    """The catalog's text (without a BOM), validated, and whether it is yet to be created."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        if create:
            return catalog_edit.NEW_CATALOG, True
        raise CatalogError(f"{path}: catalog not found") from None
    except OSError as exc:
        raise CatalogError(f"{path}: cannot read the catalog: {exc.strerror or exc}") from exc
    try:
        text = data.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as exc:
        raise CatalogError(f"{path}: not valid UTF-8 (TOML files must be UTF-8)") from exc
    _valid(text, path)  # a broken catalog is reported as it is, before any edit
    return text, False


def _valid(text: str, path: Path) -> Catalog:
    return parse_catalog(text, source=str(path), path=path)


def _write_catalog(path: Path, text: str, *, created: bool) -> None:
    """Atomically; through a symlink to the file it points at; keeping the file's permissions and BOM."""
    target = path.resolve() if path.is_symlink() else path
    try:
        if created:
            target.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(target.parent, target, text.encode())
            return
        mode = target.stat().st_mode & 0o7777
        if target.read_bytes().startswith(b"\xef\xbb\xbf"):
            text = "\ufeff" + text
        write_atomic(target.parent, target, text.encode())
        target.chmod(mode)
    except OSError as exc:
        raise LocalFSError(f"{path}: cannot write the catalog: {exc.strerror or exc}") from exc


def _check_entry(spec: ModelSpec, settings: Settings, *, files: Sequence[FileSpec], progress: Progress) -> None:
    """Raise the error a pull would meet: a whole repo is resolved (an ``include`` that matches nothing is found now);
    each of ``files`` is asked about once (a Hub file's HEAD also checks ``--sha256``)."""
    with closing(PullSession(settings, progress=progress)) as session:
        if spec.is_snapshot:
            resolve_model(spec, hub=session.hub, environ=session.environ)
            return
        for file in files:
            hub = session.hub if file.url is None else None
            remote = resolve_file(spec.name, file, hub=hub, environ=session.environ)
            if file.url is not None:
                session.probe(remote)
