"""The crontab examples of README.md and docs/*.md paste as they are: crontab(5) reads one line per
job (no `\\` continuation, `%` is a newline), /bin/sh parses each command, one redirection logs
every command of a job, and each `mdl` in it parses; so does each `mdl` of their shell examples, and
every link between them leads somewhere."""

from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path

import pytest
import typer.main

from mdl.cli.app import COMMANDS, app, build_command

ROOT = Path(__file__).parents[1]
PAGES = {
    path: path.read_text(encoding="utf-8")
    for path in (ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")))
}
DOCS = "\n".join(PAGES.values())
CRON_BLOCKS = re.findall(r"^```cron\n(.*?)^```", DOCS, re.MULTILINE | re.DOTALL)
SHELL_BLOCKS = re.findall(r"^ *```(?:sh|bash)\n(.*?)^ *```", DOCS, re.MULTILINE | re.DOTALL)
VARIABLE = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*)$")  # crontab(5): name = value
TIME_FIELD = re.compile(r"^(\*|\d+(-\d+)?)(/\d+)?(,(\*|\d+(-\d+)?)(/\d+)?)*$")
SHELL_OPERATORS = set("();<>|&")


def _jobs(block: str) -> list[tuple[str, str]]:
    """Each job line of a crontab as (its five time fields, its command); comments and variables
    are not jobs.
    """
    jobs = []
    for line in block.splitlines():
        if not line.strip() or line.lstrip().startswith("#") or VARIABLE.match(line):
            continue
        fields = line.split(None, 5)
        assert len(fields) == 6, f"not a crontab job (5 time fields and a command): {line!r}"
        assert all(TIME_FIELD.match(f) for f in fields[:5]), f"bad time fields: {line!r}"
        jobs.append((" ".join(fields[:5]), fields[5]))
    return jobs


def mdl_invocations(command: str) -> list[list[str]]:
    """The arguments of each `mdl …` (or `/path/to/mdl …`) a shell command line runs."""
    lexer = shlex.shlex(command, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    words = list(lexer)
    found: list[list[str]] = []
    for i, word in enumerate(words):
        if word == "mdl" or word.endswith("/mdl"):
            args = []
            for arg in words[i + 1 :]:
                if set(arg) <= SHELL_OPERATORS or arg in ("{", "}"):
                    break
                args.append(arg)
            found.append(args)
    return found


def test_the_docs_have_cron_blocks() -> None:
    assert len(CRON_BLOCKS) >= 4
    assert all(_jobs(block) for block in CRON_BLOCKS)


@pytest.mark.parametrize("block", CRON_BLOCKS)
def test_every_cron_line_is_one_line_cron_runs(block: str) -> None:
    """No line continues with `\\` (cron runs up to the newline), no bare `%` (cron makes it a
    newline).
    """
    for line in block.splitlines():
        assert not line.rstrip().endswith("\\"), f"cron does not continue a line: {line!r}"
    for _, command in _jobs(block):
        assert not re.search(r"(?<!\\)%", command), (
            f"an unescaped % is a newline to cron: {command!r}"
        )


@pytest.mark.parametrize("block", CRON_BLOCKS)
def test_every_cron_command_is_valid_sh_that_logs_all_of_it(block: str) -> None:
    """/bin/sh parses each job; a job that logs redirects after a `{ …; }` group, so every
    command is logged.
    """
    for _, command in _jobs(block):
        parsed = subprocess.run(
            ["sh", "-n", "-c", command], capture_output=True, text=True, check=False
        )
        assert parsed.returncode == 0, f"{command!r}: {parsed.stderr}"
        if ">>" in command:
            assert re.search(r"; \} >>\S+ 2>&1$", command), (
                f"only the last command would be logged: {command!r}"
            )
            assert command.lstrip().startswith("{"), command


@pytest.mark.parametrize("block", CRON_BLOCKS)
def test_every_mdl_in_a_cron_job_is_a_command_line_mdl_accepts(block: str) -> None:
    """Each `mdl …` names a command and parses as its arguments (its flags exist, its values
    convert).
    """
    invocations = [args for _, command in _jobs(block) for args in mdl_invocations(command)]
    assert invocations, block
    for args in invocations:
        assert args and args[0] in COMMANDS, args
        with build_command(args[0]).make_context(args[0], args[1:]) as ctx:
            assert ctx.params is not None


@pytest.mark.parametrize("block", CRON_BLOCKS)
def test_every_mdl_variable_in_a_crontab_is_one_mdl_reads(block: str) -> None:
    source = "\n".join(path.read_text(encoding="utf-8") for path in (ROOT / "mdl").rglob("*.py"))
    for line in block.splitlines():
        if (match := VARIABLE.match(line)) and match[1].startswith("MDL_"):
            assert f'"{match[1]}"' in source, f"mdl reads no {match[1]}"
            assert not match[2].startswith(("'", '"')), f"cron keeps quotes in a value: {line!r}"


def test_the_checks_refuse_what_cron_would_break() -> None:
    """The checks above fail on the crontabs README used to show (a continued line, a logged `&&`
    tail).
    """
    with pytest.raises(AssertionError):
        test_every_cron_line_is_one_line_cron_runs(
            "0 2 * * *  mdl pull --all \\\n    --no-progress\n"
        )
    with pytest.raises(AssertionError):
        test_every_cron_line_is_one_line_cron_runs(
            "0 2 * * *  mdl pull --all >log-$(date +%F) 2>&1\n"
        )
    with pytest.raises(AssertionError):
        test_every_cron_command_is_valid_sh_that_logs_all_of_it(
            "0 2 * * *  mdl pull && mdl publish >>log 2>&1\n"
        )
    with pytest.raises(Exception, match="No such option: --al"):
        test_every_mdl_in_a_cron_job_is_a_command_line_mdl_accepts("0 2 * * *  mdl pull --al\n")
    assert mdl_invocations(
        "{ X=1 /opt/bin/mdl pull --all && mdl publish --to s3://b/p; } >>l 2>&1"
    ) == [["pull", "--all"], ["publish", "--to", "s3://b/p"]]


def test_the_docs_have_shell_examples() -> None:
    assert len(SHELL_BLOCKS) >= 10
    assert (
        sum(len(mdl_invocations(line)) for block in SHELL_BLOCKS for line in block.splitlines())
        >= 50
    )


@pytest.mark.parametrize("block", SHELL_BLOCKS)
def test_every_mdl_in_a_shell_example_is_a_command_line_mdl_accepts(block: str) -> None:
    """Each `mdl …` of a shell example parses: options before the command are mdl's own, then as
    in a crontab.
    """
    root = typer.main.get_command(app)
    takes_value = {name: not option.is_flag for option in root.params for name in option.opts}
    for line in block.splitlines():
        for args in mdl_invocations(line):
            while args and args[0].startswith("-"):
                word = args.pop(0).split("=")[0]
                assert word in takes_value, f"mdl has no option {word}: {line!r}"
                if takes_value[word] and "=" not in word:
                    args.pop(0)
            if args:
                assert args[0] in COMMANDS, line
                with build_command(args[0]).make_context(args[0], args[1:]) as ctx:
                    assert ctx.params is not None


LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def anchors(text: str) -> set[str]:
    """The anchors GitHub makes of a page's headings: lower case, punctuation dropped, spaces as
    hyphens.
    """
    text = re.sub(r"^```.*?^```", "", text, flags=re.MULTILINE | re.DOTALL)
    headings = re.findall(r"^#+ (.*)$", text, re.MULTILINE)
    return {
        re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-") for heading in headings
    }


def links(text: str) -> list[str]:
    return LINK.findall(re.sub(r"^ *```.*?^ *```", "", text, flags=re.MULTILINE | re.DOTALL))


def test_every_link_between_the_docs_leads_somewhere() -> None:
    """A link from README.md or docs/*.md to a page of the repo names a file there, and its
    #anchor a heading.
    """
    checked = 0
    for page, text in PAGES.items():
        for target in links(text):
            if re.match(r"^[a-z]+:", target):
                continue
            path, _, anchor = target.partition("#")
            linked = (page.parent / path).resolve() if path else page
            assert linked.is_file() and ROOT in linked.parents, (
                f"{page.name}: no such file {target!r}"
            )
            if anchor:
                assert linked.suffix == ".md", f"{page.name}: {target!r}"
                assert anchor in anchors(linked.read_text(encoding="utf-8")), (
                    f"{page.name}: no heading {target!r}"
                )
            checked += 1
    assert checked >= 50


def test_the_link_checks_refuse_what_leads_nowhere() -> None:
    assert anchors("# The `mdl` cache (`--layout hf-cache`)\n## `mdl pull`\n") == {
        "the-mdl-cache---layout-hf-cache",
        "mdl-pull",
    }
    assert links("[a](docs/x.md#y) `[b](c)`\n```sh\n[d](e)\n```\n") == ["docs/x.md#y", "c"]
    with pytest.raises(AssertionError, match="mdl has no option"):
        test_every_mdl_in_a_shell_example_is_a_command_line_mdl_accepts("mdl --nosuch list\n")
    with pytest.raises(Exception, match="No such option: --al"):
        test_every_mdl_in_a_shell_example_is_a_command_line_mdl_accepts(
            "DIR=$(mdl pull --al)  # a comment\n"
        )
