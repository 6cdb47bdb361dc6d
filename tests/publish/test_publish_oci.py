"""``mdl publish --to oci://…`` against a real distribution registry: a CNCF ModelPack artifact
that ``mdl get``, ``oras`` and ``skopeo`` read as the same files; a re-publish sends no blob; a
version that changes one shard of four sends that shard, the config and the manifest; a chunked
upload cut mid-way resumes from the registry's Range; a size limit is named; a token registry's
push scope; mounts across repositories."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest
from registry import (
    MANIFEST,
    MODELPACK,
    NEEDS_REGISTRY,
    DistributionRegistry,
    RegistryGate,
    distribution,
    registry_gate,
    sha256_digest,
)
from registrytokens import token_service
from runfixtures import mdl
from servers import HubServer, make_data
from typer.testing import Result

pytestmark = NEEDS_REGISTRY
CREATED = "org.opencontainers.image.created"
MiB = 1 << 20
SHARDS = {f"model-0000{i}-of-00004.safetensors": make_data(MiB + i, seed=i) for i in range(1, 5)}
FILES = {
    "config.json": b'{"model_type": "tiny"}\n',
    "README.md": b"# tiny\n",
    "empty.txt": b"",
    "nested/tokenizer.json": make_data(3000, seed=9),
    **SHARDS,
}


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


def publish(dest: Path, to: str, *extra: str) -> Result:
    return mdl("publish", "tiny", "--to", to, "--dest", str(dest), "--json", *extra)


def read_tree(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and ".mdl" not in p.relative_to(folder).parts
    }


def host_of(url: str) -> str:
    return url.removeprefix("http://")


def uploads(gate: RegistryGate) -> list[str]:
    """What the registry was sent (each POST, PATCH and PUT), by method and path."""
    return [
        f"{s.method} {s.path.split('?')[0]}"
        for s in gate.seen
        if s.method != "GET" and s.method != "HEAD"
    ]


def manifest_of(registry: DistributionRegistry, repository: str, tag: str) -> dict[str, Any]:
    got = httpx2.get(
        f"{registry.url}/v2/{repository}/manifests/{tag}", headers={"Accept": MANIFEST}
    )
    assert got.status_code == 200, got.text
    doc: dict[str, Any] = json.loads(got.content)
    return doc


def test_publish_writes_a_modelpack_artifact_that_get_reads_back(
    pulled: Path, registry: DistributionRegistry, tmp_path: Path
) -> None:
    done = publish(pulled, f"oci://{registry.host}/team/tiny:v1")
    assert done.exit_code == 0, done.stderr
    report = json.loads(done.stdout)
    assert {f["action"] for f in report["files"]} == {"uploaded"}
    assert report["template"] == f"oci://{registry.host}/team/tiny"
    (version,) = report["versions"]
    doc = manifest_of(registry, "team/tiny", "v1")
    assert version["manifest"].endswith(
        "@" + sha256_digest(json.dumps(doc, separators=(",", ":")).encode())
    )
    assert doc["artifactType"] == MODELPACK
    assert doc["config"]["mediaType"] == "application/vnd.cncf.model.config.v1+json"
    kinds = {
        layer["annotations"]["org.cncf.model.filepath"]: layer["mediaType"]
        for layer in doc["layers"]
    }
    assert kinds["README.md"] == "application/vnd.cncf.model.doc.v1.raw"
    assert kinds["config.json"] == "application/vnd.cncf.model.weight.config.v1.raw"
    assert kinds["model-00001-of-00004.safetensors"] == "application/vnd.cncf.model.weight.v1.raw"
    assert {layer["digest"] for layer in doc["layers"]} == {
        sha256_digest(d) for d in FILES.values()
    }
    config = httpx2.get(f"{registry.url}/v2/team/tiny/blobs/{doc['config']['digest']}").json()
    assert config["modelfs"] == {
        "type": "layers",
        "diffIds": [layer["digest"] for layer in doc["layers"]],
    }
    assert config["descriptor"]["name"] == "tiny"
    got = mdl("get", f"oci://{registry.host}/team/tiny:v1", "-d", str(tmp_path / "back"))
    assert got.exit_code == 0, got.stderr
    assert read_tree(tmp_path / "back") == FILES
    said = mdl(
        "publish", "tiny", "--to", f"oci://{registry.host}/team/tiny:v1", "--dest", str(pulled)
    )
    assert said.exit_code == 0, said.stderr
    assert f"tiny → {version['manifest']} ({len(FILES)} files" in said.stderr
    assert "manifest already there" in said.stderr
    assert f"nodes: --mirror oci://{registry.host}/team/tiny" in said.stderr


def test_republish_sends_nothing_and_a_changed_shard_sends_itself_config_and_manifest(
    pulled: Path,
    hub: HubServer,
    gate: RegistryGate,
    registry: DistributionRegistry,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    to = f"oci://{host_of(gate.url)}/team/shards"
    clock = iter(
        ["2026-11-01T10:00:00.000Z", "2026-11-02T10:00:00.000Z", "2026-11-03T10:00:00.000Z"]
    )
    monkeypatch.setattr("mdl.upload.ocipublish.created_now", lambda: next(clock))
    first = publish(pulled, to)
    assert first.exit_code == 0, first.stderr
    stamped = manifest_of(registry, "team/shards", "latest")
    assert stamped["annotations"] == {CREATED: "2026-11-01T10:00:00.000Z"}  # the publisher's clock
    gate.clear()
    again = publish(pulled, to)  # a day later: the same config and layers
    assert again.exit_code == 0, again.stderr
    assert uploads(gate) == []  # no blob, no manifest PUT
    assert manifest_of(registry, "team/shards", "latest") == stamped  # its first time kept
    report = json.loads(again.stdout)
    assert {f["action"] for f in report["files"]} == {"skipped"}
    assert report["versions"][0]["action"] == "skipped"
    assert report["versions"][0]["manifest"] == json.loads(first.stdout)["versions"][0]["manifest"]
    # the next version: shard 2 of 4 changed upstream, pulled, published
    changed = {**FILES, "model-00002-of-00004.safetensors": make_data(MiB + 2, seed=77)}
    hub.add_repo("org/tiny", changed)
    assert mdl("pull", "tiny", "--dest", str(pulled)).exit_code == 0
    gate.clear()
    third = publish(pulled, to)
    assert third.exit_code == 0, third.stderr
    sent = uploads(gate)
    puts = [p for p in sent if p.startswith("PUT ")]
    assert len([p for p in puts if "/blobs/uploads/" in p]) == 2  # the shard and the config
    assert [p for p in puts if "/manifests/" in p] == ["PUT /v2/team/shards/manifests/latest"]
    rows = {f["path"]: f["action"] for f in json.loads(third.stdout)["files"]}
    assert manifest_of(registry, "team/shards", "latest")["annotations"] == {
        CREATED: "2026-11-03T10:00:00.000Z"
    }
    assert [p for p, a in rows.items() if a == "uploaded"] == ["model-00002-of-00004.safetensors"]


def test_a_head_that_states_another_blob_is_no_proof_the_registry_holds_it(
    pulled: Path, gate: RegistryGate, tmp_path: Path
) -> None:
    gate.lying_heads = True  # every blob HEAD: 200, Content-Length 1, a digest of zeros
    done = publish(pulled, f"oci://{host_of(gate.url)}/team/lied:v1")
    assert done.exit_code == 0, done.stderr
    assert {f["action"] for f in json.loads(done.stdout)["files"]} == {"uploaded"}
    gate.lying_heads = False
    got = mdl("get", f"oci://{host_of(gate.url)}/team/lied:v1", "-d", str(tmp_path / "back"))
    assert got.exit_code == 0, got.stderr
    assert read_tree(tmp_path / "back") == FILES


def test_a_cut_chunk_resumes_from_the_registrys_range(
    pulled: Path, gate: RegistryGate, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MDL_INTERNAL_OCI_CHUNK", str(256 * 1024))
    monkeypatch.setenv("MDL_CONNECTIONS", "1")  # a blob at a time: the requests in order
    # the second PATCH (of the first shard's second chunk) is cut mid-body, 100 kB in
    gate.cut_patch_after, gate.patches_before_cut = 100_000, 1
    done = publish(pulled, f"oci://{host_of(gate.url)}/team/resumed:v1")
    assert done.exit_code == 0, done.stderr
    pushes = [s for s in gate.seen if s.method in ("PATCH", "PUT", "GET")]
    status = [i for i, s in enumerate(pushes) if s.method == "GET" and "/uploads/" in s.path]
    assert len(status) == 1  # where the session stood, asked once
    before, after = pushes[status[0] - 1], pushes[status[0] + 1]
    assert (before.method, before.range) == ("PATCH", "262144-524287")  # the one cut
    assert (after.method, after.range) == ("PATCH", "262144-524287")  # again, not from 0
    got = mdl("get", f"oci://{host_of(gate.url)}/team/resumed:v1", "-d", str(tmp_path / "back"))
    assert got.exit_code == 0, got.stderr
    assert read_tree(tmp_path / "back") == FILES


def test_a_size_limit_is_named_with_the_layer(pulled: Path, gate: RegistryGate) -> None:
    gate.max_body = 512 * 1024
    done = publish(pulled, f"oci://{host_of(gate.url)}/team/limited:v1")
    assert done.exit_code == 5, done.stderr
    assert "too large" in done.stderr and "524288 bytes" in done.stderr
    assert "model-00001-of-00004.safetensors" in done.stderr
    assert not [s for s in gate.seen if "/manifests/" in s.path and s.method == "PUT"]


def test_a_token_registry_takes_a_push_with_the_login(
    pulled: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "reg").mkdir()
    with (
        token_service(login=("ci", "s3cret-pass")) as tokens,
        distribution(tmp_path / "reg", tokens=tokens) as registry,
    ):
        to = f"oci://{registry.host}/team/tiny:v1"
        refused = publish(pulled, to)
        assert refused.exit_code == 3, refused.stderr
        auth = tmp_path / "auth.json"
        auth.write_text(json.dumps({"auths": {registry.host: {"auth": "Y2k6czNjcmV0LXBhc3M="}}}))
        monkeypatch.setenv("REGISTRY_AUTH_FILE", str(auth))
        done = publish(pulled, to)
        assert done.exit_code == 0, done.stderr
        assert "s3cret-pass" not in done.stdout + done.stderr
        got = mdl("get", to, "-d", str(tmp_path / "back"))
        assert got.exit_code == 0, got.stderr
        assert read_tree(tmp_path / "back") == FILES


def test_all_models_a_repository_each_shared_blobs_mounted(
    pulled: Path, gate: RegistryGate, hub: HubServer, tmp_path: Path
) -> None:
    hub.add_repo("org/twin", FILES)
    (tmp_path / "catalog.toml").write_text(
        '[models.tiny]\nrepo = "org/tiny"\n[models.twin]\nrepo = "org/twin"\n'
    )
    assert mdl("pull", "twin", "--dest", str(pulled)).exit_code == 0
    to = f"oci://{host_of(gate.url)}/fleet/{{model}}:v1"
    one = mdl(
        "publish", "--all", "--to", f"oci://{host_of(gate.url)}/fleet/one", "--dest", str(pulled)
    )
    assert one.exit_code == 2 and "{model}" in one.stderr
    done = mdl("publish", "--all", "--to", to, "--dest", str(pulled), "--json")
    assert done.exit_code == 0, done.stderr
    rows = json.loads(done.stdout)["files"]
    assert {f["action"] for f in rows if f["model"] == "tiny"} == {"uploaded"}
    assert {f["reason"].split(" (")[0] for f in rows if f["model"] == "twin"} == {
        "mounted from fleet/tiny"
    }
    mounts = [s for s in gate.seen if s.method == "POST" and "mount=" in s.path]
    assert len(mounts) == len(FILES)
    got = mdl("get", f"oci://{host_of(gate.url)}/fleet/twin:v1", "-d", str(tmp_path / "back"))
    assert got.exit_code == 0, got.stderr
    assert read_tree(tmp_path / "back") == FILES


def test_oras_pulls_what_mdl_published(
    pulled: Path, registry: DistributionRegistry, tmp_path: Path
) -> None:
    oras = pytest.importorskip("oras.client")
    assert publish(pulled, f"oci://{registry.host}/team/orasread:v1").exit_code == 0
    client = oras.OrasClient(hostname=registry.host, insecure=True)
    client.pull(target=f"{registry.host}/team/orasread:v1", outdir=str(tmp_path / "oras"))
    assert read_tree(tmp_path / "oras") == FILES


def test_skopeo_copies_what_mdl_published(
    pulled: Path, registry: DistributionRegistry, tmp_path: Path
) -> None:
    skopeo = shutil.which("skopeo")
    if skopeo is None:
        pytest.skip("skopeo is not installed (apt-get install skopeo)")
    assert publish(pulled, f"oci://{registry.host}/team/skopeo:v1").exit_code == 0
    done = subprocess.run(
        [
            skopeo,
            "copy",
            "--src-tls-verify=false",
            f"docker://{registry.host}/team/skopeo:v1",
            f"oci:{tmp_path / 'layout'}",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    index = json.loads((tmp_path / "layout" / "index.json").read_text())
    digest = index["manifests"][0]["digest"].removeprefix("sha256:")
    doc = json.loads((tmp_path / "layout" / "blobs" / "sha256" / digest).read_text())
    copied = {
        layer["annotations"]["org.cncf.model.filepath"]: (
            tmp_path / "layout" / "blobs" / "sha256" / layer["digest"].removeprefix("sha256:")
        ).read_bytes()
        for layer in doc["layers"]
    }
    assert copied == FILES


def test_mdl_gets_what_oras_pushed(
    registry: DistributionRegistry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    oras = pytest.importorskip("oras.client")
    files = {"weights.safetensors": make_data(2 * MiB + 3, seed=21), "config.json": b"{}\n"}
    (tmp_path / "up").mkdir()
    for name, data in files.items():
        (tmp_path / "up" / name).write_bytes(data)
    monkeypatch.chdir(tmp_path / "up")
    client = oras.OrasClient(hostname=registry.host, insecure=True)
    client.push(target=f"{registry.host}/team/byoras:v1", files=list(files), quiet=True)
    got = mdl("get", f"oci://{registry.host}/team/byoras:v1", "-d", str(tmp_path / "back"))
    assert got.exit_code == 0, got.stderr
    assert read_tree(tmp_path / "back") == files


def test_a_dry_run_asks_and_sends_nothing(pulled: Path, gate: RegistryGate) -> None:
    to = f"oci://{host_of(gate.url)}/team/dry:v1"
    done = publish(pulled, to, "--dry-run")
    assert done.exit_code == 0, done.stderr
    assert uploads(gate) == []
    assert {f["action"] for f in json.loads(done.stdout)["files"]} == {"upload"}
    assert publish(pulled, to).exit_code == 0
    again = publish(pulled, to, "--dry-run")
    assert {f["action"] for f in json.loads(again.stdout)["files"]} == {"skip"}
    assert json.loads(again.stdout)["versions"][0]["action"] == "skip"


def test_bad_targets_are_refused_before_anything_is_sent(
    pulled: Path, registry: DistributionRegistry
) -> None:
    digest = "sha256:" + "a" * 64
    for to, said in [
        (f"oci://{registry.host}/team/tiny@{digest}", "digest"),
        (f"oci://{registry.host}/Team/Tiny", "not an OCI reference"),
    ]:
        done = publish(pulled, to)
        assert done.exit_code == 2, done.stderr
        assert said in done.stderr
    signed = publish(pulled, f"oci://{registry.host}/team/tiny", "--sign", "key.pem")
    assert signed.exit_code == 2 and "signing key key.pem" in signed.stderr  # before any request


def test_a_registry_that_is_not_there_is_exit_5_naming_it(
    pulled: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from registry import free_port

    port = free_port()
    monkeypatch.setenv("MDL_RETRIES", "0")
    done = publish(pulled, f"oci://127.0.0.1:{port}/team/tiny:v1")
    assert done.exit_code == 5, done.stderr
    assert f"127.0.0.1:{port}" in done.stderr


def test_a_registry_busy_for_a_moment_is_asked_again(pulled: Path, gate: RegistryGate) -> None:
    gate.fail_pushes = 2  # the config's upload session: 503, twice
    done = publish(pulled, f"oci://{host_of(gate.url)}/team/busy:v1")
    assert done.exit_code == 0, done.stderr
    posts = [s for s in gate.seen if s.method == "POST"]
    assert len(posts) == len(FILES) + 1 + 2  # each blob's session, the config's, the two refused
