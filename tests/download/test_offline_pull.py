"""``mdl pull`` with HF_HUB_OFFLINE: answered from the model's record, only for the revision it
holds, and a no-op writes nothing (an init container pulls as root, the app runs as another
user)."""

from __future__ import annotations

from pathlib import Path

import pytest
from runfixtures import mdl, use_catalog
from servers import HubServer


@pytest.fixture
def env(hub: HubServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> HubServer:
    hub.add_repo("org/tiny", {"config.json": b'{"main": true}', "vocab.txt": b"a\n"})
    hub.create_branch("org/tiny", "dev")
    hub.commit("org/tiny", {"config.json": b'{"dev": true}'}, branch="dev")
    hub.create_tag("org/tiny", "v1.0", "dev")
    hub.commit("org/tiny", {"config.json": b'{"dev": 2}'}, branch="dev")
    use_catalog(tmp_path, monkeypatch, None, endpoint=hub.url)
    return hub


def test_offline_a_revision_changed_in_the_catalog_is_not_the_one_on_disk(
    env: HubServer, tmp_path: Path
) -> None:
    catalog = tmp_path / "catalog.toml"
    catalog.write_text('[models.q]\nrepo = "org/tiny"\nrevision = "dev"\n')
    assert mdl("pull", "q").exit_code == 0
    catalog.write_text('[models.q]\nrepo = "org/tiny"\nrevision = "v1.0"\n')
    offline = {"HF_HUB_OFFLINE": "1"}
    pulled = mdl("pull", "q", env=offline)
    assert pulled.exit_code == 5 and "revision v1.0" in pulled.stderr, pulled.stderr
    verified = mdl("verify", "q", env=offline)
    assert verified.exit_code == 4 and "revision v1.0" in verified.stderr, verified.stderr
    listed = mdl("list", "--status", "installed")
    assert listed.exit_code == 0 and "q " not in listed.stdout, listed.stdout
    assert (tmp_path / "models" / "q" / "config.json").read_bytes() == b'{"dev": 2}'


def test_offline_a_no_op_pull_writes_no_record(env: HubServer, tmp_path: Path) -> None:
    (tmp_path / "catalog.toml").write_text(
        '[models.cfg]\nfiles = [{ repo = "org/tiny", path = "config.json" }]\n'
    )
    assert mdl("pull", "cfg").exit_code == 0
    record = tmp_path / "models" / ".mdl" / "records" / "cfg.json"
    before = record.stat()
    for _ in range(2):
        again = mdl("pull", "cfg", env={"HF_HUB_OFFLINE": "1"})
        assert again.exit_code == 0, again.stderr
        after = record.stat()
        assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
