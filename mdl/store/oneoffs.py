"""What ``get`` fetched, for the commands that look and tidy (``list``, ``clean``, ``prune``): a
register of the places one-offs went, ``<user data dir>/mdl/one-offs/<key>.json``, one small file
per folder a ``get -d`` saved into (or Hugging Face cache a ``get --layout hf-cache`` wrote), each
place then judged from its own records and ``lstat`` (``states.judge``), never re-hashed."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import stat as st
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mdl.errors import MdlError, OutsideJSONError, UsageError
from mdl.outsidejson import read_json
from mdl.store import confined
from mdl.store.filesystem import stat_file
from mdl.store.layout import BLOB_NAME, parse_hub_source, repo_folder
from mdl.store.records import ONE_OFF_CATALOG, FileRecord, ModelRecord
from mdl.store.states import INSTALLED, MISSING, judge
from mdl.store.store import Store

if TYPE_CHECKING:  # (prune's module loads only for a removal: a plain get registers its folder)
    from mdl.store.prune import PruneReport

log = logging.getLogger("mdl.store")

FOLDER, CACHE = "folder", "hf-cache"  # the kinds of place a get wrote into
PARTIAL, GONE = "partial", "gone"
REGISTER = "one-offs"


def register_dir() -> Path:
    """``<user data dir>/mdl/one-offs`` (read at call time so tests can isolate it). On Linux by
    platformdirs' rule written out (importing it costs ~10 ms of every small get;
    tests/store/test_one_offs.py holds the two equal), elsewhere by platformdirs."""
    if sys.platform.startswith("linux"):
        base = os.environ.get("XDG_DATA_HOME", "")
        data = Path(base) if base.strip() else Path("~/.local/share").expanduser()
        return data / "mdl" / REGISTER
    import platformdirs

    return Path(platformdirs.user_data_dir()) / "mdl" / REGISTER


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


def _places() -> Iterator[tuple[Path, str, Path]]:
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


@dataclass(frozen=True)
class OneOff:
    """One place a get wrote into, as its records say it is now: a ``get -d`` folder (``name``
    empty) or one repo a get put in the Hugging Face cache (``name``: its cache folder)."""

    path: Path  # the folder, or the repo's folder in the cache
    kind: str
    name: str
    files: int  # recorded files
    size: int  # bytes of those still as recorded
    status: str  # installed (all as recorded), partial (some not), gone (no record, or no folder)
    earlier: int = 0  # bytes an older revision's files still hold (the cache; prune frees them)

    def to_json(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "kind": self.kind,
            "name": self.name or None,
            "files": self.files,
            "size": self.size,
            "status": self.status,
            "earlier": self.earlier,
        }


def one_offs() -> list[OneOff]:
    """What the register names, each place judged from its records."""
    found: list[OneOff] = []
    for place, kind, _ in _places():
        if kind == FOLDER:
            found.append(_folder(place))
        else:
            found.extend(_cached(place))
    return found


def one_off_folders() -> list[Path]:
    """The ``get -d`` folders the register names that are still there (``clean`` looks in them
    too)."""
    return [place for place, kind, _ in _places() if kind == FOLDER and place.is_dir()]


def forget_gone(*, dry_run: bool) -> list[Path]:
    """Drop from the register the places no longer there (removed with ``rm -rf``): the places
    dropped (``dry_run``: that would be)."""
    dropped = []
    for place, _, entry in _places():
        if not place.is_dir():
            if not dry_run:
                with contextlib.suppress(FileNotFoundError):
                    entry.unlink()
            dropped.append(place)
    return dropped


def _folder(place: Path) -> OneOff:
    record = Store(place).read_record("") if place.is_dir() else None
    if record is None:
        return OneOff(place, FOLDER, "", 0, 0, GONE)
    states = [(entry, _state(place / entry.path, entry)) for entry in record.files.values()]
    return _judged(place, FOLDER, "", states, 0)


def _cached(cache: Path) -> Iterator[OneOff]:
    """The repos a get put in the cache at ``cache``: their records name ``ONE_OFF_CATALOG``."""
    store = Store(cache, state_dir=cache / ".locks" / "mdl", keeps_revisions=True)
    records = store.state_dir / "records"
    with contextlib.suppress(FileNotFoundError, NotADirectoryError):
        for name, _ in sorted(confined.entries(cache, records)):
            record = store.read_record(name.removesuffix(".json"))
            if record is None or record.catalog != ONE_OFF_CATALOG:
                continue
            states = [(e, _state(_blob(cache, e), e)) for e in record.files.values()]
            earlier = earlier_bytes(record, cache)
            yield _judged(cache / record.name, CACHE, record.name, states, earlier)


def _judged(
    place: Path, kind: str, name: str, states: list[tuple[FileRecord, str]], earlier: int
) -> OneOff:
    size = sum(entry.size for entry, state in states if state == INSTALLED)
    intact = all(state == INSTALLED for _, state in states)
    status = INSTALLED if intact and states else PARTIAL if states else GONE
    return OneOff(place, kind, name, len(states), size, status, earlier)


def _state(path: Path | None, entry: FileRecord) -> str:
    found = None if path is None else stat_file(path)
    if found is None or not st.S_ISREG(found.st_mode):
        return MISSING
    return judge(entry, found.st_size, found.st_mtime_ns)


def _blob(cache: Path, entry: FileRecord) -> Path | None:
    """Where a cache file's bytes are: ``<repo>/blobs/<git blob id or sha256>``."""
    hub = parse_hub_source(entry.source)
    etag = entry.git_oid or entry.sha256
    if hub is None or not re.fullmatch(BLOB_NAME, etag):
        return None
    try:
        return cache / repo_folder(hub.repo, hub.repo_type) / "blobs" / etag
    except MdlError:  # a record edited by hand: no blob to look at
        return None


def _is_there(cache: Path, entry: FileRecord) -> bool:
    return _state(_blob(cache, entry), entry) == INSTALLED


def earlier_bytes(record: ModelRecord | None, cache: Path | None) -> int:
    """Bytes the files of a model's older revisions still hold in the cache, each blob once and
    none the current revision shares (0: plain)."""
    if record is None or cache is None:
        return 0
    current = {_blob(cache, e) for e in record.files.values()}
    older = {_blob(cache, e): e for e in record.earlier.values() if _is_there(cache, e)}
    return sum(e.size for blob, e in older.items() if blob not in current)


# why a file of a get's folder goes, or stays (``remove DIR``)
FETCHED = "saved by mdl get"
CHANGED = "changed since mdl get saved it"


def remove_fetched(place: Path, *, dry_run: bool) -> PruneReport:
    """What ``get`` saved in the folder ``place``, removed as ``prune`` removes: each file its
    record vouches for (same size and mtime, and the very file judged: ``unlink_checked``), then the
    record, the folders left empty (``place`` too) and the register's note; a file changed since
    stays, said (``kept``), with its record entry. A folder no get saved into is exit 2."""
    from mdl.store.prune import KeptPath, PrunedPath, PruneReport

    place = place.absolute()
    store = Store(place)
    if (record := store.read_record("")) is None:
        raise UsageError(
            f"{place}: no record of mdl get there (.mdl/get.json): nothing mdl saved to remove"
        )
    removed: list[PrunedPath] = []
    kept: list[KeptPath] = []
    gone: list[str] = []  # record entries of files no longer there
    for entry in sorted(record.files.values(), key=lambda e: e.path):
        path = place / entry.path
        state = _state(path, entry)
        if state == MISSING:
            gone.append(entry.path)
            continue
        if state != INSTALLED:
            kept.append(KeptPath(path, None, CHANGED))
        elif dry_run or _unlink_as_recorded(place, path, entry):
            removed.append(PrunedPath(path, entry.size, place.name, FETCHED))
        else:
            kept.append(KeptPath(path, None, CHANGED))
    if not dry_run:
        gone.extend(p.path.relative_to(place).as_posix() for p in removed)
        store.drop_from_record("", tuple(gone), whole=not kept)
        _tidy_folder(place, [p.path for p in removed], whole=not kept)
    return PruneReport(tuple(removed), tuple(kept), (), (), dry_run)


def _unlink_as_recorded(place: Path, path: Path, entry: FileRecord) -> bool:
    """Remove ``path`` only if the file taken away is the one its record vouches for."""

    def same(found: os.stat_result) -> bool:
        return (found.st_size, found.st_mtime_ns) == (entry.size, entry.mtime_ns)

    try:
        return confined.unlink_checked(place, path, same).removed
    except (OSError, MdlError) as exc:
        log.warning("%s: not removed: %s", path, exc)
        return False


def _tidy_folder(place: Path, removed: list[Path], *, whole: bool) -> None:
    """The folders the removed files leave empty, deepest first; with ``whole``, the state folder,
    ``place`` itself once empty, and the register's note of it."""
    folders = {up for path in removed for up in path.parents if up.is_relative_to(place)}
    for folder in sorted(folders - {place}, key=lambda f: len(f.parts), reverse=True):
        confined.rmdir_empty(place, folder)
    if not whole:
        return
    for sub in ("partial", "locks", "records", ""):
        confined.rmdir_empty(place, place / ".mdl" / sub)
    with contextlib.suppress(OSError):
        place.rmdir()
    for known, _, entry in _places():
        if known == place:
            with contextlib.suppress(FileNotFoundError):
                entry.unlink()
