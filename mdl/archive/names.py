"""Portable, safe archive entry names: the one rule set that pack enforces and unpack rejects against."""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable

from mdl.errors import UnsafePathError
from mdl.paths import DRIVE_RE, RESERVED_NAMES, path_problem, safe_file_name

MANIFEST_NAME = "mdl-manifest.json"  # inside the archive's top-level folder
MAX_NAME_BYTES = 1024  # well under PATH_MAX once joined to a destination folder


def name_problem(name: str) -> str | None:
    """Why ``name`` (a ``/``-separated path inside an archive) is unsafe or unportable, or None."""
    refused = (
        (not name, "empty name"),
        (any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in name), "control character (NUL, newline, ...) in name"),
        ("\\" in name, "backslash in name"),
        (name.startswith("/"), "absolute path"),
        (DRIVE_RE.match(name) is not None, "drive letter"),
    )
    # Then the rule pull and get apply too (bidi, separators, length with temp name).
    if problem := next((why for bad, why in refused if bad), None) or path_problem(name):
        return problem
    if ":" in name:  # a drive or an NTFS alternate data stream on Windows
        return "colon in name"
    for part in name.split("/"):
        if part[-1] in ". ":
            return "component ending in a dot or space"
        if part.split(".", 1)[0].rstrip(" ").upper() in RESERVED_NAMES:
            return "reserved device name"
        try:
            safe_file_name(part, where="path component")
        except UnsafePathError as exc:
            return exc.message
    if len(name.encode("utf-8")) > MAX_NAME_BYTES:
        return f"name longer than {MAX_NAME_BYTES} bytes"
    return None


def collision_key(name: str) -> str:
    """The key under which two names land on the same file on a case-insensitive, normalising filesystem."""
    return unicodedata.normalize("NFC", unicodedata.normalize("NFC", name).casefold())


def first_twin(names: Iterable[str]) -> tuple[str, str] | None:
    """The first two spellings (``top/Dir/a``, ``top/dir/b``) that a case-folding, normalising filesystem merges."""
    spelled: dict[str, str] = {}  # collision key of a path prefix → its first spelling
    for name in names:
        parts = name.strip("/").split("/")
        for depth in range(1, len(parts) + 1):
            prefix = "/".join(parts[:depth])
            first = spelled.setdefault(collision_key(prefix), prefix)
            if first != prefix:
                return first, prefix
    return None
