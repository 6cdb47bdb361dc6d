"""Key paths as users read them (``models.x.files[1].as``), TOML type names, and "did you mean" hints."""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Collection
from datetime import date, datetime, time

# A key path as tomllib's nesting gives it: table keys and array indexes, outermost first.
KeyPath = tuple[str | int, ...]

_BARE_KEY_RE = re.compile(r"[A-Za-z0-9_-]+")
# Names people bring from huggingface_hub, pooch or other tools; difflib cannot guess these.
ALIASES = {
    "allow_patterns": "include",
    "ignore_patterns": "exclude",
    "repo_id": "repo",
    "branch": "revision",
    "rev": "revision",
    "ref": "revision",
    "type": "repo_type",
    "hash": "sha256",
    "checksum": "sha256",
    "sha": "sha256",
    "save_as": "as",
    "filename": "path",
    "file": "path",
    "dest_path": "as",
    "urls": "url",
}


def did_you_mean(word: str, choices: Collection[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest choice, or ``""``."""
    alias = ALIASES.get(word)
    if alias is not None and alias in choices:
        return f" (did you mean {alias!r}?)"
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def format_key(key: str) -> str:
    """A key as TOML writes it: bare when it can be, else quoted."""
    return key if _BARE_KEY_RE.fullmatch(key) else json.dumps(key)


def format_path(path: KeyPath) -> str:
    """``("models", "x", "files", 1, "as")`` → ``models.x.files[1].as``."""
    parts = (f"[{part}]" if isinstance(part, int) else f".{format_key(part)}" for part in path)
    return "".join(parts).removeprefix(".")


def toml_type(value: object) -> str:
    """The TOML name of a value tomllib read, for "must be X, got Y" messages."""
    return _TOML_TYPES.get(type(value), type(value).__name__)


_TOML_TYPES: dict[type, str] = {
    bool: "boolean",
    int: "integer",
    float: "float",
    str: "string",
    list: "array",
    dict: "table",
    datetime: "datetime",
    date: "date",
    time: "time",
}
