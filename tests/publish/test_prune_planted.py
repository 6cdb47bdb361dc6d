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
from mdl.upload import keptversions

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


def signed_team(project: Path, keys: tuple[Path, Path]) -> Signed:
    """The team's catalog naming its signer, catalog.lock at v3 and each release's lock kept;
    the signer's public key and each release's model.sig."""
    private, public = keys
    signed: Signed = (public, signatures(private))
    write_locks(project, signed=signed)
    return signed


def v2_whole(prefix: str, manifests: dict[str, str], sigs: dict[str, bytes]) -> set[str]:
    """Every object of v2 in the mirror: its files, its signature and its manifest."""
    return {object_uri(prefix, d) for d in (*RELEASES["v2"].values(), sigs["v2"])} | {
        manifests["v2"]
    }


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
    v2 = v2_whole(prefix, manifests, signed[1])
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


def copy_with_a_git_row(prefix: str, scratch: Path, uri: str, *, source: str | None = None) -> str:
    """What a co-tenant makes of the team's signed manifest at ``uri`` with only GetObject and
    PutObject: its rows and its real signature, plus a ``.gitattributes`` row (git's files are left
    out of every signature, so it still covers the version), its object written and marked as mdl
    marks, the id computed as the docs say: a new key, newer by the store's clock. ``source``:
    every row's origin said to be that. Its URI."""
    writer, root = writer_of(prefix), prefix + "/"
    read = writer.read(uri, limit=1 << 20)
    assert read is not None
    doc = json.loads(read[0])
    extra = b"*.safetensors filter=lfs\n"
    put(writer, object_uri(prefix, extra), extra, root, side="", scratch=scratch)
    doc["files"].append({"path": ".gitattributes", "size": len(extra), "sha256": sha(extra)})
    for row in doc["files"]:
        row["source"] = source or row.get("source", "")
    rows = [(f["path"], f["size"], f["sha256"]) for f in doc["files"]]
    doc["id"] = versions.version_id(rows, signature=doc["signature"]["path"])
    assert versions.parse_manifest(json.dumps(doc).encode()) is not None  # one mdl would write
    copy = versions.manifest_uri(prefix, MODEL, doc["id"])
    put(writer, copy, json.dumps(doc).encode(), root, side="", scratch=scratch)
    store_clock_past(writer, copy)
    return copy


def test_a_later_copy_of_an_old_signed_version_never_pushes_the_previous_one_out(
    project: Path, prefix: str, keys: tuple[Path, Path], tmp_path: Path
) -> None:
    """v1 and v2 published and signed; a co-tenant copies v1's manifest under a new key (a git
    row added: the signature still covers it) before v3 is published and locked. By the store's
    clock the copy is newer than v2: were it counted, v1 would be the version before v3 and v2's
    objects would go. The version's time is its first manifest's: v3 and v2 count, the copy is
    kept and never counted, and every object of v2 stays."""
    signed = signed_team(project, keys)
    scratch = tmp_path / "scratch"
    manifests = publish(prefix, scratch, "v1", "v2", signed=signed[1])
    copy = copy_with_a_git_row(prefix, scratch, manifests["v1"])
    manifests |= publish(prefix, scratch, "v3", signed=signed[1])
    v2 = v2_whole(prefix, manifests, signed[1])
    assert v2 <= held(prefix)

    doc = prune(prefix)
    assert v2 <= held(prefix)
    assert removed(doc) == {manifests["v1"]}  # v1's objects stay while the copy names them
    reasons = {entry["uri"]: entry["reason"] for entry in doc["kept"]}
    assert reasons[manifests["v2"]] == "the manifest of a kept version (2 newest)"
    assert reasons[copy] == (
        "the manifest of a kept version (a copy of the signed version's first or locked manifest:"
        " kept, never counted)"
    )


def test_a_copy_of_a_signed_manifest_never_says_whose_other_objects_are(
    project: Path, prefix: str, keys: tuple[Path, Path], tmp_path: Path
) -> None:
    """Another catalog's model of the same name (from org-b) keeps an object under the model's
    folder, marked as its own; a co-tenant copies the team's signed v3 manifest under a new key
    with every row's (unsigned) ``source`` saying org-b. The copy is no proof of whose org-b's
    objects are: prune keeps that object, as it does without the copy."""
    signed = signed_team(project, keys)
    scratch = tmp_path / "scratch"
    manifests = publish(prefix, scratch, "v1", "v2", "v3", signed=signed[1])
    theirs, origin = b"the other team's weights" * 100, f"hf://org-b/llm@{'b' * 40}/w.safetensors"
    put(writer_of(prefix), object_uri(prefix, theirs), theirs, prefix + "/",
        side=side_of(origin), scratch=scratch)  # fmt: skip
    copy_with_a_git_row(prefix, scratch, manifests["v3"], source=origin)

    doc = prune(prefix)
    assert object_uri(prefix, theirs) in held(prefix)
    assert object_uri(prefix, theirs) not in removed(doc)
    assert manifests["v1"] in removed(doc)  # the team's own old version still goes


ORG_B = f"hf://org-b/llm@{'b' * 40}/w.safetensors"  # another catalog's model of the name


def plant_signed(prefix: str, scratch: Path, files: dict[str, bytes], sig: bytes) -> str:
    """A co-tenant's manifest of a version the catalog's signer signed that the team never
    published here (or that prune removed, read before): its objects, its signature, then the
    manifest, each row's unsigned ``source`` saying ORG_B. Its URI."""
    writer, root = writer_of(prefix), prefix + "/"
    rows = []
    for path, data in files.items():
        put(writer, object_uri(prefix, data), data, root, side=side_of(ORG_B), scratch=scratch)
        rows.append(versions.ManifestFile(path, len(data), sha(data), ORG_B))
    put(writer, object_uri(prefix, sig), sig, root, side="", scratch=scratch)
    row = versions.ManifestFile("model.sig", len(sig), sha(sig))
    return put_manifest(prefix, scratch, tuple(rows), row, commit="0" * 40)


def put_manifest(
    prefix: str,
    scratch: Path,
    rows: tuple[versions.ManifestFile, ...],
    signature: versions.ManifestFile,
    commit: str | None = None,
) -> str:
    """The manifest of ``rows`` (naming ``signature``) written as publish writes it, its id
    computed as the docs say; then the store's clock past it. Its URI."""
    writer = writer_of(prefix)
    vid = versions.version_id((r.path, r.size, r.sha256) for r in rows)
    uri = versions.manifest_uri(prefix, MODEL, vid)
    body = versions.Manifest(MODEL, vid, rows, commit=commit, signature=signature).to_bytes()
    put(writer, uri, body, prefix + "/", side="", scratch=scratch)
    store_clock_past(writer, uri)
    return uri


def test_whose_objects_are_comes_from_the_locks_and_the_signed_bytes_never_a_manifest(
    project: Path, prefix: str, keys: tuple[Path, Path], tmp_path: Path
) -> None:
    """A version the signer did sign, planted with every row's (unsigned) ``source`` saying
    another catalog's origin: that catalog's own object (other bytes, marked as its) stays; the
    planted version's own files, bytes the signer signed, are this model's."""
    private, _ = keys
    signed = signed_team(project, keys)
    scratch = tmp_path / "scratch"
    publish(prefix, scratch, "v1", "v2", "v3", signed=signed[1])
    theirs = b"the other team's weights" * 100
    put(writer_of(prefix), object_uri(prefix, theirs), theirs, prefix + "/",
        side=side_of(ORG_B), scratch=scratch)  # fmt: skip
    old = {"model.safetensors": shard(30)}
    planted = plant_signed(
        prefix, scratch, old, keyed_signature({"model.safetensors": sha(shard(30))}, private)
    )

    doc = prune(prefix)
    assert object_uri(prefix, theirs) in held(prefix)
    reasons = {entry["uri"]: entry["reason"] for entry in doc["kept"]}
    assert reasons[object_uri(prefix, theirs)] == (
        "written by another catalog's model of this name (another origin)"
    )
    assert planted in held(prefix)  # newer than catalog.lock's: kept, never counted


def test_a_replayed_signed_version_never_removes_what_a_kept_lock_pins(
    project: Path, prefix: str, keys: tuple[Path, Path], tmp_path: Path
) -> None:
    """The boundary the docs draw: a version the signer signed, written back between v2 and v3,
    counts by the store's clock; with v2's lock kept (``--lock``), v2 stays whole whatever is
    written."""
    private, public = keys
    signed: Signed = (public, signatures(private))
    locks = write_locks(project, signed=signed)
    scratch = tmp_path / "scratch"
    manifests = publish(prefix, scratch, "v1", "v2", signed=signed[1])
    old = {"model.safetensors": shard(30)}
    plant_signed(
        prefix, scratch, old, keyed_signature({"model.safetensors": sha(shard(30))}, private)
    )
    manifests |= publish(prefix, scratch, "v3", signed=signed[1])
    v2 = v2_whole(prefix, manifests, signed[1])

    doc = prune(prefix, "--lock", str(locks["v2"]))
    assert v2 <= held(prefix)
    assert manifests["v1"] in removed(doc)


def test_a_version_two_locked_ids_name_counts_once(
    project: Path,
    prefix: str,
    keys: tuple[Path, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """v3 as a Hub pull locks it, with git's .gitattributes (no signature covers it): catalog.lock
    pins it under two ids (every file; all but git's). The team publishes the first; a co-tenant
    writes the second (a new key, later). One version, counted once: v2 is the other of the newest
    two and stays whole."""
    monkeypatch.setitem(RELEASES["v3"], ".gitattributes", b"*.safetensors filter=lfs\n")
    private, public = keys
    sigs = {
        r: keyed_signature({p: sha(d) for p, d in f.items() if p != ".gitattributes"}, private)
        for r, f in RELEASES.items()
    }
    write_locks(project, signed=(public, sigs))
    scratch = tmp_path / "scratch"
    manifests = publish(prefix, scratch, "v1", "v2", "v3", signed=sigs)
    writer = writer_of(prefix)
    read = writer.read(manifests["v3"], limit=1 << 20)
    assert read is not None
    doc = json.loads(read[0])
    doc["files"] = [f for f in doc["files"] if f["path"] != ".gitattributes"]
    doc["id"] = versions.version_id([(f["path"], f["size"], f["sha256"]) for f in doc["files"]])
    other = versions.manifest_uri(prefix, MODEL, doc["id"])
    assert other != manifests["v3"]
    put(writer, other, json.dumps(doc).encode(), prefix + "/", side="", scratch=scratch)
    store_clock_past(writer, other)
    v2 = v2_whole(prefix, manifests, sigs)

    doc = prune(prefix)
    assert v2 <= held(prefix)
    assert removed(doc) == {
        manifests["v1"],
        object_uri(prefix, shard(1)),
        object_uri(prefix, shard(2)),
        object_uri(prefix, sigs["v1"]),
    }


def test_a_copy_written_between_two_reads_is_judged_as_it_is_read(
    project: Path,
    prefix: str,
    keys: tuple[Path, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A co-tenant's own key holds junk when prune first looks (``look_first``), then a copy of
    v1 (a git row added) by the time prune reads it to count it: what is counted is judged on the
    bytes read then, so the copy is still a copy and v2 stays whole."""
    signed = signed_team(project, keys)
    scratch = tmp_path / "scratch"
    manifests = publish(prefix, scratch, "v1", "v2", signed=signed[1])
    copy = copy_with_a_git_row(prefix, scratch, manifests["v1"])
    writer, root = writer_of(prefix), prefix + "/"
    read = writer.read(copy, limit=1 << 20)
    assert read is not None
    good = read[0]
    junk = b"{}" + b" " * (len(good) - 2)
    (scratch / "junk").write_bytes(junk)
    writer.delete(copy)
    writer.upload(copy, scratch / "junk", size=len(junk), sha256=sha(junk), root=root, side="")
    store_clock_past(writer, copy)
    manifests |= publish(prefix, scratch, "v3", signed=signed[1])
    first_look = keptversions._Judge.look_first

    def then_the_copy(judge: keptversions._Judge, *args: Any) -> None:
        first_look(judge, *args)
        writer.delete(copy)  # the co-tenant's key: theirs to rewrite
        (scratch / "good").write_bytes(good)
        writer.upload(copy, scratch / "good", size=len(good), sha256=sha(good), root=root, side="")

    monkeypatch.setattr(keptversions._Judge, "look_first", then_the_copy)
    v2 = v2_whole(prefix, manifests, signed[1])
    prune(prefix)
    assert v2 <= held(prefix)


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


def week_files(week: int, *, readme: bool = False) -> dict[str, bytes]:
    """Week ``week``'s files (``readme``: with a README.md its signature leaves out)."""
    notes = {"README.md": b"week %d notes\n" % week} if readme else {}
    return {
        "config.json": b'{"model_type": "llm"}\n',
        "model.safetensors": shard(10 + week),
        **notes,
    }


def week_url(week: int, path: str) -> str:
    return f"{ORIGIN}/llm/w{week}/{path}"


def week_catalog(week: int, public: Path, *, readme: bool = False) -> str:
    files = ", ".join(f'{{ url = "{week_url(week, p)}" }}' for p in week_files(week, readme=readme))
    return (
        f"[models.{MODEL}]\nfiles = [{files}]\n\n[models.{MODEL}.signature]\n"
        f'key = "{public}"\nfile = "{week_url(week, "model.sig")}"\n'
    )


def week_lock(week: int, public: Path, sig: bytes, *, readme: bool = False) -> Lock:
    spec = parse_catalog(week_catalog(week, public, readme=readme)).models[0]
    every = {**week_files(week, readme=readme), "model.sig": sig}
    files = tuple(
        LockedFile(p, len(d), sha(d), week_url(week, p)) for p, d in sorted(every.items())
    )
    return Lock({MODEL: LockedModel(MODEL, fingerprint(spec), None, None, files)})


def publish_week(prefix: str, scratch: Path, week: int, sig: bytes, *, readme: bool = False) -> str:
    """Week ``week``'s files, its signature and its manifest, as ``publish --sign`` writes them."""
    writer, root = writer_of(prefix), prefix + "/"
    every = {**week_files(week, readme=readme), "model.sig": sig}
    for path, data in every.items():
        origin = side_of(week_url(week, path))
        put(writer, object_uri(prefix, data), data, root, side=origin, scratch=scratch)
    rows = tuple(
        versions.ManifestFile(p, len(d), sha(d), week_url(week, p))
        for p, d in sorted(week_files(week, readme=readme).items())
    )
    signature = versions.ManifestFile("model.sig", len(sig), sha(sig), week_url(week, "model.sig"))
    return put_manifest(prefix, scratch, rows, signature)


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


@pytest.mark.parametrize("hash_type", ["sha256", "blake2"])
def test_a_signed_url_models_last_week_goes_whole_whatever_its_signature_hashes(
    project: Path, prefix: str, keys: tuple[Path, Path], tmp_path: Path, hash_type: str
) -> None:
    """Weekly folders of a URL model signed with BLAKE2 (its signature names no sha256) or with a
    README.md the signer leaves out: week 1's shard and README, bytes its first manifest names
    beside the signer's signature, are this model's, and go with week 1."""
    private, public = keys
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    name = {"blake2": "blake2b"}.get(hash_type, hash_type)
    sigs = {
        w: keyed_signature(
            {p: hashlib.new(name, d).hexdigest() for p, d in week_files(w).items()},
            private,
            hash_type=hash_type,
            ignore=("README.md",),
        )
        for w in (1, 2, 3)
    }
    manifests = {w: publish_week(prefix, scratch, w, sigs[w], readme=True) for w in (1, 2, 3)}
    (project / "catalog.toml").write_text(week_catalog(3, public, readme=True))
    write_lock(project / "catalog.lock", week_lock(3, public, sigs[3], readme=True))
    doc = prune(prefix, "--keep-versions", "2")
    week1 = {object_uri(prefix, shard(11)), object_uri(prefix, sigs[1]), manifests[1]}
    week1.add(object_uri(prefix, week_files(1, readme=True)["README.md"]))
    assert removed(doc) == week1


def test_a_manifest_naming_the_locked_versions_signature_never_counts(
    project: Path, prefix: str, keys: tuple[Path, Path], tmp_path: Path
) -> None:
    """catalog.lock pins v3; a co-tenant writes v3 under an id no lock pins (a .github row no
    signature covers) before the team's manifest lands. The first manifest of v3's signature is
    the plant, but it names the signature the pinned one names: a copy, never counted, so v3
    counts once and v2 stays whole."""
    private, public = keys
    sigs = signatures(private)
    write_locks(project, signed=(public, sigs))
    scratch = tmp_path / "scratch"
    manifests = publish(prefix, scratch, "v1", "v2", "v3", signed=sigs)
    writer, root = writer_of(prefix), prefix + "/"
    read = writer.read(manifests["v3"], limit=1 << 20)
    assert read is not None
    doc = json.loads(read[0])
    extra = b"name: ci\n"
    put(writer, object_uri(prefix, extra), extra, root, side="", scratch=scratch)
    doc["files"].append({"path": ".github/ci.yml", "size": len(extra), "sha256": sha(extra)})
    rows = [(f["path"], f["size"], f["sha256"]) for f in doc["files"]]
    doc["id"] = versions.version_id(rows, signature=doc["signature"]["path"])
    plant = versions.manifest_uri(prefix, MODEL, doc["id"])
    put(writer, plant, json.dumps(doc).encode(), root, side="", scratch=scratch)
    store_clock_past(writer, plant)
    writer.delete(manifests["v3"])  # the team's manifest lands after the plant
    put(writer, manifests["v3"], read[0], root, side="", scratch=scratch)
    store_clock_past(writer, manifests["v3"])
    v2 = v2_whole(prefix, manifests, sigs)
    prune(prefix)
    assert v2 <= held(prefix)
