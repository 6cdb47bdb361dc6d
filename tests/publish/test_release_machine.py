"""The release machine of docs/releases.md on its second release: its deploy catalog names the
team's signer and the mirror, and its catalog.lock (committed) pins v1, published signed. Training
pushes v2. The flow the issue asks for (pull the new version, ``publish --sign`` it, ``lock
--upgrade`` to pin its signature; ``lock --upgrade``'s own refusal hints at that ``publish``) must
take the release machine to v2 with mdl alone; and re-running the release's ``publish --sign`` on a
copy that pulled its signature back from the mirror writes nothing; the rollback is the reference's
one command."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest
from runfixtures import mdl
from servers import HubServer, make_data
from signkeys import key_pair
from typer.testing import Result

from mdl.errors import ExitCode

V1 = {"config.json": b'{"v": 1}\n', "model.safetensors": make_data(3000, "rm-v1")}
V2 = {"model.safetensors": make_data(3001, "rm-v2")}


class Release:
    """The release machine: the deploy catalog (signer, mirror) in ``root``, its models in
    ``root/models``, the shared folder ``root/share`` as the team's store."""

    def __init__(self, hub: HubServer, root: Path) -> None:
        self.hub, self.root = hub, root
        self.share = (root / "share").as_uri()
        key_pair(root / "keys", "team")
        (root / "catalog.toml").write_text(
            f'[settings]\nmirrors = ["{self.share}/{{model}}/{{sha256}}"]\n\n'
            '[models.llm]\nrepo = "team/llm"\n\n'
            '[models.llm.signature]\nkey = "keys/team.pub"\n'
        )

    def mdl(self, *args: str) -> Result:
        env = {
            "HF_ENDPOINT": self.hub.url,
            "MDL_CATALOG": str(self.root / "catalog.toml"),
            "MDL_DEST": str(self.root / "models"),
            "MDL_LOG_FILE": str(self.root / "mdl.log"),
        }
        return mdl(*args, "--no-progress", env=env)

    def publish_signed(self) -> Result:
        key = str(self.root / "keys" / "team.pem")
        return self.mdl("publish", "llm", "--to", self.share, "--sign", key, "--json")

    def pinned(self) -> dict[str, str]:
        doc = tomllib.loads((self.root / "catalog.lock").read_text(encoding="utf-8"))
        (model,) = doc["model"]
        return {f["path"]: f["sha256"] for f in model["files"]}


@pytest.fixture
def released_v1(hub: HubServer, tmp_path: Path) -> Release:
    """v1 released as docs/releases.md says: pulled ``--unsigned`` (a plain pull fetches nothing
    no signature covers: exit 6), published signed, locked with its signature."""
    hub.add_repo("team/llm", V1)
    machine = Release(hub, tmp_path)
    assert machine.mdl("pull", "llm").exit_code == ExitCode.INTEGRITY
    assert not (tmp_path / "models" / "llm" / "model.safetensors").exists()
    assert machine.mdl("pull", "llm", "--unsigned").exit_code == 0
    published = machine.publish_signed()
    assert published.exit_code == 0, published.stderr
    locked = machine.mdl("lock", "--upgrade", "llm")
    assert locked.exit_code == 0, locked.stderr
    assert "model.sig" in machine.pinned()
    return machine


def test_the_release_machine_moves_to_v2_by_the_issues_flow(released_v1: Release) -> None:
    machine = released_v1
    machine.hub.commit("team/llm", V2, title="v2")
    refused = machine.mdl("lock", "--upgrade", "llm")
    assert refused.exit_code == ExitCode.INTEGRITY
    assert "--sign" in refused.stderr, "the hint: publish with --sign"
    plain = machine.mdl("pull", "llm")  # catalog.lock's v1, signed: as it was
    assert plain.exit_code == 0, plain.stderr
    pulled = machine.mdl("pull", "llm", "--unsigned")
    assert pulled.exit_code == 0, pulled.stderr
    signed = machine.publish_signed()
    assert signed.exit_code == 0, signed.stderr
    upgraded = machine.mdl("lock", "--upgrade", "llm")
    assert upgraded.exit_code == 0, upgraded.stderr
    assert machine.pinned()["model.safetensors"] == _sha(V2["model.safetensors"])


def test_rerunning_the_releases_publish_sign_after_a_pull_writes_nothing(
    released_v1: Release,
) -> None:
    machine = released_v1
    pulled = machine.mdl("pull", "llm")  # the lock now pins model.sig: fetched from the mirror
    assert pulled.exit_code == 0, pulled.stderr
    again = machine.publish_signed()
    assert again.exit_code == 0, again.stderr
    assert {f["action"] for f in json.loads(again.stdout)["files"]} == {"skipped"}


def _sha(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()


def test_the_rollback_as_the_reference_writes_it_deploys(
    released_v1: Release, tmp_path: Path
) -> None:
    machine = released_v1
    kept = tmp_path / "releases" / "v1.lock"
    kept.parent.mkdir()
    kept.write_bytes((tmp_path / "catalog.lock").read_bytes())
    node = ("--dest", str(tmp_path / "node"))
    unnamed = machine.mdl("pull", "--frozen", "--lock", str(kept), *node)
    assert unnamed.exit_code == ExitCode.USAGE and "--all" in unnamed.stderr, "as every pull"
    done = machine.mdl("pull", "--all", "--frozen", "--lock", str(kept), *node)
    assert done.exit_code == 0, done.stderr
