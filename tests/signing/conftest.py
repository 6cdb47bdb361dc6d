"""The signed-pull tests' world: the loopback Hub, models under tmp/models, and the catalog's
path.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from s3server import s3, s3_server  # noqa: F401 (the loopback S3 server's fixtures)
from servers import HubServer


@pytest.fixture
def world(hub: HubServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """HF_ENDPOINT at the loopback Hub, MDL_DEST at tmp/models, and MDL_CATALOG at
    tmp/project/catalog.toml (made by the test)."""
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    monkeypatch.setenv("MDL_DEST", str(tmp_path / "models"))
    monkeypatch.setenv("MDL_LOG_FILE", str(tmp_path / "mdl.log"))
    catalog = tmp_path / "project" / "catalog.toml"
    catalog.parent.mkdir()
    monkeypatch.setenv("MDL_CATALOG", str(catalog))
    return catalog
