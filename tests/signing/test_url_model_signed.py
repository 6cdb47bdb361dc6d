"""A model of direct URLs (a training box, a CDN) names a signer (issue 86): ``mdl add … --signed-by``
is taken, its signature lives in the team's bucket (stored by content by ``publish --sign`` and named
by the version's manifest), ``lock`` pins it at that object, and a node pulls the lock with the
origin down: every file from the bucket, model.sig verified with the team's key first."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from runfixtures import mdl
from s3server import S3
from servers import Fault, HubServer, make_data
from signkeys import key_pair
from typer.testing import Result

from mdl.errors import ExitCode
from mdl.lockfile.io import read_lock

PREFIX = "s3://team-models/hub"
V1 = {"config.json": b'{"v": 1}\n', "model.safetensors": make_data(5000, "url-v1")}


class Machine:
    """The deploy catalog (the bucket as its mirror) in ``root``; models under ``root/<dest>``."""

    def __init__(self, hub: HubServer, root: Path) -> None:
        self.hub, self.root = hub, root
        key_pair(root / "keys", "team")
        (root / "catalog.toml").write_text(
            f'[settings]\nmirrors = ["{PREFIX}/{{model}}/{{sha256}}"]\n'
        )

    def mdl(self, *args: str, dest: str = "models") -> Result:
        env = {
            "HF_ENDPOINT": self.hub.url,
            "MDL_CATALOG": str(self.root / "catalog.toml"),
            "MDL_DEST": str(self.root / dest),
            "MDL_LOG_FILE": str(self.root / "mdl.log"),
        }
        return mdl(*args, "--no-progress", env=env)

    def ok(self, *args: str, dest: str = "models") -> Result:
        done = self.mdl(*args, dest=dest)
        assert done.exit_code == 0, f"{args}: {done.stderr}"
        return done


@pytest.fixture
def released(hub: HubServer, s3: S3, tmp_path: Path) -> Machine:
    """v1 of a model of URLs released as docs/releases.md says, signed."""
    s3.client().create_bucket(Bucket="team-models")
    for path, data in V1.items():
        hub.cdn.add_file(f"/llm/v1/{path}", data)
    machine = Machine(hub, tmp_path)
    urls = [f"{hub.cdn.url}/llm/v1/{path}" for path in V1]
    machine.ok("add", "llm", *urls, "--signed-by", str(tmp_path / "keys" / "team.pub"))
    assert 'signature = { key = "keys/team.pub" }' in (tmp_path / "catalog.toml").read_text()
    machine.ok("pull", "llm", "--unsigned")
    machine.ok("publish", "llm", "--to", PREFIX, "--sign", str(tmp_path / "keys" / "team.pem"))
    machine.ok("lock", "--upgrade", "llm")
    machine.ok("lock", "--check")
    return machine


def test_a_model_of_urls_names_a_signer_and_its_signature_lives_in_the_bucket(
    released: Machine, hub: HubServer, s3: S3
) -> None:
    (model,) = read_lock(released.root / "catalog.lock").models.values()
    pinned = {f.path: f for f in model.files}
    sig = pinned["model.sig"]
    assert sig.source == f"{PREFIX}/llm/{sig.sha256}", "pinned where it lives: the bucket"
    keys = {o["Key"] for o in s3.client().list_objects_v2(Bucket="team-models")["Contents"]}
    assert {f"hub/llm/{f.sha256}" for f in model.files} <= keys

    for server in (hub, hub.cdn):  # the origin goes down; the node asks only the bucket
        server.faults.add(Fault.http_error(503, times=None))
        server.log.clear()
    released.ok("pull", "--all", "--frozen", dest="node")
    shown = json.loads(released.ok("show", "llm", "--json", dest="node").stdout)["models"][0]
    assert shown["status"] == "installed" and shown["signature"]["verified"] is True
    folder = released.root / "node" / "llm"
    assert {p: (folder / p).read_bytes() for p in V1} == V1
    assert (folder / "model.sig").is_file()
    assert len(hub.log) + len(hub.cdn.log) == 0, "the origin was never asked"
    assert released.mdl("verify", "--all", "--locked", dest="node").exit_code == 0


def test_a_model_of_urls_with_a_signer_and_no_lock_says_where_its_signature_is(
    hub: HubServer, s3: S3, tmp_path: Path
) -> None:
    """No lock, nothing published: the signature is nowhere yet. A node's pull refuses (exit 6,
    no internal error, no hint to drop the signer); the release machine's ``pull --unsigned``
    fetches the files held to their hashes, for ``publish --sign``."""
    s3.client().create_bucket(Bucket="team-models")
    for path, data in V1.items():
        hub.cdn.add_file(f"/llm/v1/{path}", data)
    machine = Machine(hub, tmp_path)
    urls = [f"{hub.cdn.url}/llm/v1/{path}" for path in V1]
    machine.ok("add", "llm", *urls, "--signed-by", str(tmp_path / "keys" / "team.pub"))
    refused = machine.mdl("pull", "llm")
    assert refused.exit_code == ExitCode.INTEGRITY, refused.stderr
    assert "llm/model.sig" in refused.stderr and "internal error" not in refused.stderr
    assert "remove [signature]" not in refused.stderr
    assert not (tmp_path / "models" / "llm" / "model.safetensors").exists()
    held = machine.mdl("pull", "llm", "--unsigned")
    assert held.exit_code == 0, held.stderr
    assert (tmp_path / "models" / "llm" / "model.safetensors").read_bytes() == V1[
        "model.safetensors"
    ]
