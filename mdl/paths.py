"""Validate untrusted relative paths (catalog entries, Hub listings, URLs) before they touch the disk."""

from __future__ import annotations

import re
import unicodedata
from urllib.parse import unquote, urlsplit

from mdl.errors import UnsafePathError

# "C:x" is relative to drive C's current folder and "C:/x" is absolute on Windows: either escapes the folder.
_DRIVE_RE = re.compile(r"^[A-Za-z]:")
_MAX_SHOWN = 120


def _shown(value: str) -> str:
    """``repr`` of a value, shortened, so an error stays one readable line (repr escapes control chars)."""
    if len(value) > _MAX_SHOWN:
        value = value[:_MAX_SHOWN] + "…"
    return repr(value)


def _unsafe(value: str, *, where: str, reason: str) -> UnsafePathError:
    """The one error shape for every rejected path."""
    return UnsafePathError(f"{where}: must be a relative path inside the folder, got {_shown(value)} ({reason})")


def safe_relative_path(value: str, *, where: str) -> str:
    """Return ``value`` as a normalised relative POSIX path, or raise UnsafePathError naming ``where``."""
    if not value:
        raise _unsafe(value, where=where, reason="it is empty")
    # Category Cc covers C0, DEL and C1: NUL truncates paths in C APIs, the rest garble terminals and logs.
    if any(unicodedata.category(ch) == "Cc" for ch in value):
        raise _unsafe(value, where=where, reason="it contains a control character")
    if "\\" in value:
        # A backslash is a separator on Windows, so 'a\\..\\..\\x' would climb out there.
        raise _unsafe(value, where=where, reason="it contains a backslash; use '/'")
    if value.startswith("/"):
        raise _unsafe(value, where=where, reason="it is absolute")
    if _DRIVE_RE.match(value):
        raise _unsafe(value, where=where, reason="it starts with a drive letter")
    normalised = value
    # A leading "./" is a common, harmless spelling; anything else odd is rejected rather than guessed at.
    while normalised.startswith("./"):
        normalised = normalised[2:]
    if not normalised:
        raise _unsafe(value, where=where, reason="it names no file")
    parts = normalised.split("/")
    if ".." in parts:
        raise _unsafe(value, where=where, reason="it climbs out with '..'")
    if any(part in ("", ".") for part in parts):
        raise _unsafe(value, where=where, reason="it has an empty or '.' component")
    return normalised


# Device names Windows opens instead of a file, in any case and with any extension ("nul.txt" is NUL too);
# the superscript digits count as well (learn.microsoft.com: "Naming Files, Paths, and Namespaces").
_RESERVED_NAMES = frozenset(
    {"CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$"}
    | {f"{dev}{n}" for dev in ("COM", "LPT") for n in (*"123456789", "¹", "²", "³")}
)
_MAX_NAME_BYTES = 255  # NAME_MAX on Linux and macOS, in bytes of the encoded name
_STATE_DIR = ".mdl"


def _not_plain(value: str, *, where: str, reason: str) -> UnsafePathError:
    """The one error shape for a rejected file name."""
    return UnsafePathError(f"{where}: must be a plain file name, got {_shown(value)} ({reason})")


def safe_file_name(value: str, *, where: str) -> str:
    """Return ``value`` if it is one plain file name, safe to create in any folder, else raise UnsafePathError.

    Stricter than :func:`safe_relative_path`: no separators at all, nothing Windows would read as a device
    or a drive, and never mdl's own state folder.
    """
    if not value:
        raise _not_plain(value, where=where, reason="it is empty")
    if any(unicodedata.category(ch) in ("Cc", "Zl", "Zp") for ch in value):
        raise _not_plain(value, where=where, reason="it contains a control character")
    if any(unicodedata.category(ch) == "Cf" for ch in value):
        # Invisible or direction-reversing characters: "x\u202etxt.exe" shows as "xexe.txt".
        raise _not_plain(value, where=where, reason="it contains an invisible formatting character")
    if any(unicodedata.category(ch) == "Cs" for ch in value):
        # JSON can carry a lone surrogate ("\\ud800"); no file system can store it.
        raise _not_plain(value, where=where, reason="it is not valid Unicode")
    if "/" in value or "\\" in value:
        raise _not_plain(value, where=where, reason="it contains a path separator")
    if value == ".":
        raise _not_plain(value, where=where, reason="it names no file")
    if ".." in value:
        # '..' climbs out; names merely containing it ('a..b') are refused too rather than reasoned about.
        raise _not_plain(value, where=where, reason="it contains '..'")
    if ":" in value:
        # 'C:x' is relative to drive C on Windows, and 'a:b' writes an NTFS alternate data stream.
        raise _not_plain(value, where=where, reason="it contains ':' (a drive letter or a stream name)")
    if value[-1] in ". ":
        # Windows drops trailing dots and spaces, so 'a.bin.' would silently become 'a.bin'.
        raise _not_plain(value, where=where, reason="it ends with a dot or a space")
    if value.split(".", 1)[0].rstrip(" ").upper() in _RESERVED_NAMES:
        raise _not_plain(value, where=where, reason="it is a reserved device name on Windows")
    if value.casefold() == _STATE_DIR:
        raise _not_plain(value, where=where, reason="it is mdl's own state folder")
    if len(value.encode("utf-8")) > _MAX_NAME_BYTES:
        raise _not_plain(value, where=where, reason=f"it is longer than {_MAX_NAME_BYTES} bytes")
    return value


def url_basename(url: str, *, where: str) -> str:
    """The URL's last path segment, percent-decoded and validated as a file name, or UnsafePathError."""
    parts = urlsplit(url)
    # Never echo the query: it may carry a signature or token.
    shown = f"{parts.scheme}://{parts.hostname or ''}{parts.path}" if parts.scheme else parts.path
    segment = parts.path.rsplit("/", 1)[-1]
    if not segment:
        raise UnsafePathError(f"{where}: cannot take a file name from {_shown(shown)}: the URL path ends without one")
    name = unquote(segment)
    if "/" in name:
        # '%2F' would turn one segment into nested folders; a file name is asked for, so refuse.
        raise _unsafe(name, where=where, reason="the URL's last segment decodes to a path with '/'")
    return safe_relative_path(name, where=where)
