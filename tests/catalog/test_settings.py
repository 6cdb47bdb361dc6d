"""Settings: flags > MDL_* environment > catalog [settings] > defaults; rates; where files go."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from mdl.catalog.settings import (
    Settings,
    build_settings,
    choose_lock_mode,
    default_dest,
    parse_bool,
    parse_rate,
    resolve_dest,
)
from mdl.catalog.specs import CatalogSettings
from mdl.errors import ExitCode, UsageError
from mdl.setting import SETTING, Overrides

DEFAULT_CONNECTIONS, DEFAULT_JOBS, DEFAULT_RETRIES = (
    SETTING[name].default for name in ("connections", "jobs", "retries")
)
DEFAULT_ENDPOINT, DEFAULT_STALL_TIMEOUT = (
    SETTING["endpoint"].default,
    SETTING["stall_timeout"].default,
)
DEFAULT_TIMEOUT, DEFAULT_LOCK_TIMEOUT = SETTING["timeout"].default, SETTING["lock_timeout"].default

KiB, MiB, GiB = 1024, 1024**2, 1024**3


def settings(
    environ: dict[str, str] | None = None, catalog: CatalogSettings | None = None, **flags: Any
) -> Settings:
    """build_settings with a fixed dest and the given environment mapping (never os.environ)."""
    return build_settings(
        Overrides(**flags), environ=environ or {}, dest=Path("/tmp/dest"), catalog=catalog
    )


# -- parse_rate
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("100", 100),
        ("500k", 500 * KiB),
        ("500K", 500 * KiB),
        ("50M", 50 * MiB),
        ("50m", 50 * MiB),
        ("1.5G", int(1.5 * GiB)),
        ("2g", 2 * GiB),
        ("10MB", 10 * MiB),
        ("10MiB", 10 * MiB),
        ("10mb/s", 10 * MiB),
        ("500KiB/s", 500 * KiB),
        (" 7 M ", 7 * MiB),
        ("0.5k", 512),
    ],
)
def test_parse_rate_accepts(text: str, expected: int) -> None:
    assert parse_rate(text) == expected


@pytest.mark.parametrize("text", ["", "fast", "-5M", "5T", "M", "1e3", "5 M B", "1,5M", "5Mbit"])
def test_parse_rate_rejects_garbage_naming_the_flag(text: str) -> None:
    with pytest.raises(UsageError) as info:
        parse_rate(text)
    assert info.value.exit_code == ExitCode.USAGE == 2
    assert "--limit-rate" in info.value.message


@pytest.mark.parametrize("text", ["0", "0M", "0.0001"])
def test_parse_rate_rejects_zero(text: str) -> None:
    with pytest.raises(UsageError, match="positive"):
        parse_rate(text)


def test_parse_rate_refuses_a_rate_too_large_for_a_float() -> None:
    with pytest.raises(UsageError, match="too large"):
        parse_rate("9" * 400 + "G")


def test_parse_rate_names_the_given_source() -> None:
    with pytest.raises(UsageError, match=r"^\$MDL_LIMIT_RATE: "):
        parse_rate("soon", where="$MDL_LIMIT_RATE")


@pytest.mark.parametrize(
    ("text", "expected"), [("1", True), ("true", True), (" YES ", True), ("on", True)]
)
def test_parse_bool_true(text: str, expected: bool) -> None:
    assert parse_bool(text) is expected


@pytest.mark.parametrize("text", ["", "0", "false", "no", "off", "2", "y"])
def test_parse_bool_false(text: str) -> None:
    assert parse_bool(text) is False


# -- precedence
# ----------------------------------------------------------------------------------------------


def test_defaults_when_nothing_is_set() -> None:
    s = settings()
    assert s.endpoint == DEFAULT_ENDPOINT
    assert s.connections == DEFAULT_CONNECTIONS
    assert s.jobs == DEFAULT_JOBS
    assert s.limit_rate is None
    assert s.stall_timeout == DEFAULT_STALL_TIMEOUT
    assert s.timeout == DEFAULT_TIMEOUT == 10.0
    assert s.lock_timeout == DEFAULT_LOCK_TIMEOUT
    assert s.retries == DEFAULT_RETRIES
    assert s.offline is False
    assert s.token is None
    assert (s.verify, s.force, s.dry_run) == (True, False, False)
    assert s.state_dir == Path("/tmp/dest/.mdl")


# [settings]: dest, connections, jobs, endpoint, limit_rate, stall_timeout, timeout, lock_timeout,
# retries
CATALOG = {
    "catalog": CatalogSettings(
        dest=None,
        connections=3,
        jobs=5,
        endpoint="http://catalog.example",
        limit_rate="1M",
        stall_timeout=11.0,
        timeout=13.0,
        lock_timeout=12.0,
        retries=2,
    )
}
ENV = {
    "HF_ENDPOINT": "http://env.example/",
    "MDL_CONNECTIONS": "6",
    "MDL_JOBS": "7",
    "MDL_LIMIT_RATE": "2M",
    "MDL_STALL_TIMEOUT": "21",
    "MDL_TIMEOUT": "23",
    "MDL_LOCK_TIMEOUT": "22",
    "MDL_RETRIES": "9",
}
FLAGS = {
    "connections": 16,
    "jobs": 17,
    "limit_rate": "3M",
    "stall_timeout": 31.0,
    "timeout": 33.0,
    "lock_timeout": 32.0,
}


def test_catalog_beats_defaults() -> None:
    s = settings(**CATALOG)
    assert s.endpoint == "http://catalog.example"
    assert (s.connections, s.jobs, s.limit_rate) == (3, 5, 1 * MiB)
    assert (s.stall_timeout, s.lock_timeout, s.retries, s.timeout) == (11.0, 12.0, 2, 13.0)


def test_environment_beats_catalog() -> None:
    s = settings(ENV, **CATALOG)
    assert s.endpoint == "http://env.example"  # trailing slash dropped
    assert (s.connections, s.jobs, s.limit_rate) == (6, 7, 2 * MiB)
    assert (s.stall_timeout, s.lock_timeout, s.retries, s.timeout) == (21.0, 22.0, 9, 23.0)


def test_flags_beat_environment_and_catalog() -> None:
    s = settings(ENV, **CATALOG, **FLAGS)
    assert (s.connections, s.jobs, s.limit_rate) == (16, 17, 3 * MiB)
    assert (s.stall_timeout, s.lock_timeout, s.timeout) == (31.0, 32.0, 33.0)
    assert s.retries == 9  # no flag for retries: the environment still wins over the catalog


def test_empty_environment_values_are_ignored() -> None:
    env = {"MDL_CONNECTIONS": "", "MDL_LIMIT_RATE": "", "MDL_STALL_TIMEOUT": "", "HF_ENDPOINT": ""}
    s = settings(env, **CATALOG)
    assert (s.connections, s.limit_rate, s.stall_timeout) == (3, 1 * MiB, 11.0)
    assert s.endpoint == "http://catalog.example"


def test_token_offline_and_switches() -> None:
    s = settings(
        {"HF_TOKEN": "hf_abc", "HF_HUB_OFFLINE": "1"}, verify=False, force=True, dry_run=True
    )
    assert s.token == "hf_abc"
    assert s.offline is True
    assert (s.verify, s.force, s.dry_run) == (False, True, True)
    assert s.environ == {"HF_TOKEN": "hf_abc", "HF_HUB_OFFLINE": "1"}


# -- bad values
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "names"),
    [
        ({"connections": 0}, "--connections"),
        ({"connections": 65}, "--connections"),
        ({"jobs": 0}, "--jobs"),
        ({"jobs": 1000}, "--jobs"),
        ({"limit_rate": "lots"}, "--limit-rate"),
        ({"stall_timeout": 0.0}, "--stall-timeout"),
        ({"timeout": 0.0}, "--timeout"),
        ({"timeout": float("inf")}, "--timeout"),
        ({"stall_timeout": -1.0}, "--stall-timeout"),
        ({"lock_timeout": -1.0}, "--lock-timeout"),
    ],
)
def test_bad_flags_are_usage_errors_naming_the_flag(kwargs: dict[str, object], names: str) -> None:
    with pytest.raises(UsageError) as info:
        settings(**kwargs)
    assert info.value.exit_code == 2
    assert names in info.value.message


@pytest.mark.parametrize(
    ("env", "names"),
    [
        ({"MDL_CONNECTIONS": "many"}, "$MDL_CONNECTIONS"),
        ({"MDL_CONNECTIONS": "0"}, "$MDL_CONNECTIONS"),
        ({"MDL_CONNECTIONS": "65"}, "$MDL_CONNECTIONS"),
        ({"MDL_JOBS": "2.5"}, "$MDL_JOBS"),
        ({"MDL_JOBS": "-1"}, "$MDL_JOBS"),
        ({"MDL_RETRIES": "101"}, "$MDL_RETRIES"),
        ({"MDL_RETRIES": "x"}, "$MDL_RETRIES"),
        ({"MDL_STALL_TIMEOUT": "soon"}, "$MDL_STALL_TIMEOUT"),
        ({"MDL_TIMEOUT": "soon"}, "$MDL_TIMEOUT"),
        ({"MDL_TIMEOUT": "0"}, "$MDL_TIMEOUT"),
        ({"MDL_LOCK_TIMEOUT": "-3"}, "$MDL_LOCK_TIMEOUT"),
        ({"HF_ENDPOINT": "ftp://mirror.example"}, "HF_ENDPOINT"),
        ({"HF_ENDPOINT": "mirror.example"}, "HF_ENDPOINT"),
    ],
)
def test_bad_environment_is_a_usage_error_naming_the_variable(
    env: dict[str, str], names: str
) -> None:
    with pytest.raises(UsageError) as info:
        settings(env)
    assert info.value.exit_code == 2
    assert names in info.value.message


def test_flag_in_range_overrides_a_bad_environment_value_is_still_reported() -> None:
    # The environment is read even when a flag wins: a broken MDL_CONNECTIONS is reported, not
    # hidden.
    with pytest.raises(UsageError, match=r"\$MDL_CONNECTIONS"):
        settings({"MDL_CONNECTIONS": "lots"}, connections=4)


def test_bad_limit_rate_in_environment_names_the_variable() -> None:
    with pytest.raises(UsageError) as info:
        settings({"MDL_LIMIT_RATE": "fast"})
    assert "MDL_LIMIT_RATE" in info.value.message


@pytest.mark.parametrize("value", ["0", "nan"])
def test_stall_timeout_from_environment_must_be_positive(value: str) -> None:
    with pytest.raises(UsageError, match=r"\$MDL_STALL_TIMEOUT"):
        settings({"MDL_STALL_TIMEOUT": value})


# -- where files go
# --------------------------------------------------------------------------------------


def test_dest_flag_wins_and_expands_home(isolated_env: Path) -> None:
    got = resolve_dest(
        flag=Path("~/flagged"),
        environ={"MDL_DEST": "/env/dest"},
        catalog_dest="/cat/dest",
        catalog_dir=Path("/cat"),
    )
    assert got == isolated_env / "flagged"


def test_dest_relative_flag_is_made_absolute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    got = resolve_dest(flag=Path("here"), environ={}, catalog_dest=None, catalog_dir=None)
    assert got == tmp_path / "here"
    assert got.is_absolute()


def test_dest_environment_beats_catalog_and_expands_home(isolated_env: Path) -> None:
    got = resolve_dest(
        flag=None,
        environ={"MDL_DEST": "~/from-env"},
        catalog_dest="/cat/dest",
        catalog_dir=Path("/cat"),
    )
    assert got == isolated_env / "from-env"


def test_catalog_dest_is_relative_to_the_catalog_folder(tmp_path: Path) -> None:
    got = resolve_dest(flag=None, environ={}, catalog_dest="models", catalog_dir=tmp_path / "proj")
    assert got == tmp_path / "proj" / "models"
    got = resolve_dest(
        flag=None, environ={}, catalog_dest="../shared", catalog_dir=tmp_path / "proj"
    )
    assert got == tmp_path / "proj" / ".." / "shared"


def test_catalog_dest_expands_home(isolated_env: Path, tmp_path: Path) -> None:
    got = resolve_dest(flag=None, environ={}, catalog_dest="~/models", catalog_dir=tmp_path)
    assert got == isolated_env / "models"


def test_catalog_dest_absolute_is_kept(tmp_path: Path) -> None:
    got = resolve_dest(
        flag=None, environ={}, catalog_dest=str(tmp_path / "abs"), catalog_dir=Path("/x")
    )
    assert got == tmp_path / "abs"


def test_default_dest_is_under_the_xdg_data_dir(isolated_env: Path) -> None:
    expected = isolated_env / ".local" / "share" / "mdl" / "models"
    assert default_dest() == expected
    assert resolve_dest(flag=None, environ={}, catalog_dest=None, catalog_dir=None) == expected
    # An empty MDL_DEST counts as unset.
    assert (
        resolve_dest(flag=None, environ={"MDL_DEST": ""}, catalog_dest=None, catalog_dir=None)
        == expected
    )


def test_default_dest_follows_xdg_data_home(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    assert default_dest() == tmp_path / "data" / "mdl" / "models"


@pytest.mark.parametrize("name", ["MDL_LOCKED", "MDL_FROZEN"])
def test_the_lock_switches_are_read_by_the_one_boolean_rule(name: str) -> None:
    for text in ("0", "false", "no", "off", ""):
        assert choose_lock_mode(locked=False, frozen=False, environ={name: text}) == "auto"
    on = choose_lock_mode(locked=False, frozen=False, environ={name: " Yes "})
    assert on == name.removeprefix("MDL_").lower()
    with pytest.raises(UsageError, match=rf"^\${name}: expected 1, true, yes, on or 0, false, no"):
        choose_lock_mode(locked=False, frozen=False, environ={name: "maybe"})


@pytest.mark.parametrize(
    ("environ", "flags"),
    [
        ({}, {}),
        (
            {
                "MDL_CONNECTIONS": "3",
                "MDL_MIRRORS": "s3://team-mirror/p",
                "HF_HUB_DISABLE_XET": "1",
            },
            {},
        ),
        ({"HF_HUB_OFFLINE": "1", "MDL_DEST": "/tmp/d"}, {"jobs": 2, "locked": True}),
    ],
)
def test_no_catalog_resolves_as_an_empty_one(
    environ: dict[str, str], flags: dict[str, Any]
) -> None:
    """A get finds no catalog and makes none (its types stay unloaded): its settings are those an
    empty catalog gives, whatever the environment and the flags say."""
    from mdl.catalog.settings import settings_for
    from mdl.catalog.specs import Catalog

    none, empty = (settings_for(c, environ, Overrides(**flags)) for c in (None, Catalog()))
    # (each run's secrets are a registry of their own, compared by what they hide)
    names = [name for name in none._fields if name != "secrets"]
    assert [getattr(none, n) for n in names] == [getattr(empty, n) for n in names]
    assert none.secrets.known() == empty.secrets.known()
