"""Fixtures for Xet tests: a Hub stand-in with Xet-backed LFS files and its CAS
(tests/xetserver.py).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from xetserver import CasServer, XetHubServer


@pytest.fixture
def xet_hub() -> Iterator[XetHubServer]:
    """A started Hub stand-in whose LFS files are Xet-backed, with its CDN (`.cdn`) and CAS
    (`.cas`); stopped after the test, which must not have made any of them crash."""
    server = XetHubServer().start()
    try:
        yield server
    finally:
        server.stop()
    for part in (server, server.cdn, server.cas):
        assert not part.errors, part.errors


@pytest.fixture
def cas(xet_hub: XetHubServer) -> CasServer:
    """The CAS origin of `xet_hub` (reconstructions, presigned xorb URLs, its own request log and
    knobs).
    """
    return xet_hub.cas
