"""What the planted-link tests share: a snapshot of the tree outside `<dest>`, and a way to unblock FIFOs."""

from __future__ import annotations

import os
import stat
from pathlib import Path

Entry = tuple[str, int, int, bytes | str | None]  # kind, size, mtime, content (a link's target)


def snapshot(root: Path) -> dict[str, Entry]:
    """Every entry below `root`, links not followed: kind, size, mtime and content (a link's target)."""
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
    """Open the other end of every FIFO below `root` (non-blocking), so a command stuck opening one goes on."""
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(folder) / name
            if path.is_fifo():
                for flags in (os.O_WRONLY, os.O_RDONLY):
                    try:
                        os.close(os.open(path, flags | os.O_NONBLOCK))
                    except OSError:
                        pass
