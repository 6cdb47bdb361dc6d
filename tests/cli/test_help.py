"""Help that teaches (issue 25): every command's --help ends with examples that parse as real
command lines, options with fixed choices show them, `mdl help [CMD]` is `mdl [CMD] --help`, and an
unknown command suggests the nearest."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
from pathlib import Path
from typing import Annotated, Literal

import pytest
import typer
import typer.main
from runfixtures import mdl as invoke
from terminal import unstamped
from zygote import forked_mdl

from mdl.cli.app import COMMANDS, EXAMPLES, HABITS, MdlCommand, build_command, suggestions
from mdl.cli.stdout import EXIT_STDOUT_CLOSED
from mdl.errors import ExitCode


def mdl(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """The real `mdl` (its own usage-error rendering included), as a user's shell runs it: a
    process forked from the worker's zygote (tests/zygote.py)."""
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    return subprocess.run(
        [forked_mdl(), *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=60
    )


def help_of(*args: str) -> str:
    result = invoke(*args, "--help", env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.stderr
    return result.stdout


@pytest.mark.parametrize("name", ["mdl", *COMMANDS])
def test_every_help_ends_with_examples(name: str) -> None:
    text = help_of(*([] if name == "mdl" else [name]))
    examples = text.split("Examples:")[1].split("Exit codes:")[0].splitlines()
    commands = [line.strip() for line in examples if line.strip().startswith("mdl ")]
    prefix = "mdl " if name == "mdl" else f"mdl {name}"
    assert len(commands) >= 2 and all(line.startswith(prefix) for line in commands), text
    assert [line for line in examples if line.strip()] == [
        line for line in examples if line.startswith("    ")
    ]
    assert all(len(line) <= 80 for line in text.splitlines())
    assert [line.strip() for line in examples if line.strip().startswith("# ")] == [
        f"# {what}" for _, what in EXAMPLES[name]
    ]


def _invocations(line: str) -> list[list[str]]:
    """The `mdl …` command lines in an example (a pipe may hold two)."""
    words = shlex.split(line)
    parts: list[list[str]] = [[]]
    for word in words:
        if word == "|":
            parts.append([])
        else:
            parts[-1].append(word)
    found = [part[1:] for part in parts if part[:1] == ["mdl"]]
    assert found, line
    return found


@pytest.mark.parametrize("name", list(EXAMPLES))
def test_every_example_is_a_command_line_mdl_accepts(name: str) -> None:
    """Each example parses as its command's arguments: its options exist, its choices are
    allowed.
    """
    for line, _ in EXAMPLES[name]:
        for args in _invocations(line):
            assert args and args[0] in (*COMMANDS, "help"), line
            if args[0] == "help":
                assert len(args) == 2 and args[1] in COMMANDS, line
                continue
            command = build_command(args[0])
            with command.make_context(args[0], args[1:]) as ctx:  # parses and converts every value
                assert ctx.params is not None


CHOICES = {
    ("list", "--layout"): "[plain|hf-cache]",
    ("list", "--status"): "[installed|partial|missing]",
    ("pack", "--profile"): "[deploy|full]",
    ("pack", "--compress"): "[auto|none|deflate]",
    ("pull", "--progress"): "[auto|rich|plain|json|none]",
    ("mdl", "--progress"): "[auto|rich|plain|json|none]",
}


@pytest.mark.parametrize(("name", "option"), list(CHOICES))
def test_fixed_choices_are_shown(name: str, option: str) -> None:
    text = help_of(*([] if name == "mdl" else [name]))
    assert f"{option} {CHOICES[name, option]}" in text


def test_every_layout_option_shows_its_choices_and_none_shows_a_bare_str() -> None:
    for name in COMMANDS:
        text = help_of(name)
        assert "<str>" not in "".join(
            line for line in text.splitlines() if "--layout" in line or "--status" in line
        )
        if "--layout" in text:
            assert "--layout [plain|hf-cache]" in text, name


@pytest.mark.slow
@pytest.mark.parametrize(
    ("args", "option"),
    [
        (["list", "--status", "gone"], "--status"),
        (["pull", "x", "--layout", "flat"], "--layout"),
        (["pack", ".", "--profile", "tiny"], "--profile"),
        (["pack", ".", "--compress", "zstd"], "--compress"),
    ],
)
def test_a_value_not_among_the_choices_is_exit_2_in_one_line(args: list[str], option: str) -> None:
    done = mdl(*args)
    assert done.returncode == 2
    errors = [line for line in unstamped(done.stderr) if line.startswith("Error:")]
    assert len(errors) == 1 and option in errors[0] and args[-1] in errors[0], done.stderr
    assert "Traceback" not in done.stderr and done.stdout == ""


@pytest.mark.slow
def test_mdl_help_cmd_is_cmd_help() -> None:
    for name in ("pull", "pack"):
        asked, direct = mdl("help", name), mdl(name, "--help")
        assert asked.returncode == direct.returncode == 0
        assert asked.stdout == direct.stdout and "Examples:" in asked.stdout
    assert mdl("help").stdout == mdl("--help").stdout


def test_mdl_help_of_an_unknown_command_is_exit_2_with_a_suggestion() -> None:
    done = mdl("help", "pul")
    assert done.returncode == 2 and done.stdout == ""
    assert "no such command 'pul'; did you mean pull" in done.stderr
    assert mdl("help", "pull", "list").returncode == 2


def test_an_unknown_command_suggests_the_nearest() -> None:
    done = mdl("download", "tiny")
    assert done.returncode == 2 and done.stdout == ""
    assert "no such command 'download'; did you mean pull or get?" in done.stderr
    assert "Traceback" not in done.stderr
    assert "did you mean list?" in mdl("lsit").stderr
    nothing = mdl("frobnicate")
    assert (
        nothing.returncode == 2
        and "no such command 'frobnicate' (mdl help lists them)" in nothing.stderr
    )


def test_habits_name_real_commands() -> None:
    assert all(set(meant) <= set(COMMANDS) for meant in HABITS.values())
    assert suggestions("ls") == ["list"]
    assert suggestions("rm") == ["remove"]
    assert suggestions("unzip") == ["unpack"]
    assert suggestions("fetch")[:2] == ["get", "pull"]


# A value's name in help: a word (`RATE`, `NAME...`) or fixed choices as Click shows them
# (`[plain|hf-cache]`); never Typer's type names (`<str>`, `<list[str]>`) nor its braces around a
# required argument (`{name}`).
WORD = re.compile(r"^(\[?[A-Z][A-Z0-9_]*\]?(\.\.\.)?|\[[a-z0-9-]+(\|[a-z0-9-]+)+\])$")


def _sections(text: str) -> dict[str, list[str]]:
    """Help's sections (``Options:``, ``Commands:``…) and their lines; ``Usage:`` holds its own
    line.
    """
    sections: dict[str, list[str]] = {}
    current = ""
    for line in text.splitlines():
        if line.startswith("Usage:"):
            sections["Usage"] = [line]
        elif re.fullmatch(r" *[A-Z][a-z ]+:", line):
            current = line.strip()[:-1]
            sections[current] = []
        elif current:
            sections[current].append(line)
    return sections


def _value_words(rows: list[str]) -> list[str]:
    """The words that name values in a help list's first column (``-o, --output FILE``:
    ``FILE``).
    """
    words = []
    for row in rows:
        # a row starts at column 2; continuations further in
        if not row.startswith("  ") or row.startswith("   "):
            continue
        column = re.split(r"\s{2,}", row.strip())[0]
        # a pair (--xet / --no-xet): no value
        column = re.sub(r"^(--[a-z-]+) / (--no-[a-z-]+)$", r"\1 \2", column)
        words += [w for w in column.replace(",", " ").split() if not w.startswith("-")]
    return words


@pytest.mark.parametrize("width", ["80", "200"])
@pytest.mark.parametrize("name", ["mdl", *COMMANDS])
def test_every_value_in_help_is_a_word(name: str, width: str) -> None:
    """The usage line, every argument and every option of every command name their values by a
    word.
    """
    args = [] if name == "mdl" else [name]
    result = invoke(*args, "--help", env={"COLUMNS": width})
    assert result.exit_code == 0, result.stderr
    sections = _sections(result.stdout)
    usage = sections["Usage"][0].split()[2 if name == "mdl" else 3 :]  # after `Usage: mdl [CMD]`
    assert usage[0] == "[OPTIONS]", result.stdout
    named = [
        *usage[1:],
        *_value_words(sections.get("Arguments", [])),
        *_value_words(sections["Options"]),
    ]
    if name == "mdl":
        assert usage[1:] == ["COMMAND", "[ARGS]..."]
        named = named[2:]
    bad = [word for word in named if not WORD.match(word)]
    assert not bad, f"mdl {name} --help names values {bad}:\n{result.stdout}"
    options = [row for row in sections["Options"] if row.startswith("  -")]
    assert options and not any(re.search(r"--[a-z-]+ [<{]", row) for row in options), result.stdout


@pytest.mark.parametrize("name", list(COMMANDS))
def test_every_option_and_argument_has_a_word(name: str) -> None:
    """The same, from the command itself: each parameter that takes a value has a word, or its
    fixed choices.
    """
    command = build_command(name)
    for param in command.params:
        if getattr(param, "is_flag", False):
            continue
        assert param.metavar is not None and WORD.match(param.metavar), (
            name,
            param.name,
            param.metavar,
        )


def test_a_new_option_gets_a_word_by_the_rule() -> None:
    """Options and arguments added later get words with no ``metavar=``: their choices, N for a
    count, their name.
    """

    def new_cmd(
        source: Annotated[list[str], typer.Argument(help="What to fetch.")],
        header: Annotated[
            list[str] | None, typer.Option("-H", "--header", help="A header.")
        ] = None,
        retries: Annotated[int | None, typer.Option("--retries", help="How many times.")] = None,
        mode: Annotated[Literal["fast", "safe"], typer.Option("--mode", help="How.")] = "safe",
        sha256: Annotated[str | None, typer.Option("--sha256", help="Expected hash.")] = None,
        quiet: Annotated[bool, typer.Option("-q", "--quiet", help="Shh.")] = False,
    ) -> None:
        """A command another branch adds."""

    one = typer.Typer(add_completion=False, rich_markup_mode=None)
    one.command("new", cls=MdlCommand)(new_cmd)
    with typer.main.get_command(one).make_context("new", ["--help"], resilient_parsing=True) as ctx:
        text = ctx.get_help()
    assert "Usage: new [OPTIONS] SOURCE..." in text
    assert (
        "-H, --header HEADER" in text and "--retries N" in text and "--mode [fast|safe]" in text
    ), text
    assert "--sha256 HEX" in text and "-q, --quiet  " in text, text


def _command_rows(text: str) -> dict[str, str]:
    """``mdl --help``'s command list: each command's text, its wrapped lines joined."""
    rows: dict[str, str] = {}
    for line in _sections(text)["Commands"]:
        if match := re.match(r"^  (\S+)\s+(.*)$", line):
            rows[match[1]] = match[2]
        elif line.strip() and rows:
            last = list(rows)[-1]
            rows[last] += " " + line.strip()
    return rows


@pytest.mark.parametrize("width", ["60", "80", "200"])
def test_mdl_help_lists_every_command_whole(width: str) -> None:
    """Each command with the first sentence of its help, never cut short with "..." to fit the
    width.
    """
    result = invoke("--help", env={"COLUMNS": width})
    rows = _command_rows(result.stdout)
    assert list(rows) == list(COMMANDS), result.stdout
    for name, shown in rows.items():
        own = " ".join((build_command(name).help or "").split())
        assert shown.endswith(".") and not shown.endswith("..."), (name, shown)
        assert own.startswith(shown), (name, shown, own)


def test_mdl_help_names_every_exit_code() -> None:
    """`mdl --help` ends with the exit codes and what each means, as docs/output.md's table says
    them.
    """
    lines = _sections(help_of())["Exit codes"]
    shown = {int(m[1]): m[2] for line in lines if (m := re.match(r"^\s+(\d+)  (\S.*)$", line))}
    assert sorted(shown) == sorted([*(int(code) for code in ExitCode), EXIT_STDOUT_CLOSED]), lines
    readme = (Path(__file__).parents[2] / "docs" / "output.md").read_text()
    for code, meaning in shown.items():
        row = re.search(rf"^\| {code} \| (.*) \|$", readme, re.MULTILINE)
        assert row, code
        first = re.split(r"[:;(,]", meaning)[0].strip()
        assert first.split()[0].lower() in row[1].lower(), (code, meaning, row[1])
