"""docs/registries.md, run as written: each of its ``sh`` blocks runs in bash (set -euo pipefail)
and each of its ``toml`` blocks is a catalog, against a real CNCF distribution registry
(``docker-registry``, tests/registry.py) on 127.0.0.1 and a loopback Hub serving ``ibm/granite``,
the model a team publishes. What is substituted, and nothing else:

- ``registry.example.com`` is the loopback registry's ``127.0.0.1:PORT`` (plain http: it is on this
  machine, as the page says);
- ``mdl`` is this checkout's (on PATH: each run a real process forked from a zygote,
  tests/zygote.py), ``HF_ENDPOINT`` the loopback Hub's;
- the by-digest line's ``sha256:4f1c…e9`` is illustrative: the test fills in the manifest digest
  the publish printed;
- what a block needs to exist first: the publisher's catalog (``[models.granite] repo =
  "ibm/granite"``) and ``granite`` pulled into it; a key pair made as the signed tests make them
  (tests/signkeys.py), ``keys/team.pem`` with the publisher, ``keys/team.pub`` on the node; two older
  versions published by the page's own ``--all`` line with the tags ``2026-09`` and ``2026-10`` in
  place of ``2026-11``, each before the Hub's next commit; the lock the prune block names
  (``releases/v1.lock``, the publisher's ``catalog.lock`` as it pinned ``2026-10``, the release
  before the current one).

The signatures section gives its publish command in prose (``mdl publish NAME --to oci://…
--sign KEY.pem``): the test runs it as ``mdl publish granite --to
oci://registry.example.com/team/granite:v3 --sign keys/team.pem``, the publish block's first line
with the key. The mirror's catalog is the node's catalog (the Hub model and the page's
``[settings]``) with the Hub down: every file comes from the registry.

What the page promises is checked: the files ``get`` writes are the published bytes, by tag, by
digest and through a lock; the signed catalog refuses the version before it is signed (exit 6,
no referrer), then installs the referrer's bundle as ``model.sig``; the prune (its default
``--keep-versions 2``) in a dry run deletes nothing, then deletes the oldest version's manifest (no
lock pins it, and it is older than the two locked versions counted) and keeps the locked ones'."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest
from referrers import manifest_bytes
from registry import MANIFEST, NEEDS_REGISTRY, DistributionRegistry, distribution, sha256_digest
from runfixtures import HANG
from servers import Fault, HubServer, make_data
from signkeys import key_pair
from zygote import forked_mdl

from mdl.errors import ExitCode

pytestmark = NEEDS_REGISTRY

ROOT = Path(__file__).resolve().parents[2]
DOC = (ROOT / "docs" / "registries.md").read_text(encoding="utf-8")
HOST = "registry.example.com"
ILLUSTRATIVE = "sha256:4f1c…e9"
PUBLISHER = '[models.granite]\nrepo = "ibm/granite"\n'
OLD = {
    "config.json": b'{"model_type": "granite"}\n',
    "model.safetensors": make_data(5000, "granite-old"),
}
OLDEST = {**OLD, "model.safetensors": make_data(4000, "granite-oldest")}
NEW = {**OLD, "model.safetensors": make_data(6000, "granite-new"), "README.md": b"# granite\n"}


def section(title: str) -> str:
    """The text of the page's ``## title`` section (the first section: the page's opening)."""
    if title == "":
        return DOC.split("\n## ", 1)[0]
    return DOC.split(f"\n## {title}\n", 1)[1].split("\n## ", 1)[0]


def blocks(text: str, lang: str) -> list[str]:
    return re.findall(rf"^```{lang}\n(.*?)^```", text, re.MULTILINE | re.DOTALL)


# every block the page has, by section, as the test runs it
RUN = {
    ("", "sh"): 1,
    ("", "toml"): 1,
    ("Publishing", "sh"): 1,
    ("Signatures", "toml"): 1,
    ("Mirrors in a registry", "toml"): 1,
    ("Pruning a registry", "sh"): 1,
}


def test_every_block_of_the_page_is_run() -> None:
    """No block is left untested: each fenced block is one of those this module runs."""
    titles = ["", *re.findall(r"^## (.+)$", DOC, re.MULTILINE)]
    fences = re.findall(r"^```(\w*)$", DOC, re.MULTILINE)
    opened = fences[::2]
    assert set(opened) <= {"sh", "toml", ""} and "" not in opened, opened
    found = {
        (title, lang): len(blocks(section(title), lang))
        for title in titles
        for lang in ("sh", "toml")
        if blocks(section(title), lang)
    }
    assert found == RUN
    assert sum(RUN.values()) == len(opened)


class Page:
    """The page's blocks run in one world: the registry at ``host``, the Hub, a shell environment."""

    def __init__(self, host: str, env: dict[str, str]) -> None:
        self.host, self.env = host, env

    def text(self, block: str) -> str:
        return block.replace(HOST, self.host)

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
        return done.stdout + done.stderr

    def folder(self, path: Path, catalog: str) -> Path:
        """A working folder holding ``catalog`` (the page's text, substituted) as catalog.toml."""
        path.mkdir(parents=True, exist_ok=True)
        (path / "catalog.toml").write_text(self.text(catalog))
        return path


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DistributionRegistry]:
    with distribution(tmp_path_factory.mktemp("registry")) as started:
        yield started


@pytest.fixture
def page(registry: DistributionRegistry, hub: HubServer, tmp_path: Path) -> Page:
    env = {
        **os.environ,
        "PATH": os.pathsep.join(
            [str(forked_mdl().parent), os.environ.get("PATH", "/usr/bin:/bin")]
        ),
        "PYTHONPATH": str(ROOT),
        "HF_ENDPOINT": hub.url,
        "MDL_LOG_FILE": str(tmp_path / "mdl.log"),
        "MDL_DEST": str(tmp_path / "models"),
        "HOME": str(tmp_path / "home"),
    }
    for name in ("REGISTRY_AUTH_FILE", "DOCKER_CONFIG", "MDL_MIRRORS", "XDG_RUNTIME_DIR"):
        env.pop(name, None)
    return Page(registry.host, env)


def files_in(folder: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and ".mdl" not in p.relative_to(folder).parts
    }


def tags(registry: DistributionRegistry, repository: str) -> list[str]:
    listed = httpx2.get(f"{registry.url}/v2/{repository}/tags/list", timeout=30)
    return list(listed.json().get("tags") or []) if listed.status_code == 200 else []


def manifest_digest(registry: DistributionRegistry, repository: str, tag: str) -> str | None:
    got = httpx2.head(
        f"{registry.url}/v2/{repository}/manifests/{tag}", headers={"Accept": MANIFEST}, timeout=30
    )
    return got.headers.get("Docker-Content-Digest") if got.status_code == 200 else None


@pytest.mark.slow
def test_the_registry_page_runs_as_written(
    page: Page, registry: DistributionRegistry, hub: HubServer, tmp_path: Path
) -> None:
    (opening,) = blocks(section(""), "sh")
    (reader,) = blocks(section(""), "toml")
    (publishing,) = blocks(section("Publishing"), "sh")
    (signed,) = blocks(section("Signatures"), "toml")
    (mirrors,) = blocks(section("Mirrors in a registry"), "toml")
    (prune,) = blocks(section("Pruning a registry"), "sh")
    every_model = publishing.splitlines()[1]
    assert "--all" in every_model and ":2026-11'" in every_model, every_model

    # the publisher: the oldest version published and no longer locked, the one before the
    # current one published and kept as a release's lock, then the current one, locked
    hub.add_repo("ibm/granite", OLDEST)
    publisher = page.folder(tmp_path / "publisher", PUBLISHER)
    page.run("mdl pull granite", publisher)
    page.run(every_model.replace(":2026-11'", ":2026-09'"), publisher)
    hub.commit("ibm/granite", {"model.safetensors": OLD["model.safetensors"]})
    page.run("mdl lock --upgrade granite && mdl pull granite", publisher)
    page.run(every_model.replace(":2026-11'", ":2026-10'"), publisher)
    (publisher / "releases").mkdir()
    shutil.copy(publisher / "catalog.lock", publisher / "releases" / "v1.lock")
    hub.commit("ibm/granite", {p: NEW[p] for p in ("model.safetensors", "README.md")})
    page.run("mdl lock --upgrade granite && mdl pull granite", publisher)
    said = page.run(publishing, publisher)
    assert files_in(publisher / "granite") == NEW, "what a node reads back is what was published"
    digest = manifest_digest(registry, "team/granite", "v3")
    assert digest is not None and f"@{digest}" in said, said
    assert sorted(tags(registry, "models/granite")) == ["2026-09", "2026-10", "2026-11"]

    # a node reads it: by tag, by digest, through a lock
    node = page.folder(tmp_path / "node", reader)
    assert ILLUSTRATIVE in opening
    page.run(opening.replace(ILLUSTRATIVE, digest), node)
    assert files_in(node / "granite") == NEW
    assert files_in(tmp_path / "models" / "granite-oci") == NEW
    pinned = (node / "catalog.lock").read_text()
    assert digest in pinned

    # signed: published with the team's key, pulled by a catalog naming its public half
    private, public = key_pair(publisher / "keys", "team")
    assert private == publisher / "keys" / "team.pem"
    trusting = page.folder(tmp_path / "trusting", signed)
    (trusting / "keys").mkdir()
    shutil.copy(public, trusting / "keys" / "team.pub")
    to = {"MDL_DEST": str(tmp_path / "signed-models")}
    unsigned = page.attempt("mdl pull granite-oci", trusting, **to)  # not signed yet: no referrer
    assert unsigned.returncode == ExitCode.INTEGRITY and "has none" in unsigned.stderr, unsigned
    sign = publishing.splitlines()[0].split("#")[0].strip() + " --sign keys/team.pem"
    page.run(sign, publisher)
    page.run("mdl pull granite-oci", trusting, **to)
    pulled = files_in(tmp_path / "signed-models" / "granite-oci")
    (entry,) = json.loads(manifest_bytes(registry, "team/granite", digest.replace(":", "-")))[
        "manifests"
    ]
    referrer = json.loads(manifest_bytes(registry, "team/granite", entry["digest"]))
    assert referrer["subject"]["digest"] == digest, "a referrer of the published manifest"
    bundle = pulled.pop("model.sig")
    assert referrer["layers"][0]["digest"] == sha256_digest(bundle), "its bundle, as model.sig"
    assert pulled == NEW

    # a registry as the read mirror: the Hub down, the lock's files from models/granite
    fleet = page.folder(tmp_path / "fleet", PUBLISHER + "\n" + mirrors)
    shutil.copy(publisher / "catalog.lock", fleet / "catalog.lock")
    for server in (hub, hub.cdn):
        server.faults.add(Fault.http_error(503, times=None))
    page.run("mdl pull granite --frozen", fleet, MDL_DEST=str(tmp_path / "fleet-models"))
    assert files_in(tmp_path / "fleet-models" / "granite") == NEW

    # prune: the two locked versions kept, catalog.lock's counted (a mirror of a Hub model: its
    # locks pin the Hub's files, so no other version's time counts: the page says --keep-versions
    # 1), the oldest one's manifest deleted (after a dry run)
    dry, real = prune.splitlines()
    assert "--keep-versions 1" in dry and "--keep-versions 1" in real, prune
    old = manifest_digest(registry, "models/granite", "2026-09")
    assert old is not None
    would = page.run(dry, publisher)
    assert f"would remove  oci://{page.host}/models/granite:2026-09@{old}" in would, would
    assert would.count("would remove  oci://") == 1, would
    assert len(tags(registry, "models/granite")) == 3, "a dry run"
    did = page.run(real, publisher)
    assert f"removed  oci://{page.host}/models/granite:2026-09@{old}" in did, did
    assert sorted(tags(registry, "models/granite")) == ["2026-10", "2026-11"], "the oldest's"
    gone = httpx2.get(
        f"{registry.url}/v2/models/granite/manifests/{old}",
        headers={"Accept": MANIFEST},
        timeout=30,
    )
    assert gone.status_code == 404, "deleted by digest, every tag on it"
    assert manifest_digest(registry, "models/granite", "2026-11") is not None
