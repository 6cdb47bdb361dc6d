"""The docs cannot drift from the code: docs/commands.md documents exactly the options each `--help`
shows, docs/maintaining.md names every part of mdl/ and only paths that exist, and CHANGELOG.md keeps its
Keep-a-Changelog form with the released version mdl says it is."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mdl.cli.app import app
from mdl.errors import EXIT_MEANINGS, ExitCode, MdlError, error_for_exit_code
from mdl.version import __version__

ROOT = Path(__file__).parents[1]
COMMANDS_MD = (ROOT / "docs" / "commands.md").read_text(encoding="utf-8")
MAINTAINING_MD = (ROOT / "docs" / "maintaining.md").read_text(encoding="utf-8")
OUTPUT_MD = (ROOT / "docs" / "output.md").read_text(encoding="utf-8")
CHANGELOG = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
# the section of docs/commands.md whose options every command takes
EVERY_COMMAND = "Options every command takes"
OPTION = re.compile(r"(?<![\w-])(--?[A-Za-z][\w-]*)")


# -- what --help says
# -------------------------------------------------------------------------------------------


def help_text(*args: str) -> str:
    result = CliRunner().invoke(app, [*args, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    return result.stdout


def _section(text: str, title: str) -> list[str]:
    """The lines of a help section (``Options:``, ``Commands:``) up to the blank line that ends
    it.
    """
    return text.split(f"\n{title}:\n", 1)[1].split("\n\n", 1)[0].splitlines()


def help_options(*args: str) -> set[str]:
    """Every option name `mdl ARGS --help` lists: ``-q, --quiet`` is ``-q`` and ``--quiet``."""
    names: set[str] = set()
    for line in _section(help_text(*args), "Options"):
        # an option's row; its help is further right
        if row := re.match(r"^  (-\S.*?)(?:  |$)", line):
            names.update(OPTION.findall(row[1].split(" [")[0]))
    return names


def help_commands() -> list[str]:
    return [
        row[1]
        for line in _section(help_text(), "Commands")
        if (row := re.match(r"^  (\w+)  ", line))
    ]


# -- what docs/commands.md says
# ---------------------------------------------------------------------------------


def documented_options() -> dict[str, set[str]]:
    """Each section of docs/commands.md (`mdl NAME` by NAME, `mdl` itself as "") with the options in
    the first column of its tables."""
    found: dict[str, set[str]] = {}
    for section in re.split(r"^## ", COMMANDS_MD, flags=re.MULTILINE)[1:]:
        title = section.splitlines()[0]
        command = re.match(r"^`mdl(?: (\w+))?`", title)
        key = EVERY_COMMAND if title == EVERY_COMMAND else (command[1] or "") if command else None
        if key is None:
            continue
        assert key not in found, f"two sections for {title!r}"
        cells = [
            re.split(r"(?<!\\)\|", line)[1]
            for line in section.splitlines()
            if line.startswith("| `-")
        ]
        found[key] = {name for cell in cells for name in OPTION.findall(cell)}
    return found


DOCUMENTED = documented_options()


def test_commands_md_has_a_section_for_every_command_and_no_other() -> None:
    assert sorted(set(DOCUMENTED) - {EVERY_COMMAND, ""}) == sorted(help_commands())
    assert "" in DOCUMENTED and DOCUMENTED[EVERY_COMMAND]


@pytest.mark.parametrize("command", ["", *help_commands()])
def test_commands_md_documents_every_option_help_shows_and_no_other(command: str) -> None:
    """A command's table holds what its --help shows beyond the options every command takes — no
    more, no less.
    """
    shown = help_options(*([command] if command else []))
    every = DOCUMENTED[EVERY_COMMAND]
    assert every <= shown, (
        f"mdl {command} --help lacks {sorted(every - shown)}, documented for every command"
    )
    own = DOCUMENTED[command]
    assert not own - shown, (
        f"docs/commands.md documents for mdl {command} what --help lacks: {sorted(own - shown)}"
    )
    assert not shown - every - own, (
        f"docs/commands.md lacks mdl {command}'s {sorted(shown - every - own)}"
    )


def test_the_option_check_sees_rows_and_names() -> None:
    """The parsing above finds what it must: a short and a long name in one row, and an option of
    one command only.
    """
    assert {"-q", "--quiet", "-h", "--help", "--json"} <= DOCUMENTED[EVERY_COMMAND]
    assert {"-o", "--output", "-d", "--dir", "-H", "--header"} <= help_options("get") & DOCUMENTED[
        "get"
    ]
    assert "--upgrade" in DOCUMENTED["lock"] and "--upgrade" not in DOCUMENTED["pull"]


# -- docs/maintaining.md
# ---------------------------------------------------------------------------------------------

NAMED = set(re.findall(r"`(mdl/[\w./-]*)`", MAINTAINING_MD))


def test_maintaining_md_names_every_part_and_module() -> None:
    parts = {
        f"{p.parent.relative_to(ROOT).as_posix()}/" for p in (ROOT / "mdl").rglob("__init__.py")
    } - {"mdl/"}
    top = {p.relative_to(ROOT).as_posix() for p in (ROOT / "mdl").glob("*.py")}
    inner = {
        p.relative_to(ROOT).as_posix()
        for p in (ROOT / "mdl").glob("*/**/*.py")
        if p.name != "__init__.py"
    }
    modules = top | inner
    assert parts and top and inner
    assert not parts - NAMED, f"docs/maintaining.md does not name {sorted(parts - NAMED)}"
    assert not modules - NAMED, f"docs/maintaining.md does not name {sorted(modules - NAMED)}"


def test_every_test_a_recipe_names_exists() -> None:
    """A recipe's guard is a test that exists: each ``tests/…`` path (and ``::test`` in it)."""
    named = re.findall(r"`(tests/[\w./-]+)(?:::(\w+))?`", MAINTAINING_MD)
    assert len(named) > 8
    missing = [f"{path}::{test}" for path, test in named if not (ROOT / path).exists()]
    missing += [
        f"{path}::{test}"
        for path, test in named
        if test and (ROOT / path).is_file() and f"def {test}(" not in (ROOT / path).read_text()
    ]
    assert not missing, f"docs/maintaining.md names tests that do not exist: {missing}"


def test_every_path_maintaining_md_names_exists() -> None:
    assert len(NAMED) > 20
    missing = sorted(path for path in NAMED if not (ROOT / path).exists())
    assert not missing, f"docs/maintaining.md names what mdl/ does not hold: {missing}"


# -- docs/output.md's exit codes
# --------------------------------------------------------------------------------


def documented_exit_codes() -> list[tuple[int, str]]:
    """Each row of docs/output.md's exit-code table: its code and its meaning column (``\\|`` is a
    ``|``)."""
    table = OUTPUT_MD.split("\n## Exit codes\n", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| (\d+) \| (.*?) \|(?: .*)?\|$", table, re.MULTILINE)
    return [(int(code), meaning.replace("\\|", "|")) for code, meaning in rows]


def test_output_md_says_each_exit_code_as_help_does() -> None:
    """docs/output.md's table has a row for each exit code, in order, whose meaning is the one
    `mdl --help` ends with (mdl/errors.py's ``EXIT_MEANINGS``)."""
    assert documented_exit_codes() == [(int(code), said) for code, said in EXIT_MEANINGS.items()]
    shown = help_text().split("Exit codes:\n", 1)[1].splitlines()
    assert [" ".join(line.split()) for line in shown] == [
        f"{code} {' '.join(said.split())}" for code, said in EXIT_MEANINGS.items()
    ]


def test_every_exit_code_has_a_meaning_and_each_failure_its_error_class() -> None:
    """A new exit code says what it means, and a failure's code is raised again as its class."""
    assert set(ExitCode) <= set(EXIT_MEANINGS)
    for code in set(ExitCode) - {ExitCode.OK, ExitCode.INTERNAL}:
        assert error_for_exit_code(code).exit_code == code
    assert error_for_exit_code(ExitCode.INTERNAL) is MdlError


# -- CHANGELOG.md
# -----------------------------------------------------------------------------------------------

# https://keepachangelog.com/en/1.1.0/
KINDS = ("Added", "Changed", "Deprecated", "Removed", "Fixed", "Security")


def changelog_versions() -> list[tuple[str, list[tuple[str, list[str]]]]]:
    """Each ``## [VERSION]`` section of CHANGELOG.md with its ``### KIND`` sections and their
    entries.
    """
    versions: list[tuple[str, list[tuple[str, list[str]]]]] = []
    for line in CHANGELOG.splitlines():
        if line.startswith("## "):
            heading = re.fullmatch(
                r"## \[(Unreleased|\d+\.\d+\.\d+)\](?: - (\d{4}-\d{2}-\d{2}))?", line
            )
            assert heading, f"not a version heading: {line!r}"
            assert (heading[1] == "Unreleased") == (heading[2] is None), (
                f"a release has a date, only: {line!r}"
            )
            versions.append((heading[1], []))
        elif line.startswith("### "):
            assert versions, line
            assert line[4:] in KINDS, f"not a Keep-a-Changelog section: {line!r}"
            assert line[4:] not in [kind for kind, _ in versions[-1][1]], (
                f"{line!r} twice in {versions[-1][0]}"
            )
            versions[-1][1].append((line[4:], []))
        elif line.startswith("- "):
            assert versions and versions[-1][1], f"an entry outside a section: {line!r}"
            versions[-1][1][-1][1].append(line)
    return versions


def test_changelog_keeps_its_form() -> None:
    assert CHANGELOG.startswith("# Changelog\n")
    long = [line for line in CHANGELOG.splitlines() if len(line) > 200]
    assert not long, f"lines over 200 characters: {long}"
    versions = changelog_versions()
    assert "Unreleased" not in [version for version, _ in versions[1:]], "[Unreleased] comes first"
    released = [tuple(int(n) for n in version.split(".")) for version, _ in releases(versions)]
    assert (
        released
        and released == sorted(released, reverse=True)
        and len(set(released)) == len(released)
    )
    assert all(entries for _, kinds in versions for _, entries in kinds), "an empty section"
    assert all(kinds for _, kinds in releases(versions)), "a release with no changes"


def releases(
    versions: list[tuple[str, list[tuple[str, list[str]]]]],
) -> list[tuple[str, list[tuple[str, list[str]]]]]:
    """The released versions, newest first: every section but an ``[Unreleased]`` one above."""
    return versions[1:] if versions and versions[0][0] == "Unreleased" else versions


def test_the_newest_release_is_the_version_mdl_says() -> None:
    """Two builds never say one version (issue 59, G): what is merged is released, under the
    version mdl/version.py says; an ``## [Unreleased]`` heading may stand above it, empty."""
    versions = changelog_versions()
    unreleased = [entry for _, entries in versions[0][1] for entry in entries]
    if versions[0][0] == "Unreleased":
        assert not unreleased, (
            f"CHANGELOG.md's [Unreleased] lists {len(unreleased)} changes: release them as"
            f" ## [{__version__}] - YYYY-MM-DD (mdl/version.py), or move the version on"
        )
    assert releases(versions)[0][0] == __version__
    assert help_text().startswith("Usage: mdl")
    version = CliRunner().invoke(app, ["--version"])
    assert version.stdout == f"mdl {__version__}\n"
