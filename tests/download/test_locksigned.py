"""`mdl lock` of a model whose catalog names a signer pins the signature of the version it pins:
found through that version's manifest on a mirror of the published layout (what `publish --sign`
writes), else at the source, verified with the catalog's key, and refused (exit 6, naming the
files) when it does not cover every file the lock pins; the same for `lock --upgrade` and
`lock --check`. Real stores: a shared folder and the moto server; keys made here."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from pathlib import Path

import pytest
from runfixtures import mdl, use_catalog
from s3server import S3, s3, s3_server  # noqa: F401
from servers import HubServer, make_data
from signkeys import key_pair

from mdl.buckets import versions
from mdl.lockfile.io import read_lock, write_lock
from mdl.lockfile.model import Lock
from mdl.signing.library import sign_digests
from mdl.signing.statement import git_path

V1 = {
    "config.json": b'{"model_type": "llama"}\n',
    "model-00001.safetensors": make_data(120_001, seed=1),
    "model-00002.safetensors": make_data(90_003, seed=2),
    ".gitattributes": b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n",
}
# v2 changes one shard and adds a file
V2 = {**V1, "model-00002.safetensors": make_data(90_007, seed=3), "tokenizer.json": b"{}\n"}
CHANGED = ("model-00002.safetensors", "tokenizer.json")
HINT = "sign this version (mdl publish llm --to"
BUCKET = "team-models"


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def signature_of(files: dict[str, bytes], private: Path) -> bytes:
    """A model.sig over ``files`` (git's left out), as `publish --sign` makes one."""
    digests = {p: sha(d) for p, d in files.items() if not git_path(p)}
    return sign_digests(digests, private_key=private, model_name="llm")


class Folder:
    """A published prefix in a shared folder: objects by content, manifests per version."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.prefix = f"file://{root}"
        self.template = versions.template_of(self.prefix)

    def put(self, data: bytes) -> None:
        (self.root / "llm").mkdir(parents=True, exist_ok=True)
        (self.root / "llm" / sha(data)).write_bytes(data)

    def manifest_path(self, files: dict[str, bytes]) -> Path:
        vid = versions.version_id(rows(files), signature="model.sig")
        return Path(versions.manifest_uri(self.prefix, "llm", vid).removeprefix("file://"))

    def publish(self, files: dict[str, bytes], signature: bytes | None) -> None:
        """The version's objects, its signature and its manifest naming it."""
        for data in files.values():
            self.put(data)
        if signature is not None:
            self.put(signature)
        path = self.manifest_path(files)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(manifest(files, signature))


def rows(files: dict[str, bytes]) -> list[tuple[str, int, str]]:
    return [(p, len(d), sha(d)) for p, d in files.items()]


def manifest(files: dict[str, bytes], signature: bytes | None) -> bytes:
    vid = versions.version_id(rows(files), signature="model.sig")
    listed = tuple(versions.ManifestFile(p, len(d), sha(d)) for p, d in files.items())
    sig = (
        None
        if signature is None
        else versions.ManifestFile("model.sig", len(signature), sha(signature))
    )
    return versions.Manifest("llm", vid, listed, signature=sig).to_bytes()


@pytest.fixture
def keys(tmp_path: Path) -> tuple[Path, Path]:
    return key_pair(tmp_path / "keys")


@pytest.fixture
def shelf(tmp_path: Path) -> Folder:
    return Folder(tmp_path / "shelf")


def catalog(
    folder: Path, monkeypatch: pytest.MonkeyPatch, hub: HubServer, public: Path, mirror: str
) -> Path:
    text = (
        f"[settings]\nmirrors = [{mirror}]\n\n"
        f'[models.llm]\nrepo = "org/llm"\n\n[models.llm.signature]\nkey = "{public}"\n'
    )
    return use_catalog(folder / "project", monkeypatch, text, endpoint=hub.url)


def project(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, hub: HubServer, public: Path, shelf: Folder
) -> Path:
    (tmp_path / "project").mkdir()
    return catalog(tmp_path, monkeypatch, hub, public, f'"{shelf.template}"')


def pinned_signature(lock: Path) -> str:
    found = read_lock(lock)
    assert found is not None
    return next(f.sha256 for f in found.models["llm"].files if f.path == "model.sig")


@pytest.mark.slow
def test_v2_with_only_v1s_signature_is_refused_naming_the_changed_files(
    hub: HubServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    keys: tuple[Path, Path],
    shelf: Folder,
) -> None:
    private, public = keys
    # signed at its source once, for v1; v2 moved the files, not the signature
    hub.add_repo("org/llm", {**V2, "model.sig": signature_of(V1, private)})
    shelf.publish(V1, signature_of(V1, private))
    cat = project(tmp_path, monkeypatch, hub, public, shelf)
    result = mdl("lock")
    assert result.exit_code == 6, result.stderr
    line = next(x for x in result.stderr.splitlines() if "does not cover" in x)
    assert "llm" in line and "2 files" in line
    assert all(path in line for path in CHANGED), line
    assert "config.json" not in line and ".gitattributes" not in line
    assert HINT in result.stderr and "model_signing sign" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (cat.parent / "catalog.lock").exists()


@pytest.mark.slow
def test_upgrade_to_v2_with_v1s_signature_only_is_refused_and_the_lock_stays(
    hub: HubServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    keys: tuple[Path, Path],
    shelf: Folder,
) -> None:
    private, public = keys
    # signed in the bucket (publish --sign): the Hub has no model.sig
    hub.add_repo("org/llm", V1)
    v1_sig = signature_of(V1, private)
    shelf.publish(V1, v1_sig)
    cat = project(tmp_path, monkeypatch, hub, public, shelf)
    first = mdl("lock")
    assert first.exit_code == 0, first.stderr
    lock = cat.parent / "catalog.lock"
    assert pinned_signature(lock) == sha(v1_sig)
    before = lock.read_bytes()
    hub.commit("org/llm", {p: d for p, d in V2.items() if V1.get(p) != d})
    # v2's objects are published, with no signature of its own; v1's is the only one there is
    shelf.publish(V2, None)
    shelf.put(v1_sig)
    upgraded = mdl("lock", "--upgrade")
    assert upgraded.exit_code == 6, upgraded.stderr
    assert "llm/model.sig" in upgraded.stderr and "has none" in upgraded.stderr
    assert HINT in upgraded.stderr
    assert lock.read_bytes() == before
    # a mirror by name that still holds v1's model.sig (the old layout) is not believed either
    by_name = tmp_path / "byname"
    (by_name / "llm").mkdir(parents=True)
    (by_name / "llm" / "model.sig").write_bytes(v1_sig)
    mirrors = f'"{shelf.template}", "file://{by_name}/{{model}}/{{path}}"'
    catalog(tmp_path, monkeypatch, hub, public, mirrors)
    again = mdl("lock", "--upgrade")
    assert again.exit_code == 6, again.stderr
    line = next(x for x in again.stderr.splitlines() if "does not cover" in x)
    assert all(path in line for path in CHANGED), line
    assert lock.read_bytes() == before


@pytest.mark.slow
def test_v2s_signature_in_its_manifest_is_pinned_and_v1s_lock_keeps_v1s(
    hub: HubServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    keys: tuple[Path, Path],
    shelf: Folder,
) -> None:
    private, public = keys
    hub.add_repo("org/llm", V1)
    v1_sig, v2_sig = signature_of(V1, private), signature_of(V2, private)
    shelf.publish(V1, v1_sig)
    cat = project(tmp_path, monkeypatch, hub, public, shelf)
    assert mdl("lock").exit_code == 0
    lock = cat.parent / "catalog.lock"
    v1_lock = lock.read_bytes()
    hub.commit("org/llm", {p: d for p, d in V2.items() if V1.get(p) != d})
    shelf.publish(V2, v2_sig)
    upgraded = mdl("lock", "--upgrade")
    assert upgraded.exit_code == 0, upgraded.stderr
    assert pinned_signature(lock) == sha(v2_sig)
    checked = mdl("lock", "--check")
    assert checked.exit_code == 0, checked.stderr
    # v1's lock, committed before, still pins v1's signature, and it still checks
    lock.write_bytes(v1_lock)
    assert pinned_signature(lock) == sha(v1_sig)
    assert mdl("lock", "--check").exit_code == 0
    # a seed that was pulled signed publishes no .gitattributes: its manifest is found too
    fresh = Folder(tmp_path / "seeded")
    fresh.publish({p: d for p, d in V2.items() if not git_path(p)}, v2_sig)
    catalog(tmp_path, monkeypatch, hub, public, f'"{fresh.template}"')
    lock.unlink()
    relocked = mdl("lock")
    assert relocked.exit_code == 0, relocked.stderr
    assert pinned_signature(lock) == sha(v2_sig)


@pytest.mark.slow
def test_check_refuses_a_lock_whose_signature_does_not_cover_its_files(
    hub: HubServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    keys: tuple[Path, Path],
    shelf: Folder,
) -> None:
    private, public = keys
    hub.add_repo("org/llm", V2)
    v1_sig = signature_of(V1, private)
    shelf.publish(V1, v1_sig)
    shelf.publish(V2, signature_of(V2, private))
    cat = project(tmp_path, monkeypatch, hub, public, shelf)
    assert mdl("lock").exit_code == 0
    lock = cat.parent / "catalog.lock"
    # by hand: v2's files with v1's signature
    found = read_lock(lock)
    assert found is not None
    model = found.models["llm"]
    files = tuple(
        replace(f, sha256=sha(v1_sig), size=len(v1_sig)) if f.path == "model.sig" else f
        for f in model.files
    )
    write_lock(lock, Lock({"llm": replace(model, files=files)}))
    checked = mdl("lock", "--check")
    assert checked.exit_code == 6, checked.stderr
    line = next(x for x in checked.stderr.splitlines() if "does not cover" in x)
    assert all(path in line for path in CHANGED), line
    assert HINT in checked.stderr and "is up to date" not in checked.stderr
    as_json = mdl("lock", "--check", "--json")
    assert as_json.exit_code == 6 and '"ok": false' in as_json.stdout
    # a plain lock holds the entry it keeps to the same rule: refused, the lock left as it is
    before = lock.read_bytes()
    plain = mdl("lock")
    assert plain.exit_code == 6 and "does not cover" in plain.stderr, plain.stderr
    assert lock.read_bytes() == before


@pytest.mark.slow
def test_a_hostile_manifest_is_not_believed(
    hub: HubServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    keys: tuple[Path, Path],
    shelf: Folder,
) -> None:
    """Anyone who may write the mirror may write a manifest: one pointing at a signature that does
    not hold (v1's, a stranger's, not a bundle) costs a warning naming why, and the version's own
    signature at the source is locked; with none at the source, the refusal is said (exit 6)."""
    private, public = keys
    v1_sig, v2_sig = signature_of(V1, private), signature_of(V2, private)
    # the source has v2's own signature
    hub.add_repo("org/llm", {**V2, "model.sig": v2_sig})
    shelf.publish(V1, v1_sig)
    cat = project(tmp_path, monkeypatch, hub, public, shelf)
    lock = cat.parent / "catalog.lock"
    other, _ = key_pair(tmp_path / "other")
    pointers = {
        "v1's": (v1_sig, CHANGED),
        "a stranger's": (signature_of(V2, other), ("does not verify",)),
        "no bundle": (b"not a bundle", ("llm/model.sig",)),
    }
    for what, (pointed_at, said) in pointers.items():
        shelf.publish(V2, pointed_at)  # v2's manifest points at it
        pointed = mdl("lock")
        assert pointed.exit_code == 0, (what, pointed.stderr)
        assert pinned_signature(lock) == sha(v2_sig), what
        assert all(word in pointed.stderr for word in said), (what, pointed.stderr)
        assert "trying the next source" in pointed.stderr and "Traceback" not in pointed.stderr
        lock.unlink()
    # junk, or a manifest of another version at v2's name: ignored, the source's signature locked
    path = shelf.manifest_path(V2)
    for junk in (b"\x00not json" * 100, manifest(V1, v1_sig), b'{"version": 2}'):
        path.write_bytes(junk)
        result = mdl("lock")
        assert result.exit_code == 0, result.stderr
        assert pinned_signature(lock) == sha(v2_sig)
        lock.unlink()
    # no signature at the source: the manifest's refusal is the answer
    hub.commit("org/llm", {"model.sig": None})
    shelf.publish(V2, v1_sig)
    refused = mdl("lock")
    assert refused.exit_code == 6, refused.stderr
    assert all(path in refused.stderr for path in CHANGED) and "Traceback" not in refused.stderr
    assert not lock.exists()


@pytest.mark.slow
def test_v2s_signature_is_found_through_its_manifest_in_moto(
    hub: HubServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    keys: tuple[Path, Path],
    s3: S3,  # noqa: F811
) -> None:
    private, public = keys
    hub.add_repo("org/llm", V2)
    v2_sig = signature_of(V2, private)
    prefix = f"s3://{BUCKET}/hub"
    for data in (*V2.values(), v2_sig):
        s3.put(BUCKET, f"hub/llm/{sha(data)}", data)
    vid = versions.version_id(rows(V2), signature="model.sig")
    key = versions.manifest_uri(prefix, "llm", vid).removeprefix(f"s3://{BUCKET}/")
    s3.put(BUCKET, key, manifest(V2, v2_sig))
    (tmp_path / "project").mkdir()
    mirror = f'{{ url = "{versions.template_of(prefix)}", endpoint = "{s3.endpoint}" }}'
    cat = catalog(tmp_path, monkeypatch, hub, public, mirror)
    result = mdl("lock")
    assert result.exit_code == 0, result.stderr
    lock = cat.parent / "catalog.lock"
    assert pinned_signature(lock) == sha(v2_sig)
    # the Hub was never asked for a model.sig: the manifest's pointer and the bucket served it
    asked = [r.url_path for r in hub.log.records() if r.url_path.endswith("/model.sig")]
    assert asked == []
    assert mdl("lock", "--check").exit_code == 0
    # the bucket's copy of the signature gone, --check fetches it from the source: none there
    s3.client().delete_object(Bucket=BUCKET, Key=f"hub/llm/{sha(v2_sig)}")
    gone = mdl("lock", "--check")
    assert gone.exit_code not in (0, 1), gone.stderr
    assert "llm/model.sig" in gone.stderr and "Traceback" not in gone.stderr


@pytest.mark.slow
def test_many_uncovered_files_are_named_five_and_counted(
    hub: HubServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    keys: tuple[Path, Path],
    shelf: Folder,
) -> None:
    private, public = keys
    shards = {f"shard-{n}.bin": make_data(1_000 + n, seed=10 + n) for n in range(7)}
    files = {"config.json": V1["config.json"], **shards}
    only_config = signature_of({"config.json": V1["config.json"]}, private)
    hub.add_repo("org/llm", {**files, "model.sig": only_config})
    project(tmp_path, monkeypatch, hub, public, shelf)
    result = mdl("lock")
    assert result.exit_code == 6, result.stderr
    line = next(x for x in result.stderr.splitlines() if "does not cover" in x)
    assert "7 files" in line and line.endswith("shard-4.bin and 2 more"), line
    assert "shard-5.bin" not in line and "config.json" not in line
    as_json = mdl("lock", "--json")
    assert as_json.exit_code == 6
    assert '"ok": false' in as_json.stdout and "does not cover 7 files" in as_json.stdout
