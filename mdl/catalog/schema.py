"""The catalog schema in pydantic: strict, frozen tables that forbid unknown keys, and validators for our rules.

Pydantic checks types (strictly: a TOML integer is never a boolean or a string), unknown keys and nesting;
the validators here say what is ours (repo ids, relative paths, hex digests, exactly one source) with the
words users see. ``mdl.catalog.validate`` turns pydantic's errors into one-line messages; this module is
imported only when a catalog is parsed, so ``mdl --help`` never pays for pydantic.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Self
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, model_validator
from pydantic_core import PydanticCustomError

from mdl.catalog.keys import did_you_mean
from mdl.catalog.settings import LAYOUTS, MAX_CONNECTIONS, MAX_JOBS, check_mirror, parse_rate
from mdl.catalog.specs import REPO_TYPES, SCHEMA_VERSION, VAR_RE, CatalogSettings, FileSpec
from mdl.errors import UnsafePathError, UsageError
from mdl.paths import is_http_url, safe_relative_path, url_basename
from mdl.redact import remember_url_secrets

SNAPSHOT_ONLY_KEYS = ("repo_type", "revision", "include", "exclude")

_NAME_RE = re.compile(r"[A-Za-z0-9._-]+")
MAX_MODEL_NAME = 200
_HEX64_RE = re.compile(r"[0-9a-f]{64}")
# RFC 9110 §5.6.2: a field name is a token.
_HEADER_NAME_RE = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")


@dataclass(frozen=True)
class Expect:
    """Annotation metadata: what a value must be, in "must be …, got <TOML type>" ("an array of strings").

    ``{name}`` stands for the value's own key (a model's name).
    """

    phrase: str


def problem(message: str, *at: str | int) -> PydanticCustomError:
    """One of our rules broken; ``at`` continues the key path below the value being validated.

    The message travels in the context, not the template, so that braces in user values are never
    taken for pydantic placeholders.
    """
    return PydanticCustomError("mdl_catalog", "{message}", {"message": message, "at": at})


def _where_less(exc: UsageError) -> str:
    """An error from mdl.paths or mdl.catalog.settings without its ``where: `` prefix (ours adds the key path)."""
    return exc.message.split(": ", 1)[-1]


# ------------------------------------------------------------------------------------------- values


def _not_blank(value: str) -> str:
    if not value.strip():
        raise problem("must not be empty")
    return value


def _model_name(name: str) -> str:
    # A model name becomes a folder under dest; a leading dot would also collide with <dest>/.mdl/.
    if not _NAME_RE.fullmatch(name) or name.startswith("."):
        raise problem(f"model names use letters, digits, '.', '_' and '-' and do not start with '.', got {name!r}")
    if len(name) > MAX_MODEL_NAME:
        # It is a folder name, and part of mdl's own file names under .mdl/ (records, partials, locks).
        raise problem(f"model names are at most {MAX_MODEL_NAME} characters, got {len(name)}")
    return name


def _repo_id(repo: str) -> str:
    parts = repo.split("/")
    if len(parts) > 2 or not all(_NAME_RE.fullmatch(p) and p not in (".", "..") for p in parts):
        raise problem(f"must be 'owner/name' or 'name' using letters, digits, '.', '_' and '-', got {repo!r}")
    return repo


def _one_of(choices: tuple[str, ...], *, hint: bool) -> Callable[[str], str]:
    def check(value: str) -> str:
        if value not in choices:
            suggestion = did_you_mean(value, choices) if hint else ""
            raise problem(f"must be one of {', '.join(choices)}, got {value!r}{suggestion}")
        return value

    return check


def _relative_path(value: str) -> str:
    try:
        return safe_relative_path(value, where="")
    except UnsafePathError as exc:
        raise problem(_where_less(exc)) from None


def _file_url(url: str) -> str:
    remember_url_secrets(url)  # a catalog's presigned URL: no sink may show its signature, however quoted
    if not is_http_url(url):
        scheme = urlsplit(url).scheme if "://" in url else ""
        raise problem(f"must be an http:// or https:// URL, got {f'scheme {scheme!r}' if scheme else 'no scheme'}")
    return url


def _endpoint(url: str) -> str:
    if not is_http_url(url):
        raise problem(f"must be an http(s) URL, got {url!r}")
    return url.rstrip("/")  # without a trailing slash: callers append "/api/..."


def _sha256(value: str) -> str:
    """64 hex digits, any case, optionally prefixed ``sha256:`` (pooch style); kept in lower case."""
    digest = value.strip().lower().removeprefix("sha256:")
    if not _HEX64_RE.fullmatch(digest):
        bad = next((ch for ch in digest if ch not in "0123456789abcdef"), None)
        why = f"found {bad!r}" if bad is not None else f"got {len(digest)} characters"
        raise problem(f"must be 64 hex digits (optionally 'sha256:…'), {why}")
    return digest


def _bytes(value: int) -> int:
    if value < 0:
        raise problem(f"must be >= 0 bytes, got {value}")
    return value


def _between(low: int, high: int) -> AfterValidator:
    def check(value: int) -> int:
        if not low <= value <= high:
            raise problem(f"must be between {low} and {high}, got {value}")
        return value

    return AfterValidator(check)


def _seconds(*, zero_ok: bool) -> BeforeValidator:
    # Before pydantic's float check, so the message shows the number as written ("got 0", not "got 0.0").
    def check(value: object) -> object:
        if isinstance(value, bool) or not isinstance(value, int | float):
            return value  # pydantic's strict float check names the wrong type
        if not math.isfinite(value) or value < 0 or (value == 0 and not zero_ok):
            bound = ">= 0" if zero_ok else "> 0"
            raise problem(f"must be a finite number of seconds {bound}, got {value}")
        return value

    return BeforeValidator(check)


def _rate(text: str) -> str:
    try:
        parse_rate(text)
    except UsageError:
        raise problem(f"must be a rate in bytes per second like '500K', '50M' or '1.5G' (> 0), got {text!r}") from None
    return text


def _mirror(template: str) -> str:
    try:
        return check_mirror(template, where="mirror")
    except UsageError as exc:
        raise problem(_where_less(exc)) from None


def _header_name(name: str) -> str:
    if not _HEADER_NAME_RE.fullmatch(name):
        raise problem("is not a valid HTTP header name")
    return name


def _header_value(value: str) -> str:
    # A CR or LF would let the value inject extra headers (RFC 9110 §5.5).
    if any((ord(ch) < 0x20 and ch != "\t") or ord(ch) == 0x7F for ch in value):
        raise problem("must not contain line breaks or control characters")
    # HTTP/1.1 sends header values as ASCII; anything else would fail at send time (RFC 9110 §5.5: obs-text).
    if not value.isascii():
        raise problem("must be ASCII (percent- or base64-encode other characters)")
    if "${" in VAR_RE.sub("", value):
        raise problem("has a malformed '${…}'; write ${NAME} with letters, digits and '_'")
    return value


def _distinct_headers(headers: dict[str, str]) -> dict[str, str]:
    # HTTP header names are case-insensitive (RFC 9110 §5.1), TOML keys are not.
    seen: set[str] = set()
    for name in headers:
        if name.lower() in seen:
            raise problem("repeats a header name (names are case-insensitive)", name)
        seen.add(name.lower())
    return headers


def _some_files(files: list[FileEntry]) -> list[FileEntry]:
    if not files:
        raise problem("must list at least one file")
    return files


Text = Annotated[str, AfterValidator(_not_blank)]
Strings = Annotated[list[Text], Expect("an array of strings")]
RepoId = Annotated[Text, AfterValidator(_repo_id)]
RepoType = Annotated[Text, AfterValidator(_one_of(REPO_TYPES, hint=True))]
RelativePath = Annotated[str, AfterValidator(_relative_path)]
Seconds = Annotated[float, Expect("a number of seconds")]
Headers = Annotated[
    dict[Annotated[str, AfterValidator(_header_name)], Annotated[str, AfterValidator(_header_value)]],
    Expect("a table of header names to strings"),
    AfterValidator(_distinct_headers),
]


# ------------------------------------------------------------------------------------------- tables


class Table(BaseModel):
    """A TOML table: strict types (no coercion), no unknown keys, immutable once read."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    @classmethod
    def keys(cls) -> list[str]:
        """The keys the table takes, as written in TOML, in schema order (for "allowed: …" and did-you-mean)."""
        return [field.alias or name for name, field in cls.model_fields.items()]


class FileEntry(Table):
    """One entry of a model's ``files``: ``repo`` + ``path`` on the Hub, or a direct ``url``."""

    repo: RepoId | None = None
    path: RelativePath | None = None
    url: Annotated[Text, AfterValidator(_file_url)] | None = None
    revision: Text | None = None
    repo_type: RepoType | None = None
    sha256: Annotated[Text, AfterValidator(_sha256)] | None = None
    size: Annotated[int, Expect("an integer number of bytes"), AfterValidator(_bytes)] | None = None
    as_: RelativePath | None = Field(default=None, alias="as")
    headers: Headers | None = None

    @model_validator(mode="after")
    def _one_source(self) -> Self:
        given = self.model_fields_set
        if self.url is None:
            if "repo" not in given and "path" not in given:
                raise problem("needs 'repo' + 'path' (a file in a Hub repo) or 'url' (a direct URL)")
            if "path" not in given:
                raise problem("has 'repo' but no 'path' (the file's path in the repo)")
            if "repo" not in given:
                raise problem("has 'path' but no 'repo' (the Hub repo the file is in)")
            if "headers" in given:
                raise problem("only direct 'url' files take headers; Hub files use HF_TOKEN", "headers")
            return self
        if "repo" in given or "path" in given:
            raise problem("has both 'url' and 'repo'/'path'; use one source")
        for key in ("revision", "repo_type"):
            if key in given:
                raise problem(f"only Hub files ('repo' + 'path') take {key!r}", key)
        if self.as_ is None:
            try:
                url_basename(self.url, where="")
            except UnsafePathError as exc:
                raise problem(f"{_where_less(exc)}; set 'as' to name the file", "url") from None
        return self

    def to_spec(self, key_path: str) -> FileSpec:
        """The frozen spec other parts use; a Hub file's revision and repo type get their defaults."""
        hub = self.url is None
        return FileSpec(
            key_path=key_path,
            repo=self.repo,
            path=self.path,
            url=self.url,
            revision=self.revision or ("main" if hub else None),
            repo_type=self.repo_type or ("model" if hub else None),
            sha256=self.sha256,
            size=self.size,
            save_as=self.as_,
            headers=tuple((self.headers or {}).items()),
        )


class ModelEntry(Table):
    """One ``[models.NAME]`` table: a whole-repo snapshot (``repo``) or explicit ``files``."""

    description: str = ""
    tags: Strings = Field(default_factory=list)
    repo: RepoId | None = None
    repo_type: RepoType = "model"
    revision: Text = "main"
    include: Strings = Field(default_factory=list)
    exclude: Strings = Field(default_factory=list)
    files: (
        Annotated[
            list[Annotated[FileEntry, Expect("a table like { repo = ..., path = ... }")]],
            Expect("an array of file tables"),
            AfterValidator(_some_files),
        ]
        | None
    ) = None

    @model_validator(mode="after")
    def _one_source(self) -> Self:
        given = self.model_fields_set
        if "repo" in given and "files" in given:
            raise problem("has both 'repo' and 'files'; use 'repo' for a whole repo or 'files' for a list")
        if "repo" not in given and "files" not in given:
            raise problem("needs 'repo' (a whole repo) or 'files' (a list of files)")
        for key in SNAPSHOT_ONLY_KEYS:
            if "files" in given and key in given:
                raise problem(
                    f"only a whole-repo model (with 'repo') takes {key!r}; "
                    "per-file 'revision' and 'repo_type' go in each file entry",
                    key,
                )
        return self


class MirrorTable(Table):
    """A mirror with its own S3 endpoint: ``{ url = "s3://bucket/prefix/{model}/{path}", endpoint = "…" }``."""

    url: Annotated[Text, AfterValidator(_mirror)]
    endpoint: Annotated[Text, AfterValidator(_endpoint)] | None = None

    @model_validator(mode="after")
    def _s3_only(self) -> Self:
        if self.endpoint is not None and not self.url.startswith("s3://"):
            raise problem("an endpoint is for s3:// mirrors; an http(s) mirror's URL says where it is", "endpoint")
        return self


class SettingsTable(Table):
    """The optional ``[settings]`` table."""

    dest: Text | None = None
    connections: Annotated[int, _between(1, MAX_CONNECTIONS)] | None = None
    jobs: Annotated[int, _between(1, MAX_JOBS)] | None = None
    endpoint: Annotated[Text, AfterValidator(_endpoint)] | None = None
    limit_rate: Annotated[Text, AfterValidator(_rate)] | None = None
    stall_timeout: Annotated[Seconds, _seconds(zero_ok=False)] | None = None
    timeout: Annotated[Seconds, _seconds(zero_ok=False)] | None = None
    lock_timeout: Annotated[Seconds, _seconds(zero_ok=True)] | None = None
    retries: Annotated[int, _between(0, 100)] | None = None
    layout: Annotated[Text, AfterValidator(_one_of(LAYOUTS, hint=False))] | None = None
    mirrors: Annotated[
        # a mirror given as a plain string is a table with only its url
        list[Annotated[MirrorTable, BeforeValidator(lambda v: {"url": v} if isinstance(v, str) else v)]],
        Expect("an array of URL templates (strings, or { url, endpoint } tables)"),
    ] = Field(default_factory=list)

    def to_spec(self) -> CatalogSettings:
        """The frozen settings other parts use (seconds always as floats)."""
        return CatalogSettings(
            dest=self.dest,
            connections=self.connections,
            jobs=self.jobs,
            endpoint=self.endpoint,
            limit_rate=self.limit_rate,
            stall_timeout=None if self.stall_timeout is None else float(self.stall_timeout),
            timeout=None if self.timeout is None else float(self.timeout),
            lock_timeout=None if self.lock_timeout is None else float(self.lock_timeout),
            retries=self.retries,
            layout=self.layout,
            mirrors=tuple(m.url for m in self.mirrors),
            mirror_endpoints=tuple((m.url, m.endpoint) for m in self.mirrors if m.endpoint is not None),
        )


def _version(version: int) -> int:
    if version != SCHEMA_VERSION:
        raise problem(f"unsupported catalog version {version}; this mdl reads version {SCHEMA_VERSION}")
    return version


class CatalogDocument(Table):
    """The whole ``catalog.toml``."""

    version: Annotated[int, AfterValidator(_version)] | None = None
    settings: SettingsTable = Field(default_factory=SettingsTable)
    models: dict[
        Annotated[str, AfterValidator(_model_name)],
        Annotated[ModelEntry, Expect("a table like [models.{name}]")],
    ] = Field(default_factory=dict)
