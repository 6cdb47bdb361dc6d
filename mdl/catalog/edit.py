"""``mdl add`` and ``mdl remove`` edit catalog.toml with tomlkit: only the entry asked about
changes, every other byte (comments, blank lines, order, quoting, line endings) stays; every result
is read back and must mean exactly the intended document, or nothing is written. ``mdl init`` writes
the starter catalog (package data) where mdl looks."""

from __future__ import annotations

import functools
import re
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, TypedDict

from mdl.catalog._entry import Action, Asked, meta_changes, plan_entry, signature_change, with_meta

# what add's callers name: its sources' type, and the files it put in
from mdl.catalog._entry import AddSource as AddSource
from mdl.catalog._entry import save_path as save_path
from mdl.catalog._lines import did_you_mean, format_path
from mdl.catalog.load import find_catalog, named_catalog
from mdl.catalog.specs import MAX_MODEL_NAME, is_model_name
from mdl.errors import UsageError
from mdl.paths import HF_URI_FORMS, parse_hf_uri
from mdl.redact import Secrets, redact_url


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

        doc: dict[str, Any] = shown({"ok": self.exit_code == 0, **asdict(self)})
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


class EntryFields(TypedDict, total=False):
    """What ``mdl add`` asks of an entry besides its SOURCEs: :func:`add_entry`'s keywords."""

    include: Sequence[str]
    exclude: Sequence[str]
    save_as: str | None
    sha256: str | None
    description: str | None
    tags: Sequence[str]
    signed_by: Path | None
    folder: Path
    force: bool


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
    from mdl.catalog._placing import meta_placed, placed  # (with tomlkit: not for an init)

    document = tomllib.loads(text)
    old = document.get("models", {}).get(name)
    meta = meta_changes(old, description, tags, force=force)
    meta |= signature_change(name, old, signed_by, folder, force=force)
    asked = Asked(sources, include, exclude, save_as, sha256)
    if sources or (description is None and not tags and signed_by is None):
        entry, action, added = plan_entry(name, old, asked, force=force)
    else:  # only what meta_placed sets
        entry, action, added = _only_meta(name, old, asked), "unchanged", []
    # written whole: with its new description, tags and signature
    if action in ("added", "replaced"):
        entry, meta = with_meta(entry, meta), {}
    edited = text
    if action != "unchanged":
        place = functools.partial(placed, text, name, entry, old, action)
        edited = _edited(document, text, name, entry, place)
    if meta:  # then the description, tags and signature, in the entry as now written
        updated = with_meta(entry, meta)
        meta_place = functools.partial(meta_placed, edited, name, meta)
        edited = _edited(tomllib.loads(edited), edited, name, updated, meta_place)
        entry, action = updated, "updated" if action == "unchanged" else action
    return Edit(edited, action, entry, tuple(added))  # unchanged: the text as it was, nothing added


def _only_meta(name: str, old: dict[str, Any] | None, asked: Asked) -> dict[str, Any]:
    """The entry that is there, to take a description, tags or signer without a SOURCE."""
    if old is None:
        raise UsageError(
            f"{format_path(('models', name))} is not in the catalog: give a SOURCE to add it "
            "(hf://owner/name[@rev][/path] or an https:// URL)"
        )
    if asked.include or asked.exclude or asked.save_as is not None or asked.sha256 is not None:
        raise UsageError(
            "--include, --exclude, --as and --sha256 describe a SOURCE; give one with them"
        )
    return old


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


def remove_entry(text: str, name: str) -> str:
    """``text`` without model ``name`` and, where the layout leaves them a place, the comments
    written on it; UsageError when there is no such model."""
    from mdl.catalog._placing import removed  # (with tomlkit: not for an init)

    document = tomllib.loads(text)
    models = document.get("models", {})
    if name not in models:
        raise UsageError(
            f"unknown model {name!r}{did_you_mean(name, list(models))}",
            hint="run 'mdl list' to see the models",
        )
    return _edited(document, text, name, None, functools.partial(removed, text, name))


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
