"""Three releases of a team's own 2-shard model as the issue 76 tests ship them: v1 two shards, v2
re-sharded into three, v3 changing one shard of v2 (config.json the same throughout). Their locks,
and their objects and manifests in a mirror of the content layout (``<prefix>/<model>/<sha256>``,
``<prefix>/.mdl/versions/<model>/<id>.json``), written with the store's own writer as publish
writes them: each object once, marked as mdl's."""

from __future__ import annotations

import base64
import hashlib
import json
import threading
import time
from collections.abc import Mapping
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from runfixtures import HANG
from s3server import S3

from mdl.buckets import versions
from mdl.buckets.protocol import Writer, side_of
from mdl.buckets.registry import store_for
from mdl.catalog.load import parse_catalog
from mdl.lockfile.io import write_lock
from mdl.lockfile.model import Lock, LockedFile, LockedModel, fingerprint

MODEL = "llm"
CATALOG = f'[models.{MODEL}]\nrepo = "org/llm"\n'
CONFIG = b'{"model_type": "llm"}\n'
SIGNATURE = "model.sig"
# the team's signer: its public key, and each release's model.sig
Signed = tuple[Path, dict[str, bytes]]


def shard(seed: int) -> bytes:
    """A shard's bytes: each seed its own content and its own size (seed KiB and a bit)."""
    return hashlib.shake_128(bytes([seed])).digest(1024 * seed + seed)


RELEASES: dict[str, dict[str, bytes]] = {
    "v1": {
        "config.json": CONFIG,
        "model-00001-of-00002.safetensors": shard(1),
        "model-00002-of-00002.safetensors": shard(2),
    },
    "v2": {
        "config.json": CONFIG,
        "model-00001-of-00003.safetensors": shard(3),
        "model-00002-of-00003.safetensors": shard(4),
        "model-00003-of-00003.safetensors": shard(5),
    },
}
RELEASES["v3"] = {**RELEASES["v2"], "model-00002-of-00003.safetensors": shard(6)}
COMMITS = {"v1": "1" * 40, "v2": "2" * 40, "v3": "3" * 40}


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def source(release: str, path: str) -> str:
    return f"hf://org/llm@{COMMITS[release]}/{path}"


def signed_catalog(key: Path) -> str:
    """The catalog naming the team's signer (its public key ``key``)."""
    return f'{CATALOG}\n[models.{MODEL}.signature]\nkey = "{key}"\n'


def signatures(private: Path) -> dict[str, bytes]:
    """Each release's model.sig, as ``publish --sign`` makes it with the key ``private``."""
    return {
        release: keyed_signature({path: sha(data) for path, data in files.items()}, private)
        for release, files in RELEASES.items()
    }


def keyed_signature(
    digests: Mapping[str, str],
    private: Path,
    *,
    hash_type: str = "sha256",
    ignore: tuple[str, ...] = (),
) -> bytes:
    """A model.sig over ``digests`` (path → hex digest, ``hash_type``'s: sha256 or blake2)
    signed with the EC key at ``private``, leaving ``ignore`` out too: the bundle model_signing's
    ``sign key`` writes (a DSSE envelope of the in-toto statement), made with `cryptography` alone
    (no model_signing needed to make or check it)."""
    key = serialization.load_pem_private_key(private.read_bytes(), password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    items = sorted(digests.items())
    root = hashlib.sha256(b"".join(bytes.fromhex(h) for _, h in items)).hexdigest()
    statement = {
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{"name": MODEL, "digest": {"sha256": root}}],
        "predicateType": "https://model_signing/signature/v1.0",
        "predicate": {
            "serialization": {
                "method": "files",
                "hash_type": hash_type,
                "allow_symlinks": False,
                "ignore_paths": [SIGNATURE, *ignore],
            },
            "resources": [
                {
                    "name": p,
                    "algorithm": {"blake2": "blake2b"}.get(hash_type, hash_type),
                    "digest": h,
                }
                for p, h in items
            ],
        },
    }
    payload = json.dumps(statement).encode()
    kind = "application/vnd.in-toto+json"
    signed = b"DSSEv1 %d %s %d " % (len(kind), kind.encode(), len(payload)) + payload
    bundle = {
        "mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json",
        "verificationMaterial": {"publicKey": {"hint": hashlib.sha256(pem).hexdigest()}},
        "dsseEnvelope": {
            "payload": base64.b64encode(payload).decode(),
            "payloadType": kind,
            "signatures": [
                {"sig": base64.b64encode(key.sign(signed, ec.ECDSA(hashes.SHA256()))).decode()}
            ],
        },
    }
    return json.dumps(bundle).encode()


def locked(release: str, signed: Signed | None = None) -> Lock:
    """The lock ``mdl lock`` writes for the catalog at ``release`` (``signed``: the catalog naming
    a signer, and each release's model.sig, which the lock pins too)."""
    catalog = CATALOG if signed is None else signed_catalog(signed[0])
    spec = parse_catalog(catalog).models[0]
    every = dict(RELEASES[release])
    if signed is not None:
        every[SIGNATURE] = signed[1][release]
    files = tuple(
        LockedFile(path, len(data), sha(data), source(release, path))
        for path, data in sorted(every.items())
    )
    return Lock({MODEL: LockedModel(MODEL, fingerprint(spec), "main", COMMITS[release], files)})


def write_locks(folder: Path, current: str = "v3", signed: Signed | None = None) -> dict[str, Path]:
    """catalog.toml with ``current``'s catalog.lock beside it, and each release's lock kept in
    ``folder/releases/<release>.lock``; the kept locks by release. ``signed``: the catalog names
    the signer (its public key) and each lock pins the release's model.sig."""
    (folder / "catalog.toml").write_text(CATALOG if signed is None else signed_catalog(signed[0]))
    write_lock(folder / "catalog.lock", locked(current, signed))
    (folder / "releases").mkdir(exist_ok=True)
    kept = {}
    for release in RELEASES:
        kept[release] = folder / "releases" / f"{release}.lock"
        write_lock(kept[release], locked(release, signed))
    return kept


def object_uri(prefix: str, data: bytes) -> str:
    return f"{prefix}/{MODEL}/{sha(data)}"


def version_id(release: str) -> str:
    return versions.version_id((p, len(d), sha(d)) for p, d in RELEASES[release].items())


def manifest(release: str, signature: bytes | None = None) -> versions.Manifest:
    """``release``'s manifest as publish writes it (naming ``signature``, its model.sig)."""
    files = tuple(
        versions.ManifestFile(path, len(data), sha(data), source(release, path))
        for path, data in sorted(RELEASES[release].items())
    )
    row = None
    if signature is not None:
        row = versions.ManifestFile(
            SIGNATURE, len(signature), sha(signature), source(release, SIGNATURE)
        )
    return versions.Manifest(
        MODEL, version_id(release), files, revision="main", commit=COMMITS[release], signature=row
    )


def writer_of(prefix: str) -> Writer:
    store = store_for(prefix)
    assert store is not None
    return store.writer(endpoint=None, secrets=None)


def put(writer: Writer, uri: str, data: bytes, root: str, *, side: str, scratch: Path) -> bool:
    """``data`` at ``uri`` as mdl uploads (marked as ``side``'s); False: it was there already."""
    local = scratch / sha(data)
    local.write_bytes(data)
    return writer.upload(uri, local, size=len(data), sha256=sha(data), root=root, side=side)


def publish(
    prefix: str, scratch: Path, *releases: str, signed: Mapping[str, bytes] | None = None
) -> dict[str, str]:
    """Each release's files (each once, by content) and then its manifest, in order, each
    manifest written only once the store's clock has passed the one before (the newest is
    told by that clock); the manifests' URIs by release. ``signed``: each release's model.sig,
    stored by content too and named by its manifest (``publish --sign``)."""
    writer, root = writer_of(prefix), prefix + "/"
    scratch.mkdir(parents=True, exist_ok=True)
    said: dict[str, str] = {}
    for release in releases:
        files = dict(RELEASES[release])
        if signed is not None:
            files[SIGNATURE] = signed[release]
        for path, data in files.items():
            put(
                writer,
                object_uri(prefix, data),
                data,
                root,
                side=side_of(source(release, path)),
                scratch=scratch,
            )
    for release in releases:
        uri = versions.manifest_uri(prefix, MODEL, version_id(release))
        body = manifest(release, None if signed is None else signed[release]).to_bytes()
        put(writer, uri, body, root, side="", scratch=scratch)
        said[release] = uri
        store_clock_past(writer, uri)
    return said


def store_clock_past(writer: Writer, uri: str) -> None:
    """Wait until the store's clock is past the time it says ``uri`` was written: what is written
    next is newer by that clock (S3 says seconds, a folder a kernel tick). ``HANG`` is only the
    safety net of a stuck store, never a judgement of speed."""
    seen = writer.head(uri)
    assert seen is not None
    listed = next(item for item in writer.listing(uri) if item.uri == uri)
    deadline = time.monotonic() + HANG
    tick = threading.Event()
    while writer.now() <= max(seen.modified, listed.modified):
        assert time.monotonic() < deadline, "the store's clock did not move"
        tick.wait(0.01)


def distinct() -> dict[str, bytes]:
    """Every distinct file of the three releases, by sha256."""
    return {sha(data): data for files in RELEASES.values() for data in files.values()}


@pytest.fixture(params=["folder", "s3"])
def prefix(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Where the team publishes its releases: a shared folder, or a bucket on moto (a module
    that uses it imports this fixture and has ``s3``)."""
    if request.param == "folder":
        return f"file://{tmp_path}/shared/hub"
    server: S3 = request.getfixturevalue("s3")
    server.client().create_bucket(Bucket="mirror")
    return "s3://mirror/hub"
