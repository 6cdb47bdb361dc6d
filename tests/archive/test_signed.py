"""Signed archives: ``mdl pack --sign KEY.pem`` writes an OpenSSF model.sig over the packed files
(which the official ``model_signing verify key`` accepts once unpacked), and ``mdl unpack
--signed-by PUB.pem`` verifies it and holds every extracted file to it: a bad, missing or foreign
signature, an unsigned, changed or missing file is exit 6 with nothing of the archive at its final
paths. Keys are made here; model_signing's own CLI is the judge."""

from __future__ import annotations

import base64
import hashlib
import json
import sys
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from profiles import examples
from runfixtures import make_hf_run, mdl, write
from signkeys import json_places, json_replaced, official, official_verify
from typer.testing import CliRunner, Result

from mdl.cli.app import app
from mdl.errors import ExitCode
from mdl.signing.statement import Trust

TOP = "model"  # the archive's top-level folder (-o model.zip)
MANIFEST = "mdl-manifest.json"


def make_keys(folder: Path, name: str = "key") -> tuple[Path, Path]:
    """A fresh EC P-256 key pair as PEM files: (private, public)."""
    key = ec.generate_private_key(ec.SECP256R1())
    private, public = folder / f"{name}.pem", folder / f"{name}.pub"
    private.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    public.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return private, public


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A training run, a key pair (key.pem, key.pub) and a second one (other.*), in the current
    folder.
    """
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MDL_LOG_FILE", str(tmp_path / "mdl.log"))
    make_hf_run(tmp_path / "run", steps=(100,))
    make_keys(tmp_path)
    make_keys(tmp_path, "other")
    return tmp_path


def pack_signed(folder: Path, *extra: str) -> Path:
    result = mdl(
        "pack", "run", "--checkpoint", "latest", "-o", "model.zip", "--sign", "key.pem", *extra
    )
    assert result.exit_code == 0, result.stderr
    return folder / "model.zip"


def no_traceback(result: Result) -> None:
    assert "Traceback" not in result.stderr
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception


def nothing_installed(dest: Path) -> None:
    """Nothing of the archive at its final paths, and no staging left behind."""
    assert not (dest / TOP).exists()
    assert (
        not [p.name for p in dest.iterdir() if p.name.startswith(".mdl-unpack-")]
        if dest.exists()
        else True
    )


def top_of(archive: Path) -> str:
    with zipfile.ZipFile(archive) as zf:
        return zf.namelist()[0].split("/", 1)[0]


def members(archive: Path) -> dict[str, bytes]:
    """The archive's files by their path in its top-level folder."""
    top = top_of(archive)
    with zipfile.ZipFile(archive) as zf:
        return {
            i.filename.removeprefix(f"{top}/"): zf.read(i) for i in zf.infolist() if not i.is_dir()
        }


def rezip(archive: Path, target: Path, change: Callable[[dict[str, bytes]], None]) -> Path:
    """The archive rewritten after ``change`` edits its files (by path in the top folder), every
    CRC-32 right and mdl's manifest listing each file's new size and sha256: only the signature can
    tell what changed."""
    top, files = top_of(archive), members(archive)
    change(files)
    if MANIFEST in files:
        doc = json.loads(files[MANIFEST])
        roles = {item["path"]: item["role"] for item in doc["files"]}
        doc["files"] = [
            {
                "path": p,
                "size": len(d),
                "sha256": hashlib.sha256(d).hexdigest(),
                "role": roles.get(p, "other"),
            }
            for p, d in files.items()
            if p != MANIFEST
        ]
        files[MANIFEST] = json.dumps(doc).encode()
    with zipfile.ZipFile(target, "w") as zf:
        for path, data in files.items():
            zf.writestr(f"{top}/{path}", data)
    return target


# --- pack --sign
# --------------------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("to", ["file", "pipe"])
def test_pack_sign_passes_the_official_verifier_once_unpacked(world: Path, to: str) -> None:
    args = ("pack", "run", "--checkpoint", "latest", "--sign", "key.pem", "--json")
    if to == "file":
        packed = mdl(*args, "-o", "model.zip")
        assert packed.exit_code == 0, packed.stderr
        doc = json.loads(packed.stdout)
        assert doc["signature"] == "model.sig"
        signed = [f for f in doc["files"] if f["path"] == "model.sig"]
        assert signed and signed[0]["role"] == "signature"
    # -o -: every file hashed first, then streamed (the signature is made before the manifest)
    else:
        packed = mdl(*args[:-1], "-o", "-")
        assert packed.exit_code == 0, packed.stderr
        (world / "model.zip").write_bytes(packed.stdout_bytes)
    files = members(world / "model.zip")
    listed = {item["path"]: item for item in json.loads(files[MANIFEST])["files"]}
    sig = files["model.sig"]
    assert listed["model.sig"] == {  # covered by the manifest like any member
        "path": "model.sig",
        "size": len(sig),
        "sha256": hashlib.sha256(sig).hexdigest(),
        "role": "signature",
    }
    with zipfile.ZipFile(world / "model.zip") as zf:
        assert zf.namelist()[0].endswith(f"/{MANIFEST}") and zf.testzip() is None
    # without --signed-by: model.sig is a file like any other
    unpacked = mdl("unpack", "model.zip", "-d", "out")
    assert unpacked.exit_code == 0, unpacked.stderr
    folder = world / "out" / top_of(world / "model.zip")
    judged = official_verify(folder, world / "key.pub")
    assert judged.returncode == 0, judged.stderr + judged.stdout
    assert official_verify(folder, world / "other.pub").returncode != 0
    (folder / "config.json").write_text("{}")  # the judge sees a change as well
    assert official_verify(folder, world / "key.pub").returncode != 0


def test_pack_dry_run_says_model_sig_would_be_added(world: Path) -> None:
    result = mdl("pack", "run", "--checkpoint", "latest", "--sign", "key.pem", "--dry-run")
    assert result.exit_code == 0, result.stderr
    assert "model.sig" in result.stderr
    assert not list(world.glob("*.zip*"))


@pytest.mark.parametrize(
    ("key", "words"),
    [
        ("missing.pem", "cannot read it"),
        ("key.pub", "not a usable EC private key"),
        ("run", "cannot read it"),
    ],
)
def test_a_bad_signing_key_is_exit_2_naming_it_before_anything_is_written(
    world: Path, key: str, words: str
) -> None:
    result = mdl("pack", "run", "--checkpoint", "latest", "-o", "model.zip", "--sign", key)
    assert result.exit_code == ExitCode.USAGE, result.stderr
    assert key in result.stderr and words in result.stderr
    no_traceback(result)
    assert not list(world.glob("model.zip*"))


def test_a_checkpoint_holding_model_sig_is_refused_with_sign(world: Path) -> None:
    write(world / "run" / "checkpoint-100" / "model.sig", b"an old signature")
    result = mdl("pack", "run", "--checkpoint", "latest", "-o", "model.zip", "--sign", "key.pem")
    assert result.exit_code == ExitCode.USAGE
    assert "checkpoint-100/model.sig" in result.stderr and "--exclude model.sig" in result.stderr
    assert not list(world.glob("model.zip*"))
    again = pack_signed(world, "--exclude", "model.sig")
    assert members(again)["model.sig"] != b"an old signature"


@pytest.mark.slow
def test_git_files_are_packed_but_left_out_of_the_signature(world: Path) -> None:
    write(world / "run" / "checkpoint-100" / ".gitattributes", b"*.safetensors filter=lfs\n")
    packed = mdl("pack", "run", "--checkpoint", "latest", "-o", "model.zip", "--sign", "key.pem")
    assert packed.exit_code == 0, packed.stderr
    assert "leaves out .gitattributes" in packed.stderr
    unpacked = mdl("unpack", "model.zip", "-d", "out", "--signed-by", "key.pub")
    assert unpacked.exit_code == 0, unpacked.stderr
    # unsigned: not extracted, as a pull installs none
    assert not (world / "out" / TOP / ".gitattributes").exists()
    # mdl's own, left out of the signature by pack
    assert (world / "out" / TOP / MANIFEST).is_file()
    assert official_verify(world / "out" / TOP, world / "key.pub").returncode == 0
    plain = mdl("unpack", "model.zip", "-d", "plain")  # no signer asked for: the archive as it is
    assert plain.exit_code == 0 and (world / "plain" / TOP / ".gitattributes").is_file()


def _planted(world: Path, planted: dict[str, bytes]) -> None:
    """The signed archive with ``planted`` entries and its manifest rewritten to list them (the
    manifest is not signed): planted.zip."""
    archive = pack_signed(world)
    with zipfile.ZipFile(archive) as z:
        doc = json.loads(z.read(f"{TOP}/{MANIFEST}"))
        kept = {name: z.read(name) for name in z.namelist() if name != f"{TOP}/{MANIFEST}"}
    doc["files"] += [
        {"path": p, "size": len(d), "sha256": hashlib.sha256(d).hexdigest()}
        for p, d in planted.items()
    ]
    with zipfile.ZipFile(world / "planted.zip", "w") as z:
        for name, data in {**kept, **{f"{TOP}/{p}": d for p, d in planted.items()}}.items():
            z.writestr(name, data)
        z.writestr(f"{TOP}/{MANIFEST}", json.dumps(doc))


def test_signed_by_never_extracts_what_the_signer_left_out(world: Path) -> None:
    """Entries the signature leaves out (git's files) with a manifest rewritten to list them (the
    manifest is not signed): under --signed-by only signed bytes are extracted."""
    _planted(world, {".gitattributes": b"* filter=x\n"})
    result = mdl("unpack", "planted.zip", "-d", "out", "--signed-by", "key.pub", "--json")
    no_traceback(result)
    assert result.exit_code == 0, result.stderr
    folder = world / "out" / TOP
    assert not (folder / ".gitattributes").exists()
    assert (folder / "model.safetensors").is_file() and (folder / "model.sig").is_file()
    extracted = {f["path"] for f in json.loads(result.stdout)["files"]}
    assert f"{TOP}/.gitattributes" not in extracted and f"{TOP}/model.sig" in extracted


@pytest.mark.parametrize("signed_by", [True, False], ids=["signed-by", "plain"])
def test_a_git_folder_in_an_archive_is_left_out_said(world: Path, signed_by: bool) -> None:
    """``.git/config`` with ``core.fsmonitor`` runs its command at the next ``git status`` in the
    folder: entries under a ``.git`` folder are never extracted (a zip of a cloned repo holds one:
    the rest of it is), said on stderr and in --json's ``left_out``."""
    _planted(world, {".git/config": b"[core]\n\tfsmonitor = touch pwned\n"})
    extra = ("--signed-by", "key.pub") if signed_by else ()
    result = mdl("unpack", "planted.zip", "-d", "out", "--json", *extra)
    no_traceback(result)
    assert result.exit_code == 0, result.stderr
    assert "left out 1 entry under .git/ (version control's own data" in result.stderr
    assert json.loads(result.stdout)["left_out"] == [f"{TOP}/.git/config"]
    assert not (world / "out" / TOP / ".git").exists()
    assert (world / "out" / TOP / "model.safetensors").is_file()


def test_without_model_signing_sign_and_signed_by_are_exit_2_naming_the_extra(
    world: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    unsigned = mdl("pack", "run", "--checkpoint", "latest", "-o", "plain.zip")
    assert unsigned.exit_code == 0, unsigned.stderr
    # as after installing mdl without mdl[sign]
    monkeypatch.setitem(sys.modules, "model_signing", None)
    packed = mdl("pack", "run", "--checkpoint", "latest", "-o", "model.zip", "--sign", "key.pem")
    assert packed.exit_code == ExitCode.USAGE and "mdl[sign]" in packed.stderr
    assert not list(world.glob("model.zip*"))
    unpacked = mdl("unpack", "plain.zip", "-d", "out", "--signed-by", "key.pub")
    assert unpacked.exit_code == ExitCode.USAGE and "mdl[sign]" in unpacked.stderr
    nothing_installed(world / "out")
    # no signature asked for: as before
    assert mdl("unpack", "plain.zip", "-d", "out").exit_code == 0


# --- unpack --signed-by
# -------------------------------------------------------------------------------------------


def test_unpack_signed_by_verifies_and_says_by_whom(world: Path) -> None:
    pack_signed(world)
    result = mdl("unpack", "model.zip", "-d", "out", "--signed-by", "key.pub", "--json")
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    by = Trust(key=world / "key.pub").by()
    assert doc["signature"] == {"verified": True, "by": by, "file": f"{TOP}/model.sig"}
    assert by.startswith("key ")
    source = world / "run" / "checkpoint-100"
    for path in source.iterdir():
        if path.name == "config.json":
            assert (world / "out" / TOP / path.name).read_bytes() == path.read_bytes()
    said = mdl("unpack", "model.zip", "-d", "again", "--signed-by", "key.pub")
    assert said.exit_code == 0 and f"signed by {by}" in said.stderr
    plain = mdl("unpack", "model.zip", "-d", "plain", "--json")  # without --signed-by: no claim
    assert json.loads(plain.stdout)["signature"] is None


def test_unpack_signed_by_from_stdin(world: Path) -> None:
    archive = pack_signed(world)
    piped = archive.read_bytes()
    result = CliRunner().invoke(
        app, ["unpack", "-", "-d", "out", "--signed-by", "key.pub", "--json"], input=piped
    )
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["signature"]["verified"] is True
    forged = CliRunner().invoke(
        app, ["unpack", "-", "-d", "forged", "--signed-by", "other.pub"], input=piped
    )
    assert forged.exit_code == ExitCode.INTEGRITY
    nothing_installed(world / "forged")


def test_wrong_key_is_exit_6_and_nothing_installed(world: Path) -> None:
    pack_signed(world)
    result = mdl("unpack", "model.zip", "-d", "out", "--signed-by", "other.pub")
    assert result.exit_code == ExitCode.INTEGRITY, result.stderr
    assert f"{TOP}/model.sig" in result.stderr and "does not verify" in result.stderr
    no_traceback(result)
    nothing_installed(world / "out")


def test_a_member_changed_after_signing_is_exit_6_and_the_old_tree_stays(world: Path) -> None:
    archive = pack_signed(world)
    assert mdl("unpack", "model.zip", "-d", "out", "--signed-by", "key.pub").exit_code == 0
    before = {p: p.read_bytes() for p in (world / "out").rglob("*") if p.is_file()}

    def swap_weights(files: dict[str, bytes]) -> None:
        # same size: CRC and manifest redone
        files["model.safetensors"] = files["model.safetensors"][:-1] + b"!"

    rezip(archive, world / "tampered.zip", swap_weights)
    # the archive itself is consistent
    assert mdl("unpack", "tampered.zip", "-d", "fresh").exit_code == 0
    result = mdl("unpack", "tampered.zip", "-d", "out", "--force", "--signed-by", "key.pub")
    assert result.exit_code == ExitCode.INTEGRITY, result.stderr
    assert f"{TOP}/model.safetensors" in result.stderr and "signed sha256 mismatch" in result.stderr
    no_traceback(result)
    assert {p: p.read_bytes() for p in (world / "out").rglob("*") if p.is_file()} == before
    nothing_installed(world / "new")
    result = mdl("unpack", "tampered.zip", "-d", "new", "--signed-by", "key.pub")
    assert result.exit_code == ExitCode.INTEGRITY
    nothing_installed(world / "new")


def test_an_unsigned_member_is_exit_6_naming_it(world: Path) -> None:
    archive = pack_signed(world)
    rezip(archive, world / "extra.zip", lambda files: files.update({"added.py": b"import os\n"}))
    result = mdl("unpack", "extra.zip", "-d", "out", "--signed-by", "key.pub")
    assert result.exit_code == ExitCode.INTEGRITY, result.stderr
    assert f"{TOP}/added.py" in result.stderr and "not signed" in result.stderr
    nothing_installed(world / "out")


def test_a_signed_member_missing_is_exit_6_naming_it(world: Path) -> None:
    archive = pack_signed(world)
    rezip(archive, world / "short.zip", lambda files: files.pop("config.json"))
    result = mdl("unpack", "short.zip", "-d", "out", "--signed-by", "key.pub")
    assert result.exit_code == ExitCode.INTEGRITY, result.stderr
    assert f"{TOP}/config.json" in result.stderr and "does not hold" in result.stderr
    nothing_installed(world / "out")


def test_an_unsigned_archive_is_exit_6_with_signed_by(world: Path) -> None:
    assert mdl("pack", "run", "--checkpoint", "latest", "-o", "model.zip").exit_code == 0
    result = mdl("unpack", "model.zip", "-d", "out", "--signed-by", "key.pub")
    assert result.exit_code == ExitCode.INTEGRITY
    assert f"no '{TOP}/model.sig'" in result.stderr
    nothing_installed(world / "out")


@pytest.mark.parametrize(
    "signature",
    [
        b"not json at all",
        b"{}",
        b'{"mediaType": "application/vnd.dev.sigstore.bundle+json"}',
        b"\xff" * 9,
    ],
)
def test_a_model_sig_that_is_no_bundle_is_exit_6_without_traceback(
    world: Path, signature: bytes
) -> None:
    archive = pack_signed(world)
    rezip(archive, world / "bad.zip", lambda files: files.update({"model.sig": signature}))
    result = mdl("unpack", "bad.zip", "-d", "out", "--signed-by", "key.pub")
    assert result.exit_code == ExitCode.INTEGRITY, result.stderr
    assert f"{TOP}/model.sig" in result.stderr
    no_traceback(result)
    nothing_installed(world / "out")


def test_a_missing_public_key_is_exit_2_before_the_archive_is_read(world: Path) -> None:
    pack_signed(world)
    result = mdl("unpack", "model.zip", "-d", "out", "--signed-by", "missing.pub")
    assert result.exit_code == ExitCode.USAGE and "missing.pub" in result.stderr
    no_traceback(result)
    assert not (world / "out").exists()


@pytest.mark.slow
def test_a_folder_the_official_tool_signed_and_zipped_verifies(world: Path) -> None:
    """What ``model_signing sign key`` makes, mdl verifies: a plain zip of a signed folder (no
    mdl manifest).
    """
    folder = world / TOP
    write(folder / "weights.bin", bytes(range(256)) * 300)
    write(folder / "sub" / "config.json", b'{"a": 1}')
    args = [
        "sign",
        "key",
        str(folder),
        "--private_key",
        "key.pem",
        "--signature",
        str(folder / "model.sig"),
    ]
    signed = official(*args)
    assert signed.returncode == 0, signed.stderr + signed.stdout
    with zipfile.ZipFile(world / "theirs.zip", "w") as zf:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                zf.write(path, path.relative_to(world).as_posix())
    ok = mdl("unpack", "theirs.zip", "-d", "out", "--signed-by", "key.pub")
    assert ok.exit_code == 0, ok.stderr

    def grow(files: dict[str, bytes]) -> None:
        files["sub/config.json"] = b'{"a": 2}'

    rezip(world / "theirs.zip", world / "changed.zip", grow)
    bad = mdl("unpack", "changed.zip", "-d", "bad", "--signed-by", "key.pub")
    assert bad.exit_code == ExitCode.INTEGRITY and f"{TOP}/sub/config.json" in bad.stderr
    nothing_installed(world / "bad")


def test_a_blake3_signature_is_checked_as_the_bytes_are_extracted(world: Path) -> None:
    """A signature over BLAKE3 digests (the library's own API: its CLI has no flag for it) costs a
    second hash, fed the same bytes as they are written: a changed byte is exit 6, nothing
    installed."""
    from model_signing import hashing, signing

    folder = world / TOP
    write(folder / "weights.bin", bytes(range(256)) * 4096)
    hashed = hashing.Config().use_file_serialization(hashing_algorithm="blake3")
    signer = (
        signing.Config()
        .use_elliptic_key_signer(private_key=world / "key.pem")
        .set_hashing_config(hashed)
    )
    signer.sign(folder, folder / "model.sig")
    with zipfile.ZipFile(world / "blake3.zip", "w") as zf:
        for name in ("weights.bin", "model.sig"):
            zf.write(folder / name, f"{TOP}/{name}")
    ok = mdl("unpack", "blake3.zip", "-d", "out", "--signed-by", "key.pub")
    assert ok.exit_code == 0, ok.stderr

    def flip(files: dict[str, bytes]) -> None:
        data = bytearray(files["weights.bin"])
        data[700_000] ^= 1
        files["weights.bin"] = bytes(data)

    rezip(world / "blake3.zip", world / "flipped.zip", flip)
    bad = mdl("unpack", "flipped.zip", "-d", "bad", "--signed-by", "key.pub")
    assert bad.exit_code == ExitCode.INTEGRITY, bad.stderr
    assert f"{TOP}/weights.bin" in bad.stderr and "signed blake3 mismatch" in bad.stderr
    nothing_installed(world / "bad")


# --- any model.sig
# ------------------------------------------------------------------------------------------------

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=40),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=6,
)


def _statement_edit(
    bundle: dict[str, Any], edit: Callable[[dict[str, Any]], None]
) -> dict[str, Any]:
    """The bundle with its DSSE payload (the signed in-toto statement) edited, the signature left
    as it was.
    """
    envelope = dict(bundle["dsseEnvelope"])
    statement = json.loads(base64.b64decode(envelope["payload"]))
    edit(statement)
    envelope["payload"] = base64.b64encode(json.dumps(statement).encode()).decode()
    return {**bundle, "dsseEnvelope": envelope}


@pytest.fixture(scope="module")
def signed_archive(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, bytes]:
    """A signed archive made once (pack --sign through the API) and its genuine model.sig."""
    from mdl import api

    root = tmp_path_factory.mktemp("signed")
    make_hf_run(root / "run", steps=(1,))
    make_keys(root)
    api.pack(root / "run", output=root / "model.zip", checkpoint="latest", sign=root / "key.pem")
    return root / "model.zip", members(root / "model.zip")["model.sig"]


def _mutations(genuine: bytes) -> st.SearchStrategy[bytes]:
    bundle = json.loads(genuine)
    places = json_places(bundle)

    def a_subject_digest(statement: dict[str, Any], value: Any) -> None:
        statement["predicate"]["resources"][0]["digest"] = value

    return st.one_of(
        st.binary(max_size=2048),
        st.just(genuine),
        st.tuples(st.sampled_from(places), JSON_VALUES).map(
            lambda edit: json.dumps(json_replaced(bundle, edit[0], edit[1])).encode()
        ),
        st.sampled_from(places[1:]).map(  # a field dropped
            lambda path: json.dumps(
                json_replaced(bundle, path[:-1], _without(bundle, path))
            ).encode()
        ),
        JSON_VALUES.map(
            lambda value: json.dumps(
                _statement_edit(bundle, lambda s: a_subject_digest(s, value))
            ).encode()
        ),
        st.sampled_from(["a" * 64, "0" * 64]).map(
            lambda hex_: json.dumps(
                _statement_edit(
                    bundle, lambda s: s["subject"][0]["digest"].update({"sha256": hex_})
                )
            ).encode()
        ),
    )


def _without(doc: Any, path: tuple[Any, ...]) -> Any:
    parent: Any = doc
    for part in path[:-1]:
        parent = parent[part]
    if isinstance(parent, dict):
        return {k: v for k, v in parent.items() if k != path[-1]}
    return [v for i, v in enumerate(parent) if i != path[-1]]


def _signed_parts(bundle: bytes) -> tuple[Any, Any, Any]:
    """What the signature covers (the DSSE payload and its type) and the signature itself."""
    envelope = json.loads(bundle)["dsseEnvelope"]
    return envelope["payload"], envelope["payloadType"], [s["sig"] for s in envelope["signatures"]]


@settings(
    max_examples=examples(80),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(data=st.data())
def test_any_model_sig_is_exit_0_only_when_genuine(
    data: st.DataObject, signed_archive: tuple[Path, bytes]
) -> None:
    archive, genuine = signed_archive
    signature = data.draw(_mutations(genuine))
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        rezip(archive, root / "m.zip", lambda files: files.update({"model.sig": signature}))
        result = mdl(
            "unpack",
            str(root / "m.zip"),
            "-d",
            str(root / "out"),
            "--signed-by",
            str(archive.parent / "key.pub"),
        )
        no_traceback(result)
        if signature == genuine:
            assert result.exit_code == 0, result.stderr
        # only the bundle's unsigned parts (a key hint, the log entries) may differ
        elif result.exit_code == 0:
            assert _signed_parts(signature) == _signed_parts(genuine)
        else:
            assert result.exit_code in (ExitCode.INTEGRITY, ExitCode.USAGE), result.stderr
            nothing_installed(root / "out")
