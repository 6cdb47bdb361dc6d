"""Every version `mdl publish` was given stays (issue 76): each file once, by its content, at
``P/<model>/<sha256>``, and each version's manifest at ``P/.mdl/versions/<model>/<id>.json``;
publishing v2 touches nothing of v1 (objects, manifest, signature), a re-publish writes nothing, a
manifest at the version's name that is not this version's is replaced, and a seeding machine whose
catalog gained a signer signs what it installed.

Each test runs against a real moto server and a real shared folder."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from runfixtures import mdl
from s3server import S3
from servers import HubServer, make_data
from typer.testing import Result

from mdl.buckets import versions
from mdl.errors import ExitCode
from mdl.signing.library import verify_signature
from mdl.signing.statement import Trust

BUCKET = "team-models"
TOKENIZER = b'{"vocab": ["a", "b"]}\n'
V1 = {
    "config.json": b'{"model_type": "llm", "layers": 2}\n',
    "model-00001-of-00002.safetensors": make_data(90_001, seed=1),
    "model-00002-of-00002.safetensors": make_data(70_003, seed=2),
    "tokenizer.json": TOKENIZER,
    "nested/tokenizer.json": TOKENIZER,  # the same bytes under two paths: stored once
}
TOKENIZERS = {"tokenizer.json", "nested/tokenizer.json"}
V2 = {**V1, "model-00001-of-00002.safetensors": make_data(90_005, seed=3)}  # one shard changed
V3 = {**V2, "model-00002-of-00002.safetensors": make_data(70_007, seed=4)}  # and then the other


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def vid(files: dict[str, bytes]) -> str:
    """A version's id, as publish names its manifest and a lock finds it."""
    return versions.version_id([(p, len(d), sha(d)) for p, d in files.items()])


def files_of(result: Result) -> dict[str, dict[str, Any]]:
    return {f["path"]: f for f in json.loads(result.stdout)["files"] if f["path"] is not None}


def make_key(folder: Path) -> tuple[Path, Path]:
    """An EC P-256 key pair made here: the private key's PEM and the public key's."""
    key = ec.generate_private_key(ec.SECP256R1())
    private, public = folder / "signer.pem", folder / "signer.pub"
    pkcs8, none = serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    private.write_bytes(key.private_bytes(serialization.Encoding.PEM, pkcs8, none))
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    public.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM, spki))
    return private, public


@dataclass
class Store:
    """The published prefix in one real store: what it holds, by name below the prefix."""

    to: str
    names: Callable[[], dict[str, tuple[object, ...]]]  # every name → what says it is unchanged
    read: Callable[[str], bytes]
    write: Callable[[str, bytes], None]
    writes: Callable[[], int]  # writes seen so far (S3: requests; a folder: -1, unknown)

    def objects(self) -> set[str]:
        """The objects (a folder's marks, mdl's bookkeeping beside them, left out)."""
        return {n for n in self.names() if not n.startswith(".mdl/marks/")}


@pytest.fixture(params=["s3", "folder"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    if request.param == "folder":
        shared = tmp_path / "shared"

        def names() -> dict[str, tuple[object, ...]]:
            found = (p for p in shared.rglob("*") if p.is_file())
            return {
                str(p.relative_to(shared)): (p.stat().st_ino, p.stat().st_mtime_ns) for p in found
            }

        def write(name: str, data: bytes) -> None:
            (shared / name).parent.mkdir(parents=True, exist_ok=True)
            (shared / name).write_bytes(data)

        return Store(
            f"file://{shared}", names, lambda n: (shared / n).read_bytes(), write, lambda: -1
        )
    s3: S3 = request.getfixturevalue("s3")
    client = s3.client()
    client.create_bucket(Bucket=BUCKET)

    def listed() -> dict[str, tuple[object, ...]]:
        pages = client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix="hub/")
        objects = (o for page in pages for o in page.get("Contents", []))
        return {o["Key"].removeprefix("hub/"): (o["ETag"], o["LastModified"]) for o in objects}

    return Store(
        f"s3://{BUCKET}/hub",
        listed,
        lambda n: client.get_object(Bucket=BUCKET, Key=f"hub/{n}")["Body"].read(),
        lambda n, data: s3.put(BUCKET, f"hub/{n}", data),
        lambda: sum(1 for method, _, _ in s3.cutter.writes if method in ("PUT", "POST", "DELETE")),
    )


@pytest.fixture
def seeder(hub: HubServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Seeder:
    hub.add_repo("org/llm", V1)
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    monkeypatch.setenv("MDL_LOG_FILE", str(tmp_path / "mdl.log"))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "catalog.toml").write_text('[models.llm]\nrepo = "org/llm"\n')
    return Seeder(hub, tmp_path / "a")


@dataclass
class Seeder:
    """The seeding machine: pulls each version the Hub stand-in gets, and publishes it."""

    hub: HubServer
    dest: Path

    def ship(self, files: dict[str, bytes]) -> None:
        """The Hub's next commit is ``files``; pulled here, verified."""
        if (self.dest / "llm").exists():
            self.hub.commit("org/llm", files)
        pulled = mdl("pull", "llm", "--dest", str(self.dest))
        assert pulled.exit_code == 0, pulled.stderr

    def publish(self, to: str, *extra: str) -> Result:
        return mdl("publish", "llm", "--to", to, "--dest", str(self.dest), "--json", *extra)


def manifest(store: Store, files: dict[str, bytes]) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(store.read(f".mdl/versions/llm/{vid(files)}.json"))
    return doc


def test_three_versions_are_kept_each_content_once(seeder: Seeder, store: Store) -> None:
    kept: dict[str, tuple[object, ...]] = {}
    for number, files in enumerate((V1, V2, V3), start=1):
        seeder.ship(files)
        published = seeder.publish(store.to)
        assert published.exit_code == 0, published.stderr
        (version,) = json.loads(published.stdout)["versions"]
        assert version["id"] == vid(files) and version["action"] == "uploaded"
        assert version["manifest"] == f"{store.to}/.mdl/versions/llm/{vid(files)}.json"
        # nothing an earlier version wrote is written again or removed
        now = store.names()
        assert {name: now.get(name) for name in kept} == kept, f"v{number} touched an older one"
        kept = now
        rows = files_of(published)
        assert rows["nested/tokenizer.json"]["dest"] == rows["tokenizer.json"]["dest"]
        uploaded = {p for p, f in rows.items() if f["action"] == "uploaded"}
        older = {} if number == 1 else (V1, V2)[number - 2]
        new = {p for p, d in files.items() if older.get(p) != d}
        assert uploaded - TOKENIZERS == new - TOKENIZERS, "only new contents go up"
        assert len(uploaded & TOKENIZERS) == (1 if number == 1 else 0), "each once"

    distinct = {sha(d) for files in (V1, V2, V3) for d in files.values()}
    assert len(distinct) == 6
    ids = {vid(files) for files in (V1, V2, V3)}
    assert store.objects() == {
        *(f"llm/{h}" for h in distinct),
        *(f".mdl/versions/llm/{i}.json" for i in ids),
    }, "each content once, a manifest per version: nothing by name, no per-model manifest"
    for files in (V1, V2, V3):  # every version readable whole, by its manifest
        doc = manifest(store, files)
        assert doc["model"] == "llm" and doc["signature"] is None
        assert {f["path"]: f["sha256"] for f in doc["files"]} == {
            p: sha(d) for p, d in files.items()
        }
        for path, data in files.items():
            assert store.read(f"llm/{sha(data)}") == data, path
    stored = sum(len(store.read(f"llm/{h}")) for h in distinct)
    assert stored == sum({sha(d): len(d) for f in (V1, V2, V3) for d in f.values()}.values())

    # A re-publish of the version there writes nothing, and says so.
    before, writes = store.names(), store.writes()
    again = seeder.publish(store.to)
    assert again.exit_code == 0, again.stderr
    assert {f["action"] for f in files_of(again).values()} == {"skipped"}
    assert json.loads(again.stdout)["versions"][0]["action"] == "skipped"
    assert store.names() == before, "no object, manifest or mark written again"
    assert store.writes() == writes


def test_signing_v2_leaves_v1s_signature_and_manifest_as_they_were(
    seeder: Seeder, store: Store, tmp_path: Path
) -> None:
    private, public = make_key(tmp_path)
    seeder.ship(V1)
    assert seeder.publish(store.to, "--sign", str(private)).exit_code == 0
    v1 = f".mdl/versions/llm/{vid(V1)}.json"
    v1_signature = f"llm/{manifest(store, V1)['signature']['sha256']}"
    before = {name: store.names()[name] for name in (v1, v1_signature)}
    v1_bytes = store.read(v1)

    seeder.ship(V2)
    signed = seeder.publish(store.to, "--sign", str(private))
    assert signed.exit_code == 0, signed.stderr
    assert {name: store.names()[name] for name in (v1, v1_signature)} == before
    assert store.read(v1) == v1_bytes
    for files in (V1, V2):  # each version's manifest names its own signature, over its own files
        named = manifest(store, files)["signature"]
        data = store.read(f"llm/{named['sha256']}")
        statement = verify_signature(data, Trust(key=public), what="model.sig")
        assert {p: f.sha256 for p, f in statement.files.items()} == {
            p: sha(d) for p, d in files.items()
        }
    assert manifest(store, V1)["signature"] != manifest(store, V2)["signature"]

    # A publish without --sign keeps the signature the manifest names: a manifest only gains.
    before, writes = store.names(), store.writes()
    plain = seeder.publish(store.to)
    assert plain.exit_code == 0, plain.stderr
    assert json.loads(plain.stdout)["versions"][0]["action"] == "skipped"
    assert store.names() == before and store.writes() == writes


@pytest.mark.parametrize(
    "planted", ["junk", "nested 100,000 deep", "another id", "another model", "other files"]
)
def test_a_hostile_manifest_at_the_versions_name_is_replaced(
    seeder: Seeder, store: Store, planted: str
) -> None:
    seeder.ship(V1)
    assert seeder.publish(store.to).exit_code == 0
    name = f".mdl/versions/llm/{vid(V1)}.json"
    right = store.read(name)
    doc = json.loads(right)
    if planted == "junk":
        data = b"\x00not a manifest"
    elif planted == "nested 100,000 deep":  # the id is public before the team publishes (issue 86)
        data = b"[" * 100_000
    elif planted == "another id":
        data = json.dumps({**doc, "id": vid(V2)}).encode()
    elif planted == "another model":
        data = json.dumps({**doc, "model": "other"}).encode()
    else:  # a manifest of v2 put under v1's name: its own id, not this name's
        data = versions.Manifest(
            model="llm",
            id=vid(V2),
            files=tuple(versions.ManifestFile(p, len(d), sha(d)) for p, d in V2.items()),
        ).to_bytes()
    store.write(name, data)
    again = seeder.publish(store.to)
    assert again.exit_code == 0, again.stderr
    (version,) = json.loads(again.stdout)["versions"]
    assert version["action"] == "uploaded" and store.read(name) == right
    assert (
        version["warning"] == f"llm: {store.to}/{name} is not this version's manifest; replacing it"
    )
    assert f"mdl: warning: {version['warning']}" in again.stderr  # said with --json too
    store.write(name, data)
    human = mdl("publish", "llm", "--to", store.to, "--dest", str(seeder.dest))
    assert human.exit_code == 0, human.stderr
    assert version["warning"] in human.stderr and store.read(name) == right


def test_a_manifest_nested_100000_deep_is_junk_to_prune_named_and_kept(
    seeder: Seeder, store: Store
) -> None:
    """``[`` x 100,000 at a version's manifest name (issue 86, C): prune says it is not a
    manifest mdl writes, naming it, keeps it, and finishes (exit 0, never a RecursionError)."""
    seeder.ship(V1)
    assert seeder.publish(store.to).exit_code == 0
    name = f".mdl/versions/llm/{vid(V2)}.json"
    store.write(name, b"[" * 100_000)
    template = f"{store.to}/{{model}}/{{sha256}}"
    result = mdl("prune", "--mirror", template, "--keep-days", "0", "--json")
    assert result.exit_code == 0, result.stderr
    assert f"{store.to}/{name}" in result.stderr and "internal error" not in result.stderr
    assert store.read(name) == b"[" * 100_000
    assert f".mdl/versions/llm/{vid(V1)}.json" in store.objects()


def test_a_seeding_machine_that_adds_a_signer_signs_what_it_installed(
    seeder: Seeder, store: Store, tmp_path: Path
) -> None:
    """v1 pulled before the catalog named a signer: `publish --sign` signs it all the same. v2,
    pulled with the signer named and no signature anywhere yet: exit 6 for the signature and
    nothing lands; `pull --unsigned` puts its verified files on disk (partial), and `publish --sign`
    signs and publishes it."""
    private, public = make_key(tmp_path)
    seeder.ship(V1)
    catalog = tmp_path / "catalog.toml"
    catalog.write_text(catalog.read_text() + f'\n[models.llm.signature]\nkey = "{public}"\n')
    # its nightly pull meets no signature anywhere (exit 6) and leaves the copy as it was
    again = mdl("pull", "llm", "--dest", str(seeder.dest))
    assert again.exit_code == ExitCode.INTEGRITY, again.stderr
    signed = seeder.publish(store.to, "--sign", str(private))
    assert signed.exit_code == 0, signed.stderr
    assert files_of(signed)["model.sig"]["action"] == "uploaded"
    assert manifest(store, V1)["signature"] is not None

    seeder.hub.commit("org/llm", V2)
    pulled = mdl("pull", "llm", "--dest", str(seeder.dest))
    assert pulled.exit_code == ExitCode.INTEGRITY, pulled.stderr
    assert "llm/model.sig: the catalog asks for a signature and none was found" in pulled.stderr
    assert "mdl pull llm --unsigned" in pulled.stderr
    changed = [path for path, data in V2.items() if V1.get(path) != data]
    assert changed and all(
        (seeder.dest / "llm" / path).read_bytes() != V2[path]
        for path in changed
        if (seeder.dest / "llm" / path).exists()
    ), "a plain pull lands nothing no signer vouches for"
    pulled = mdl("pull", "llm", "--unsigned", "--dest", str(seeder.dest))
    assert pulled.exit_code == 0, pulled.stderr
    for path, data in V2.items():
        assert (seeder.dest / "llm" / path).read_bytes() == data, path
    listed = mdl("list", "--dest", str(seeder.dest), "--json")
    (row,) = json.loads(listed.stdout)["models"]
    assert row["status"] == "partial", "never installed unsigned"
    assert row["signature"]["verified"] is False
    v2 = seeder.publish(store.to, "--sign", str(private))
    assert v2.exit_code == 0, v2.stderr
    named = manifest(store, V2)["signature"]
    statement = verify_signature(
        store.read(f"llm/{named['sha256']}"), Trust(key=public), what="model.sig"
    )
    assert {p: f.sha256 for p, f in statement.files.items()} == {p: sha(d) for p, d in V2.items()}


def test_a_lock_pinning_the_versions_signature_holds_no_publish_sign_back(
    seeder: Seeder, store: Store, tmp_path: Path
) -> None:
    """The lock pins the version's signature (as `mdl lock` does once the bucket names one); the
    seeding machine never installed that file: `publish --sign --frozen` finds the version signed
    by its key and writes nothing, instead of calling its copy not fully installed."""
    private, public = make_key(tmp_path)
    seeder.ship(V1)
    assert mdl("lock", "llm").exit_code == 0
    assert seeder.publish(store.to, "--sign", str(private)).exit_code == 0
    named = manifest(store, V1)["signature"]
    catalog, lock = tmp_path / "catalog.toml", tmp_path / "catalog.lock"
    catalog.write_text(catalog.read_text() + f'\n[models.llm.signature]\nkey = "{public}"\n')
    commit = manifest(store, V1)["commit"]
    pin = (
        f'  {{ path = "model.sig", size = {named["size"]}, sha256 = "{named["sha256"]}",'
        f' source = "hf://org/llm@{commit}/model.sig" }},\n]'
    )
    lock.write_text(lock.read_text().replace("\n]", "\n" + pin, 1))
    before, writes = store.names(), store.writes()
    again = seeder.publish(store.to, "--sign", str(private), "--frozen")
    assert again.exit_code == 0, again.stderr
    assert files_of(again)["model.sig"]["action"] == "skipped"
    assert json.loads(again.stdout)["versions"][0]["action"] == "skipped"
    assert store.names() == before and store.writes() == writes
    unsigned = seeder.publish(store.to, "--frozen")  # without --sign the lock's pins all hold
    assert unsigned.exit_code == ExitCode.NOT_FOUND, unsigned.stderr
    assert "model.sig (missing)" in unsigned.stderr


def test_a_release_machine_on_a_signed_lock_ships_the_next_version(
    seeder: Seeder, store: Store, tmp_path: Path
) -> None:
    """The deploy repository's catalog names the signer and the mirror, and its lock pins v1 with
    v1's signature. v2 reaches the Hub: `pull --unsigned` fetches what upstream has now (the lock
    cannot pin v2 before v2 is signed), `publish --sign` signs the installed v2 (by its records,
    not the lock's v1), and `lock --upgrade` pins v2's files with v2's signature."""
    private, public = make_key(tmp_path)
    catalog = tmp_path / "catalog.toml"
    catalog.write_text(
        f'[settings]\nmirrors = ["{store.to}/{{model}}/{{sha256}}"]\n\n'
        f'[models.llm]\nrepo = "org/llm"\n\n[models.llm.signature]\nkey = "{public}"\n'
    )
    dest = ("--dest", str(seeder.dest))
    for files in (V1, V2):
        if files is V2:
            seeder.hub.commit("org/llm", V2)
            plain = mdl("pull", "llm", *dest)
            assert plain.exit_code == 0, plain.stderr  # the lock's v1, signed: as it was
        pulled = mdl("pull", "llm", "--unsigned", *dest)
        assert pulled.exit_code == 0, pulled.stderr
        for path, data in files.items():
            assert (seeder.dest / "llm" / path).read_bytes() == data, path
        signed = seeder.publish(store.to, "--sign", str(private))
        assert signed.exit_code == 0, signed.stderr
        assert manifest(store, files)["signature"] is not None
        locked = mdl("lock", "--upgrade", "llm")
        assert locked.exit_code == 0, locked.stderr
        assert mdl("lock", "--check").exit_code == 0
        lock = (tmp_path / "catalog.lock").read_text()
        assert all(sha(data) in lock for data in files.values())
        sig = manifest(store, files)["signature"]["sha256"]
        assert sig in lock, "the lock pins this version's own signature"
    refused = mdl("pull", "llm", "--unsigned", "--locked", *dest)
    assert refused.exit_code == 2 and "--unsigned" in refused.stderr, refused.stderr
