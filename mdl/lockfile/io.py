"""Reading and writing ``catalog.lock``: strict on the way in (it may come from anyone's pull request),
deterministic on the way out (sorted, no timestamps, one line per file, so a diff shows what moved)."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tomllib
from collections.abc import Iterator
from pathlib import Path

from pydantic import ConfigDict, TypeAdapter, ValidationError
from pydantic.dataclasses import dataclass

from mdl.errors import CatalogError, LocalFSError
from mdl.lockfile.model import LOCK_VERSION, Lock, LockedModel, validation_message
from mdl.store import write_atomic

_HEADER = (
    "# catalog.lock: written by `mdl lock` from the catalog beside it. Commit it; do not edit it by hand.\n"
    "# Every machine that runs `mdl pull --locked` gets exactly these commits and bytes.\n"
)


def read_lock(path: Path) -> Lock | None:
    """The lock at ``path``, None when there is none; CatalogError naming the file when it is bad."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise CatalogError(f"{path}: cannot read the lock: {exc.strerror or exc}") from exc
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CatalogError(f"{path}: not valid UTF-8") from exc
    return parse_lock(text, source=str(path))


def parse_lock(text: str, *, source: str = "catalog.lock") -> Lock:
    """Validate lock TOML; every problem names the file and the key (``model[2].files[3].sha256``)."""
    again = "run 'mdl lock' to write it again"
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise CatalogError(f"{source}: invalid TOML: {exc}", hint=again) from exc
    except RecursionError as exc:
        raise CatalogError(f"{source}: invalid TOML: nested too deeply") from exc
    version = document.get("version", LOCK_VERSION)
    if type(version) is int and version > LOCK_VERSION:
        raise CatalogError(
            f"{source}: lock version {version} is newer than this mdl understands ({LOCK_VERSION})",
            hint="upgrade mdl, or run 'mdl lock' to write a version 1 lock",
        )
    if version != LOCK_VERSION or type(version) is not int:
        raise CatalogError(f"{source}: version: must be {LOCK_VERSION}, got {version!r}", hint=again)
    try:
        models = _DOCUMENT.validate_python(document).model
    except ValidationError as exc:
        raise CatalogError(f"{source}: {validation_message(exc)}", hint=again) from None
    by_name: dict[str, LockedModel] = {}
    for index, model in enumerate(models):
        if model.name in by_name:
            raise CatalogError(f"{source}: model[{index}].name: {model.name!r} appears twice")
        by_name[model.name] = model
    return Lock(models=dict(sorted(by_name.items())))


@dataclass(frozen=True, config=ConfigDict(extra="forbid"))
class _Document:
    version: int  # checked above
    model: tuple[LockedModel, ...] = ()


_DOCUMENT = TypeAdapter(_Document)


def dump_lock(lock: Lock) -> str:
    """The lock as TOML text: byte-identical for the same content."""
    lines = [_HEADER, f"version = {LOCK_VERSION}\n"]
    for name in sorted(lock.models):
        lines.append(_model_text(lock.models[name]))
    return "".join(lines)


def write_lock(path: Path, lock: Lock) -> bool:
    """Write the lock atomically unless the file already holds exactly this text; True when it changed."""
    text = dump_lock(lock)
    try:
        if path.read_text(encoding="utf-8") == text:
            return False
    except (FileNotFoundError, UnicodeDecodeError):
        pass
    except OSError as exc:
        raise LocalFSError(f"{path}: cannot read the lock: {exc.strerror or exc}") from exc
    try:
        write_atomic(path.parent, path, text.encode())
    except OSError as exc:
        raise LocalFSError(f"{path}: cannot write the lock: {exc.strerror or exc}") from exc
    return True


@contextlib.contextmanager
def exclusive(path: Path) -> Iterator[None]:
    """``flock`` the lock's folder while a lock is read, merged and written: two runs at once never lose an entry."""
    try:
        fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    except OSError as exc:
        raise LocalFSError(f"{path.parent}: cannot open the lock's folder: {exc.strerror or exc}") from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # held for a read and a write: milliseconds
        yield
    finally:
        os.close(fd)  # releases the flock


def _model_text(model: LockedModel) -> str:
    out = ["\n[[model]]\n", *(f"{pair}\n" for pair in _pairs(model, ("name", "fingerprint", "revision", "commit")))]
    out.append("files = [\n")
    for f in sorted(model.files, key=lambda f: f.path):
        out.append(f"  {{ {', '.join(_pairs(f, ('path', 'size', 'sha256', 'source', 'git_oid', 'revision')))} }},\n")
    out.append("]\n")
    return "".join(out)


def _pairs(item: object, keys: tuple[str, ...]) -> list[str]:
    """``key = value`` for each of ``keys`` that ``item`` has (not None), in that order."""
    return [f"{key} = {_toml(getattr(item, key))}" for key in keys if getattr(item, key) is not None]


def _toml(value: str | int) -> str:
    """A TOML integer or basic string: JSON's escapes are TOML's, and TOML wants DEL escaped too."""
    return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")
