"""`mdl publish --sign KEY.pem`: a model.sig over exactly the files published, stored by content
like them and named by the version's manifest, that the official `model_signing verify key` accepts
once the version is downloaded; written after the files and before the manifest that names it,
refused before any upload when the key (or the library) is not usable, and named by --dry-run."""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from runfixtures import mdl
from s3server import S3
from servers import HubServer, make_data
from signkeys import official_verify
from typer.testing import Result

from mdl.errors import ExitCode
from mdl.signing.library import sign_digests, verify_signature
from mdl.signing.statement import Trust

BUCKET = "team-models"
TO = f"s3://{BUCKET}/hub"
FILES = {
    "config.json": b'{"model_type": "bert"}\n',
    "model.safetensors": make_data(200_003, seed=81),
    "nested/extra.bin": make_data(5_000, seed=82),
    # every Hub repo has one
    ".gitattributes": b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n",
}
OWN_SIG = b'{"not": "ours"}\n'  # org/own's model.sig, from its source
# model_signing leaves .git* out, as mdl does
SIGNED = {p: d for p, d in FILES.items() if p != ".gitattributes"}


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def files_of(result: Result) -> dict[str, dict[str, Any]]:
    return {f["path"]: f for f in json.loads(result.stdout)["files"] if f["path"] is not None}


def make_key(folder: Path, name: str = "signer") -> tuple[Path, Path]:
    """An EC P-256 key pair made here (no key file is committed): the private key's PEM and the
    public key's.
    """
    key = ec.generate_private_key(ec.SECP256R1())
    private, public = folder / f"{name}.pem", folder / f"{name}.pub"
    pkcs8, none = serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    private.write_bytes(key.private_bytes(serialization.Encoding.PEM, pkcs8, none))
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    public.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM, spki))
    return private, public


def manifest_of(s3: S3, model: str = "tiny") -> dict[str, Any]:
    """The one version manifest of ``model`` in the bucket."""
    client = s3.client()
    prefix = f"hub/.mdl/versions/{model}/"
    (listed,) = client.list_objects_v2(Bucket=BUCKET, Prefix=prefix)["Contents"]
    doc: dict[str, Any] = json.loads(
        client.get_object(Bucket=BUCKET, Key=listed["Key"])["Body"].read()
    )
    return doc


def download(s3: S3, folder: Path, model: str = "tiny") -> set[str]:
    """The version its manifest names into ``folder``, each file from its object by content, the
    signature as model.sig (boto3 against the loopback server): the paths fetched."""
    client, manifest = s3.client(), manifest_of(s3, model)
    rows = [*manifest["files"], *([manifest["signature"]] if manifest["signature"] else [])]
    for row in rows:
        target = folder / row["path"]
        target.parent.mkdir(parents=True, exist_ok=True)
        body = client.get_object(Bucket=BUCKET, Key=f"hub/{model}/{row['sha256']}")["Body"].read()
        target.write_bytes(body)
        assert sha(body) == row["sha256"]
    return {row["path"] for row in rows}


def keys_in(s3: S3) -> list[str]:
    return [o["Key"] for o in s3.client().list_objects_v2(Bucket=BUCKET).get("Contents", [])]


def file_keys() -> set[str]:
    """The objects of tiny's files: by content."""
    return {f"hub/tiny/{sha(d)}" for d in FILES.values()}


@pytest.fixture
def seeded(hub: HubServer, s3: S3, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """`tiny` (org/tiny) pulled into tmp/a from the Hub stand-in, `own` (org/own, which ships a
    model.sig) named in the catalog; the bucket exists, empty."""
    hub.add_repo("org/tiny", FILES)
    hub.add_repo("org/own", {**FILES, "model.sig": OWN_SIG})
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    monkeypatch.setenv("MDL_LOG_FILE", str(tmp_path / "mdl.log"))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "catalog.toml").write_text(
        '[models.tiny]\nrepo = "org/tiny"\n\n[models.own]\nrepo = "org/own"\n'
    )
    s3.client().create_bucket(Bucket=BUCKET)
    pulled = mdl("pull", "tiny", "--dest", str(tmp_path / "a"))
    assert pulled.exit_code == 0, pulled.stderr
    s3.cutter.writes.clear()
    return tmp_path / "a"


@pytest.mark.slow
def test_the_signature_goes_up_last_and_the_official_tool_verifies_the_bucket_copy(
    seeded: Path, s3: S3, tmp_path: Path
) -> None:
    private, public = make_key(tmp_path)
    published = mdl(
        "publish", "tiny", "--to", TO, "--dest", str(seeded), "--sign", str(private), "--json"
    )
    assert published.exit_code == 0, published.stderr
    got = files_of(published)
    assert set(got) == {*FILES, "model.sig"}
    sig = got["model.sig"]
    assert (sig["action"], sig["dest"]) == ("uploaded", f"{TO}/tiny/{sig['sha256']}")
    # By content like every file, after them; the manifest that names it last of all.
    (version,) = json.loads(published.stdout)["versions"]
    puts = [
        path
        for method, path, query in s3.cutter.writes
        if method == "PUT" and "partNumber=" not in query
    ]
    assert puts[-2:] == [
        f"/{BUCKET}/hub/tiny/{sig['sha256']}",
        f"/{BUCKET}/hub/.mdl/versions/tiny/{version['id']}.json",
    ], puts
    manifest = manifest_of(s3)
    assert {f["path"] for f in manifest["files"]} == set(FILES), (
        "the manifest lists the model's files"
    )
    assert manifest["signature"] == {
        "path": "model.sig",
        "size": sig["size"],
        "sha256": sig["sha256"],
        "source": "",
    }
    assert set(keys_in(s3)) == {
        *file_keys(),
        f"hub/tiny/{sig['sha256']}",
        f"hub/.mdl/versions/tiny/{version['id']}.json",
    }

    folder = tmp_path / "downloaded"
    assert download(s3, folder) == {*FILES, "model.sig"}
    assert sha((folder / "model.sig").read_bytes()) == sig["sha256"]
    judged = official_verify(folder, public)
    assert judged.returncode == 0, judged.stdout + judged.stderr
    assert "Verification succeeded" in judged.stdout

    # It names exactly the files published (those a signature leaves out, model.sig and .git*, said
    # so), and their bytes: one of them changed in the bucket copy, the judge refuses it.
    statement = verify_signature(
        (folder / "model.sig").read_bytes(), Trust(key=public), what="model.sig"
    )
    assert {p: f.sha256 for p, f in statement.files.items()} == {
        p: sha(d) for p, d in SIGNED.items()
    }
    assert statement.model_name == "tiny"
    assert statement.ignores(".gitattributes") and statement.ignores("model.sig")
    (folder / "nested" / "extra.bin").write_bytes(b"X" + FILES["nested/extra.bin"][1:])
    assert official_verify(folder, public).returncode != 0


def test_a_missing_or_unusable_key_is_exit_2_naming_it_before_anything_is_uploaded(
    seeded: Path, s3: S3, tmp_path: Path
) -> None:
    _, public = make_key(tmp_path)
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("-----BEGIN EC PRIVATE KEY-----\nnot a key\n-----END EC PRIVATE KEY-----\n")
    for key in (tmp_path / "missing.pem", garbage, public):  # a public key is no signing key either
        refused = mdl("publish", "tiny", "--to", TO, "--dest", str(seeded), "--sign", str(key))
        assert refused.exit_code == ExitCode.USAGE, refused.output
        assert f"signing key {key}" in refused.stderr
        assert "Traceback" not in refused.output
    assert s3.cutter.writes == [] and keys_in(s3) == []


def test_without_model_signing_it_is_exit_2_naming_the_extra(
    seeded: Path, s3: S3, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    private, _ = make_key(tmp_path)
    monkeypatch.setitem(sys.modules, "model_signing", None)  # import model_signing: ImportError
    refused = mdl("publish", "tiny", "--to", TO, "--dest", str(seeded), "--sign", str(private))
    assert refused.exit_code == ExitCode.USAGE, refused.output
    assert "mdl[sign]" in refused.stderr
    assert s3.cutter.writes == [] and keys_in(s3) == []


@pytest.mark.slow
def test_dry_run_names_the_signature_and_uploads_nothing(
    seeded: Path, s3: S3, tmp_path: Path
) -> None:
    private, _ = make_key(tmp_path)
    planned = mdl(
        "publish",
        "tiny",
        "--to",
        TO,
        "--dest",
        str(seeded),
        "--sign",
        str(private),
        "--dry-run",
        "--json",
    )
    assert planned.exit_code == 0, planned.output
    assert json.loads(planned.stdout)["dry_run"] is True
    assert {p: f["action"] for p, f in files_of(planned).items()} == {
        **dict.fromkeys(FILES, "upload"),
        "model.sig": "upload",
    }
    row = files_of(planned)["model.sig"]
    assert row["dest"] == f"{TO}/tiny/{row['sha256']}"
    assert s3.cutter.writes == [] and keys_in(s3) == []

    # the files, unsigned
    assert mdl("publish", "tiny", "--to", TO, "--dest", str(seeded)).exit_code == 0
    s3.cutter.writes.clear()
    table = mdl(
        "publish", "tiny", "--to", TO, "--dest", str(seeded), "--sign", str(private), "--dry-run"
    )
    assert table.exit_code == 0, table.output
    rows = {line.split()[2]: line.split()[0] for line in table.stdout.splitlines()[1:]}
    assert rows == {**dict.fromkeys(FILES, "skip"), "model.sig": "upload"}, table.stdout
    assert s3.cutter.writes == [] and manifest_of(s3)["signature"] is None
    assert {k for k in keys_in(s3) if k.startswith("hub/tiny/")} == file_keys()


def test_a_model_with_a_model_sig_of_its_own_is_refused_unless_forced(
    seeded: Path, s3: S3, tmp_path: Path
) -> None:
    private, public = make_key(tmp_path)
    assert mdl("pull", "own", "--dest", str(seeded)).exit_code == 0
    refused = mdl(
        "publish", "tiny", "own", "--to", TO, "--dest", str(seeded), "--sign", str(private)
    )
    assert refused.exit_code == ExitCode.USAGE, refused.output
    assert "own/model.sig" in refused.stderr and "--force" in refused.stderr
    assert s3.cutter.writes == [] and keys_in(s3) == []

    forced = mdl(
        "publish",
        "own",
        "--to",
        TO,
        "--dest",
        str(seeded),
        "--sign",
        str(private),
        "--force",
        "--json",
    )
    assert forced.exit_code == 0, forced.output
    ours = files_of(forced)["model.sig"]["sha256"]
    data = s3.client().get_object(Bucket=BUCKET, Key=f"hub/own/{ours}")["Body"].read()
    assert data != OWN_SIG and sha(data) == ours
    statement = verify_signature(data, Trust(key=public), what="model.sig")
    assert set(statement.files) == set(SIGNED) and statement.model_name == "own"
    manifest = manifest_of(s3, "own")
    assert "model.sig" not in {f["path"] for f in manifest["files"]}
    assert manifest["signature"]["sha256"] == ours, "ours is the version's signature"
    assert f"hub/own/{sha(OWN_SIG)}" not in keys_in(s3), (
        "the model's own signature was not published"
    )


@pytest.mark.slow
def test_a_model_not_wholly_published_gets_no_signature(
    seeded: Path, s3: S3, tmp_path: Path
) -> None:
    private, _ = make_key(tmp_path)
    weights = seeded / "tiny" / "model.safetensors"
    # other bytes than verified: not uploaded (exit 6)
    weights.write_bytes(b"X" + FILES["model.safetensors"][1:])
    failed = mdl(
        "publish", "tiny", "--to", TO, "--dest", str(seeded), "--sign", str(private), "--json"
    )
    assert failed.exit_code == ExitCode.INTEGRITY, failed.output
    assert "model.sig" not in files_of(failed)
    assert set(keys_in(s3)) <= file_keys(), "no signature and no manifest"


def put_manifest(s3: S3, manifest: dict[str, Any]) -> str:
    """``manifest`` written back at its version's name (a co-tenant's hand): its key."""
    key = f"hub/.mdl/versions/tiny/{manifest['id']}.json"
    s3.put(BUCKET, key, (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode())
    return key


@pytest.mark.slow
def test_a_rerun_keeps_a_signature_that_signs_the_same_and_replaces_any_other(
    seeded: Path, s3: S3, tmp_path: Path
) -> None:
    private, public = make_key(tmp_path)
    sign = ("publish", "tiny", "--to", TO, "--dest", str(seeded), "--sign")
    assert mdl(*sign, str(private)).exit_code == 0
    named = manifest_of(s3)["signature"]
    first = s3.client().get_object(Bucket=BUCKET, Key=f"hub/tiny/{named['sha256']}")["Body"].read()
    s3.cutter.writes.clear()
    again = mdl(*sign, str(private), "--json")
    assert again.exit_code == 0, again.output
    assert files_of(again)["model.sig"]["action"] == "skipped"
    assert files_of(again)["model.sig"]["sha256"] == sha(first), "the one kept is reported"
    assert json.loads(again.stdout)["versions"][0]["action"] == "skipped"
    assert s3.cutter.writes == [], "nothing new: no object, manifest or signature is written again"
    planned = mdl(*sign, str(private), "--dry-run", "--json")
    assert files_of(planned)["model.sig"]["action"] == "skip"

    # The manifest names the same key's signature over other digests, another key's, or none at
    # all; or the object it names is not those bytes: ours is uploaded and named instead.
    other, _ = make_key(tmp_path, "other")
    stale = sign_digests({"config.json": "0" * 64}, private_key=private, model_name="tiny")
    theirs = sign_digests(
        {p: sha(d) for p, d in SIGNED.items()}, private_key=other, model_name="tiny"
    )
    forged = first.replace(b'"sig":"M', b'"sig":"N')  # its signature's first byte changed
    assert forged != first
    for planted in (stale, theirs, forged, b"{}"):
        s3.put(BUCKET, f"hub/tiny/{sha(planted)}", planted)
        manifest = manifest_of(s3)
        manifest["signature"] = {**named, "size": len(planted), "sha256": sha(planted)}
        put_manifest(s3, manifest)
        replaced = mdl(*sign, str(private), "--json")
        assert replaced.exit_code == 0, replaced.output
        row = files_of(replaced)["model.sig"]
        assert row["action"] == "uploaded" and row["sha256"] != sha(planted)
        assert manifest_of(s3)["signature"]["sha256"] == row["sha256"]
        data = s3.client().get_object(Bucket=BUCKET, Key=f"hub/tiny/{row['sha256']}")["Body"].read()
        assert set(verify_signature(data, Trust(key=public), what="model.sig").files) == set(SIGNED)
    named = manifest_of(s3)["signature"]
    s3.put(BUCKET, f"hub/tiny/{named['sha256']}", stale)  # the object named, replaced
    s3.cutter.writes.clear()
    healed = mdl(*sign, str(private), "--json")
    row = files_of(healed)["model.sig"]
    assert row["action"] == "uploaded" and manifest_of(s3)["signature"]["sha256"] == row["sha256"]
    version = json.loads(healed.stdout)["versions"][0]
    assert [path for _, path, _ in s3.cutter.writes] == [
        f"/{BUCKET}/hub/tiny/{row['sha256']}",
        f"/{BUCKET}/hub/.mdl/versions/tiny/{version['id']}.json",
    ], "the signature, then the manifest naming it: no file again"


def test_force_without_sign_is_exit_2(seeded: Path, s3: S3) -> None:
    refused = mdl("publish", "tiny", "--to", TO, "--dest", str(seeded), "--force")
    assert refused.exit_code == ExitCode.USAGE, refused.output
    assert "--force" in refused.stderr and "--sign" in refused.stderr
    assert s3.cutter.writes == [] and keys_in(s3) == []


@pytest.mark.slow
def test_from_the_hugging_face_cache_layout_too(seeded: Path, s3: S3, tmp_path: Path) -> None:
    """The files are blobs behind a snapshot's links there: the signature names their save paths
    all the same.
    """
    private, public = make_key(tmp_path)
    assert mdl("pull", "tiny", "--layout", "hf-cache").exit_code == 0
    published = mdl(
        "publish", "tiny", "--to", TO, "--layout", "hf-cache", "--sign", str(private), "--json"
    )
    assert published.exit_code == 0, published.output
    assert files_of(published)["model.sig"]["action"] == "uploaded"
    folder = tmp_path / "downloaded"
    assert download(s3, folder) == {*FILES, "model.sig"}
    judged = official_verify(folder, public)
    assert judged.returncode == 0, judged.stdout + judged.stderr
