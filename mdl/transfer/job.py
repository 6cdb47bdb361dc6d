"""What one transfer is: the file's identity, the job, its result, and the engine's knobs."""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx2

from mdl.report import warning_cause
from mdl.transfer.http import Credentials
from mdl.transfer.retry import RetryPolicy
from mdl.transfer.scheduling import SPLIT_THRESHOLD

log = logging.getLogger("mdl.transfer")

CHECKPOINT_INTERVAL = 1.0  # seconds between resume-record saves (a kill -9 loses at most this much)
MAX_STALLS = 20


@dataclass(frozen=True)
class Identity:
    """What a download is of; a resume record with another identity is never spliced onto."""

    size: int | None
    sha256: str | None
    git_oid: str | None
    etag: str | None

    def matches(self, other: Identity) -> bool:
        """Same content, judged by the strongest key both sides know."""
        if self.size is not None and other.size is not None and self.size != other.size:
            return False
        for mine, theirs in ((self.sha256, other.sha256), (self.git_oid, other.git_oid)):
            if mine and theirs:
                return mine == theirs
        if self.etag and other.etag:
            return self.etag == other.etag
        return self.size is not None and self.size == other.size and not (self.sha256 or other.sha256)

    @property
    def has_hash(self) -> bool:
        """Whether the bytes will be checked against a hash (so even a blind transfer cannot end spliced)."""
        return bool(self.sha256 or self.git_oid)

    @property
    def has_validator(self) -> bool:
        """Whether two versions of the same size could be told apart (a hash or an ETag)."""
        return bool(self.sha256 or self.git_oid or self.etag)


class RetryLog:
    """Why a transfer had to try again (one cause per retry, stall, restart or re-resolve), for the log.

    Shared by the streams of one file (threads), so adding is locked; the causes are kept in order.
    """

    def __init__(self) -> None:
        self._causes: list[str] = []
        self._lock = threading.Lock()

    def add(self, cause: str) -> None:
        """Note one more retry and its cause."""
        with self._lock:
            self._causes.append(cause)

    def warn(self, message: str) -> None:
        """A cause the user must hear of (a mirror bypassed, a version nothing can tell apart): logged now as a
        warning, and said with the file's outcome in every output mode (``FileOutcome.warnings``)."""
        log.warning("%s", message)
        self.add(warning_cause(message))

    @property
    def causes(self) -> tuple[str, ...]:
        """Every cause so far, oldest first."""
        with self._lock:
            return tuple(self._causes)


class Opening:
    """A probe's answer still unread: the file's first bytes (``[0, end)``), for the download to take over, so
    the request that learned the size also carries data (as aria2c's first request does).

    Taken at most once; closed by whoever holds it last (the stream that read it, or the run when it was not
    needed), so its connection is never left hanging.
    """

    def __init__(self, response: httpx2.Response, close: Callable[[], None], *, end: int) -> None:
        self.response = response
        self.end = end
        self._close = close
        self._lock = threading.Lock()
        self._taken = False

    def take(self) -> httpx2.Response | None:
        """The answer, the first time (None after that, or once closed)."""
        with self._lock:
            if self._taken:
                return None
            self._taken = True
            return self.response

    def close(self) -> None:
        """Release the answer and its connection (idempotent)."""
        with self._lock:
            self._taken = True
            close, self._close = self._close, lambda: None
        with contextlib.suppress(httpx2.HTTPError, OSError):
            close()


@dataclass(frozen=True)
class TransferJob:
    """One file to fetch: where from, what it should be, and where its bytes go."""

    label: str
    url: str
    identity: Identity
    credentials: Credentials
    final_path: Path
    part_path: Path
    state_path: Path
    source: str  # redacted description for records and logs
    verify: bool = True
    size_pinned: bool = True  # False: the size is only what a probe saw; a new size means a new version
    retry_on_mismatch: bool = True  # False for a mirror: a bad hash there sends us to the next source
    renewable: bool = True  # a 403 may be cured by resolving again (Hub files); a presigned link cannot
    retries: RetryLog = field(default_factory=RetryLog, compare=False)  # filled as the transfer goes
    model: str | None = None  # what the file belongs to and its path in it, for programs (--progress json)
    path: str | None = None
    located: str | None = None  # the final URL a probe of this run saw answer a range: no second probe
    opening: Opening | None = field(default=None, compare=False)  # that probe's answer, its body still unread
    root: Path | None = None  # the destination root: no link below it is followed (default: see resume.job_root)


@dataclass(frozen=True)
class TransferResult:
    """What ended up at ``final_path``."""

    size: int
    sha256: str
    git_oid: str | None
    etag: str | None
    resumed_from: int
    fetched: int
    mirror: str | None = None  # the (redacted) mirror the bytes came from, if not the origin


@dataclass(frozen=True)
class EngineConfig:
    """Knobs of the engine, from settings."""

    connections: int = 8
    scale_connections: bool = False  # True: big files get more streams than ``connections`` (the default only)
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    split_threshold: int = SPLIT_THRESHOLD
    checkpoint_interval: float = CHECKPOINT_INTERVAL
    max_stalls: int = MAX_STALLS  # stalls resumed per piece before giving up (they spend no retry)
    stall_timeout: float | None = None  # seconds of silence in a body before it is a stall (None: the client's)
