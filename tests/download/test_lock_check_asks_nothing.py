"""``mdl lock --check`` changes nothing and asks nothing it need not (issue 86): a signed model's
pinned signature is read where a pull installed it here (by its sha256) before any mirror or source
is asked; one not here is fetched, and that is said with why; a lock with no signed model loads none
of the fetch stage. A loopback Hub and a shared folder of the published layout."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from runfixtures import mdl, use_catalog
from servers import HubServer, make_data
from signkeys import key_pair

from mdl.buckets import versions
from mdl.signing.library import sign_digests

ROOT = Path(__file__).resolve().parents[2]
FILES = {
    "config.json": b'{"model_type": "llama"}\n',
    "model.safetensors": make_data(70_001, seed=8),
}
DOWN = "http://127.0.0.1:9"


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def shelve(root: Path, signature: bytes) -> str:
    """The version's objects, its signature and its manifest naming it, as ``publish --sign``
    leaves them in a shared folder; the mirror template."""
    prefix = f"file://{root}"
    (root / "llm").mkdir(parents=True)
    for data in (*FILES.values(), signature):
        (root / "llm" / sha(data)).write_bytes(data)
    rows = [(p, len(d), sha(d)) for p, d in FILES.items()]
    vid = versions.version_id(rows, signature="model.sig")
    listed = tuple(versions.ManifestFile(p, len(d), sha(d)) for p, d in FILES.items())
    named = versions.ManifestFile("model.sig", len(signature), sha(signature))
    uri = Path(versions.manifest_uri(prefix, "llm", vid).removeprefix("file://"))
    uri.parent.mkdir(parents=True)
    uri.write_bytes(versions.Manifest("llm", vid, listed, signature=named).to_bytes())
    return versions.template_of(prefix)


@pytest.fixture
def signed(hub: HubServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A project whose catalog names a signer, locked (its signature pinned through the shelf's
    manifest) and pulled here; the shelf's folder."""
    private, public = key_pair(tmp_path / "keys")
    hub.add_repo("org/llm", FILES)
    signature = sign_digests(
        {p: sha(d) for p, d in FILES.items()}, private_key=private, model_name="llm"
    )
    shelf = tmp_path / "shelf"
    template = shelve(shelf, signature)
    (tmp_path / "project").mkdir()
    text = (
        f'[settings]\nmirrors = ["{template}"]\n\n[models.llm]\nrepo = "org/llm"\n\n'
        f'[models.llm.signature]\nkey = "{public}"\n'
    )
    use_catalog(tmp_path / "project", monkeypatch, text, endpoint=hub.url)
    assert mdl("lock").exit_code == 0
    assert mdl("pull", "--all").exit_code == 0
    return shelf


def test_a_signature_installed_here_is_checked_asking_nobody(
    signed: Path, hub: HubServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    hub.log.clear()
    shutil.move(signed, tmp_path / "elsewhere")  # no mirror to ask
    monkeypatch.setenv("HF_ENDPOINT", DOWN)  # no origin either
    checked = mdl("lock", "--check")
    assert checked.exit_code == 0, checked.stderr
    assert "catalog.lock is up to date" in checked.stderr
    assert "fetching" not in checked.stderr
    assert hub.log.records() == [] and hub.cdn.log.records() == []


def test_a_signature_not_here_is_fetched_and_that_is_said(
    signed: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """CI's machine has nothing installed: the pinned signature is fetched by its sha256 (from the
    mirror: the origin is down), with why."""
    monkeypatch.setenv("MDL_DEST", str(tmp_path / "ci"))
    monkeypatch.setenv("HF_ENDPOINT", DOWN)
    checked = mdl("lock", "--check")
    assert checked.exit_code == 0, checked.stderr
    assert (
        "llm/model.sig: not on this machine; fetching it by its pinned sha256 to check that it"
        " covers the files the lock pins"
    ) in checked.stderr


def test_a_check_with_no_signed_model_loads_no_fetch_stage(
    hub: HubServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What a check costs in CPU is mostly imports: without a signed model it loads none of the
    fetch stage (measured: 0.35 -> 0.15 CPU-s for the whole command)."""
    hub.add_repo("org/llm", FILES)
    (tmp_path / "project").mkdir()
    catalog = use_catalog(
        tmp_path / "project", monkeypatch, '[models.llm]\nrepo = "org/llm"\n', endpoint=hub.url
    )
    assert mdl("lock").exit_code == 0
    code = (
        "import sys\nfrom mdl import api\n"
        f"report = api.lock(check=True, catalog={str(catalog)!r})\n"
        "heavy = [m for m in ('mdl.download._fetch', 'mdl.download.session', 'httpx2') if m in"
        " sys.modules]\nprint(report.ok, heavy)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_ENDPOINT": DOWN}
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "True []"
