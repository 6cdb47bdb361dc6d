"""A signed digest of the wrong size (an empty one above all) is a malformed signature, refused
(exit 6): an empty sha256 is false wherever mdl pins a file, so it would install any bytes under a
signature model_signing's own check refuses (no file hashes to nothing)."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest
from runfixtures import mdl
from servers import HubServer
from signkeys import key_pair

from mdl.errors import IntegrityError
from mdl.signing import library
from mdl.signing.library import sign_digests, verify_signature
from mdl.signing.statement import SignedManifest, Trust

CONFIG = b'{"model_type": "bert"}\n'
WEIGHTS = b"w" * 5000
WHAT = "tiny/model.sig"


@pytest.mark.parametrize("digest", ["", "ab" * 16, "ab" * 64])
def test_a_digest_of_the_wrong_size_is_refused(tmp_path: Path, digest: str) -> None:
    """Both ways a key's signature is read (cryptography alone, and model_signing) refuse it."""
    private, public = key_pair(tmp_path / "keys")
    data = sign_digests({"config.json": digest}, private_key=private, model_name="tiny")
    said = rf"^{WHAT}: the signature's sha256 digest of 'config.json' is {len(digest) // 2} bytes"
    with pytest.raises(IntegrityError, match=said):
        verify_signature(data, Trust(key=public), what=WHAT)
    with tempfile.TemporaryDirectory() as folder, pytest.raises(IntegrityError, match=said):
        library._verified(data, Trust(key=public), Path(folder), what=WHAT)


def test_a_signed_empty_digest_installs_nothing(
    world: Path, hub: HubServer, tmp_path: Path
) -> None:
    private, public = key_pair(tmp_path / "keys")
    signature = sign_digests(
        {"config.json": "", "model.safetensors": ""}, private_key=private, model_name="tiny"
    )
    hub.add_repo(
        "org/tiny",
        {
            "config.json": CONFIG,
            "model.safetensors": WEIGHTS,
            "model.sig": signature,
            ".gitattributes": b"*.safetensors filter=lfs\n",
        },
    )
    world.write_text(
        f'[models.tiny]\nrepo = "org/tiny"\n[models.tiny.signature]\nkey = "{public}"\n'
    )
    result = mdl("pull", "tiny")
    assert result.exit_code == 6, result.stderr
    said = f"mdl: error: {WHAT}: the signature's sha256 digest of 'config.json' is 0 bytes, not 32"
    assert any(line.endswith(said) for line in result.stderr.splitlines()), result.stderr
    assert "Traceback" not in result.stderr
    folder = tmp_path / "models" / "tiny"
    assert not (folder / "config.json").exists()
    assert not (folder / "model.safetensors").exists()


@pytest.mark.parametrize("digest", ["", "AB" * 32, "ab" * 16])
def test_a_kept_statement_with_a_digest_of_the_wrong_size_is_not_used(
    tmp_path: Path, digest: str
) -> None:
    """A statement kept from an earlier run is held to what a verified one is: one with a digest
    of the wrong size (kept by an mdl that took it) is not used: the signature is verified again."""
    private, public = key_pair(tmp_path / "keys")
    data = sign_digests({"config.json": "ab" * 32}, private_key=private, model_name="tiny")
    kept = verify_signature(data, Trust(key=public), what=WHAT).to_json()
    assert SignedManifest.from_json(json.loads(json.dumps(kept))) == SignedManifest.from_json(kept)
    kept["files"]["config.json"][0][2] = digest  # type: ignore[index]
    with pytest.raises(ValueError, match="not a kept statement"):
        SignedManifest.from_json(kept)
