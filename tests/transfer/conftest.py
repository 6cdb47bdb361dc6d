"""Fixtures shared by the transfer tests."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from hostile import ScriptedServer


@pytest.fixture
def started() -> Iterator[list[ScriptedServer]]:
    """The scripted servers a test starts (it appends them): stopped afterwards, and none may
    have failed.
    """
    servers: list[ScriptedServer] = []
    yield servers
    for server in servers:
        server.stop()
    for server in servers:
        assert not server.errors, server.errors


@pytest.fixture
def fd(tmp_path: Path) -> Iterator[int]:
    """A ``.part``'s descriptor (the test writes its bytes)."""
    opened = os.open(tmp_path / "file.part", os.O_RDWR | os.O_CREAT)
    yield opened
    os.close(opened)
