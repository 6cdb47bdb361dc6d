"""The catalog file on disk: found, read and validated, written atomically (keeping its mode and
BOM) under a flock of its folder; ``mdl init`` writes the starter there."""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import secrets
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from mdl.catalog.load import (
    MAX_CATALOG_BYTES,
    catalog_file_text,
    find_catalog,
    no_catalog,
    parse_catalog,
)
from mdl.catalog.settings import user_config_dir
from mdl.catalog.specs import Catalog
from mdl.errors import CatalogError, LocalFSError, UsageError
from mdl.paths import kind_of, read_small_file
from mdl.setting import StrPath

# The editing modules load for an edit or an init only: a pull writing its lock takes the flock
# (``exclusive``) and nothing else here.
if TYPE_CHECKING:
    from mdl.catalog.edit import CatalogInit

log = logging.getLogger("mdl.lock")


# what `mdl add` starts a missing catalog with, and `mdl init --project` writes
NEW_CATALOG = (
    "# catalog.toml: the models mdl pulls (`mdl pull --all`). Edit it by hand or with `mdl add` /"
    " `mdl remove`;\n# see `mdl add --help`.\n"
)


@contextlib.contextmanager
def exclusive(path: Path) -> Iterator[None]:
    """``flock`` the file's folder while it is read, merged and written: two runs at once never
    lose an entry.
    """
    try:
        fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    except OSError as exc:
        raise LocalFSError(
            f"{path.parent}: cannot open the lock's folder: {exc.strerror or exc}"
        ) from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # held for a read and a write: milliseconds
        yield
    finally:
        os.close(fd)  # releases the flock


def catalog_text(
    catalog: StrPath | None, environ: Mapping[str, str], *, create: bool
) -> tuple[Path, str, bool]:
    """The catalog to edit, its text (without a BOM) and whether it is yet to be created."""
    from mdl.catalog.edit import catalog_to_edit

    find = catalog_to_edit if create else find_catalog  # the one to create, or the one there is
    given = Path(catalog) if catalog is not None else None
    path = find(flag=given, environ=environ, cwd=Path.cwd(), config_dir=user_config_dir())
    if path is None:
        raise no_catalog(user_config_dir())
    return (path, *read_catalog(path, create=create))


def read_catalog(path: Path, *, create: bool) -> tuple[str, bool]:
    """The catalog's text (without a BOM), validated, and whether it is yet to be created."""
    text = catalog_file_text(path)
    if text is None and create:
        return NEW_CATALOG, True
    if text is None:
        raise CatalogError(f"{path}: catalog not found")
    valid(text, path)  # a broken catalog is reported as it is, before any edit
    return text, False


def valid(text: str, path: Path) -> Catalog:
    return parse_catalog(text, source=str(path), path=path)


def write_catalog(path: Path, text: str, *, created: bool) -> None:
    """Atomically (a fresh temp file renamed over it); through a symlink to the file it points at;
    keeping the file's permissions and BOM."""
    target = path.resolve() if path.is_symlink() else path
    tmp = target.with_name(f"{target.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        mode = None
        if created:
            target.parent.mkdir(parents=True, exist_ok=True)
        else:
            mode = target.stat().st_mode & 0o7777
            if read_small_file(target, limit=MAX_CATALOG_BYTES).startswith(b"\xef\xbb\xbf"):
                text = "\ufeff" + text
        try:
            with open(
                os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o666), "wb"
            ) as handle:
                handle.write(text.encode())
            if mode is not None:
                tmp.chmod(mode)
            tmp.replace(target)
        except OSError:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise
    except OSError as exc:
        raise LocalFSError(f"{path}: cannot write the catalog: {exc.strerror or exc}") from exc


def is_user_catalog(path: Path) -> bool:
    """Whether ``path`` is the user config catalog, the one mdl reads in every folder without a
    catalog of its own.
    """
    return path == user_config_dir() / "mdl" / "catalog.toml"


def init_catalog(
    *, catalog: StrPath | None, force: bool, environ: Mapping[str, str], project: bool = False
) -> CatalogInit:
    """Write the starter catalog where mdl looks for one (``project``: an empty one, ./catalog.toml
    unless ``catalog`` names another); see :func:`mdl.api.init`."""
    from mdl.catalog.edit import CatalogInit, catalog_to_init, starter_catalog

    given, cwd, config_dir = (
        Path(catalog) if catalog is not None else None,
        Path.cwd(),
        user_config_dir(),
    )
    path = catalog_to_init(
        flag=given, environ=environ, cwd=cwd, config_dir=config_dir, project=project
    )
    what = "an empty catalog" if project else "the starter"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise LocalFSError(f"{path}: cannot create its folder: {exc.strerror or exc}") from exc
    # an mdl add or another init at the same moment: one of them finds the other's file
    with exclusive(path):
        _refuse_not_a_file(path)
        there = path.exists() or path.is_symlink()
        if there and not force:
            raise UsageError(
                f"{path} already exists; mdl init does not overwrite a catalog",
                hint=(
                    f"edit it (or mdl add to it), pass --force to replace it with {what}, or"
                    " --catalog PATH"
                ),
            )
        write_catalog(path, NEW_CATALOG if project else starter_catalog(), created=not there)
    log.info("%s: %s written%s", path, what, " (replaced)" if there else "")
    found = None
    # $MDL_CATALOG naming a file not there (--catalog wrote another)
    with contextlib.suppress(CatalogError):
        found = find_catalog(flag=None, environ=environ, cwd=cwd, config_dir=config_dir)
    fallback = path == config_dir / "mdl" / "catalog.toml"
    return CatalogInit(path, replaced=there, found=found, fallback=fallback, empty=project)


def _refuse_not_a_file(path: Path) -> None:
    """UsageError when something else than a file is at ``path`` (lstat: a FIFO is never opened, a
    device never replaced, --force or not)."""
    try:
        kind = kind_of(path.lstat())
    except FileNotFoundError:
        return
    except OSError as exc:
        raise LocalFSError(f"cannot look at {path}: {exc.strerror or exc}") from None
    if kind is not None:
        raise UsageError(
            f"{path} is {kind}, not a catalog file", hint="name a file with --catalog PATH"
        )
