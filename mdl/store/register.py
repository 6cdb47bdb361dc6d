"""The register of the places ``get`` wrote into: ``<user data dir>/mdl/one-offs/<key>.json``, one
small file per folder a ``get -d`` saved into (or Hugging Face cache a ``get --layout hf-cache``
wrote). A get notes its place here (``remember``); ``mdl.store.oneoffs`` judges each place for
``list``, ``clean`` and ``prune``."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import stat as st
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mdl.errors import OutsideJSONError
from mdl.outsidejson import read_json
from mdl.store import confined
from mdl.store.filesystem import stat_file
from mdl.userfolders import user_folder

log = logging.getLogger("mdl.store")

FOLDER, CACHE = "folder", "hf-cache"  # the kinds of place a get wrote into
REGISTER = "one-offs"


def register_dir() -> Path:
    """``<user data dir>/mdl/one-offs`` (read at call time so tests can isolate it)."""
    return user_folder("data") / "mdl" / REGISTER


def remember(place: Path, *, kind: str) -> None:
    """Note that a get wrote into ``place`` (a folder, or the Hugging Face cache): idempotent,
    atomic; a register that cannot be written is a log line, never a failed get."""
    place = place.absolute()
    key = hashlib.sha1(f"{kind}\0{place}".encode()).hexdigest()[:16]
    root = register_dir()
    entry = root / f"{key}.json"
    try:
        if stat_file(entry) is not None:
            return
        data = json.dumps({"path": str(place), "kind": kind}).encode()
        root.mkdir(parents=True, exist_ok=True)
        confined.write_atomic(root, entry, data)
    except OSError as exc:
        log.warning("cannot note %s in %s: %s", place, root, exc.strerror or exc)


def registered() -> Iterator[tuple[Path, str, Path]]:
    """Every place the register names: (place, kind, its register entry); an unreadable entry is
    skipped (logged)."""
    root = register_dir()
    with contextlib.suppress(FileNotFoundError):
        for name, found in sorted(confined.entries(root, root)):
            if not (name.endswith(".json") and st.S_ISREG(found.st_mode)):
                continue
            try:
                data = confined.read_bytes(root, root / name, limit=1 << 16)
                raw: Any = read_json(data, source=str(root / name), limit=1 << 16)
                place, kind = Path(raw["path"]), raw["kind"]
                if not (place.is_absolute() and kind in (FOLDER, CACHE)):
                    raise ValueError(f"not a place: {raw!r}"[:200])
            except OutsideJSONError as exc:
                log.warning("ignoring %s", exc.message)
            except (OSError, ValueError, KeyError, TypeError) as exc:
                log.warning("ignoring %s: %s", root / name, exc)
                continue
            yield place, kind, root / name
