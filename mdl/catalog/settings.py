"""Settings resolved once: flags > MDL_* environment > catalog [settings] > defaults. Mirror URL templates: literal
text and ``{known_name}`` placeholders, filled by plain replacement; never ``str.format``, whose format specs a user
could abuse (``{path:>99999999}`` builds a 100 MB string)."""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import platformdirs

from mdl.catalog.headers import catalog_secrets
from mdl.catalog.specs import Catalog, CatalogSettings
from mdl.errors import UsageError
from mdl.paths import is_http_url
from mdl.redact import Secrets

DEFAULT_ENDPOINT = "https://huggingface.co"
DEFAULT_CONNECTIONS = 8
MAX_CONNECTIONS = 64
DEFAULT_JOBS = 4
MAX_JOBS = 64
DEFAULT_STALL_TIMEOUT = 30.0
DEFAULT_TIMEOUT = 10.0  # connect, and wait for an answer (what huggingface_hub uses for its HEADs)
DEFAULT_LOCK_TIMEOUT = 3600.0
DEFAULT_RETRIES = 5
LAYOUTS = ("plain", "hf-cache")
MIRROR_FIELDS = ("model", "repo", "revision", "commit", "path", "sha256")

# S3 bucket names (3-63 letters, digits, '.', '_', '-'; compatibles allow a little more than AWS does)
_BUCKET_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{1,61}[A-Za-z0-9]$")
_RATE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kKmMgG]?)(?:i?[bB])?(?:/s)?\s*$")
# The numbers: setting → (its flag, its variable, lowest, highest); highest None: seconds, > 0 (lowest 1) or >= 0.
_NUMBERS: dict[str, tuple[str, str, int, int | None]] = {
    "connections": ("--connections", "MDL_CONNECTIONS", 1, MAX_CONNECTIONS),
    "jobs": ("--jobs", "MDL_JOBS", 1, MAX_JOBS),
    "stall_timeout": ("--stall-timeout", "MDL_STALL_TIMEOUT", 1, None),
    "timeout": ("--timeout", "MDL_TIMEOUT", 1, None),
    "lock_timeout": ("--lock-timeout", "MDL_LOCK_TIMEOUT", 0, None),
    "retries": ("", "MDL_RETRIES", 0, 100),  # no flag
}
T = TypeVar("T")


@dataclass(frozen=True)
class Settings:
    """Everything a command needs to know about where and how to work; built once per run."""

    dest: Path
    endpoint: str
    offline: bool = False
    connections: int = DEFAULT_CONNECTIONS
    jobs: int = DEFAULT_JOBS
    connections_set: bool = False  # --connections, MDL_CONNECTIONS or the catalog chose it; else big files get more
    jobs_set: bool = False  # --jobs, MDL_JOBS or the catalog chose it; else small files get more in flight
    limit_rate: int | None = None
    stall_timeout: float = DEFAULT_STALL_TIMEOUT
    timeout: float = DEFAULT_TIMEOUT  # every request: connect, and wait for the answer to begin
    lock_timeout: float = DEFAULT_LOCK_TIMEOUT
    retries: int = DEFAULT_RETRIES
    verify: bool = True
    force: bool = False
    dry_run: bool = False
    token: str | None = None
    environ: Mapping[str, str] | None = None
    layout: str = "plain"  # "plain" model folders, or "hf-cache" (Hub files go into the Hugging Face cache)
    hf_cache: Path | None = None  # the Hugging Face hub cache, when layout is "hf-cache"
    mirrors: tuple[str, ...] = ()  # URL templates tried in order before the origin
    # an s3:// mirror's own endpoint (a catalog ``{ url, endpoint }`` entry), over AWS_ENDPOINT_URL[_S3]
    mirror_endpoints: tuple[tuple[str, str], ...] = ()
    # How the run uses catalog.lock: "auto" (a fresh entry pins the model, a stale one is resolved with a warning),
    # "locked" (a missing or stale entry is an error), "frozen" (the lock as written; the catalog is not consulted).
    lock_mode: str = "auto"
    lock_path: Path | None = None  # catalog.lock beside the catalog (None: no catalog file, no lock)
    catalog_path: Path | None = None  # the catalog file (absolute; --frozen without one: where its lock says it is)
    netrc: Path | None = None  # credentials for direct URLs, as curl, wget and aria2c read them ($NETRC, ~/.netrc)
    secrets: Secrets = field(default_factory=Secrets, compare=False, repr=False)  # the run's: learnt, then hidden

    @property
    def state_dir(self) -> Path:
        """Where mdl keeps its own records, locks and partial files: ``<dest>/.mdl``."""
        return self.dest / ".mdl"


def parse_rate(value: str, *, where: str = "--limit-rate") -> int:
    """Parse a rate like ``50M``, ``500k`` or ``1.5G`` into bytes per second (binary units, as curl and aria2c)."""
    match = _RATE_RE.match(value)
    if not match:
        raise UsageError(f"{where}: expected a rate such as 50M or 500K, got {value!r}")
    scaled = float(match.group(1)) * {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}[match.group(2).lower()]
    if not math.isfinite(scaled):  # hundreds of digits overflow the float; int(inf) would be a traceback
        raise UsageError(f"{where}: the rate is too large, got {value!r}")
    rate = int(scaled)
    if rate <= 0:
        raise UsageError(f"{where}: the rate must be positive, got {value!r}")
    return rate


def check_mirror(template: str, *, where: str) -> str:
    """A mirror URL template (http(s) or ``s3://bucket/…``, known ``{placeholders}`` only)."""
    if template.startswith("s3://"):
        bucket = template[len("s3://") :].partition("/")[0]
        if not _BUCKET_RE.match(bucket) or ".." in bucket:
            raise UsageError(
                f"{where}: {bucket!r} is not a bucket name in {template!r} (s3://bucket/prefix/{{model}}/{{path}})"
            )
    elif not template.startswith(("http://", "https://")):
        raise UsageError(f"{where}: a mirror must be an http(s) or s3:// URL template, got {template!r}")
    parse_template(template, fields=MIRROR_FIELDS, where=where)
    return template


def hf_hub_cache(environ: Mapping[str, str]) -> Path:
    """The Hugging Face hub cache, found as huggingface_hub does but from the run's environment."""
    home = environ.get("HF_HOME") or str(Path(environ.get("XDG_CACHE_HOME") or "~/.cache", "huggingface"))
    cache = environ.get("HF_HUB_CACHE") or environ.get("HUGGINGFACE_HUB_CACHE") or str(Path(home, "hub"))
    return Path(os.path.expandvars(cache)).expanduser().absolute()


def parse_bool(value: str) -> bool:  # environment-style truth: 1, true, yes, on
    return value.strip().lower() in {"1", "true", "yes", "on"}


def _env_number(environ: Mapping[str, str], key: str) -> float | None:
    _, name, lo, hi = _NUMBERS[key]
    raw = environ.get(name)
    if not raw:
        return None
    try:
        number = int(raw) if hi is not None else float(raw)
    except ValueError:
        expected = "a whole number" if hi is not None else "a number of seconds"
        raise UsageError(f"${name}: expected {expected}, got {raw!r}") from None
    if hi is not None:
        return check_range(number, flag=f"${name}", lo=lo, hi=hi)
    if not math.isfinite(number) or number < 0 or (lo and number == 0):
        raise UsageError(f"${name}: must be a {'positive' if lo else 'non-negative'} number, got {raw!r}")
    return number


def _check_flag(key: str, value: Any) -> None:
    flag, _, lo, hi = _NUMBERS[key]
    if hi is not None:
        check_range(value, flag=flag, lo=lo, hi=hi)
    elif value is not None and (not math.isfinite(value) or value < 0 or (lo and value == 0)):
        raise UsageError(f"{flag}: must {'be positive' if lo else 'not be negative'}, got {value}")


def check_range(value: float | None, *, flag: str, lo: int, hi: int) -> float | None:
    """Reject a flag value outside ``lo..hi`` with a usage error naming the flag."""
    if value is not None and not lo <= value <= hi:
        raise UsageError(f"{flag}: must be between {lo} and {hi}, got {value}")
    return value


def _first(*values: T | None) -> T | None:
    return next((value for value in values if value is not None), None)


def default_dest() -> Path:
    """``<user data dir>/mdl/models`` (platformdirs, read at call time so tests can isolate it)."""
    return Path(platformdirs.user_data_dir()) / "mdl" / "models"


def default_log_file() -> Path:
    return Path(platformdirs.user_log_dir()) / "mdl" / "mdl.log"


def user_config_dir() -> Path:  # the catalog fallback is <this>/mdl/catalog.toml
    return Path(platformdirs.user_config_dir())


def resolve_dest(
    *, flag: Path | None, environ: Mapping[str, str], catalog_dest: str | None, catalog_dir: Path | None
) -> Path:
    """The download root: ``--dest``, else ``$MDL_DEST``, else ``[settings].dest`` (relative to the catalog)."""
    if flag is not None:
        return _home(flag).absolute()
    if env := environ.get("MDL_DEST"):
        return _home(Path(env)).absolute()
    if catalog_dest:  # relative to the catalog's folder (an absolute one stays as it is)
        return ((catalog_dir or Path()) / _home(Path(catalog_dest))).absolute()
    return default_dest()


def _home(path: Path) -> Path:  # a ~user that does not exist stays as written, as a shell leaves it
    try:
        return path.expanduser()
    except RuntimeError:
        return path


def settings_for(catalog: Catalog, environ: Mapping[str, str], *, dest: Path | None, **flags: Any) -> Settings:
    """A run's settings: ``flags`` over the environment over the catalog's ``[settings]`` over the defaults; the
    catalog's secrets registered in the run's (``secrets``)."""
    flags["secrets"] = secrets = flags.get("secrets") or Secrets()
    catalog_secrets(catalog, environ, secrets)
    where = catalog.path.parent if catalog.path is not None else None
    root = resolve_dest(flag=dest, environ=environ, catalog_dest=catalog.settings.dest, catalog_dir=where)
    return build_settings(environ=environ, dest=root, catalog=catalog.settings, catalog_path=catalog.path, **flags)


def build_settings(
    *,
    environ: Mapping[str, str],
    dest: Path,
    catalog: CatalogSettings | None = None,
    mirrors: tuple[str, ...] | None = None,
    layout: str | None = None,
    connections: int | None = None,
    jobs: int | None = None,
    limit_rate: str | None = None,
    stall_timeout: float | None = None,
    timeout: float | None = None,
    lock_timeout: float | None = None,
    verify: bool = True,
    force: bool = False,
    dry_run: bool = False,
    lock_path: Path | None = None,
    catalog_path: Path | None = None,
    locked: bool = False,
    frozen: bool = False,
    secrets: Secrets | None = None,
) -> Settings:
    """Combine flags, environment, catalog settings and defaults into one frozen Settings."""
    secrets = Secrets() if secrets is None else secrets
    catalog = catalog or CatalogSettings()
    flags: dict[str, Any] = {"connections": connections, "jobs": jobs, "stall_timeout": stall_timeout}
    flags.update(timeout=timeout, lock_timeout=lock_timeout)
    for key in ("connections", "jobs"):
        _check_flag(key, flags[key])
    env_rate = environ.get("MDL_LIMIT_RATE") or None
    if env_rate is not None:
        parse_rate(env_rate, where="$MDL_LIMIT_RATE")  # a broken variable is reported even when a flag wins
    rate_text = _first(limit_rate, env_rate, catalog.limit_rate)
    rate_where = "--limit-rate" if limit_rate else ("$MDL_LIMIT_RATE" if env_rate else "[settings].limit_rate")
    endpoint = (environ.get("HF_ENDPOINT") or catalog.endpoint or DEFAULT_ENDPOINT).rstrip("/")
    if not is_http_url(endpoint):
        # The token guard compares origins (scheme, host, port): an endpoint must have one, or it is bad input.
        raise UsageError(f"HF_ENDPOINT: expected an http(s) URL with a host, got {endpoint!r}")
    for key in ("stall_timeout", "timeout", "lock_timeout"):
        _check_flag(key, flags[key])
    chosen_layout = _first(layout, environ.get("MDL_LAYOUT") or None, catalog.layout) or "plain"
    if chosen_layout not in LAYOUTS:
        where = "--layout" if layout else ("$MDL_LAYOUT" if environ.get("MDL_LAYOUT") else "[settings].layout")
        raise UsageError(f"{where}: expected one of {', '.join(LAYOUTS)}, got {chosen_layout!r}")
    env_mirrors = tuple(check_mirror(m, where="$MDL_MIRRORS") for m in (environ.get("MDL_MIRRORS") or "").split())
    flag_mirrors = tuple(check_mirror(m, where="--mirror") for m in mirrors or ())
    for template in (*env_mirrors, *flag_mirrors):
        secrets.add_url(template)
    numbers = {key: _first(flags.get(key), _env_number(environ, key), getattr(catalog, key)) for key in _NUMBERS}
    return Settings(
        dest=dest,
        endpoint=endpoint,
        # huggingface_hub also honours TRANSFORMERS_OFFLINE; so do we, so that one switch stops every tool.
        offline=parse_bool(environ.get("HF_HUB_OFFLINE") or environ.get("TRANSFORMERS_OFFLINE") or ""),
        **{key: value for key, value in numbers.items() if value is not None},
        connections_set=numbers["connections"] is not None,
        jobs_set=numbers["jobs"] is not None,
        limit_rate=parse_rate(rate_text, where=rate_where) if rate_text else None,
        verify=verify,
        force=force,
        dry_run=dry_run,
        token=environ.get("HF_TOKEN") or None,
        environ=environ,
        layout=chosen_layout,
        hf_cache=hf_hub_cache(environ) if chosen_layout == "hf-cache" else None,
        mirrors=flag_mirrors or env_mirrors or catalog.mirrors,
        mirror_endpoints=catalog.mirror_endpoints,
        lock_mode=choose_lock_mode(locked=locked, frozen=frozen, environ=environ),
        lock_path=lock_path,
        catalog_path=catalog_file(catalog_path, lock_path),
        netrc=netrc_path(environ),
        secrets=secrets,
    )


def catalog_file(catalog: Path | None, lock: Path | None) -> Path | None:
    """The catalog a run reads, as records name it (absolute, links resolved): the file, else (``--frozen`` with
    only its lock here) the catalog that lock is beside (``catalog.lock`` → ``catalog.toml``)."""
    if catalog is None and lock is not None:
        catalog = lock.with_suffix("") if lock.name.endswith(".lock.lock") else lock.with_suffix(".toml")
    return catalog.resolve() if catalog is not None else None


def netrc_path(environ: Mapping[str, str]) -> Path | None:
    """``$NETRC``, else ``$HOME/.netrc`` (None: neither is set), from the run's environment as curl finds it."""
    given = environ.get("NETRC") or (str(Path(environ["HOME"], ".netrc")) if environ.get("HOME") else "")
    return Path(given) if given else None


def choose_lock_mode(*, locked: bool, frozen: bool, environ: Mapping[str, str]) -> str:
    """``--locked`` / ``--frozen``, else ``$MDL_LOCKED`` / ``$MDL_FROZEN`` (as uv's), else auto; both is an error."""
    if locked and frozen:
        raise UsageError(
            "--locked and --frozen: give one, not both (--locked checks the lock against the catalog, "
            "--frozen uses it as written)"
        )
    if locked or frozen:
        return "locked" if locked else "frozen"
    env_locked = parse_bool(environ.get("MDL_LOCKED") or "")
    env_frozen = parse_bool(environ.get("MDL_FROZEN") or "")
    if env_locked and env_frozen:
        raise UsageError("$MDL_LOCKED and $MDL_FROZEN are both set: set one, not both")
    return "locked" if env_locked else ("frozen" if env_frozen else "auto")


_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")


def parse_template(template: str, *, fields: Sequence[str], where: str) -> tuple[str | Placeholder, ...]:
    """Literal text and ``{name}`` placeholders of ``fields``; a format spec, conversion or stray brace is refused."""
    parts: list[str | Placeholder] = []
    at = 0
    for match in _PLACEHOLDER.finditer(template):
        parts.append(_literal(template[at : match.start()], template, where=where))
        name = match.group(1)
        bare = re.split(r"[:!]", name, maxsplit=1)[0]
        if name != bare and bare in fields:
            raise UsageError(
                f"{where}: {{{bare}}} takes no format spec or conversion in {_cut(template)}; write {{{bare}}}"
            )
        if name not in fields:
            known = ", ".join("{" + f + "}" for f in fields)
            shown = name if len(name) <= 40 else name[:40] + "…"
            raise UsageError(f"{where}: unknown placeholder {{{shown}}} in {_cut(template)} (known: {known})")
        parts.append(Placeholder(name))
        at = match.end()
    parts.append(_literal(template[at:], template, where=where))
    return tuple(part for part in parts if part != "")


def fill_template(parts: Sequence[str | Placeholder], values: Mapping[str, str]) -> str:
    """A parsed template with each placeholder replaced by its value, as plain text."""
    return "".join(values[part.name] if isinstance(part, Placeholder) else part for part in parts)


@dataclass(frozen=True)
class Placeholder:  # {name} in a template
    name: str


def _literal(text: str, template: str, *, where: str) -> str:
    if "{" in text or "}" in text:
        raise UsageError(f"{where}: a lone '{{' or '}}' in {_cut(template)}; placeholders are {{name}} alone")
    return text


def _cut(template: str) -> str:
    """A template as an error names it: quoted, and cut when it is long (a 20 MB template is not echoed)."""
    return repr(template if len(template) <= 200 else template[:200] + "…")
