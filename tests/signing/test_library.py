"""mdl.signing against model_signing's own CLI, both ways: what it signs mdl verifies (a key, a
certificate chain), what mdl signs it verifies; keyless without the network is a clean network
error; no stdout, ever."""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import pytest
import trustme
from signkeys import key_pair, official, official_sign, official_verify

from mdl.errors import IntegrityError, NetworkError, UsageError
from mdl.signing.library import sign_digests, verify_signature
from mdl.signing.statement import Trust

FILES = {
    "config.json": b"{}",
    "weights/model.safetensors": b"w" * 100_000,
    "README.md": b"# model\n",
}


def model_folder(root: Path) -> Path:
    folder = root / "model"
    for path, data in FILES.items():
        (folder / path).parent.mkdir(parents=True, exist_ok=True)
        (folder / path).write_bytes(data)
    return folder


@pytest.mark.slow
def test_a_key_signature_by_the_official_tool_is_verified_with_its_digests(tmp_path: Path) -> None:
    private, public = key_pair(tmp_path / "keys")
    signature = official_sign(model_folder(tmp_path), private)
    signed = verify_signature(signature, Trust(key=public), what="model/model.sig")
    assert signed.free and signed.model_name == "model"
    assert {path: one.sha256 for path, one in signed.files.items()} == {
        path: hashlib.sha256(data).hexdigest() for path, data in FILES.items()
    }
    assert (
        signed.ignores("model.sig")
        and signed.ignores(".gitattributes")
        and not signed.ignores("README.md")
    )


@pytest.mark.slow
def test_another_key_is_refused(tmp_path: Path) -> None:
    private, _ = key_pair(tmp_path / "keys")
    _, other = key_pair(tmp_path / "other")
    signature = official_sign(model_folder(tmp_path), private)
    with pytest.raises(IntegrityError, match=r"model/model.sig: the signature does not verify"):
        verify_signature(signature, Trust(key=other), what="model/model.sig")


@pytest.mark.slow
def test_a_certificate_chain_signature_is_verified_against_the_trusted_ca_only(
    tmp_path: Path,
) -> None:
    ca, stranger = trustme.CA(), trustme.CA()
    leaf = ca.issue_cert("signer.example.com")
    for name, blob in (("ca.pem", ca.cert_pem), ("stranger.pem", stranger.cert_pem)):
        blob.write_to_path(str(tmp_path / name))
    leaf.private_key_pem.write_to_path(str(tmp_path / "leaf.key"))
    leaf.cert_chain_pems[0].write_to_path(str(tmp_path / "leaf.pem"))
    folder = model_folder(tmp_path)
    done = official(
        "sign", "certificate", str(folder), "--private_key", str(tmp_path / "leaf.key"),
        "--signing_certificate", str(tmp_path / "leaf.pem"), "--certificate_chain", str(tmp_path / "ca.pem"),
        "--signature", str(folder / "model.sig"),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    signature = (folder / "model.sig").read_bytes()
    signed = verify_signature(signature, Trust(certificates=(tmp_path / "ca.pem",)), what="m")
    assert set(signed.files) == set(FILES)
    with pytest.raises(IntegrityError):
        verify_signature(signature, Trust(certificates=(tmp_path / "stranger.pem",)), what="m")


@pytest.mark.slow
def test_what_mdl_signs_the_official_tool_verifies(tmp_path: Path) -> None:
    private, public = key_pair(tmp_path / "keys")
    folder = model_folder(tmp_path)
    digests = {path: hashlib.sha256(data).hexdigest() for path, data in FILES.items()}
    (folder / "model.sig").write_bytes(
        sign_digests(digests, private_key=private, model_name="model")
    )
    judged = official_verify(folder, public)
    assert judged.returncode == 0, judged.stderr + judged.stdout
    (folder / "README.md").write_bytes(b"# changed\n")
    assert official_verify(folder, public).returncode != 0  # the judge is not a rubber stamp


def test_an_unusable_signing_key_is_exit_2_naming_it(tmp_path: Path) -> None:
    bad = tmp_path / "bad.pem"
    bad.write_text("not a key")
    with pytest.raises(UsageError, match=r"bad\.pem"):
        sign_digests({"a": "0" * 64}, private_key=bad, model_name="m")
    with pytest.raises(UsageError, match=r"missing\.pem"):
        sign_digests({"a": "0" * 64}, private_key=tmp_path / "missing.pem", model_name="m")


@pytest.mark.slow
def test_keyless_without_the_network_is_a_network_error_not_a_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # sigstore refreshes its trust root over TUF: every request goes to a closed port on 127.0.0.1,
    # never out.
    for name in (
        "HTTPS_PROXY",
        "HTTP_PROXY",
        "ALL_PROXY",
        "https_proxy",
        "http_proxy",
        "all_proxy",
    ):
        monkeypatch.setenv(name, "http://127.0.0.1:9")
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    private, _ = key_pair(tmp_path / "keys")
    signature = official_sign(model_folder(tmp_path), private)
    trust = Trust(identity="release@example.com", issuer="https://accounts.example.com")
    with pytest.raises(NetworkError, match="needs sigstore's trust root from the network"):
        verify_signature(signature, trust, what="m/model.sig")


def test_without_model_signing_it_is_exit_2_naming_the_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "model_signing", None)
    with pytest.raises(UsageError, match=r"mdl\[sign\]"):
        verify_signature(b"{}", Trust(key=tmp_path / "k.pub"), what="m")


@pytest.mark.slow
def test_the_library_never_writes_to_stdout(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """A bundle without a key hint makes model_signing print a warning on stdout, which is mdl's
    data.
    """
    import json

    private, public = key_pair(tmp_path / "keys")
    bundle = json.loads(official_sign(model_folder(tmp_path), private))
    del bundle["verificationMaterial"]["publicKey"]["hint"]
    verify_signature(json.dumps(bundle).encode(), Trust(key=public), what="m")
    assert capfd.readouterr().out == ""


@pytest.mark.slow
def test_the_library_s_words_about_a_bundle_reach_no_terminal_raw(tmp_path: Path) -> None:
    """A bundle's text is the sender's: a control character in it is escaped in the message,
    which stays one line.
    """
    import json

    private, public = key_pair(tmp_path / "keys")
    bundle = json.loads(official_sign(model_folder(tmp_path), private))
    bundle["mediaType"] = "\x1b[31mred\nline"
    with pytest.raises(IntegrityError) as caught:
        verify_signature(json.dumps(bundle).encode(), Trust(key=public), what="m/model.sig")
    assert "\x1b" not in caught.value.message and "\n" not in caught.value.message
    del bundle["dsseEnvelope"]
    bundle["\x1b]0;x\x07"] = 1
    with pytest.raises(IntegrityError) as caught:
        verify_signature(json.dumps(bundle).encode(), Trust(key=public), what="m/model.sig")
    assert "\x1b" not in caught.value.message and "\x07" not in caught.value.message
