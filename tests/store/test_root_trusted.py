"""Whose files mdl trusts as its own state (``confined.not_own``): the running user's, and root's to
read (as ssh's ``StrictModes``: only root makes a file root owns, so a pull as root in an init
container serves a probe as ``nobody``), never root's to write through, never another user's."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from mdl.store.confined import ForeignEntryError, folder, open_entry, read_bytes

NOBODY = 65534


@pytest.fixture
def shared() -> Iterator[Path]:
    """A folder every user may enter (pytest's own are root's alone)."""
    if os.geteuid() != 0:
        pytest.skip("acting as another user needs root")
    path = Path(tempfile.mkdtemp(prefix="mdl-owner-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path)


def test_roots_file_is_read_by_another_user_never_written_through(shared: Path) -> None:
    state = shared / "state.json"
    state.write_bytes(b"{}")
    state.chmod(0o666)  # the kernel would let nobody write it: mdl still does not
    os.seteuid(NOBODY)
    try:
        assert read_bytes(shared, state, limit=16) == b"{}"
        with folder(shared, shared, create=False) as dir_fd, pytest.raises(ForeignEntryError) as e:
            open_entry(dir_fd, state, os.O_RDWR)
    finally:
        os.seteuid(0)
    assert e.value.why == "another user's file (uid 0)"
    assert state.read_bytes() == b"{}"


def test_another_users_file_is_never_read_even_by_root(shared: Path) -> None:
    state = shared / "state.json"
    state.write_bytes(b"{}")
    os.chown(state, NOBODY, NOBODY)
    with pytest.raises(ForeignEntryError) as refused:
        read_bytes(shared, state, limit=16)
    assert refused.value.why == f"another user's file (uid {NOBODY})"
