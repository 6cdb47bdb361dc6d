"""Style-preserving edits of catalog.toml for ``mdl add`` and ``mdl remove``: only the entry asked about changes;
every other byte — comments, blank lines, order, quoting, line endings — stays as the user wrote it.

The text is edited in place, statement by statement (:mod:`mdl.catalog.tomltext`): a new model goes after the
last one, a file is appended inside the entry's ``files = [ … ]`` (or as one more ``[[models.NAME.files]]``
table), a removed entry takes its own comments with it but not the comment above the next entry. Layouts that
cannot be spliced that way (``models = { … }`` in one inline table) are edited with tomlkit, which keeps comments
and formatting where tomllib and tomli-w drop them.
Every result is read back and must mean exactly the intended document, or nothing is written.
"""

from __future__ import annotations

import copy
import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from mdl.catalog.addsource import (
    AddSource,
    canonical_file,
    canonical_snapshot,
    file_table,
    save_path,
    snapshot_table,
)
from mdl.catalog.keys import did_you_mean, format_path
from mdl.catalog.load import expand_home, find_catalog
from mdl.catalog.splice import append_file_tables, append_files, cut, entry_text, insert_entry, owns
from mdl.catalog.tomltext import Statement, scan
from mdl.errors import MdlError, UsageError

Action = Literal["added", "extended", "replaced", "unchanged"]
SOURCE_KEYS = ("repo", "repo_type", "revision", "include", "exclude", "files")
_NAME_RE = re.compile(r"[A-Za-z0-9._-]+")
MAX_MODEL_NAME = 200  # as the schema says (mdl.catalog.schema); checked here before pydantic is loaded
NEW_CATALOG = (
    "# catalog.toml: the models mdl pulls (`mdl pull --all`). Edit it by hand or with `mdl add` / `mdl remove`;\n"
    "# see `mdl add --help`.\n"
)


@dataclass(frozen=True)
class CatalogChange:
    """What ``mdl add`` or ``mdl remove`` did to the catalog (and its lock), for the CLI and ``--json``."""

    catalog: Path
    model: str
    action: Literal["added", "extended", "replaced", "unchanged", "removed"]
    entry: dict[str, Any] = field(default_factory=dict)  # the model's entry as now written ({} when removed)
    added: tuple[str, ...] = ()  # save paths of the files this edit put in
    created: bool = False  # the catalog file did not exist before
    checked: bool = False  # its sources were asked about upstream
    lock: Path | None = None  # catalog.lock, when one was updated
    lock_error: str | None = None  # why catalog.lock could not be updated (the catalog was)
    lock_exit_code: int = 0  # that failure's exit code (0: a warning, as when offline)

    @property
    def exit_code(self) -> int:
        """0, or the code of the lock update that failed after the catalog was written."""
        return self.lock_exit_code

    def to_json(self) -> dict[str, Any]:
        """``{"ok", "catalog", "model", "action", "entry", "created", "checked", "lock"}`` (signed URLs redacted)."""
        from mdl.redact import redact_url

        def shown(value: Any) -> Any:
            if isinstance(value, dict):
                return {k: redact_url(v) if k == "url" else shown(v) for k, v in value.items()}
            if isinstance(value, list):
                return [shown(v) for v in value]
            return value

        return {
            "ok": self.exit_code == 0,
            "catalog": str(self.catalog),
            "model": self.model,
            "action": self.action,
            "entry": shown(self.entry),
            "added": list(self.added),
            "created": self.created,
            "checked": self.checked,
            "lock": str(self.lock) if self.lock is not None else None,
            "lock_error": self.lock_error,
        }


def catalog_to_edit(*, flag: Path | None, environ: Mapping[str, str], cwd: Path, config_dir: Path) -> Path:
    """The catalog ``mdl add`` edits: the one mdl would read (--catalog, $MDL_CATALOG, ./catalog.toml, the user
    config one), or, when there is none yet, the one to create: --catalog, else $MDL_CATALOG, else ./catalog.toml."""
    env_value = environ.get("MDL_CATALOG", "")
    for given in (flag, Path(env_value) if env_value else None):
        if given is not None:
            candidate = expand_home(given, environ)
            return candidate if candidate.is_absolute() else cwd / candidate
    return find_catalog(flag=None, environ=environ, cwd=cwd, config_dir=config_dir) or cwd / "catalog.toml"


def check_model_name(name: str) -> str:
    """A model name as the catalog allows it (it becomes a folder name); UsageError otherwise."""
    if not _NAME_RE.fullmatch(name) or name.startswith(".") or len(name) > MAX_MODEL_NAME:
        raise UsageError(
            f"{name!r}: model names use letters, digits, '.', '_' and '-', do not start with '.', "
            f"and are at most {MAX_MODEL_NAME} characters"
        )
    return name


@dataclass(frozen=True)
class Edit:
    """The catalog text after an edit, what happened to the model, and its entry as now written."""

    text: str
    action: Action
    entry: dict[str, Any]
    added_files: tuple[dict[str, Any], ...] = ()  # the ``files`` entries this edit put in (to check upstream)


def add_entry(
    text: str,
    name: str,
    sources: Sequence[AddSource],
    *,
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    save_as: str | None = None,
    sha256: str | None = None,
    force: bool = False,
) -> Edit:
    """Add model ``name`` (or extend or, with ``force``, replace it) in valid catalog ``text``; UsageError for a
    request that contradicts the entry already there."""
    document = tomllib.loads(text)
    old = document.get("models", {}).get(name)
    entry, action, added = _plan(name, old, sources, include, exclude, save_as, sha256, force=force)
    if action == "unchanged":
        return Edit(text, action, entry)
    expected = copy.deepcopy(document)
    expected.setdefault("models", {})[name] = entry
    statements = scan(text)
    edited = _spliced(text, statements, name, entry, old, action)
    if edited is None or _reads(edited) != expected:
        edited = _with_tomlkit(text, name, entry)
    if _reads(edited) != expected:
        raise MdlError(f"could not edit the catalog safely for {name!r}; nothing was written")
    return Edit(edited, action, entry, tuple(added))


def remove_entry(text: str, name: str) -> str:
    """``text`` without model ``name`` (and the comments written on it); UsageError with a did-you-mean when the
    catalog has no such model."""
    document = tomllib.loads(text)
    models = document.get("models", {})
    if name not in models:
        raise UsageError(
            f"unknown model {name!r}{did_you_mean(name, list(models))}", hint="run 'mdl list' to see the models"
        )
    expected = copy.deepcopy(document)
    del expected["models"][name]
    if not expected["models"] and "models" not in _root_keys(text):
        del expected["models"]  # [models.x] headers made the table; with the last one gone, so is it
    edited = cut(text, scan(text), name)
    if _reads(edited) != expected:
        edited = _without_tomlkit(text, name)
    if _reads(edited) not in (expected, {**expected, "models": {}}):
        raise MdlError(f"could not edit the catalog safely to remove {name!r}; nothing was written")
    return edited


# -- what the entry becomes ------------------------------------------------------------------------------------


def _plan(
    name: str,
    old: dict[str, Any] | None,
    sources: Sequence[AddSource],
    include: Sequence[str],
    exclude: Sequence[str],
    save_as: str | None,
    sha256: str | None,
    *,
    force: bool,
) -> tuple[dict[str, Any], Action, list[dict[str, Any]]]:
    key = format_path(("models", name))
    snapshots = [s for s in sources if s.is_snapshot]
    if not sources:
        raise UsageError("add: give at least one SOURCE (hf://owner/name[@rev][/path] or an https:// URL)")
    if snapshots and len(sources) > 1:
        raise UsageError("add: a whole repo is one SOURCE on its own; to list files, give hf://owner/name/path ones")
    if not snapshots and (include or exclude):
        raise UsageError("--include and --exclude filter a whole repo (hf://owner/name), not single files")
    if snapshots and (save_as or sha256):
        raise UsageError("--as and --sha256 are for one file (hf://owner/name/path or a URL), not a whole repo")
    if len(sources) > 1 and (save_as or sha256):
        raise UsageError("--as and --sha256 apply to a single SOURCE; add the files one at a time")
    kept = {k: v for k, v in (old or {}).items() if k not in SOURCE_KEYS}
    if snapshots:
        table = snapshot_table(snapshots[0], include=include, exclude=exclude)
        if old is None:
            return table, "added", []
        if "repo" in old and canonical_snapshot(old) == canonical_snapshot(table):
            return old, "unchanged", []
        if not force:
            now = f"a whole-repo snapshot of {old['repo']}" if "repo" in old else f"{len(old.get('files', []))} files"
            raise UsageError(
                f"{key} is already {now}; pass --force to replace it with {snapshots[0].given}",
                hint="its description and tags are kept",
            )
        return {**kept, **table}, "replaced", []
    new = [file_table(s, save_as=save_as, sha256=sha256) for s in sources]
    if old is None:
        return {"files": new}, "added", new
    if "files" not in old:
        if not force:
            raise UsageError(
                f"{key} is a whole-repo snapshot of {old.get('repo')}; files cannot be added to it",
                hint="use another model name, or pass --force to replace the entry with these files",
            )
        return {**kept, "files": new}, "replaced", new
    files = list(old["files"])
    added: list[dict[str, Any]] = []
    replaced = False
    for table in new:
        target = save_path(table, where=key)
        index = next((i for i, f in enumerate(files) if save_path(f, where=key) == target), None)
        if index is None:
            files.append(table)
            added.append(table)
        elif canonical_file(files[index]) != canonical_file(table):
            if not force:
                raise UsageError(
                    f"{key}.files[{index}] already saves to {target!r}",
                    hint="pass --as to save this file under another path, or --force to replace that one",
                )
            files[index], replaced = table, True
            added.append(table)
    if not added:
        return old, "unchanged", []
    action: Action = "replaced" if replaced else "extended"
    return {**old, "files": files}, action, added


# -- text splicing ---------------------------------------------------------------------------------------------


def _spliced(
    text: str, statements: list[Statement], name: str, entry: dict[str, Any], old: Any, action: Action
) -> str | None:
    """The edit made in the text itself, or None when this layout needs tomlkit."""
    newline = "\r\n" if "\r\n" in text else "\n"
    if _inline_models(statements):
        return None
    if action == "added":
        return insert_entry(text, statements, entry_text(name, entry, newline), newline)
    owned = [s for s in statements if owns(s, name)]
    headed = any(s.kind == "header" and s.path == ("models", name) for s in owned)
    files = [s for s in owned if s.kind == "value" and s.path == ("models", name, "files")]
    if action == "extended" and headed and files:
        return append_files(text, files[0], entry["files"][len(old["files"]) :], newline)
    if action == "extended":  # [[models.NAME.files]] tables: one more table each, every comment kept
        tables = append_file_tables(text, statements, name, entry["files"][len(old["files"]) :], newline)
        if tables is not None:
            return tables
    if owned[0].kind == "value":  # an inline or dotted entry: the new table goes after the last model
        rest = cut(text, statements, name)
        return insert_entry(rest, scan(rest), entry_text(name, entry, newline), newline)
    rest = cut(text, statements, name, tidy=False)  # its comments above stay; the table is written anew
    at = owned[0].start
    return text[:at] + entry_text(name, entry, newline) + rest[at:]


def _inline_models(statements: list[Statement]) -> bool:
    """``models = { … }`` (or ``[x]`` … no: a root value naming the whole models table)."""
    return any(s.kind == "value" and s.path == ("models",) for s in statements)


def _root_keys(text: str) -> set[str]:
    return {s.path[0] for s in scan(text) if s.kind in ("header", "array", "value") and len(s.path) == 1}


# -- tomlkit, for the layouts the splicer leaves alone ---------------------------------------------------------


def _with_tomlkit(text: str, name: str, entry: dict[str, Any]) -> str:
    import tomlkit

    document = tomlkit.parse(text)
    models = document.get("models")
    if models is None:
        document["models"] = tomlkit.table(is_super_table=True)
        models = document["models"]
    models[name] = entry
    return tomlkit.dumps(document)


def _without_tomlkit(text: str, name: str) -> str:
    import tomlkit

    document = tomlkit.parse(text)
    del document["models"][name]
    return tomlkit.dumps(document)


def _reads(text: str) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        return {"<invalid>": True}
