"""Load and strictly validate catalog.toml into frozen dataclasses; errors name file, key path and line."""

from __future__ import annotations

import bisect
import difflib
import json
import math
import re
import tomllib
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import urlsplit

from mdl.catalog.settings import LAYOUTS, check_mirror, parse_rate
from mdl.errors import CatalogError, UnsafePathError, UsageError
from mdl.paths import safe_relative_path, url_basename

SCHEMA_VERSION = 1

REPO_TYPES = ("model", "dataset", "space")
_NAME_RE = re.compile(r"[A-Za-z0-9._-]+")
_BARE_KEY_RE = re.compile(r"[A-Za-z0-9_-]+")
_HEX64_RE = re.compile(r"[0-9a-f]{64}")
# RFC 9110 §5.6.2: a field name is a token.
_HEADER_NAME_RE = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_VAR_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")

_TOP_KEYS = ("version", "settings", "models")
_SETTINGS_KEYS = (
    "dest",
    "connections",
    "jobs",
    "endpoint",
    "limit_rate",
    "stall_timeout",
    "lock_timeout",
    "retries",
    "layout",
    "mirrors",
)
_MODEL_KEYS = ("description", "tags", "repo", "repo_type", "revision", "include", "exclude", "files")
_SNAPSHOT_ONLY_KEYS = ("repo_type", "revision", "include", "exclude")
_FILE_KEYS = ("repo", "path", "url", "revision", "repo_type", "sha256", "size", "as", "headers")
# Names people bring from huggingface_hub, pooch or other tools; difflib cannot guess these.
_ALIASES = {
    "allow_patterns": "include",
    "ignore_patterns": "exclude",
    "repo_id": "repo",
    "branch": "revision",
    "rev": "revision",
    "ref": "revision",
    "type": "repo_type",
    "hash": "sha256",
    "checksum": "sha256",
    "sha": "sha256",
    "save_as": "as",
    "filename": "path",
    "file": "path",
    "dest_path": "as",
    "urls": "url",
}

_KeyPath = tuple[str | int, ...]


# ----------------------------------------------------------------------------------------------- data


@dataclass(frozen=True)
class FileSpec:
    """One explicit file of a model: ``repo`` + ``path`` on the Hub, or a direct ``url``."""

    key_path: str
    repo: str | None = None
    path: str | None = None
    url: str | None = None
    revision: str | None = None
    repo_type: str | None = None
    sha256: str | None = None
    size: int | None = None
    save_as: str | None = None
    headers: tuple[tuple[str, str], ...] = ()

    @property
    def save_path(self) -> str:
        """Where the file goes inside the model folder: ``as``, else ``path``, else the URL's basename."""
        if self.save_as is not None:
            return self.save_as
        if self.path is not None:
            return self.path
        if self.url is not None:
            return url_basename(self.url, where=self.key_path)
        raise UsageError(f"{self.key_path}: a file needs 'repo' + 'path' or 'url'")


@dataclass(frozen=True)
class ModelSpec:
    """One catalog model: a whole-repo snapshot (``repo``) or a list of explicit ``files``."""

    name: str
    description: str = ""
    tags: tuple[str, ...] = ()
    repo: str | None = None
    repo_type: str = "model"
    revision: str = "main"
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    files: tuple[FileSpec, ...] = ()

    @property
    def is_snapshot(self) -> bool:
        """True when the model is a (filtered) snapshot of one repo rather than explicit files."""
        return self.repo is not None


@dataclass(frozen=True)
class CatalogSettings:
    """The optional ``[settings]`` table, as written; flags and environment override it elsewhere."""

    dest: str | None = None
    connections: int | None = None
    jobs: int | None = None
    endpoint: str | None = None
    limit_rate: str | None = None
    stall_timeout: float | None = None
    lock_timeout: float | None = None
    retries: int | None = None
    layout: str | None = None
    mirrors: tuple[str, ...] = ()


@dataclass(frozen=True)
class Catalog:
    """A validated catalog; ``Catalog()`` is the empty catalog used when none is found."""

    path: Path | None = None
    settings: CatalogSettings = field(default_factory=CatalogSettings)
    models: tuple[ModelSpec, ...] = ()

    def get(self, name: str) -> ModelSpec:
        """The model called ``name``, or UsageError with a did-you-mean hint."""
        for model in self.models:
            if model.name == name:
                return model
        where = f"in {self.path}" if self.path is not None else "(no catalog found)"
        names = [m.name for m in self.models]
        raise UsageError(
            f"unknown model {name!r} {where}{_did_you_mean(name, names)}",
            hint="run 'mdl list' to see the catalog's models",
        )

    def select(self, names: Sequence[str], *, all_models: bool) -> list[ModelSpec]:
        """The named models in the order given, without duplicates; every model when ``all_models``."""
        chosen: dict[str, ModelSpec] = {}
        for name in names:
            # Validate even with --all so that a typo is reported rather than silently ignored.
            chosen.setdefault(name, self.get(name))
        if all_models:
            return list(self.models)
        if not chosen:
            raise UsageError("name at least one model, or pass --all")
        return list(chosen.values())


# --------------------------------------------------------------------------------------- public API


def load_catalog(path: Path) -> Catalog:
    """Read and validate the catalog at ``path``; raises CatalogError."""
    try:
        data = path.read_bytes()
    except FileNotFoundError as exc:
        raise CatalogError(f"{path}: catalog not found") from exc
    except IsADirectoryError as exc:
        raise CatalogError(f"{path}: is a folder, not a catalog file") from exc
    except OSError as exc:
        raise CatalogError(f"{path}: cannot read the catalog: {exc.strerror or exc}") from exc
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise CatalogError(f"{path}:{line}: not valid UTF-8 (TOML files must be UTF-8)") from exc
    # Windows editors like to start UTF-8 files with a BOM, which tomllib refuses as a stray character.
    return parse_catalog(text.removeprefix("\ufeff"), source=str(path), path=path)


def parse_catalog(text: str, *, source: str = "catalog.toml", path: Path | None = None) -> Catalog:
    """Validate catalog TOML text; ``source`` names the file in error messages. Raises CatalogError."""
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise CatalogError(_syntax_error_message(source, exc, text)) from exc
    except RecursionError as exc:
        # tomllib recurses per nesting level; a hostile "a = [[[[…" must not become a traceback.
        raise CatalogError(f"{source}: invalid TOML: arrays or tables nested too deeply") from exc
    return _Validator(source, text).catalog(document, path=path)


def find_catalog(*, flag: Path | None, environ: Mapping[str, str], cwd: Path, config_dir: Path) -> Path | None:
    """The catalog: --catalog, else $MDL_CATALOG, else ./catalog.toml, else <config_dir>/mdl/catalog.toml.

    ``config_dir`` is the user config base (for example ``~/.config``). A flag or variable that names a
    missing file is an error (the user asked for it); None means no catalog was found anywhere.
    """
    for given, origin in ((flag, "--catalog"), (_env_path(environ), "$MDL_CATALOG")):
        if given is None:
            continue
        candidate = _expand_home(given, environ)
        if not candidate.is_absolute():
            candidate = cwd / candidate
        if not candidate.exists():
            raise CatalogError(f"catalog not found: {given} (from {origin})")
        if not candidate.is_file():
            raise CatalogError(f"catalog {given} (from {origin}) is not a file")
        return candidate
    for candidate in (cwd / "catalog.toml", config_dir / "mdl" / "catalog.toml"):
        if candidate.is_file():
            return candidate
    return None


def expand_headers(spec: FileSpec, environ: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    """The file's headers with ``${VAR}`` replaced from ``environ``; CatalogError names a missing variable."""
    expanded: list[tuple[str, str]] = []
    for name, raw in spec.headers:

        def substitute(match: re.Match[str], header: str = name) -> str:
            variable = match.group(1)
            value = environ.get(variable, "")
            # An empty token would only earn a puzzling 401 later; say what is missing now.
            if not value:
                raise CatalogError(
                    f"{spec.key_path}.headers.{_format_key(header)}: "
                    f"environment variable {variable} is not set or empty",
                    hint=f"export {variable}=… before running mdl",
                )
            # Never echo the value: it is usually a secret.
            if "\r" in value or "\n" in value or "\0" in value:
                raise CatalogError(
                    f"{spec.key_path}.headers.{_format_key(header)}: "
                    f"environment variable {variable} contains a line break or NUL"
                )
            return value

        expanded.append((name, _VAR_RE.sub(substitute, raw)))
    return tuple(expanded)


# ------------------------------------------------------------------------------------------ helpers


def _rate_is_valid(text: str) -> bool:
    """True for a positive rate in the --limit-rate grammar (the one parser, in mdl.catalog.settings)."""
    try:
        parse_rate(text)
    except UsageError:
        return False
    return True


def _env_path(environ: Mapping[str, str]) -> Path | None:
    """$MDL_CATALOG as a path; an empty value counts as unset, as shells usually mean it."""
    value = environ.get("MDL_CATALOG", "")
    return Path(value) if value else None


def _expand_home(path: Path, environ: Mapping[str, str]) -> Path:
    """Expand ``~`` and ``~/x`` from the passed-in HOME; the shell leaves a quoted ``"~/x"`` alone."""
    home = environ.get("HOME", "")
    text = str(path)
    if home and (text == "~" or text.startswith("~/")):
        return Path(home) / text[2:]
    return path


def _did_you_mean(word: str, choices: Collection[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest choice, or an empty string."""
    alias = _ALIASES.get(word)
    if alias is not None and alias in choices:
        return f" (did you mean {alias!r}?)"
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _format_key(key: str) -> str:
    """A key as TOML would write it: bare when possible, else quoted."""
    return key if _BARE_KEY_RE.fullmatch(key) else json.dumps(key)


def _format_path(path: _KeyPath) -> str:
    """``("models", "x", "files", 1, "as")`` → ``models.x.files[1].as``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + _format_key(part)
    return out


def _toml_type(value: object) -> str:
    """The TOML name of a parsed value's type, for "must be X, got Y" messages."""
    # bool first: it is a subclass of int in Python.
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "table"
    if isinstance(value, datetime):
        return "datetime"
    if isinstance(value, date):
        return "date"
    if isinstance(value, time):
        return "time"
    return type(value).__name__


def _syntax_error_message(source: str, exc: tomllib.TOMLDecodeError, document: str) -> str:
    """One line for a TOML syntax error, with tomllib's line and column up front."""
    text = str(exc)
    match = re.search(r"\s*\(at line (\d+), column (\d+)\)$", text)
    if match:
        line, column = int(match.group(1)), int(match.group(2))
        message = f"{source}:{line}:{column}: invalid TOML: {text[: match.start()]}"
        return message + _inline_table_hint(document, line, column)
    match = re.search(r"\s*\(at end of document\)$", text)
    if match:
        last_line = document.rstrip("\n").count("\n") + 1
        return f"{source}:{last_line}: invalid TOML at the end of the file: {text[: match.start()]}"
    return f"{source}: invalid TOML: {text}"


def _inline_table_hint(document: str, line: int, column: int) -> str:
    """A hint when the error sits at the end of a line inside ``{ … ,`` — a multi-line inline table.

    TOML 1.0 (what tomllib reads) wants inline tables on one line; the error tomllib gives for a
    line break there ("Invalid initial character for a key part") does not say so.
    """
    lines = document.splitlines()
    if not 1 <= line <= len(lines):
        return ""
    text = lines[line - 1]
    before, after = text[: column - 1].rstrip(), text[column - 1 :].strip()
    if (after and not after.startswith("#")) or not before.endswith((",", "{")) or "{" not in before:
        return ""
    return " (an inline table { … } must fit on one line; for long entries use [[models.NAME.files]] tables)"


def _is_http_url(value: str) -> bool:
    """True for an absolute http(s) URL with a host and no whitespace or control characters."""
    if any(ch.isspace() or ord(ch) < 0x20 or ord(ch) == 0x7F for ch in value):
        return False
    try:
        parts = urlsplit(value)
        hostname = parts.hostname
        parts.port  # noqa: B018 - raises ValueError for a malformed port
    except ValueError:
        return False
    return parts.scheme.lower() in ("http", "https") and bool(hostname)


# --------------------------------------------------------------------------------------- validation


class _Validator:
    """Walks the parsed document; the first problem raises CatalogError with file, line and key path."""

    def __init__(self, source: str, text: str) -> None:
        self.source = source
        self.lines = _LineIndex(text)

    # -- error helpers

    def where(self, path: _KeyPath) -> str:
        """``file:line: key.path`` (line when it can be found, key path when there is one)."""
        line = self.lines.line_of(path)
        head = f"{self.source}:{line}" if line is not None else self.source
        return f"{head}: {_format_path(path)}" if path else head

    def fail(self, path: _KeyPath, message: str) -> NoReturn:
        """Raise the one-line CatalogError for ``path``."""
        raise CatalogError(f"{self.where(path)}: {message}")

    def expect_type(self, value: object, kind: type | tuple[type, ...], name: str, path: _KeyPath) -> None:
        """Fail unless ``value`` is of ``kind`` (a bool never passes for int or float)."""
        if isinstance(value, bool) and bool not in (kind if isinstance(kind, tuple) else (kind,)):
            self.fail(path, f"must be {name}, got boolean")
        if not isinstance(value, kind):
            self.fail(path, f"must be {name}, got {_toml_type(value)}")

    def check_keys(self, table: Mapping[str, object], allowed: Sequence[str], path: _KeyPath) -> None:
        """Fail on the first key not in ``allowed``, with a did-you-mean hint or the allowed list."""
        for key in table:
            if key not in allowed:
                hint = _did_you_mean(key, allowed) or f" (allowed: {', '.join(allowed)})"
                self.fail((*path, key), f"unknown key{hint}")

    def string(self, table: Mapping[str, Any], key: str, path: _KeyPath, *, empty: bool = False) -> str | None:
        """An optional string value; empty strings are refused unless ``empty``."""
        if key not in table:
            return None
        value = table[key]
        self.expect_type(value, str, "a string", (*path, key))
        if not empty and not value.strip():
            self.fail((*path, key), "must not be empty")
        return str(value)

    def int_in(self, table: Mapping[str, Any], key: str, path: _KeyPath, low: int, high: int) -> int | None:
        """An optional integer within ``[low, high]``."""
        if key not in table:
            return None
        value = table[key]
        self.expect_type(value, int, "an integer", (*path, key))
        if not low <= value <= high:
            self.fail((*path, key), f"must be between {low} and {high}, got {value}")
        return int(value)

    def seconds(self, table: Mapping[str, Any], key: str, path: _KeyPath, *, zero_ok: bool) -> float | None:
        """An optional finite number of seconds, > 0 (or >= 0 when ``zero_ok``)."""
        if key not in table:
            return None
        value = table[key]
        self.expect_type(value, (int, float), "a number of seconds", (*path, key))
        if not math.isfinite(value) or value < 0 or (value == 0 and not zero_ok):
            bound = ">= 0" if zero_ok else "> 0"
            self.fail((*path, key), f"must be a finite number of seconds {bound}, got {value}")
        return float(value)

    def strings(self, table: Mapping[str, Any], key: str, path: _KeyPath) -> tuple[str, ...]:
        """An optional array of non-empty strings."""
        if key not in table:
            return ()
        value = table[key]
        self.expect_type(value, list, "an array of strings", (*path, key))
        for index, item in enumerate(value):
            self.expect_type(item, str, "a string", (*path, key, index))
            if not item.strip():
                self.fail((*path, key, index), "must not be empty")
        return tuple(value)

    def repo_id(self, table: Mapping[str, Any], path: _KeyPath) -> str | None:
        """An optional ``owner/name`` (or bare ``name``) repo id."""
        repo = self.string(table, "repo", path)
        if repo is None:
            return None
        parts = repo.split("/")
        if len(parts) > 2 or not all(_NAME_RE.fullmatch(p) and p not in (".", "..") for p in parts):
            self.fail(
                (*path, "repo"),
                f"must be 'owner/name' or 'name' using letters, digits, '.', '_' and '-', got {repo!r}",
            )
        return repo

    def repo_type(self, table: Mapping[str, Any], path: _KeyPath) -> str | None:
        """An optional repo type: model, dataset or space."""
        value = self.string(table, "repo_type", path)
        if value is not None and value not in REPO_TYPES:
            hint = _did_you_mean(value, REPO_TYPES)
            self.fail((*path, "repo_type"), f"must be one of {', '.join(REPO_TYPES)}, got {value!r}{hint}")
        return value

    def relative_path(self, table: Mapping[str, Any], key: str, path: _KeyPath) -> str | None:
        """An optional path that must stay inside the model folder."""
        value = self.string(table, key, path, empty=True)
        if value is None:
            return None
        try:
            return safe_relative_path(value, where=self.where((*path, key)))
        except UnsafePathError as exc:
            # Same words, but a catalog problem: callers catch CatalogError from the loader.
            raise CatalogError(exc.message) from exc

    # -- the document

    def catalog(self, document: Mapping[str, Any], *, path: Path | None) -> Catalog:
        """Validate the whole document."""
        self.check_keys(document, _TOP_KEYS, ())
        if "version" in document:
            version = document["version"]
            self.expect_type(version, int, "an integer", ("version",))
            if version != SCHEMA_VERSION:
                self.fail(
                    ("version",),
                    f"unsupported catalog version {version}; this mdl reads version {SCHEMA_VERSION}",
                )
        settings = CatalogSettings()
        if "settings" in document:
            self.expect_type(document["settings"], dict, "a table", ("settings",))
            settings = self.settings(document["settings"])
        models: list[ModelSpec] = []
        if "models" in document:
            self.expect_type(document["models"], dict, "a table", ("models",))
            for name, table in document["models"].items():
                models.append(self.model(name, table))
        return Catalog(path=path, settings=settings, models=tuple(models))

    def settings(self, table: Mapping[str, Any]) -> CatalogSettings:
        """Validate ``[settings]``."""
        path: _KeyPath = ("settings",)
        self.check_keys(table, _SETTINGS_KEYS, path)
        endpoint = self.string(table, "endpoint", path)
        if endpoint is not None:
            if not _is_http_url(endpoint):
                self.fail((*path, "endpoint"), f"must be an http(s) URL, got {endpoint!r}")
            # Stored without a trailing slash so callers can append "/api/..." directly.
            endpoint = endpoint.rstrip("/")
        limit_rate = self.string(table, "limit_rate", path)
        if limit_rate is not None and not _rate_is_valid(limit_rate):
            self.fail(
                (*path, "limit_rate"),
                f"must be a rate in bytes per second like '500K', '50M' or '1.5G' (> 0), got {limit_rate!r}",
            )
        layout = self.string(table, "layout", path)
        if layout is not None and layout not in LAYOUTS:
            self.fail((*path, "layout"), f"must be one of {', '.join(LAYOUTS)}, got {layout!r}")
        mirrors = self.strings(table, "mirrors", path)
        for index, template in enumerate(mirrors):
            try:
                check_mirror(template, where="mirror")
            except UsageError as exc:
                self.fail((*path, "mirrors", index), exc.message.removeprefix("mirror: "))
        return CatalogSettings(
            layout=layout,
            mirrors=mirrors,
            dest=self.string(table, "dest", path),
            connections=self.int_in(table, "connections", path, 1, 64),
            jobs=self.int_in(table, "jobs", path, 1, 64),
            endpoint=endpoint,
            limit_rate=limit_rate,
            stall_timeout=self.seconds(table, "stall_timeout", path, zero_ok=False),
            lock_timeout=self.seconds(table, "lock_timeout", path, zero_ok=True),
            retries=self.int_in(table, "retries", path, 0, 100),
        )

    def model(self, name: str, table: object) -> ModelSpec:
        """Validate one ``[models.NAME]`` table."""
        path: _KeyPath = ("models", name)
        # A model name becomes a folder under dest; a leading dot would also collide with <dest>/.mdl/.
        if not _NAME_RE.fullmatch(name) or name.startswith("."):
            self.fail(
                path,
                f"model names use letters, digits, '.', '_' and '-' and do not start with '.', got {name!r}",
            )
        if not isinstance(table, dict):
            self.fail(path, f"must be a table like [models.{_format_key(name)}], got {_toml_type(table)}")
        self.check_keys(table, _MODEL_KEYS, path)
        description = self.string(table, "description", path, empty=True) or ""
        tags = self.strings(table, "tags", path)
        has_repo, has_files = "repo" in table, "files" in table
        if has_repo and has_files:
            self.fail(path, "has both 'repo' and 'files'; use 'repo' for a whole repo or 'files' for a list")
        if not has_repo and not has_files:
            self.fail(path, "needs 'repo' (a whole repo) or 'files' (a list of files)")
        if has_repo:
            return ModelSpec(
                name=name,
                description=description,
                tags=tags,
                repo=self.repo_id(table, path),
                repo_type=self.repo_type(table, path) or "model",
                revision=self.string(table, "revision", path) or "main",
                include=self.strings(table, "include", path),
                exclude=self.strings(table, "exclude", path),
            )
        for key in _SNAPSHOT_ONLY_KEYS:
            if key in table:
                self.fail(
                    (*path, key),
                    f"only a whole-repo model (with 'repo') takes {key!r}; "
                    "per-file 'revision' and 'repo_type' go in each file entry",
                )
        files = table["files"]
        self.expect_type(files, list, "an array of file tables", (*path, "files"))
        if not files:
            self.fail((*path, "files"), "must list at least one file")
        specs = tuple(self.file(entry, (*path, "files", index)) for index, entry in enumerate(files))
        self.check_save_paths(specs, path)
        return ModelSpec(name=name, description=description, tags=tags, files=specs)

    def file(self, entry: object, path: _KeyPath) -> FileSpec:
        """Validate one entry of ``files``."""
        if not isinstance(entry, dict):
            self.fail(path, f"must be a table like {{ repo = ..., path = ... }}, got {_toml_type(entry)}")
        self.check_keys(entry, _FILE_KEYS, path)
        has_url = "url" in entry
        if has_url and ("repo" in entry or "path" in entry):
            self.fail(path, "has both 'url' and 'repo'/'path'; use one source")
        if not has_url:
            if "repo" not in entry and "path" not in entry:
                self.fail(path, "needs 'repo' + 'path' (a file in a Hub repo) or 'url' (a direct URL)")
            if "path" not in entry:
                self.fail(path, "has 'repo' but no 'path' (the file's path in the repo)")
            if "repo" not in entry:
                self.fail(path, "has 'path' but no 'repo' (the Hub repo the file is in)")
            if "headers" in entry:
                self.fail(
                    (*path, "headers"),
                    "only direct 'url' files take headers; Hub files use HF_TOKEN",
                )
        else:
            for key in ("revision", "repo_type"):
                if key in entry:
                    self.fail((*path, key), f"only Hub files ('repo' + 'path') take {key!r}")
        key_path = _format_path(path)
        spec = FileSpec(
            key_path=key_path,
            repo=self.repo_id(entry, path),
            path=self.relative_path(entry, "path", path),
            url=self.url(entry, path),
            revision=self.string(entry, "revision", path) or (None if has_url else "main"),
            repo_type=self.repo_type(entry, path) or (None if has_url else "model"),
            sha256=self.sha256(entry, path),
            size=self.size(entry, path),
            save_as=self.relative_path(entry, "as", path),
            headers=self.headers(entry, path),
        )
        if spec.save_as is None and spec.url is not None:
            try:
                url_basename(spec.url, where=self.where((*path, "url")))
            except UnsafePathError as exc:
                raise CatalogError(f"{exc.message}; set 'as' to name the file") from exc
        return spec

    def url(self, entry: Mapping[str, Any], path: _KeyPath) -> str | None:
        """An optional direct http(s) URL."""
        url = self.string(entry, "url", path)
        if url is not None and not _is_http_url(url):
            scheme = urlsplit(url).scheme if "://" in url else ""
            got = f"scheme {scheme!r}" if scheme else "no scheme"
            self.fail((*path, "url"), f"must be an http:// or https:// URL, got {got}")
        return url

    def sha256(self, entry: Mapping[str, Any], path: _KeyPath) -> str | None:
        """An optional sha256: 64 hex digits, any case, optionally prefixed ``sha256:`` (pooch style)."""
        value = self.string(entry, "sha256", path)
        if value is None:
            return None
        digest = value.strip().lower().removeprefix("sha256:")
        if not _HEX64_RE.fullmatch(digest):
            bad = next((ch for ch in digest if ch not in "0123456789abcdef"), None)
            why = f"found {bad!r}" if bad is not None else f"got {len(digest)} characters"
            self.fail((*path, "sha256"), f"must be 64 hex digits (optionally 'sha256:…'), {why}")
        return digest

    def size(self, entry: Mapping[str, Any], path: _KeyPath) -> int | None:
        """An optional size in bytes, >= 0."""
        if "size" not in entry:
            return None
        value = entry["size"]
        self.expect_type(value, int, "an integer number of bytes", (*path, "size"))
        if value < 0:
            self.fail((*path, "size"), f"must be >= 0 bytes, got {value}")
        return int(value)

    def headers(self, entry: Mapping[str, Any], path: _KeyPath) -> tuple[tuple[str, str], ...]:
        """Optional headers for a direct URL: names are tokens, values one line, ${VAR} well-formed."""
        if "headers" not in entry:
            return ()
        table = entry["headers"]
        here: _KeyPath = (*path, "headers")
        self.expect_type(table, dict, "a table of header names to strings", here)
        seen: set[str] = set()
        for name, value in table.items():
            if not _HEADER_NAME_RE.fullmatch(name):
                self.fail((*here, name), "is not a valid HTTP header name")
            # HTTP header names are case-insensitive (RFC 9110 §5.1), TOML keys are not.
            if name.lower() in seen:
                self.fail((*here, name), "repeats a header name (names are case-insensitive)")
            seen.add(name.lower())
            self.expect_type(value, str, "a string", (*here, name))
            # A CR or LF would let the value inject extra headers (RFC 9110 §5.5).
            if any((ord(ch) < 0x20 and ch != "\t") or ord(ch) == 0x7F for ch in value):
                self.fail((*here, name), "must not contain line breaks or control characters")
            if "${" in _VAR_RE.sub("", value):
                self.fail((*here, name), "has a malformed '${…}'; write ${NAME} with letters, digits and '_'")
        return tuple((name, str(value)) for name, value in table.items())

    def check_save_paths(self, files: Sequence[FileSpec], model_path: _KeyPath) -> None:
        """Two files must not save to the same path, nor one to a folder that another needs as a file."""
        owners: dict[str, int] = {}
        folders: dict[str, int] = {}
        for index, spec in enumerate(files):
            target = spec.save_path
            here: _KeyPath = (*model_path, "files", index)
            if target in owners:
                other = files[owners[target]].key_path
                self.fail(here, f"saves to {target!r}, as {other} does; set 'as' on one of them")
            if target in folders:
                other = files[folders[target]].key_path
                self.fail(here, f"saves to {target!r}, which {other} needs as a folder")
            parents = target.split("/")[:-1]
            for depth in range(1, len(parents) + 1):
                folder = "/".join(parents[:depth])
                if folder in owners:
                    other = files[owners[folder]].key_path
                    self.fail(here, f"saves to {target!r}, inside {folder!r}, which {other} saves as a file")
                folders.setdefault(folder, index)
            owners[target] = index


# ---------------------------------------------------------------------------------- line numbers


class _ScanStopError(Exception):
    """The scanner met something it does not understand; the lines found so far are kept."""


class _LineIndex:
    """Best-effort map from key paths to the 1-based line that writes them (tomllib reports none)."""

    def __init__(self, text: str) -> None:
        self.found: dict[_KeyPath, int] = {}
        try:
            _Scanner(text, self.found).scan()
        except (_ScanStopError, RecursionError):
            # Line numbers are a courtesy: without them errors still name the file and key path.
            pass

    def line_of(self, path: _KeyPath) -> int | None:
        """The line of ``path``, else of its closest written ancestor (a missing key → its table)."""
        while path:
            if path in self.found:
                return self.found[path]
            path = path[:-1]
        return None


class _Scanner:
    """A small TOML structure walker: headers, keys, arrays and inline tables, never values' meaning.

    It runs only on text tomllib has accepted, so it can be lenient; anything unexpected stops it.
    """

    def __init__(self, text: str, found: dict[_KeyPath, int]) -> None:
        self.text = text
        self.pos = 0
        self.found = found
        self.newlines = [i for i, ch in enumerate(text) if ch == "\n"]
        self.table: _KeyPath = ()
        self.array_tables: dict[_KeyPath, int] = {}

    def line(self, pos: int) -> int:
        """1-based line number of offset ``pos``."""
        return bisect.bisect_left(self.newlines, pos) + 1

    def peek(self, offset: int = 0) -> str:
        """The character at the cursor (+offset), or "" past the end."""
        at = self.pos + offset
        return self.text[at] if at < len(self.text) else ""

    def record(self, path: _KeyPath, pos: int) -> None:
        """Remember the first line that mentions ``path``."""
        self.found.setdefault(path, self.line(pos))

    def skip_blank(self, *, newlines: bool) -> None:
        """Skip spaces, tabs and comments (and newlines when ``newlines``)."""
        while True:
            ch = self.peek()
            if ch in (" ", "\t") or (newlines and ch in ("\r", "\n")):
                self.pos += 1
            elif ch == "#":
                end = self.text.find("\n", self.pos)
                self.pos = len(self.text) if end < 0 else end
            else:
                return

    def scan(self) -> None:
        """Walk the whole document."""
        while True:
            self.skip_blank(newlines=True)
            start = self.pos
            if not self.peek():
                return
            if self.peek() == "[":
                self.header()
            else:
                self.key_value(self.table)
            if self.pos == start:
                raise _ScanStopError

    def header(self) -> None:
        """``[a.b]`` or ``[[a.b]]``: set the current table, counting array-of-tables entries."""
        start = self.pos
        is_array = self.text.startswith("[[", self.pos)
        self.pos += 2 if is_array else 1
        self.skip_blank(newlines=False)
        keys = self.key()
        self.skip_blank(newlines=False)
        self.pos += 2 if is_array else 1
        resolved: _KeyPath = ()
        for depth, key in enumerate(keys):
            resolved = (*resolved, key)
            # [models.x] is also where "models" is first written, as far as a reader is concerned.
            self.record(resolved, start)
            # An earlier [[x]] makes "x" inside later headers mean its latest element.
            if depth < len(keys) - 1 and resolved in self.array_tables:
                resolved = (*resolved, self.array_tables[resolved] - 1)
        if is_array:
            self.record(resolved, start)
            count = self.array_tables.get(resolved, 0)
            self.array_tables[resolved] = count + 1
            resolved = (*resolved, count)
        self.record(resolved, start)
        self.table = resolved

    def key_value(self, base: _KeyPath) -> None:
        """``a.b = value`` relative to ``base``."""
        start = self.pos
        keys = self.key()
        for depth in range(1, len(keys) + 1):
            self.record((*base, *keys[:depth]), start)
        self.skip_blank(newlines=False)
        if self.peek() != "=":
            raise _ScanStopError
        self.pos += 1
        self.skip_blank(newlines=False)
        self.value((*base, *keys))

    def key(self) -> list[str]:
        """A dotted key of bare and quoted parts."""
        keys: list[str] = []
        while True:
            self.skip_blank(newlines=False)
            start = self.pos
            if self.peek() in ('"', "'"):
                self.string()
                keys.append(_unquote_key(self.text[start : self.pos]))
            else:
                while self.peek() and (self.peek().isalnum() or self.peek() in "_-"):
                    self.pos += 1
                if self.pos == start:
                    raise _ScanStopError
                keys.append(self.text[start : self.pos])
            self.skip_blank(newlines=False)
            if self.peek() != ".":
                return keys
            self.pos += 1

    def value(self, path: _KeyPath) -> None:
        """Skip one value, recording the keys and elements inside arrays and inline tables."""
        ch = self.peek()
        if ch in ('"', "'"):
            self.string()
        elif ch == "[":
            self.array(path)
        elif ch == "{":
            self.inline_table(path)
        else:
            start = self.pos
            while self.peek() and self.peek() not in ",]}\r\n#":
                self.pos += 1
            if self.pos == start:
                raise _ScanStopError

    def array(self, path: _KeyPath) -> None:
        """``[v, v, …]``, recording each element's line as ``path + (index,)``."""
        self.pos += 1
        index = 0
        while True:
            self.skip_blank(newlines=True)
            ch = self.peek()
            if ch == "]":
                self.pos += 1
                return
            if ch == ",":
                self.pos += 1
                continue
            if not ch:
                raise _ScanStopError
            self.record((*path, index), self.pos)
            self.value((*path, index))
            index += 1

    def inline_table(self, path: _KeyPath) -> None:
        """``{ k = v, … }``, recording each key's line."""
        self.pos += 1
        while True:
            # Newlines are tolerated for TOML 1.1 style multi-line inline tables.
            self.skip_blank(newlines=True)
            ch = self.peek()
            if ch == "}":
                self.pos += 1
                return
            if ch == ",":
                self.pos += 1
                continue
            if not ch:
                raise _ScanStopError
            self.key_value(path)

    def string(self) -> None:
        """Skip a basic, literal, or multi-line string."""
        quote = self.peek()
        multi = self.text.startswith(quote * 3, self.pos)
        closing = quote * 3 if multi else quote
        self.pos += len(closing)
        while self.pos < len(self.text):
            ch = self.text[self.pos]
            if ch == "\\" and quote == '"':
                self.pos += 2
                continue
            if self.text.startswith(closing, self.pos):
                self.pos += len(closing)
                # A multi-line string may end with up to two quotes of content before its delimiter.
                extra = 0
                while multi and extra < 2 and self.peek() == quote:
                    self.pos += 1
                    extra += 1
                return
            self.pos += 1
        raise _ScanStopError


def _unquote_key(raw: str) -> str:
    """The text of a quoted key, decoded by tomllib itself so escapes match what the parser saw."""
    try:
        value = tomllib.loads(f"k = {raw}").get("k")
    except tomllib.TOMLDecodeError:
        return raw[1:-1]
    return value if isinstance(value, str) else raw[1:-1]
