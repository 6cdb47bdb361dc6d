"""``mdl get oci://…`` against a real distribution registry: by tag and by digest, ModelPack and
oras annotations, an index, hostile manifests and a tampered blob."""

from __future__ import annotations

import json
from pathlib import Path

import httpx2
import pytest
from registry import (
    INDEX,
    MANIFEST,
    MODELPACK,
    NEEDS_REGISTRY,
    WEIGHT_RAW,
    DistributionRegistry,
    model_manifest,
    registry_gate,
    sha256_digest,
)
from runfixtures import mdl, use_catalog
from servers import make_data

pytestmark = NEEDS_REGISTRY


@pytest.fixture
def registry(plain_registry: DistributionRegistry) -> DistributionRegistry:
    return plain_registry


FILES = {
    "config.json": b'{"model_type": "tiny"}',
    "model.safetensors": make_data(3 << 20, seed=1),
    "sub/tokenizer.json": make_data(5000, seed=2),
}


def read_tree(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and ".mdl" not in p.relative_to(folder).parts
    }


def test_get_by_tag_and_by_digest(registry: DistributionRegistry, tmp_path: Path) -> None:
    digest = registry.push_model("team/tiny", "v1", FILES)
    by_tag = mdl("get", f"oci://{registry.host}/team/tiny:v1", "-d", str(tmp_path / "tag"))
    assert by_tag.exit_code == 0, by_tag.stderr
    assert read_tree(tmp_path / "tag") == FILES
    by_digest = mdl("get", f"oci://{registry.host}/team/tiny@{digest}", "-d", str(tmp_path / "dg"))
    assert by_digest.exit_code == 0, by_digest.stderr
    assert read_tree(tmp_path / "dg") == FILES


def test_oras_titles_are_files_as_oras_pull_writes_them(
    registry: DistributionRegistry, tmp_path: Path
) -> None:
    files = {"weights.bin": make_data(70_000, seed=3), "README.md": b"# tiny\n"}
    registry.push_model("team/oras", "latest", files, style="oras")
    done = mdl("get", f"oci://{registry.host}/team/oras", "-d", str(tmp_path))
    assert done.exit_code == 0, done.stderr
    assert read_tree(tmp_path) == files


def test_a_manifest_with_no_layers_is_exit_4_for_get_as_for_a_catalog_model(
    registry: DistributionRegistry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    registry.push_model("team/empty", "v1", {})
    reference = f"oci://{registry.host}/team/empty:v1"
    got = mdl("get", reference, "-d", str(tmp_path / "got"))
    assert got.exit_code == 4, got.stderr
    assert "has no layers that are files" in got.stderr and reference in got.stderr
    use_catalog(tmp_path, monkeypatch, f'[models.empty]\noci = "{reference}"\n')
    pulled = mdl("pull", "empty")
    assert pulled.exit_code == 4, pulled.stderr
    assert (
        "empty: " + reference in pulled.stderr and "has no layers that are files" in pulled.stderr
    )


def test_an_index_picks_the_model_artifact_not_the_platform_image(
    registry: DistributionRegistry, tmp_path: Path
) -> None:
    model = registry.push_model("team/mixed", "model-only", {"w.bin": b"model bytes"})
    model_body = httpx2.get(
        f"{registry.url}/v2/team/mixed/manifests/{model}", headers={"Accept": MANIFEST}
    ).content
    config = registry.push_blob("team/mixed", b"{}")
    layer = registry.push_blob("team/mixed", b"not a model: an image layer")
    image = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config,
                       "size": 2},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer,
                        "size": 27, "annotations": {"org.opencontainers.image.title": "w.bin"}}],
        }
    ).encode()  # fmt: skip
    image_digest = registry.push_manifest("team/mixed", sha256_digest(image), image)
    index = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": INDEX,
            "manifests": [
                {"mediaType": MANIFEST, "digest": image_digest, "size": len(image),
                 "platform": {"architecture": "amd64", "os": "linux"}},
                {"mediaType": MANIFEST, "digest": model, "size": len(model_body),
                 "artifactType": MODELPACK},
            ],
        }
    ).encode()  # fmt: skip
    registry.push_manifest("team/mixed", "v1", index, INDEX)
    done = mdl("get", f"oci://{registry.host}/team/mixed:v1", "-d", str(tmp_path / "m"))
    assert done.exit_code == 0, done.stderr
    assert read_tree(tmp_path / "m") == {"w.bin": b"model bytes"}
    only_images = json.loads(index)
    only_images["manifests"] = only_images["manifests"][:1]
    registry.push_manifest("team/mixed", "images", json.dumps(only_images).encode(), INDEX)
    refused = mdl("get", f"oci://{registry.host}/team/mixed:images", "-d", str(tmp_path / "i"))
    assert refused.exit_code == 5, refused.stderr
    assert "names no model artifact" in refused.stderr
    assert "a platform image" in refused.stderr
    # the hint's reference by digest said whole (a "…@" in it read as a login: oci://sha256:…)
    assert "(oci://REGISTRY/REPOSITORY@sha256:DIGEST)" in refused.stderr
    assert not (tmp_path / "i" / "w.bin").exists()


def test_a_tampered_blob_fails_naming_it_and_installs_nothing(
    registry: DistributionRegistry, tmp_path: Path
) -> None:
    good = make_data(200_000, seed=4)
    registry.push_model("team/tampered", "v1", {"a.bin": b"fine", "b.safetensors": good})
    stored = registry.blob_file(sha256_digest(good))
    stored.write_bytes(good[:-1] + bytes([good[-1] ^ 1]))  # one bit flipped on the registry's disk
    done = mdl("get", f"oci://{registry.host}/team/tampered:v1", "-d", str(tmp_path))
    assert done.exit_code == 6, done.stderr
    assert "b.safetensors" in done.stderr
    assert not (tmp_path / "b.safetensors").exists()


def test_a_digest_that_is_not_sha256_is_refused(
    registry: DistributionRegistry, tmp_path: Path
) -> None:
    given = mdl("get", f"oci://{registry.host}/team/tiny@sha512:{'ab' * 64}", "-d", str(tmp_path))
    assert given.exit_code == 2
    assert "not a sha256 digest" in given.stderr
    config = registry.push_blob("team/algo", b"{}")
    body = model_manifest(
        config,
        [{"mediaType": WEIGHT_RAW, "digest": "sha512:" + "ab" * 64, "size": 3,
          "annotations": {"org.cncf.model.filepath": "w.bin"}}],
    )  # fmt: skip
    with registry_gate(registry.url) as gate:
        gate.manifests["/v2/team/algo/manifests/v1"] = body
        host = gate.url.removeprefix("http://")
        done = mdl("get", f"oci://{host}/team/algo:v1", "-d", str(tmp_path))
    assert done.exit_code == 5, done.stderr
    assert "sha512:abab" in done.stderr and "not a sha256 digest" in done.stderr
    assert not (tmp_path / "w.bin").exists()


@pytest.mark.parametrize(
    "path", ["../escape.bin", "/etc/evil", "a/../../b", ".mdl/x", ".git/config"]
)
def test_a_layer_path_out_of_the_folder_is_refused(
    registry: DistributionRegistry, tmp_path: Path, path: str
) -> None:
    registry.push_model("team/escape", "v1", {"fine.bin": b"ok", path: b"evil"})
    done = mdl("get", f"oci://{registry.host}/team/escape:v1", "-d", str(tmp_path / "d"))
    assert done.exit_code in (2, 5), done.stderr
    assert "mdl cannot save" in done.stderr or "reserves for its own state" in done.stderr
    assert not (tmp_path / "escape.bin").exists() and not (tmp_path / "d" / ".git").exists()
    assert not (tmp_path / "d" / "fine.bin").exists()  # refused before anything was fetched


def test_a_tar_layer_is_refused_naming_it(registry: DistributionRegistry, tmp_path: Path) -> None:
    tar = "application/vnd.cncf.model.weight.v1.tar"
    registry.push_model("team/tar", "v1", {"w": b"tarball"}, layer_media_type=tar)
    done = mdl("get", f"oci://{registry.host}/team/tar:v1", "-d", str(tmp_path))
    assert done.exit_code == 5, done.stderr
    assert "is a tar archive" in done.stderr and sha256_digest(b"tarball") in done.stderr


def test_an_unknown_tag_is_not_found(registry: DistributionRegistry, tmp_path: Path) -> None:
    registry.push_model("team/tiny", "v1", FILES)
    done = mdl("get", f"oci://{registry.host}/team/tiny:nope", "-d", str(tmp_path))
    assert done.exit_code == 4, done.stderr
    assert "no manifest nope" in done.stderr


def test_a_manifest_that_is_not_the_digest_asked_is_refused(
    registry: DistributionRegistry, tmp_path: Path
) -> None:
    registry.push_model("team/swap", "v1", {"w.bin": b"one"})
    other = registry.push_model("team/swap", "v2", {"w.bin": b"two"})
    body = httpx2.get(
        f"{registry.url}/v2/team/swap/manifests/v1", headers={"Accept": MANIFEST}
    ).content
    with registry_gate(registry.url) as gate:
        gate.manifests[f"/v2/team/swap/manifests/{other}"] = body  # v1's, answered for v2's digest
        host = gate.url.removeprefix("http://")
        done = mdl("get", f"oci://{host}/team/swap@{other}", "-d", str(tmp_path))
    assert done.exit_code == 6, done.stderr
    assert f"the manifest the registry sent for {other} hashes to" in done.stderr
    assert not (tmp_path / "w.bin").exists()


def test_a_descriptor_size_bounds_the_read(registry: DistributionRegistry, tmp_path: Path) -> None:
    data = make_data(10_000, seed=9)
    registry.push_model("team/size", "v1", {"w.bin": data})
    config = registry.push_blob("team/size", b"{}")
    short = model_manifest(
        config,
        [{"mediaType": WEIGHT_RAW, "digest": sha256_digest(data), "size": 9_000,
          "annotations": {"org.cncf.model.filepath": "w.bin"}}],
    )  # fmt: skip
    with registry_gate(registry.url) as gate:
        gate.manifests["/v2/team/size/manifests/v1"] = short
        host = gate.url.removeprefix("http://")
        done = mdl("get", f"oci://{host}/team/size:v1", "-d", str(tmp_path))
    assert done.exit_code in (5, 6), done.stderr
    assert "w.bin" in done.stderr
    assert not (tmp_path / "w.bin").exists()


def test_a_second_get_is_a_no_op(registry: DistributionRegistry, tmp_path: Path) -> None:
    registry.push_model("team/again", "v1", FILES)
    first = mdl("get", f"oci://{registry.host}/team/again:v1", "-d", str(tmp_path), "--json")
    assert first.exit_code == 0, first.stderr
    second = mdl("get", f"oci://{registry.host}/team/again:v1", "-d", str(tmp_path), "--json")
    assert second.exit_code == 0, second.stderr
    assert '"skipped"' in second.stdout and '"downloaded"' not in second.stdout
