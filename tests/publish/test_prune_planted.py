"""``mdl prune --mirror`` against a co-tenant of the mirror (issue 86, A and D): version manifests
anyone who may write the bucket or the shared folder can plant — well-formed, their ids computed as
the docs say, marked as mdl marks, newer by the store's clock, a year ahead on a shared folder —
never count among the newest, so the team's own prune removes nothing of a version it keeps, and
a rollback to v2 with the origin down still installs v2 from the mirror. And a model of direct URLs
whose folder changes each week (``/llm/w1/``, ``/llm/w2/``, …) is one model: its weeks count by
its name, so prune frees week 1. Real stores: a shared folder and moto."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import pytest
from releases import (
    MODEL,
    RELEASES,
    Signed,
    keyed_signature,
    object_uri,
    publish,
    put,
    sha,
    shard,
    signatures,
    store_clock_past,
    write_locks,
    writer_of,
)
from runfixtures import mdl, use_catalog
from signkeys import key_pair

from mdl.buckets import versions
from mdl.buckets.protocol import side_of
from mdl.catalog.load import parse_catalog
from mdl.lockfile.io import write_lock
from mdl.lockfile.model import Lock, LockedFile, LockedModel, fingerprint

ORIGIN = "http://127.0.0.1:9"  # nothing listens: the origin is down
YEAR = 365 * 86_400


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The team's signing key and its public key."""
    return key_pair(tmp_path_factory.mktemp("keys"), "team")


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The team's deploy repository (the working folder), the origin down."""
    folder = tmp_path / "project"
    folder.mkdir()
    use_catalog(folder, monkeypatch, None, endpoint=ORIGIN)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.chdir(folder)
    return folder


def prune(prefix: str, *args: str) -> dict[str, Any]:
    result = mdl(
        "prune", "--mirror", versions.template_of(prefix), "--keep-days", "0", "--json", *args
    )
    assert result.exit_code == 0, result.stderr
    doc: dict[str, Any] = json.loads(result.stdout)
    return doc


def held(prefix: str) -> set[str]:
    """The mirror's objects and its manifests (a folder lists mdl's namespace apart)."""
    writer = writer_of(prefix)
    where = versions.manifest_uri(prefix, MODEL, "").rpartition("/")[0] + "/"
    return {item.uri for item in (*writer.listing(prefix + "/"), *writer.listing(where))}


def removed(doc: dict[str, Any]) -> set[str]:
    return {entry["uri"] for entry in doc["removed"]}


def plant(prefix: str, scratch: Path, files: dict[str, bytes], *, sig: bytes | None) -> str:
    """A manifest a co-tenant writes: ``files`` (objects written and marked as mdl marks them,
    from the team's own origin), its id computed as the docs say, naming ``sig`` (a real signature
    of another version) when given; the store's clock then past it. Its URI."""
    writer, root = writer_of(prefix), prefix + "/"
    rows = []
    for path, data in files.items():
        origin = f"hf://org/llm@{'9' * 40}/{path}"
        put(writer, object_uri(prefix, data), data, root, side=side_of(origin), scratch=scratch)
        rows.append(versions.ManifestFile(path, len(data), sha(data), origin))
    row = None
    if sig is not None:
        row = versions.ManifestFile("model.sig", len(sig), sha(sig))
        put(writer, object_uri(prefix, sig), sig, root, side="", scratch=scratch)
    vid = versions.version_id((r.path, r.size, r.sha256) for r in rows)
    body = versions.Manifest(MODEL, vid, tuple(rows), commit="9" * 40, signature=row)
    uri = versions.manifest_uri(prefix, MODEL, vid)
    put(writer, uri, body.to_bytes(), root, side="", scratch=scratch)
    store_clock_past(writer, uri)
    return uri


def installed(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` by its path, as its sha256."""
    return {
        str(p.relative_to(folder)): sha(p.read_bytes()) for p in folder.rglob("*") if p.is_file()
    }


def test_planted_manifests_never_make_prune_remove_a_kept_version(
    project: Path,
    prefix: str,
    keys: tuple[Path, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """v1, v2, v3 published and signed (catalog.lock: v3), then a co-tenant's manifests newer
    than all of them (a year ahead on a shared folder): two of new shards, one of v1's files under
    other paths naming v1's real signature, one signed by the co-tenant's own key. Prune keeps the newest two proven versions, v3 and
    v2, whole; removes v1's own objects, manifest and signature; keeps the planted manifests
    (counted for nothing). Then a node rolls back to v2 with the origin down: v2 installs."""
    private, public = keys
    signed: Signed = (public, signatures(private))
    locks = write_locks(project, signed=signed)
    manifests = publish(prefix, tmp_path / "scratch", "v1", "v2", "v3", signed=signed[1])
    scratch = tmp_path / "planted"
    scratch.mkdir()
    v1 = RELEASES["v1"]
    theirs, _ = key_pair(tmp_path / "theirs", "planter")
    own = {"model.safetensors": shard(22)}
    planted = [
        plant(prefix, scratch, {"model.safetensors": shard(20)}, sig=None),
        plant(prefix, scratch, {"model.safetensors": shard(21)}, sig=None),
        plant(prefix, scratch, {f"copy/{p}": d for p, d in v1.items()}, sig=signed[1]["v1"]),
        plant(
            prefix, scratch, own, sig=keyed_signature({"model.safetensors": sha(shard(22))}, theirs)
        ),
    ]
    if prefix.startswith("file://"):  # a future mtime, set once
        for uri in planted:
            later = os.stat(uri.removeprefix("file://")).st_mtime + YEAR
            os.utime(uri.removeprefix("file://"), (later, later))
    v2 = {object_uri(prefix, d) for d in RELEASES["v2"].values()}
    v2 |= {manifests["v2"], object_uri(prefix, signed[1]["v2"])}
    before = held(prefix)
    assert v2 <= before

    doc = prune(prefix)
    # v1's shards and signature stay as long as the planted copy of v1 names them: it keeps,
    # never counts
    assert removed(doc) == {manifests["v1"]}
    assert held(prefix) == before - removed(doc)
    assert v2 <= held(prefix)
    reasons = {entry["uri"]: entry["reason"] for entry in doc["kept"]}
    assert reasons[manifests["v2"]] == "the manifest of a kept version (2 newest)"
    for uri in planted:
        assert reasons[uri] == (
            "the manifest of a kept version (not proven this catalog's: kept, never counted)"
        )

    monkeypatch.delenv("HF_HUB_OFFLINE")  # a node online, its origin down (nothing listens)
    rollback = mdl(
        "pull",
        "--all",
        "--frozen",
        "--lock",
        str(locks["v2"]),
        "--mirror",
        versions.template_of(prefix),
    )
    assert rollback.exit_code == 0, rollback.stderr
    files = installed(project / "models" / MODEL)
    wanted = {p: sha(d) for p, d in RELEASES["v2"].items()}
    assert {p: h for p, h in files.items() if p in wanted} == wanted
    assert files.get("model.sig") == sha(signed[1]["v2"])


def test_a_version_whose_objects_are_gone_counts_for_nothing(
    project: Path, prefix: str, keys: tuple[Path, Path], tmp_path: Path
) -> None:
    """v3's own shard is gone from the mirror (removed by hand, a cut-off publish): v3 cannot be
    deployed from it, so it does not count among the newest two; v2 and v1 (the two newest proven
    versions whose objects are all there) stay, and nothing is removed."""
    private, public = keys
    signed: Signed = (public, signatures(private))
    write_locks(project, current="v2", signed=signed)
    publish(prefix, tmp_path / "scratch", "v1", "v2", "v3", signed=signed[1])
    writer_of(prefix).delete(object_uri(prefix, shard(6)))
    before = held(prefix)
    doc = prune(prefix)
    assert removed(doc) == set() and held(prefix) == before
    assert any("objects are not all in the mirror" in w for w in doc["warnings"])


def test_a_version_newer_than_catalog_locks_counts_for_nothing(
    project: Path, prefix: str, keys: tuple[Path, Path], tmp_path: Path
) -> None:
    """catalog.lock still at v2 (v3 published, not locked yet), then v1's manifest written again
    (re-dated: the store's clock says it is the newest): neither counts, so v2 and the one before
    it stay, and v3 and v1 with them: nothing is removed."""
    private, public = keys
    signed: Signed = (public, signatures(private))
    write_locks(project, current="v2", signed=signed)
    manifests = publish(prefix, tmp_path / "scratch", "v1", "v2", "v3", signed=signed[1])
    writer = writer_of(prefix)
    data = writer.read(manifests["v1"], limit=1 << 20)
    assert data is not None
    writer.delete(manifests["v1"])
    put(writer, manifests["v1"], data[0], prefix + "/", side="", scratch=tmp_path / "scratch")
    before = held(prefix)
    doc = prune(prefix)
    assert removed(doc) == set() and held(prefix) == before
    reasons = {entry["uri"]: entry["reason"] for entry in doc["kept"]}
    ahead = "newer than the version catalog.lock pins: kept, never counted"
    assert reasons[manifests["v3"]] == f"the manifest of a kept version ({ahead})"
    assert reasons[manifests["v1"]] == f"the manifest of a kept version ({ahead})"


def test_an_unsigned_models_versions_only_keep(project: Path, prefix: str, tmp_path: Path) -> None:
    """Nothing proves an unsigned version no lock pins this catalog's (anyone may write a
    manifest): v2 and v1 are kept, never counted; with v2's lock given, v1 goes."""
    locks = write_locks(project)
    manifests = publish(prefix, tmp_path / "scratch", "v1", "v2", "v3")
    before = held(prefix)
    assert removed(prune(prefix)) == set() and held(prefix) == before
    doc = prune(prefix, "--lock", str(locks["v2"]))
    v1_own = {object_uri(prefix, shard(1)), object_uri(prefix, shard(2))}
    assert removed(doc) == v1_own | {manifests["v1"]}


# A model of direct URLs whose folder changes each week


def week_files(week: int) -> dict[str, bytes]:
    return {"config.json": b'{"model_type": "llm"}\n', "model.safetensors": shard(10 + week)}


def week_url(week: int, path: str) -> str:
    return f"{ORIGIN}/llm/w{week}/{path}"


def week_catalog(week: int, public: Path) -> str:
    files = ", ".join(f'{{ url = "{week_url(week, p)}" }}' for p in week_files(week))
    return (
        f"[models.{MODEL}]\nfiles = [{files}]\n\n[models.{MODEL}.signature]\n"
        f'key = "{public}"\nfile = "{week_url(week, "model.sig")}"\n'
    )


def week_lock(week: int, public: Path, sig: bytes) -> Lock:
    spec = parse_catalog(week_catalog(week, public)).models[0]
    every = {**week_files(week), "model.sig": sig}
    files = tuple(
        LockedFile(p, len(d), sha(d), week_url(week, p)) for p, d in sorted(every.items())
    )
    return Lock({MODEL: LockedModel(MODEL, fingerprint(spec), None, None, files)})


def publish_week(prefix: str, scratch: Path, week: int, sig: bytes) -> str:
    """Week ``week``'s files, its signature and its manifest, as ``publish --sign`` writes them."""
    writer, root = writer_of(prefix), prefix + "/"
    every = {**week_files(week), "model.sig": sig}
    for path, data in every.items():
        origin = side_of(week_url(week, path))
        put(writer, object_uri(prefix, data), data, root, side=origin, scratch=scratch)
    rows = tuple(
        versions.ManifestFile(p, len(d), sha(d), week_url(week, p))
        for p, d in sorted(week_files(week).items())
    )
    signature = versions.ManifestFile("model.sig", len(sig), sha(sig), week_url(week, "model.sig"))
    vid = versions.version_id((r.path, r.size, r.sha256) for r in rows)
    body = versions.Manifest(MODEL, vid, rows, signature=signature).to_bytes()
    uri = versions.manifest_uri(prefix, MODEL, vid)
    put(writer, uri, body, root, side="", scratch=scratch)
    store_clock_past(writer, uri)
    return uri


def test_a_url_models_weeks_are_one_models_versions(
    project: Path, prefix: str, keys: tuple[Path, Path], tmp_path: Path
) -> None:
    """Three weekly folders of one URL model, each signed and published, catalog.lock at week 3:
    prune --keep-versions 2 keeps weeks 3 and 2 and frees week 1's own shard, signature and
    manifest (its origin, last week's folder, is this model's: a proven version said so); the
    config all weeks share stays."""
    private, public = keys
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    sigs = {
        w: keyed_signature({p: sha(d) for p, d in week_files(w).items()}, private)
        for w in (1, 2, 3)
    }
    manifests = {w: publish_week(prefix, scratch, w, sigs[w]) for w in (1, 2, 3)}
    (project / "catalog.toml").write_text(week_catalog(3, public))
    write_lock(project / "catalog.lock", week_lock(3, public, sigs[3]))
    before = held(prefix)
    doc = prune(prefix, "--keep-versions", "2")
    week1 = {object_uri(prefix, shard(11)), object_uri(prefix, sigs[1]), manifests[1]}
    assert removed(doc) == week1
    assert held(prefix) == before - week1
    assert {manifests[2], object_uri(prefix, shard(12)), object_uri(prefix, sigs[2])} <= held(
        prefix
    )
    config = week_files(1)["config.json"]
    assert object_uri(prefix, config) in held(prefix)
    assert hashlib.sha256(config).hexdigest() in {u.rpartition("/")[2] for u in held(prefix)}
