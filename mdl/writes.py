"""A buffer written to a file descriptor whole: a short write (a disk filling up) is continued, so
the next call raises what stopped it (exit 7, "no space left"), never a chunk claimed with its tail
unwritten and the whole file's hash left to find it. Every buffer mdl writes to a file by
descriptor goes through here (``tests/test_writes.py`` finds any other)."""

import errno
import os


def write_at(fd: int, data: bytes | memoryview, offset: int) -> int:
    """Write all of ``data`` at ``offset`` (``pwrite``): its length."""
    view, done = memoryview(data), 0
    while done < len(view):
        written = os.pwrite(fd, view[done:], offset + done)
        if written == 0:
            raise OSError(errno.EIO, f"wrote nothing at byte {offset + done}")
        done += written
    return done


def write_all(fd: int, data: bytes | memoryview) -> int:
    """Write all of ``data`` at the descriptor's position (``write``): its length."""
    view, done = memoryview(data), 0
    while done < len(view):
        written = os.write(fd, view[done:])
        if written == 0:
            raise OSError(errno.EIO, f"wrote nothing after byte {done}")
        done += written
    return done
