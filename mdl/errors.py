"""The one exception tree: every expected failure carries its exit code, a short message and a
hint.
"""

from __future__ import annotations

import errno
import re
import signal
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


# 128 + SIGPIPE: what a shell reports for `cat` killed by a closed pipe (a reader left: no error)
EXIT_STDOUT_CLOSED = 128 + 13

# What each exit code means, one line each, as `mdl --help` ends; docs/output.md's table says each
# again with more (tests/test_docs.py holds it to these).
EXIT_MEANINGS: dict[int, str] = {
    ExitCode.OK: "everything asked for is present and verified",
    ExitCode.INTERNAL: "internal error (a bug; MDL_DEBUG=1 shows the traceback)",
    ExitCode.USAGE: "usage or bad input: flags, catalog, unknown model, unsafe path",
    ExitCode.AUTH: "not authorised: 401/403, gated repo, missing token",
    ExitCode.NOT_FOUND: "not found upstream (repo, revision, file), or not ready here (verify)",
    ExitCode.NETWORK: "network failure that outlasted the retries (retry later)",
    ExitCode.INTEGRITY: "integrity: size or sha256 mismatch",
    ExitCode.LOCAL: "local filesystem: no space, no permission, lock not obtained",
    ExitCode.INTERRUPTED: "interrupted (Ctrl-C, SIGTERM, SIGHUP); partial data is kept for resume",
    EXIT_STDOUT_CLOSED: "stdout closed by its reader (mdl list | head -1), as cat's",
}


class MdlError(Exception):
    """Base of every expected failure; ``str(err)`` is the one-line message shown to users."""

    exit_code: ClassVar[ExitCode] = ExitCode.INTERNAL
    kind: ClassVar[str] = "internal"
    # the short reason on the summary line (`1 model failed: badname (not found)`); a class with a
    # kind of its own says its kind unless it has words of its own, a subclass without says its
    # parent's
    words: ClassVar[str] = "internal error"
    # One line, whatever a name or a server's words in it hold (a newline would forge a line of
    # mdl's own); a catalog's problems are one a line.
    multiline: ClassVar[bool] = False

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        # Messages quote servers, archives and file names: a control character never reaches a
        # caller unescaped.
        self.message, self.hint = printable(message, multiline=self.multiline), hint
        super().__init__(self.message)
        # For the log: the HTTP status and the server's own error text (sanitised) when a server
        # refused.
        self.status: int | None = None
        self.server_text: str | None = None
        # bytes a download wrote before it failed (its log line says so; they are kept for resume)
        self.fetched = 0

    def __init_subclass__(
        cls, *, kind: str | None = None, code: ExitCode | None = None, words: str | None = None
    ) -> None:
        super().__init_subclass__()
        cls.words = words or (kind.replace("_", " ") if kind else cls.words)
        cls.kind = kind or cls.kind
        cls.exit_code = cls.exit_code if code is None else code


class UsageError(MdlError, kind="usage", code=ExitCode.USAGE, words="refused"):
    """Bad flags or arguments, unknown model or checkpoint."""


class CatalogError(UsageError, kind="catalog", words="catalog error"):
    """The catalog file is missing, unreadable or invalid; ``problems`` holds each problem found,
    one line each.
    """

    multiline = True

    def __init__(
        self, message: str, *, hint: str | None = None, problems: Sequence[str] = ()
    ) -> None:
        super().__init__(message, hint=hint)
        self.problems = tuple(printable(problem) for problem in problems) or (self.message,)


class CatalogWarning(UserWarning):
    """A catalog this build reads but not whole (a ``[settings]`` key it does not know): said by
    the :mod:`warnings` module, which the CLI turns into ``mdl: warning: …`` lines (its documented
    name is mdl.catalog.specs.CatalogWarning; here, every run filters it without loading the
    catalog's types)."""


class UnsafePathError(UsageError, kind="unsafe_path"):
    """A path that is absolute, climbs out of its folder, or is otherwise unsafe."""


class ArchiveError(UsageError, kind="archive"):
    """A hostile or broken archive."""


class JobOutputError(UsageError, kind="job_output", words="bad job output"):
    """Serverless job-output JSON that cannot be understood."""


class OutsideJSONError(UsageError, kind="bad_json", words="unreadable JSON"):
    """JSON from outside mdl (a reply, a manifest, a record, an archive's) that is too big, too
    deep, or not JSON mdl reads: ``mdl.outsidejson``'s one error, naming the source."""


class AuthError(MdlError, kind="auth", code=ExitCode.AUTH, words="not authorised"):
    """401/403, a gated repo, or a missing token."""


class NotFoundError(MdlError, kind="not_found", code=ExitCode.NOT_FOUND):
    """Repo, revision or file not found upstream."""


class NotReadyError(NotFoundError, kind="not_ready"):
    """Not ready on this disk (``verify``): another version than pinned, or files another user
    pulled (a probe's "not yet", never "changed")."""


class NetworkError(MdlError, kind="network", code=ExitCode.NETWORK, words="network error"):
    """A network failure that outlasted the retries."""


class HubReplyError(NetworkError, kind="hub_reply", words="bad reply from the Hub"):
    """A Hub (or mirror) reply that is not what the API promises: HTML, bad JSON, wrong types, a
    bad commit id.
    """


class RegistryReplyError(NetworkError, kind="registry_reply", words="bad reply from the registry"):
    """An OCI registry's reply that is not what the distribution spec promises: a manifest too big,
    not JSON, a field of the wrong type, a digest that is not sha256, a path out of the model."""


class WebPageError(NetworkError, kind="web_page", words="a web page, not the file"):
    """A web page (HTML) where a model file was asked: a login wall, or the Hub's page of the
    file.
    """


class TokenLeakError(MdlError, kind="token_leak", code=ExitCode.NETWORK, words="token refused"):
    """A request would have carried the Hub token to another origin; refused before anything was
    sent.
    """


class IntegrityError(MdlError, kind="integrity", code=ExitCode.INTEGRITY, words="integrity error"):
    """Size or sha256 mismatch."""


class LocalFSError(
    MdlError, kind="filesystem", code=ExitCode.LOCAL, words="local filesystem error"
):
    """Local trouble: no space, no permission, lock not obtained, no memory."""


class NoSpaceError(LocalFSError, kind="no_space"):
    """Not enough free space for the bytes still to come."""


def disk_error(exc: OSError, *, full: str, other: str) -> LocalFSError:
    """A local write's OSError as ours (exit 7), the one rule for a full disk: the disk or the
    user's quota full is NoSpaceError(``full``), anything else LocalFSError(``other``)."""
    return NoSpaceError(full) if exc.errno in (errno.ENOSPC, errno.EDQUOT) else LocalFSError(other)


class LockTimeoutError(LocalFSError, kind="lock_timeout"):
    """Another process holds a lock we could not obtain in time."""


class OutOfMemoryError(LocalFSError, kind="out_of_memory"):
    """The process ran out of memory (a local resource, as a full disk): exit 7, never an
    internal error.
    """


# What stops a command as Ctrl-C does (a KeyboardInterrupt, exit 130, partial data kept): SIGTERM,
# and a terminal's hang-up (an ssh link that closed), as aria2c takes them.
STOPS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

# An interrupt's message: what was kept is said by the command (mdl.cli.run.KEPT_ON_INTERRUPT)
INTERRUPTED = "interrupted"


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


def out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` is memory running out, however it surfaced: a MemoryError anywhere in its
    chain (a C extension may raise it again as a SystemError or a ValueError), ENOMEM, a library
    the loader had no room to map (an ImportError, "failed to map segment from shared object"), or
    CPython's words for a failure whose exception had no room to be made (a SystemError, "returned
    NULL without setting an exception"; a ValueError, "field 'target' is required for AnnAssign",
    when a module is compiled), or a SyntaxError in a module's file that compiles now (the parser
    had no room: "expected ':'")."""
    if _IMPORTS_SHORT and isinstance(exc, AttributeError | ImportError | NameError):
        return True  # a name a module lacks: a part of it was lost to memory
    for error in causes(exc):
        if isinstance(error, MemoryError) or getattr(error, "errno", None) == errno.ENOMEM:
            return True
        lost = isinstance(error, ImportError | SystemError | ValueError)
        if lost and _OUT_OF_MEMORY_WORDS.search(str(error)):
            return True
        if isinstance(error, SyntaxError) and _compiles(error.filename):
            return True
    return False


_IMPORTS_SHORT: list[bool] = []  # an import failed for memory in this process (once noted)


def imports_ran_short() -> None:
    """Note that an import failed for memory in this process, even one a library caught and went
    on without (mdl.__main__ sees them): a module may then lack a part (hashlib without its
    ``sha256``), so a name found missing later is memory's (exit 7), not a bug."""
    _IMPORTS_SHORT[:] = [True]


_SOURCE_MOST = 8 * 1024 * 1024  # bytes of a module _compiles reads (mdl's largest is ~40 KB)


def _compiles(filename: str | None) -> bool:
    """Whether the Python file ``filename`` compiles now (memory running out again: it would)."""
    if not filename or not filename.endswith(".py"):
        return False
    try:
        with open(filename, "rb") as source:  # (a module, read whole up to a bound no module nears)
            compile(source.read(_SOURCE_MOST), filename, "exec", dont_inherit=True)
    except MemoryError:
        return True
    except (OSError, SyntaxError, ValueError):
        return False
    return True


# (compiled as the module loads: when it is needed, memory may have run out)
_OUT_OF_MEMORY_WORDS = re.compile(
    r"failed to map segment|cannot allocate memory|without setting an exception"
    r"|error return without exception set|^field '\w+' is required for \w+$",
    re.IGNORECASE,
)


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


def error_classes() -> list[type[MdlError]]:
    """``MdlError`` and every class under it, at any depth, nearest first."""
    found = [MdlError]
    for cls in found:
        found.extend(cls.__subclasses__())
    return found


def error_for_exit_code(code: int) -> type[MdlError]:
    """The error class for an exit code, to raise again a failure a report recorded per file: the
    nearest class under ``MdlError`` with that code (a class under ``NetworkError`` counts too)."""
    return next((c for c in error_classes() if c.exit_code == code), MdlError)


def kind_words(kind: str) -> str:
    """The summary line's short reason for a failure of ``kind``: its error class's ``words``."""
    return next((c.words for c in error_classes() if c.kind == kind), kind.replace("_", " "))
