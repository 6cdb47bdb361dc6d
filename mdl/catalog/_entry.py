"""What ``mdl add`` makes of a catalog entry, before a byte is written: its SOURCEs turned into the
model's table (added, extended, replaced, or unchanged), and the description, tags and signer it
takes."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from mdl.catalog._lines import format_path
from mdl.catalog.specs import FileSpec
from mdl.errors import UsageError
from mdl.paths import SHA256_HEX, HfUri, home_expanded, safe_relative_path

Toml = dict[str, Any]  # a TOML table as tomllib reads it (an entry, a file, a signature)
Action = Literal["added", "extended", "replaced", "updated", "unchanged"]
# one SOURCE of mdl add: a whole Hub repo or one file in one, or a direct URL
AddSource = HfUri | str
SOURCE_KEYS = ("repo", "repo_type", "revision", "include", "exclude", "files")
# what --description and --tag set: never part of what the entry fetches
META_KEYS = ("description", "tags")
# What an entry (or its Hub file) says when it does not say: left out of what add writes, filled in
# to compare. Never changed: the canonical forms built from it share its lists.
DEFAULTS: Toml = {"repo_type": "model", "revision": "main", "include": [], "exclude": []}
# the entry, what happened to it, and the ``files`` tables put in
Planned = tuple[Toml, Action, list[Toml]]


@dataclass(frozen=True)
class Asked:
    """What ``mdl add`` asks of an entry's sources: its SOURCEs, a whole repo's filters, and one
    file's save path and sha256."""

    sources: Sequence[AddSource]
    include: Sequence[str] = ()
    exclude: Sequence[str] = ()
    save_as: str | None = None
    sha256: str | None = None

    @property
    def snapshots(self) -> list[HfUri]:
        """The whole repos among the SOURCEs."""
        return [s for s in self.sources if isinstance(s, HfUri) and s.path is None]

    @property
    def of_one_file(self) -> bool:
        """Whether it says what only one file's SOURCE can take (--as, --sha256)."""
        return bool(self.save_as or self.sha256)


def plan_entry(name: str, old: Toml | None, asked: Asked, *, force: bool) -> Planned:
    """The model's entry once ``asked`` is added to ``old`` (None: no such model yet); UsageError
    on a conflict without ``force``."""
    _check_asked(asked)
    key = format_path(("models", name))
    if asked.snapshots:
        return _planned_snapshot(key, old, asked, force=force)
    new = [_file_table(s, save_as=asked.save_as, sha256=asked.sha256) for s in asked.sources]
    if old is None:
        return {"files": new}, "added", new
    if "files" in old:
        return _planned_files(key, old, new, force=force)
    if not force:
        raise UsageError(
            f"{key} is a whole-repo snapshot of {old.get('repo')}; files cannot be added to it",
            hint="use another model name, or pass --force to replace the entry with these files",
        )
    return {**_not_sources(old), "files": new}, "replaced", new


def _check_asked(asked: Asked) -> None:
    """UsageError for SOURCEs and options that do not go together."""
    sources, snapshots = asked.sources, asked.snapshots
    if not sources:
        raise UsageError(
            "add: give at least one SOURCE (hf://owner/name[@rev][/path] or an https:// URL)"
        )
    if snapshots and len(sources) > 1:
        raise UsageError(
            "add: a whole repo is one SOURCE on its own; to list files, give hf://owner/name/path"
            " ones"
        )
    if not snapshots and (asked.include or asked.exclude):
        raise UsageError(
            "--include and --exclude filter a whole repo (hf://owner/name), not single files"
        )
    if snapshots and asked.of_one_file:
        raise UsageError(
            "--as and --sha256 are for one file (hf://owner/name/path or a URL), not a whole repo"
        )
    if len(sources) > 1 and asked.of_one_file:
        raise UsageError("--as and --sha256 apply to a single SOURCE; add the files one at a time")


def _not_sources(entry: Toml) -> Toml:
    """What an entry says besides what it fetches (its description, tags, signature)."""
    return {k: v for k, v in entry.items() if k not in SOURCE_KEYS}


def _planned_snapshot(key: str, old: Toml | None, asked: Asked, *, force: bool) -> Planned:
    """The entry as a whole-repo snapshot: added, unchanged, or (``force``) replacing ``old``."""
    source = asked.snapshots[0]
    table = _snapshot_table(source, include=asked.include, exclude=asked.exclude)
    if old is None:
        return table, "added", []
    if "repo" in old and _canonical_snapshot(old) == _canonical_snapshot(table):
        return old, "unchanged", []
    if not force:
        now = (
            f"a whole-repo snapshot of {old['repo']}"
            if "repo" in old
            else f"{len(old.get('files', []))} files"
        )
        raise UsageError(
            f"{key} is already {now}; pass --force to replace it with {source.given}",
            hint="its description and tags are kept",
        )
    return {**_not_sources(old), **table}, "replaced", []


def _planned_files(key: str, old: Toml, new: list[Toml], *, force: bool) -> Planned:
    """``old``'s ``files`` with ``new`` added: a file saved to the same path is the same file asked
    twice, else (``force``) replaced."""
    files = list(old["files"])
    added: list[Toml] = []
    replaced = False
    for table in new:
        target = save_path(table, where=key)
        index = next((i for i, f in enumerate(files) if save_path(f, where=key) == target), None)
        if index is None:
            files.append(table)
        elif _canonical_file(files[index]) == _canonical_file(table):
            continue
        elif not force:
            raise UsageError(
                f"{key}.files[{index}] already saves to {target!r}",
                hint=(
                    "pass --as to save this file under another path, or --force to replace that one"
                ),
            )
        else:
            files[index], replaced = table, True
        added.append(table)
    if not added:
        return old, "unchanged", []
    return {**old, "files": files}, "replaced" if replaced else "extended", added


def _snapshot_table(source: HfUri, *, include: Sequence[str], exclude: Sequence[str]) -> Toml:
    table = {
        "repo": source.repo,
        "repo_type": source.repo_type,
        "revision": source.revision or "main",
    }
    return _sparse({**table, "include": list(include), "exclude": list(exclude)})


# without the keys that hold their DEFAULTS value
def _sparse(table: Toml) -> Toml:
    return {key: value for key, value in table.items() if value != DEFAULTS.get(key)}


def _file_table(source: AddSource, *, save_as: str | None, sha256: str | None) -> Toml:
    """One ``files`` entry: ``repo`` + ``path`` (with ``revision``/``repo_type`` when not the
    defaults) or ``url``.
    """
    if isinstance(source, str):
        table: Toml = {"url": source}
    else:
        revision = source.revision or "main"
        table = _sparse(
            {
                "repo": source.repo,
                "path": source.path,
                "revision": revision,
                "repo_type": source.repo_type,
            }
        )
    if sha256 is not None:
        table["sha256"] = sha256.strip().lower().removeprefix("sha256:")
        if not SHA256_HEX.fullmatch(table["sha256"]):
            raise UsageError(
                f"--sha256: expected 64 hex digits (optionally 'sha256:…'), got {sha256!r}"
            )
    if save_as is not None:
        table["as"] = safe_relative_path(save_as, where="--as")
    return table


def save_path(table: Toml, *, where: str) -> str:
    """Where a ``files`` table saves (its ``as``, else the name its path or URL ends with);
    ``where`` names it.
    """
    return FileSpec(
        where, path=table.get("path"), url=table.get("url"), save_as=table.get("as")
    ).save_path


def _canonical_file(table: Toml) -> Toml:
    """A ``files`` entry with defaults filled in, to tell the same file asked twice from a
    different one.
    """
    out = {**DEFAULTS, **table} if "repo" in table else dict(table)
    if isinstance(out.get("sha256"), str):
        out["sha256"] = out["sha256"].strip().lower().removeprefix("sha256:")
    return out


def _canonical_snapshot(table: Toml) -> Toml:
    return {
        "repo": table.get("repo"),
        **{key: table.get(key, value) for key, value in DEFAULTS.items()},
    }


def meta_changes(
    old: Toml | None, description: str | None, tags: Sequence[str], *, force: bool
) -> Toml:
    """The description and tags to write, those that change: ``tags`` after the entry's own, each
    once (as ``git tag`` adds a tag), or with ``force`` instead of them (as --force replaces what
    the entry says)."""
    if any(not tag.strip() for tag in tags):
        raise UsageError("--tag: a tag must not be empty")
    meta: Toml = {}
    if description is not None:
        meta["description"] = description
    if tags:
        kept = [] if force or old is None else list(old.get("tags", []))
        meta["tags"] = list(dict.fromkeys([*kept, *tags]))
    return {key: value for key, value in meta.items() if old is None or old.get(key) != value}


def signature_change(
    name: str, old: Toml | None, key: Path | None, folder: Path, *, force: bool
) -> Toml:
    """``{"signature": table}`` trusting ``key`` (its ``file`` kept), or {} when the entry trusts
    that key already; UsageError when it names another signer and not ``force`` (as for another
    repo)."""
    if key is None:
        return {}
    key, folder = _absolute(key), _absolute(folder)
    had = (old or {}).get("signature")
    if (
        isinstance(had, dict)
        and isinstance(had.get("key"), str)
        and _same_path(folder, had["key"], key)
    ):
        return {}
    written = key_as_written(key, folder)
    if isinstance(had, dict) and not force:
        raise UsageError(
            f"{format_path(('models', name, 'signature'))} already trusts {_signer(had)}; "
            f"pass --force to trust {written} instead",
            hint="--force changes only whom it trusts; the signature's file stays",
        )
    kept = {"file": had["file"]} if isinstance(had, dict) and "file" in had else {}
    return {"signature": {"key": written, **kept}}


def key_as_written(key: Path, folder: Path) -> str:
    """A key's path as a catalog committed to git wants it: relative to the catalog's ``folder``
    (with ``/``) when the key is in it or below, else absolute (symbolic links not followed: the
    path as the user gave it)."""
    key, folder = _absolute(key), _absolute(folder)
    return key.relative_to(folder).as_posix() if key.is_relative_to(folder) else str(key)


def _absolute(path: Path) -> Path:
    return Path(os.path.normpath(home_expanded(path).absolute()))


def _same_path(folder: Path, written: str, key: Path) -> bool:
    """Whether a key path the catalog has (relative to ``folder``) names the file ``key`` is."""
    there = _absolute(folder / home_expanded(written))
    try:
        return there == key or there.samefile(key)
    except OSError:  # not there (any more): only the same path is the same key
        return False


def _signer(table: Toml) -> str:
    """Whom a ``signature`` table trusts, as an error names it."""
    if "key" in table:
        return f"the key {table['key']}"
    if "certificates" in table:
        return f"the certificate chain {', '.join(map(str, table['certificates']))}"
    return f"{table.get('identity')} ({table.get('issuer')})"


def with_meta(entry: Toml, meta: Toml) -> Toml:
    """``entry`` with ``meta``'s values: in place of its own, or when it has none, a description and
    tags first (as the docs write them) and a signature last."""
    first = {key: value for key, value in meta.items() if key not in entry and key in META_KEYS}
    last = {key: value for key, value in meta.items() if key not in entry and key not in META_KEYS}
    return {**first, **{key: meta.get(key, value) for key, value in entry.items()}, **last}
