"""The one exception tree: every expected failure carries its exit code, a short message and a
hint.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from enum import IntEnum
from typing import ClassVar

from mdl.redact import printable


class ExitCode(IntEnum):
    """Process exit codes, exactly as in the product contract."""

    OK = 0
    INTERNAL = 1
    USAGE = 2
    AUTH = 3
    NOT_FOUND = 4
    NETWORK = 5
    INTEGRITY = 6
    LOCAL = 7
    INTERRUPTED = 130


class MdlError(Exception):
    """Base of every expected failure; ``str(err)`` is the one-line message shown to users."""

    exit_code: ClassVar[ExitCode] = ExitCode.INTERNAL
    kind: ClassVar[str] = "internal"

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        # Messages quote servers, archives and file names: a control character never reaches a
        # caller unescaped.
        self.message, self.hint = printable(message, multiline=True), hint
        super().__init__(self.message)
        # For the log: the HTTP status and the server's own error text (sanitised) when a server
        # refused.
        self.status: int | None = None
        self.server_text: str | None = None
        # bytes a download wrote before it failed (its log line says so; they are kept for resume)
        self.fetched = 0

    def __init_subclass__(cls, *, kind: str | None = None, code: ExitCode | None = None) -> None:
        super().__init_subclass__()
        cls.kind = kind or cls.kind
        cls.exit_code = cls.exit_code if code is None else code


class UsageError(MdlError, kind="usage", code=ExitCode.USAGE):
    """Bad flags or arguments, unknown model or checkpoint."""


class CatalogError(UsageError, kind="catalog"):
    """The catalog file is missing, unreadable or invalid; ``problems`` holds each problem found,
    one line each.
    """

    def __init__(
        self, message: str, *, hint: str | None = None, problems: Sequence[str] = ()
    ) -> None:
        super().__init__(message, hint=hint)
        self.problems = tuple(printable(problem) for problem in problems) or (self.message,)


class UnsafePathError(UsageError, kind="unsafe_path"):
    """A path that is absolute, climbs out of its folder, or is otherwise unsafe."""


class ArchiveError(UsageError, kind="archive"):
    """A hostile or broken archive."""


class JobOutputError(UsageError, kind="job_output"):
    """Serverless job-output JSON that cannot be understood."""


class AuthError(MdlError, kind="auth", code=ExitCode.AUTH):
    """401/403, a gated repo, or a missing token."""


class NotFoundError(MdlError, kind="not_found", code=ExitCode.NOT_FOUND):
    """Repo, revision or file not found upstream."""


class NetworkError(MdlError, kind="network", code=ExitCode.NETWORK):
    """A network failure that outlasted the retries."""


class HubReplyError(NetworkError, kind="hub_reply"):
    """A Hub (or mirror) reply that is not what the API promises: HTML, bad JSON, wrong types, a
    bad commit id.
    """


class WebPageError(NetworkError, kind="web_page"):
    """A web page (HTML) where a model file was asked: a login wall, or the Hub's page of the
    file.
    """


class TokenLeakError(MdlError, kind="token_leak", code=ExitCode.NETWORK):
    """A request would have carried the Hub token to another origin; refused before anything was
    sent.
    """


class IntegrityError(MdlError, kind="integrity", code=ExitCode.INTEGRITY):
    """Size or sha256 mismatch."""


class LocalFSError(MdlError, kind="filesystem", code=ExitCode.LOCAL):
    """Local trouble: no space, no permission, lock not obtained, no memory."""


class NoSpaceError(LocalFSError, kind="no_space"):
    """Not enough free space for the bytes still to come."""


class LockTimeoutError(LocalFSError, kind="lock_timeout"):
    """Another process holds a lock we could not obtain in time."""


class OutOfMemoryError(LocalFSError, kind="out_of_memory"):
    """The process ran out of memory (a local resource, as a full disk): exit 7, never an
    internal error.
    """


class InterruptedByUserError(MdlError, kind="interrupted", code=ExitCode.INTERRUPTED):
    """Ctrl-C or SIGTERM; what was kept depends on the command (a pull's partial data, a
    publish's uploads).
    """


def causes(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and each error it wraps (``raise … from``, or raised while handling), each once."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def server_details(exc: BaseException) -> tuple[int | None, str | None]:
    """The HTTP status and server text of ``exc`` or of an error it wraps (``raise … from``), if
    any.
    """
    for error in causes(exc):
        if isinstance(error, MdlError) and error.status is not None:
            return error.status, error.server_text
    return None, None


def worst_exit_code(codes: list[int]) -> int:
    """The exit code for several failures: the lowest non-zero code above 1 wins (product
    contract).
    """
    failing = [c for c in codes if c != ExitCode.OK]
    return min(
        (c for c in failing if c > ExitCode.INTERNAL),
        default=ExitCode.INTERNAL if failing else ExitCode.OK,
    )


def error_for_exit_code(code: int) -> type[MdlError]:
    """The error class for an exit code, to raise again a failure a report recorded per file."""
    classes = (
        UsageError,
        AuthError,
        NotFoundError,
        NetworkError,
        IntegrityError,
        LocalFSError,
        InterruptedByUserError,
    )
    return next((c for c in classes if c.exit_code == code), MdlError)
