"""What mdl needs of an object store (``s3://``, later a shared folder): one Protocol, one per
scheme."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from mdl.redact import Secrets


@dataclass(frozen=True)
class StoredObject:
    """One object named on the command line: its name, a GET URL for the engine, what the store
    says of it."""

    name: str  # the last part of its key: the file name ``mdl get`` saves it as
    url: str  # presigned: the engines fetch it as any URL, ignorant of buckets
    size: int | None
    sha256: str | None  # only when the store keeps a full-object SHA-256
    where: str  # the URI as shown (control characters escaped)


class Signer(Protocol):
    """Presigns GETs for one endpoint of a store, for one run (it may keep a client)."""

    def presign(self, uri: str) -> str:
        """A plain URL the engine can GET for ``uri`` (an object of this store)."""


class ObjectStore(Protocol):
    """An object store as mdl uses one: its URIs as ``get`` sources and mirror templates, a GET the
    engine can fetch (presigned), and what its failures mean."""

    scheme: str  # "s3": the store's URIs start with "s3://"
    # a catalog mirror of this store may name its own endpoint ({ url, endpoint })
    takes_endpoint: bool
    # mirror template values are URL-quoted when filled (False: the store quotes keys itself)
    quotes_values: bool

    def check_template(self, template: str, *, where: str) -> None:
        """Refuse (UsageError) a mirror template whose fixed part cannot name a place in the
        store."""

    def one_off(self, uri: str, *, secrets: Secrets | None) -> StoredObject:
        """A ``mdl get`` source: the object, asked of the store (exit 2 for a bad URI, 3, 4, 5)."""

    def signer(self, *, endpoint: str | None, secrets: Secrets | None) -> Signer:
        """A run's presigner for ``endpoint`` (None: the store's default); cheap until used."""

    def reason(self, text: str | None, status: int | None) -> str | None:
        """What the store's error reply to a presigned GET says, in a few words, or None."""

    def is_down(self, said: str) -> bool:
        """Whether a failure's text says the store cannot serve this mirror at all (keys, bucket),
        not only one object."""

    def writer(self, *, endpoint: str | None, secrets: Secrets | None, parts: int = 4) -> Writer:
        """The store, writable, for one run (``endpoint``: a catalog mirror's own; ``parts``:
        its uploads' parts in flight at once, where it sends parts)."""


# The write side: what filling a mirror (leases, uploads) and pruning one need of a store. A
# store's clock, never ours, judges a lease's age: machines' clocks may disagree by minutes.


@dataclass(frozen=True)
class Mark:
    """mdl's mark on an object it wrote, as ``authorship`` read it: whose it is."""

    sha256: str | None  # the version it marks (None: an older mdl's mark that does not say)
    side: str | None  # who wrote it: ``side_of`` its model's origin (None: an older mdl's)
    # bound to the name it was written under and its bytes; False: mdl 0.6's S3 mark ("1"), which a
    # server-side copy keeps: never enough for prune to remove it
    bound: bool = True

    def foreign(self, sides: Collection[str], sha256: str | None = None) -> bool:
        """Whether another catalog wrote it: a side not among ``sides`` (those of this catalog's
        model of the name) said (an older mark says none), for another version than ``sha256``
        (when given: the same bytes are no one's loss)."""
        other = self.side is not None and self.side not in sides
        return other and (sha256 is None or self.sha256 != sha256)


@dataclass(frozen=True)
class Seen:
    """An object as the store describes it (a HEAD, or a write's reply)."""

    etag: str  # the store's version tag: the value If-Match compares
    size: int
    modified: float  # when it was last written, by the store's clock (epoch seconds)
    # the store's clock when it answered (S3: the reply's Date; a folder: a fresh mtime on read,
    # the file's own mtime otherwise)
    now: float
    mark: Mark | None = None  # mdl's mark, bound to this name and these bytes (``authorship``)

    @property
    def marked(self) -> bool:
        """mdl wrote this very object, at this name (what prune may remove)."""
        return self.mark is not None and self.mark.bound


@dataclass(frozen=True)
class Listed:
    """One object under a prefix (``prune --mirror``)."""

    uri: str  # scheme://… as a mirror template fills it
    size: int
    modified: float  # the store's clock (epoch seconds)


MARK_VERSION = "2"
LEGACY_MARK = "1"  # mdl 0.3-0.6's S3 mark: bound to nothing, kept by every copy


def side_of(source: str) -> str:
    """Whose a file is, for marks: its model's origin (a Hub repo, a URL's folder) as 16 hex
    digits. Two catalogs that both name a model ``llm`` from other origins are two sides."""
    if source.startswith("hf://"):  # hf://[datasets/|spaces/]owner/name[@commit]/path
        typed = source.startswith(("hf://datasets/", "hf://spaces/"))
        origin = "/".join(source.partition("@")[0].split("/")[: 5 if typed else 4])
    else:
        origin = source.partition("?")[0].partition("#")[0].rpartition("/")[0]
    return hashlib.sha256(origin.encode()).hexdigest()[:16]


def _digest(where: str, sha256: str, size: int, side: str) -> str:
    said = f"mdl mark {MARK_VERSION}\0{where}\0{sha256}\0{size}\0{side}"
    return hashlib.sha256(said.encode()).hexdigest()[:32]


def mark_text(where: str, *, sha256: str, size: int, side: str) -> str:
    """The mark mdl puts on an object it writes at ``where`` (S3: its URI; a folder: its path
    below the mirror's folder): the version, whose, and a digest binding both to the name and the
    bytes (their size and SHA-256), so a copy anywhere else carries a mark that is not mdl's."""
    return f"{MARK_VERSION} {sha256} {side} {_digest(where, sha256, size, side)}"


def authorship(
    text: str | None, *, where: str, size: int, sha256: str | None = None, old: bool = False
) -> Mark | None:
    """THE rule for "is this object mdl's, and whose": ``text``, the mark found on the object at
    ``where`` (``size`` bytes), read. None: no mark, or one written for another name or other bytes
    (a server-side copy, an object replaced by another program). An older mdl's mark (S3's "1",
    ``sha256`` its metadata; ``old``: a folder's, bound to the file by the store) says no side."""
    if not text:
        return None
    if text == LEGACY_MARK:
        return Mark(sha256, None, bound=old)
    parts = text.split(" ")
    if len(parts) != 4 or parts[0] != MARK_VERSION:
        return None
    _, said, side, digest = parts
    if not hmac.compare_digest(digest.encode(), _digest(where, said, size, side).encode()):
        return None
    return Mark(said, side or None)  # "": a writer that said no side (a manifest)


class ConditionalWritesIgnored(Exception):
    """The store wrote both of two conflicting conditional writes: it cannot hold a lease."""


class Writer(Protocol):
    """One mirror's store, writable, for one run (it may keep a client). Every write is
    conditional (but an upload told to ``overwrite``): a second writer never replaces what the
    first wrote. A store's transient
    conflicts (S3's ``409 ConditionalRequestConflict``, a 503) are retried inside; other failures
    raise MdlError as reads do (exit 3, 4, 5, 7)."""

    def head(self, uri: str) -> Seen | None:
        """The object, or None when there is none."""

    def read(self, uri: str, *, limit: int, aged: bool = True) -> tuple[bytes, Seen] | None:
        """A small object's bytes (a lease's), never more than ``limit`` + 1 of them (a bigger
        object is not read: its ``Seen.size`` says how big), and what the store says of it; None:
        none, or not a file (a folder, a link, a FIFO: never followed, never waited on).
        ``aged=False``: no age is judged (``publish``'s model.sig): ``now`` may be what ``head``
        says (a folder's clock is a file it writes)."""

    def create(self, uri: str, data: bytes, *, side: str | None = None) -> Seen | None:
        """Write ``data`` only if there is no such object (S3: ``If-None-Match: *``; a folder:
        exclusive create); None: one is there already. ``side``: marked as mdl's as ``upload``
        marks (``mark_text`` of these bytes, ``side`` saying whose; a folder: an object in mdl's
        namespace, a fill's part, its mark bound to its name below the mirror's folder)."""

    def replace(self, uri: str, data: bytes, *, etag: str, side: str | None = None) -> Seen | None:
        """Write ``data`` only over the version ``etag`` (S3: ``If-Match``; a folder compares, then
        renames: mdl replaces only what one writer owns, a lease generation its holder made);
        None: the object changed or is gone. ``side``: marked, as ``create`` marks."""

    def delete(self, uri: str, *, etag: str | None = None) -> bool:
        """Remove the object (only version ``etag`` when given and the store can say); False:
        it was not there or had changed."""

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
        """A verified local file, hashed as it is sent and written whole or not at all (a file
        changed since it was verified is exit 6; an unfinished write is aborted), only if there is
        no such object (``If-None-Match: *``; False: one is there already, never replaced) unless
        ``overwrite`` (``publish``: it compared the object first); the store's own SHA-256
        checksum where it keeps one; marked as mdl's (``mark_text``, ``side`` saying whose; S3:
        its metadata; a folder: ``names.Mark.of(uri, root=root)``, ``root`` the mirror's fixed
        part).
        ``sent``: told the bytes as they go, and 0 just before an upload of parts is made whole
        (a multipart's completion, a folder copy's rename; one PUT is whole at once): what it
        raises stops the upload."""

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
        """The object made from ``parts`` by the store itself, never sent twice: objects of the
        store, the verified file at ``path`` (``size`` bytes, their ``sha256``) cut in order at
        the part size their names say (a fill's published parts, ``names.Part``). Each part is
        proved to be its range of ``path`` before the object exists (S3: the copy's SHA-256, else
        its ETag as the range's MD5), and ``path`` is hashed as read (changed since verified:
        exit 6). Written as ``upload`` writes: whole or not at all, only if there is no such object
        (False: one is there, never replaced), marked as mdl's. None: the store cannot (a folder;
        a store that refuses server-side copies) or a part is not these bytes, nothing left
        behind: the caller uploads ``path``."""

    def holds(self, uri: str, path: Path, *, size: int, sha256: str) -> bool:
        """Whether the object is already the verified file at ``path`` (``size`` bytes, their
        ``sha256``), by a SHA-256 of the object's own bytes (S3: the checksum the store computed;
        a folder: the file read), never by what a writer says beside them (metadata, a mark)."""

    def owned(self, uri: str, *, root: str) -> Seen | None:
        """The object as ``head`` says, with mdl's mark as ``authorship`` reads it for this very
        name and version (``marked``: what prune may remove); None: there is none."""

    def listing(self, prefix: str, *, most: int | None = None) -> Iterator[Listed]:
        """Every object whose URI starts with ``prefix`` (a store URI); ``most``: the caller takes
        no more than that many (a store may stop reading there: a folder's, in each folder)."""

    def abandoned(self, prefix: str, *, before: float, remove: bool) -> list[Listed]:
        """mdl's own unfinished writes under ``prefix`` (a folder's temp file, S3's multipart
        upload): one under way, or one a write killed midway left; those begun before ``before``
        (the store's clock) removed when ``remove``. Never objects, never in ``listing``."""

    def now(self) -> float:
        """The store's clock (epoch seconds)."""
