"""One table (mdl/setting.py) holds every place a setting is spelt: the API's typed keywords, the
options of each command, Overrides, the resolved Settings and the catalog's [settings] keys; each
row's bounds are checked alike from a flag, the environment and the catalog, and its default is what
a run gets when nothing sets it."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import get_type_hints

import pytest

import mdl
from mdl import api
from mdl.catalog._schema import SettingsTable
from mdl.catalog.load import parse_catalog
from mdl.catalog.settings import Settings, build_settings
from mdl.cli.app import COMMANDS, build_command
from mdl.cli.options import COMMON
from mdl.errors import CatalogError, UsageError
from mdl.setting import SETTING, SETTINGS, Adding, Getting, Locking, Overrides, Pulling, Setting

# The API's annotation of a setting's keyword, by the setting's kind (as written: the API's
# annotations are text).
ANNOTATIONS = {
    "count": "int | None",
    "seconds": "float | None",
    "rate": "str | int | None",
    "choice": "str | None",
    "url": "str | None",
    "path": "StrPath | None",
    "urls": "Sequence[str | Mapping[str, str]] | None",  # templates, or { url, endpoint } tables
    "switch": "bool",
}
PUBLIC = [
    getattr(mdl, name)
    for name in dir(api)
    if callable(getattr(mdl, name, None)) and hasattr(api, name)
]
# The API function each command calls with its options (remove hands --dest and --layout to prune).
CALLS = {
    name: getattr(api, {"list": "list_models", "remove": "prune"}.get(name, name))
    for name in COMMANDS
}
NUMBERS = [s for s in SETTINGS if s.kind in ("count", "seconds")]


def annotation(setting: Setting) -> str:
    """A switch on by default is a pair (--xet/--no-xet): its keyword is None when not given."""
    return "bool | None" if setting.pair else ANNOTATIONS[setting.kind]


def unset(setting: Setting) -> object:
    """What a keyword (and Overrides) holds when the caller says nothing: off for a switch, None
    for the rest.
    """
    return False if setting.kind == "switch" and not setting.pair else None


def out_of_bounds(setting: Setting) -> str:
    if setting.kind == "count":
        return str(setting.bounds[1] + 1)
    return "-1" if setting.zero_ok else "0"


def in_bounds(setting: Setting) -> str:
    return str(setting.bounds[0] + 1) if setting.kind == "count" else "7.5"


def test_every_api_keyword_named_as_a_setting_is_typed_as_the_table_says() -> None:
    found = 0
    for function in PUBLIC:
        for name, param in inspect.signature(function).parameters.items():
            if name in SETTING and SETTING[name].run and param.kind is param.KEYWORD_ONLY:
                found += 1
                assert str(param.annotation) == annotation(SETTING[name]), (function.__name__, name)
                assert param.default == unset(SETTING[name]), (function.__name__, name)
    assert found > 30


@pytest.mark.parametrize("name", COMMANDS)
def test_each_setting_option_of_a_command_is_the_tables_and_reaches_the_api(name: str) -> None:
    command = build_command(name)
    keywords = inspect.signature(CALLS[name]).parameters
    for param in command.params:
        if param.name in SETTING:
            assert param.opts == [SETTING[param.name].flag], (name, param.name)
            assert param.secondary_opts == (
                ["--no-" + param.name] if SETTING[param.name].pair else []
            ), param.name
            assert param.name in keywords or param.name in COMMON, (
                f"mdl {name} takes {param.opts[0]}, api.{CALLS[name].__name__} does not"
            )


def test_overrides_hold_each_setting_that_has_a_flag_and_the_runs_switches() -> None:
    defaults = Overrides._field_defaults
    flagged = {s.name: s for s in SETTINGS if s.flag and s.run}
    assert set(defaults) == {*flagged, "verify", "force", "dry_run", "unsigned"}
    for name, setting in flagged.items():
        assert defaults[name] == unset(setting), name


def test_a_run_that_sets_nothing_gets_each_default_of_the_table() -> None:
    settings = build_settings(environ={}, dest=Path("/tmp/dest"))
    resolved = set(Settings._fields)
    for setting in SETTINGS:
        # (--locked and --frozen: the lock mode, below)
        if setting.kind != "path" and unset(setting) is None:
            assert setting.name in resolved
            assert getattr(settings, setting.name) == setting.default, setting.name
    assert settings.lock_mode == "auto" and (settings.connections_set, settings.jobs_set) == (
        False,
        False,
    )


def test_the_catalog_takes_each_setting_of_the_table_as_a_key() -> None:
    keys = [s.name for s in SETTINGS if s.catalog and s.kind != "urls"]
    assert SettingsTable.keys() == [*keys, "signature", "mirrors"]
    assert not set(SettingsTable.keys()) & {s.name for s in SETTINGS if not s.catalog}


@pytest.mark.parametrize("setting", NUMBERS, ids=[s.name for s in NUMBERS])
def test_each_number_goes_from_any_source_to_the_run(setting: Setting) -> None:
    value = in_bounds(setting)
    catalog = parse_catalog(f"[settings]\n{setting.name} = {value}\n").settings
    as_set = int(value) if setting.kind == "count" else float(value)
    assert (
        getattr(build_settings(environ={}, dest=Path("d"), catalog=catalog), setting.name) == as_set
    )
    assert (
        getattr(build_settings(environ={setting.env: value}, dest=Path("d")), setting.name)
        == as_set
    )
    if setting.flag:
        flags = Overrides(**{setting.name: as_set})
        assert getattr(build_settings(flags, environ={}, dest=Path("d")), setting.name) == as_set


@pytest.mark.parametrize("setting", NUMBERS, ids=[s.name for s in NUMBERS])
def test_each_bound_is_checked_alike_from_a_flag_the_environment_and_the_catalog(
    setting: Setting,
) -> None:
    bad = out_of_bounds(setting)
    with pytest.raises(UsageError, match=rf"^\${setting.env}: must be "):
        build_settings(environ={setting.env: bad}, dest=Path("d"))
    if setting.flag:
        number = int(bad) if setting.kind == "count" else float(bad)
        with pytest.raises(UsageError, match=rf"^{setting.flag}: must be "):
            build_settings(Overrides(**{setting.name: number}), environ={}, dest=Path("d"))
    with pytest.raises(CatalogError, match=rf"^catalog.toml:2: settings\.{setting.name}: must be "):
        parse_catalog(f"[settings]\n{setting.name} = {bad}\n")


def test_help_shows_each_settings_bounds_and_where_its_default_comes_from() -> None:
    text = " ".join(
        build_command("pull").get_help(build_command("pull").make_context("pull", [])).split()
    )
    assert "Parallel ranges per big file, 1-64 (default: $MDL_CONNECTIONS, catalog, 8)." in text
    assert "(default: $MDL_LOCK_TIMEOUT, catalog, 3600)." in text


@pytest.mark.parametrize("text", ["0", "false", "off", "no", " False "])
def test_xet_is_turned_off_by_a_flag_the_environment_or_the_catalog(text: str) -> None:
    assert build_settings(environ={}, dest=Path("d")).xet is True
    assert build_settings(environ={"MDL_XET": text}, dest=Path("d")).xet is False
    assert (
        build_settings(Overrides(xet=False), environ={"MDL_XET": "1"}, dest=Path("d")).xet is False
    )
    assert (
        build_settings(Overrides(xet=True), environ={"MDL_XET": text}, dest=Path("d")).xet is True
    )
    catalog = parse_catalog("[settings]\nxet = false\n").settings
    assert build_settings(environ={}, dest=Path("d"), catalog=catalog).xet is False
    assert build_settings(environ={"MDL_XET": "yes"}, dest=Path("d"), catalog=catalog).xet is True


def test_a_xet_setting_that_is_not_a_switch_is_refused_where_it_is_written() -> None:
    with pytest.raises(
        UsageError, match=r"^\$MDL_XET: expected 1, true, yes, on or 0, false, no, off, got 'maybe'"
    ):
        build_settings(environ={"MDL_XET": "maybe"}, dest=Path("d"))
    with pytest.raises(CatalogError, match=r"settings\.xet: must be a boolean"):
        parse_catalog('[settings]\nxet = "no"\n')


def test_the_xet_pair_reaches_the_api_from_pull_and_get() -> None:
    for name in ("pull", "get"):
        command = build_command(name)
        context = command.make_context(name, ["--no-xet", "x"])
        assert context.params["xet"] is False
        assert command.make_context(name, ["x"]).params["xet"] is None
    assert inspect.signature(api.pull).parameters["xet"].default is None


def test_each_commands_settings_are_typed_as_their_options_give_them() -> None:
    """The TypedDicts a command's ``**where`` names (mdl.cli.options) type each setting as its option
    hands it on (a number as its callback read it), so that mypy holds the CLI to the API."""
    given: dict[str, object] = {
        "count": int,
        "seconds": float,
        "rate": str,
        "choice": str,
        "path": Path,
        "urls": list[str],
    }
    for typed in (Pulling, Getting, Locking, Adding):
        for name, hint in get_type_hints(typed).items():
            setting = SETTING[name]
            if setting.kind == "switch":
                assert hint == (bool | None if setting.pair else bool), name
            else:
                assert hint == given[setting.kind] | None, name  # type: ignore[operator]
