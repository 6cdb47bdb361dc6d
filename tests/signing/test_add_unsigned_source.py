"""mdl add --signed-by of a source that has no model.sig: the entry is written (a publisher may sign
later, a mirror may hold the signature: mdl publish --sign) and a warning on stderr (and ``warning``
in --json) says the pull will fail until it is signed. A signed source gets no warning; --no-check
asks nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from runfixtures import mdl
from servers import HubServer
from signing.test_signed_pull import FILES, signed_repo
from signkeys import key_pair


@pytest.fixture
def catalog(hub: HubServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    monkeypatch.setenv("MDL_DEST", str(tmp_path / "models"))
    monkeypatch.setenv("MDL_LOG_FILE", str(tmp_path / "mdl.log"))
    path = tmp_path / "project" / "catalog.toml"
    path.parent.mkdir()
    monkeypatch.setenv("MDL_CATALOG", str(path))
    return path


def test_a_new_entry_from_an_unsigned_repo_is_added_with_a_warning(
    catalog: Path, hub: HubServer, tmp_path: Path
) -> None:
    hub.add_repo("org/plain", dict(FILES))
    _, public = key_pair(tmp_path / "keys")
    result = mdl("add", "plain", "hf://org/plain", "--signed-by", str(public))
    assert result.exit_code == 0, result.stderr
    assert "org/plain has no model.sig" in result.stderr and "mdl pull plain" in result.stderr, (
        result.stderr
    )
    assert "signature = { key = " in catalog.read_text()
    pulled = mdl("pull", "plain")  # what the warning said
    assert pulled.exit_code == 6 and "none was found" in pulled.stderr, pulled.stderr


def test_the_warning_is_in_json_and_for_an_entry_given_a_signer_later(
    catalog: Path, hub: HubServer, tmp_path: Path
) -> None:
    hub.add_repo("org/plain", dict(FILES))
    _, public = key_pair(tmp_path / "keys")
    assert mdl("add", "plain", "hf://org/plain").exit_code == 0
    result = mdl("add", "plain", "--signed-by", str(public), "--json")
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["action"] == "updated" and "org/plain has no model.sig" in doc["warning"], doc


@pytest.mark.slow
def test_a_signed_repo_gets_no_warning_and_no_check_asks_nothing(
    catalog: Path, hub: HubServer, tmp_path: Path
) -> None:
    _, public, _ = signed_repo(hub, tmp_path)
    result = mdl("add", "tiny", "hf://org/tiny", "--signed-by", str(public), "--json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["warning"] is None and "model.sig" not in result.stderr, (
        result.stderr
    )
    hub.add_repo("org/plain", dict(FILES))
    hub.log.clear()
    quiet = mdl("add", "plain", "hf://org/plain", "--signed-by", str(public), "--no-check")
    assert quiet.exit_code == 0 and "model.sig" not in quiet.stderr, quiet.stderr
    assert not hub.log.records()
