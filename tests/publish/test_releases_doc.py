"""docs/releases.md, run as written: its catalog is the deploy repository's catalog.toml, and each
of its bash blocks runs in bash (set -euo pipefail), in the deploy repository (a git repository the
test makes) or a node's clone of it, against a loopback Hub serving three commits of ``team/llm``
and a real store. What is substituted, and nothing else:

- ``s3://team-models/hub`` stays as written, on moto (``AWS_ENDPOINT_URL`` points s3:// at it; the
  three versions on a shared folder and SeaweedFS are tests/publish/test_versions_flow.py's);
- ``V=v2``, the release block's first line, names each release in turn (v1, v2, v3);
- ``mdl`` is this checkout's (``python -m mdl`` on PATH), ``HF_ENDPOINT`` the loopback Hub's.

Between the blocks the test does what the page says people do: training commits each version to the
Hub; a node clones the deploy repository; the origin goes down (503 to everything) before the
nodes run, and is never asked.

Three releases run as written, rolled out, back and pruned."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from runfixtures import HANG, pseudo_random
from s3server import S3, s3, s3_server  # noqa: F401
from servers import Fault, HubServer

ROOT = Path(__file__).resolve().parents[2]
DOC = (ROOT / "docs" / "releases.md").read_text(encoding="utf-8")
PREFIX = "s3://team-models/hub"
CONFIG = b'{"model_type": "llama"}\n'
V1 = {f"model-0000{i}-of-00002.safetensors": pseudo_random(3000 + i, f"d1-{i}") for i in (1, 2)}
V2 = {f"model-0000{i}-of-00003.safetensors": pseudo_random(2000 + i, f"d2-{i}") for i in (1, 2, 3)}
# each release as training commits it to the Hub (None: deleted)
COMMITS: dict[str, dict[str, bytes | None]] = {
    "v1": {"config.json": CONFIG, **V1},
    "v2": {**dict.fromkeys(V1), **V2},
    "v3": {"model-00002-of-00003.safetensors": pseudo_random(2002, "d3-2")},
}


def section(title: str) -> str:
    """The text of the page's ``## title`` section."""
    return DOC.split(f"\n## {title}\n", 1)[1].split("\n## ", 1)[0]


def blocks(text: str, lang: str) -> list[str]:
    return re.findall(rf"^```{lang}\n(.*?)^```", text, re.MULTILINE | re.DOTALL)


def versions() -> dict[str, dict[str, bytes]]:
    files: dict[str, bytes] = {}
    out = {}
    for name, changes in COMMITS.items():
        for path, data in changes.items():
            if data is None:
                del files[path]
            else:
                files[path] = data
        out[name] = dict(files)
    return out


class Page:
    """The page's blocks run in one world: a store at ``prefix``, the Hub, a shell environment."""

    def __init__(self, prefix: str, env: dict[str, str]) -> None:
        self.prefix = prefix
        self.env = env

    def text(self, block: str) -> str:
        return block.replace(PREFIX, self.prefix)

    def run(self, block: str, cwd: Path, **extra: str) -> str:
        done = subprocess.run(
            ["bash", "-c", "set -euo pipefail\n" + self.text(block)],
            cwd=cwd,
            env={**self.env, **extra},
            capture_output=True,
            text=True,
            timeout=HANG * 3,
            check=False,
        )
        assert done.returncode == 0, f"{block}\nexit {done.returncode}\n{done.stderr}{done.stdout}"
        return done.stderr


def test_the_page_names_its_blocks_as_the_test_runs_them() -> None:
    (catalog,) = blocks(section("The deploy repository"), "toml")
    assert f'mirrors = ["{PREFIX}/{{model}}/{{sha256}}"]' in catalog
    (release,) = blocks(section("Each release: publish, sign, lock, commit"), "bash")
    assert release.splitlines()[0].startswith("V=v2 ")
    assert f"mdl publish llm --to {PREFIX} --sign keys/team.pem" in release
    assert "mdl lock --check" in release
    rollout, rollback = blocks(section("Roll out, roll back"), "bash")
    assert rollout.startswith("mdl pull --all --frozen ")
    assert rollback.splitlines()[0] == "mdl pull --all --frozen --lock releases/v1.lock"
    (prune,) = blocks(section("Prune"), "bash")
    assert prune.count(f"mdl prune --mirror '{PREFIX}/{{model}}/{{sha256}}' --keep-versions 2") == 2


# the page as written names an S3 bucket (moto); a shared folder is test_versions_flow.py's
@pytest.fixture
def page(
    request: pytest.FixtureRequest, hub: HubServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Page]:
    """The shell environment the page's commands run in, and its store."""
    shim = tmp_path / "bin"
    shim.mkdir()
    (shim / "mdl").write_text(f'#!/bin/sh\nexec "{sys.executable}" -m mdl "$@"\n')
    (shim / "mdl").chmod(0o755)
    env = {
        **os.environ,
        "PATH": os.pathsep.join([str(shim), os.environ.get("PATH", "/usr/bin:/bin")]),
        "PYTHONPATH": str(ROOT),
        "HF_ENDPOINT": hub.url,
        "MDL_LOG_FILE": str(tmp_path / "mdl.log"),
        "GIT_AUTHOR_NAME": "release",
        "GIT_AUTHOR_EMAIL": "release@example.com",
        "GIT_COMMITTER_NAME": "release",
        "GIT_COMMITTER_EMAIL": "release@example.com",
        "GIT_CONFIG_NOSYSTEM": "1",
    }
    store: S3 = request.getfixturevalue("s3")
    store.client().create_bucket(Bucket="team-models")
    env.update({k: v for k, v in os.environ.items() if k.startswith("AWS_")})
    yield Page(PREFIX, env)


def installed(folder: Path, files: dict[str, bytes]) -> dict[str, str]:
    return {p: hashlib.sha256((folder / p).read_bytes()).hexdigest() for p in files}


def wanted(files: dict[str, bytes]) -> dict[str, str]:
    return {p: hashlib.sha256(d).hexdigest() for p, d in files.items()}


def deploy_repository(page: Page, tmp_path: Path) -> Path:
    """The deploy repository, made once as the page says: git, the page's catalog, the key."""
    deploy = tmp_path / "deploy"
    deploy.mkdir()
    subprocess.run(["git", "init", "-q", str(deploy)], check=True, timeout=60, env=page.env)
    (catalog,) = blocks(section("The deploy repository"), "toml")
    (deploy / "catalog.toml").write_text(page.text(catalog))
    (once,) = blocks(section("The deploy repository"), "bash")
    page.run(once, deploy)
    assert (deploy / "keys" / "team.pub").is_file()
    return deploy


def release(page: Page, hub: HubServer, deploy: Path, name: str) -> None:
    """Training commits version ``name`` to the Hub; the release block runs for it."""
    changes = COMMITS[name]
    if name == "v1":
        hub.add_repo("team/llm", {p: d for p, d in changes.items() if d is not None})
    else:
        hub.commit("team/llm", changes, title=name)
    (block,) = blocks(section("Each release: publish, sign, lock, commit"), "bash")
    said = page.run(
        block.replace("V=v2 ", f"V={name} ", 1), deploy, MDL_DEST=str(deploy.parent / "rel")
    )
    assert (deploy / "releases" / f"{name}.lock").is_file()
    assert f"nodes: --mirror '{page.prefix}/{{model}}/{{sha256}}'" in said, "the catalog's mirror"


def origin_down(hub: HubServer) -> None:
    """The Hub and its CDN answer 503 to everything from now on; their logs start empty."""
    for server in (hub, hub.cdn):
        server.faults.add(Fault.http_error(503, times=None))
        server.log.clear()


def node(deploy: Path, folder: Path) -> Path:
    """A node: a clone of the deploy repository."""
    subprocess.run(["git", "clone", "-q", str(deploy), str(folder)], check=True, timeout=60)
    return folder


def needs_tools() -> pytest.MarkDecorator:
    missing = [tool for tool in ("openssl", "git") if shutil.which(tool) is None]
    return pytest.mark.skipif(bool(missing), reason=f"the page runs {missing}: not installed")


@pytest.mark.slow
@needs_tools()
def test_the_release_flow_runs_as_written_through_three_versions_and_back(
    page: Page, hub: HubServer, tmp_path: Path
) -> None:
    deploy = deploy_repository(page, tmp_path)
    for name in COMMITS:
        release(page, hub, deploy, name)
    log = subprocess.run(
        ["git", "-C", str(deploy), "log", "--format=%s"], capture_output=True, text=True, timeout=60
    )
    assert log.stdout.split("\n")[:3] == ["llm v3", "llm v2", "llm v1"]

    origin_down(hub)
    rollout, rollback = blocks(section("Roll out, roll back"), "bash")
    every = versions()
    machine = node(deploy, tmp_path / "node")
    models = machine / "models"
    page.run(rollout, machine, MDL_DEST=str(models))
    assert installed(models / "llm", every["v3"]) == wanted(every["v3"])
    page.run(rollback, machine, MDL_DEST=str(models))
    assert installed(models / "llm", every["v1"]) == wanted(every["v1"])

    (prune,) = blocks(section("Prune"), "bash")
    page.run(prune, deploy)
    fresh = node(deploy, tmp_path / "fresh")
    page.run(rollback, fresh, MDL_DEST=str(fresh / "models"))
    assert installed(fresh / "models" / "llm", every["v1"]) == wanted(every["v1"])
    assert len(hub.log) + len(hub.cdn.log) == 0, "the nodes never asked the origin"
