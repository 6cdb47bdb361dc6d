"""`mdl publish --sign KEY.pem`: a model.sig beside the model's objects, over exactly the files
published, that the official `model_signing verify key` accepts once the objects are downloaded;
written last, refused before any upload when the key (or the library) is not usable, and named by
--dry-run."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from runfixtures import mdl
from s3server import S3
from servers import HubServer, make_data
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


def official_verify(folder: Path, public: Path) -> subprocess.CompletedProcess[str]:
    """The judge: model_signing's own CLI, hashing the folder itself."""
    command = [sys.executable, "-m", "model_signing", "verify", "key", str(folder)]
    command += ["--public_key", str(public), "--signature", str(folder / "model.sig")]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)


def download(s3: S3, prefix: str, folder: Path) -> set[str]:
    """Every object under ``prefix`` into ``folder`` (boto3 against the loopback server): the
    paths fetched.
    """
    client = s3.client()
    keys = [
        o["Key"] for o in client.list_objects_v2(Bucket=BUCKET, Prefix=prefix).get("Contents", [])
    ]
    for key in keys:
        target = folder / key.removeprefix(prefix)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(client.get_object(Bucket=BUCKET, Key=key)["Body"].read())
    return {key.removeprefix(prefix) for key in keys}


def keys_in(s3: S3) -> list[str]:
    return [o["Key"] for o in s3.client().list_objects_v2(Bucket=BUCKET).get("Contents", [])]


@pytest.fixture
def seeded(hub: HubServer, s3: S3, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """`tiny` (org/tiny) pulled into tmp/a from the Hub stand-in, `own` (org/own, which ships a
    model.sig) named in the catalog; the bucket exists, empty."""
    hub.add_repo("org/tiny", FILES)
    hub.add_repo("org/own", {**FILES, "model.sig": b'{"not": "ours"}\n'})
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
    assert (sig["action"], sig["dest"]) == ("uploaded", f"{TO}/tiny/model.sig")
    # Where a pull from the mirror s3://team-models/hub/{model}/{path} looks for path model.sig, and
    # last of all: after every file object and the manifest.
    puts = [
        path
        for method, path, query in s3.cutter.writes
        if method == "PUT" and "partNumber=" not in query
    ]
    assert puts[-2:] == [f"/{BUCKET}/hub/.mdl/tiny.json", f"/{BUCKET}/hub/tiny/model.sig"], puts
    manifest = json.loads(
        s3.client().get_object(Bucket=BUCKET, Key="hub/.mdl/tiny.json")["Body"].read()
    )
    assert {f["path"] for f in manifest["files"]} == set(FILES), (
        "the manifest lists the model's files"
    )

    folder = tmp_path / "downloaded"
    assert download(s3, "hub/tiny/", folder) == {*FILES, "model.sig"}
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
    assert files_of(planned)["model.sig"]["dest"] == f"{TO}/tiny/model.sig"
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
    assert s3.cutter.writes == [] and "hub/tiny/model.sig" not in keys_in(s3)


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
    data = s3.client().get_object(Bucket=BUCKET, Key="hub/own/model.sig")["Body"].read()
    assert data != b'{"not": "ours"}\n' and sha(data) == files_of(forced)["model.sig"]["sha256"]
    statement = verify_signature(data, Trust(key=public), what="model.sig")
    assert set(statement.files) == set(SIGNED) and statement.model_name == "own"
    manifest = json.loads(
        s3.client().get_object(Bucket=BUCKET, Key="hub/.mdl/own.json")["Body"].read()
    )
    assert "model.sig" not in {f["path"] for f in manifest["files"]}, (
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
    assert "hub/tiny/model.sig" not in keys_in(s3) and "hub/.mdl/tiny.json" not in keys_in(s3)


@pytest.mark.slow
def test_a_rerun_keeps_a_signature_that_signs_the_same_and_replaces_any_other(
    seeded: Path, s3: S3, tmp_path: Path
) -> None:
    private, public = make_key(tmp_path)
    sign = ("publish", "tiny", "--to", TO, "--dest", str(seeded), "--sign")
    assert mdl(*sign, str(private)).exit_code == 0
    first = s3.client().get_object(Bucket=BUCKET, Key="hub/tiny/model.sig")["Body"].read()
    s3.cutter.writes.clear()
    again = mdl(*sign, str(private), "--json")
    assert again.exit_code == 0, again.output
    assert files_of(again)["model.sig"]["action"] == "skipped"
    assert files_of(again)["model.sig"]["sha256"] == sha(first), "the one kept is reported"
    assert s3.cutter.writes == [], "nothing new: no object, manifest or signature is written again"
    planned = mdl(*sign, str(private), "--dry-run", "--json")
    assert files_of(planned)["model.sig"]["action"] == "skip"

    # The same key over other digests, another key's, or not a signature at all: replaced by ours.
    other, _ = make_key(tmp_path, "other")
    stale = sign_digests({"config.json": "0" * 64}, private_key=private, model_name="tiny")
    forged = first.replace(b'"sig":"M', b'"sig":"N')  # its signature's first byte changed
    assert forged != first
    for planted in (stale, forged, b"{}"):
        s3.put(BUCKET, "hub/tiny/model.sig", planted)
        replaced = mdl(*sign, str(private), "--json")
        assert replaced.exit_code == 0, replaced.output
        assert files_of(replaced)["model.sig"]["action"] == "uploaded"
        data = s3.client().get_object(Bucket=BUCKET, Key="hub/tiny/model.sig")["Body"].read()
        assert set(verify_signature(data, Trust(key=public), what="model.sig").files) == set(SIGNED)
    s3.cutter.writes.clear()
    by_other = mdl(*sign, str(other), "--json")
    assert files_of(by_other)["model.sig"]["action"] == "uploaded"
    assert [path for _, path, _ in s3.cutter.writes] == [f"/{BUCKET}/hub/tiny/model.sig"]


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
    assert download(s3, "hub/tiny/", folder) == {*FILES, "model.sig"}
    judged = official_verify(folder, public)
    assert judged.returncode == 0, judged.stdout + judged.stderr


@pytest.mark.slow
def test_a_pull_from_the_signed_mirror_checks_its_signature(
    seeded: Path, s3: S3, hub: HubServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fleet's way: publish --sign once, then every node pulls from the mirror and checks the
    publisher's key; the source repo has no model.sig. A mirror copy replaced afterwards is refused
    by name."""
    private, public = make_key(tmp_path)
    assert (
        mdl("publish", "tiny", "--to", TO, "--dest", str(seeded), "--sign", str(private)).exit_code
        == 0
    )
    node = tmp_path / "node.toml"
    node.write_text(
        f'[settings]\nmirrors = ["{TO}/{{model}}/{{path}}"]\n\n'
        f'[models.tiny]\nrepo = "org/tiny"\n\n[models.tiny.signature]\nkey = "{public}"\n'
    )
    pulled = mdl("pull", "tiny", "--catalog", str(node), "--dest", str(tmp_path / "b"), "--json")
    assert pulled.exit_code == 0, pulled.stderr
    folder = tmp_path / "b" / "tiny"
    judged = official_verify(folder, public)
    assert judged.returncode == 0, judged.stdout + judged.stderr
    _, other = make_key(tmp_path, "other")
    node.write_text(node.read_text().replace(str(public), str(other)))
    refused = mdl("pull", "tiny", "--catalog", str(node), "--dest", str(tmp_path / "c"))
    assert refused.exit_code == ExitCode.INTEGRITY and "tiny/model.sig" in refused.stderr, (
        refused.stderr
    )
    assert not (tmp_path / "c" / "tiny" / "model.safetensors").exists()
