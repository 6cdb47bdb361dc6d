"""Catalogs and locks remembered by their exact bytes, so that a run that reads files unchanged
since one checked them (a readiness probe every few seconds) does not check them again, nor load
pydantic to do it.

What is remembered is what checking the bytes gave (the Catalog or Lock, and the catalog's
warnings), under a key that is a BLAKE2b of everything that result depends on: the file's bytes and
path, HOME (a signer's ``~/key.pem``), mdl's version and this memory's format, the Python version
(its TOML parser) and the size and mtime of the modules holding the rules. A changed byte is another
key: checked again, errors said as ever (a bad file is never remembered: checking it raised). The
memory is mdl's own (``<user cache dir>/mdl/checked/``, one entry per file path and mdl version,
replaced when the file changes), read and written as mdl's state is (mdl.store.confined: never
through a link, an entry another user made is not read); an entry that is unreadable, foreign,
corrupt, of another key or of a type this module does not build is not used (the file is checked),
and one that cannot be written is not written. It holds nothing the file does not say."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar, cast

from mdl.catalog.specs import Catalog, CatalogSettings, FileSpec, ModelSpec
from mdl.errors import CatalogError, CatalogWarning, MdlError
from mdl.lockfile.model import Lock, LockedFile, LockedModel
from mdl.outsidejson import read_json
from mdl.store import confined
from mdl.userfolders import user_folder
from mdl.version import __version__

log = logging.getLogger("mdl.lock")

FORMAT = 1  # this memory's own format: a change here is a new number
# Rules whose change (an upgrade, an edit in a checkout) must not be met by an older result: every
# module of mdl's whose code a check runs (tests/lockfile/test_remembered.py holds it to that).
_RULES = (
    "buckets/_s3store.py",
    "buckets/folder.py",  # (a file:// mirror's store)
    "buckets/protocol.py",
    "buckets/registry.py",
    "buckets/s3.py",
    "catalog/_lines.py",
    "catalog/_schema.py",
    "catalog/files.py",
    "catalog/headers.py",
    "catalog/load.py",
    "catalog/settings.py",
    "catalog/specs.py",
    "lockfile/checked.py",
    "lockfile/io.py",
    "lockfile/model.py",
    "lockfile/ondisk.py",
    "paths.py",
    "redact.py",
    "setting.py",
    "signing/statement.py",
    "store/layout.py",
    "userfolders.py",
)
_PACKAGE = Path(__file__).resolve().parent.parent
# A file bigger than this is checked each time, not remembered: remembering costs memory of a
# few times the file (its entry, encoded and read back to compare), which the reader's own bound
# (tests/lockfile/test_lock_limits.py) does not allow for a big lock.
MAX_REMEMBERED = 1 << 20
_BUILT: dict[str, Callable[[], type]] = {
    "Catalog": lambda: Catalog,
    "CatalogSettings": lambda: CatalogSettings,
    "ModelSpec": lambda: ModelSpec,
    "FileSpec": lambda: FileSpec,
    "Lock": lambda: Lock,
    "LockedModel": lambda: LockedModel,
    "LockedFile": lambda: LockedFile,
    "Trust": lambda: _trust(),
}
_T = TypeVar("_T")


def _trust() -> type:
    from mdl.signing.statement import Trust  # (only a signed model's entry has one)

    return Trust


class _NotRemembered(ValueError):
    """A value of a type this memory does not keep exactly: it is not remembered."""


def load_catalog(path: Path) -> Catalog:
    """The catalog at ``path``, as :func:`mdl.catalog.load.parse_catalog` gives its text (its
    warnings said, its errors raised), checked only when these bytes were not checked before;
    CatalogError when it cannot be read or is not there."""
    from mdl.catalog.load import catalog_file_text

    text = catalog_file_text(path)
    if text is None:
        raise CatalogError(f"{path}: catalog not found")
    data = text.encode()
    said: list[str] = []

    def check() -> Catalog:
        from mdl.catalog.load import parse_catalog

        return parse_catalog(text, source=str(path), path=path, said=said)

    try:
        catalog, said = _recalled_or(Catalog, "catalog", path, data, check, said)
    finally:  # (a catalog with errors too: its warnings said beside them, not on the next run)
        for message in said:
            warnings.warn(message, CatalogWarning, stacklevel=2)
    return catalog


def recalled_catalog(path: Path) -> Catalog | None:
    """The catalog at ``path`` when these very bytes were checked before (what :func:`load_catalog`
    would give without checking them), else None. CatalogError when it cannot be read."""
    from mdl.catalog.load import catalog_file_text

    text = catalog_file_text(path)
    if not text:
        return None
    found = _recall(_entry("catalog", path), _key("catalog", path, text.encode()))
    return found[0] if found is not None and type(found[0]) is Catalog else None


def recalled_lock(path: Path, data: bytes, check: Callable[[], Lock]) -> Lock:
    """The lock the bytes ``data`` of ``path`` hold: remembered, else ``check()`` (and then
    remembered)."""
    return _recalled_or(Lock, "lock", path, data, check, [])[0]


def _recalled_or(
    kind: type[_T], name: str, path: Path, data: bytes, check: Callable[[], _T], said: list[str]
) -> tuple[_T, list[str]]:
    """(value, warnings) remembered for these bytes, else ``check()``'s (its warnings in
    ``said``), remembered when it can be kept exactly."""
    if len(data) > MAX_REMEMBERED:
        return check(), said
    key = _key(name, path, data)
    entry = _entry(name, path)
    found = _recall(entry, key)
    if found is not None and type(found[0]) is kind:
        return found[0], found[1]
    value = check()
    _remember(entry, key, value, said)
    return value, said


def _root() -> Path:
    return user_folder("cache") / "mdl"


def _entry(name: str, path: Path) -> Path:
    # one entry per file and mdl version: two installs probing one file do not take turns
    named = b"\0".join((name.encode(), os.fsencode(path), __version__.encode()))  # (any path)
    where = hashlib.blake2b(named, digest_size=16).hexdigest()
    return _root() / "checked" / f"{name}-{where}.json"


def _key(name: str, path: Path, data: bytes) -> str:
    h = hashlib.blake2b(digest_size=32)
    rules = []
    for rule in _RULES:
        try:
            found = (_PACKAGE / rule).stat()
            rules.append(f"{rule}:{found.st_size}:{found.st_mtime_ns}")
        except OSError:
            rules.append(f"{rule}:-")
    head = [str(FORMAT), __version__, sys.version, *rules, name, str(path)]
    head.append(os.environ.get("HOME", ""))  # Path.expanduser's ~ (a signer's key file)
    h.update(json.dumps(head).encode())
    h.update(data)
    return h.hexdigest()


def _recall(entry: Path, key: str) -> tuple[Any, list[str]] | None:
    """The value and warnings remembered at ``entry`` under ``key``; None when there is none, it
    cannot be read (foreign, a link, unreadable), it is of another key or corrupt."""
    try:
        raw = confined.read_bytes(entry.parent.parent, entry, limit=4 * MAX_REMEMBERED)
        doc: Any = read_json(raw, source=str(entry), limit=4 * MAX_REMEMBERED)
        if not isinstance(doc, dict) or doc.get("key") != key:
            return None
        said = doc["said"]
        if not isinstance(said, list) or not all(isinstance(m, str) for m in said):
            return None
        return _decode(doc["value"]), said
    except FileNotFoundError:
        return None
    except (OSError, MdlError, ValueError, TypeError, KeyError) as exc:
        log.debug("not using %s: %s", entry, exc)
        return None


def _remember(entry: Path, key: str, value: object, said: list[str]) -> None:
    """Keep ``value`` at ``entry`` under ``key`` when it comes back exactly as it is; anything
    in the way (a read-only home, a foreign entry that cannot be replaced) leaves it unwritten."""
    try:
        encoded = _encode(value)
        if _decode(encoded) != value:
            raise _NotRemembered("not kept exactly")
        doc = {"key": key, "said": said, "value": encoded}
        data = json.dumps(doc, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
        # the user's alone: a catalog may hold a credential as it is (a header, user:password)
        confined.write_atomic(entry.parent.parent, entry, data.encode(), mode=0o600)
    except (OSError, MdlError, ValueError, TypeError, RecursionError) as exc:
        log.debug("not remembering %s: %s", entry, exc)


def _encode(value: object) -> Any:
    """JSON for ``value``: scalars as they are, tuples as arrays, a Path as ``{"/": text}``, a
    dict as ``{"{}": [[key, value], …]}``, a dataclass of ``_BUILT`` as ``{"": its name, field:
    value, …}``; anything else is _NotRemembered."""
    kind = type(value)
    if value is None or kind in (str, int, bool, float):
        return value
    if kind is tuple:
        return [_encode(item) for item in cast("tuple[object, ...]", value)]
    if kind is type(_PACKAGE):
        return {"/": str(value)}
    if kind is dict:
        pairs = cast("dict[object, object]", value).items()
        return {"{}": [[_encode(k), _encode(v)] for k, v in pairs]}
    name = kind.__name__
    if name not in _BUILT or _BUILT[name]() is not kind:
        raise _NotRemembered(f"a {name}")
    fields = dataclasses.fields(cast(Any, value))
    if not all(f.init for f in fields):
        raise _NotRemembered(f"a {name} with a field its constructor does not take")
    return {"": name, **{f.name: _encode(getattr(value, f.name)) for f in fields}}


def _decode(doc: Any) -> Any:
    """The value :func:`_encode` wrote (arrays are tuples); ValueError/TypeError/KeyError when
    the document is not one it writes."""
    if doc is None or type(doc) in (str, int, bool, float):
        return doc
    if type(doc) is list:
        return tuple(_decode(item) for item in doc)
    if type(doc) is not dict:
        raise TypeError(f"not a value: {type(doc).__name__}")
    if doc.keys() == {"/"}:
        return Path(doc["/"])
    if doc.keys() == {"{}"}:
        return {_decode(k): _decode(v) for k, v in doc["{}"]}
    fields = dict(doc)
    built = _BUILT[fields.pop("")]()
    return built(**{name: _decode(value) for name, value in fields.items()})
