"""The hand validator: walks the parsed document, the first problem raises CatalogError with file, line and key."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import urlsplit

from mdl.catalog.keys import KeyPath, did_you_mean, format_key, format_path, toml_type
from mdl.catalog.lines import LineIndex
from mdl.catalog.settings import LAYOUTS, check_mirror, parse_rate
from mdl.catalog.specs import REPO_TYPES, VAR_RE, Catalog, CatalogSettings, FileSpec, ModelSpec
from mdl.errors import CatalogError, UnsafePathError, UsageError
from mdl.paths import safe_relative_path, url_basename

SCHEMA_VERSION = 1

_NAME_RE = re.compile(r"[A-Za-z0-9._-]+")
_HEX64_RE = re.compile(r"[0-9a-f]{64}")
# RFC 9110 §5.6.2: a field name is a token.
_HEADER_NAME_RE = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")

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


def _rate_is_valid(text: str) -> bool:
    """True for a positive rate in the --limit-rate grammar (the one parser, in mdl.catalog.settings)."""
    try:
        parse_rate(text)
    except UsageError:
        return False
    return True


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


class Validator:
    """Walks the parsed document; the first problem raises CatalogError with file, line and key path."""

    def __init__(self, source: str, text: str) -> None:
        self.source = source
        self.lines = LineIndex(text)

    # -- error helpers

    def where(self, path: KeyPath) -> str:
        """``file:line: key.path`` (line when it can be found, key path when there is one)."""
        line = self.lines.line_of(path)
        head = f"{self.source}:{line}" if line is not None else self.source
        return f"{head}: {format_path(path)}" if path else head

    def fail(self, path: KeyPath, message: str) -> NoReturn:
        """Raise the one-line CatalogError for ``path``."""
        raise CatalogError(f"{self.where(path)}: {message}")

    def expect_type(self, value: object, kind: type | tuple[type, ...], name: str, path: KeyPath) -> None:
        """Fail unless ``value`` is of ``kind`` (a bool never passes for int or float)."""
        if isinstance(value, bool) and bool not in (kind if isinstance(kind, tuple) else (kind,)):
            self.fail(path, f"must be {name}, got boolean")
        if not isinstance(value, kind):
            self.fail(path, f"must be {name}, got {toml_type(value)}")

    def check_keys(self, table: Mapping[str, object], allowed: Sequence[str], path: KeyPath) -> None:
        """Fail on the first key not in ``allowed``, with a did-you-mean hint or the allowed list."""
        for key in table:
            if key not in allowed:
                hint = did_you_mean(key, allowed) or f" (allowed: {', '.join(allowed)})"
                self.fail((*path, key), f"unknown key{hint}")

    def string(self, table: Mapping[str, Any], key: str, path: KeyPath, *, empty: bool = False) -> str | None:
        """An optional string value; empty strings are refused unless ``empty``."""
        if key not in table:
            return None
        value = table[key]
        self.expect_type(value, str, "a string", (*path, key))
        if not empty and not value.strip():
            self.fail((*path, key), "must not be empty")
        return str(value)

    def int_in(self, table: Mapping[str, Any], key: str, path: KeyPath, low: int, high: int) -> int | None:
        """An optional integer within ``[low, high]``."""
        if key not in table:
            return None
        value = table[key]
        self.expect_type(value, int, "an integer", (*path, key))
        if not low <= value <= high:
            self.fail((*path, key), f"must be between {low} and {high}, got {value}")
        return int(value)

    def seconds(self, table: Mapping[str, Any], key: str, path: KeyPath, *, zero_ok: bool) -> float | None:
        """An optional finite number of seconds, > 0 (or >= 0 when ``zero_ok``)."""
        if key not in table:
            return None
        value = table[key]
        self.expect_type(value, (int, float), "a number of seconds", (*path, key))
        if not math.isfinite(value) or value < 0 or (value == 0 and not zero_ok):
            bound = ">= 0" if zero_ok else "> 0"
            self.fail((*path, key), f"must be a finite number of seconds {bound}, got {value}")
        return float(value)

    def strings(self, table: Mapping[str, Any], key: str, path: KeyPath) -> tuple[str, ...]:
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

    def repo_id(self, table: Mapping[str, Any], path: KeyPath) -> str | None:
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

    def repo_type(self, table: Mapping[str, Any], path: KeyPath) -> str | None:
        """An optional repo type: model, dataset or space."""
        value = self.string(table, "repo_type", path)
        if value is not None and value not in REPO_TYPES:
            hint = did_you_mean(value, REPO_TYPES)
            self.fail((*path, "repo_type"), f"must be one of {', '.join(REPO_TYPES)}, got {value!r}{hint}")
        return value

    def relative_path(self, table: Mapping[str, Any], key: str, path: KeyPath) -> str | None:
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
        path: KeyPath = ("settings",)
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
        path: KeyPath = ("models", name)
        # A model name becomes a folder under dest; a leading dot would also collide with <dest>/.mdl/.
        if not _NAME_RE.fullmatch(name) or name.startswith("."):
            self.fail(
                path,
                f"model names use letters, digits, '.', '_' and '-' and do not start with '.', got {name!r}",
            )
        if not isinstance(table, dict):
            self.fail(path, f"must be a table like [models.{format_key(name)}], got {toml_type(table)}")
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

    def file(self, entry: object, path: KeyPath) -> FileSpec:
        """Validate one entry of ``files``."""
        if not isinstance(entry, dict):
            self.fail(path, f"must be a table like {{ repo = ..., path = ... }}, got {toml_type(entry)}")
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
        key_path = format_path(path)
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

    def url(self, entry: Mapping[str, Any], path: KeyPath) -> str | None:
        """An optional direct http(s) URL."""
        url = self.string(entry, "url", path)
        if url is not None and not _is_http_url(url):
            scheme = urlsplit(url).scheme if "://" in url else ""
            got = f"scheme {scheme!r}" if scheme else "no scheme"
            self.fail((*path, "url"), f"must be an http:// or https:// URL, got {got}")
        return url

    def sha256(self, entry: Mapping[str, Any], path: KeyPath) -> str | None:
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

    def size(self, entry: Mapping[str, Any], path: KeyPath) -> int | None:
        """An optional size in bytes, >= 0."""
        if "size" not in entry:
            return None
        value = entry["size"]
        self.expect_type(value, int, "an integer number of bytes", (*path, "size"))
        if value < 0:
            self.fail((*path, "size"), f"must be >= 0 bytes, got {value}")
        return int(value)

    def headers(self, entry: Mapping[str, Any], path: KeyPath) -> tuple[tuple[str, str], ...]:
        """Optional headers for a direct URL: names are tokens, values one line, ${VAR} well-formed."""
        if "headers" not in entry:
            return ()
        table = entry["headers"]
        here: KeyPath = (*path, "headers")
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
            if "${" in VAR_RE.sub("", value):
                self.fail((*here, name), "has a malformed '${…}'; write ${NAME} with letters, digits and '_'")
        return tuple((name, str(value)) for name, value in table.items())

    def check_save_paths(self, files: Sequence[FileSpec], model_path: KeyPath) -> None:
        """Two files must not save to the same path, nor one to a folder that another needs as a file."""
        owners: dict[str, int] = {}
        folders: dict[str, int] = {}
        for index, spec in enumerate(files):
            target = spec.save_path
            here: KeyPath = (*model_path, "files", index)
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
