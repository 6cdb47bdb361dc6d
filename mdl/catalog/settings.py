"""Settings resolved once: flags > MDL_* environment > catalog [settings] > defaults. Mirror URL
templates: literal text and ``{known_name}`` placeholders, filled by plain replacement; never
``str.format``, whose format specs a user could abuse (``{path:>99999999}`` builds a 100 MB string).
"""

# (annotations here are evaluated, not postponed: typing compiles each string annotation of
# Settings' fields at every start, issue 90)
import math
import os
import re
import unicodedata
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from mdl.buckets.registry import store_for, store_schemes
from mdl.catalog.headers import PASTE_AGAIN, catalog_secrets, header_value_problem
from mdl.errors import UsageError
from mdl.paths import character_problem, home_expanded, is_http_url, parse_oci_ref, shown
from mdl.redact import Secrets, unshown
from mdl.setting import (
    OFF,
    OFFLINE_VARIABLES,
    ON,
    SETTING,
    SETTINGS,
    Overrides,
    Setting,
    parse_bool,
)
from mdl.userfolders import user_folder

if TYPE_CHECKING:
    from mdl.catalog.specs import Catalog, CatalogSettings

LAYOUTS = SETTING["layout"].choices
# the switches choose_lock_mode reads together
LOCK_MODE = ("locked", "frozen")
MIRROR_FIELDS = ("model", "repo", "revision", "commit", "path", "sha256")

_RATE_RE = r"^\s*(\d+(?:\.\d+)?)\s*([kKmMgG]?)(?:i?[bB])?(?:/s)?\s*$"


class Settings(NamedTuple):
    """Everything a command needs to know about where and how to work; built once per run. (A
    NamedTuple: a frozen dataclass's generated methods were compiled at every start, issue 90.)"""

    dest: Path
    endpoint: str
    offline: bool
    connections: int
    jobs: int
    # --connections, MDL_CONNECTIONS or the catalog chose it; else big files get more
    connections_set: bool
    jobs_set: bool  # --jobs, MDL_JOBS or the catalog chose it; else small files get more in flight
    limit_rate: int | None
    stall_timeout: float
    timeout: float  # every request: connect, and wait for the answer to begin
    lock_timeout: float
    retries: int | None  # a count that bounds every retry (None: RetryPolicy's split)
    retry_max_time: float  # seconds a link that is down is tried again
    verify: bool
    force: bool
    dry_run: bool
    # pull: a signed model's version no signature covers yet is fetched all the same (its files
    # held to their hashes, the model partial) for its seeder to sign (``publish --sign``)
    unsigned: bool
    token: str | None
    environ: Mapping[str, str]
    layout: str  # "plain" model folders, or "hf-cache" (Hub files go into the Hugging Face cache)
    hf_cache: Path | None  # the Hugging Face hub cache, when layout is "hf-cache"
    mirrors: tuple[str, ...]  # URL templates tried in order before the origin
    # the first mirror in a store filled with what it lacks, under a lease (mdl.download._fill)
    fill_mirror: bool
    # Hub files stored in Xet fetched by chunk (reusing chunks on disk); False: whole, over plain
    # HTTP
    xet: bool
    # an object-store mirror's own endpoint (a catalog ``{ url, endpoint }`` entry; s3://: over
    # AWS_ENDPOINT_URL[_S3])
    mirror_endpoints: tuple[tuple[str, str], ...]
    # How the run uses catalog.lock: "auto" (a fresh entry pins the model, a stale one is resolved
    # with a warning), "locked" (a missing or stale entry is an error), "frozen" (the lock as
    # written; the catalog is not consulted).
    lock_mode: str
    lock_path: Path | None  # catalog.lock beside the catalog (None: no catalog file, no lock)
    # --lock FILE (or $MDL_LOCK_FILE) named lock_path: that lock is the truth for the run (its pins
    # are used as written, never judged stale against the catalog as it is now)
    lock_given: bool
    # the catalog file (absolute; --frozen without one: where its lock says it is)
    catalog_path: Path | None
    # credentials for direct URLs, as curl, wget and aria2c read them ($NETRC, ~/.netrc)
    netrc: Path | None
    # the run's: learnt, then hidden
    secrets: Secrets

    def __repr__(self) -> str:  # (as a dataclass with repr=False: no secret in a traceback)
        return unshown(self)

    @property
    def state_dir(self) -> Path:
        """Where mdl keeps its own records, locks and partial files: ``<dest>/.mdl``."""
        return self.dest / ".mdl"


def parse_rate(value: str, *, where: str = "--limit-rate") -> int:
    """Parse a rate like ``50M``, ``500k`` or ``1.5G`` into bytes per second (binary units, as
    curl and aria2c).
    """
    match = re.match(_RATE_RE, value)
    if not match:
        raise UsageError(f"{where}: expected a rate such as 50M or 500K, got {value!r}")
    scaled = (
        float(match.group(1))
        * {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}[match.group(2).lower()]
    )
    # hundreds of digits overflow the float; int(inf) would be a traceback
    if not math.isfinite(scaled):
        raise UsageError(f"{where}: the rate is too large, got {value!r}")
    rate = int(scaled)
    if rate <= 0:
        raise UsageError(f"{where}: the rate must be positive, got {value!r}")
    return rate


def check_mirror(template: str, *, where: str) -> str:
    """A mirror URL template (http(s), in an object store, ``s3://bucket/…``, or a registry's
    repositories, ``oci://REGISTRY/NAMESPACE/{model}``; known ``{placeholders}`` only)."""
    store = store_for(template)
    parts = parse_template(template, fields=MIRROR_FIELDS, where=where)
    if store is not None:
        store.check_template(template, where=where)
    elif template.startswith("oci://"):
        _check_registry_mirror(template, parts, where=where)
    elif not template.startswith(("http://", "https://")):
        raise UsageError(
            f"{where}: a mirror must be an http(s) or oci:// URL template, or one in a store"
            f" ({store_schemes()}), got {template!r}"
        )
    return template


def _check_registry_mirror(
    template: str, parts: "Sequence[str | Placeholder]", *, where: str
) -> None:
    """A registry mirror names a repository (per model: ``{model}``, its one placeholder), no tag
    or digest: each file is the blob of its sha256 there (what ``publish --to`` writes)."""
    others = {p.name for p in parts if isinstance(p, Placeholder)} - {"model"}
    try:
        ref = parse_oci_ref(fill_template(parts, {"model": "m"})) if not others else None
    except UsageError:
        ref = None
    if ref is None or ref.tag is not None or ref.digest is not None:
        raise UsageError(
            f"{where}: a registry mirror names a repository, got {template!r}",
            hint="write oci://REGISTRY/NAMESPACE/{model} (each file is the blob of its sha256)",
        )


def hf_hub_cache(environ: Mapping[str, str]) -> Path:
    """The Hugging Face hub cache, found as huggingface_hub does but from the run's environment."""
    home = environ.get("HF_HOME") or str(
        Path(environ.get("XDG_CACHE_HOME") or "~/.cache", "huggingface")
    )
    hub = (
        environ.get("HF_HUB_CACHE")
        or environ.get("HUGGINGFACE_HUB_CACHE")
        or str(Path(home, "hub"))
    )
    return home_expanded(os.path.expandvars(hub)).absolute()


def hf_token(environ: Mapping[str, str]) -> str | None:
    """``HF_TOKEN`` (or its old name ``HUGGING_FACE_HUB_TOKEN``) as huggingface_hub reads it: line
    breaks and the spaces around it dropped (a secret mounted from a file ends in a newline), empty
    as unset. (Judged when the Hub is first asked, ``hub_token_problem``: a command that never
    asks it runs whatever the variable holds.)"""
    value = environ.get(hf_token_name(environ), "")
    return value.replace("\r", "").replace("\n", "").strip() or None


def hf_token_name(environ: Mapping[str, str]) -> str:
    """The variable the Hub token is read from."""
    return "HF_TOKEN" if environ.get("HF_TOKEN") else "HUGGING_FACE_HUB_TOKEN"


def hub_token_problem(token: str, where: str) -> UsageError | None:
    """Why the Hub token read from ``where`` (a variable, a file) cannot be sent (exit 2: no
    request has tried it), named by ``where``, never shown; None when it can."""
    problem = header_value_problem(token)
    return (
        None
        if problem is None
        else UsageError(f"{where}: the Hub token {problem}", hint=PASTE_AGAIN)
    )


def default_dest() -> Path:
    """``<user data dir>/mdl/models`` (platformdirs, read at call time so tests can isolate it)."""
    return user_folder("data") / "mdl" / "models"


def default_log_file() -> Path:
    return user_folder("log") / "mdl" / "mdl.log"


def user_config_dir() -> Path:  # the catalog fallback is <this>/mdl/catalog.toml
    return user_folder("config")


def resolve_dest(
    *,
    flag: Path | None,
    environ: Mapping[str, str],
    catalog_dest: str | None,
    catalog_dir: Path | None,
) -> Path:
    """The download root: ``--dest``, else ``$MDL_DEST``, else ``[settings].dest`` (relative to
    the catalog); one a line of stdout can name (``shown_folder``).
    """
    if flag is not None:
        return shown_folder(home_expanded(flag).absolute(), where="the destination")
    if env := environ.get(SETTING["dest"].env):
        return shown_folder(home_expanded(env).absolute(), where=SETTING["dest"].env)
    if catalog_dest:  # relative to the catalog's folder (an absolute one stays as it is)
        dest = (catalog_dir or Path()) / home_expanded(catalog_dest)
        return shown_folder(dest.absolute(), where="[settings] dest")
    return shown_folder(default_dest(), where="the default destination")


def shown_folder(folder: Path, *, where: str) -> Path:
    """``folder`` if a line of stdout can name it (a pull prints each model's folder, a get each
    file's path, one a line: ``DIR=$(mdl pull m)``), else UsageError (exit 2) naming ``where``: a
    control character, a line separator or a direction change in it would print another path, and
    an invisible formatting character (U+200C …) is printed escaped, as file names refuse it."""
    if (why := unshowable(str(folder))) is not None:
        raise UsageError(
            f"{where} {shown(str(folder))} cannot be used: {why}",
            hint="mdl names its folders on stdout, one a line: choose a folder whose path has none",
        )
    return folder


def unshowable(folder: str) -> str | None:
    """Why no line of stdout can name ``folder`` (``shown_folder``'s rule), or None."""
    if (why := character_problem(folder)) is not None:
        return why
    if any(unicodedata.category(ch) == "Cf" for ch in folder):
        return "it contains an invisible formatting character"
    return None


NO_OVERRIDES = Overrides()


# ASCII digits only, for every number a flag, a variable or the catalog gives (int() and float()
# also take '١٦' and '1_6'); a sign is read so that -1 is refused by the bounds, naming them.
_WHOLE_RE = r"[+-]?[0-9]+"
_DECIMAL_RE = r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?"


def parse_number(setting: Setting, value: object, *, where: str) -> int | float:
    """A count or seconds setting's value (text, or a number from the API or the catalog) within the
    setting's bounds, else UsageError naming ``where``: every value accepted is one every clock,
    wait and timeout can take."""
    count = setting.kind == "count"
    number = _as_number(value, whole=count)
    if number is None:
        expected = "a whole number (digits 0-9)" if count else "a number of seconds (digits 0-9)"
        raise UsageError(f"{where}: expected {expected}, got {value!r}")
    if count:
        lo, hi = setting.bounds
        if not lo <= number <= hi:
            raise UsageError(f"{where}: must be between {lo} and {hi}, got {value}")
        return int(number)
    return _seconds_within(setting, number, value, where=where)


def _as_number(value: object, *, whole: bool) -> int | float | None:
    """``value`` as a number: text of ASCII digits, an int (never a bool), a float (a whole one for
    a count); None: not one."""
    if isinstance(value, str):
        text = value.strip(" \t")
        if not re.fullmatch(_WHOLE_RE if whole else _DECIMAL_RE, text):
            return None
        # (int() of 5000 digits raises)
        return int(text) if whole and len(text) <= 20 else float(text)
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and (not whole or value.is_integer()):
        return value
    return None


def _seconds_within(setting: Setting, number: int | float, value: object, *, where: str) -> float:
    most = setting.bounds[1]
    if isinstance(number, int) and not -1 <= number <= most:  # (float() of a huge int raises)
        number = -1 if number < 0 else math.inf
    seconds = float(number)
    if not math.isfinite(seconds) or seconds < 0 or (seconds == 0 and not setting.zero_ok):
        sign = "non-negative" if setting.zero_ok else "positive"
        raise UsageError(f"{where}: must be a {sign} number of seconds, got {value!r}")
    if seconds > most:
        raise UsageError(f"{where}: must be at most {most} seconds, got {value!r}")
    return seconds


def parse_setting(setting: Setting, value: Any, *, where: str) -> Any:
    """``value`` (an environment variable's text, a flag's or the catalog's value) as ``setting``
    holds it; a UsageError naming ``where`` when it is not one."""
    kind = setting.kind
    if kind in ("count", "seconds"):
        return parse_number(setting, value, where=where)
    if kind == "rate":
        return parse_rate(str(value), where=where)
    if kind == "choice" and value not in setting.choices:
        raise UsageError(f"{where}: expected one of {', '.join(setting.choices)}, got {value!r}")
    if kind == "url":
        return _endpoint(value, where=where)
    if kind == "urls":
        templates = value.split() if isinstance(value, str) else value
        return tuple(check_mirror(template, where=where) for template in templates)
    # an environment variable's text (a flag, the catalog: a bool)
    if kind == "switch" and isinstance(value, str):
        return parse_switch(value, where=where)
    return value


def _endpoint(value: object, *, where: str) -> str:
    # The token guard compares origins (scheme, host, port): an endpoint must have one, or it is
    # bad input.
    url = str(value).rstrip("/")
    if not is_http_url(url):
        raise UsageError(f"{where}: expected an http(s) URL with a host, got {url!r}")
    return url


def parse_switch(text: str, *, where: str) -> bool:
    """A switch's text by the table's one rule (mdl.setting.ON, OFF), else UsageError naming
    ``where``."""
    word = text.strip().lower()
    if word not in ON | OFF:
        raise UsageError(f"{where}: expected 1, true, yes, on or 0, false, no, off, got {text!r}")
    return word in ON


def switch_from_env(setting: Setting, environ: Mapping[str, str]) -> bool:
    """A switch's environment variable (unset or empty: off), a wrong value exit 2 naming it."""
    text = environ.get(setting.env) or ""
    return bool(text) and parse_switch(text, where=f"${setting.env}")


def settings_for(
    catalog: "Catalog | None",
    environ: Mapping[str, str],
    flags: Overrides = NO_OVERRIDES,
    *,
    lock_path: Path | None = None,
    lock_given: bool = False,
    secrets: Secrets | None = None,
) -> Settings:
    """A run's settings: ``flags`` over the environment over the catalog's ``[settings]`` over the
    defaults; the catalog's secrets registered in the run's (``secrets``). No catalog (None): as an
    empty one, without making one (a get's: the catalog's types are not loaded)."""
    secrets = Secrets() if secrets is None else secrets
    table, path = (None, None) if catalog is None else (catalog.settings, catalog.path)
    if catalog is not None:
        catalog_secrets(catalog, environ, secrets)
    flag = Path(flags.dest) if flags.dest is not None else None
    return build_settings(
        flags,
        environ=environ,
        dest=resolve_dest(
            flag=flag,
            environ=environ,
            catalog_dest=None if table is None else table.dest,
            catalog_dir=None if path is None else path.parent,
        ),
        catalog=table,
        lock_path=lock_path,
        lock_given=lock_given,
        catalog_path=path,
        secrets=secrets,
    )


def build_settings(
    flags: Overrides = NO_OVERRIDES,
    *,
    environ: Mapping[str, str],
    dest: Path,
    catalog: "CatalogSettings | None" = None,
    lock_path: Path | None = None,
    lock_given: bool = False,
    catalog_path: Path | None = None,
    secrets: Secrets | None = None,
) -> Settings:
    """Combine flags, environment, catalog settings and defaults into one frozen Settings: each
    setting of the table from the first source that gives it, every source given checked (a broken
    variable is reported even when a flag wins). ``dest`` comes resolved (:func:`resolve_dest`), the
    lock mode from :func:`choose_lock_mode`; the mirrors' secrets registered in ``secrets``."""
    secrets = Secrets() if secrets is None else secrets
    flags, endpoints = _mirror_tables(flags, () if catalog is None else catalog.mirror_endpoints)
    values, given = table_values(flags, environ, catalog)
    if xet_stopped_by_hf(flags, environ):
        values["xet"] = False
    for template in (*values["mirrors"], *(environ.get(SETTING["mirrors"].env) or "").split()):
        # (the catalog's are registered with its other URLs as well: catalog_secrets)
        secrets.add_url(template)
    return Settings(
        dest=dest,
        offline=parse_bool(next(filter(None, map(environ.get, OFFLINE_VARIABLES)), "")),
        **values,
        connections_set="connections" in given,
        jobs_set="jobs" in given,
        verify=flags.verify,
        force=flags.force,
        dry_run=flags.dry_run,
        unsigned=flags.unsigned,
        token=hf_token(environ),
        environ=environ,
        hf_cache=(
            shown_folder(hf_hub_cache(environ), where="the Hugging Face cache")
            if values["layout"] == "hf-cache"
            else None
        ),
        mirror_endpoints=endpoints,
        lock_mode=choose_lock_mode(locked=flags.locked, frozen=flags.frozen, environ=environ),
        lock_path=lock_path,
        lock_given=lock_given and lock_path is not None,
        catalog_path=catalog_file(catalog_path, lock_path),
        netrc=netrc_path(environ),
        secrets=secrets,
    )


def _mirror_tables(
    flags: Overrides, endpoints: tuple[tuple[str, str], ...]
) -> tuple[Overrides, tuple[tuple[str, str], ...]]:
    """The API's ``{ url, endpoint }`` mirror tables (checked as the catalog's:
    load.given_mirrors) as the catalog's are held: their templates replace the catalog's mirrors,
    their endpoints win a template's (after ``endpoints``, the catalog's)."""
    entries = flags.mirrors or ()
    tables = [entry for entry in entries if isinstance(entry, Mapping)]
    if not tables:
        return flags, endpoints
    templates = [entry if isinstance(entry, str) else entry["url"] for entry in entries]
    given = tuple((table["url"], table["endpoint"]) for table in tables if "endpoint" in table)
    return flags._replace(mirrors=templates), (*endpoints, *given)


def table_values(
    flags: Overrides, environ: Mapping[str, str], catalog: "CatalogSettings | None"
) -> tuple[dict[str, Any], set[str]]:
    """Each run setting the table resolves alike from the first source that gives it, else its
    default; and the names a source gave."""
    values: dict[str, Any] = {}
    given: set[str] = set()
    for setting in SETTINGS:
        # not dest (resolve_dest), the lock mode's switches (choose_lock_mode) or a process's own
        if not setting.run or setting.kind == "path" or setting.name in LOCK_MODE:
            continue
        found = sources_given(setting, flags, environ, catalog)
        values[setting.name] = found[0] if found else setting.default
        if found:
            given.add(setting.name)
    return values, given


def sources_given(
    setting: Setting,
    flags: Overrides,
    environ: Mapping[str, str],
    catalog: "CatalogSettings | None",
) -> list[Any]:
    """``setting``'s value from each source that gives it, in precedence order, each checked."""
    flag = getattr(flags, setting.name, None)
    if flag is False and not setting.pair:  # a switch off by default: its flag off is not given
        flag = None
    sources = (
        (flag, setting.flag),
        (environ.get(setting.env), f"${setting.env}"),
        (getattr(catalog, setting.name, None), f"[settings].{setting.name}"),
    )
    given = [(value, where) for value, where in sources if value not in (None, "", ())]
    return [parse_setting(setting, value, where=where) for value, where in given]


def xet_stopped_by_hf(flags: Overrides, environ: Mapping[str, str]) -> bool:
    """huggingface_hub's switch for Xet stops mdl's too, as HF_HUB_OFFLINE does: below --xet and
    MDL_XET, as a variable."""
    if flags.xet is not None or environ.get(SETTING["xet"].env):
        return False
    return parse_bool(environ.get("HF_HUB_DISABLE_XET") or "")


def catalog_file(catalog: Path | None, lock: Path | None) -> Path | None:
    """The catalog a run reads, as records name it (absolute, links resolved): the file, else
    (``--frozen`` with only its lock here) the catalog that lock is beside (``catalog.lock`` →
    ``catalog.toml``)."""
    if catalog is None and lock is not None:
        catalog = (
            lock.with_suffix("") if lock.name.endswith(".lock.lock") else lock.with_suffix(".toml")
        )
    return catalog.resolve() if catalog is not None else None


def netrc_path(environ: Mapping[str, str]) -> Path | None:
    """``$NETRC``, else ``$HOME/.netrc`` (None: neither is set), from the run's environment as
    curl finds it.
    """
    given = environ.get("NETRC") or (
        str(Path(environ["HOME"], ".netrc")) if environ.get("HOME") else ""
    )
    return Path(given) if given else None


def choose_lock_mode(*, locked: bool, frozen: bool, environ: Mapping[str, str]) -> str:
    """``--locked`` / ``--frozen``, else ``$MDL_LOCKED`` / ``$MDL_FROZEN`` (as uv's), else auto;
    both is an error.
    """
    chosen = {"locked": locked, "frozen": frozen}
    both = (
        "--locked and --frozen: give one, not both (--locked checks the lock against the catalog,"
        " --frozen uses it as written)"
    )
    if not any(chosen.values()):
        chosen = {name: switch_from_env(SETTING[name], environ) for name in LOCK_MODE}
        both = "$MDL_LOCKED and $MDL_FROZEN are both set: set one, not both"
    on = [name for name, given in chosen.items() if given]
    if len(on) > 1:
        raise UsageError(both)
    return on[0] if on else "auto"


_PLACEHOLDER = r"\{([^{}]*)\}"


def fixed_part(template: str) -> str:
    """What every URL a template fills starts with: its text before the first placeholder (the
    prefix a mirror's objects are listed and probed under)."""
    return template.partition("{")[0]


def parse_template(
    template: str, *, fields: Sequence[str], where: str
) -> "tuple[str | Placeholder, ...]":
    """Literal text and ``{name}`` placeholders of ``fields``; a format spec, conversion or stray
    brace is refused.
    """
    parts: list[str | Placeholder] = []
    at = 0
    for match in re.finditer(_PLACEHOLDER, template):
        parts.append(_literal(template[at : match.start()], template, where=where))
        name = match.group(1)
        bare = re.split(r"[:!]", name, maxsplit=1)[0]
        if name != bare and bare in fields:
            raise UsageError(
                f"{where}: {{{bare}}} takes no format spec or conversion in {_cut(template)}; write"
                f" {{{bare}}}"
            )
        if name not in fields:
            known = ", ".join("{" + f + "}" for f in fields)
            shown = name if len(name) <= 40 else name[:40] + "…"
            raise UsageError(
                f"{where}: unknown placeholder {{{shown}}} in {_cut(template)} (known: {known})"
            )
        parts.append(Placeholder(name))
        at = match.end()
    parts.append(_literal(template[at:], template, where=where))
    return tuple(part for part in parts if part != "")


def fill_template(parts: "Sequence[str | Placeholder]", values: Mapping[str, str]) -> str:
    """A parsed template with each placeholder replaced by its value, as plain text."""
    return "".join(values[part.name] if isinstance(part, Placeholder) else part for part in parts)


class Placeholder(NamedTuple):
    """{name} in a template."""

    name: str


def _literal(text: str, template: str, *, where: str) -> str:
    if "{" in text or "}" in text:
        raise UsageError(
            f"{where}: a lone '{{' or '}}' in {_cut(template)}; placeholders are {{name}} alone"
        )
    return text


def _cut(template: str) -> str:
    """A template as an error names it: quoted, and cut when it is long (a 20 MB template is not
    echoed).
    """
    return repr(template if len(template) <= 200 else template[:200] + "…")
