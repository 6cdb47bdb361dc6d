"""The catalog's validating reader (loaded only when a catalog is parsed): pydantic tables, strict
and closed, and every problem found, each as one line naming file, line and key path
(``catalog.toml:4: models.z.files[1].as: …``); a ``[settings]`` key this build does not know is a
warning instead."""

from __future__ import annotations

import contextlib
import itertools
import math
import re
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Self
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)
from pydantic import create_model as make_table
from pydantic_core import ErrorDetails, PydanticCustomError

from mdl.buckets.registry import store_for, store_schemes
from mdl.catalog._lines import KeyPath, LineIndex, did_you_mean, format_key, format_path
from mdl.catalog.headers import VAR_RE, header_name_problem, header_value_problem
from mdl.catalog.settings import check_mirror, parse_rate
from mdl.catalog.specs import MAX_MODEL_NAME, NAME_RE, Catalog, CatalogSettings, FileSpec, ModelSpec
from mdl.errors import CatalogError, CatalogWarning, UnsafePathError, UsageError
from mdl.paths import (
    SHA256_HEX,
    home_expanded,
    is_http_url,
    parse_oci_ref,
    revision_problem,
    safe_relative_path,
    url_basename,
)
from mdl.setting import SETTINGS, Setting
from mdl.signing.statement import SIGNATURE_FILE, Trust
from mdl.version import __version__

SCHEMA_VERSION = 1


def problem(message: str, *at: str | int) -> PydanticCustomError:
    """One of our rules broken; ``at`` continues the key path (the message travels in the
    context: no placeholders).
    """
    return PydanticCustomError("mdl_catalog", "{message}", {"message": message, "at": at})


def _where_less(exc: UsageError) -> str:  # without its "where: " prefix: ours adds the key path
    return exc.message.split(": ", 1)[-1]


def _rule(ok: Callable[[Any], object], message: str) -> AfterValidator:
    """A value ``ok`` accepts, else ``message`` (its ``{}`` shows the value)."""

    def check(value: Any) -> Any:
        if not ok(value):
            raise problem(message.format(value))
        return value

    return AfterValidator(check)


def _reworded(check: Callable[[str], str]) -> AfterValidator:
    """The rest of mdl's rule for a value, its UsageError said at our key path."""

    def run(value: str) -> str:
        try:
            return check(value)
        except UsageError as exc:
            raise problem(_where_less(exc)) from None

    return AfterValidator(run)


def _model_name(name: str) -> str:
    if not NAME_RE.fullmatch(name) or name.startswith("."):
        raise problem(
            "model names use letters, digits, '.', '_' and '-' and do not start with '.', got"
            f" {name!r}"
        )
    if len(name) > MAX_MODEL_NAME:
        raise problem(f"model names are at most {MAX_MODEL_NAME} characters, got {len(name)}")
    return name


def _is_repo_id(repo: str) -> bool:
    parts = repo.split("/")
    return len(parts) <= 2 and all(NAME_RE.fullmatch(p) and p not in (".", "..") for p in parts)


def _one_of(choices: tuple[str, ...], *, hint: bool) -> AfterValidator:
    def check(value: str) -> str:
        if value not in choices:
            suggestion = did_you_mean(value, choices) if hint else ""
            raise problem(f"must be one of {', '.join(choices)}, got {value!r}{suggestion}")
        return value

    return AfterValidator(check)


def _file_url(url: str) -> str:
    if not is_http_url(url):
        scheme = urlsplit(url).scheme if "://" in url else ""
        if scheme in ("http", "https"):  # its scheme is right: its host, port or spaces are not
            raise problem("must be an http(s) URL with a host, a port of 1-65535 and no spaces")
        raise problem(
            "must be an http:// or https:// URL, got"
            f" {f'scheme {scheme!r}' if scheme else 'no scheme'}"
        )
    return url


def _endpoint(url: str) -> str:
    if not is_http_url(url):
        raise problem(f"must be an http(s) URL, got {url!r}")
    return url.rstrip("/")  # without a trailing slash: callers append "/api/..."


def _sha256(value: str) -> str:
    # 64 hex digits, any case, optionally prefixed ``sha256:`` (pooch style); kept in lower case.
    digest = value.strip().lower().removeprefix("sha256:")
    if not SHA256_HEX.fullmatch(digest):
        bad = next((ch for ch in digest if ch not in "0123456789abcdef"), None)
        why = f"found {bad!r}" if bad is not None else f"got {len(digest)} characters"
        raise problem(f"must be 64 hex digits (optionally 'sha256:…'), {why}")
    return digest


def _between(low: int, high: int) -> AfterValidator:
    return _rule(lambda value: low <= value <= high, f"must be between {low} and {high}, got {{}}")


def _seconds(*, zero_ok: bool, most: int) -> BeforeValidator:
    # Before pydantic's float check, so the message shows the number as written ("got 0", not "got
    # 0.0").
    def check(value: object) -> object:
        if isinstance(value, bool) or not isinstance(value, int | float):
            return value  # pydantic's strict float check names the wrong type
        shown = (
            value
            if isinstance(value, float) or value.bit_length() < 64
            else f"a {value.bit_length()}-bit number"
        )
        if (
            (isinstance(value, float) and not math.isfinite(value))
            or value < 0
            or (value == 0 and not zero_ok)
        ):
            bound = ">= 0" if zero_ok else "> 0"
            raise problem(f"must be a finite number of seconds {bound}, got {shown}")
        # the table's bound (mdl.setting): a wait every clock and timeout can take; (int first:
        if value > most:
            # float() of a huge int raises)
            raise problem(f"must be at most {most} seconds, got {shown}")
        return float(value)

    return BeforeValidator(check)


def _rate(text: str) -> str:
    try:
        parse_rate(text)
    except UsageError:
        raise problem(
            f"must be a rate in bytes per second like '500K', '50M' or '1.5G' (> 0), got {text!r}"
        ) from None
    return text


def _no_problem(find: Callable[[str], str | None]) -> AfterValidator:
    """A value ``find`` says nothing against, else what it says."""

    def check(value: str) -> str:
        if (why := find(value)) is not None:
            raise problem(why)
        return value

    return AfterValidator(check)


def _header_value_problem(value: str) -> str | None:
    if (why := header_value_problem(value)) is None and "${" in re.sub(VAR_RE, "", value):
        return "has a malformed '${…}'; write ${NAME} with letters, digits and '_'"
    return why


def _distinct_headers(headers: dict[str, str]) -> dict[str, str]:
    # HTTP header names are case-insensitive (RFC 9110 §5.1), TOML keys are not.
    seen: set[str] = set()
    for name in headers:
        if name.lower() in seen:
            raise problem("repeats a header name (names are case-insensitive)", name)
        seen.add(name.lower())
    return headers


Text = Annotated[str, _rule(lambda value: value.strip() != "", "must not be empty")]
# '..' would ask the Hub for its default branch
Revision = Annotated[Text, _no_problem(revision_problem)]
RepoId = Annotated[
    Text,
    _rule(
        _is_repo_id,
        "must be 'owner/name' or 'name' using letters, digits, '.', '_' and '-', got {!r}",
    ),
]
RepoType = Annotated[Text, _one_of(("model", "dataset", "space"), hint=True)]
RelativePath = Annotated[str, _reworded(lambda path: safe_relative_path(path, where=""))]
# (a lock holds sizes below 2**63: a catalog that could not be locked is refused at load)
Size = Annotated[
    int,
    _rule(lambda size: size >= 0, "must be >= 0 bytes, got {}"),
    _rule(lambda size: size < 1 << 63, "must be below 2**63 bytes, got {}"),
]
Headers = Annotated[
    dict[
        Annotated[str, _no_problem(header_name_problem)],
        Annotated[str, _no_problem(_header_value_problem)],
    ],
    AfterValidator(_distinct_headers),
]


class Table(BaseModel):
    """A TOML table: strict types (no coercion), no unknown keys, immutable once read."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    @classmethod
    def keys(cls) -> list[str]:
        """The keys as written in TOML, in schema order (for "allowed: …" and did-you-mean)."""
        return [field.alias or name for name, field in cls.model_fields.items()]


class FileEntry(Table):
    """One entry of a model's ``files``: ``repo`` + ``path`` on the Hub, or a direct ``url``."""

    repo: RepoId | None = None
    path: RelativePath | None = None
    url: Annotated[Text, AfterValidator(_file_url)] | None = None
    revision: Revision | None = None
    repo_type: RepoType | None = None
    sha256: Annotated[Text, AfterValidator(_sha256)] | None = None
    size: Size | None = Field(default=None, description="an integer number of bytes")
    save_as: RelativePath | None = Field(default=None, alias="as")
    headers: Headers | None = Field(default=None, description="a table of header names to strings")

    @model_validator(mode="after")
    def _one_source(self) -> Self:
        if self.url is None:
            _check_hub_file(self.model_fields_set)
        else:
            _check_url_file(self.model_fields_set, self.url, save_as=self.save_as)
        return self

    def to_spec(self, key_path: str) -> FileSpec:
        """The spec other parts use; a Hub file's revision and repo type get their defaults."""
        # not dict(self): keys()
        fields = {**dict(iter(self)), "headers": tuple((self.headers or {}).items())}
        if self.url is None:
            fields.update(revision=self.revision or "main", repo_type=self.repo_type or "model")
        return FileSpec(key_path, **fields)


def _check_hub_file(given: set[str]) -> None:
    """A Hub file names its repo and its path there, and takes no headers."""
    if "repo" not in given and "path" not in given:
        raise problem("needs 'repo' + 'path' (a file in a Hub repo) or 'url' (a direct URL)")
    if "path" not in given:
        raise problem("has 'repo' but no 'path' (the file's path in the repo)")
    if "repo" not in given:
        raise problem("has 'path' but no 'repo' (the Hub repo the file is in)")
    if "headers" in given:
        raise problem("only direct 'url' files take headers; Hub files use HF_TOKEN", "headers")


def _check_url_file(given: set[str], url: str, *, save_as: str | None) -> None:
    """A direct URL file has no Hub keys, and a name to save as (its URL's, else ``as``)."""
    if "repo" in given or "path" in given:
        raise problem("has both 'url' and 'repo'/'path'; use one source")
    for key in ("revision", "repo_type"):
        if key in given:
            raise problem(f"only Hub files ('repo' + 'path') take {key!r}", key)
    if save_as is None:
        try:
            url_basename(url, where="")
        except UnsafePathError as exc:
            raise problem(f"{_where_less(exc)}; set 'as' to name the file", "url") from None


def _signature_file(value: str) -> str:
    if "://" in value:
        # its name in the model folder: the last segment, never the query
        url_basename(_file_url(value), where="")
        return value
    return safe_relative_path(value, where="")


class SignatureTable(Table):
    """``[models.NAME.signature]`` (or ``[settings.signature]``, every model's default): whom the
    model's model.sig must be signed by (exactly one of ``key``, ``certificates``, ``identity`` +
    ``issuer``) and where it is."""

    key: Text | None = None
    certificates: (
        Annotated[list[Text], _rule(bool, "must name at least one certificate file")] | None
    ) = Field(default=None, description="an array of certificate files (PEM)")
    identity: Text | None = None
    issuer: Text | None = None
    file: Annotated[Text, _reworded(_signature_file)] = SIGNATURE_FILE

    @model_validator(mode="after")
    def _one_trust(self) -> Self:
        given = self.model_fields_set
        kinds = [kind for kind in ("key", "certificates", "identity") if kind in given]
        if "issuer" in given and "identity" not in given:
            raise problem("has 'issuer' but no 'identity' (the signer's sigstore identity)")
        if len(kinds) != 1:
            said = f"has {' and '.join(repr(k) for k in kinds)}" if kinds else "names no signer"
            raise problem(
                f"{said}; give exactly one of 'key', 'certificates' or 'identity' + 'issuer'"
            )
        if kinds == ["identity"] and "issuer" not in given:
            raise problem("has 'identity' but no 'issuer' (the OIDC issuer that vouched for it)")
        return self

    def to_trust(self, folder: Path) -> Trust:
        """The trust, its files resolved against ``folder`` (the catalog's)."""
        return Trust(
            key=folder / home_expanded(self.key) if self.key is not None else None,
            certificates=tuple(folder / home_expanded(c) for c in self.certificates or ()),
            identity=self.identity,
            issuer=self.issuer,
            file=self.file,
        )


class ModelEntry(Table):
    """One ``[models.NAME]`` table: a whole-repo snapshot (``repo``) or explicit ``files``."""

    description: str = ""
    tags: list[Text] = Field(default_factory=list, description="an array of strings")
    repo: RepoId | None = None
    repo_type: RepoType = "model"
    revision: Revision = "main"
    include: list[Text] = Field(default_factory=list, description="an array of strings")
    exclude: list[Text] = Field(default_factory=list, description="an array of strings")
    files: Annotated[list[FileEntry], _rule(bool, "must list at least one file")] | None = Field(
        default=None, description="an array of file tables"
    )
    # a model in an OCI registry (its tag or digest in the reference)
    oci: Annotated[Text, _reworded(lambda ref: parse_oci_ref(ref, where="oci").given)] | None = None
    signature: SignatureTable | None = None

    @model_validator(mode="after")
    def _one_source(self) -> Self:
        given = self.model_fields_set
        if "oci" in given:
            return self._oci_alone(given)
        if "repo" in given and "files" in given:
            raise problem(
                "has both 'repo' and 'files'; use 'repo' for a whole repo or 'files' for a list"
            )
        if "repo" not in given and "files" not in given:
            raise problem("needs 'repo' (a whole repo) or 'files' (a list of files)")
        for key in ("repo_type", "revision", "include", "exclude"):
            if "files" in given and key in given:
                raise problem(
                    f"only a whole-repo model (with 'repo') takes {key!r}; "
                    "per-file 'revision' and 'repo_type' go in each file entry",
                    key,
                )
        return self

    def _oci_alone(self, given: set[str]) -> Self:
        """An OCI model is its reference: no Hub keys, no files (its signature is a referrer of its
        manifest)."""
        for key in ("repo", "files", "repo_type", "revision", "include", "exclude"):
            if key in given:
                raise problem(
                    f"has both 'oci' and {key!r}; an OCI model is named by its reference alone"
                    " (its tag or digest in it)",
                    key,
                )
        return self


class MirrorTable(Table):
    """A mirror with its own S3 endpoint: ``{ url = "s3://bucket/prefix/{model}/{path}", endpoint
    = "…" }``.
    """

    url: Annotated[Text, _reworded(lambda template: check_mirror(template, where="mirror"))]
    endpoint: Annotated[Text, AfterValidator(_endpoint)] | None = None

    @model_validator(mode="after")
    def _endpoint_for_stores(self) -> Self:
        store = store_for(self.url)
        if self.endpoint is not None and (store is None or not store.takes_endpoint):
            raise problem(
                f"an endpoint is for {store_schemes(endpoint=True)} mirrors; an http(s) mirror's"
                " URL says where it is",
                "endpoint",
            )
        return self


def _setting_key(setting: Setting) -> tuple[Any, Any]:
    """A ``[settings]`` key's type and field, from the setting's kind and bounds in the table."""
    kind: Any = Text  # a path
    match setting.kind:
        case "count":
            kind = Annotated[int, _between(*setting.bounds)]
        case "seconds":
            kind = Annotated[float, _seconds(zero_ok=setting.zero_ok, most=setting.bounds[1])]
        case "rate":
            kind = Annotated[Text, AfterValidator(_rate)]
        case "choice":
            kind = Annotated[Text, _one_of(setting.choices, hint=False)]
        case "url":
            kind = Annotated[Text, AfterValidator(_endpoint)]
        case "switch":
            kind = bool
    return kind | None, Field(
        default=None, description="a number of seconds" if setting.kind == "seconds" else None
    )


if TYPE_CHECKING:
    _SettingKeys = Table
else:  # the table's settings that are [settings] keys, but mirrors (below: a list of tables)
    keys = {s.name: _setting_key(s) for s in SETTINGS if s.catalog and s.kind != "urls"}
    _SettingKeys = make_table("SettingKeys", __base__=Table, **keys)


class SettingsTable(_SettingKeys):
    signature: SignatureTable | None = None  # every model's, unless it names its own
    # a mirror given as a plain string is a table with only its url
    mirrors: list[
        Annotated[MirrorTable, BeforeValidator(lambda v: {"url": v} if isinstance(v, str) else v)]
    ] = Field(
        default_factory=list,
        description="an array of URL templates (strings, or { url, endpoint } tables)",
    )

    def to_spec(self) -> CatalogSettings:
        return CatalogSettings(
            **{key: value for key, value in self if key not in ("mirrors", "signature")},
            mirrors=tuple(m.url for m in self.mirrors),
            mirror_endpoints=tuple(
                (m.url, m.endpoint) for m in self.mirrors if m.endpoint is not None
            ),
        )


_UNSUPPORTED = f"unsupported catalog version {{}}; this mdl reads version {SCHEMA_VERSION}"


class CatalogDocument(Table):
    version: Annotated[int, _rule(lambda number: number == SCHEMA_VERSION, _UNSUPPORTED)] | None = (
        None
    )
    settings: SettingsTable = Field(default_factory=SettingsTable)
    models: dict[Annotated[str, AfterValidator(_model_name)], ModelEntry] = Field(
        default_factory=dict
    )


# "must be …" for pydantic's strict type errors, by type; a field's description says it better.
_TYPE_PHRASES = {
    "string_type": "a string",
    "int_type": "an integer",
    "float_type": "a number",
    "bool_type": "a boolean",
    "list_type": "an array",
    "dict_type": "a table",
    "model_type": "a table",
}
# "…, got X": the TOML name of the type tomllib read (float, datetime, date and time go by their
# Python names).
_TOML_TYPES: dict[type, str] = {
    bool: "boolean",
    int: "integer",
    str: "string",
    list: "array",
    dict: "table",
}


# A catalog with many problems lists this many (the first ones written), then says how many more
# there are.
MAX_PROBLEMS = 20


def validate_catalog(
    document: dict[str, Any],
    *,
    source: str,
    text: str,
    path: Path | None,
    said: list[str] | None = None,
) -> Catalog:
    """The catalog that tomllib's ``document`` describes; CatalogError listing every problem in
    ``text``, in line order (pydantic reports every broken rule at once; save paths are checked in
    each entry that is valid). Its warnings (a ``[settings]`` key this build does not know) go to
    ``said`` when given (the caller says them), else each a :class:`CatalogWarning`."""
    lines = LineIndex(text)
    found: list[tuple[KeyPath, str]] = []
    unknown: list[str] = []
    document = _without_unknown_settings(document, lines, source, unknown)
    if said is not None:
        said.extend(unknown)
    else:
        for message in unknown:
            warnings.warn(message, CatalogWarning, stacklevel=2)
    try:
        valid: CatalogDocument | None = CatalogDocument.model_validate(document)
    except ValidationError as exc:
        valid = None
        found.extend(
            (_key_path(error), _message(error, _key_path(error))) for error in exc.errors()
        )
    entries = valid.models if valid is not None else _valid_entries(document)
    signer = valid.settings.signature if valid is not None else None
    models = [_model_spec(name, entry, signer, path, found) for name, entry in entries.items()]
    if found or valid is None:
        message, problems = _listed(found, lines, source)
        raise CatalogError(message, problems=problems)
    return Catalog(path=path, settings=valid.settings.to_spec(), models=tuple(models))


def _without_unknown_settings(
    document: dict[str, Any], lines: LineIndex, source: str, said: list[str]
) -> dict[str, Any]:
    """``document`` without the ``[settings]`` keys this build does not know, each a
    :class:`CatalogWarning` naming file, line and key, with a did-you-mean: a newer mdl's setting
    (``fill_mirror`` on a fleet not yet upgraded) tunes how files are fetched, never which bytes
    are right, so an older build goes on without it, as cargo warns of an unused manifest key
    (each warning's text put in ``said``).
    A table there stays an error: ``[settings.signatur]`` must never mean "no signature"."""
    table = document.get("settings")
    if not isinstance(table, dict):
        return document
    known = SettingsTable.keys()
    unknown = [k for k, v in table.items() if k not in known and not isinstance(v, dict)]
    for key in unknown:
        line = lines.line_of(("settings", key))
        where = f"{source}:{line}" if line is not None else source
        said.append(
            f"{where}: {format_path(('settings', key))}: unknown key, ignored by mdl"
            f" {__version__}{did_you_mean(key, known)}"
        )
    kept = {k: v for k, v in table.items() if k not in unknown}
    return {**document, "settings": kept} if unknown else document


def _model_spec(
    name: str,
    entry: ModelEntry,
    signer: SignatureTable | None,
    path: Path | None,
    found: list[tuple[KeyPath, str]],
) -> ModelSpec:
    """The spec of a valid entry (``signer``: the settings' default); its problems join
    ``found``."""
    files = tuple(
        f.to_spec(format_path(("models", name, "files", i)))
        for i, f in enumerate(entry.files or ())
    )
    found.extend(_save_path_clashes(files, ("models", name)))
    values: dict[str, Any] = {
        key: tuple(v) if isinstance(v, list) else v
        for key, v in entry
        if key not in ("files", "signature")
    }
    # a model of files not all in one Hub repo (direct URLs) whose signer names no signature URL
    # keeps its signature in the team's bucket (mdl.sources.resolve.kept_in_bucket)
    signed = entry.signature or signer
    trust = None
    if signed is not None:
        trust = signed.to_trust(path.parent if path is not None else Path.cwd())
    return ModelSpec(name=name, **values, files=files, signature=trust)


def _valid_entries(document: dict[str, Any]) -> dict[str, ModelEntry]:
    """The model entries that are valid on their own, in a catalog that is not (their save paths
    are checked too).
    """
    models = document.get("models")
    entries: dict[str, ModelEntry] = {}
    for name, raw in models.items() if isinstance(models, dict) else ():
        with contextlib.suppress(ValidationError):  # its problems are among the document's
            entries[name] = ModelEntry.model_validate(raw)
    return entries


def _listed(
    found: Sequence[tuple[KeyPath, str]], lines: LineIndex, source: str
) -> tuple[str, list[str]]:
    """The error's message (one problem: one line; more: a line each, the first :data:`MAX_PROBLEMS`
    by line) and its ``problems``, each ``file:line: key.path: what is wrong``."""

    def where(key_path: KeyPath) -> tuple[float, str]:  # (line or inf, "file:line: key.path")
        line = lines.line_of(key_path)
        head = f"{source}:{line}" if line is not None else source
        return (line if line is not None else math.inf), (
            f"{head}: {format_path(key_path)}" if key_path else head
        )

    # sorted is stable: problems on one line keep pydantic's order
    located = sorted(
        ((*where(key_path), message) for key_path, message in found), key=lambda item: item[0]
    )
    problems = list(dict.fromkeys(f"{head}: {message}" for _, head, message in located))
    if len(problems) == 1:
        return problems[0], problems
    shown = [f"  {problem}" for problem in problems[:MAX_PROBLEMS]]
    more = [f"  and {len(problems) - MAX_PROBLEMS} more"] if len(problems) > MAX_PROBLEMS else []
    return "\n".join([f"{source}: {len(problems)} problems", *shown, *more]), problems


def _key_path(error: ErrorDetails) -> KeyPath:
    """pydantic's ``loc`` as our key path: a bad dict key is the key itself; our errors may point
    deeper.
    """
    loc = tuple(error["loc"])
    if loc and loc[-1] == "[key]":
        loc = loc[:-1]
    if error["type"] == "mdl_catalog":
        loc = (*loc, *error.get("ctx", {}).get("at", ()))
    return loc


def _table_at(path: KeyPath) -> type[Table] | None:
    match path:
        case ():
            return CatalogDocument
        case ("settings",):
            return SettingsTable
        case ("settings", "mirrors", int()):
            return MirrorTable
        case ("models", str()):
            return ModelEntry
        case ("models", str(), "files", int()):
            return FileEntry
        case ("models", str(), "signature") | ("settings", "signature"):
            return SignatureTable
    return None


def _message(error: ErrorDetails, path: KeyPath) -> str:
    """What is wrong at ``path``, in the words users have always seen."""
    kind = error["type"]
    if kind == "mdl_catalog":
        return str(error.get("ctx", {}).get("message", error["msg"]))
    if kind == "extra_forbidden":
        owner = _table_at(path[:-1])
        allowed = owner.keys() if owner is not None else []
        hint = did_you_mean(str(path[-1]), allowed) or (
            f" (allowed: {', '.join(allowed)})" if allowed else ""
        )
        return f"unknown key{hint}"
    if kind in _TYPE_PHRASES:
        phrase = _TYPE_PHRASES[kind]
        match path:
            case ("models", str() as name):
                phrase = f"a table like [models.{format_key(name)}]"
            case ("models", str(), "files", int()):
                phrase = "a table like { repo = ..., path = ... }"
            case (*table, str() as key) if (
                owner := _table_at(tuple(table))
            ) and key in owner.model_fields:
                phrase = owner.model_fields[key].description or phrase
        got = type(error["input"])
        return f"must be {phrase}, got {_TOML_TYPES.get(got, got.__name__)}"
    # Not expected from TOML input; still one line, never a traceback.
    return f"is not valid: {error['msg']}"


def _save_path_clashes(files: Sequence[FileSpec], model_path: KeyPath) -> list[tuple[KeyPath, str]]:
    """Each file saving where another does, or into another's file (the message names the other's
    key path).
    """
    clashes: list[tuple[KeyPath, str]] = []
    owners: dict[str, int] = {}  # save path → the first entry saving there
    folders: dict[str, int] = {}  # folder → the first entry saving inside it
    for index, spec in enumerate(files):
        target = spec.save_path
        parents = list(
            itertools.accumulate(target.split("/")[:-1], lambda above, part: f"{above}/{part}")
        )
        inside = next((folder for folder in parents if folder in owners), None)
        clash = None
        if target in owners:
            clash = (
                f"saves to {target!r}, as {files[owners[target]].key_path} does; set 'as' on one of"
                " them"
            )
        elif target in folders:
            clash = (
                f"saves to {target!r}, which {files[folders[target]].key_path} needs as a folder"
            )
        elif inside is not None:
            clash = (
                f"saves to {target!r}, inside {inside!r}, which {files[owners[inside]].key_path}"
                " saves as a file"
            )
        if clash is not None:
            clashes.append(((*model_path, "files", index), clash))
            continue
        owners[target] = index
        for folder in parents:
            folders.setdefault(folder, index)
    return clashes
