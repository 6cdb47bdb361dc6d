"""Every setting, declared once: its flag, environment variable, ``[settings]`` key, kind, bounds,
default and help. Precedence everywhere: flag > environment > catalog > default. Imports nothing:
``mdl --help`` reads it.

Built from the row: the CLI's option (its flag, help, value check), the catalog's ``[settings]`` key
and its check, the variable's check, :class:`Overrides`' field, the resolved value and its default.
Spelt again where mypy needs a typed name, each held to the row by tests/test_api_settings.py: a
run's setting is a field of ``Settings`` (mdl.catalog.settings), a keyword of each API function that
takes it (mdl.api), and a key of the ``**where`` TypedDict (below) of the commands that take its
option. A process's own (``run=False``) is read where it is used."""

# (annotations here are evaluated, not postponed: typing compiles each string annotation of a
# NamedTuple or TypedDict field at every start, ~1.7 M instructions of a tiny get)
import os
from collections import namedtuple
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, NamedTuple, TypedDict

# what says a run is offline (huggingface_hub also honours TRANSFORMERS_OFFLINE: one switch stops
# every tool), in the order read
OFFLINE_VARIABLES = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
# Which CAs to trust (mdl.transfer.tls), read from the run's environment in this order: a bundle
# file in REQUESTS_CA_BUNDLE (requests), CURL_CA_BUNDLE (curl) or SSL_CERT_FILE (OpenSSL); a folder
# of hashed certificates in SSL_CERT_DIR; else the system's.
CA_FILE_VARIABLES = ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE")
CA_DIR_VARIABLE = "SSL_CERT_DIR"

CA_HINT = (
    "if a proxy or your company re-signs TLS, point REQUESTS_CA_BUNDLE, CURL_CA_BUNDLE or"
    " SSL_CERT_FILE at its CA bundle (or SSL_CERT_DIR at a folder of hashed certificates); mdl"
    " reads them in that order"
)


def ca_locations(environ: Mapping[str, str]) -> tuple[str | None, str | None, str | None]:
    """(cafile, capath, the variable that named them) from the environment, checked to exist
    (else UsageError, exit 2): a bundle is a file or a folder (requests takes a folder in
    REQUESTS_CA_BUNDLE), SSL_CERT_DIR a folder. os.path's checks: a ~user that is no user, a folder
    that cannot be searched, is "not there", never raised (a get's early request asks it too)."""
    from mdl.errors import UsageError

    cafile = capath = None
    name = next((n for n in CA_FILE_VARIABLES if environ.get(n, "").strip()), None)
    if name is not None:
        path = os.path.expanduser(environ[name].strip())  # noqa: PTH111
        if os.path.isdir(path):  # noqa: PTH112
            capath = path
        elif os.path.isfile(path):  # noqa: PTH113
            cafile = path
        else:
            raise UsageError(f"${name}: no such CA bundle {path!r}", hint=CA_HINT)
    if folder := environ.get(CA_DIR_VARIABLE, "").strip():
        folder = os.path.expanduser(folder)  # noqa: PTH111
        if not os.path.isdir(folder):  # noqa: PTH112
            raise UsageError(f"${CA_DIR_VARIABLE}: no such folder {folder!r}", hint=CA_HINT)
        capath = capath or folder
    return cafile, capath, name or (CA_DIR_VARIABLE if folder else None)


DEFAULT_TIMEOUT = 10.0  # seconds to connect, or for an answer to begin (``timeout``)

StrPath = str | os.PathLike[str]

# The one boolean rule for a switch's text (an environment variable's), as uv and pip read theirs:
# any case, spaces around; anything else is refused where the variable is read (exit 2).
ON, OFF = frozenset({"1", "true", "yes", "on"}), frozenset({"0", "false", "no", "off"})

# How a value is read and checked (mdl.catalog.settings.parse_setting): a whole number within
# ``bounds``, seconds (> 0, or >= 0 with ``zero_ok``, and at most ``bounds[1]``: a wait every clock
# and timeout can take), a rate (50M), one of ``choices``, an http(s) URL, a folder, URL templates,
# a switch (off by default: its flag turns it on; on by default: a pair, ``--name/--no-name``, and
# not given is None).
Kind = Literal["count", "seconds", "rate", "choice", "url", "path", "urls", "switch"]


# (a NamedTuple: made 10x faster than a dataclass, and `mdl --help` makes it)
class Setting(NamedTuple):
    name: str  # the Settings attribute, the [settings] key and the API keyword
    kind: Kind
    default: object
    env: str  # its environment variable
    help: str
    bounds: tuple[int, int] = (0, 0)  # a count's lowest and highest; seconds: (0, the most)
    shown_default: str = ""  # the default as --help words it, when not the value itself
    zero_ok: bool = False  # seconds: 0 allowed (else > 0)
    choices: tuple[str, ...] = ()
    catalog: bool = True  # a [settings] key
    option: str | None = ""  # its flag when not --name-with-dashes; None: no flag
    # a run's: an Overrides field when it has a flag, a Settings attribute, an API keyword; False:
    # the process's own, read where it is used (the catalog's lookup, the CLI's log, the translator)
    run: bool = True

    @property
    def flag(self) -> str:  # "" : none
        return "" if self.option is None else self.option or "--" + self.name.replace("_", "-")

    @property
    # a switch on by default: --name/--no-name, and the API's keyword is None when not given
    def pair(self) -> bool:
        return self.kind == "switch" and self.default is True

    @property
    def help_text(self) -> str:
        """--help's words: ``Parallel ranges per big file, 1-64 (default: $MDL_CONNECTIONS,
        catalog, 8).``
        """
        bounds = f", {self.bounds[0]}-{self.bounds[1]}" if self.kind == "count" else ""
        default = self.default if self.default not in (None, (), False) else ""
        shown = self.shown_default or (
            f"{default:g}" if isinstance(default, float) else str(default)
        )
        where = [f"${self.env}", "catalog" if self.catalog else "", shown]
        return f"{self.help}{bounds} (default: {', '.join(part for part in where if part)})."


# The most seconds a wait may be: far beyond any real wait, far below what a clock, a thread's wait
# or a socket's timeout overflows at (threading.TIMEOUT_MAX is ~292 years; 3 x --timeout is a
# reply's whole deadline).
DAY, WEEK = (0, 86_400), (0, 7 * 86_400)

# Each setting: --its-name (or its ``option``, or none), its variable, and ``its_name`` in
# [settings].
SETTINGS: tuple[Setting, ...] = (
    Setting("dest", "path", None, "MDL_DEST", "Download root", shown_default="user data dir"),
    Setting("endpoint", "url", "https://huggingface.co", "HF_ENDPOINT", "The Hub", option=None),
    Setting("connections", "count", 8, "MDL_CONNECTIONS", "Parallel ranges per big file", (1, 64)),
    Setting(
        "jobs",
        "count",
        4,
        "MDL_JOBS",
        "Files in flight at once",
        (1, 64),
        "up to 16 small and 4 big",
    ),
    Setting("limit_rate", "rate", None, "MDL_LIMIT_RATE", "Cap total throughput, e.g. 50M"),
    Setting(
        "stall_timeout",
        "seconds",
        30.0,
        "MDL_STALL_TIMEOUT",
        "Seconds without bytes before a stream is resumed",
        DAY,
    ),
    # connect, and wait for an answer (what huggingface_hub uses for its HEADs)
    Setting(
        "timeout",
        "seconds",
        DEFAULT_TIMEOUT,
        "MDL_TIMEOUT",
        "Seconds to wait for a connection, or for an answer to begin",
        DAY,
    ),
    Setting(
        "lock_timeout",
        "seconds",
        3600.0,
        "MDL_LOCK_TIMEOUT",
        "Seconds to wait for another run's lock",
        WEEK,
        zero_ok=True,
    ),
    # a link that is down is tried again for a time, a server that answers errors a count of times
    # (mdl.transfer.http.RetryPolicy); ``retries``, when set, bounds both by a count
    Setting(
        "retry_max_time",
        "seconds",
        120.0,
        "MDL_RETRY_MAX_TIME",
        "Seconds a file keeps trying again over a link that is down (refused, reset, timed out),"
        " from its first failure in a row, before it gives up (exit 5)",
        DAY,
    ),
    Setting(
        "retries",
        "count",
        None,
        "MDL_RETRIES",
        "Tries after a failed request, whatever failed (not set: 5 for a server's error answers,"
        " and a link that is down is tried for retry_max_time)",
        (0, 100),
        shown_default="not set",
        option=None,
    ),
    Setting(
        "layout",
        "choice",
        "plain",
        "MDL_LAYOUT",
        "plain (model folders under dest) or hf-cache (Hub files in the Hugging Face cache)",
        choices=("plain", "hf-cache"),
    ),
    Setting(
        "mirrors",
        "urls",
        (),
        "MDL_MIRRORS",
        "Try this mirror before the origin (repeatable; replaces [settings].mirrors): "
        "http(s)://host/{model}/{path} or s3://bucket/prefix/{model}/{path}. Every byte is"
        " verified",
        option="--mirror",
    ),
    Setting(
        "fill_mirror",
        "switch",
        False,
        "MDL_FILL_MIRROR",
        "Fill the first mirror in an object store (such as s3:// or file://) with the files it"
        " lacks, one machine of a fleet fetching each (a lease in the mirror) while the others"
        " wait on it",
    ),
    Setting(
        "xet",
        "switch",
        True,
        "MDL_XET",
        "Fetch Xet-backed Hub files by chunk (reusing chunks on disk); --no-xet: whole files over"
        " plain HTTP",
        shown_default="on",
    ),
    Setting(
        "locked",
        "switch",
        False,
        "MDL_LOCKED",
        "Refuse (exit 2, before any download) when catalog.lock is missing or out of date for a"
        " model",
        catalog=False,
    ),
    Setting(
        "frozen",
        "switch",
        False,
        "MDL_FROZEN",
        "Use catalog.lock as written, without the catalog's entries (works with only the lock)",
        catalog=False,
    ),
    Setting(
        "lock_file",
        "path",
        None,
        "MDL_LOCK_FILE",
        "Use this lock (and its .parts beside it) in place of catalog.lock beside the catalog,"
        " which still gives the settings, mirrors and signer; a rollback is --all --frozen --lock"
        " releases/v1.lock",
        shown_default="catalog.lock beside the catalog",
        catalog=False,
        option="--lock",
    ),
    # the process's own
    Setting(
        "catalog",
        "path",
        None,
        "MDL_CATALOG",
        "Catalog file",
        shown_default="./catalog.toml, user config",
        catalog=False,
        run=False,
    ),
    Setting(
        "log_file",
        "path",
        None,
        "MDL_LOG_FILE",
        "Log file",
        shown_default="user log dir",
        catalog=False,
        run=False,
    ),
    Setting(
        "debug",
        "switch",
        False,
        "MDL_DEBUG",
        "Let an internal error's traceback through",
        catalog=False,
        option=None,
        run=False,
    ),
)
SETTING = {setting.name: setting for setting in SETTINGS}


# Which command takes which setting's option: the keys of the TypedDict its ``**where`` names, typed
# as the option hands the value on (mdl.cli.options builds the options from the rows; mypy holds
# each command's keys to its API function's keywords). A class takes its parents' keys. A new
# setting goes into the highest class whose every command takes it (the tree below, with the
# commands of each); a new command names the class that holds exactly its settings, or a new one
# under the nearest.
#   InCatalog: init
#   ├── Places: clean, prune, remove (where a command's files are)
#   │   └── LockFile: (the lock a command reads in place of catalog.lock)
#   │       ├── Pinned: verify, list, show, publish (the models catalog.lock pins)
#   │       │   └── Asking: resolve (... asking upstream)
#   │       │       └── Pulling: pull
#   │       └── Locking: lock
#   ├── Getting: get
#   └── Adding: add
class InCatalog(TypedDict):
    catalog: Path | None


class Places(InCatalog):
    dest: Path | None
    layout: str | None


class LockFile(Places):
    lock_file: Path | None


class Pinned(LockFile):
    locked: bool
    frozen: bool


class Asking(Pinned):
    timeout: float | None


class Pulling(Asking):
    connections: int | None
    jobs: int | None
    limit_rate: str | None
    stall_timeout: float | None
    retry_max_time: float | None
    lock_timeout: float | None
    mirrors: list[str] | None
    fill_mirror: bool
    xet: bool | None


class Getting(InCatalog):
    layout: str | None
    connections: int | None
    limit_rate: str | None
    timeout: float | None
    retry_max_time: float | None
    xet: bool | None


class Locking(LockFile):
    timeout: float | None


class Adding(InCatalog):
    timeout: float | None


def parse_bool(value: str) -> bool:
    """A switch's text where a wrong one must stop nothing (another tool's variable, or MDL_DEBUG
    in the translator): on by the one rule, else off. mdl's own are refused where they are read."""
    return value.strip().lower() in ON


# What a run's flags (the API's keywords) say; None: not given (a switch off by default: False). Its
# fields are the table's, derived: each run setting that has a flag, then the run's own switches.
_FIELDS = {
    s.name: False if s.kind == "switch" and not s.pair else None
    for s in SETTINGS
    if s.flag and s.run
} | {"verify": True, "force": False, "dry_run": False, "unsigned": False}
if TYPE_CHECKING:

    class Overrides:  # what mypy sees of the namedtuple below: any field, by its name
        def __init__(self, **given: Any) -> None: ...
        def __getattr__(self, name: str) -> Any: ...

else:
    Overrides = namedtuple("Overrides", _FIELDS, defaults=_FIELDS.values())


def flags_of(keywords: Mapping[str, object]) -> Overrides:
    """The flags an API function was given, from its keywords (its ``locals()`` as it starts): each
    keyword named as an Overrides field is that flag (tests/test_api_settings.py holds each such
    keyword to the table)."""
    return Overrides(**{name: value for name, value in keywords.items() if name in _FIELDS})
