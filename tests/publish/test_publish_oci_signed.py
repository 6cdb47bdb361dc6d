"""``mdl publish --to oci://… --sign KEY.pem`` against a real distribution registry (no referrers
API: the ``sha256-<hex>`` tag's index is written) and, through the gate, one that answers the
referrers API (no tag written): the signature is a referrer of the manifest, a re-publish attaches
nothing, and a catalog naming the key pulls the artifact signed."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from referrers import BUNDLE, index_of, manifest_bytes
from registry import NEEDS_REGISTRY, DistributionRegistry, RegistryGate, distribution, registry_gate
from runfixtures import mdl
from servers import HubServer, make_data
from signkeys import key_pair, official_sign

pytestmark = NEEDS_REGISTRY
FILES = {"config.json": b'{"model_type": "tiny"}\n', "model.safetensors": make_data(70_000)}
NEW_CONFIG = b'{"model_type": "tiny", "v": 2}\n'


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DistributionRegistry]:
    with distribution(tmp_path_factory.mktemp("registry")) as started:
        yield started


@pytest.fixture
def gate(registry: DistributionRegistry) -> Iterator[RegistryGate]:
    with registry_gate(registry.url) as made:
        yield made


@pytest.fixture
def pulled(hub: HubServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """`tiny` pulled from the Hub stand-in into ./a, with a catalog naming it."""
    hub.add_repo("org/tiny", FILES)
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "catalog.toml").write_text('[models.tiny]\nrepo = "org/tiny"\n')
    done = mdl("pull", "tiny", "--dest", str(tmp_path / "a"))
    assert done.exit_code == 0, done.stderr
    return tmp_path / "a"


def publish(dest: Path, to: str, *extra: str) -> dict[str, Any]:
    done = mdl("publish", "tiny", "--to", to, "--dest", str(dest), "--json", *extra)
    assert done.exit_code == 0, done.stderr
    return dict(json.loads(done.stdout))


def signature_row(report: dict[str, Any]) -> dict[str, Any]:
    return next(f for f in report["files"] if f["path"] == "model.sig")


def pushes(gate: RegistryGate) -> list[str]:
    return [
        f"{s.method} {s.path.split('?')[0]}" for s in gate.seen if s.method not in ("GET", "HEAD")
    ]


def test_publish_sign_attaches_a_referrer_once_and_a_signed_catalog_pulls_it(
    registry: DistributionRegistry,
    gate: RegistryGate,
    pulled: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    private, public = key_pair(tmp_path / "keys", "team")
    to = f"oci://{gate.url.removeprefix('http://')}/team/tiny:v1"
    first = publish(pulled, to, "--sign", str(private))
    row = signature_row(first)
    assert row["action"] == "uploaded", row
    (version,) = first["versions"]
    digest = version["manifest"].rpartition("@")[2]
    tagged = json.loads(manifest_bytes(registry, "team/tiny", digest.replace(":", "-")))
    (entry,) = tagged["manifests"]
    assert entry["artifactType"] == BUNDLE
    referrer = json.loads(manifest_bytes(registry, "team/tiny", entry["digest"]))
    assert referrer["subject"]["digest"] == digest
    assert referrer["layers"][0]["digest"] == f"sha256:{row['sha256']}"

    gate.clear()  # a re-publish: the same files, the same key: nothing sent
    again = publish(pulled, to, "--sign", str(private))
    assert signature_row(again)["action"] == "skipped"
    assert pushes(gate) == []

    node = tmp_path / "node"
    node.mkdir()
    (node / "catalog.toml").write_text(
        f'[models.tiny]\noci = "{to}"\n\n[models.tiny.signature]\nkey = "{public}"\n'
    )
    monkeypatch.chdir(node)
    done = mdl("pull", "tiny", "--dest", str(node / "models"))
    assert done.exit_code == 0, done.stderr
    sig = (node / "models" / "tiny" / "model.sig").read_bytes()
    assert hashlib.sha256(sig).hexdigest() == row["sha256"]
    assert (node / "models" / "tiny" / "model.safetensors").read_bytes() == FILES[
        "model.safetensors"
    ]


def test_a_signature_that_cannot_be_attached_leaves_the_tag_where_it_was(
    registry: DistributionRegistry,
    gate: RegistryGate,
    hub: HubServer,
    pulled: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """registries.md: a publish that fails leaves the tag where it was. The registry refusing the
    signature's referrer (a 503, a proxy's policy): the publish fails (exit 5) and the tag still
    names the signed version, so every node naming the key pulls it as before."""
    private, public = key_pair(tmp_path / "keys", "team")
    to = f"oci://{gate.url.removeprefix('http://')}/team/tiny:v1"
    (first,) = publish(pulled, to, "--sign", str(private))["versions"]
    hub.add_repo("org/tiny", {**FILES, "config.json": NEW_CONFIG})  # the next version
    assert mdl("pull", "tiny", "--dest", str(pulled)).exit_code == 0
    gate.refuse_body = lambda body: b'"subject"' in body  # the referrer manifest only
    done = mdl("publish", "tiny", "--to", to, "--dest", str(pulled), "--sign", str(private))
    assert done.exit_code == 5, done.stderr
    assert "published 0 models" in done.stderr
    tagged = manifest_bytes(registry, "team/tiny", "v1")
    assert f"sha256:{hashlib.sha256(tagged).hexdigest()}" == first["manifest"].rpartition("@")[2]
    node = tmp_path / "node"
    node.mkdir()
    (node / "catalog.toml").write_text(
        f'[models.tiny]\noci = "{to}"\n\n[models.tiny.signature]\nkey = "{public}"\n'
    )
    monkeypatch.chdir(node)
    pulled_again = mdl("pull", "tiny", "--dest", str(node / "models"))
    assert pulled_again.exit_code == 0, pulled_again.stderr
    assert (node / "models" / "tiny" / "config.json").read_bytes() == FILES["config.json"]
    # the registry taking it again: the next publish moves the tag, signed
    gate.refuse_body = None
    (second,) = publish(pulled, to, "--sign", str(private))["versions"]
    tagged = manifest_bytes(registry, "team/tiny", "v1")
    assert f"sha256:{hashlib.sha256(tagged).hexdigest()}" == second["manifest"].rpartition("@")[2]
    assert mdl("pull", "tiny", "--dest", str(node / "models")).exit_code == 0
    assert (node / "models" / "tiny" / "config.json").read_bytes() == NEW_CONFIG


def test_a_registry_with_the_referrers_api_gets_no_fallback_tag(
    registry: DistributionRegistry, gate: RegistryGate, pulled: Path, tmp_path: Path
) -> None:
    private, _ = key_pair(tmp_path / "keys", "team")
    to = f"oci://{gate.url.removeprefix('http://')}/team/api:v1"
    (version,) = publish(pulled, to)["versions"]
    digest = version["manifest"].rpartition("@")[2]
    gate.manifests[f"/v2/team/api/referrers/{digest}"] = index_of()  # the API, nothing yet
    gate.clear()
    row = signature_row(publish(pulled, to, "--sign", str(private)))
    assert row["action"] == "uploaded"
    sent = pushes(gate)
    assert any(p.startswith("PUT /v2/team/api/manifests/sha256:") for p in sent), sent
    assert not any("/manifests/sha256-" in p for p in sent), sent


def test_a_model_sig_of_its_own_is_a_layer_that_signs_it(
    hub: HubServer, gate: RegistryGate, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Hub repo that ships its publisher's model.sig: published as it is, its model.sig is a
    layer, and the catalog's key checks it with no referrer asked; ``--sign`` would replace it:
    exit 2 without ``--force``."""
    private, public = key_pair(tmp_path / "keys", "publisher")
    signed = tmp_path / "upstream"
    for path, data in FILES.items():
        (signed / path).parent.mkdir(parents=True, exist_ok=True)
        (signed / path).write_bytes(data)
    own = official_sign(signed, private)
    hub.add_repo("org/tiny", {**FILES, "model.sig": own})
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "catalog.toml").write_text('[models.tiny]\nrepo = "org/tiny"\n')
    assert mdl("pull", "tiny", "--dest", str(tmp_path / "a")).exit_code == 0
    to = f"oci://{gate.url.removeprefix('http://')}/team/own:v1"
    other, _ = key_pair(tmp_path / "keys", "team")
    refused = mdl(
        "publish", "tiny", "--to", to, "--dest", str(tmp_path / "a"), "--sign", str(other)
    )
    assert refused.exit_code == 2 and "--force" in refused.stderr, refused.stderr
    publish(tmp_path / "a", to)

    node = tmp_path / "node"
    node.mkdir()
    (node / "catalog.toml").write_text(
        f'[models.tiny]\noci = "{to}"\n\n[models.tiny.signature]\nkey = "{public}"\n'
    )
    monkeypatch.chdir(node)
    gate.clear()
    done = mdl("pull", "tiny", "--dest", str(node / "models"))
    assert done.exit_code == 0, done.stderr
    assert (node / "models" / "tiny" / "model.sig").read_bytes() == own
    assert not [s for s in gate.seen if "/referrers/" in s.path or "/manifests/sha256-" in s.path]
