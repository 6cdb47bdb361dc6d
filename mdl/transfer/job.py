"""What one transfer is (identity, job, result, the engine's knobs) and the signals that restart
or reject it.
"""

# (annotations here are evaluated, not postponed: typing compiles each string annotation of a
# NamedTuple's fields at every start)
import contextlib
import logging
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple, Protocol

import httpx2

from mdl.errors import IntegrityError
from mdl.redact import unshown
from mdl.report import WARNING_CAUSE
from mdl.transfer.http import Credentials, RetryPolicy
from mdl.transfer.scheduling import SPLIT_THRESHOLD, MiB, Piece, plan_pieces

if TYPE_CHECKING:
    from mdl.signing.statement import (
        SignedFile,  # (a signed pull's: made by what checks signatures)
    )

log = logging.getLogger("mdl.transfer")

# without --connections, a big file gets one stream per this many bytes ...
BYTES_PER_CONNECTION = 32 * MiB
MAX_AUTO_CONNECTIONS = 16  # ... up to this many


class Identity(NamedTuple):
    """What a download is of; a resume record with another identity is never spliced onto."""

    size: int | None
    sha256: str | None
    git_oid: str | None
    etag: str | None

    def matches(self, other: "Identity") -> bool:
        if self.size is not None and other.size is not None and self.size != other.size:
            return False
        for mine, theirs in (
            (self.sha256, other.sha256),
            (self.git_oid, other.git_oid),
            (self.etag, other.etag),
        ):
            if mine and theirs:  # the first name both sides know decides
                return mine == theirs
        return (
            self.size is not None and self.size == other.size and not (self.sha256 or other.sha256)
        )

    @property
    def has_hash(self) -> bool:
        return bool(self.sha256 or self.git_oid)


class RetryLog:
    """Why a transfer had to try again, one cause per retry, in order; streams add theirs from
    their own threads.
    """

    def __init__(self) -> None:
        self._causes: list[str] = []

    def add(self, cause: str) -> None:
        # append and tuple() are atomic (Python FAQ, "thread-safe" mutations): no lock
        self._causes.append(cause)

    def warn(self, message: str) -> None:
        """A cause logged now and said with the file's outcome."""
        log.warning("%s", message)
        self.add(WARNING_CAUSE + message)

    @property
    def causes(self) -> tuple[str, ...]:
        return tuple(self._causes)


class Opening:
    """A probe's unread answer, bytes ``[0, end)`` (``end`` None: to the body's end, its length
    unsaid): taken by one stream (``with`` it), closed by the last holder.
    """

    def __init__(
        self, response: httpx2.Response, close: Callable[[], None], *, end: int | None
    ) -> None:
        self.response, self.end, self._close = response, end, close
        self._lock = threading.Lock()
        self._taken = False

    def take(self) -> "Opening | None":
        with self._lock:
            taken, self._taken = self._taken, True
        return None if taken else self

    def __enter__(self) -> httpx2.Response:
        return self.response

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        with self._lock:
            self._taken, close, self._close = True, self._close, lambda: None
        with contextlib.suppress(httpx2.HTTPError, OSError):
            close()


class PartSource(Protocol):
    """Where a file's parts come from beside this machine's fetch of them (a fleet's swarm:
    ``mdl.download._swarm``): ``spans`` cut the file, one piece each; ``next`` says which part this
    machine fetches next (by index), having handed ``put`` meanwhile each part the others
    fetched (checked); None: none is left to fetch here. Called on the fetch's streams, at once."""

    @property
    def spans(self) -> Sequence[tuple[int, int]]: ...

    def streams(self, most: int) -> int:
        """How many parts this machine fetches at once (``most``: the engine's streams)."""

    def next(
        self, have: set[int], put: Callable[[int, bytes], None], stopped: Callable[[], bool]
    ) -> int | None:
        """The part to fetch now (``have``: the parts on disk when the fetch began)."""


class Landing(Protocol):
    """Whoever asks what of a job's ``.part`` is on disk as the fetch goes (a fill's publisher;
    a check of each range): one listener, told on the engine's threads; it must not block."""

    def landed(self, start: int, end: int, *, proved: bool = False) -> None:
        """Bytes ``[start, end)`` are written and claimed: the ones a record resumes on first,
        then each answer's every MiB, at its piece's end and at its own. Off the engine's lock.
        ``proved``: checked whole against the file's range trust before a byte of them was
        written, and no stream writes them (a swarm's part from another machine)."""

    def taken_back(self, start: int, end: int) -> None:
        """Bytes ``[start, end)`` told before are claimed no more (a piece dropped or cut back,
        the file started over): told under the engine's lock BEFORE they change on disk, so a
        reader that began before this is told read what had landed."""


class RangeTrust(Protocol):
    """A file's ranges, each with a digest hanging from a root mdl trusts (made and checked by
    ``mdl.transfer.ranges``): ``spans`` tile ``[0, size)`` in order."""

    @property
    def kind(self) -> str:
        """The root the digests hang from: ``lock``, ``signature`` or ``xet``."""

    @property
    def spans(self) -> Sequence[tuple[int, int]]: ...

    def holds(self, index: int, data: memoryview) -> bool:
        """Whether ``data`` is range ``index``'s bytes."""


class TransferJob(NamedTuple):
    """One file to fetch: where from, what it must be, where it lands. (A NamedTuple: a frozen
    dataclass's generated methods were compiled at every start, issue 90.)"""

    label: str
    url: str
    identity: Identity
    credentials: Credentials
    final_path: Path
    part_path: Path
    state_path: Path
    source: str  # redacted description for records and logs
    # filled as the transfer goes
    retries: RetryLog
    verify: bool = True
    # False: the size is only what a probe saw; a new size means a new version
    size_pinned: bool = True
    # False for a mirror: a bad hash there sends us to the next source
    retry_on_mismatch: bool = True
    # True for a mirror: a range that fails its trusted hash is left to the next source (the
    # partial file kept, the range unclaimed), never asked of this one again
    fallback: bool = False
    # True: a 403 is cured by asking the URL again (the Hub signs a fresh CDN link)
    renewable: bool = False
    # what the file belongs to and its path in it, for programs (--progress json)
    model: str | None = None
    path: str | None = None
    # the final URL a probe of this run saw answer a range: no second probe
    located: str | None = None
    # the destination root: no link below it is followed (default: see resume.job_root)
    root: Path | None = None
    # A signature's digests other than the sha256 (shards, BLAKE2/3): computed from the bytes as
    # they are hashed
    signed: "SignedFile | None" = None

    def __repr__(self) -> str:  # (as a dataclass with repr=False: no secret in a traceback)
        return unshown(self)


class TransferResult(NamedTuple):
    """What a fetched file turned out to be, and what fetching it took."""

    size: int
    sha256: str
    git_oid: str | None
    etag: str | None
    resumed_from: int
    fetched: int
    mirror: str | None = None  # the (redacted) mirror the bytes came from, if not the origin
    # Checked against a known hash, or fetched whole in one answer: only then is the file known to
    # be one version (a resume or parallel ranges without a hash rest on the server's validator and
    # an overlap of bytes).
    verified: bool = True
    # bytes copied from files already on disk instead of the network (``fetched`` is the network's)
    reused: int = 0
    xet: str | None = None  # the file's Xet hash, when it was fetched or checked as Xet
    # why bytes on disk (an earlier run's) were thrown away, when some were
    discarded: str | None = None
    # seconds spent waiting on another machine's lease on a mirror it was filling (--fill-mirror)
    waited: float = 0.0
    # what filling the mirror made of it: "filled", "streamed" (another machine's parts as they
    # landed), "read" (from it, filled by another machine), "from origin" (--fill-mirror)
    fill: str | None = None
    streamed: int = 0  # bytes read from another machine's published parts (kept when taken over)
    published: int = 0  # bytes this machine published as parts while its fetch ran
    # a swarm (--fill-mirror, with a range trust): parts fetched from the origin here, parts read
    # from the others', bytes fetched here of parts another machine held (the end game); or why
    # the file could not swarm
    parts_here: int = 0
    parts_peers: int = 0
    duplicated: int = 0
    unswarmed: str | None = None
    # the root its ranges were checked against as they landed (``RangeTrust.kind``), if any, and
    # how many ranges failed it and were fetched again alone
    trust: str | None = None
    refetched: int = 0


class EngineConfig(NamedTuple):
    """How the engine fetches: streams, retries, pieces, saves."""

    connections: int = 8
    # True: big files get more streams than ``connections`` (the default only)
    scale_connections: bool = False
    retry: RetryPolicy = RetryPolicy()
    split_threshold: int = SPLIT_THRESHOLD
    # seconds between resume-record saves (a kill -9 loses at most this much)
    checkpoint_interval: float = 0.2
    max_stalls: int = 20  # stalls resumed per piece before giving up (they spend no retry)
    # seconds of silence in a body before it is a stall (None: the client's)
    stall_timeout: float | None = None

    def streams(self, size: int | None) -> int:
        """``--connections`` when given; else one per ``BYTES_PER_CONNECTION`` (at least the
        default, at most 16).
        """
        if not self.scale_connections or size is None:
            return self.connections
        return max(self.connections, min(MAX_AUTO_CONNECTIONS, size // BYTES_PER_CONNECTION))

    def plan(self, size: int | None) -> list[Piece]:
        return plan_pieces(
            size, connections=self.streams(size), split_threshold=self.split_threshold
        )


# a version as answers show it: the strong ETag, the usable Last-Modified, the Last-Modified as sent
Version = tuple[str | None, str | None, str | None]


class RangesIgnoredError(Exception):
    """The server answered a range with the whole file (or a coded body): restart as one stream."""


class SourceChanged(Exception):
    """The file's version (ETag, date, or an unpinned size) changed under us: start over, bound to
    the version seen (``seen``: its strong ETag, usable date and date as sent), so that a third one
    is a second change however many answers the new one lasted."""

    def __init__(self, new_size: int | None = None, seen: Version | None = None) -> None:
        super().__init__("source changed")
        self.new_size, self.seen = new_size, seen


class HashMismatch(Exception):
    """The bytes on disk are not the expected file (size, sha256 or git blob id)."""

    def __init__(self, kind: str, expected: str, actual: str) -> None:
        super().__init__(kind)
        self.kind, self.expected, self.actual = kind, expected, actual

    def kept(self) -> str:
        """What a file kept despite it says (``--no-verify``)."""
        return f"{self.kind} {self.actual}, not the {self.expected} pinned: kept"

    def error(self, label: str) -> IntegrityError:
        """The user's error (exit 6): the file's bytes were removed (the ledger counted them)."""
        return IntegrityError(
            f"{label}: {self.kind} mismatch: expected {self.expected}, got {self.actual}",
            hint=(
                "the source changed or is corrupt, or the hash it was held to is wrong (--sha256,"
                " the catalog's or the lock's); the partial file was removed"
            ),
        )
