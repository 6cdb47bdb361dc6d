"""Three releases of a team's own 2-shard model as the issue 76 tests ship them: v1 two shards, v2
re-sharded into three, v3 changing one shard of v2 (config.json the same throughout). Their locks,
and their objects and manifests in a mirror of the content layout (``<prefix>/<model>/<sha256>``,
``<prefix>/.mdl/versions/<model>/<id>.json``), written with the store's own writer as publish
writes them: each object once, marked as mdl's."""

from __future__ import annotations

import hashlib
import threading
import time
from pathlib import Path

from runfixtures import HANG

from mdl.buckets import versions
from mdl.buckets.protocol import Writer, side_of
from mdl.buckets.registry import store_for
from mdl.catalog.load import parse_catalog
from mdl.lockfile.io import write_lock
from mdl.lockfile.model import Lock, LockedFile, LockedModel, fingerprint

MODEL = "llm"
CATALOG = f'[models.{MODEL}]\nrepo = "org/llm"\n'
CONFIG = b'{"model_type": "llm"}\n'


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


def locked(release: str) -> Lock:
    """The lock ``mdl lock`` writes for the catalog at ``release``."""
    spec = parse_catalog(CATALOG).models[0]
    files = tuple(
        LockedFile(path, len(data), sha(data), source(release, path))
        for path, data in sorted(RELEASES[release].items())
    )
    return Lock({MODEL: LockedModel(MODEL, fingerprint(spec), "main", COMMITS[release], files)})


def write_locks(folder: Path, current: str = "v3") -> dict[str, Path]:
    """catalog.toml with ``current``'s catalog.lock beside it, and each release's lock kept in
    ``folder/releases/<release>.lock``; the kept locks by release."""
    (folder / "catalog.toml").write_text(CATALOG)
    write_lock(folder / "catalog.lock", locked(current))
    (folder / "releases").mkdir(exist_ok=True)
    kept = {}
    for release in RELEASES:
        kept[release] = folder / "releases" / f"{release}.lock"
        write_lock(kept[release], locked(release))
    return kept


def object_uri(prefix: str, data: bytes) -> str:
    return f"{prefix}/{MODEL}/{sha(data)}"


def version_id(release: str) -> str:
    return versions.version_id((p, len(d), sha(d)) for p, d in RELEASES[release].items())


def manifest(release: str) -> versions.Manifest:
    files = tuple(
        versions.ManifestFile(path, len(data), sha(data), source(release, path))
        for path, data in sorted(RELEASES[release].items())
    )
    return versions.Manifest(
        MODEL, version_id(release), files, revision="main", commit=COMMITS[release]
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


def publish(prefix: str, scratch: Path, *releases: str) -> dict[str, str]:
    """Each release's files (each once, by content) and then its manifest, in order, each
    manifest written only once the store's clock has passed the one before (the newest is
    told by that clock); the manifests' URIs by release."""
    writer, root = writer_of(prefix), prefix + "/"
    scratch.mkdir(parents=True, exist_ok=True)
    said: dict[str, str] = {}
    for release in releases:
        for path, data in RELEASES[release].items():
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
        put(writer, uri, manifest(release).to_bytes(), root, side="", scratch=scratch)
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
