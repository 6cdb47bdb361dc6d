"""``verify --json`` and ``pull --json`` say each signed model's signature as ``list --json`` does:
``"signatures": {NAME: {"verified", "by", "file"}}``; a document without a signed model has no such
field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from runfixtures import mdl
from servers import HubServer, make_data
from signing.test_signed_pull import signed_repo, write_catalog
from signkeys import key_pair


@pytest.mark.slow
def test_verify_and_pull_json_say_the_signature_as_list_does(
    world: Path, hub: HubServer, tmp_path: Path
) -> None:
    _, public, _ = signed_repo(hub, tmp_path)
    write_catalog(world, public)
    pulled = mdl("pull", "tiny", "--json")
    assert pulled.exit_code == 0, pulled.stderr
    listed = json.loads(mdl("list", "--json").stdout)["models"][0]["signature"]
    assert listed["verified"] is True
    assert json.loads(pulled.stdout)["signatures"] == {"tiny": listed}
    verified = mdl("verify", "tiny", "--json")
    assert verified.exit_code == 0, verified.stderr
    assert json.loads(verified.stdout)["signatures"] == {"tiny": listed}


@pytest.mark.slow
def test_verify_json_says_not_verified_when_a_file_or_the_signer_is_not_as_signed(
    world: Path, hub: HubServer, tmp_path: Path
) -> None:
    _, public, _ = signed_repo(hub, tmp_path)
    write_catalog(world, public)
    assert mdl("pull", "tiny").exit_code == 0
    (tmp_path / "models" / "tiny" / "model.safetensors").write_bytes(make_data(300_003, seed=5))
    changed = mdl("verify", "tiny", "--json")
    assert changed.exit_code == 6
    doc = json.loads(changed.stdout)["signatures"]["tiny"]
    assert (
        doc["verified"] is False and doc["by"].startswith("key ") and doc["file"] == "model.sig"
    ), doc
    _, other = key_pair(tmp_path / "other")
    write_catalog(world, other)
    wrong = mdl("verify", "tiny", "--json")
    assert wrong.exit_code == 6
    assert json.loads(wrong.stdout)["signatures"] == {
        "tiny": {"verified": False, "by": None, "file": "model.sig"}
    }


def test_a_document_without_a_signed_model_has_no_signatures(
    world: Path, hub: HubServer, tmp_path: Path
) -> None:
    hub.add_repo("org/plain", {"config.json": b"{}"})
    world.write_text('[models.plain]\nrepo = "org/plain"\n')
    assert "signatures" not in json.loads(mdl("pull", "plain", "--json").stdout)
    assert "signatures" not in json.loads(mdl("verify", "plain", "--json").stdout)
