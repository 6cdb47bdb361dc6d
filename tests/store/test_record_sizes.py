"""``list`` and ``show`` take an installed file's size and sha256 from its record when the catalog
or listing gave none: a URL added with ``--sha256`` alone, a small Hub file (the Hub lists its git
blob id, mdl hashed it)."""

from __future__ import annotations

import hashlib
import json
import os
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


def test_a_small_hub_file_shows_the_sha256_mdl_computed(
    hub: HubServer, catalog: Path, tmp_path: Path
) -> None:
    hub.add_repo("org/tiny", {"config.json": CONFIG})
    catalog.write_text('[models.tiny]\nrepo = "org/tiny"\n')
    assert mdl("pull", "tiny", "--no-progress", "--dest", str(tmp_path / "m")).exit_code == 0
    shown = json.loads(mdl("show", "tiny", "--json", "--dest", str(tmp_path / "m")).stdout)[
        "models"
    ][0]["files"][0]
    assert shown["sha256"] == hashlib.sha256(CONFIG).hexdigest()
    verified = json.loads(mdl("verify", "tiny", "--json", "--dest", str(tmp_path / "m")).stdout)[
        "files"
    ][0]
    assert verified["sha256"] == shown["sha256"]
    assert verified["verified"] is True


def test_a_hash_mismatch_says_how_to_repair_it_and_pull_repairs_it(
    hub: HubServer, catalog: Path, tmp_path: Path
) -> None:
    """Bytes changed in place (same size, mtime put back): verify says so with a hint, and the pull
    it names re-checks the file instead of trusting its record, and repairs it."""
    hub.add_repo("org/tiny", {"config.json": CONFIG})
    catalog.write_text('[models.tiny]\nrepo = "org/tiny"\n')
    dest = ["--dest", str(tmp_path / "m")]
    assert mdl("pull", "tiny", "--no-progress", *dest).exit_code == 0
    target = tmp_path / "m" / "tiny" / "config.json"
    before = target.stat()
    target.write_bytes(CONFIG.replace(b"8", b"9"))
    os.utime(target, ns=(before.st_atime_ns, before.st_mtime_ns))

    result = mdl("verify", "tiny", *dest)
    assert result.exit_code == 6
    assert "sha256 mismatch" in result.stderr
    assert (
        "`mdl pull tiny` repairs it; `mdl pull tiny --force` fetches it again" in result.stderr
    ), result.stderr
    doc = json.loads(mdl("verify", "tiny", "--json", *dest).stdout)
    assert (
        doc["files"][0]["hint"]
        == "`mdl pull tiny` repairs it; `mdl pull tiny --force` fetches it again"
    )

    repaired = json.loads(mdl("pull", "tiny", "--json", *dest).stdout)
    assert repaired["files"][0]["action"] == "repaired"
    assert target.read_bytes() == CONFIG
    assert mdl("verify", "tiny", *dest).exit_code == 0
