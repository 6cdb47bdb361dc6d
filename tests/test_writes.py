"""Every buffer mdl writes to a file by descriptor: whole (a short write continued: ``mdl.writes``),
and written nowhere else."""

from __future__ import annotations

import ast
import os
from pathlib import Path

import pytest

from mdl.writes import write_all, write_at

PACKAGE = Path(__file__).resolve().parent.parent / "mdl"
# the os calls that write a caller's buffer to a descriptor, and the modules allowed them, and why
WRITERS = {"write", "pwrite", "writev", "pwritev"}
ALLOWED = {
    "writes.py": "the one place",
    "__main__.py": "out of memory: one line to stderr, with no room to import anything",
    "_start.py": "a Ctrl-C while mdl loads: one line to stderr, from a handler, importing nothing",
    "cli/stdout.py": "one byte to a pipe, to wake its watcher",
    "xet/_partial.py": "a term's chunks in one pwritev; a short one is said as a full disk",
}


def test_a_short_write_is_continued_never_dropped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """pwrite may write less than asked (a disk filling up, a signal): the rest goes on at the right
    offset, and what stopped it is raised by the next call, never a chunk left half-written with the
    next one shifted into its place."""
    calls: list[int] = []
    real = os.pwrite

    def short(fd: int, data: bytes | memoryview, offset: int) -> int:
        calls.append(offset)
        return real(fd, bytes(data)[: max(1, len(data) // 3)], offset)  # a third at a time

    path = tmp_path / "f"
    fd = os.open(path, os.O_RDWR | os.O_CREAT)
    try:
        monkeypatch.setattr(os, "pwrite", short)
        assert write_at(fd, b"abcdefghij" * 100, 5) == 1000
        monkeypatch.setattr(os, "pwrite", lambda *_: 0)
        with pytest.raises(OSError, match="wrote nothing at byte 7"):
            write_at(fd, b"xyz", 7)
    finally:
        os.close(fd)
    assert path.read_bytes() == b"\0" * 5 + b"abcdefghij" * 100
    assert len(calls) > 3 and calls[0] == 5


def test_write_all_continues_a_short_write(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A write at the descriptor's position that stops short goes on from where it stopped."""
    data = bytes(i % 251 for i in range(100_000))
    asked: list[int] = []
    real = os.write

    def short(fd: int, view: memoryview) -> int:
        asked.append(len(view))
        return real(fd, view[: max(1, len(view) // 3)])

    path = tmp_path / "f"
    fd = os.open(path, os.O_RDWR | os.O_CREAT)
    try:
        os.write(fd, b"abc")
        monkeypatch.setattr(os, "write", short)
        assert write_all(fd, data) == len(data)
    finally:
        os.close(fd)
    assert path.read_bytes() == b"abc" + data
    assert len(asked) > 3 and asked[0] == len(data)


def test_write_all_says_where_nothing_was_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fd = os.open(tmp_path / "f", os.O_RDWR | os.O_CREAT)
    try:
        monkeypatch.setattr(os, "write", lambda *_: 0)
        with pytest.raises(OSError, match="wrote nothing after byte 0"):
            write_all(fd, b"xyz")
    finally:
        os.close(fd)


def test_no_module_writes_a_buffer_but_through_writes() -> None:
    """``os.write``/``pwrite``/``writev``/``pwritev`` appear only where ``ALLOWED`` says."""
    found = sorted(
        f"{path.relative_to(PACKAGE)}:{node.lineno} os.{node.func.attr}"
        for path in PACKAGE.rglob("*.py")
        if str(path.relative_to(PACKAGE)) not in ALLOWED
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and isinstance(node.func.value, ast.Name)
        and node.func.value.id == "os"
        and node.func.attr in WRITERS
    )
    assert found == []
