"""What the endpoint offers: each served model's files as objects ``<model>/<path>``, with the
sizes its record expects before the bytes arrive, and the bytes of a file only once they verified
(its record says so and the file on disk is still the one verified). Judged by the store's one
state function (mdl.store.inventory), never by a name or a size alone. Before that, a part of a
file this process fetches with a trusted hash for each range leaves once every range it touches
verified, checked again as read (``Early``). Every wait of a request is here (``described``: for
what an answer says; ``read``: for the bytes it sends); the S3 API only reads the request."""

from __future__ import annotations

import itertools
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path

from mdl.catalog.specs import ModelSpec
from mdl.errors import MdlError, UnsafePathError
from mdl.outsidejson import read_json
from mdl.store.confined import open_file, read_bytes, write_atomic
from mdl.store.inventory import LocalFile, model_status
from mdl.store.layout import Layout
from mdl.store.states import INSTALLED
from mdl.transfer import ranges
from mdl.wait import Wait

log = logging.getLogger("mdl.serve")
# seconds between two looks at a file a loader waits on (a record write is the news)
LOOK_EVERY = 0.1
# seconds a request waits for the look at a model under way (past them: 503, a client retries)
LOOK_WAIT = 10.0


@dataclass(frozen=True)
class ShelfObject:
    """One file as an S3 object: ``verified`` when its bytes may leave (then ``final`` holds them,
    as recorded: ``size`` bytes, modified at ``mtime_ns``)."""

    key: str
    model: str
    path: str
    size: int | None
    etag: str
    mtime_ns: int | None
    verified: bool
    state: str  # the store's word for it (installed, partial, missing, modified, ...)
    final: Path
    sha256: str | None
    # its Last-Modified (whole seconds since the epoch): one for one ETag (see Shelf._dated)
    modified: int = 0


class Early:
    """Bytes of a file not verified whole yet, released as its ranges verified (``windows``: its
    check's, ``RangeCheck.windows``), a range at a time while it is sent (its bytes held in the
    pull's read budget); the bytes stop short when a range is taken back or its file refused (the
    answer is then cut, never a byte that did not verify). ``close`` once sent."""

    def __init__(
        self, obj: ShelfObject, windows: Callable[[], Generator[memoryview, None, None]]
    ) -> None:
        self.obj, self._windows = obj, windows()
        self._first = next(self._windows, None)  # read now: None, not releasable yet

    @property
    def ready(self) -> bool:
        return self._first is not None

    def __iter__(self) -> Iterator[memoryview]:
        if self._first is not None:
            first, self._first = self._first, None
            yield first
            yield from self._windows

    def close(self) -> None:
        self._first = None
        self._windows.close()


def _windows(
    releases: ranges.Releases | None,
    part_paths: Sequence[Path],
    start: int,
    end: int,
    wait: Wait,
    verified: Wait,
    sha256: str | None = None,
) -> Generator[memoryview, None, None]:
    """Bytes ``[start, end)`` of the file (``sha256``) a fetch of this pull checks range by range
    (its ``.part`` one of ``part_paths``), as its check gives them (``RangeCheck.windows``);
    nothing when no fetch checks it. Holds a share of the check (its descriptor open) till it
    ends."""
    shared = (releases.share(p, sha256) for p in part_paths) if releases is not None else ()
    check = next(filter(None, shared), None)
    if check is None:
        return
    try:
        yield from check.windows(start, end, wait, verified)
    finally:
        check.unshare()


class NotServed(Exception):
    """Why an object's bytes are not served: an S3 error code, its HTTP status and a message."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


class Shelf:
    """The served models of one destination, as S3 objects, looked at afresh for each request (a
    pull in this or another process changes them), one look at a time however many ask (see
    _Looks); ``on_wait(model, path)`` hears each file a loader waits on, ``stop`` ends every
    wait."""

    def __init__(
        self,
        specs: Sequence[ModelSpec],
        layout: Layout,
        *,
        on_wait: Callable[[str, str], None] | None = None,
        planned: threading.Event | None = None,
        releases: ranges.Releases | None = None,
        stop: threading.Event,
    ) -> None:
        self._specs = {spec.name: spec for spec in specs}
        self._planned = planned
        self._layout = layout
        self._on_wait = on_wait
        self._lock = threading.Lock()
        self._failed: dict[str, str] = {}  # key → why its bytes never verified (this run's pull)
        self._dates = _Dates(layout.plain.dest, layout.plain.state_dir / "serve-dates.json")
        self._looks = _Looks(self._look, stop)
        self.pulling = threading.Event()  # a pull of this run may still bring files
        self._releases = releases  # the range checks of this run's pull (None: no pull)

    def settle(self, wait: Wait) -> None:
        """Wait (while ``wait`` lasts) while this run's pull does not know the models' files
        yet: a listing before then would miss them, a key would be unknown. NotServed when it
        never does in time."""
        while self._planned is not None and not self._planned.is_set():
            if not wait.pause(LOOK_EVERY, self._planned):
                raise NotServed(503, "ServiceUnavailable", "the models' files are not known yet")

    @property
    def models(self) -> list[str]:
        return sorted(self._specs)

    def objects(self) -> list[ShelfObject]:
        """Every object, sorted by key as S3 lists them (by UTF-8 bytes); a model whose folder
        every command refuses (a planted link or folder: UnsafePathError) is left out, said in the
        log, so that one ``mkdir`` beside a model stops no loader of the others (its keys are
        refused by name: ``lookup``)."""
        found: list[ShelfObject] = []
        for name in self._specs:
            try:
                found.extend(self._looks.of(name))
            except UnsafePathError as exc:
                log.warning("%s: left out of the listing: %s", name, exc.message)
        return sorted(found, key=lambda obj: obj.key.encode())

    def lookup(self, key: str) -> ShelfObject | None:
        """The object at ``key`` (None: no such object). Only an exact key of a served model's file
        is ever one: a key is matched, never joined to a path."""
        model, _, path = key.partition("/")
        if model not in self._specs or not path:
            return None
        found = next((obj for obj in self._looks.of(model) if obj.path == path), None)
        if found is not None and (wrong := self.released_wrong(model, path)):
            shown = ", ".join(f"{start}-{end - 1}" for start, end in wrong)
            raise NotServed(
                403,
                "InvalidObjectState",
                f"{key}: bytes {shown} left before the file verified, and its hash then refused"
                " them: a loader may have read wrong bytes; start it again with a new mdl serve",
            )
        return found

    def released_wrong(self, model: str, path: str) -> tuple[tuple[int, int], ...]:
        """The ranges of the file that left before its whole-file hash refused them (in this
        server's life): from then on, every request for it is refused."""
        if (releases := self._releases) is None:
            return ()
        return next(filter(None, map(releases.wrong, self._part_paths(model, path))), ())

    def fail(self, model: str, path: str, why: str) -> None:
        """This run's pull gave up on the file: a loader waiting on it is told ``why``."""
        with self._lock:
            self._failed[f"{model}/{path}"] = why

    def described(self, key: str, *, etag: bool, wait: Wait) -> ShelfObject:
        """The object once what an answer says of it holds till its bytes leave: its size known
        and, with ``etag``, its ETag and date the ones it keeps (its sha256 known); before that,
        waiting for its bytes to verify, as ``read`` does."""
        for found in self._awaited(key, wait):
            if found.verified or (
                found.size is not None and (found.sha256 is not None or not etag)
            ):
                return found
        raise AssertionError("unreachable: the looks end in NotServed")

    def read(self, obj: ShelfObject, span: tuple[int, int] | None, wait: Wait) -> int | Early:
        """What an answer about ``obj`` sends, waiting (looking every LOOK_EVERY s) while
        ``wait`` lasts: a read-only descriptor of its verified file (looked at again
        when it changed since); or, for bytes ``span`` (``[start, end)``) of a file whose sha256
        is known and that a fetch of this process checks range by range, those bytes as soon as
        every range they touch verified (``Early``). NotServed (503) when neither comes in time,
        or the file became another one than ``obj`` (the answer would not be its)."""
        for found in self._awaited(obj.key, wait, first=obj):
            same = (found.etag, found.size) == (obj.etag, obj.size)
            if found.verified:
                if not same:  # another version verified: this answer is not its
                    raise NotServed(503, "ServiceUnavailable", f"{obj.key} changed: try again")
                fd = self.open(found)
                if fd is not None:
                    return fd
            elif same and span is not None and found.sha256 is not None:
                early = self._early(found, span, wait)
                if early is not None:
                    return early
        raise AssertionError("unreachable: the looks end in NotServed")

    def _awaited(
        self, key: str, wait: Wait, first: ShelfObject | None = None
    ) -> Iterator[ShelfObject]:
        """The object at ``key`` (``first``, then) as looked at every LOOK_EVERY s, till the
        caller has what it waits for; the first look it does not end tells ``on_wait``.
        NotServed once ``wait`` is over (503, saying why), when there is no such
        object (404), or when its bytes will never verify (403)."""
        told = False
        while True:
            look = wait.child(LOOK_EVERY)
            found = first or self._found(key)
            first = None
            yield found
            if not found.verified:
                self._refuse_if_never(found)
                if not told:
                    log.info("a loader waits for %s (%s, not verified yet)", key, found.state)
                    if self._on_wait is not None:
                        self._on_wait(found.model, found.path)
                    told = True
            if not wait.pause(look.left()):
                raise NotServed(503, "ServiceUnavailable", self._not_yet(found))

    def _not_yet(self, obj: ShelfObject) -> str:
        """Why a wait for ``obj``'s bytes ended without them."""
        if obj.verified:  # (opened, it was not the file recorded: changed since, or gone)
            return f"{obj.key} is not the file that verified: try again"
        doing = "still being fetched" if self.pulling.is_set() else "no pull brings it"
        return f"{obj.key} is not verified yet ({obj.state}; {doing}): try again later"

    def _found(self, key: str) -> ShelfObject:
        """The object at ``key`` as looked at now; NotServed (404) when there is none."""
        obj = self.lookup(key)
        if obj is None:
            raise NotServed(404, "NoSuchKey", "The specified key does not exist.")
        return obj

    def _refuse_if_never(self, obj: ShelfObject) -> None:
        """NotServed (403) when the bytes of ``obj`` (not verified) will never verify."""
        with self._lock:
            why = self._failed.get(obj.key)
        if why is not None:
            raise NotServed(403, "InvalidObjectState", f"{obj.key} never verified: {why}")
        if obj.state == INSTALLED:  # recorded, yet not checked against any hash
            raise NotServed(
                403,
                "InvalidObjectState",
                f"{obj.key} has no known hash to verify it against: mdl serves verified bytes",
            )

    def _early(self, obj: ShelfObject, span: tuple[int, int], wait: Wait) -> Early | None:
        """``span`` of ``obj`` once every range it touches verified, waiting on the check of its
        fetch for LOOK_EVERY s at most; None: not by then (or no fetch of this process checks it
        by range). Each range then waits for room to be read till the request's ``wait`` ends."""
        paths = self._part_paths(obj.model, obj.path)
        verified = wait.child(LOOK_EVERY)
        windows = partial(_windows, self._releases, paths, *span, wait, verified, obj.sha256)
        early = Early(obj, windows)
        if early.ready:
            log.debug("%s: bytes %d-%d leave verified by range", obj.key, *span)
            return early
        early.close()
        return None

    def _part_paths(self, model: str, path: str) -> list[Path]:
        """Where a fetch of the file keeps its bytes till they verify, in each store."""
        return [store.part_paths(model, path)[0] for store in self._layout.stores]

    def open(self, obj: ShelfObject) -> int | None:
        """A read-only descriptor of the verified bytes, or None: the file is no longer the one
        verified (replaced, changed or gone since it was looked at). Opened without following a
        link, and checked by ``fstat`` after opening: a swap in between is caught."""
        root = self._root(obj.final)
        try:
            fd = open_file(root, obj.final, os.O_RDONLY)
        except (OSError, MdlError):
            return None
        found = os.fstat(fd)
        if (found.st_size, found.st_mtime_ns) != (obj.size, obj.mtime_ns):
            os.close(fd)
            return None
        return fd

    def _root(self, final: Path) -> Path:
        for store in self._layout.stores:
            if final.is_relative_to(store.dest):
                return store.dest
        return self._layout.plain.dest

    def _look(self, model: str) -> list[ShelfObject]:
        """The model's objects, as the store's state function says now."""
        status = model_status(self._specs[model], self._layout)
        return self._dates.dated([_as_object(model, file) for file in status.files])


class _Dates:
    """The Last-Modified first given to each (key, ETag): the second its verified file was
    modified in, or, before it verified, the second it was first looked at. A client that read it
    while it downloaded, or before ``mdl serve`` restarted, finds it unchanged (RFC 9110 §8.8.2:
    rclone's copies, If-Range, If-Unmodified-Since); a new version is a new date. Kept in the
    destination's state (``serve-dates.json``) for the next run; a folder this user cannot write
    keeps them for this run (said in the log)."""

    MOST = 100_000  # dates kept: the newest
    LIMIT = 64 << 20  # bytes of the file read back

    def __init__(self, root: Path, path: Path) -> None:
        self._root, self._path, self._lock = root, path, threading.Lock()
        self._given: dict[tuple[str, str], int] = {}
        try:
            data = read_bytes(root, path, limit=self.LIMIT)
            rows = read_json(data, source=str(path), limit=self.LIMIT)
        except FileNotFoundError:
            rows = []
        except (OSError, MdlError) as exc:
            log.info("serve: not using %s: %s", path, exc)
            rows = []
        for row in rows if isinstance(rows, list) else ():
            if isinstance(row, list) and len(row) == 3:
                key, etag, when = row
                if isinstance(key, str) and isinstance(etag, str) and type(when) is int:
                    self._given[(key, etag)] = when

    def dated(self, objects: list[ShelfObject]) -> list[ShelfObject]:
        """``objects`` with their dates; those first given now are kept for the next run."""
        now, found = int(time.time()), []
        with self._lock:
            before = len(self._given)
            for obj in objects:
                first = obj.mtime_ns // 10**9 if obj.verified and obj.mtime_ns is not None else now
                found.append(
                    replace(obj, modified=self._given.setdefault((obj.key, obj.etag), first))
                )
            if len(self._given) != before:
                self._save()
        return found

    def _save(self) -> None:
        rows = sorted(self._given.items(), key=lambda item: item[1])[-self.MOST :]
        self._given = dict(rows)
        data = json.dumps([[key, etag, when] for (key, etag), when in rows])
        try:
            write_atomic(self._root, self._path, data.encode())
        except OSError as exc:
            log.info("serve: dates not kept for the next run in %s: %s", self._path, exc)


class _Looks:
    """One look at a model's files at a time, however many requests ask (a loader's come by the
    hundred at once; each look lstats every file). A request takes the first look that began
    after it asked, never an older one: what verified before it asked is verified in its answer
    (and a byte served is checked against its record when opened, whatever the look said). While
    another look runs, it waits for it: NotServed (503) once ``stop`` is set or LOOK_WAIT has
    passed."""

    def __init__(
        self,
        look: Callable[[str], list[ShelfObject]],
        stop: threading.Event,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._look, self._stop, self._clock = look, stop, clock
        self._changed = threading.Condition()  # told when a look ends
        self._tickets = itertools.count()  # (taken under the condition's lock)
        self._running: set[str] = set()  # the models being looked at
        self._last: dict[str, tuple[int, list[ShelfObject]]] = {}  # model → (its ticket, objects)

    def of(self, model: str) -> list[ShelfObject]:
        """The model's objects, as a look that began after this call says."""
        wait = Wait.within(LOOK_WAIT, self._stop, self._clock)
        with self._changed:
            asked = next(self._tickets)
            if model in self._running:
                log.debug("a request waits for the look at %s under way", model)
            while model in self._running:
                if not wait.pause(LOOK_EVERY, self._changed):
                    why = f"the files of {model} are slow to look at: try again"
                    raise NotServed(503, "ServiceUnavailable", why)
                ticket, found = self._last.get(model, (asked, []))
                if ticket > asked:
                    return found
            ticket = next(self._tickets)
            self._running.add(model)
        try:
            found = self._look(model)
            self._last[model] = (ticket, found)
            return found
        finally:
            with self._changed:
                self._running.discard(model)
                self._changed.notify_all()


def _as_object(model: str, file: LocalFile) -> ShelfObject:
    recorded = file.recorded
    verified = bool(
        file.state == INSTALLED and recorded is not None and recorded.verified and file.placed
    )
    size = recorded.size if verified and recorded is not None else file.size
    sha256 = recorded.sha256 if verified and recorded is not None else file.expected_sha256
    return ShelfObject(
        key=f"{model}/{file.path}",
        model=model,
        path=file.path,
        size=size,
        etag=f'"{sha256 or _unknown_etag(file)}"',
        mtime_ns=recorded.mtime_ns if recorded is not None else None,
        verified=verified,
        state=file.state,
        final=file.final,
        sha256=sha256,
    )


def _unknown_etag(file: LocalFile) -> str:
    # an ETag is not an MD5 here (clients check an MD5-like one against the body): the sha256 when
    # known, else a name of the version expected
    return f"pending-{file.size if file.size is not None else 'unknown'}"
