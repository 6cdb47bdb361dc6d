"""Keys and signatures made in the test: EC P-256 key pairs, and model.sig files made by
model_signing's own CLI (run in this process).
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import logging
import subprocess
import traceback
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec


def key_pair(folder: Path, name: str = "signer") -> tuple[Path, Path]:
    """(private key PEM, public key PEM) written in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    private = folder / f"{name}.pem"
    public = folder / f"{name}.pub"
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


def official(*args: str) -> subprocess.CompletedProcess[str]:
    """model_signing's own CLI (the judge), run in this process as ``python -m model_signing``
    runs it (its ``__main__`` calls this click group): its stdout and stderr captured, its logging
    set up anew on that stderr and put back after, what a child would print as a traceback on its
    stderr with exit 1. A child's start and imports were a CPU-second a call."""
    from model_signing._cli import main

    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    out, err = io.StringIO(), io.StringIO()
    code: int = 0
    root.handlers.clear()  # its basicConfig then sets the root up, as in a child
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                main.main(args=list(args), prog_name="model_signing")  # ends in SystemExit
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else int(exc.code is not None)
            except Exception:
                traceback.print_exc()
                code = 1
    finally:
        for made in root.handlers:
            made.close()
        root.handlers[:] = handlers
        root.setLevel(level)
    return subprocess.CompletedProcess(
        ["model_signing", *args], code, out.getvalue(), err.getvalue()
    )


def official_sign(folder: Path, private: Path, *, signature: str = "model.sig") -> bytes:
    """Sign ``folder`` with the official CLI (its model.sig written inside it) and return the
    signature's bytes.
    """
    done = official(
        "sign",
        "key",
        str(folder),
        "--private_key",
        str(private),
        "--signature",
        str(folder / signature),
    )
    assert done.returncode == 0, done.stderr + done.stdout
    return (folder / signature).read_bytes()


def official_verify(
    folder: Path, public: Path, *, signature: str = "model.sig"
) -> subprocess.CompletedProcess[str]:
    return official(
        "verify",
        "key",
        str(folder),
        "--public_key",
        str(public),
        "--signature",
        str(folder / signature),
    )


def library_sign(
    folder: Path, private: Path, *, method: str = "files", algorithm: str = "sha256", shard: int = 0
) -> bytes:
    """Sign ``folder`` through model_signing's API with another serialisation than the CLI's default
    (``shards`` of ``shard`` bytes, or BLAKE2/BLAKE3 digests); the signature is written to
    ``folder/model.sig``."""
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


def json_places(doc: Any, here: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every place in a JSON document (keys and indexes from the top), the whole document first."""
    found = [here]
    if isinstance(doc, dict):
        for key, value in doc.items():
            found += json_places(value, (*here, key))
    elif isinstance(doc, list):
        for index, value in enumerate(doc):
            found += json_places(value, (*here, index))
    return found


def json_replaced(doc: Any, place: tuple[Any, ...], value: Any) -> Any:
    """A copy of ``doc`` with ``value`` at ``place``."""
    if not place:
        return value
    copy = dict(doc) if isinstance(doc, dict) else list(doc)
    copy[place[0]] = json_replaced(doc[place[0]], place[1:], value)
    return copy


def mutated_bundle(signature: bytes, *, in_statement: bool, pick: int, value: Any) -> bytes:
    """``signature`` (a model.sig) with one place of its bundle, or of the statement it signs,
    replaced.
    """
    bundle = json.loads(signature)
    if in_statement:
        statement = json.loads(base64.b64decode(bundle["dsseEnvelope"]["payload"]))
        places = json_places(statement)
        changed = json_replaced(statement, places[pick % len(places)], value)
        bundle["dsseEnvelope"]["payload"] = base64.b64encode(json.dumps(changed).encode()).decode()
        return json.dumps(bundle).encode()
    places = json_places(bundle)
    return json.dumps(json_replaced(bundle, places[pick % len(places)], value)).encode()


def write_files(folder: Path, files: dict[str, bytes]) -> Path:
    for path, data in files.items():
        (folder / path).parent.mkdir(parents=True, exist_ok=True)
        (folder / path).write_bytes(data)
    return folder
