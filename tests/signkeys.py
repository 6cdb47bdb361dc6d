"""Keys and signatures made in the test: EC P-256 key pairs, and model.sig files made by model_signing's own CLI."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec


def key_pair(folder: Path, name: str = "signer") -> tuple[Path, Path]:
    """(private key PEM, public key PEM) written in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    private = folder / f"{name}.pem"
    public = folder / f"{name}.pub"
    private.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    public.write_bytes(
        key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    return private, public


def official(*args: str) -> subprocess.CompletedProcess[str]:
    """model_signing's own CLI (the judge), in a child process."""
    return subprocess.run(
        [sys.executable, "-m", "model_signing", *args], capture_output=True, text=True, timeout=120, check=False
    )


def official_sign(folder: Path, private: Path, *, signature: str = "model.sig") -> bytes:
    """Sign ``folder`` with the official CLI (its model.sig written inside it) and return the signature's bytes."""
    done = official("sign", "key", str(folder), "--private_key", str(private), "--signature", str(folder / signature))
    assert done.returncode == 0, done.stderr + done.stdout
    return (folder / signature).read_bytes()


def official_verify(folder: Path, public: Path, *, signature: str = "model.sig") -> subprocess.CompletedProcess[str]:
    return official("verify", "key", str(folder), "--public_key", str(public), "--signature", str(folder / signature))


def library_sign(
    folder: Path, private: Path, *, method: str = "files", algorithm: str = "sha256", shard: int = 0
) -> bytes:
    """Sign ``folder`` through model_signing's API with another serialisation than the CLI's default (``shards``
    of ``shard`` bytes, or BLAKE2/BLAKE3 digests); the signature is written to ``folder/model.sig``."""
    from model_signing import hashing, signing

    config = hashing.Config().set_ignored_paths(paths=["model.sig"])
    if method == "shards":
        config.use_shard_serialization(hashing_algorithm=algorithm, shard_size=shard)  # type: ignore[arg-type]
    else:
        config.use_file_serialization(hashing_algorithm=algorithm)  # type: ignore[arg-type]
    signing.Config().use_elliptic_key_signer(private_key=private).set_hashing_config(config).sign(
        folder, folder / "model.sig"
    )
    return (folder / "model.sig").read_bytes()
