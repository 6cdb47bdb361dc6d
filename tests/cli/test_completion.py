"""Shell completion: Typer's own scripts (`mdl --show-completion`), model names from the catalog on
Tab, and the fixed choices of a few options. Each case runs mdl as the shell's completion script
does (in this process but for the one about what a Tab press loads)."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from runfixtures import mdl, mdl_as_child

CATALOG = (
    '[models.tiny]\nrepo = "org/tiny"\n\n[models.tiny-two]\nrepo ='
    ' "org/two"\n\n[models.other]\nrepo = "org/o"\n'
)
ELSEWHERE = '[models.far-away]\nrepo = "org/far"\n'


@pytest.fixture
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A project folder holding catalog.toml (found as ./catalog.toml) and a second catalog
    beside it.
    """
    (tmp_path / "catalog.toml").write_text(CATALOG)
    (tmp_path / "far.toml").write_text(ELSEWHERE)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MDL_LOG_FILE", str(tmp_path / "mdl.log"))
    return tmp_path


def mdl_process(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """``mdl ARGS`` as the shell's completion script runs it, with ``env`` besides ours: in this
    process (the answer is the proof; test_completion_stays_light keeps a real one)."""
    done = mdl_as_child(args, env={**os.environ, **env})
    return subprocess.CompletedProcess(args, done.exit_code, done.stdout, done.stderr)


def bash_complete(line: str) -> list[str]:
    """What bash offers on Tab after ``line`` (the protocol of the script `mdl --show-completion
    bash` prints).
    """
    words = line.split(" ")
    done = mdl_process(
        {"_MDL_COMPLETE": "complete_bash", "COMP_WORDS": line, "COMP_CWORD": str(len(words) - 1)}
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    return [word for word in done.stdout.splitlines() if word]  # nothing to offer is one empty line


# -- the scripts
# ------------------------------------------------------------------------------------------


def test_help_offers_install_and_show_completion() -> None:
    result = mdl("--help")
    assert result.exit_code == 0
    assert "--install-completion" in result.stdout and "--show-completion" in result.stdout


def _shell_named(name: str, tmp_path: Path) -> str:
    """A shell process named ``name`` (Typer detects the shell from the parent process's name): bash
    itself, or bash under another name, so the test needs no zsh or fish installed."""
    bash = shutil.which("bash")
    if bash is None:
        pytest.skip("bash is not installed")
    if name == "bash":
        return bash
    alias = tmp_path / name
    alias.symlink_to(bash)
    return str(alias)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("shell", "expected"),
    [
        ("bash", ["_MDL_COMPLETE=complete_bash", "complete -o default -F _mdl_completion mdl"]),
        ("zsh", ["#compdef mdl", "_MDL_COMPLETE=complete_zsh", "compdef _mdl_completion mdl"]),
        ("fish", ["complete --command mdl", "_MDL_COMPLETE=complete_fish"]),
    ],
)
def test_show_completion_prints_the_script_for_the_shell_it_runs_in(
    shell: str, expected: list[str], tmp_path: Path
) -> None:
    # "; true" keeps the shell alive as mdl's parent (a lone command would be exec'd in its place).
    command = f"{shlex.quote(sys.executable)} -m mdl --show-completion; true"
    done = subprocess.run(
        [_shell_named(shell, tmp_path), "-c", command],
        capture_output=True,
        text=True,
        env={**os.environ, "MDL_LOG_FILE": str(tmp_path / "mdl.log")},
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    for piece in expected:
        assert piece in done.stdout


# -- model names
# -------------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("command", ["pull", "verify", "show", "resolve"])
def test_model_names_complete_from_the_catalog(folder: Path, command: str) -> None:
    assert bash_complete(f"mdl {command} ti") == ["tiny", "tiny-two"]
    assert bash_complete(f"mdl {command} o") == ["other"]
    assert bash_complete(f"mdl {command} zz") == []


def test_names_already_given_are_not_offered_again(folder: Path) -> None:
    assert bash_complete("mdl pull tiny ") == ["tiny-two", "other"]


@pytest.mark.slow
@pytest.mark.parametrize("where", ["before", "after"])
def test_catalog_flag_in_either_position_is_used(folder: Path, where: str) -> None:
    line = "mdl --catalog far.toml pull " if where == "before" else "mdl pull --catalog far.toml "
    assert bash_complete(line) == ["far-away"]


def test_mdl_catalog_is_used(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MDL_CATALOG", str(folder / "far.toml"))
    assert bash_complete("mdl pull ") == ["far-away"]


@pytest.mark.slow
@pytest.mark.parametrize(
    "catalog",
    [
        '[models.tiny]\nrepo = "org/tiny"\nincldue = ["*"]\n',  # a key the schema refuses
        "[models.tiny\n",  # not TOML
        "\udcff",  # not UTF-8 (written with surrogateescape below)
    ],
)
def test_a_broken_catalog_gives_no_completions_and_prints_nothing(
    folder: Path, catalog: str
) -> None:
    (folder / "catalog.toml").write_bytes(catalog.encode("utf-8", "surrogateescape"))
    assert bash_complete("mdl pull ti") == []


def test_no_catalog_anywhere_gives_no_completions(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MDL_LOG_FILE", str(tmp_path / "mdl.log"))
    assert bash_complete("mdl pull ") == []
    assert bash_complete("mdl --catalog missing.toml pull ") == []


@pytest.mark.slow
def test_zsh_and_fish_protocols_complete_names(folder: Path) -> None:
    zsh = mdl_process({"_MDL_COMPLETE": "complete_zsh", "_TYPER_COMPLETE_ARGS": "mdl show ti"})
    assert (
        zsh.returncode == 0
        and '"tiny"' in zsh.stdout
        and '"tiny-two"' in zsh.stdout
        and "other" not in zsh.stdout
    )
    fish = mdl_process(
        {
            "_MDL_COMPLETE": "complete_fish",
            "_TYPER_COMPLETE_FISH_ACTION": "get-args",
            "_TYPER_COMPLETE_ARGS": "mdl verify ot",
        }
    )
    assert fish.returncode == 0 and fish.stdout.split() == ["other"]


def test_completion_stays_light(folder: Path) -> None:
    """A Tab press loads the catalog, never the Hub client or the HTTP stack."""
    code = (
        "import atexit, sys\natexit.register(lambda: sys.stderr.write(' '.join(m for m in"
        " ('huggingface_hub', 'httpx2', 'rich.progress') if m in sys.modules)))\nfrom mdl.__main__"
        " import main\nmain()\n"
    )
    env = {
        **os.environ,
        "_MDL_COMPLETE": "complete_bash",
        "COMP_WORDS": "mdl pull ti",
        "COMP_CWORD": "2",
    }
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60
    )
    assert done.returncode == 0
    assert done.stdout.split() == ["tiny", "tiny-two"]
    assert done.stderr == ""


# -- option values
# -----------------------------------------------------------------------------------------


@pytest.mark.slow
def test_option_choices_complete(folder: Path) -> None:
    assert bash_complete("mdl pull --layout ") == ["plain", "hf-cache"]
    assert bash_complete("mdl --progress ") == ["auto", "rich", "plain", "json", "none"]
    assert bash_complete("mdl pull tiny --progress j") == ["json"]
    assert bash_complete("mdl pack run --checkpoint ") == ["latest", "best", "step:"]
    assert bash_complete("mdl pack run --profile ") == ["deploy", "full"]
    assert bash_complete("mdl pack run --compress d") == ["deflate"]
    assert bash_complete("mdl list --status ") == ["installed", "partial", "missing"]


def test_fixed_choices_match_the_rules_below_the_cli() -> None:
    from typing import get_args

    from mdl.api import STATUSES
    from mdl.cli.options import StatusChoice

    assert get_args(StatusChoice) == STATUSES


def test_commands_and_flags_complete(folder: Path) -> None:
    assert bash_complete("mdl pu") == ["pull", "publish"]
    assert "--no-progress" in bash_complete("mdl --no")
    assert "--dry-run" in bash_complete("mdl pull --d")


def test_install_completion_writes_the_bash_script_and_sources_it(
    tmp_path: Path, isolated_env: Path
) -> None:
    """`mdl --install-completion` in bash: the script under ~/.bash_completions, sourced from
    ~/.bashrc.
    """
    command = f"{shlex.quote(sys.executable)} -m mdl --install-completion; true"
    done = subprocess.run(
        [_shell_named("bash", tmp_path), "-c", command],
        capture_output=True,
        text=True,
        env={**os.environ, "MDL_LOG_FILE": str(tmp_path / "mdl.log")},
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    script = isolated_env / ".bash_completions" / "mdl.sh"
    assert "_MDL_COMPLETE=complete_bash" in script.read_text()
    assert f"source '{script}'" in (isolated_env / ".bashrc").read_text()
