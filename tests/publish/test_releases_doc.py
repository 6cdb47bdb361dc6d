"""docs/releases.md, run as written: its catalog is the deploy repository's catalog.toml, and each
of its bash blocks runs in bash (set -euo pipefail), in the deploy repository (a git repository the
test makes) or a node's clone of it, against a loopback Hub serving three commits of ``team/llm``
and a real store. What is substituted, and nothing else:

- ``s3://team-models/hub`` stays as written, on moto (``AWS_ENDPOINT_URL`` points s3:// at it; the
  three versions on a shared folder and SeaweedFS are tests/publish/test_versions_flow.py's);
- ``V=v2``, the release block's first line, names each release in turn (v1, v2, v3);
- ``mdl`` is this checkout's (on PATH: each run a real process forked from a zygote, tests/zygote.py),
  ``HF_ENDPOINT`` the loopback Hub's.

Between the blocks the test does what the page says people do: training commits each version to the
Hub; a node clones the deploy repository; the origin goes down (503 to everything) before the
nodes run, and is never asked.

Three releases run as written, rolled out, back and pruned, of a Hub repo and of a model of direct
URLs (each week's folder on a CDN, the catalog's ``files`` moved to it): signed as the page prints it, and
without a signer as the page says (its catalog without ``[models.llm.signature]``, ``publish``
without ``--sign ~/keys/team.pem``, every other line the same). After each release the bucket holds
every file the new lock pins; the order a team might take instead (a plain ``pull``, which follows
the old lock) fails at the block's ``lock --check``, by name. The private key never lands in the
deploy repository, even through ``git add -A``."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from runfixtures import HANG
from s3server import S3
from servers import CdnServer, Fault, HubServer, make_data
from zygote import forked_mdl

from mdl.errors import ExitCode
from mdl.lockfile.io import read_lock

ROOT = Path(__file__).resolve().parents[2]
DOC = (ROOT / "docs" / "releases.md").read_text(encoding="utf-8")
PREFIX = "s3://team-models/hub"
CONFIG = b'{"model_type": "llama"}\n'
V1 = {f"model-0000{i}-of-00002.safetensors": make_data(3000 + i, f"d1-{i}") for i in (1, 2)}
V2 = {f"model-0000{i}-of-00003.safetensors": make_data(2000 + i, f"d2-{i}") for i in (1, 2, 3)}
# each release as training commits it to the Hub (None: deleted)
COMMITS: dict[str, dict[str, bytes | None]] = {
    "v1": {"config.json": CONFIG, **V1},
    "v2": {**dict.fromkeys(V1), **V2},
    "v3": {"model-00002-of-00003.safetensors": make_data(2002, "d3-2")},
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


SIGN = " --sign ~/keys/team.pem"  # what the page says to leave out without a signer
SIGNER = "\n[models.llm.signature]\n"
REPO = 'repo = "team/llm"'


class Page:
    """The page's blocks run in one world: a store at ``prefix``, the Hub, a shell environment;
    ``signed``: as printed, else as the page says without a signer."""

    def __init__(self, prefix: str, env: dict[str, str], *, signed: bool = True) -> None:
        self.prefix = prefix
        self.env = env
        self.signed = signed
        # a model of direct URLs (each week's folder on this CDN) in place of the Hub repo
        self.urls: CdnServer | None = None

    def text(self, block: str) -> str:
        block = block.replace(PREFIX, self.prefix)
        return block if self.signed else block.replace(SIGN, "")

    def catalog(self, name: str = "v1") -> str:
        (catalog,) = blocks(section("The deploy repository"), "toml")
        text = self.text(catalog if self.signed else catalog.split(SIGNER, 1)[0] + "\n")
        if self.urls is None:
            return text
        rows = "".join(
            f'  {{ url = "{self.urls.url}/llm/{name}/{p}" }},\n' for p in versions()[name]
        )
        assert REPO in text
        return text.replace(REPO, f"files = [\n{rows}]", 1)

    def attempt(self, block: str, cwd: Path, **extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["bash", "-c", "set -euo pipefail\n" + self.text(block)],
            cwd=cwd,
            env={**self.env, **extra},
            capture_output=True,
            text=True,
            timeout=HANG * 3,
            check=False,
        )

    def run(self, block: str, cwd: Path, **extra: str) -> str:
        done = self.attempt(block, cwd, **extra)
        assert done.returncode == 0, f"{block}\nexit {done.returncode}\n{done.stderr}{done.stdout}"
        return done.stderr


def test_the_page_names_its_blocks_as_the_test_runs_them() -> None:
    (catalog,) = blocks(section("The deploy repository"), "toml")
    assert f'mirrors = ["{PREFIX}/{{model}}/{{sha256}}"]' in catalog
    (release,) = blocks(section("Each release: publish, sign, lock, commit"), "bash")
    assert release.splitlines()[0].startswith("V=v2 ")
    assert f"mdl publish llm --to {PREFIX}{SIGN} " in release
    order = [line.split("#")[0].strip() for line in release.splitlines()]
    assert order[1:5] == [
        "mdl pull llm --unsigned",
        f"mdl publish llm --to {PREFIX}{SIGN}",
        "mdl lock --upgrade llm",
        "mdl lock --check",
    ], "one order: fetch the new version, publish it, then pin what was published"
    assert SIGN.strip() in section("Each release: publish, sign, lock, commit").split("```")[2]
    assert SIGNER in catalog
    rollout, rollback = blocks(section("Roll out, roll back"), "bash")
    assert rollout.startswith("mdl pull --all --frozen ")
    assert rollback.splitlines()[0] == "mdl pull --all --frozen --lock releases/v1.lock"
    (prune,) = blocks(section("Prune"), "bash")
    assert prune.count(f"mdl prune --mirror '{PREFIX}/{{model}}/{{sha256}}' --keep-versions 2") == 2


# the page as written names an S3 bucket (moto); a shared folder is test_versions_flow.py's
@pytest.fixture(params=["signed", "unsigned"])
def page(
    request: pytest.FixtureRequest, hub: HubServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Page]:
    """The shell environment the page's commands run in (``mdl``: real processes, each forked
    from the worker's zygote), and its store."""
    env = {
        **os.environ,
        "PATH": os.pathsep.join(
            [str(forked_mdl().parent), os.environ.get("PATH", "/usr/bin:/bin")]
        ),
        "PYTHONPATH": str(ROOT),
        "HF_ENDPOINT": hub.url,
        "MDL_LOG_FILE": str(tmp_path / "mdl.log"),
        "GIT_AUTHOR_NAME": "release",
        "GIT_AUTHOR_EMAIL": "release@example.com",
        "GIT_COMMITTER_NAME": "release",
        "GIT_COMMITTER_EMAIL": "release@example.com",
        "GIT_CONFIG_NOSYSTEM": "1",
        "HOME": str(tmp_path / "home"),  # the release machine's, where the private key is kept
    }
    store: S3 = request.getfixturevalue("s3")
    store.client().create_bucket(Bucket="team-models")
    env.update({k: v for k, v in os.environ.items() if k.startswith("AWS_")})
    yield Page(PREFIX, env, signed=request.param == "signed")


def installed(folder: Path, files: dict[str, bytes]) -> dict[str, str]:
    return {p: hashlib.sha256((folder / p).read_bytes()).hexdigest() for p in files}


def wanted(files: dict[str, bytes]) -> dict[str, str]:
    return {p: hashlib.sha256(d).hexdigest() for p, d in files.items()}


def deploy_repository(page: Page, tmp_path: Path) -> Path:
    """The deploy repository, made once as the page says: git, the page's catalog, the key."""
    deploy = tmp_path / "deploy"
    deploy.mkdir()
    subprocess.run(["git", "init", "-q", str(deploy)], check=True, timeout=60, env=page.env)
    (deploy / "catalog.toml").write_text(page.catalog())
    (once,) = blocks(section("The deploy repository"), "bash")
    page.run(once, deploy)
    assert (deploy / "keys" / "team.pub").is_file()
    assert "PRIVATE KEY" in (tmp_path / "home" / "keys" / "team.pem").read_text()
    # whatever is copied in, `git add -A` commits no private key
    shutil.copy(tmp_path / "home" / "keys" / "team.pem", deploy / "keys" / "team.pem")
    subprocess.run(["git", "add", "-A"], cwd=deploy, check=True, timeout=60, env=page.env)
    committed = subprocess.run(
        ["git", "ls-files", "--cached"], cwd=deploy, capture_output=True, text=True, timeout=60
    ).stdout.split()
    assert "keys/team.pub" in committed and "keys/team.pem" not in committed
    assert not any(b"PRIVATE KEY" in (deploy / path).read_bytes() for path in committed)
    return deploy


def trained(page: Page, hub: HubServer, name: str, deploy: Path) -> None:
    """Training commits version ``name`` to the Hub; or, a model of URLs, puts it in the week's
    folder on the CDN and the team points the catalog at it."""
    if page.urls is not None:
        for path, data in versions()[name].items():
            page.urls.add_file(f"/llm/{name}/{path}", data)
        (deploy / "catalog.toml").write_text(page.catalog(name))
        subprocess.run(["git", "add", "catalog.toml"], cwd=deploy, check=True, timeout=60)
        return
    changes = COMMITS[name]
    if name == "v1":
        hub.add_repo("team/llm", {p: d for p, d in changes.items() if d is not None})
    else:
        hub.commit("team/llm", changes, title=name)


def release_block(name: str) -> str:
    (block,) = blocks(section("Each release: publish, sign, lock, commit"), "bash")
    return block.replace("V=v2 ", f"V={name} ", 1)


def release(page: Page, hub: HubServer, deploy: Path, name: str, store: S3) -> None:
    """Training commits version ``name`` to the Hub; the release block runs for it; the bucket
    then holds every file its lock pins."""
    trained(page, hub, name, deploy)
    said = page.run(release_block(name), deploy, MDL_DEST=str(deploy.parent / "rel"))
    assert (deploy / "releases" / f"{name}.lock").is_file()
    assert f"nodes: --mirror '{page.prefix}/{{model}}/{{sha256}}'" in said, "the catalog's mirror"
    pinned = {
        f.path: f.sha256
        for f in read_lock(deploy / "releases" / f"{name}.lock").models["llm"].files
    }
    assert ("model.sig" in pinned) is page.signed
    assert {p: d for p, d in pinned.items() if p != "model.sig"} == wanted(versions()[name])
    held = set(bucket_keys(store))
    assert {f"hub/llm/{sha256}" for sha256 in pinned.values()} <= held, "the bucket holds the lock"


def bucket_keys(store: S3) -> list[str]:
    listed = store.client().list_objects_v2(Bucket="team-models", Prefix="hub/llm/")
    return [o["Key"] for o in listed.get("Contents", [])]


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
@pytest.mark.parametrize("source", ["hub", "urls"])
def test_the_release_flow_runs_as_written_through_three_versions_and_back(
    page: Page, hub: HubServer, tmp_path: Path, s3: S3, source: str
) -> None:
    """Hub: training commits each version to ``team/llm``; urls: each week's folder on a CDN
    (``/llm/v1/``, ``/llm/v2/``…), the catalog's ``files`` pointing at it, its signer the same."""
    if source == "urls":
        page.urls = hub.cdn
    deploy = deploy_repository(page, tmp_path)
    for name in COMMITS:
        release(page, hub, deploy, name, s3)
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


@needs_tools()
def test_the_order_that_publishes_the_previous_version_fails_at_the_blocks_lock_check(
    page: Page, hub: HubServer, tmp_path: Path, s3: S3
) -> None:
    """A plain ``pull`` (which follows the lock, still v1) in the block's place: ``publish`` writes
    v1 again, ``lock --upgrade`` pins v2, and the block's own ``lock --check`` refuses, naming the
    model (exit 4), before anything is committed."""
    deploy = deploy_repository(page, tmp_path)
    release(page, hub, deploy, "v1", s3)
    trained(page, hub, "v2", deploy)
    block = release_block("v2").replace("mdl pull llm --unsigned", "mdl pull llm", 1)
    done = page.attempt(block, deploy, MDL_DEST=str(deploy.parent / "rel"))
    if page.signed:  # the lock cannot pin a signature that does not cover v2: lock --upgrade says
        assert done.returncode == ExitCode.INTEGRITY, done.stderr
    else:
        assert done.returncode == ExitCode.NOT_FOUND, done.stderr
        assert "llm: the version the lock pins" in done.stderr and "not published" in done.stderr
    assert not (deploy / "releases" / "v2.lock").exists()
