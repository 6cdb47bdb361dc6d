"""Issue 90: a plain get line runs without Typer (mdl.cli.plainget). Each line it takes means to
Typer's own get command what it means there, token by token; anything else is Typer's; and a line
run both ways says the same, writes the same and ends with the same code."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from runfixtures import mdl
from servers import CdnServer

from mdl.cli.app import build_command
from mdl.cli.plainget import QUIET, VALUES, recognised

PLAIN = (
    ["get", "https://h/x.bin"],
    ["get", "https://h/x.bin", "-o", "x.bin"],
    ["get", "-q", "https://h/x.bin", "--output", "d/x.bin"],
    ["get", "https://h/a", "http://h/b", "-d", "out", "--quiet"],
    ["get", "--dir", "out", "org/name"],
    ["get", "https://h/x.bin", "-o", ""],
)
TYPER_S = (
    ["get"],  # (Typer says what is missing)
    ["pull", "https://h/x.bin"],
    ["-q", "get", "https://h/x.bin"],
    ["get", "https://h/x.bin", "-ox.bin"],
    ["get", "https://h/x.bin", "--output=x.bin"],
    ["get", "https://h/x.bin", "-o", "a", "-o", "b"],
    ["get", "https://h/x.bin", "-q", "-q"],
    ["get", "https://h/x.bin", "-qo", "x.bin"],
    ["get", "https://h/x.bin", "-o"],
    ["get", "https://h/x.bin", "-o", "-q"],
    ["get", "https://h/x.bin", "--local-dir", "out"],
    ["get", "-", "-d", "out"],
    ["get", "--", "https://h/x.bin"],
    ["get", "https://h/x.bin", "--force"],
    ["get", "https://h/x.bin", "-H", "A: b"],
    ["get", "https://h/x.bin", "--json"],
    ["get", "https://h/x.bin\0"],
    ["get", "--help"],
)


def test_a_plain_line_means_to_typer_what_it_means_here() -> None:
    command = build_command("get")
    for argv in PLAIN:
        given = recognised(argv, {})
        assert given is not None, argv
        context = command.make_context("get", list(argv[1:]))
        typer_s: dict[str, Any] = dict(context.params)
        quiet = typer_s.pop("quiet")
        assert given.pop("quiet") == quiet, argv
        for name, value in typer_s.items():  # every other option as if not given
            assert value == given.get(name, command_default(command, name)), (argv, name)
        assert set(given) <= set(typer_s), argv
    spellings = {flag: p.name for p in command.params for flag in p.opts}
    assert {flag: spellings[flag] for flag in VALUES} == VALUES
    assert {spellings[flag] for flag in QUIET} == {"quiet"}


def command_default(command: Any, name: str) -> Any:
    (param,) = (p for p in command.params if p.name == name)
    return () if param.multiple and param.default is None else param.default


def test_any_other_line_is_typer_s() -> None:
    for argv in TYPER_S:
        assert recognised(argv, {}) is None, argv
    assert recognised(PLAIN[0], {"_MDL_COMPLETE": "bash_complete"}) is None


@pytest.mark.parametrize(
    "shape",
    [
        ("-o", "x.bin"),  # fetched
        ("-o", "x.bin", "-q"),  # fetched, quietly
        ("-d", "folder"),  # into a folder
        ("-o", "in-the-way.bin"),  # a file of the user's in the way: exit 2
        ("/missing", "-o", "m.bin"),  # a 404: exit 4
    ],
)
def test_a_plain_line_run_both_ways_says_and_writes_the_same(
    tmp_path: Path, cdn: CdnServer, monkeypatch: pytest.MonkeyPatch, shape: tuple[str, ...]
) -> None:
    url = cdn.add_file("/w.bin", b"forty-two bytes of a very small model file")
    if shape[0].startswith("/"):
        url, shape = cdn.url + shape[0], shape[1:]
    argv = ["get", url, *shape]
    assert recognised(argv, {}) is not None
    ends = {}
    for way in ("plain", "typer"):
        here = tmp_path / way
        here.mkdir()
        (here / "in-the-way.bin").write_bytes(b"the user's")
        if way == "plain":
            done = subprocess.run(
                [sys.executable, "-m", "mdl", *argv],
                capture_output=True,
                text=True,
                cwd=here,
                env={**os.environ, "MDL_LOG_FILE": str(tmp_path / f"{way}.log")},
                timeout=60,
            )
            said = (done.returncode, done.stdout, done.stderr)
        else:
            monkeypatch.chdir(here)
            monkeypatch.setenv("MDL_LOG_FILE", str(tmp_path / f"{way}.log"))
            result = mdl(*argv)
            said = (result.exit_code, result.stdout, result.stderr)
        code, out, err = said
        files = {
            p.relative_to(here).as_posix(): p.read_bytes()
            for p in sorted(here.rglob("*"))
            if p.is_file() and ".mdl" not in p.parts
        }
        ends[way] = (
            code,
            out.replace(str(here), "HERE"),
            unstamped(err.replace(str(here), "HERE")),
            files,
        )
    assert ends["plain"] == ends["typer"]


def unstamped(text: str) -> str:
    """stderr without each line's time and process id, and the seconds it took."""
    text = re.sub(r"(?m)^\S+Z \[\d+\] ", "", text)
    return re.sub(r"\b[\d.]+ ?(s|ms|KiB/s|B/s|MiB/s)\b", "T", text)
