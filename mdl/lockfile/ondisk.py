"""The lock's files on disk (``catalog.lock`` and ``catalog.lock.parts``): one bounded, strict
TOML read and one write that replaces the file only when its bytes change. Both files may come
from anyone's pull request; mdl writes each as a file, so a link at either name is never read
through or written through. ``what`` names the file in a message (``cannot read the lock``),
``one`` its kind (``the 64 MiB a lock may hold``)."""

from __future__ import annotations

import errno
from pathlib import Path
from typing import Any

from mdl.errors import CatalogError, LocalFSError
from mdl.paths import read_small_file
from mdl.store.confined import write_atomic

AGAIN = "run 'mdl lock' to write it again"


def read_data(path: Path, *, limit: int, what: str, one: str) -> bytes | None:
    """The bytes of the file at ``path`` (unparsed: :func:`bytes_document` parses them), None when
    there is none; CatalogError naming the file when it is past ``limit`` bytes, not a file (a FIFO
    is never waited on), a link or cannot be read."""
    try:
        return read_small_file(path, limit=limit, follow_links=False)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno == errno.EFBIG:
            raise _too_big(path, "more than", limit, one, "read") from None
        raise CatalogError(f"{path}: cannot read {what}: {exc.strerror or exc}") from None


def bytes_document(data: bytes, path: Path) -> dict[str, Any]:
    """The TOML document the bytes of the file at ``path`` hold; CatalogError naming it. The text
    is let go once parsed: memory is the document, not copies of its text."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise CatalogError(f"{path}: not valid UTF-8") from None
    return toml_document(text, source=str(path))


def toml_document(text: str, *, source: str) -> dict[str, Any]:
    """``text`` parsed; CatalogError naming ``source`` when it is not TOML (or nests too deeply
    for the parser's recursion)."""
    import tomllib  # (a lock remembered by its bytes is not parsed: mdl.lockfile.remembered)

    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise CatalogError(f"{source}: invalid TOML: {exc}", hint=AGAIN) from None
    except RecursionError:
        raise CatalogError(f"{source}: invalid TOML: nested too deeply") from None


def write_changed(
    path: Path, data: bytes, *, limit: int, what: str, one: str, create: bool = True
) -> bool:
    """Write ``data`` at ``path`` atomically unless the file already holds exactly these bytes
    (or there is none and ``create`` is False); True when it changed. Never a file mdl would refuse
    to read (past ``limit``: CatalogError, nothing written); one past the limit, a link or not a
    file is replaced (never written through)."""
    if len(data) > limit:
        raise _too_big(path, f"{what} would be {len(data)} bytes, more than", limit, one, "written")
    try:
        if read_small_file(path, limit=limit, follow_links=False) == data:
            return False
    except FileNotFoundError:
        if not create:
            return False
    except OSError as exc:
        if exc.errno not in (errno.EFBIG, errno.ELOOP, errno.EISDIR, errno.EINVAL):
            raise LocalFSError(f"{path}: cannot read {what}: {exc.strerror or exc}") from exc
    try:
        write_atomic(path.parent, path, data)
    except OSError as exc:
        raise LocalFSError(f"{path}: cannot write {what}: {exc.strerror or exc}") from exc
    return True


def _too_big(path: Path, has: str, limit: int, one: str, done: str) -> CatalogError:
    return CatalogError(
        f"{path}: {has} the {limit >> 20} MiB {one} may hold; not {done}",
        hint="the lock and its part hashes hold a line per file: pin fewer or smaller models",
    )
