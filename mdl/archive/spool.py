"""``mdl unpack -``: an archive read from a pipe, spooled to a hidden temp file on the destination's filesystem.

A zip's index is at its end, so the reader must seek: the stream is copied first (with progress), then unpacked
as a file, and the spool is removed whatever happens (success, failure, Ctrl-C, SIGTERM).
"""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import BinaryIO

from mdl.archive.entries import DEFAULT_MAX_RATIO
from mdl.archive.progress import ArchiveProgress
from mdl.archive.unpack import UnpackResult, unpack_archive
from mdl.errors import ArchiveError, LocalFSError, NoSpaceError, UsageError
from mdl.paths import temp_name
from mdl.progress import Progress

CHUNK_SIZE = 1 << 20
STDIN = "stdin"
PIPE_HINT = "mdl pack RUN -o - | mdl unpack - -d DIR"


def spool_folder(dest_dir: Path) -> Path:
    """Where the spool goes: DIR itself if it exists, else beside it (its nearest existing ancestor).

    The same filesystem as the result, and no folder is created before the archive is known to be good.
    """
    folder = dest_dir
    while not folder.is_dir() and folder != folder.parent:
        folder = folder.parent
    return folder


def unpack_stream(
    stream: BinaryIO,
    *,
    dest: Path | None,
    force: bool,
    progress: Progress,
    cwd: Path,
    max_ratio: float = DEFAULT_MAX_RATIO,
) -> UnpackResult:
    """Spool ``stream`` (stdin) beside ``dest``, then unpack it as :func:`unpack_archive` does a file.

    A terminal is refused (exit 2: the archive must come through a pipe or a redirect); so is an empty or
    unreadable archive, named as "stdin".
    """
    if _isatty(stream):
        raise UsageError("reading an archive from stdin needs a pipe", hint=PIPE_HINT)
    dest_dir = cwd / dest if dest is not None else cwd
    spool = spool_folder(dest_dir) / temp_name("stdin.zip")
    named = ArchiveProgress(progress, None)
    try:
        size = _copy(stream, spool, named)
        if size == 0:
            raise UsageError("stdin is empty: expected a zip archive", hint=PIPE_HINT)
        try:
            return unpack_archive(spool, dest=dest, force=force, progress=named, cwd=cwd, max_ratio=max_ratio)
        except ArchiveError as exc:
            exc.message = f"{STDIN}: {exc.message}"
            exc.args = (exc.message,)
            raise
    finally:
        spool.unlink(missing_ok=True)


def _isatty(stream: BinaryIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # a closed or unusual stream: reading it will say what is wrong
        return False


def _copy(stream: BinaryIO, spool: Path, progress: Progress) -> int:
    """Copy the stream into a new file at ``spool`` (0600, never through a link); its size."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(spool, flags, 0o600)
    except OSError as exc:
        raise LocalFSError(f"cannot spool stdin into {spool.parent}: {exc.strerror}") from exc
    progress.begin(total_bytes=None, files=1)
    progress.start(STDIN, label="reading stdin", total=None)
    size = 0
    try:
        with os.fdopen(fd, "wb") as out:
            while chunk := stream.read(CHUNK_SIZE):
                out.write(chunk)
                size += len(chunk)
                progress.advance(STDIN, len(chunk))
    except OSError as exc:
        progress.finish(STDIN, ok=False, message=str(exc.strerror or exc))
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise NoSpaceError(f"no space left in {spool.parent} while reading the archive from stdin") from exc
        raise LocalFSError(f"cannot spool stdin into {spool.parent}: {exc.strerror or exc}") from exc
    progress.finish(STDIN, ok=True)
    return size
