"""Find and load catalog.toml, and look models up; errors name the file, key path and line."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from mdl.catalog._lines import format_key
from mdl.catalog.headers import VAR_RE, header_value_problem
from mdl.errors import CatalogError, UsageError
from mdl.paths import read_small_file
from mdl.setting import SETTING

if TYPE_CHECKING:
    import tomllib

    from mdl.catalog.specs import Catalog, FileSpec

MAX_CATALOG_BYTES = 16 << 20  # a catalog is a few KiB: a file this big is not one


def catalog_file_text(path: Path) -> str | None:
    """The text of the catalog at ``path``, without a BOM (Windows editors like to start UTF-8
    files with one, which tomllib refuses as a stray character); None when there is no file.
    CatalogError naming the file (and the line, for bytes that are not UTF-8) when it cannot be
    read. A FIFO is never waited on, /dev/zero never read."""
    try:
        data = read_small_file(path, limit=MAX_CATALOG_BYTES)
    except FileNotFoundError:
        return None
    except IsADirectoryError as exc:
        raise CatalogError(f"{path}: is a folder, not a catalog file") from exc
    except OSError as exc:
        raise CatalogError(f"{path}: cannot read the catalog: {exc.strerror or exc}") from exc
    try:
        return data.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise CatalogError(f"{path}:{line}: not valid UTF-8 (TOML files must be UTF-8)") from exc


def parse_catalog(
    text: str,
    *,
    source: str = "catalog.toml",
    path: Path | None = None,
    said: list[str] | None = None,
) -> Catalog:
    """Validate catalog TOML text; ``source`` names the file in error messages. Raises
    CatalogError. Its warnings go to ``said`` when given (the caller says them), else each is a
    CatalogWarning.
    """
    import tomllib  # (a get without a catalog reads none)

    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise CatalogError(_syntax_error_message(source, exc, text)) from exc
    except RecursionError as exc:
        # tomllib recurses per nesting level; a hostile "a = [[[[…" must not become a traceback.
        raise CatalogError(f"{source}: invalid TOML: arrays or tables nested too deeply") from exc
    # Imported here so that `import mdl.catalog` (and `mdl --help`) never loads pydantic.
    from mdl.catalog._schema import validate_catalog

    return validate_catalog(document, source=source, text=text, path=path, said=said)


def given_mirrors(
    entries: Sequence[str | Mapping[str, str]], *, where: str
) -> tuple[str | dict[str, str], ...]:
    """Mirrors given as ``[settings] mirrors`` takes them (URL templates, or ``{ url, endpoint }``
    tables), checked by the catalog's own rules (a CatalogError naming ``where``): each a template,
    or a table of its template and endpoint."""
    from mdl.catalog._schema import validate_catalog  # (pydantic)

    listed = [dict(entry) if isinstance(entry, Mapping) else entry for entry in entries]
    document = {"settings": {"mirrors": listed}}
    settings = validate_catalog(document, source=where, text="", path=None).settings
    endpoints = dict(settings.mirror_endpoints)
    return tuple(
        {"url": url, "endpoint": endpoints[url]} if url in endpoints else url
        for url in settings.mirrors
    )


def find_catalog(
    *, flag: Path | None, environ: Mapping[str, str], cwd: Path, config_dir: Path
) -> Path | None:
    """--catalog, else $MDL_CATALOG (must exist), else ./catalog.toml, else
    ``<config_dir>/mdl/catalog.toml``.
    """
    if (named := named_catalog(flag=flag, environ=environ, cwd=cwd)) is not None:
        candidate, given, origin = named
        if not candidate.exists():
            raise CatalogError(f"catalog not found: {given} (from {origin})")
        if not candidate.is_file():
            raise CatalogError(f"catalog {given} (from {origin}) is not a file")
        return candidate
    return _first_file("catalog.toml", cwd=cwd, config_dir=config_dir)


def no_catalog(config_dir: Path) -> UsageError:
    """The error of a command that needs a catalog and finds none; its hint is the command that
    writes one.
    """
    default = config_dir / "mdl" / "catalog.toml"
    return UsageError(
        "no catalog found: pass --catalog, set MDL_CATALOG, or put catalog.toml in this folder or"
        f" in {default.parent}",
        hint=(
            f"run 'mdl init' to write a starter catalog to {default}, which mdl then reads from any"
            " folder (or 'mdl init --project' for an empty ./catalog.toml here)"
        ),
    )


def find_lock(
    *, flag: Path | None, environ: Mapping[str, str], cwd: Path, config_dir: Path
) -> Path | None:
    """catalog.lock for ``--frozen`` (there may be no catalog): looked for where the catalog
    would be.
    """
    if (named := named_catalog(flag=flag, environ=environ, cwd=cwd)) is not None:
        return lock_beside(named[0])  # named: its lock is the one meant, there or not
    return _first_file("catalog.lock", cwd=cwd, config_dir=config_dir)


def _first_file(name: str, *, cwd: Path, config_dir: Path) -> Path | None:
    return next((path for path in (cwd / name, config_dir / "mdl" / name) if path.is_file()), None)


def lock_beside(catalog: Path) -> Path:
    """``catalog.toml`` -> ``catalog.lock``; ``NAME.lock`` -> ``NAME.lock.lock`` (never the catalog
    itself).
    """
    return (
        catalog.with_name(catalog.name + ".lock")
        if catalog.suffix == ".lock"
        else catalog.with_suffix(".lock")
    )


def named_catalog(
    *, flag: Path | None, environ: Mapping[str, str], cwd: Path
) -> tuple[Path, Path, str] | None:
    """(absolute path, as given, by what) of the catalog --catalog or else $MDL_CATALOG names
    (empty: unset).
    """
    setting = SETTING["catalog"]
    env = environ.get(setting.env, "")
    for given, origin in ((flag, setting.flag), (Path(env) if env else None, f"${setting.env}")):
        # ~ and ~/x from the run's HOME (the shell leaves a quoted "~/x" alone)
        if given is not None:
            home, text = environ.get("HOME", ""), str(given)
            path = (
                Path(home) / text[2:] if home and (text == "~" or text.startswith("~/")) else given
            )
            return (path if path.is_absolute() else cwd / path), given, origin
    return None


def expand_headers(spec: FileSpec, environ: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    """The file's headers with ``${VAR}`` replaced from ``environ``; CatalogError names a missing
    variable.
    """
    expanded: list[tuple[str, str]] = []
    for name, raw in spec.headers:
        for variable in re.findall(VAR_RE, raw):
            value = environ.get(variable, "")
            where = f"{spec.key_path}.headers.{format_key(name)}: environment variable {variable}"
            # An empty token would only earn a puzzling 401 later; say what is missing now.
            if not value:
                raise CatalogError(
                    f"{where} is not set or empty", hint=f"export {variable}=… before running mdl"
                )
            # Never echo the value: it is usually a secret.
            if any((ord(ch) < 0x20 and ch != "\t") or ord(ch) == 0x7F for ch in value):
                raise CatalogError(f"{where} contains a line break or control character")
            if not value.isascii():
                raise CatalogError(
                    f"{where} has non-ASCII characters (HTTP header values are ASCII)"
                )
        # secret: catalog_secrets
        value = re.sub(VAR_RE, lambda match: environ[match.group(1)], raw)
        # the whole value, as it will be sent
        if (problem := header_value_problem(value)) is not None:
            used = ", ".join(dict.fromkeys(re.findall(VAR_RE, raw)))
            raise CatalogError(
                f"{spec.key_path}.headers.{format_key(name)}: its value {problem}"
                + (f" (as {used} sets it)" if used else "")
            )
        expanded.append((name, value))
    return tuple(expanded)


def _syntax_error_message(source: str, exc: tomllib.TOMLDecodeError, document: str) -> str:
    text = str(exc)
    match = re.search(r"\s*\(at (?:line (\d+), column (\d+)|end of document)\)$", text)
    if match is None:
        return f"{source}: invalid TOML: {text}"
    problem = text[: match.start()]
    if match.group(1) is None:
        last_line = document.rstrip("\n").count("\n") + 1
        return f"{source}:{last_line}: invalid TOML at the end of the file: {problem}"
    line, column = int(match.group(1)), int(match.group(2))
    return (
        f"{source}:{line}:{column}: invalid TOML:"
        f" {problem}{_inline_table_hint(document, line, column)}"
    )


def _inline_table_hint(document: str, line: int, column: int) -> str:
    """A hint for a line break inside ``{ … ,``: TOML 1.0 wants inline tables on one line;
    tomllib does not say so.
    """
    lines = document.splitlines()
    if not 1 <= line <= len(lines):
        return ""
    text = lines[line - 1]
    before, after = text[: column - 1].rstrip(), text[column - 1 :].strip()
    if (
        (after and not after.startswith("#"))
        or not before.endswith((",", "{"))
        or "{" not in before
    ):
        return ""
    return (
        " (an inline table { … } must fit on one line; for long entries use [[models.NAME.files]]"
        " tables)"
    )
