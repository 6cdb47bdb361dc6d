"""A registry as a read mirror (``mirrors = ["oci://REGISTRY/NAMESPACE/{model}"]``): a node reads
each file as the blob of its sha256 in ``NAMESPACE/<model>``, through the engine, with the
registry's token handshake, every byte verified; a blob the registry lacks falls to the next
source; bad bytes there never reach the model folder."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from registry import DistributionRegistry, RegistryGate, registry_gate
from runfixtures import mdl, use_catalog
from servers import make_data

from mdl.transfer import scheduling
from mdl.transfer.scheduling import SPLIT_THRESHOLD

# the origin answers nothing: a pull that asks it gives up at once
ORIGIN_DOWN = {"MDL_RETRIES": "0"}


@pytest.fixture
def registry(plain_registry: DistributionRegistry) -> DistributionRegistry:
    return plain_registry


@pytest.fixture
def mirror(registry: DistributionRegistry) -> Iterator[RegistryGate]:
    """The team's registry, as nodes reach it: a token for each repository, blobs answered with a
    307 to its storage (another origin)."""
    with registry_gate(registry.url) as started:
        started.token_auth = True
        started.redirect_blobs = True
        yield started


def files_for(seed: int) -> dict[str, bytes]:
    """A model's files, their bytes this test's own (the registry's blob store is shared)."""
    return {
        "config.json": b'{"model_type": "tiny", "seed": %d}' % seed,
        "weights/model.safetensors": make_data(70_000 + seed, seed=seed),
    }


def locked_catalog(
    registry: DistributionRegistry,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    files: dict[str, bytes],
    *,
    repository: str,
    mirrors: list[str],
) -> None:
    """A catalog of one model ``tiny`` in ``repository`` (its origin, behind a gate that is gone
    once the lock is written: nothing answers there now) with ``mirrors``, and its lock."""
    registry.push_model(repository, "v1", files)
    with registry_gate(registry.url) as origin:
        host = origin.url.removeprefix("http://")
        text = f"[settings]\nmirrors = {json.dumps(mirrors)}\n\n"
        text += f'[models.tiny]\noci = "oci://{host}/{repository}:v1"\n'
        use_catalog(tmp_path, monkeypatch, text)
        locked = mdl("lock", "tiny")
        assert locked.exit_code == 0, locked.stderr


def test_frozen_pull_reads_the_registry_mirror_alone(
    registry: DistributionRegistry,
    mirror: RegistryGate,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    files = files_for(1)
    for data in files.values():
        registry.push_blob("team/tiny", data)
    host = mirror.url.removeprefix("http://")
    template = f"oci://{host}/team/{{model}}"
    locked_catalog(
        registry, tmp_path, monkeypatch, files, repository="origin/one", mirrors=[template]
    )
    done = mdl("pull", "tiny", "--frozen", "--json", "--dest", str(tmp_path / "node"))
    assert done.exit_code == 0, done.stderr
    node = tmp_path / "node" / "tiny"
    assert {path: (node / path).read_bytes() for path in files} == files
    verified = mdl("verify", "tiny", "--quick", "--locked", "--dest", str(tmp_path / "node"))
    assert verified.exit_code == 0, verified.stderr  # recorded as verified, the lock's version
    report = json.loads(done.stdout)
    mirrored = {f["path"]: f.get("mirror") for f in report["files"] if f["path"]}
    assert mirrored == {
        path: f"{mirror.url}/v2/team/tiny/blobs/sha256:{hashlib.sha256(data).hexdigest()}"
        for path, data in files.items()
    }
    # the token handshake ran; the storage the registry redirects to never saw the token
    blobs = [s for s in mirror.requests("GET") if "/blobs/" in s.path]
    storage = {s.port for s in blobs if s.path.startswith("/storage/")}
    assert storage and all(s.authorization is None for s in blobs if s.port in storage)
    assert any(s.authorization and s.admitted for s in blobs if s.port not in storage)


def test_a_blob_the_registry_lacks_comes_from_the_next_mirror(
    registry: DistributionRegistry,
    mirror: RegistryGate,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    files = files_for(2)
    registry.push_blob("team/tiny", files["config.json"])  # the weights are not there
    shared = tmp_path / "shared" / "tiny"
    shared.mkdir(parents=True)
    weights = files["weights/model.safetensors"]
    (shared / hashlib.sha256(weights).hexdigest()).write_bytes(weights)
    host = mirror.url.removeprefix("http://")
    mirrors = [f"oci://{host}/team/{{model}}", f"file://{shared.parent}/{{model}}/{{sha256}}"]
    locked_catalog(registry, tmp_path, monkeypatch, files, repository="origin/two", mirrors=mirrors)
    done = mdl("pull", "tiny", "--frozen", "--dest", str(tmp_path / "node"))
    assert done.exit_code == 0, done.stderr
    node = tmp_path / "node" / "tiny"
    assert {path: (node / path).read_bytes() for path in files} == files
    assert "tiny/weights/model.safetensors: mirror" in done.stderr
    assert "trying the next source" in done.stderr


def test_a_tampered_blob_is_refused_and_nothing_is_installed(
    registry: DistributionRegistry,
    mirror: RegistryGate,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    files = files_for(3)
    weights = files["weights/model.safetensors"]
    locked_catalog(
        registry,
        tmp_path,
        monkeypatch,
        files,
        repository="origin/three",
        mirrors=[f"oci://{mirror.url.removeprefix('http://')}/team/{{model}}"],
    )
    for data in files.values():
        registry.push_blob("team/tiny", data)
    digest = "sha256:" + hashlib.sha256(weights).hexdigest()
    tampered = bytearray(weights)
    tampered[1000] ^= 0xFF
    registry.blob_file(digest).write_bytes(bytes(tampered))  # the registry serves what it holds
    done = mdl("pull", "tiny", "--frozen", "--dest", str(tmp_path / "node"), env=ORIGIN_DOWN)
    assert done.exit_code != 0
    assert f"/v2/team/tiny/blobs/{digest} holds bad bytes" in done.stderr
    assert not (tmp_path / "node" / "tiny" / "weights" / "model.safetensors").exists()


def test_frozen_with_the_registry_mirror_down_says_so(
    registry: DistributionRegistry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = files_for(4)
    with registry_gate(registry.url) as gone:
        dead = gone.url.removeprefix("http://")
    locked_catalog(
        registry,
        tmp_path,
        monkeypatch,
        files,
        repository="origin/four",
        mirrors=[f"oci://{dead}/team/{{model}}"],
    )
    done = mdl("pull", "tiny", "--frozen", "--dest", str(tmp_path / "node"), env=ORIGIN_DOWN)
    assert done.exit_code != 0
    assert f"mirror oci://{dead}/team/{{model}} is not usable" in done.stderr


def test_a_token_that_expires_mid_blob_is_renewed_without_asking_a_range_twice(
    registry: DistributionRegistry,
    mirror: RegistryGate,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    files = {"model.safetensors": make_data(SPLIT_THRESHOLD + 5000, seed=5)}
    # the blob in two pieces, no stream stealing the other's tail: the two ranges the test counts
    # are set here, not by the engine's piece size or which stream ends first
    monkeypatch.setattr(
        scheduling, "KEEP_AHEAD", len(files["model.safetensors"])
    )  # (two streams: halves)
    monkeypatch.setattr(scheduling, "MIN_STEAL", len(files["model.safetensors"]))
    registry.push_blob("team/tiny", files["model.safetensors"])
    mirrors = [f"oci://{mirror.url.removeprefix('http://')}/team/tiny"]  # one repository
    locked_catalog(
        registry, tmp_path, monkeypatch, files, repository="origin/five", mirrors=mirrors
    )
    mirror.token_uses, mirror.redirect_blobs = 1, False  # each token good for one request
    done = mdl("pull", "tiny", "--frozen", "--connections", "2", "--dest", str(tmp_path / "n"))
    assert done.exit_code == 0, done.stderr
    assert (tmp_path / "n" / "tiny" / "model.safetensors").read_bytes() == files[
        "model.safetensors"
    ]
    ranges = [s for s in mirror.requests("GET") if "/blobs/" in s.path]
    asked = [s.range for s in ranges if s.admitted]
    assert len(asked) == 2 and None not in asked and len(set(asked)) == 2
    assert len([s for s in mirror.requests() if s.path.startswith("/token")]) >= 2


@pytest.mark.parametrize(
    "template",
    [
        "oci://reg.example/team/{model}:v1",
        "oci://reg.example/team/{model}/{sha256}",
        "oci://reg.example/Team/{model}",
    ],
)
def test_a_registry_mirror_names_a_repository(
    template: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_catalog(tmp_path, monkeypatch, '[models.m]\noci = "oci://reg.example/team/m:v1"\n')
    done = mdl("pull", "m", "--mirror", template)
    assert done.exit_code == 2
    assert "a registry mirror names a repository" in done.stderr
