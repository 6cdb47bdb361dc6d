"""Signature problems lead a pipeline right (issue 86): the bucket that keeps a version's signature
briefly down is an outage (exit 5: retry), never a trust failure; a lock that pins no model.sig for a
signed model is named, never an internal error; a model.sig in the bucket with other bytes than the
lock pins is named as bad (exit 6), never as "none was found". No hint tells an operator to turn
verification off (every hint in mdl, read from the source)."""

from __future__ import annotations

import ast
import re
from dataclasses import replace
from pathlib import Path

import pytest
from runfixtures import mdl
from s3server import S3
from servers import HubServer, make_data
from signkeys import key_pair
from typer.testing import Result

from mdl.errors import ExitCode
from mdl.lockfile.io import read_lock, write_lock

ROOT = Path(__file__).resolve().parents[2]
PREFIX = "s3://team-models/hub"
V1 = {"config.json": b'{"v": 1}\n', "model.safetensors": make_data(3000, "sx-v1")}


class Released:
    """A release machine and a node of one deploy catalog (the team's signer, the bucket as the
    mirror): v1 pulled ``--unsigned``, published signed, locked with its signature."""

    def __init__(self, hub: HubServer, root: Path) -> None:
        self.hub, self.root = hub, root
        key_pair(root / "keys", "team")
        (root / "catalog.toml").write_text(
            f'[settings]\nmirrors = ["{PREFIX}/{{model}}/{{sha256}}"]\n\n'
            '[models.llm]\nrepo = "team/llm"\n\n'
            '[models.llm.signature]\nkey = "keys/team.pub"\n'
        )

    def mdl(self, *args: str, dest: str = "models") -> Result:
        env = {
            "HF_ENDPOINT": self.hub.url,
            "MDL_CATALOG": str(self.root / "catalog.toml"),
            "MDL_DEST": str(self.root / dest),
            "MDL_LOG_FILE": str(self.root / "mdl.log"),
        }
        return mdl(*args, "--no-progress", env=env)

    def node_pull(self) -> Result:
        return self.mdl("pull", "--all", "--frozen", dest="node")


@pytest.fixture
def released(hub: HubServer, s3: S3, tmp_path: Path) -> Released:
    s3.client().create_bucket(Bucket="team-models")
    hub.add_repo("team/llm", V1)
    machine = Released(hub, tmp_path)
    for step in (
        ("pull", "llm", "--unsigned"),
        ("publish", "llm", "--to", PREFIX, "--sign", str(tmp_path / "keys" / "team.pem")),
        ("lock", "--upgrade", "llm"),
    ):
        done = machine.mdl(*step)
        assert done.exit_code == 0, f"{step}: {done.stderr}"
    return machine


def _signature_key(machine: Released) -> str:
    (model,) = read_lock(machine.root / "catalog.lock").models.values()
    (sig,) = [f for f in model.files if f.path == "model.sig"]
    return f"hub/llm/{sig.sha256}"


def _no_disabling_hint(said: str) -> None:
    for words in ("remove [signature]", "--no-verify", "without --signed-by", "as is"):
        assert words not in said, f"a hint to turn verification off: {said}"


def test_the_bucket_down_is_an_outage_not_a_trust_failure(released: Released, s3: S3) -> None:
    s3.cutter.slowdown = 10**9  # every request: 503 SlowDown, as a store that is briefly down
    pulled = released.node_pull()
    assert pulled.exit_code == ExitCode.NETWORK, pulled.stderr
    assert "model.sig" in pulled.stderr and "none was found" not in pulled.stderr
    _no_disabling_hint(pulled.stderr)
    s3.cutter.slowdown = 0
    again = released.node_pull()  # the retry a pipeline makes of exit 5 succeeds
    assert again.exit_code == 0, again.stderr


def test_the_bucket_down_while_locking_is_an_outage_not_a_version_without_signature(
    released: Released, s3: S3
) -> None:
    """``lock`` finds a version's signature through the bucket's manifest: the bucket down is
    exit 5 (retry), not "this version has none" (exit 6); the lock is left as it was."""
    before = (released.root / "catalog.lock").read_bytes()
    released.hub.commit("team/llm", {"config.json": b'{"v": 2}\n'}, title="v2")
    s3.cutter.slowdown = 10**9
    locked = released.mdl("lock", "--upgrade", "llm")
    assert locked.exit_code == ExitCode.NETWORK, locked.stderr
    assert "has none" not in locked.stderr
    _no_disabling_hint(locked.stderr)
    assert (released.root / "catalog.lock").read_bytes() == before


def test_a_tampered_signature_in_the_bucket_is_named_as_bad(released: Released, s3: S3) -> None:
    key = _signature_key(released)
    s3.put("team-models", key, b'{"mediaType": "forged"}\n')
    pulled = released.node_pull()
    assert pulled.exit_code == ExitCode.INTEGRITY, pulled.stderr
    assert "bad bytes" in pulled.stderr and "none was found" not in pulled.stderr
    assert key.rsplit("/", 1)[1][:12] in pulled.stderr, "the object named"
    _no_disabling_hint(pulled.stderr)
    assert not (released.root / "node" / "llm" / "model.safetensors").exists()


def test_a_lock_without_the_signature_takes_the_one_its_version_was_published_with(
    released: Released,
) -> None:
    lock = read_lock(released.root / "catalog.lock")
    (model,) = lock.models.values()
    # as the lock of a version locked before the catalog named its signer (an AssertionError once):
    # the version's manifest in the bucket names the signature it was published with, which is
    # fetched by its sha256 and must verify (a version published unsigned is exit 6, named:
    # tests/cli/test_rollback_exact.py)
    bare = replace(model, files=tuple(f for f in model.files if f.path != "model.sig"))
    write_lock(released.root / "catalog.lock", replace(lock, models={model.name: bare}))
    pulled = released.node_pull()
    assert pulled.exit_code == 0, pulled.stderr
    assert "internal error" not in pulled.stderr
    assert (released.root / "node" / "llm" / "model.sig").exists()
    assert (released.root / "node" / "llm" / "model.safetensors").exists()


def _hints() -> list[tuple[str, str]]:
    """Every hint mdl's source gives (``hint=`` of a call, its string parts joined): (where,
    text)."""
    found = []
    for path in sorted((ROOT / "mdl").rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            for keyword in node.keywords:
                if keyword.arg == "hint":
                    parts = [
                        n.value
                        for n in ast.walk(keyword.value)
                        if isinstance(n, ast.Constant) and isinstance(n.value, str)
                    ]
                    found.append((f"{path.relative_to(ROOT)}:{node.lineno}", "".join(parts)))
    return found


# a hint that tells an operator to drop the check that refused: never the way out of a trust failure
DISABLING = re.compile(
    r"remove \[signature\]|without --signed-by|without (a |its )?signature|--no-verify|"
    r"turn (it|verification) off|take it as is|--insecure|unsigned (instead|anyway)",
    re.IGNORECASE,
)


def test_no_hint_tells_an_operator_to_turn_verification_off() -> None:
    hints = _hints()
    assert len(hints) > 100, "the hints were read"
    bad = [(where, text) for where, text in hints if DISABLING.search(text)]
    assert bad == []
