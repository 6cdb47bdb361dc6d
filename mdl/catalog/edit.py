"""``mdl add`` and ``mdl remove`` edit catalog.toml with tomlkit: only the entry asked about
changes, every other byte (comments, blank lines, order, quoting, line endings) stays; every result
is read back and must mean exactly the intended document, or nothing is written. ``mdl init`` writes
the starter catalog (package data) where mdl looks."""

from __future__ import annotations

import dataclasses
import functools
import os
import re
import tomllib
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from mdl.catalog.lines import did_you_mean, format_path
from mdl.catalog.load import find_catalog, named_catalog
from mdl.catalog.specs import MAX_MODEL_NAME, FileSpec, is_model_name
from mdl.errors import UsageError
from mdl.paths import HF_URI_FORMS, SHA256_HEX, HfUri, parse_hf_uri, safe_relative_path
from mdl.redact import Secrets, redact_url

Action = Literal["added", "extended", "replaced", "updated", "unchanged"]
# one SOURCE of mdl add: a whole Hub repo or one file in one, or a direct URL
AddSource = HfUri | str
SOURCE_KEYS = ("repo", "repo_type", "revision", "include", "exclude", "files")
# what --description and --tag set: never part of what the entry fetches
META_KEYS = ("description", "tags")
# What an entry (or its Hub file) says when it does not say: left out of what add writes, filled in
# to compare. Never changed: the canonical forms built from it share its lists.
DEFAULTS: dict[str, Any] = {"repo_type": "model", "revision": "main", "include": [], "exclude": []}
NEW_CATALOG = (
    "# catalog.toml: the models mdl pulls (`mdl pull --all`). Edit it by hand or with `mdl add` /"
    " `mdl remove`;\n# see `mdl add --help`.\n"
)


def starter_catalog() -> str:
    """The commented catalog ``mdl init`` writes (package data; the repo's catalog.toml holds the
    same text).
    """
    from importlib.resources import files

    return files("mdl.catalog").joinpath("starter.toml").read_text(encoding="utf-8")


def catalog_to_init(
    *,
    flag: Path | None,
    environ: Mapping[str, str],
    cwd: Path,
    config_dir: Path,
    project: bool = False,
) -> Path:
    """Where ``mdl init`` writes: the catalog --catalog or $MDL_CATALOG names, else the user config
    one (mdl's last place to look, so that every folder without a catalog.toml of its own finds it).
    ``project`` (``--project``, as ``uv init`` and ``npm init`` write a project's file):
    --catalog's, else ./catalog.toml."""
    if flag is not None and str(flag) == "-":
        raise UsageError("--catalog -: mdl init writes a file; name one (or leave --catalog out)")
    if project:
        # $MDL_CATALOG is where mdl reads, not this folder
        named = named_catalog(flag=flag, environ={}, cwd=cwd)
        return named[0] if named is not None else cwd / "catalog.toml"
    named = named_catalog(flag=flag, environ=environ, cwd=cwd)
    return named[0] if named is not None else config_dir / "mdl" / "catalog.toml"


@dataclass(frozen=True)
class CatalogInit:
    """What ``mdl init`` wrote, and the catalog mdl reads from the current folder (without
    --catalog) now.
    """

    catalog: Path
    replaced: bool = False  # with --force, over a catalog that was there
    # the catalog a command run here finds: this one, another that comes first, or none
    found: Path | None = None
    # it is the user config one, mdl's last place to look (read from any folder)
    fallback: bool = False
    empty: bool = False  # an empty catalog (--project), not the starter

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": True,
            "catalog": str(self.catalog),
            "replaced": self.replaced,
            "empty": self.empty,
        }


@dataclass(frozen=True)
class CatalogChange:
    """What ``mdl add`` or ``mdl remove`` did to the catalog (and its lock), for the CLI and
    ``--json``.
    """

    catalog: Path
    model: str
    action: Literal["added", "extended", "replaced", "updated", "unchanged", "removed"]
    # the model's entry as now written ({} when removed)
    entry: dict[str, Any] = field(default_factory=dict)
    added: tuple[str, ...] = ()  # save paths of the files this edit put in
    created: bool = False  # the catalog file did not exist before
    checked: bool = False  # its sources were asked about upstream
    lock: Path | None = None  # catalog.lock, when one was updated
    lock_error: str | None = None  # why catalog.lock could not be updated (the catalog was)
    exit_code: int = 0  # that lock failure's exit code (0: none, or a warning, as when offline)
    # the catalog edited is the user config one (read in folders without their own)
    user_catalog: bool = False
    # said on stderr, the edit made all the same (a signer named, no model.sig upstream)
    warning: str | None = None

    def to_json(self) -> dict[str, Any]:
        """Its fields but the exit code, after ``ok`` (paths as text, signed URLs redacted)."""

        def shown(value: Any) -> Any:
            if isinstance(value, dict):
                return {k: redact_url(v) if k == "url" else shown(v) for k, v in value.items()}
            if isinstance(value, list | tuple):
                return [shown(v) for v in value]
            return str(value) if isinstance(value, Path) else value

        doc: dict[str, Any] = shown({"ok": self.exit_code == 0, **dataclasses.asdict(self)})
        return {key: value for key, value in doc.items() if key != "exit_code"}


def parse_source(text: str, secrets: Secrets | None = None) -> AddSource:
    """``hf://[datasets/|spaces/]owner/name[@rev][/path]`` or an ``http(s)://`` URL; UsageError
    otherwise.
    """
    if text.lower().startswith(("https://", "http://")):
        if secrets is not None:
            secrets.add_url(text)  # a presigned URL given to add: no sink may show its signature
        return text
    if not text.startswith("hf://"):
        example = f"hf://{text}" if re.fullmatch(r"[\w.-]+/[\w.-]+(@[^/]+)?(/.*)?", text) else None
        raise UsageError(
            f"{text}: expected {HF_URI_FORMS}, or an https:// URL",
            hint=f"write it as {example}" if example else None,
        )
    return parse_hf_uri(text)


def catalog_to_edit(
    *, flag: Path | None, environ: Mapping[str, str], cwd: Path, config_dir: Path
) -> Path:
    """The catalog ``mdl add`` edits: the one mdl would read, else the one to create (named, else
    ./catalog.toml).
    """
    if (named := named_catalog(flag=flag, environ=environ, cwd=cwd)) is not None:
        return named[0]
    return (
        find_catalog(flag=None, environ=environ, cwd=cwd, config_dir=config_dir)
        or cwd / "catalog.toml"
    )


def check_model_name(name: str) -> str:
    """A model name as the catalog allows it (it becomes a folder name); UsageError otherwise."""
    if not is_model_name(name):
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
    # the ``files`` entries this edit put in (to check upstream)
    added_files: tuple[dict[str, Any], ...] = ()


def add_entry(
    text: str,
    name: str,
    sources: Sequence[AddSource],
    *,
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    save_as: str | None = None,
    sha256: str | None = None,
    description: str | None = None,
    tags: Sequence[str] = (),
    signed_by: Path | None = None,
    folder: Path = Path(),
    force: bool = False,
) -> Edit:
    """Add model ``name`` to catalog ``text`` (or extend it, or with ``force`` replace it);
    UsageError on conflict. ``description`` replaces the entry's; ``tags`` are added to its own
    (each once), or with ``force`` replace them; ``signed_by`` (a public key's path) becomes its
    ``signature`` table's key, written relative to ``folder`` (the catalog's) when it is in it, or
    with ``force`` replaces another signer. An entry that is there takes them without a SOURCE
    (action ``updated``)."""
    document = tomllib.loads(text)
    old = document.get("models", {}).get(name)
    meta = _meta(old, description, tags, force=force) | _signature(
        name, old, signed_by, folder, force=force
    )
    if sources or (description is None and not tags and signed_by is None):
        entry, action, added = _plan(
            name, old, sources, include, exclude, save_as, sha256, force=force
        )
    else:  # only what _meta_placed sets
        if old is None:
            raise UsageError(
                f"{format_path(('models', name))} is not in the catalog: give a SOURCE to add it "
                "(hf://owner/name[@rev][/path] or an https:// URL)"
            )
        if include or exclude or save_as is not None or sha256 is not None:
            raise UsageError(
                "--include, --exclude, --as and --sha256 describe a SOURCE; give one with them"
            )
        entry, action, added = old, "unchanged", []
    # written whole: with its new description, tags and signature
    if action in ("added", "replaced"):
        entry, meta = _with_meta(entry, meta), {}
    edited = text
    if action != "unchanged":
        edited = _edited(
            document, text, name, entry, functools.partial(_placed, text, name, entry, old, action)
        )
    if meta:  # then the description, tags and signature, in the entry as now written
        updated = _with_meta(entry, meta)
        meta_place = functools.partial(_meta_placed, edited, name, meta)
        edited = _edited(tomllib.loads(edited), edited, name, updated, meta_place)
        entry, action = updated, "updated" if action == "unchanged" else action
    return Edit(edited, action, entry, tuple(added))  # unchanged: the text as it was, nothing added


# A layout no edit can keep as written (dotted keys spread over the file, ...): the user's file, not
# mdl's bug (exit 2).
_LAYOUT_HINT = (
    "write the model as a [models.NAME] table (no dotted keys elsewhere in the file), or edit it by"
    " hand"
)


def _edited(
    document: dict[str, Any],
    text: str,
    name: str,
    entry: dict[str, Any] | None,
    place: Callable[[], str | None],
) -> str:
    """``text`` with model ``name`` as ``entry`` (None: without it): where ``place`` puts it, else
    where tomlkit does; UsageError when the result would not read as exactly that."""
    expected = {
        **document,
        "models": {key: value for key, value in document.get("models", {}).items() if key != name},
    }
    if entry is not None:
        expected["models"][name] = entry
    # [models.x] headers alone made the table: with the last one gone, so is it
    meant = (expected, {key: value for key, value in expected.items() if key != "models" or value})
    edited = place()
    if edited is None or _reads(edited) not in meant:
        edited = _by_tomlkit(text, name, entry)
    if _reads(edited) not in meant:
        doing = "for" if entry is not None else "to remove"
        raise UsageError(
            f"could not edit the catalog safely {doing} {name!r}; nothing was written",
            hint=_LAYOUT_HINT,
        )
    return edited


def _meta(
    old: dict[str, Any] | None, description: str | None, tags: Sequence[str], *, force: bool
) -> dict[str, Any]:
    """The description and tags to write, those that change: ``tags`` after the entry's own, each
    once (as ``git tag`` adds a tag), or with ``force`` instead of them (as --force replaces what
    the entry says)."""
    if any(not tag.strip() for tag in tags):
        raise UsageError("--tag: a tag must not be empty")
    meta: dict[str, Any] = {}
    if description is not None:
        meta["description"] = description
    if tags:
        kept = [] if force or old is None else list(old.get("tags", []))
        meta["tags"] = list(dict.fromkeys([*kept, *tags]))
    return {key: value for key, value in meta.items() if old is None or old.get(key) != value}


def _signature(
    name: str, old: dict[str, Any] | None, key: Path | None, folder: Path, *, force: bool
) -> dict[str, Any]:
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
    return Path(os.path.normpath(path.expanduser().absolute()))


def _same_path(folder: Path, written: str, key: Path) -> bool:
    """Whether a key path the catalog has (relative to ``folder``) names the file ``key`` is."""
    there = _absolute(folder / Path(written).expanduser())
    try:
        return there == key or there.samefile(key)
    except OSError:  # not there (any more): only the same path is the same key
        return False


def _signer(table: dict[str, Any]) -> str:
    """Whom a ``signature`` table trusts, as an error names it."""
    if "key" in table:
        return f"the key {table['key']}"
    if "certificates" in table:
        return f"the certificate chain {', '.join(map(str, table['certificates']))}"
    return f"{table.get('identity')} ({table.get('issuer')})"


def _with_meta(entry: dict[str, Any], meta: dict[str, Any]) -> dict[str, Any]:
    """``entry`` with ``meta``'s values: in place of its own, or when it has none, a description and
    tags first (as the docs write them) and a signature last."""
    first = {key: value for key, value in meta.items() if key not in entry and key in META_KEYS}
    last = {key: value for key, value in meta.items() if key not in entry and key not in META_KEYS}
    return {**first, **{key: meta.get(key, value) for key, value in entry.items()}, **last}


def remove_entry(text: str, name: str) -> str:
    """``text`` without model ``name`` and, where the layout leaves them a place, the comments
    written on it; UsageError when there is no such model."""
    document = tomllib.loads(text)
    models = document.get("models", {})
    if name not in models:
        raise UsageError(
            f"unknown model {name!r}{did_you_mean(name, list(models))}",
            hint="run 'mdl list' to see the models",
        )
    return _edited(document, text, name, None, functools.partial(_removed, text, name))


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
    snapshots = [s for s in sources if isinstance(s, HfUri) and s.path is None]  # whole repos
    if not sources:
        raise UsageError(
            "add: give at least one SOURCE (hf://owner/name[@rev][/path] or an https:// URL)"
        )
    if snapshots and len(sources) > 1:
        raise UsageError(
            "add: a whole repo is one SOURCE on its own; to list files, give hf://owner/name/path"
            " ones"
        )
    if not snapshots and (include or exclude):
        raise UsageError(
            "--include and --exclude filter a whole repo (hf://owner/name), not single files"
        )
    if snapshots and (save_as or sha256):
        raise UsageError(
            "--as and --sha256 are for one file (hf://owner/name/path or a URL), not a whole repo"
        )
    if len(sources) > 1 and (save_as or sha256):
        raise UsageError("--as and --sha256 apply to a single SOURCE; add the files one at a time")
    kept = {k: v for k, v in (old or {}).items() if k not in SOURCE_KEYS}
    if snapshots:
        table = _snapshot_table(snapshots[0], include=include, exclude=exclude)
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
                f"{key} is already {now}; pass --force to replace it with {snapshots[0].given}",
                hint="its description and tags are kept",
            )
        return {**kept, **table}, "replaced", []
    new = [_file_table(s, save_as=save_as, sha256=sha256) for s in sources]
    if old is None:
        return {"files": new}, "added", new
    if "files" not in old:
        if not force:
            raise UsageError(
                f"{key} is a whole-repo snapshot of {old.get('repo')}; files cannot be added to it",
                hint=(
                    "use another model name, or pass --force to replace the entry with these files"
                ),
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
        elif _canonical_file(files[index]) != _canonical_file(table):
            if not force:
                raise UsageError(
                    f"{key}.files[{index}] already saves to {target!r}",
                    hint=(
                        "pass --as to save this file under another path, or --force to replace"
                        " that one"
                    ),
                )
            files[index], replaced = table, True
            added.append(table)
    if not added:
        return old, "unchanged", []
    return {**old, "files": files}, "replaced" if replaced else "extended", added


def _snapshot_table(
    source: HfUri, *, include: Sequence[str], exclude: Sequence[str]
) -> dict[str, Any]:
    table = {
        "repo": source.repo,
        "repo_type": source.repo_type,
        "revision": source.revision or "main",
    }
    return _sparse({**table, "include": list(include), "exclude": list(exclude)})


# without the keys that hold their DEFAULTS value
def _sparse(table: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in table.items() if value != DEFAULTS.get(key)}


def _file_table(source: AddSource, *, save_as: str | None, sha256: str | None) -> dict[str, Any]:
    """One ``files`` entry: ``repo`` + ``path`` (with ``revision``/``repo_type`` when not the
    defaults) or ``url``.
    """
    if isinstance(source, str):
        table: dict[str, Any] = {"url": source}
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


def save_path(table: dict[str, Any], *, where: str) -> str:
    """Where a ``files`` table saves (its ``as``, else the name its path or URL ends with);
    ``where`` names it.
    """
    return FileSpec(
        where, path=table.get("path"), url=table.get("url"), save_as=table.get("as")
    ).save_path


def _canonical_file(table: dict[str, Any]) -> dict[str, Any]:
    """A ``files`` entry with defaults filled in, to tell the same file asked twice from a
    different one.
    """
    out = {**DEFAULTS, **table} if "repo" in table else dict(table)
    if isinstance(out.get("sha256"), str):
        out["sha256"] = out["sha256"].strip().lower().removeprefix("sha256:")
    return out


def _canonical_snapshot(table: dict[str, Any]) -> dict[str, Any]:
    return {
        "repo": table.get("repo"),
        **{key: table.get(key, value) for key, value in DEFAULTS.items()},
    }


@dataclass(frozen=True)
class _Line:
    """One header, value, comment or run of blank lines of the document tomlkit read, in written
    order.
    """

    kind: Literal["header", "value", "comment", "blank"]
    # the key path a header opens or a value sets; a comment's or blank's table
    path: tuple[str, ...]
    body: list[tuple[Any, Any]]  # the tomlkit container body that holds it (its item for a header)
    index: int
    item: Any


def _lines(body: list[tuple[Any, Any]], path: tuple[str, ...] = ()) -> list[_Line]:
    from tomlkit.items import AoT, Comment, Null, Table, Whitespace

    out: list[_Line] = []
    for index, (key, item) in enumerate(body):
        here = path if key is None else (*path, key.key)
        if isinstance(item, Table | AoT):
            for table in item.body if isinstance(item, AoT) else [item]:
                if isinstance(item, AoT) or not table.is_super_table():
                    out.append(_Line("header", here, body, index, table))
                out.extend(_lines(table.value.body, here))
        elif isinstance(item, Comment):
            out.append(_Line("comment", path, body, index, item))
        elif isinstance(item, Whitespace):
            if "\n" in item.s:
                out.append(_Line("blank", path, body, index, item))
        elif not isinstance(item, Null):
            out.append(_Line("value", here, body, index, item))
    return out


def _placed(text: str, name: str, entry: dict[str, Any], old: Any, action: Action) -> str | None:
    """The edit made where the entry is (a new one after the last model), or None when this layout
    has no such place (``models = { … }`` in one inline table, an entry split around other tables).
    """
    import tomlkit
    from tomlkit.items import AoT

    document = tomlkit.parse(text)
    lines = _lines(document.body)
    nl = "\r\n" if "\r\n" in text else "\n"
    if any(line.kind == "value" and line.path == ("models",) for line in lines):
        return None
    tables = _models_tables(document)
    if action == "added":
        table = _table(entry, nl)
        _make_room(lines, ("models",), [table], text, nl)
        if not tables:
            document.append("models", tomlkit.table(is_super_table=True))
            tables = [document["models"]]
            tables[0].trivia.indent = ""  # it has no header to set apart
        tables[-1].append(name, table)
        return tomlkit.dumps(document)
    models = next(t for t in tables if name in t)
    files = models[name].get("files")
    new = entry["files"][len(old["files"]) :] if action == "extended" else []
    # [[models.NAME.files]] tables: one more table each, every comment kept
    if new and isinstance(files, AoT):
        added = [_table(f, nl) for f in new]
        _make_room(lines, ("models", name, "files"), added, text, nl)
        files.extend(added)
        return tomlkit.dumps(document)
    if new and any(line.kind == "header" and line.path == ("models", name) for line in lines):
        # files = [ … ] under [models.NAME]: the array keeps its own style
        files.extend(_inline(f) for f in new)
        return tomlkit.dumps(document)
    runs = _runs(lines, name)
    # an inline or dotted entry: the new table goes after the last model
    if lines[runs[0][0]].kind == "value":
        rest = _removed(text, name)
        return None if rest is None else _placed(rest, name, entry, None, "added")
    if len(runs) > 1:
        return None
    # past the entry and its comments (those above it stay): written anew
    kept = _attached(lines, runs[0][1]) + 1
    table = _table(entry, nl)
    models[name] = table  # in its place, under the old header's indent
    del table.value.body[len(entry) :]  # no blank line of tomlkit's own
    table.trivia.comment_ws = table.trivia.comment = ""
    for line in lines[kept:]:
        if line.path[:2] != ("models", name):
            break
        table.add(line.item)
    return tomlkit.dumps(document)


def _meta_placed(text: str, name: str, meta: dict[str, Any]) -> str | None:
    """``meta`` (description, tags, signature) set in the entry as written, every other line kept: a
    value that is there is replaced where it is (its comment kept; a ``[models.NAME.signature]``
    table keeps its header, comments and ``file``), a new description or tags go after the entry's
    other such keys, else first, a new signature after its last value; None for a layout with no
    such place (an entry split around other tables)."""
    import tomlkit
    from tomlkit.items import AoT, InlineTable, Table

    document = tomlkit.parse(text)
    holders = [table for table in _models_tables(document) if name in table]
    if len(holders) != 1:
        return None
    table = holders[0][name]
    if isinstance(table, InlineTable):  # one line, no comments inside: written anew, new keys first
        holders[0][name] = _inline(_with_meta(table.unwrap(), meta))
        return tomlkit.dumps(document)
    if not isinstance(table, Table):
        return None
    nl = "\r\n" if "\r\n" in text else "\n"
    missing = {key: value for key, value in meta.items() if key not in table}
    for key, value in meta.items():
        # [models.NAME.signature]: its keys replaced, its other lines kept
        if isinstance(table.get(key), Table):
            _merged(table, key, value, nl)
        elif key in table:
            table[key] = _inline(value)
    # [models.x.files] tables alone: tomlkit gives [models.x] its header
    if not missing or table.is_super_table():
        for key, value in missing.items():
            table[key] = _inline(value)
        return tomlkit.dumps(document)
    body = table.value.body
    keyed = [i for i, (key, _) in enumerate(body) if key is not None and key.key in META_KEYS]
    values = [
        i
        for i, (key, item) in enumerate(body)
        if key is not None and not isinstance(item, Table | AoT)
    ]
    # past the comments under its last value
    last = _attached_end(body, values[-1] + 1) if values else 0
    inserts: dict[int, dict[str, Any]] = {}
    for key, value in missing.items():
        inserts.setdefault((keyed[-1] + 1 if keyed else 0) if key in META_KEYS else last, {})[
            key
        ] = value
    _rewritten(holders[0], name, inserts, (), nl)
    return tomlkit.dumps(document)


def _attached_end(body: list[tuple[Any, Any]], at: int) -> int:
    """Past the comment lines at ``body[at]`` when a blank line (or the table's end) follows them,
    else ``at`` (as :func:`_attached` reads a comment under a line as that line's)."""
    from tomlkit.items import Comment, Whitespace

    end = at
    while end < len(body) and isinstance(body[end][1], Comment):
        end += 1
    return (
        end
        if end == len(body) or (isinstance(body[end][1], Whitespace) and "\n" in body[end][1].s)
        else at
    )


def _merged(holder: Any, name: str, values: dict[str, Any], nl: str) -> None:
    """The sub-table ``holder[name]`` made to hold exactly ``values``: a key it has is set where it
    is (its comment kept), one it has not takes the place of the first key dropped (else goes after
    its last value)."""
    table = holder[name]
    for key, value in values.items():
        if key in table and table[key] != value:
            table[key] = _inline(value)
    body = table.value.body
    dropped = [i for i, (key, _) in enumerate(body) if key is not None and key.key not in values]
    keyed = [i for i, (key, _) in enumerate(body) if key is not None]
    at = dropped[0] if dropped else keyed[-1] + 1 if keyed else 0
    new = {key: value for key, value in values.items() if key not in table}
    if new or dropped:
        _rewritten(holder, name, {at: new}, {body[i][0].key for i in dropped}, nl)


def _rewritten(
    holder: Any, name: str, inserts: Mapping[int, dict[str, Any]], dropped: Collection[str], nl: str
) -> None:
    """The table ``holder[name]`` written anew: its lines as written but the values keyed in
    ``dropped``, with ``inserts[i]``'s keys one line each before its line ``i`` (indented as its
    first value), its header kept."""
    import tomlkit
    from tomlkit.items import Whitespace

    table = holder[name]
    body = table.value.body
    indent = next((item.trivia.indent for key, item in body if key is not None), "")
    new = tomlkit.table()
    # as tomlkit read them: no blank line of its own before a sub-table, headers as written
    new.value.parsing(True)
    for index, (written, item) in enumerate([*body, (None, None)]):
        trivia = (
            getattr(body[index - 1][1], "trivia", None) if index and inserts.get(index) else None
        )
        if trivia is not None and "\n" not in trivia.trail:
            trivia.trail += nl  # the file's last line, without its line break
        for key, value in inserts.get(index, {}).items():
            line = tomlkit.item(_inline(value))
            line.trivia.indent, line.trivia.trail = indent[len(indent.rstrip(" \t")) :], nl
            new.append(key, line)
        if item is not None and (written is None or written.key not in dropped):
            new.append(written, item)
    new.value.parsing(False)
    # the header as written (set after the lines: an indented header would indent each line
    # appended)
    new.trivia.indent, new.trivia.comment_ws = table.trivia.indent, table.trivia.comment_ws
    new.trivia.comment, new.trivia.trail = table.trivia.comment, table.trivia.trail
    holder[name] = new
    # tomlkit sets a replaced table apart with a blank line of its own: not where the old one had
    # none
    if not (body and isinstance(body[-1][1], Whitespace)) and isinstance(
        new.value.body[-1][1], Whitespace
    ):
        del new.value.body[-1]


def _make_room(
    lines: list[_Line], prefix: tuple[str, ...], tables: list[Any], text: str, nl: str
) -> None:
    """Make ``tables`` follow the last lines under ``prefix`` (and the comments right under them, up
    to a blank line): the comments and blank lines after those move under the last table; one blank
    line on each side."""
    from tomlkit.items import Null, Whitespace

    keyed = [
        i
        for i, line in enumerate(lines)
        if line.kind in ("header", "value") and line.path[: len(prefix)] == prefix
    ]
    at = _attached(lines, keyed[-1]) + 1 if keyed else len(lines)
    if at == len(lines) and at and not text.endswith("\n"):
        lines[-1].item.trivia.trail += nl  # the last line gets its line break
    # comments under root-level ``models.x.y = …`` keys are outside the models table: they go above
    # the new ones
    above = [
        line
        for line in lines[keyed[-1] + 1 if keyed else at : at]
        if line.path[: len(prefix)] != prefix
    ]
    for line in above:
        line.body[line.index] = (None, Null())
    blank = nl if at and lines[at - 1].kind != "blank" else ""
    tables[0].trivia.indent = "".join(line.item.as_string() for line in above) + blank
    for table in tables[1:]:
        table.trivia.indent = nl
    if at < len(lines) and lines[at].kind != "blank":
        tables[-1].add(Whitespace(nl))
    for line in lines[at:]:
        if line.path[: len(prefix)] != prefix:
            break
        line.body[line.index] = (None, Null())
        tables[-1].add(line.item)


def _removed(text: str, name: str) -> str | None:
    """``text`` without model ``name``, the comments written on it and one blank line around it;
    None when a comment that stays has no place to go."""
    import tomlkit
    from tomlkit.items import Null

    document = tomlkit.parse(text)
    lines = _lines(document.body)
    gone = {i for first, last in _runs(lines, name) for i in _region(lines, first, last)}
    inside = [line.path[:2] == ("models", name) for line in lines]
    for i in gone:
        if not inside[i]:
            lines[i].body[lines[i].index] = (None, Null())
    for table in _models_tables(document):
        if name in table:
            table.remove(name)
    # what stays of the entry's tail goes before the next header, or at the end
    kept: list[Any] = []
    for i, line in enumerate(lines):
        if inside[i] and i not in gone:
            kept.append(line.item)
        elif kept and not inside[i]:
            if line.kind != "header" or i in gone:
                return None
            line.item.trivia.indent = (
                "".join(item.as_string() for item in kept) + line.item.trivia.indent
            )
            kept = []
    for item in kept:
        document.add(item)
    return tomlkit.dumps(document)


def _models_tables(document: Any) -> list[Any]:
    """Each top-level ``models`` table in written order (other tables may split them), not
    tomlkit's merged view.
    """
    return [item for key, item in document.body if key is not None and key.key == "models"]


def _runs(lines: list[_Line], name: str) -> list[tuple[int, int]]:
    """Index ranges of the model's headers and values, with the comments and blank lines between
    them.
    """
    runs: list[tuple[int, int]] = []
    for i, line in enumerate(lines):
        if line.kind in ("header", "value") and line.path[:2] == ("models", name):
            if runs and all(
                lines[j].kind in ("comment", "blank") for j in range(runs[-1][1] + 1, i)
            ):
                runs[-1] = (runs[-1][0], i)
            else:
                runs.append((i, i))
    return runs


def _attached(lines: list[_Line], last: int) -> int:
    """The last comment line right under line ``last`` when a blank line (or the end) follows
    them, else ``last``.
    """
    end = last
    while end + 1 < len(lines) and lines[end + 1].kind == "comment":
        end += 1
    return end if end + 1 == len(lines) or lines[end + 1].kind == "blank" else last


def _region(lines: list[_Line], first: int, last: int) -> range:
    """The lines a run of the entry covers, with the comments right above it, those under it up to a
    blank line (a comment right above the next header is the next entry's) and one blank line."""
    start = first
    while start > 0 and lines[start - 1].kind == "comment":
        start -= 1
    after = _attached(lines, last) + 1
    blanks = after
    while blanks < len(lines) and lines[blanks].kind == "blank":
        blanks += 1
    before_blank = start == 0 or lines[start - 1].kind == "blank"
    if blanks > after and (before_blank or blanks == len(lines)):
        return range(start, blanks)  # one blank line, not two, where the entry was
    while blanks == len(lines) and before_blank and start > 0 and lines[start - 1].kind == "blank":
        start -= 1  # the file ends with the line before it
    return range(start, after)


def _table(entry: dict[str, Any], nl: str) -> Any:
    """A new ``[models.NAME]`` table: values on one line each, files one per line in ``files = [
    … ]``.
    """
    import tomlkit

    table = tomlkit.table()
    table.trivia.trail = nl
    for key, value in entry.items():
        item = tomlkit.item(_inline(value)) if key != "files" else tomlkit.array()
        if key == "files":
            for f in value:
                item.add_line(_inline(f), indent=nl + "  ", newline=False)
            item.add_line(indent=nl, newline=False)
        item.trivia.trail = nl
        table.add(key, item)
    return table


def _inline(value: Any) -> Any:
    """``value`` with its tables inline, spaced as in the docs (``{ repo = "…", path = "…" }``)."""
    import tomlkit

    if isinstance(value, dict):
        items = [tomlkit.item(_inline(item)) for item in value.values()]
        if items:
            items[0].trivia.indent = items[-1].trivia.trail = " "
        table = tomlkit.inline_table()
        for key, item in zip(value, items, strict=True):
            table.append(key, item)
        return table
    # a scalar, or an array of them (tags, include, exclude): tomlkit writes those as the docs do
    return value


def _by_tomlkit(text: str, name: str, entry: dict[str, Any] | None) -> str:
    """The edit placed as tomlkit sees fit (for layouts with no place of our own); ``entry`` None
    removes it.
    """
    import tomlkit

    document = tomlkit.parse(text)
    models = document.setdefault("models", tomlkit.table(is_super_table=True))
    if entry is None:
        del models[name]
    else:
        models[name] = entry
    return tomlkit.dumps(document)


def _reads(text: str) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        return {"<invalid>": True}
