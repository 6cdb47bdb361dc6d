"""``list`` and ``show`` take an installed file's size and sha256 from its record when the catalog or listing gave
none: a URL added with ``--sha256`` alone, a small Hub file (the Hub lists its git blob id, mdl hashed it)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from runfixtures import mdl
from servers import CdnServer, HubServer, make_data

LORA = make_data(70_000, seed=7)
CONFIG = b'{"hidden_size": 8}'


def test_a_url_added_with_sha256_alone_shows_its_recorded_size(
    cdn: CdnServer, catalog: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MDL_DEST", str(tmp_path / "models"))
    catalog.write_text("")
    url = cdn.add_file("/loras/style.safetensors", LORA)
    sha = hashlib.sha256(LORA).hexdigest()
    assert mdl("add", "lora", url, "--sha256", sha).exit_code == 0
    assert "size" not in catalog.read_text()
    pulled = mdl("pull", "lora", "--no-progress")
    assert pulled.exit_code == 0, pulled.stderr

    listed = json.loads(mdl("list", "--json").stdout)["models"][0]
    assert listed["size"] == len(LORA)
    shown = json.loads(mdl("show", "lora", "--json").stdout)["models"][0]["files"][0]
    assert (shown["size"], shown["sha256"]) == (len(LORA), sha)
    table = mdl("list").stdout
    assert "68.4 KiB" in table, table
    text = mdl("show", "lora").stdout
    assert "68.4 KiB" in text and "?" not in text.split("SOURCE", 1)[1], text


def test_a_small_hub_file_shows_the_sha256_mdl_computed(hub: HubServer, catalog: Path, tmp_path: Path) -> None:
    hub.add_repo("org/tiny", {"config.json": CONFIG})
    catalog.write_text('[models.tiny]\nrepo = "org/tiny"\n')
    assert mdl("pull", "tiny", "--no-progress", "--dest", str(tmp_path / "m")).exit_code == 0
    shown = json.loads(mdl("show", "tiny", "--json", "--dest", str(tmp_path / "m")).stdout)["models"][0]["files"][0]
    assert shown["sha256"] == hashlib.sha256(CONFIG).hexdigest()
    verified = json.loads(mdl("verify", "tiny", "--json", "--dest", str(tmp_path / "m")).stdout)["files"][0]
    assert verified["sha256"] == shown["sha256"]
    assert verified["verified"] is True
