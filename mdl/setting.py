"""Every setting, declared once: its flag, environment variable, ``[settings]`` key, kind, bounds, default and help.

The CLI's options, the catalog's ``[settings]`` schema and the resolved ``Settings`` are built from this table (and
the API's keywords and ``Settings``' fields are held to it by tests): adding a setting is one row here plus its use.
Precedence everywhere: flag > environment > catalog > default. Imports nothing: ``mdl --help`` reads it."""

from __future__ import annotations

from pathlib import Path
from typing import Literal, NamedTuple

# How a value is read and checked (mdl.catalog.settings.parse_setting): a whole number within ``bounds``, seconds
# (> 0, or >= 0 with ``zero_ok``), a rate (50M), one of ``choices``, an http(s) URL, a folder, URL templates, a switch.
Kind = Literal["count", "seconds", "rate", "choice", "url", "path", "urls", "switch"]


class Setting(NamedTuple):  # (a NamedTuple: made 10x faster than a dataclass, and `mdl --help` makes it)
    name: str  # the Settings attribute, the [settings] key and the API keyword
    kind: Kind
    default: object
    help: str
    flag: str = ""  # "" : no flag
    env: str = ""  # "" : no variable
    catalog: bool = True  # a [settings] key
    bounds: tuple[int, int] = (0, 0)  # a count's lowest and highest
    zero_ok: bool = False  # seconds: 0 allowed (else > 0)
    choices: tuple[str, ...] = ()
    shown_default: str = ""  # the default as --help words it, when not the value itself

    @property
    def help_text(self) -> str:
        """--help's words: ``Parallel ranges per big file, 1-64 (default: $MDL_CONNECTIONS, catalog, 8).``"""
        bounds = f", {self.bounds[0]}-{self.bounds[1]}" if self.kind == "count" else ""
        default = self.default if self.default not in (None, (), False) else ""
        shown = self.shown_default or (f"{default:g}" if isinstance(default, float) else str(default))
        where = [self.env and f"${self.env}", "catalog" if self.catalog else "", shown]
        return f"{self.help}{bounds} (default: {', '.join(part for part in where if part)})."


SETTINGS: tuple[Setting, ...] = (
    Setting("dest", "path", None, "Download root", "--dest", "MDL_DEST", shown_default="user data dir"),
    Setting("endpoint", "url", "https://huggingface.co", "The Hugging Face Hub's address", env="HF_ENDPOINT"),
    Setting(
        "connections", "count", 8, "Parallel ranges per big file", "--connections", "MDL_CONNECTIONS", bounds=(1, 64)
    ),
    Setting(
        "jobs",
        "count",
        4,
        "Files in flight at once",
        "--jobs",
        "MDL_JOBS",
        bounds=(1, 64),
        shown_default="up to 16 small and 4 big",
    ),
    Setting("limit_rate", "rate", None, "Cap total throughput, e.g. 50M", "--limit-rate", "MDL_LIMIT_RATE"),
    Setting(
        "stall_timeout",
        "seconds",
        30.0,
        "Seconds without bytes before a stream is resumed",
        "--stall-timeout",
        "MDL_STALL_TIMEOUT",
    ),
    Setting(
        "timeout",
        "seconds",
        10.0,  # connect, and wait for an answer (what huggingface_hub uses for its HEADs)
        "Seconds to wait for a server to accept a connection or begin its answer",
        "--timeout",
        "MDL_TIMEOUT",
    ),
    Setting(
        "lock_timeout",
        "seconds",
        3600.0,
        "Seconds to wait for another run's lock",
        "--lock-timeout",
        "MDL_LOCK_TIMEOUT",
        zero_ok=True,
    ),
    Setting("retries", "count", 5, "Attempts after a failed request", env="MDL_RETRIES", bounds=(0, 100)),
    Setting(
        "layout",
        "choice",
        "plain",
        "plain (model folders under dest) or hf-cache (Hub files in the Hugging Face cache)",
        "--layout",
        "MDL_LAYOUT",
        choices=("plain", "hf-cache"),
    ),
    Setting(
        "mirrors",
        "urls",
        (),
        "Try this mirror before the origin (repeatable; replaces [settings].mirrors): "
        "http(s)://host/{model}/{path} or s3://bucket/prefix/{model}/{path}. Every byte is verified",
        "--mirror",
        "MDL_MIRRORS",
    ),
    Setting(
        "locked",
        "switch",
        False,
        "Refuse (exit 2, before any download) when catalog.lock is missing or out of date for a model",
        "--locked",
        "MDL_LOCKED",
        catalog=False,
    ),
    Setting(
        "frozen",
        "switch",
        False,
        "Use catalog.lock as written, without the catalog's entries (works with only the lock)",
        "--frozen",
        "MDL_FROZEN",
        catalog=False,
    ),
)
SETTING = {setting.name: setting for setting in SETTINGS}


class Overrides(NamedTuple):
    """What a run's flags (the API's keywords) say; None or () : not given. Its settings are the table's that have a
    flag (tests/catalog/test_settings.py holds the two together), then the run's own switches."""

    dest: Path | None = None
    layout: str | None = None
    connections: int | None = None
    jobs: int | None = None
    limit_rate: str | int | None = None
    stall_timeout: float | None = None
    timeout: float | None = None
    lock_timeout: float | None = None
    mirrors: tuple[str, ...] = ()
    locked: bool = False
    frozen: bool = False
    verify: bool = True
    force: bool = False
    dry_run: bool = False
