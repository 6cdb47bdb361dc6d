"""Run the real `mdl` with stderr on a pseudo-terminal (what a person sees) or on a pipe (what
cron sees).
"""

from __future__ import annotations

import os
import pty
import re
import select
import subprocess
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from zygote import forked_mdl

# What starts every line mdl writes on stderr off a terminal (and each plain progress line): when
# (UTC), which run.
STAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ \[(\d+)\](?: |$)", re.MULTILINE)
# A plain progress line's own words (after its stamp): begin, start, resuming, waiting, a progress
# line, done.
PLAIN = re.compile(r"^(begin \d+ files?\b|start |resuming |done |\S+ waiting: |\S+ \d+% )")


def unstamped(text: str) -> list[str]:
    """stderr written off a terminal, a line each, without the stamps every line must start with."""
    lines = text.splitlines()
    bare = [line for line in lines if not STAMP.match(line)]
    assert not bare, f"lines without a stamp: {bare}\n{text}"
    return [STAMP.sub("", line, count=1) for line in lines]


TOTAL = re.compile(r"\btotal \d+/\d+ files?\b")  # the rich display's total bar
_ESCAPES = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07|\r")


@dataclass(frozen=True)
class Ran:
    """What one run left: its exit code, stdout bytes and stderr text."""

    code: int
    stdout: bytes
    stderr: str

    @property
    def screen(self) -> str:
        """stderr without terminal control sequences."""
        return _ESCAPES.sub("", self.stderr)


def run_mdl(
    args: Sequence[str],
    *,
    env: Mapping[str, str],
    tty: bool,
    cwd: Path | None = None,
    timeout: float = 120,
    columns: int = 120,
    ctrl_c_when: Callable[[str], bool] | None = None,
) -> Ran:
    """``mdl ARGS`` as a process forked from the worker's zygote (tests/zygote.py); with ``tty``
    its stderr is a pty of ``columns`` columns (TERM=xterm). With ``ctrl_c_when``, ``python -m
    mdl ARGS`` whose controlling terminal the pty is too, and Ctrl-C is typed on it once what mdl
    wrote so far satisfies it (without control sequences): the terminal sends SIGINT and echoes
    ``^C``, as a person's does."""
    environ = dict(env)
    command = [str(forked_mdl()), *args]
    if not tty:
        done = subprocess.run(
            command, env=environ, cwd=cwd, capture_output=True, timeout=timeout, check=False
        )
        return Ran(done.returncode, done.stdout, done.stderr.decode(errors="replace"))
    environ.update(TERM="xterm", COLUMNS=str(columns), LINES="40")
    master, slave = pty.openpty()
    stdin: int | None = None
    # a new session whose controlling terminal is the pty (on stdin), then mdl itself
    if ctrl_c_when is not None:
        take_the_terminal = (
            "import fcntl, os, sys, termios; fcntl.ioctl(0, termios.TIOCSCTTY, 0);"
            " os.execv(sys.argv[1], sys.argv[1:])"
        )
        mdl = [sys.executable, "-m", "mdl", *args]
        command, stdin = [sys.executable, "-c", take_the_terminal, *mdl], slave
    try:
        proc = subprocess.Popen(
            command,
            env=environ,
            cwd=cwd,
            stdin=stdin,
            stdout=subprocess.PIPE,
            stderr=slave,
            start_new_session=ctrl_c_when is not None,
        )
    finally:
        os.close(slave)
    chunks: list[bytes] = []
    out_chunks: list[bytes] = []
    # stdout is drained alongside: a child writing a big archive to it must never block on a full
    # pipe.
    drain = threading.Thread(
        target=lambda: out_chunks.append(proc.stdout.read() if proc.stdout else b"")
    )
    drain.start()
    try:
        while True:
            ready, _, _ = select.select([master], [], [], timeout)
            if not ready:
                proc.kill()
                raise AssertionError("mdl wrote nothing on its terminal for too long")
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the child closed its end
                break
            if not data:
                break
            chunks.append(data)
            if ctrl_c_when is not None and ctrl_c_when(
                _ESCAPES.sub("", b"".join(chunks).decode(errors="replace"))
            ):
                os.write(master, b"\x03")
                ctrl_c_when = None
        code = proc.wait(timeout=timeout)
        drain.join(timeout=timeout)
        out = b"".join(out_chunks)
    finally:
        os.close(master)
        if proc.stdout is not None:
            proc.stdout.close()
    return Ran(code, out, b"".join(chunks).decode(errors="replace"))


_TOKENS = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07|.", re.DOTALL)


def screen_of(output: str, *, columns: int) -> list[str]:
    """The lines a terminal of ``columns`` columns shows after ``output``, as xterm draws them: a
    character after a full line wraps to the next one; CR, LF, cursor up and down, erase in line;
    colours and the rest change nothing."""
    rows: list[list[str]] = [[]]
    row = col = 0
    for token in _TOKENS.findall(output):
        if token.startswith("\x1b["):
            count = int(token[2:-1]) if token[2:-1].isdigit() else None
            if token[-1] == "A":
                row = max(row - (count or 1), 0)
            elif token[-1] == "B":
                row += count or 1
            elif token[-1] == "K":
                del rows[row][0 if count == 2 else col :]
            continue
        if token.startswith("\x1b]"):
            continue
        if token == "\r":
            col = 0
            continue
        if token == "\n":
            row += 1
        else:
            if col >= columns:  # the pending wrap of a full line
                row, col = row + 1, 0
            while len(rows) <= row:
                rows.append([])
            line = rows[row]
            line.extend(" " * (col + 1 - len(line)))
            line[col] = token
            col += 1
        while len(rows) <= row:
            rows.append([])
    return ["".join(line).rstrip() for line in rows]
