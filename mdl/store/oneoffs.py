"""What ``get`` fetched, for the commands that look and tidy (``list``, ``clean``, ``prune``): each
place the register names (``mdl.store.register``) judged from its own records and ``lstat``
(``states.judge``), never re-hashed."""

from __future__ import annotations

import contextlib
import logging
import os
import re
import stat as st
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mdl.errors import MdlError, UsageError
from mdl.store import confined
from mdl.store.filesystem import stat_file
from mdl.store.layout import BLOB_NAME, parse_hub_source, repo_folder
from mdl.store.records import ONE_OFF_CATALOG, FileRecord, ModelRecord
from mdl.store.register import CACHE, FOLDER, registered
from mdl.store.states import INSTALLED, MISSING, judge
from mdl.store.store import Store

if TYPE_CHECKING:  # (prune's module loads only for a removal: a plain get registers its folder)
    from mdl.store.prune import PruneReport

log = logging.getLogger("mdl.store")

PARTIAL, GONE = "partial", "gone"


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
    for place, kind, _ in registered():
        if kind == FOLDER:
            found.append(_folder(place))
        else:
            found.extend(_cached(place))
    return found


def one_off_folders() -> list[Path]:
    """The ``get -d`` folders the register names that are still there (``clean`` looks in them
    too)."""
    return [place for place, kind, _ in registered() if kind == FOLDER and place.is_dir()]


def forget_gone(*, dry_run: bool) -> list[Path]:
    """Drop from the register the places no longer there (removed with ``rm -rf``): the places
    dropped (``dry_run``: that would be)."""
    dropped = []
    for place, _, entry in registered():
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
        if (state := _state(path, entry)) == MISSING:
            gone.append(entry.path)
            continue
        if state == INSTALLED and (dry_run or _unlink_as_recorded(place, path, entry)):
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
    for known, _, entry in registered():
        if known == place:
            with contextlib.suppress(FileNotFoundError):
                entry.unlink()
