"""Help that teaches (issue 25): every command's --help ends with examples that parse as real command lines, options
with fixed choices show them, `mdl help [CMD]` is `mdl [CMD] --help`, and an unknown command suggests the nearest."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from runfixtures import mdl as invoke

from mdl.cli.app import COMMANDS, EXAMPLES, HABITS, build_command, suggestions


def mdl(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """The real `mdl` (its own usage-error rendering included), as a user's shell runs it."""
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    return subprocess.run(
        [sys.executable, "-m", "mdl", *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=60
    )


def help_of(*args: str) -> str:
    result = invoke(*args, "--help", env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.stderr
    return result.stdout


@pytest.mark.parametrize("name", ["mdl", *COMMANDS])
def test_every_help_ends_with_examples(name: str) -> None:
    text = help_of(*([] if name == "mdl" else [name]))
    examples = text.split("Examples:")[1].splitlines()
    commands = [line.strip() for line in examples if line.strip().startswith("mdl ")]
    prefix = "mdl " if name == "mdl" else f"mdl {name}"
    assert len(commands) >= 2 and all(line.startswith(prefix) for line in commands), text
    assert [line for line in examples if line.strip()] == [line for line in examples if line.startswith("    ")]
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
    """Each example parses as its command's arguments: its options exist, its choices are allowed."""
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
    ("list", "--layout"): "<plain|hf-cache>",
    ("list", "--status"): "<installed|partial|missing>",
    ("pack", "--profile"): "<deploy|full>",
    ("pack", "--compress"): "<auto|none|deflate>",
    ("pull", "--progress"): "<auto|rich|plain|json|none>",
    ("mdl", "--progress"): "<auto|rich|plain|json|none>",
}


@pytest.mark.parametrize(("name", "option"), list(CHOICES))
def test_fixed_choices_are_shown(name: str, option: str) -> None:
    text = help_of(*([] if name == "mdl" else [name]))
    assert f"{option} {CHOICES[name, option]}" in text


def test_every_layout_option_shows_its_choices_and_none_shows_a_bare_str() -> None:
    for name in COMMANDS:
        text = help_of(name)
        assert "<str>" not in "".join(line for line in text.splitlines() if "--layout" in line or "--status" in line)
        if "--layout" in text:
            assert "--layout <plain|hf-cache>" in text, name


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
    errors = [line for line in done.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and option in errors[0] and args[-1] in errors[0], done.stderr
    assert "Traceback" not in done.stderr and done.stdout == ""


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
    assert nothing.returncode == 2 and "no such command 'frobnicate' (mdl help lists them)" in nothing.stderr


def test_habits_name_real_commands() -> None:
    assert all(set(meant) <= set(COMMANDS) for meant in HABITS.values())
    assert suggestions("ls") == ["list"]
    assert suggestions("rm") == ["remove"]
    assert suggestions("unzip") == ["unpack"]
    assert suggestions("fetch")[:2] == ["get", "pull"]
