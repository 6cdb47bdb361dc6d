"""Fixtures shared by the transfer tests."""

from __future__ import annotations

from collections.abc import Iterator

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
