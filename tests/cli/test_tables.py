"""Tables fit the terminal (issue 25): on a terminal of 60 or 80 columns every table line fits,
headers stay whole, text folds at its spaces and values without spaces (paths, URLs, hashes) are cut
with `…`, never a word broken mid-way; off a terminal (a pipe) every value is whole. End to end
through a real pty (each run a process forked from a zygote), and a Hypothesis property on the
renderer."""

from __future__ import annotations

import fcntl
import io
import os
import pty
import re
import select
import struct
import termios
import time
import unicodedata
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from profiles import examples
from runfixtures import HANG, make_hf_run, mdl, mdl_as_child
from servers import HubServer, make_data
from zygote import Zygote, shared

from mdl.cli.render.console import ELLIPSIS, fit_cell, fit_path, render_table

_ESCAPES = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
LONG = "a/very/long/folder/name/that/keeps/going/model-00001-of-00002.safetensors"
CATALOG = """
[models.tiny]
description = "A tiny random model whose description is much longer than any narrow terminal is wide"
repo = "org/tiny-model-with-a-rather-long-repository-name"

[models.never-pulled-model-with-a-long-name]
description = "Never pulled"
repo = "org/never"
"""


@pytest.fixture(scope="module")
def zygote() -> Zygote:
    """Where the module's terminal runs are forked from: the worker's (tests/zygote.py)."""
    return shared()


def on_terminal(
    args: list[str], *, columns: int, env: dict[str, str], cwd: Path, use_env: bool, zygote: Zygote
) -> str:
    """``mdl ARGS`` as a process of its own (forked from ``zygote``) with stdout on a pty
    ``columns`` wide (told by ``$COLUMNS``, or only by the terminal itself).
    """
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, columns, 0, 0))
    environ = {k: v for k, v in env.items() if k not in ("COLUMNS", "LINES")}
    environ.update(TERM="xterm", NO_COLOR="1", **({"COLUMNS": str(columns)} if use_env else {}))
    chunks = []
    try:
        # the child opens the terminal by its name, as its own stdout; ours stays open until it
        # ended (a read of the terminal fails once no one has it open: not before the child did)
        proc = zygote.spawn(
            args, env=environ, cwd=cwd, stdout=Path(os.ttyname(slave)), stderr=Path(os.devnull)
        )
        ended, deadline = False, time.monotonic() + HANG
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.05)
            if ready:
                chunks.append(os.read(master, 65536))
            elif ended:
                break
            else:
                ended = proc.poll() is not None  # one more look after its end: what it wrote last
        assert proc.wait(timeout=60) == 0
    finally:
        os.close(slave)
        os.close(master)
    return _ESCAPES.sub("", b"".join(chunks).decode()).replace("\r\n", "\n")


def on_pipe(args: list[str], *, env: dict[str, str], cwd: Path) -> str:
    """``mdl ARGS``'s stdout off a terminal (in this process: CliRunner's stdout is no terminal)."""
    done = mdl_as_child(args, env={**env, "COLUMNS": "60"}, cwd=cwd)
    assert done.exit_code == 0, done.stderr
    return done.stdout


def table(text: str, first_header: str) -> list[str]:
    """The lines of the table whose header starts with ``first_header`` (up to a blank line or
    the end).
    """
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(first_header + " "))
    end = next((i for i in range(start, len(lines)) if not lines[i].strip()), len(lines))
    return lines[start:end]


def assert_fits(narrow: list[str], whole: list[str], columns: int) -> None:
    """Every line fits; the headers are the same whole words; every other word is whole or a cut
    start of one.
    """
    assert all(len(line) <= columns for line in narrow), "\n".join(narrow)
    assert narrow[0].split() == whole[0].split()
    words = {word for line in whole[1:] for word in line.split()}
    for token in (token for line in narrow[1:] for token in line.split()):
        if token not in words:
            assert token.endswith(ELLIPSIS) and any(w.startswith(token[:-1]) for w in words), (
                token,
                narrow,
            )


@pytest.fixture
def world(hub: HubServer, tmp_path: Path) -> dict[str, object]:
    hub.add_repo(
        "org/tiny-model-with-a-rather-long-repository-name",
        {"config.json": b'{"hidden_size": 8}', LONG: make_data(300_000, seed=4)},
    )
    (tmp_path / "catalog.toml").write_text(CATALOG)
    env = {
        **os.environ,
        "HF_ENDPOINT": hub.url,
        "MDL_CATALOG": str(tmp_path / "catalog.toml"),
        "MDL_DEST": str(tmp_path / "models"),
        "MDL_LOG_FILE": str(tmp_path / "mdl.log"),
    }
    return {"env": env, "cwd": tmp_path}


@pytest.mark.slow
@pytest.mark.parametrize("columns", [60, 80])
def test_every_table_fits_the_terminal(
    world: dict[str, object], columns: int, tmp_path: Path, zygote: Zygote
) -> None:
    env, cwd = world["env"], world["cwd"]
    assert isinstance(env, dict) and isinstance(cwd, Path)
    run = make_hf_run(tmp_path / "a-training-run-with-a-long-name", steps=(100,))
    cases = [
        (["pull", "tiny", "--dry-run"], "ACTION"),
        (["resolve", "tiny"], "PATH"),
        (["pull", "tiny", "-q"], None),  # the files the next tables show
        (["list"], "NAME"),
        (["show", "tiny"], "PATH"),
        (["verify", "tiny"], "RESULT"),
        (["pack", str(run.root), "--checkpoint", "latest", "--dry-run"], "PATH"),
    ]
    for number, (args, header) in enumerate(cases):
        if header is None:
            on_pipe(args, env=env, cwd=cwd)
            continue
        # (verify streams
        whole = table(
            on_terminal(args, columns=500, env=env, cwd=cwd, use_env=True, zygote=zygote), header
        )
        # rows without a table into a pipe: a terminal wide enough for every value is the reference)
        # every other case tells the width by $COLUMNS; the rest only by the terminal's own size
        narrow = table(
            on_terminal(
                args, columns=columns, env=env, cwd=cwd, use_env=number % 2 == 0, zygote=zygote
            ),
            header,
        )
        assert_fits(narrow, whole, columns)
        # it had to give way: something was cut or folded
        if max(len(line) for line in whole) > columns:
            assert narrow != whole


@pytest.mark.slow
def test_show_at_60_columns_keeps_source_whole_and_cuts_values(
    world: dict[str, object], zygote: Zygote
) -> None:
    """The issue's report: at 60 columns `mdl show` split the SOURCE header into `S` / `OURCE`."""
    env, cwd = world["env"], world["cwd"]
    assert isinstance(env, dict) and isinstance(cwd, Path)
    on_pipe(["pull", "tiny", "-q"], env=env, cwd=cwd)
    shown = table(
        on_terminal(["show", "tiny"], columns=60, env=env, cwd=cwd, use_env=False, zygote=zygote),
        "PATH",
    )
    assert shown[0].split() == ["PATH", "STATE", "SIZE", "SHA256", "SOURCE"]
    assert any(ELLIPSIS in line for line in shown[1:])  # the long path and the URLs are cut…
    whole = on_pipe(["show", "tiny"], env=env, cwd=cwd)
    # …on the terminal only: a pipe gets every value whole
    assert LONG in whole and ELLIPSIS not in whole


@pytest.mark.slow
def test_list_folds_the_description_at_its_spaces(world: dict[str, object], zygote: Zygote) -> None:
    env, cwd = world["env"], world["cwd"]
    assert isinstance(env, dict) and isinstance(cwd, Path)
    listed = table(
        on_terminal(["list"], columns=60, env=env, cwd=cwd, use_env=True, zygote=zygote), "NAME"
    )
    start = listed[0].index("DESCRIPTION")
    folded = " ".join(line[start:].strip() for line in listed[1:] if line[start:].strip())
    assert (
        "A tiny random model whose description is much longer than any narrow terminal is wide"
        in folded
    )


def test_off_a_terminal_a_table_is_whole_whatever_columns_says(world: dict[str, object]) -> None:
    result = mdl("list", env={**world["env"], "COLUMNS": "40"})  # type: ignore[dict-item]
    assert result.exit_code == 0, result.stderr
    assert "never-pulled-model-with-a-long-name" in result.stdout
    assert ELLIPSIS not in result.stdout


# -- the renderer
# ----------------------------------------------------------------------------------------------

WORD = st.text(alphabet="abcdefghij0123456789/.-é", min_size=1, max_size=40)
CELL = st.lists(WORD, min_size=1, max_size=6).map(" ".join)
HEADER = st.text(alphabet="ABCDEFGHIJ", min_size=1, max_size=6)


def _columns_of(header_line: str) -> list[int]:
    return [m.start() for m in re.finditer(r"\S+", header_line)]


@settings(max_examples=examples(300), deadline=None)
@given(
    headers=st.lists(HEADER, min_size=1, max_size=5, unique=True),
    data=st.data(),
    width=st.integers(min_value=40, max_value=160),
)
def test_a_table_fits_any_width_and_breaks_no_word(
    headers: list[str], data: st.DataObject, width: int
) -> None:
    rows = data.draw(
        st.lists(st.fixed_dictionaries(dict.fromkeys(headers, CELL)), min_size=1, max_size=5)
    )
    out = io.StringIO()
    render_table(rows, [(h, h) for h in headers], stream=out, color=False, width=width)
    lines = out.getvalue().splitlines()
    assert all(len(line) <= width for line in lines)
    assert lines[0].split() == headers  # every header whole, on the one header line
    starts = [*_columns_of(lines[0]), None]
    for i, header in enumerate(headers):
        shown = [token for line in lines[1:] for token in line[starts[i] : starts[i + 1]].split()]
        meant = [word for row in rows for word in row[header].split()]
        assert len(shown) == len(meant), (header, shown, meant)
        for token, word in zip(shown, meant, strict=True):
            assert token == word or (token.endswith(ELLIPSIS) and word.startswith(token[:-1])), (
                token,
                word,
            )


@given(text=CELL, width=st.integers(min_value=1, max_value=60))
def test_a_cell_folds_at_spaces_and_cuts_only_what_cannot_fit(text: str, width: int) -> None:
    lines = fit_cell(text, width)
    assert all(len(line) <= width for line in lines)
    tokens = [token for line in lines for token in line.split()]
    for token, word in zip(tokens, text.split(), strict=True):
        assert token == word or (len(word) > width and token == word[: width - 1] + ELLIPSIS)


def test_wide_characters_are_cut_by_the_columns_they_take() -> None:
    out = io.StringIO()
    rows = [{"path": "模型/权重文件-00001-of-00002.safetensors", "size": "1 MiB"}]
    render_table(rows, [("path", "PATH"), ("size", "SIZE")], stream=out, color=False, width=20)
    columns = [
        sum(2 if unicodedata.east_asian_width(c) == "W" else 1 for c in line)
        for line in out.getvalue().splitlines()
    ]
    assert max(columns) <= 20
    assert out.getvalue().splitlines()[1].split()[0].endswith(ELLIPSIS)


def test_headers_that_only_just_fit_leave_the_first_column_no_extra_room() -> None:
    headers = ["AAAAAA", "BBBBBB", "CCCCCC", "DDDDDD", "EEEEEE"]  # 30 columns and 4 gaps of 2 in 40
    out = io.StringIO()
    render_table(
        [dict.fromkeys(headers, "x" * 30)],
        [(h, h) for h in headers],
        stream=out,
        color=False,
        width=40,
    )
    assert [len(line) for line in out.getvalue().splitlines()] == [40, 40]


@pytest.mark.slow
def test_show_cuts_a_long_dest_with_an_ellipsis_never_mid_name(
    world: dict[str, object], tmp_path: Path, zygote: Zygote
) -> None:
    """Issue 88: at 60 columns `mdl show` let the terminal wrap its `dest:` path mid-name."""
    env, cwd = world["env"], world["cwd"]
    assert isinstance(env, dict) and isinstance(cwd, Path)
    on_pipe(["pull", "tiny", "-q"], env=env, cwd=cwd)
    shown = on_terminal(
        ["show", "tiny"], columns=60, env=env, cwd=cwd, use_env=False, zygote=zygote
    )
    (dest,) = [line for line in shown.splitlines() if line.startswith("dest:")]
    folder = str(tmp_path / "models" / "tiny")
    assert len(folder) > 60 - 13
    assert len(dest) <= 60 and ELLIPSIS in dest and dest.endswith("/models/tiny"), dest
    # a pipe gets it whole
    assert f"dest:        {folder}" in on_pipe(["show", "tiny"], env=env, cwd=cwd)


@pytest.mark.parametrize(
    ("path", "width", "shown"),
    [
        ("/srv/models/tiny", 40, "/srv/models/tiny"),
        ("/home/user/some/deep/folder/models/tiny-bert", 31, "/home/…/folder/models/tiny-bert"),
        ("/home/user/some/deep/folder/models/tiny-bert", 20, "/home/…/tiny-bert"),
        ("/home/user/models/a-model-with-a-very-long-name", 20, "…th-a-very-long-name"),
        ("relative/folder/models/tiny", 20, "relative/…/tiny"),
    ],
)
def test_fit_path_keeps_whole_names_from_the_end(path: str, width: int, shown: str) -> None:
    fitted = fit_path(path, width)
    assert fitted == shown and len(fitted) <= width
