"""Issue 90: a plain get, pull or verify line runs without Typer (mdl.cli.plain). Each line it takes means to
Typer's own get command what it means there, token by token; anything else is Typer's; and a line
run both ways says the same, writes the same and ends with the same code."""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from runfixtures import mdl
from servers import CdnServer
from zygote import forked_mdl

from mdl.cli.app import build_command
from mdl.cli.plain import LINES, QUIET, recognised

PLAIN = (
    ["get", "https://h/x.bin"],
    ["get", "https://h/x.bin", "-o", "x.bin"],
    ["get", "-q", "https://h/x.bin", "--output", "d/x.bin"],
    ["get", "https://h/a", "http://h/b", "-d", "out", "--quiet"],
    ["get", "--dir", "out", "org/name"],
    ["get", "https://h/x.bin", "-o", ""],
    ["get", "https://h/x.bin", "--sha256", "ab" * 32, "-o", "x.bin"],
    ["get", "https://h/x.bin", "--sha256", "not hex"],  # (refused by the get itself, both ways)
    ["verify", "--all", "--quick", "--locked"],
    ["verify", "-q", "tiny", "other"],
    ["verify"],
    ["pull", "one", "-q"],
    ["pull", "--all"],
    ["pull", "one", "-q", "--catalog", "c.toml", "--dest", "models"],
    ["verify", "--dest", "models", "--catalog", "c.toml", "--all", "--quick"],
)
TYPER_S = (
    ["get"],  # (Typer says what is missing)
    ["publish", "https://h/x.bin"],
    ["-q", "get", "https://h/x.bin"],
    ["get", "https://h/x.bin", "-ox.bin"],
    ["get", "https://h/x.bin", "--output=x.bin"],
    ["get", "https://h/x.bin", "-o", "a", "-o", "b"],
    ["get", "https://h/x.bin", "-q", "-q"],
    ["get", "https://h/x.bin", "-qo", "x.bin"],
    ["get", "https://h/x.bin", "-o"],
    ["get", "https://h/x.bin", "-o", "-q"],
    ["get", "https://h/x.bin", "--sha256", "-q"],
    ["get", "https://h/x.bin", "--sha256", "a", "--sha256", "b"],
    ["get", "https://h/x.bin", "--local-dir", "out"],
    ["get", "-", "-d", "out"],
    ["get", "--", "https://h/x.bin"],
    ["get", "https://h/x.bin", "--force"],
    ["get", "https://h/x.bin", "-H", "A: b"],
    ["get", "https://h/x.bin", "--json"],
    ["get", "https://h/x.bin\0"],
    ["get", "--help"],
    ["verify", "--all", "--all"],
    ["verify", "--all", "--json"],
    ["verify", "--all", "-o", "x"],
    ["verify", "--quick", "--frozen"],
    ["pull", "tiny", "--dry-run"],
    ["pull", "--all", "--quick"],
    ["pull", "one", "--catalog=c.toml"],
    ["pull", "one", "-c", "c.toml"],
    ["pull", "one", "--dest", "a", "--dest", "b"],
    ["lock"],
)


def test_a_plain_line_means_to_typer_what_it_means_here() -> None:
    for argv in PLAIN:
        given = recognised(argv, {})
        assert given is not None, argv
        assert given.pop("command") == argv[0]
        command = build_command(argv[0])
        typer_s: dict[str, Any] = dict(command.make_context(argv[0], list(argv[1:])).params)
        assert given.pop("quiet") == typer_s.pop("quiet"), argv
        for name, value in typer_s.items():  # every other option as if not given
            mine = given.get(name, command_default(command, name))
            assert value == (tuple(mine) if isinstance(value, tuple) else mine), (argv, name)
        assert set(given) <= set(typer_s), argv
    for name, flags in LINES.items():
        spellings = {flag: p.name for p in build_command(name).params for flag in p.opts}
        assert {flag: spellings[flag] for flag in flags} == flags
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
def test_a_plain_get_run_both_ways_says_and_writes_the_same(
    tmp_path: Path, cdn: CdnServer, monkeypatch: pytest.MonkeyPatch, shape: tuple[str, ...]
) -> None:
    url = cdn.add_file("/w.bin", b"forty-two bytes of a very small model file")
    if shape[0].startswith("/"):
        url, shape = cdn.url + shape[0], shape[1:]
    ends = both_ways(tmp_path, monkeypatch, ["get", url, *shape], lambda here: None)
    assert ends["plain"] == ends["typer"]


@pytest.mark.parametrize(
    "shape",
    [
        ("--all", "--quick", "--locked"),  # the readiness probe: ready
        ("--all", "--quick"),
        ("--all",),  # re-hashed, a row each
        ("one", "-q"),
        ("--all", "--quick", "--locked", "--", "broken"),  # (Typer's: the file changed, exit 6)
        ("pull", "one"),  # (a pull of what is there: its folder on stdout)
        ("pull", "--all", "-q"),
        # the common places a cron line names (a fetch into another folder; refusals: exit 2)
        ("pull", "one", "-q", "--catalog", "catalog.toml", "--dest", "elsewhere"),
        ("pull", "one", "--dest", "in-the-way.bin"),
        ("--all", "--quick", "--catalog", "missing.toml"),
    ],
)
def test_a_plain_verify_or_pull_run_both_ways_says_the_same(
    tmp_path: Path, cdn: CdnServer, monkeypatch: pytest.MonkeyPatch, shape: tuple[str, ...]
) -> None:
    url = cdn.add_file("/w.bin", b"weights")
    broken = shape[-1] == "broken"
    argv = ["verify", *shape[:-2]] if broken else ["verify", *shape]
    if shape[0] == "pull":
        argv = list(shape)

    def pulled(here: Path) -> None:
        (here / "catalog.toml").write_text(
            f'[settings]\ndest = "models"\n\n[models.one]\nfiles = [{{ url = "{url}" }}]\n'
        )
        assert mdl("pull", "one", "-q").exit_code == 0
        assert mdl("lock").exit_code == 0
        if broken:
            (here / "models" / "one" / "w.bin").write_bytes(b"wEights")

    ends = both_ways(tmp_path, monkeypatch, argv, pulled)
    assert ends["plain"] == ends["typer"]
    refused = {"in-the-way.bin", "missing.toml"} & set(shape)  # (usage errors: exit 2)
    assert ends["plain"][0] == (6 if broken else 2 if refused else 0)


def both_ways(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, argv: list[str], setup: Callable[[Path], None]
) -> dict[str, tuple[int, str, str, dict[str, bytes]]]:
    """``mdl ARGV`` run plainly (a process: mdl.__main__) and by Typer (in this one), each in a
    folder of its own that ``setup`` prepared: its exit code, stdout, stderr (unstamped) and the
    files it left, by way."""
    assert recognised(argv, {}) is not None
    ends = {}
    for way in ("plain", "typer"):
        here = tmp_path / way
        here.mkdir()
        monkeypatch.chdir(here)
        monkeypatch.setenv("MDL_LOG_FILE", str(tmp_path / f"{way}.log"))
        (here / "in-the-way.bin").write_bytes(b"the user's")
        setup(here)
        if way == "plain":
            done = subprocess.run(
                [forked_mdl(), *argv],  # forked from the worker's zygote (tests/zygote.py)
                capture_output=True,
                text=True,
                cwd=here,
                env=dict(os.environ),
                timeout=60,
            )
            code, out, err = done.returncode, done.stdout, done.stderr
        else:
            result = mdl(*argv)
            code, out, err = result.exit_code, result.stdout, result.stderr
        files = {
            p.relative_to(here).as_posix(): p.read_bytes()
            for p in sorted(here.rglob("*"))
            if p.is_file() and ".mdl" not in p.parts
        }
        said = (out.replace(str(here), "HERE"), unstamped(err.replace(str(here), "HERE")))
        ends[way] = (code, *said, files)
    return ends


def unstamped(text: str) -> str:
    """stderr without each line's time and process id, and the seconds it took."""
    text = re.sub(r"(?m)^\S+Z \[\d+\] ", "", text)
    return re.sub(r"\b[\d.]+ ?(s|ms|KiB/s|B/s|MiB/s)\b", "T", text)
