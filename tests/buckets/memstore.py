"""An object store in memory for tests: the whole `Writer` protocol (mdl/buckets/protocol.py)
with a store clock the test moves by hand, a store that ignores conditional headers, and failures
on demand. It stands in for the store only: the code under test runs as it would against S3.

    store = MemoryStore()                 # honours If-None-Match / If-Match, clock at 1.7e9
    store.advance(31)                     # the store's clock, not the machine's
    store.fail_next("replace", 2)         # the next two replaces raise NetworkError
    store.before = lambda method, uri: …  # runs before each call (interleave another machine)
    MemoryStore(ignore_conditions=True)   # create/replace write whatever is there
    MemoryStore(ignore_if_match=True)     # replace writes whatever is there (create honours)

Import it as ``from buckets.memstore import MemoryStore`` (tests/ is on the path).
"""

from __future__ import annotations

import hashlib
import threading
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

from mdl.buckets.protocol import LEGACY_MARK, Listed, Seen, Writer, authorship, mark_text
from mdl.errors import IntegrityError, NetworkError

METHODS = (
    "head",
    "read",
    "create",
    "replace",
    "delete",
    "upload",
    "assemble",
    "owned",
    "listing",
    "now",
)


@dataclass(frozen=True)
class Stored:
    """One object: its bytes, its ETag (as S3's: the MD5 of the bytes, quoted) and when the
    store's clock last saw it written."""

    data: bytes
    etag: str
    modified: float
    # mdl's mark (``mark_text``): set by ``upload`` (and a marked create or replace), as S3's metadata; LEGACY_MARK: one
    # bound to the object that names no side (a folder's mark of mdl 0.6)
    mark: str | None = None


class MemoryStore:
    """A thread-safe in-memory store implementing `Writer`: every call holds one lock, so each is
    atomic as a store's conditional write is. ETags are the MD5 of the body, as S3's are: two
    writes of the same bytes get the same ETag (the trap lease bodies must avoid)."""

    def __init__(
        self,
        *,
        clock: float = 1_700_000_000.0,
        ignore_conditions: bool = False,
        ignore_if_match: bool = False,
    ) -> None:
        self.clock = clock  # the store's clock (epoch seconds); only `advance` moves it
        # a store that ignores If-None-Match and If-Match: create and replace always write
        self.ignore_conditions = ignore_conditions
        # a store that honours If-None-Match and ignores If-Match: replace writes over any version
        self.ignore_if_match = ignore_if_match
        self.calls: Counter[str] = Counter()  # how often each method was called
        # runs before each call, outside the lock: a test interleaves another machine's steps
        self.before: Callable[[str, str], None] | None = None
        self._objects: dict[str, Stored] = {}
        self._failures: Counter[str] = Counter()
        self._lock = threading.Lock()

    # --- knobs for the test ---

    def advance(self, seconds: float) -> None:
        """Move the store's clock."""
        with self._lock:
            self.clock += seconds

    def fail_next(self, method: str, times: int = 1) -> None:
        """The next ``times`` calls of ``method`` raise NetworkError (as a reset connection)."""
        assert method in METHODS, method
        with self._lock:
            self._failures[method] += times

    def put(self, uri: str, data: bytes, *, marked: bool = False, side: str | None = None) -> Seen:
        """Write unconditionally (a test's setup, or another tool writing the bucket; ``marked``:
        as mdl uploads, with its mark: ``side``'s, or one that names no side)."""
        with self._lock:
            if not marked:
                return self._write(uri, data)
            sha256 = hashlib.sha256(data).hexdigest()
            said = mark_text(uri, sha256=sha256, size=len(data), side=side) if side else None
            return self._write(uri, data, mark=said or LEGACY_MARK)

    def copy(self, source: str, uri: str) -> Seen:
        """A server-side copy (S3 CopyObject, MetadataDirective=COPY): bytes and mark alike."""
        with self._lock:
            stored = self._objects[source]
            return self._write(uri, stored.data, mark=stored.mark)

    def objects(self) -> dict[str, bytes]:
        """Every object's bytes, by URI (a snapshot)."""
        with self._lock:
            return {uri: stored.data for uri, stored in self._objects.items()}

    # --- the Writer protocol ---

    def head(self, uri: str) -> Seen | None:
        with self._call("head", uri):
            stored = self._objects.get(uri)
            return None if stored is None else self._seen(stored)

    def read(self, uri: str, *, limit: int, aged: bool = True) -> tuple[bytes, Seen] | None:
        with self._call("read", uri):
            stored = self._objects.get(uri)
            return None if stored is None else (stored.data[: limit + 1], self._seen(stored))

    def create(self, uri: str, data: bytes, *, side: str | None = None) -> Seen | None:
        with self._call("create", uri):
            if uri in self._objects and not self.ignore_conditions:
                return None
            return self._write(uri, data, mark=_mark(uri, data, side))

    def replace(self, uri: str, data: bytes, *, etag: str, side: str | None = None) -> Seen | None:
        with self._call("replace", uri):
            stored = self._objects.get(uri)
            ignored = self.ignore_conditions or (self.ignore_if_match and stored is not None)
            if (stored is None or stored.etag != etag) and not ignored:
                return None
            return self._write(uri, data, mark=_mark(uri, data, side))

    def delete(self, uri: str, *, etag: str | None = None) -> bool:
        with self._call("delete", uri):
            stored = self._objects.get(uri)
            if stored is None or (etag is not None and stored.etag != etag):
                return False
            del self._objects[uri]
            return True

    def holds(self, uri: str, path: Path, *, size: int, sha256: str) -> bool:
        with self._call("holds", uri):
            stored = self._objects.get(uri)
            data = b"" if stored is None else stored.data
            return stored is not None and (len(data), hashlib.sha256(data).hexdigest()) == (
                size,
                sha256,
            )

    def upload(
        self,
        uri: str,
        path: Path,
        *,
        size: int,
        sha256: str,
        root: str,
        overwrite: bool = False,
        sent: Callable[[int], None] | None = None,
        side: str = "",
    ) -> bool:
        data = path.read_bytes()
        with self._call("upload", uri):
            # as S3 with a full-object checksum: bytes that do not match are never stored
            if len(data) != size or hashlib.sha256(data).hexdigest() != sha256:
                raise IntegrityError(f"{uri}: the bytes do not match their size and SHA-256")
            if uri in self._objects and not (self.ignore_conditions or overwrite):
                return False
            self._write(uri, data, mark=mark_text(uri, sha256=sha256, size=size, side=side))
            return True

    def assemble(
        self,
        uri: str,
        parts: Sequence[str],
        path: Path,
        *,
        size: int,
        sha256: str,
        root: str,
        side: str = "",
    ) -> bool | None:
        """As S3 assembles: the object is the parts joined in the store, only when they are the
        local file's bytes (None otherwise: the caller uploads), the file checked as ``upload``
        does."""
        data = path.read_bytes()
        with self._call("assemble", uri):
            if len(data) != size or hashlib.sha256(data).hexdigest() != sha256:
                raise IntegrityError(f"{uri}: the bytes do not match their size and SHA-256")
            stored = [self._objects.get(part) for part in parts]
            joined = b"".join(part.data for part in stored if part)
            if joined != data or None in stored:
                return None
            if uri in self._objects and not self.ignore_conditions:
                return False
            # the parts' bytes, as the store joins them
            self._write(uri, joined, mark=mark_text(uri, sha256=sha256, size=size, side=side))
            return True

    def owned(self, uri: str, *, root: str) -> Seen | None:
        with self._call("owned", uri):
            stored = self._objects.get(uri)
            if stored is None:
                return None
            old = stored.mark == LEGACY_MARK
            mark = authorship(stored.mark, where=uri, size=len(stored.data), old=old)
            return replace(self._seen(stored), mark=mark)

    def listing(self, prefix: str, *, most: int | None = None) -> Iterator[Listed]:
        with self._call("listing", prefix):
            found = [
                Listed(uri=uri, size=len(stored.data), modified=stored.modified)
                for uri, stored in sorted(self._objects.items())
                if uri.startswith(prefix)
            ]
        return iter(found)

    def abandoned(self, prefix: str, *, before: float, remove: bool) -> list[Listed]:
        return []  # every write here is whole or nothing: none is left midway

    def now(self) -> float:
        with self._call("now", ""):
            return self.clock

    # --- inside ---

    @contextmanager
    def _call(self, method: str, uri: str) -> Iterator[None]:
        """One call: the test's hook first, then atomic under the lock, counted, and failed when
        the test asked for it."""
        if self.before is not None:
            self.before(method, uri)
        with self._lock:
            self.calls[method] += 1
            if self._failures[method] > 0:
                self._failures[method] -= 1
                raise NetworkError(f"{method}: connection reset by peer (MemoryStore.fail_next)")
            yield

    def _write(self, uri: str, data: bytes, *, mark: str | None = None) -> Seen:
        etag = f'"{hashlib.md5(data).hexdigest()}"'
        stored = Stored(bytes(data), etag, self.clock, mark)
        self._objects[uri] = stored
        return self._seen(stored)

    def _seen(self, stored: Stored) -> Seen:
        return Seen(
            etag=stored.etag, size=len(stored.data), modified=stored.modified, now=self.clock
        )


def _mark(uri: str, data: bytes, side: str | None) -> str | None:
    """A small write's mark, as S3's metadata: when ``side`` is given."""
    if side is None:
        return None
    return mark_text(uri, sha256=hashlib.sha256(data).hexdigest(), size=len(data), side=side)


def as_writer(store: MemoryStore) -> Writer:
    """The store as the protocol types it (mypy checks here that it implements `Writer`)."""
    return store
