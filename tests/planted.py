"""What the planted-entry tests share: a snapshot of the tree outside `<dest>`, entries planted
where files go (a FIFO, a socket, a device, a folder), a way to unblock FIFOs and a watchdog for
commands that might hang."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import stat
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

Entry = tuple[str, int, int, bytes | str | None]  # kind, size, mtime, content (a link's target)


def snapshot(root: Path) -> dict[str, Entry]:
    """Every entry below `root`, links not followed: kind, size, mtime and content (a link's
    target).
    """
    found: dict[str, Entry] = {"": ("dir", 0, root.lstat().st_mtime_ns, None)}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(folder) / name
            info = path.lstat()
            rel = str(path.relative_to(root))
            if stat.S_ISLNK(info.st_mode):
                found[rel] = ("link", 0, 0, os.readlink(path))
            elif stat.S_ISDIR(info.st_mode):
                found[rel] = ("dir", 0, info.st_mtime_ns, None)
            elif stat.S_ISREG(info.st_mode):
                found[rel] = ("file", info.st_size, info.st_mtime_ns, path.read_bytes())
            else:
                found[rel] = ("other", info.st_size, info.st_mtime_ns, None)
    return found


def release_fifos(root: Path) -> None:
    """Open the other end of every FIFO below `root` (non-blocking), so a command stuck opening
    one goes on.
    """
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(folder) / name
            if path.is_fifo():
                for flags in (os.O_WRONLY, os.O_RDONLY):
                    try:
                        os.close(os.open(path, flags | os.O_NONBLOCK))
                    except OSError:
                        pass


# as mdl names them
KINDS = {"fifo": "a FIFO", "socket": "a socket", "device": "a device", "folder": "a folder"}


def plant(path: Path, kind: str) -> None:
    """Put a `kind` (a key of KINDS) at `path`; a folder gets a file inside so that it is not
    empty.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "socket":  # bound by its short name: AF_UNIX paths are limited to 107 bytes
        here = Path.cwd()
        os.chdir(path.parent)
        try:
            with socket.socket(socket.AF_UNIX) as sock:
                sock.bind(path.name)
        finally:
            os.chdir(here)
    elif kind == "device":  # a copy of /dev/null: needs CAP_MKNOD
        try:
            os.mknod(path, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
        except PermissionError:
            pytest.skip("making a device node needs root")
    else:
        path.mkdir()
        (path / "keep.txt").write_text("keep")


def kind_at(path: Path) -> str | None:
    """The KINDS key of what is at `path` (lstat), "file", "link", or None when nothing is."""
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        return None
    for kind, test in (("file", stat.S_ISREG), ("link", stat.S_ISLNK), ("folder", stat.S_ISDIR)):
        if test(mode):
            return kind
    return "fifo" if stat.S_ISFIFO(mode) else "socket" if stat.S_ISSOCK(mode) else "device"


@contextlib.contextmanager
def no_hang(root: Path, seconds: float, what: str) -> Iterator[None]:
    """Fail if the block runs longer than `seconds`: then every FIFO below `root` is opened from the
    other end and the main thread interrupted, so a hung command ends (in-process commands only: no
    subprocess needed)."""
    done = threading.Event()
    hung: list[bool] = []
    main = threading.get_ident()

    def watch() -> None:
        if done.wait(seconds):
            return
        hung.append(True)
        for _ in range(50):
            release_fifos(root)
            if done.wait(0.2):
                return
        signal.pthread_kill(main, signal.SIGINT)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        yield
    finally:
        done.set()
        watcher.join()
    assert not hung, f"{what} hung for {seconds}s"
