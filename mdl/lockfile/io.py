"""``catalog.lock`` read strictly (it may come from anyone's pull request), written
deterministically (sorted, no timestamps, one line per file, so a diff shows what moved), and
compared per model for ``mdl lock --upgrade``."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from mdl.catalog import files
from mdl.errors import CatalogError
from mdl.lockfile.model import LOCK_VERSION, Lock, LockedFile, LockedModel
from mdl.lockfile.ondisk import AGAIN, bytes_document, read_data, toml_document, write_changed

# the lock is edited as the catalog beside it is: under a flock of their folder
exclusive = files.exclusive

_HEADER = (
    "# catalog.lock: written by `mdl lock` from the catalog beside it. Commit it; do not edit it by"
    " hand.\n# Every machine that runs `mdl pull --locked` gets exactly these commits and bytes.\n"
)


MAX_LOCK_BYTES = 64 << 20  # about 250,000 files at one line each; checked before a byte is parsed


def read_lock(path: Path) -> Lock | None:
    """The lock at ``path``, None when there is none; CatalogError naming the file when it is bad,
    too big, or not a file (a FIFO is never waited on). Never read through a link: mdl writes the
    lock as a file, and a pull request can commit a link to any file of the machine that reads it.
    """
    data = read_data(path, limit=MAX_LOCK_BYTES, what="the lock", one="a lock")
    if data is None:
        return None
    from mdl.lockfile.remembered import recalled_lock  # (checked once per version of its bytes)

    return recalled_lock(
        path, data, lambda: _validated(bytes_document(data, path), source=str(path))
    )


def parse_lock(text: str, *, source: str = "catalog.lock") -> Lock:
    """Validate lock TOML; every problem names the file and the key
    (``model[2].files[3].sha256``).
    """
    return _validated(toml_document(text, source=source), source=source)


def _validated(document: dict[str, Any], *, source: str) -> Lock:
    """The lock a parsed document holds, validated one file at a time: each file's table is let go
    as its entry is made, so memory holds the entries and not the document besides."""
    version = document.get("version", LOCK_VERSION)
    if type(version) is int and version > LOCK_VERSION:
        raise CatalogError(
            f"{source}: lock version {version} is newer than this mdl understands ({LOCK_VERSION})",
            hint="upgrade mdl, or run 'mdl lock' to write a version 1 lock",
        )
    if version != LOCK_VERSION or type(version) is not int:
        raise CatalogError(
            f"{source}: version: must be {LOCK_VERSION}, got {version!r}", hint=AGAIN
        )
    if unknown := sorted(set(document) - {"version", "model"}):
        raise CatalogError(f"{source}: {unknown[0]}: Extra inputs are not permitted", hint=AGAIN)
    tables = document.pop("model", [])
    if not isinstance(tables, list):
        raise CatalogError(f"{source}: model: Input should be a valid tuple", hint=AGAIN)
    by_name: dict[str, LockedModel] = {}
    for index in range(len(tables)):
        table, tables[index] = tables[index], None
        model = _model(table, at=f"model[{index}]", source=source)
        if model.name in by_name:
            raise CatalogError(f"{source}: model[{index}].name: {model.name!r} appears twice")
        by_name[model.name] = model
    return Lock(models=dict(sorted(by_name.items())))


def _model(table: Any, *, at: str, source: str) -> LockedModel:
    from pydantic import ValidationError

    from mdl.lockfile.checked import file_table, model_table, validation_message

    files = table.get("files") if isinstance(table, dict) else None
    where = at
    try:
        if isinstance(files, list):
            for index in range(len(files)):
                where = f"{at}.files[{index}]"
                files[index] = file_table(files[index])
        where = at
        return model_table(table)
    except ValidationError as exc:
        raise CatalogError(f"{source}: {validation_message(exc, at=where)}", hint=AGAIN) from None


def dump_lock(lock: Lock) -> str:
    """The lock as TOML text: byte-identical for the same content."""
    models = (_model_text(lock.models[name]) for name in sorted(lock.models))
    return "".join([_HEADER, f"version = {LOCK_VERSION}\n", *models])


def write_lock(path: Path, lock: Lock) -> bool:
    """Write the lock atomically unless the file already holds exactly this text; True when it
    changed.
    """
    data = dump_lock(lock).encode()
    return write_changed(path, data, limit=MAX_LOCK_BYTES, what="the lock", one="a lock")


# a file's line, in this order
_FILE_KEYS = ("path", "size", "sha256", "source", "git_oid", "revision", "xet")


def _model_text(model: LockedModel) -> str:
    head = "".join(
        f"{pair}\n" for pair in _pairs(model, ("name", "fingerprint", "revision", "commit"))
    )
    files = "".join(
        f"  {{ {', '.join(_pairs(f, _FILE_KEYS))} }},\n"
        for f in sorted(model.files, key=lambda f: f.path)
    )
    return f"\n[[model]]\n{head}files = [\n{files}]\n"


def _pairs(item: object, keys: tuple[str, ...]) -> list[str]:
    return [
        f"{key} = {_toml(getattr(item, key))}" for key in keys if getattr(item, key) is not None
    ]


def _toml(value: str | int) -> str:
    """A TOML integer or basic string: JSON's escapes are TOML's, and TOML wants DEL escaped too."""
    return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")


class RepoMove(NamedTuple):
    """One repo of a model made of several (no one commit says the model's) moved from commit to
    commit.
    """

    # ``[datasets/|spaces/]owner/name``, with ``@revision`` when its files were asked at one
    repo: str
    old_commit: str
    new_commit: str

    def to_json(self) -> dict[str, str]:
        return self._asdict()


class ModelChange(NamedTuple):
    """One model's difference between two locks (``old`` None: newly locked; ``new`` None:
    dropped).
    """

    name: str
    old_commit: str | None
    new_commit: str | None
    added: tuple[LockedFile, ...] = ()
    removed: tuple[LockedFile, ...] = ()
    changed: tuple[tuple[LockedFile, LockedFile], ...] = ()
    status: str = "changed"  # added | removed | changed | unchanged
    # Same bytes pinned to another commit, when the model has no one commit that says so (files from
    # several repos): the lock moved them, so the model is not "unchanged".
    repinned: tuple[tuple[LockedFile, LockedFile], ...] = ()
    # each repo's commit move, for a model of files from several repos
    repos: tuple[RepoMove, ...] = ()

    def to_json(self) -> dict[str, Any]:
        doc = {key: getattr(self, key) for key in ("name", "status", "old_commit", "new_commit")}
        doc |= {
            key: [{"path": f.path, "size": f.size} for f in getattr(self, key)]
            for key in ("added", "removed")
        }
        doc["changed"] = [_moved(old, new, "size", "sha256") for old, new in self.changed]
        doc["repinned"] = [_moved(old, new, "source") for old, new in self.repinned]
        doc["repos"] = [move.to_json() for move in self.repos]
        return doc


def _moved(old: LockedFile, new: LockedFile, *keys: str) -> dict[str, Any]:
    sides = (("old", old), ("new", new))
    return {"path": new.path} | {
        f"{side}_{key}": getattr(f, key) for key in keys for side, f in sides
    }


def diff_locks(old: Mapping[str, LockedModel], new: Mapping[str, LockedModel]) -> list[ModelChange]:
    """Per model in either lock, sorted by name, what changed (``unchanged`` ones included)."""
    return [
        _model_change(name, old.get(name), new.get(name)) for name in sorted(set(old) | set(new))
    ]


def _model_change(name: str, before: LockedModel | None, after: LockedModel | None) -> ModelChange:
    if before is None:
        assert after is not None
        return ModelChange(name, None, after.commit, added=after.files, status="added")
    if after is None:
        return ModelChange(name, before.commit, None, removed=before.files, status="removed")
    return _compared(name, before, after)


def _compared(name: str, before: LockedModel, after: LockedModel) -> ModelChange:
    """A model both locks hold: its files added, removed, changed, or pinned elsewhere."""
    added, removed, both = _paired(before.files, after.files)
    changed = tuple((a, b) for a, b in both if not _same_bytes(a, b))
    repinned: tuple[tuple[LockedFile, LockedFile], ...] = ()
    # when the model's commit moved, the line says so: its files followed it
    if before.commit is None or before.commit == after.commit:
        repinned = tuple((a, b) for a, b in both if a.source != b.source and _same_bytes(a, b))
    moved = any((before.commit != after.commit, added, removed, changed, repinned))
    status = "changed" if moved else "unchanged"
    repos = _repo_moves(both) if before.commit is None and after.commit is None else ()
    return ModelChange(
        name, before.commit, after.commit, added, removed, changed, status, repinned, repos
    )


def _paired(
    before: Sequence[LockedFile], after: Sequence[LockedFile]
) -> tuple[tuple[LockedFile, ...], tuple[LockedFile, ...], list[tuple[LockedFile, LockedFile]]]:
    """The files only ``after`` holds, those only ``before`` holds, and those both hold (old,
    new), each by path."""
    was = {f.path: f for f in before}
    now = {f.path: f for f in after}
    added = tuple(now[p] for p in sorted(set(now) - set(was)))
    removed = tuple(was[p] for p in sorted(set(was) - set(now)))
    return added, removed, [(was[p], now[p]) for p in sorted(set(was) & set(now))]


def _same_bytes(a: LockedFile, b: LockedFile) -> bool:
    return (a.sha256, a.size) == (b.sha256, b.size)


def _repo_moves(both: list[tuple[LockedFile, LockedFile]]) -> tuple[RepoMove, ...]:
    """Per repo (and revision its files were asked at) of the files in both locks: its commit move,
    when all its files were at one commit before and are at one now, and those differ."""
    commits: dict[str, tuple[set[str], set[str]]] = {}
    for old, new in both:
        was, now = old.hub, new.hub
        if was is None or now is None or was.commit is None or now.commit is None:
            continue
        prefix = "" if now.repo_type == "model" else f"{now.repo_type}s/"
        at = "" if new.revision in (None, "main") else f"@{new.revision}"
        olds, news = commits.setdefault(f"{prefix}{now.repo}{at}", (set(), set()))
        olds.add(was.commit)
        news.add(now.commit)
    return tuple(
        RepoMove(repo, next(iter(olds)), next(iter(news)))
        for repo, (olds, news) in sorted(commits.items())
        if len(olds) == len(news) == 1 and olds != news
    )
