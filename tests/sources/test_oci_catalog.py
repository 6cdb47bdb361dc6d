"""A catalog model in an OCI registry (``oci = "oci://…"``): pulled, locked by its manifest
digest and each file's sha256, and pulled from the lock asking the registry for blobs only."""

from __future__ import annotations

import hashlib
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest
from registry import DistributionRegistry, RegistryGate, registry_gate
from runfixtures import mdl, use_catalog
from servers import make_data

FILES = {"config.json": b'{"model_type": "tiny"}', "weights/model.safetensors": make_data(90_000)}


@pytest.fixture
def registry(plain_registry: DistributionRegistry) -> DistributionRegistry:
    return plain_registry


@pytest.fixture
def gate(registry: DistributionRegistry) -> Iterator[RegistryGate]:
    with registry_gate(registry.url) as started:
        started.token_auth = True  # anyone gets a token: the handshake runs on every pull
        yield started


def catalog_for(reference: str) -> str:
    return f'[models.tiny]\noci = "{reference}"\n'


def installed(folder: Path) -> dict[str, bytes]:
    return {path: (folder / path).read_bytes() for path in FILES}


def test_pull_lock_then_a_locked_pull_asks_for_blobs_only(
    registry: DistributionRegistry,
    gate: RegistryGate,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    digest = registry.push_model("cat/tiny", "v1", FILES)
    host = gate.url.removeprefix("http://")
    use_catalog(tmp_path, monkeypatch, catalog_for(f"oci://{host}/cat/tiny:v1"))
    pulled = mdl("pull", "tiny")
    assert pulled.exit_code == 0, pulled.stderr
    assert installed(tmp_path / "models" / "tiny") == FILES

    locked = mdl("lock", "tiny")
    assert locked.exit_code == 0, locked.stderr
    lock = tomllib.loads((tmp_path / "catalog.lock").read_text())
    (model,) = lock["model"]
    assert model["revision"] == "v1"
    sources = {f["path"]: f["source"] for f in model["files"]}
    assert sources == {path: f"oci://{host}/cat/tiny@{digest}/{path}" for path in FILES}

    # the tag moves on; the lock keeps the version it pinned, asking no manifest
    registry.push_model("cat/tiny", "v1", {"config.json": b"{}", "other.bin": b"new"})
    gate.clear()
    again = mdl("pull", "tiny", "--locked", "--dest", str(tmp_path / "again"))
    assert again.exit_code == 0, again.stderr
    assert installed(tmp_path / "again" / "tiny") == FILES
    asked = [s.path for s in gate.requests() if s.path.startswith("/v2/")]
    assert asked and all("/blobs/sha256:" in path for path in asked), asked


@pytest.mark.parametrize(
    ("entry", "said"),
    [
        ('oci = "oci://reg.example/team/m:v1"\nrepo = "a/b"', "has both 'oci' and 'repo'"),
        ('oci = "https://reg.example/team/m"', "not an OCI reference"),
        ('oci = "oci://reg.example/Team/m"', "not an OCI reference"),
        (f'oci = "oci://reg.example/team/m@md5:{"a" * 32}"', "not a sha256 digest"),
    ],
)
def test_a_bad_oci_entry_is_a_catalog_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, entry: str, said: str
) -> None:
    use_catalog(tmp_path, monkeypatch, f"[models.m]\n{entry}\n")
    done = mdl("pull", "m")
    assert done.exit_code == 2
    assert said in done.stderr


def test_the_hf_cache_layout_keeps_an_oci_model_plain(
    registry: DistributionRegistry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    registry.push_model("cat/cache", "v1", FILES)
    use_catalog(tmp_path, monkeypatch, catalog_for(f"oci://{registry.host}/cat/cache:v1"))
    done = mdl("pull", "tiny", "--layout", "hf-cache")
    assert done.exit_code == 0, done.stderr
    assert installed(tmp_path / "models" / "tiny") == FILES  # no Hub repo: no place in the cache


def test_frozen_with_the_registry_down_reads_the_shared_mirror(
    registry: DistributionRegistry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    registry.push_model("cat/mirrored", "v1", FILES)
    shared = tmp_path / "shared"
    for path, data in FILES.items():
        (shared / "tiny").mkdir(parents=True, exist_ok=True)
        (shared / "tiny" / hashlib.sha256(data).hexdigest()).write_bytes(data)
    with registry_gate(registry.url) as gate:
        host = gate.url.removeprefix("http://")
        text = f'[settings]\nmirrors = ["file://{shared}/{{model}}/{{sha256}}"]\n\n'
        use_catalog(tmp_path, monkeypatch, text + catalog_for(f"oci://{host}/cat/mirrored:v1"))
        locked = mdl("lock", "tiny")
        assert locked.exit_code == 0, locked.stderr
    # the gate is gone: the registry's address answers nothing now
    done = mdl("pull", "tiny", "--frozen", "--dest", str(tmp_path / "node"))
    assert done.exit_code == 0, done.stderr
    assert installed(tmp_path / "node" / "tiny") == FILES
