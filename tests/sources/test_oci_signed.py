"""A signed catalog model in an OCI registry: its signature (model_signing's bundle) is a referrer
of its manifest, found through the referrers API or, on a registry without it (distribution 2.8),
the ``sha256-<hex>`` tag; held to the catalog's key and to exactly the manifest's files before a
byte of them moves; pinned by the lock, so a locked pull asks for blobs only."""

from __future__ import annotations

import hashlib
import json
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest
from referrers import BUNDLE, attach, index_of, manifest_bytes, referrer, tag_index
from registry import MANIFEST, DistributionRegistry, RegistryGate, registry_gate, sha256_digest
from runfixtures import mdl, use_catalog
from servers import make_data
from signkeys import key_pair, official_sign

from mdl.paths import parse_oci_ref
from mdl.redact import Secrets
from mdl.signing.library import sign_digests
from mdl.sources.oci import Registry
from mdl.sources.ocipush import RegistryWriter
from mdl.sources.ocisigs import attach_signature
from mdl.transfer.http import make_client

FILES = {"config.json": b'{"model_type": "tiny"}', "weights/model.safetensors": make_data(50_000)}


@pytest.fixture
def gate(plain_registry: DistributionRegistry) -> Iterator[RegistryGate]:
    with registry_gate(plain_registry.url) as started:
        started.token_auth = True  # anyone gets a token: the handshake runs on every request
        yield started


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Path]]:
    folder = tmp_path_factory.mktemp("keys")
    return {name: key_pair(folder, name) for name in ("team", "other")}


def bundle_of(folder: Path, files: dict[str, bytes], private: Path) -> bytes:
    """model_signing's own signature over ``files`` (its CLI, as a publisher signs)."""
    for path, data in files.items():
        (folder / path).parent.mkdir(parents=True, exist_ok=True)
        (folder / path).write_bytes(data)
    return official_sign(folder, private)


def signed_by(files: dict[str, bytes], private: Path) -> bytes:
    """The same signature made in this process (mdl's signer: model_signing's library)."""
    digests = {path: hashlib.sha256(data).hexdigest() for path, data in files.items()}
    return sign_digests(digests, private_key=private, model_name="tiny")


def signed_catalog(host: str, repository: str, public: Path) -> str:
    return (
        f'[models.tiny]\noci = "oci://{host}/{repository}:v1"\n\n'
        f'[models.tiny.signature]\nkey = "{public}"\n'
    )


def nothing_installed(folder: Path) -> bool:
    return not any((folder / path).exists() for path in (*FILES, "model.sig"))


def test_a_signed_model_pulls_locks_and_pulls_from_the_lock_by_blobs_only(
    plain_registry: DistributionRegistry,
    gate: RegistryGate,
    keys: dict[str, tuple[Path, Path]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    digest = plain_registry.push_model("sig/tiny", "v1", FILES)
    bundle = bundle_of(tmp_path / "signed", FILES, keys["team"][0])
    tag_index(
        plain_registry, "sig/tiny", digest, attach(plain_registry, "sig/tiny", digest, [bundle])
    )
    host = gate.url.removeprefix("http://")
    use_catalog(tmp_path, monkeypatch, signed_catalog(host, "sig/tiny", keys["team"][1]))

    pulled = mdl("pull", "tiny")
    assert pulled.exit_code == 0, pulled.stderr
    model = tmp_path / "models" / "tiny"
    assert {p: (model / p).read_bytes() for p in FILES} == FILES
    assert (model / "model.sig").read_bytes() == bundle
    assert mdl("verify", "tiny").exit_code == 0

    locked = mdl("lock", "tiny")
    assert locked.exit_code == 0, locked.stderr
    (entry,) = tomllib.loads((tmp_path / "catalog.lock").read_text())["model"]
    sig = next(f for f in entry["files"] if f["path"] == "model.sig")
    assert sig["source"] == f"oci://{host}/sig/tiny@{digest}/model.sig"
    assert sig["sha256"] == hashlib.sha256(bundle).hexdigest()
    checked = mdl("lock", "--check")
    assert checked.exit_code == 0, checked.stderr

    gate.clear()
    again = mdl("pull", "tiny", "--locked", "--dest", str(tmp_path / "again"))
    assert again.exit_code == 0, again.stderr
    assert (tmp_path / "again" / "tiny" / "model.sig").read_bytes() == bundle
    asked = [s.path for s in gate.requests() if s.path.startswith("/v2/")]
    assert asked and all("/blobs/sha256:" in path for path in asked), asked

    # the pinned bundle's bytes changed in the registry: refused before any file moves
    stored = plain_registry.blob_file("sha256:" + hashlib.sha256(bundle).hexdigest())
    stored.write_bytes(bundle.replace(b'"', b"'", 1))
    tampered = mdl("pull", "tiny", "--locked", "--dest", str(tmp_path / "third"))
    assert tampered.exit_code == 6, tampered.stderr
    assert nothing_installed(tmp_path / "third" / "tiny")


def test_the_referrers_api_is_asked_before_the_tag_schema(
    plain_registry: DistributionRegistry,
    gate: RegistryGate,
    keys: dict[str, tuple[Path, Path]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    digest = plain_registry.push_model("sig/api", "v1", FILES)
    bundle = signed_by(FILES, keys["team"][0])
    entries = attach(plain_registry, "sig/api", digest, [bundle])
    # the gate answers the referrers API distribution 2.8 lacks; no fallback tag is pushed
    gate.manifests[f"/v2/sig/api/referrers/{digest}"] = index_of(*entries)
    host = gate.url.removeprefix("http://")
    use_catalog(tmp_path, monkeypatch, signed_catalog(host, "sig/api", keys["team"][1]))
    pulled = mdl("pull", "tiny")
    assert pulled.exit_code == 0, pulled.stderr
    assert (tmp_path / "models" / "tiny" / "model.sig").read_bytes() == bundle
    asked = [s.path for s in gate.requests()]
    assert any("/referrers/" in path and "artifactType=" in path for path in asked), asked
    assert not any("/manifests/sha256-" in path for path in asked), asked


def test_a_planted_referrer_is_passed_over_and_alone_is_refused(
    plain_registry: DistributionRegistry,
    gate: RegistryGate,
    keys: dict[str, tuple[Path, Path]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    digest = plain_registry.push_model("sig/planted", "v1", FILES)
    theirs = signed_by(FILES, keys["other"][0])
    ours = signed_by(FILES, keys["team"][0])
    host = gate.url.removeprefix("http://")
    use_catalog(tmp_path, monkeypatch, signed_catalog(host, "sig/planted", keys["team"][1]))

    planted = attach(plain_registry, "sig/planted", digest, [theirs])
    tag_index(plain_registry, "sig/planted", digest, planted)
    refused = mdl("pull", "tiny")
    assert refused.exit_code == 6, refused.stderr
    assert "model.sig" in refused.stderr
    assert nothing_installed(tmp_path / "models" / "tiny")
    assert not [s for s in gate.requests() if s.path.endswith(weights_blob(FILES))]

    # the team's own beside it: the planted one is passed over (said), the team's holds
    tag_index(
        plain_registry,
        "sig/planted",
        digest,
        planted + attach(plain_registry, "sig/planted", digest, [ours]),
    )
    pulled = mdl("pull", "tiny", "--json")
    assert pulled.exit_code == 0, pulled.stderr
    assert (tmp_path / "models" / "tiny" / "model.sig").read_bytes() == ours
    # said where its operator sees it: on stderr, in --json (anyone who may push can plant one)
    said = f"(the referrer bundle {sha256_digest(theirs)}); passed over"
    assert "mdl: warning: tiny/model.sig: the signature does not verify" in pulled.stderr
    assert said in pulled.stderr
    assert all(said in f["warning"] for f in json.loads(pulled.stdout)["files"])
    assert said in (tmp_path / "mdl.log").read_text()


def test_a_referrer_stating_more_than_a_signature_is_passed_over_unfetched(
    plain_registry: DistributionRegistry,
    gate: RegistryGate,
    keys: dict[str, tuple[Path, Path]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A referrer is a pointer anyone who may push can plant: one whose bundle it states is bigger
    than any signature (the model's own weights, say) costs no byte, only a warning."""
    from mdl.signing.library import MAX_SIGNATURE_BYTES

    digest = plain_registry.push_model("sig/big", "v1", FILES)
    ours = signed_by(FILES, keys["team"][0])
    host = gate.url.removeprefix("http://")
    use_catalog(tmp_path, monkeypatch, signed_catalog(host, "sig/big", keys["team"][1]))
    huge = b"x" * 64  # stated as MAX_SIGNATURE_BYTES + 1 bytes: never asked for
    body = json.loads(
        referrer(digest, len(manifest_bytes(plain_registry, "sig/big", digest)), huge)
    )
    body["layers"][0]["size"] = MAX_SIGNATURE_BYTES + 1
    raw = json.dumps(body).encode()
    plain_registry.push_blob("sig/big", huge)
    big = (plain_registry.push_manifest("sig/big", sha256_digest(raw), raw), len(raw))
    tag_index(
        plain_registry, "sig/big", digest, [big, *attach(plain_registry, "sig/big", digest, [ours])]
    )
    pulled = mdl("pull", "tiny")
    assert pulled.exit_code == 0, pulled.stderr
    assert f"more than {MAX_SIGNATURE_BYTES} bytes is not a model signature" in pulled.stderr
    assert not [s for s in gate.requests() if s.path.endswith(sha256_digest(huge))]
    assert (tmp_path / "models" / "tiny" / "model.sig").read_bytes() == ours


def weights_blob(files: dict[str, bytes]) -> str:
    """The weights' blob path tail (never asked for when the model is refused)."""
    return "sha256:" + hashlib.sha256(files["weights/model.safetensors"]).hexdigest()


@pytest.mark.parametrize(
    ("signed", "said"),
    [
        ({**FILES, "extra.bin": b"another version's"}, "its manifest does not have: extra.bin"),
        ({"config.json": FILES["config.json"]}, "does not cover 1 file"),
        ({**FILES, "config.json": b"{}"}, "does not cover 1 file"),
    ],
    ids=["more-files", "fewer-files", "other-bytes"],
)
def test_a_signature_of_other_files_is_refused(
    plain_registry: DistributionRegistry,
    gate: RegistryGate,
    keys: dict[str, tuple[Path, Path]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    signed: dict[str, bytes],
    said: str,
) -> None:
    repository = f"sig/other-{len(signed)}-{hashlib.sha256(signed['config.json']).hexdigest()[:6]}"
    digest = plain_registry.push_model(repository, "v1", FILES)
    bundle = signed_by(signed, keys["team"][0])
    tag_index(
        plain_registry, repository, digest, attach(plain_registry, repository, digest, [bundle])
    )
    host = gate.url.removeprefix("http://")
    use_catalog(tmp_path, monkeypatch, signed_catalog(host, repository, keys["team"][1]))
    done = mdl("pull", "tiny")
    assert done.exit_code == 6, done.stderr
    assert said in done.stderr
    assert nothing_installed(tmp_path / "models" / "tiny")


def test_a_tampered_signature_blob_is_refused(
    plain_registry: DistributionRegistry,
    gate: RegistryGate,
    keys: dict[str, tuple[Path, Path]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    digest = plain_registry.push_model("sig/tampered", "v1", FILES)
    bundle = signed_by(FILES, keys["team"][0])
    entries = attach(plain_registry, "sig/tampered", digest, [bundle])
    tag_index(plain_registry, "sig/tampered", digest, entries)
    stored = plain_registry.blob_file("sha256:" + hashlib.sha256(bundle).hexdigest())
    stored.write_bytes(bundle.replace(b'"', b"'", 1))  # the same size, other bytes
    host = gate.url.removeprefix("http://")
    use_catalog(tmp_path, monkeypatch, signed_catalog(host, "sig/tampered", keys["team"][1]))
    done = mdl("pull", "tiny")
    assert done.exit_code == 6, done.stderr
    assert nothing_installed(tmp_path / "models" / "tiny")


def test_an_unsigned_model_whose_catalog_names_a_signer_is_refused(
    plain_registry: DistributionRegistry,
    gate: RegistryGate,
    keys: dict[str, tuple[Path, Path]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    plain_registry.push_model("sig/none", "v1", FILES)
    host = gate.url.removeprefix("http://")
    text = f'[settings.signature]\nkey = "{keys["team"][1]}"\n\n[models.tiny]\n'
    use_catalog(tmp_path, monkeypatch, text + f'oci = "oci://{host}/sig/none:v1"\n')
    done = mdl("pull", "tiny")
    assert done.exit_code == 6, done.stderr
    assert "has none" in done.stderr
    assert nothing_installed(tmp_path / "models" / "tiny")
    assert not [s for s in gate.requests() if "/blobs/" in s.path]


def test_a_signature_attached_by_mdl_is_read_back_and_the_tag_keeps_every_referrer(
    plain_registry: DistributionRegistry,
    keys: dict[str, tuple[Path, Path]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The write side (``attach_signature``, what ``publish --to oci://… --sign`` runs) on a
    registry without the referrers API: a referrer by digest, the ``sha256-<hex>`` index made,
    then added to (a cosign referrer already there is kept); a pull checks what it attached."""
    digest = plain_registry.push_model("sig/written", "v1", FILES)
    subject = manifest_bytes(plain_registry, "sig/written", digest)
    foreign = attach(plain_registry, "sig/written", digest, [signed_by(FILES, keys["other"][0])])
    tag_index(plain_registry, "sig/written", digest, foreign)
    bundle = signed_by(FILES, keys["team"][0])
    with make_client(pool_size=2, environ={}) as client:
        registry = Registry(client, environ={}, secrets=Secrets())
        ref = parse_oci_ref(f"oci://{plain_registry.host}/sig/written")
        writer = RegistryWriter(registry, ref)
        made = attach_signature(writer, subject, bundle, what="tiny")
        assert attach_signature(writer, subject, bundle, what="tiny") == made  # once in the index
    tagged = json.loads(manifest_bytes(plain_registry, "sig/written", f"sha256-{digest[7:]}"))
    assert [m["digest"] for m in tagged["manifests"]] == [foreign[0][0], made]
    referrer = json.loads(manifest_bytes(plain_registry, "sig/written", made))
    assert referrer["subject"] == {"mediaType": MANIFEST, "digest": digest, "size": len(subject)}
    assert referrer["config"]["mediaType"] == "application/vnd.oci.empty.v1+json"
    assert referrer["artifactType"] == referrer["layers"][0]["mediaType"] == BUNDLE

    use_catalog(
        tmp_path, monkeypatch, signed_catalog(plain_registry.host, "sig/written", keys["team"][1])
    )
    pulled = mdl("pull", "tiny")
    assert pulled.exit_code == 0, pulled.stderr
    assert (tmp_path / "models" / "tiny" / "model.sig").read_bytes() == bundle


def test_pull_unsigned_fetches_an_unsigned_version_and_leaves_it_partial(
    plain_registry: DistributionRegistry,
    keys: dict[str, tuple[Path, Path]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    plain_registry.push_model("sig/unsigned", "v1", FILES)
    catalog = signed_catalog(plain_registry.host, "sig/unsigned", keys["team"][1])
    use_catalog(tmp_path, monkeypatch, catalog)
    done = mdl("pull", "tiny", "--unsigned", "--json")
    assert done.exit_code == 0, done.stderr
    model = tmp_path / "models" / "tiny"
    assert {p: (model / p).read_bytes() for p in FILES} == FILES
    assert not (model / "model.sig").exists()
    assert "--unsigned" in done.stdout
    assert '"partial"' in mdl("list", "--json").stdout
    assert mdl("verify", "tiny").exit_code != 0


def test_a_referrers_answer_that_is_no_index_is_a_bad_reply(
    plain_registry: DistributionRegistry,
    gate: RegistryGate,
    keys: dict[str, tuple[Path, Path]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    digest = plain_registry.push_model("sig/hostile", "v1", FILES)
    not_an_index = manifest_bytes(plain_registry, "sig/hostile", digest)  # an image manifest
    gate.manifests[f"/v2/sig/hostile/referrers/{digest}"] = not_an_index
    host = gate.url.removeprefix("http://")
    use_catalog(tmp_path, monkeypatch, signed_catalog(host, "sig/hostile", keys["team"][1]))
    done = mdl("pull", "tiny")
    assert done.exit_code == 5, done.stderr
    assert f"the referrers of {digest}" in done.stderr and "not an index" in done.stderr
    assert nothing_installed(tmp_path / "models" / "tiny")
