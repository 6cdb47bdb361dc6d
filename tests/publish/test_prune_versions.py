"""``mdl prune --mirror`` by the versions kept (issue 76): what this catalog's lock, each ``--lock``
and the newest ``--keep-versions N`` published versions name stays, and it says which kept it; the
rest of what mdl wrote goes (with ``--keep-days 0`` at once), the manifests of versions no longer
kept too. Three releases of a 2-shard model (tests/releases.py) in a real folder and a real S3
server (moto)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest
from hypothesis import given
from hypothesis import strategies as st
from releases import (
    COMMITS,
    MODEL,
    RELEASES,
    Signed,
    manifest,
    object_uri,
    publish,
    put,
    sha,
    shard,
    signatures,
    store_clock_past,
    version_id,
    write_locks,
    writer_of,
)
from runfixtures import Result, mdl, use_catalog
from s3server import S3
from signkeys import key_pair

from mdl.buckets import versions
from mdl.buckets.folder import FolderWriter
from mdl.buckets.protocol import Listed, Seen, Writer, side_of
from mdl.errors import ExitCode, LocalFSError
from mdl.upload.keptversions import published_versions

CONFIG = RELEASES["v1"]["config.json"]


@pytest.fixture(scope="module")
def signer(tmp_path_factory: pytest.TempPathFactory) -> Signed:
    """The team's signer (its public key) and each release's model.sig, made with its key."""
    private, public = key_pair(tmp_path_factory.mktemp("keys"), "team")
    return public, signatures(private)


@pytest.fixture
def team(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, signer: Signed) -> dict[str, Path]:
    """The team's repo: the catalog at v3 (its catalog.lock), naming the team's signer, the kept
    locks in releases/ (the working folder), the origin down."""
    project = tmp_path / "project"
    project.mkdir()
    use_catalog(project, monkeypatch, None, endpoint="http://127.0.0.1:9")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.chdir(project)
    return write_locks(project, signed=signer)


def prune(prefix: str, *args: str) -> tuple[Result, dict[str, Any]]:
    result = mdl("prune", "--mirror", versions.template_of(prefix), "--keep-days", "0", *args)
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout) if "--json" in args else {}
    return result, doc


def objects(prefix: str, *seeds: int, config: bool = False) -> set[str]:
    """The objects of these shards (and config.json)."""
    return {object_uri(prefix, shard(s)) for s in seeds} | (
        {object_uri(prefix, CONFIG)} if config else set()
    )


def signature(prefix: str, signer: Signed, release: str) -> str:
    """The object of ``release``'s model.sig."""
    return object_uri(prefix, signer[1][release])


def held(prefix: str) -> set[str]:
    return {item.uri for item in writer_of(prefix).listing(prefix + "/")}


def removed(doc: dict[str, Any]) -> set[str]:
    return {entry["uri"] for entry in doc["removed"]}


def kept(doc: dict[str, Any]) -> dict[str, str]:
    return {entry["uri"]: entry["reason"] for entry in doc["kept"]}


def test_prune_keeps_what_one_two_or_three_kept_locks_name(
    team: dict[str, Path], signer: Signed, prefix: str, tmp_path: Path
) -> None:
    """catalog.lock (v3) alone, with v2's lock, with v1's and v2's: with every release's lock
    kept nothing goes; with v2 and v3 kept exactly v1's shards go (its config.json is v3's too)
    and v1's manifest; with v3 alone v2's own shard and manifest go as well."""
    manifests = publish(prefix, tmp_path / "scratch", "v1", "v2", "v3", signed=signer[1])
    every = held(prefix)
    v1, v2 = "releases/v1.lock", "releases/v2.lock"
    _, doc = prune(prefix, "--keep-versions", "0", "--lock", v1, "--lock", v2, "--json")
    assert removed(doc) == set() and held(prefix) == every
    reasons = kept(doc)
    assert reasons[object_uri(prefix, shard(1))] == "named by releases/v1.lock"
    assert reasons[object_uri(prefix, shard(4))] == "named by releases/v2.lock"
    assert reasons[object_uri(prefix, shard(6))] == "named by catalog.lock"
    assert reasons[object_uri(prefix, CONFIG)] == "named by catalog.lock"
    assert reasons[manifests["v1"]] == "the manifest of a version releases/v1.lock pins"

    _, doc = prune(prefix, "--keep-versions", "0", "--lock", v2, "--json")
    assert removed(doc) == objects(prefix, 1, 2) | {
        manifests["v1"],
        signature(prefix, signer, "v1"),
    }
    assert held(prefix) == every - removed(doc)
    assert {e["reason"] for e in doc["removed"]} == {
        "named by no kept version",
        "a version no longer kept",
    }

    _, doc = prune(prefix, "--keep-versions", "0", "--json")
    assert removed(doc) == objects(prefix, 4) | {manifests["v2"], signature(prefix, signer, "v2")}
    gone = {manifests[v] for v in ("v1", "v2")} | {
        signature(prefix, signer, v) for v in ("v1", "v2")
    }
    assert held(prefix) == every - objects(prefix, 1, 2, 4) - gone
    assert kept(doc)[manifests["v3"]] == "the manifest of a version catalog.lock pins"


def test_by_default_the_two_newest_published_versions_are_kept(
    team: dict[str, Path], signer: Signed, prefix: str, tmp_path: Path
) -> None:
    """No --lock, --keep-versions 2: v3 (catalog.lock's, and the newest) and v2 (by its manifest)
    keep theirs; v1's shards and manifest go. With v1's lock kept, nothing goes."""
    manifests = publish(prefix, tmp_path / "scratch", "v1", "v2", "v3", signed=signer[1])
    every = held(prefix)
    _, dry = prune(prefix, "--lock", "releases/v1.lock", "--dry-run", "--json")
    assert removed(dry) == set()
    _, doc = prune(prefix, "--json")
    assert removed(doc) == objects(prefix, 1, 2) | {
        manifests["v1"],
        signature(prefix, signer, "v1"),
    }
    assert held(prefix) == every - removed(doc)
    reasons = kept(doc)
    day = next(v for v in doc["versions"] if v["id"] == version_id("v2"))
    assert day["manifest"] == manifests["v2"] and day["commit"] == COMMITS["v2"]
    assert day["from"] == f"version {version_id('v2')[:8]}…"
    published = reasons[object_uri(prefix, shard(4))]
    assert published.startswith(f"named by version {version_id('v2')[:8]}… of {MODEL} (commit")
    assert f"(commit {COMMITS['v2'][:7]}, published 20" in published
    assert reasons[manifests["v2"]] == "the manifest of a kept version (2 newest)"
    assert reasons[manifests["v3"]] == "the manifest of a version catalog.lock pins"


def test_a_junk_manifest_keeps_nothing_and_removes_nothing(
    team: dict[str, Path], signer: Signed, prefix: str, tmp_path: Path
) -> None:
    """Two manifests newer than every release: bytes that are no manifest, and v1's manifest put
    under another version's name. Neither is believed (v1's shards still go), neither counts as
    one of the two newest (v2's stay), both are left in place and said."""
    manifests = publish(prefix, tmp_path / "scratch", "v1", "v2", "v3", signed=signer[1])
    writer = writer_of(prefix)
    scratch = tmp_path / "junk"
    scratch.mkdir()
    junk = {
        versions.manifest_uri(prefix, MODEL, "a" * 64): b"\x00not json" * 10,
        versions.manifest_uri(prefix, MODEL, "b" * 64): manifest("v1").to_bytes(),
    }
    for uri, data in junk.items():
        put(writer, uri, data, prefix + "/", side="", scratch=scratch)
    every = held(prefix)
    result, doc = prune(prefix, "--json")
    assert removed(doc) == objects(prefix, 1, 2) | {
        manifests["v1"],
        signature(prefix, signer, "v1"),
    }
    assert held(prefix) == every - removed(doc)
    reasons = kept(doc)
    for uri in junk:
        assert (
            reasons[uri] == "not a manifest mdl writes: ignored (it keeps nothing), left in place"
        )
        assert any(w.startswith(uri) for w in doc["warnings"])
    assert {v["id"] for v in doc["versions"]} == {None, version_id("v2")}
    assert "not a manifest mdl writes" in result.stderr


def test_another_catalogs_newer_versions_push_none_of_this_ones_out(
    team: dict[str, Path], signer: Signed, prefix: str, tmp_path: Path
) -> None:
    """Another catalog names a model ``llm`` from another repo and publishes two versions after
    v3: they are kept (theirs, their objects too) but never counted among this catalog's two
    newest, so v2 stays; only v1's own files and manifest go."""
    manifests = publish(prefix, tmp_path / "scratch", "v1", "v2", "v3", signed=signer[1])
    writer, scratch = writer_of(prefix), tmp_path / "theirs"
    scratch.mkdir()
    theirs = []
    for seed in (7, 8):
        data = shard(seed)
        origin = f"hf://other/llm@{str(seed) * 40}/model.safetensors"
        put(
            writer,
            object_uri(prefix, data),
            data,
            prefix + "/",
            side=side_of(origin),
            scratch=scratch,
        )
        row = versions.ManifestFile("model.safetensors", len(data), sha(data), origin)
        vid = versions.version_id([(row.path, row.size, row.sha256)])
        uri = versions.manifest_uri(prefix, MODEL, vid)
        body = versions.Manifest(MODEL, vid, (row,), commit=str(seed) * 40).to_bytes()
        put(writer, uri, body, prefix + "/", side="", scratch=scratch)
        store_clock_past(writer, uri)
        theirs.append((uri, object_uri(prefix, data)))
    _, doc = prune(prefix, "--json")
    assert removed(doc) == objects(prefix, 1, 2) | {
        manifests["v1"],
        signature(prefix, signer, "v1"),
    }
    reasons = kept(doc)
    assert reasons[manifests["v2"]] == "the manifest of a kept version (2 newest)"
    for uri, obj in theirs:
        assert reasons[uri] == (
            "the manifest of a kept version (not proven this catalog's: kept, never counted)"
        )
        assert reasons[obj].startswith("named by version ")
        assert reasons[obj].endswith(", not proven this catalog's: kept, never counted)")


def test_the_dry_run_says_what_each_kept_version_costs(
    team: dict[str, Path], signer: Signed, prefix: str, tmp_path: Path
) -> None:
    """Per kept version: its files, their bytes and the bytes no other kept version names (what
    dropping it would free); config.json, in every release, is no one's own."""
    manifests = publish(prefix, tmp_path / "scratch", "v1", "v2", "v3", signed=signer[1])
    every = held(prefix)
    _, doc = prune(prefix, "--lock", "releases/v1.lock", "--dry-run", "--json")
    assert held(prefix) == every and doc["dry_run"] is True

    def size(*seeds: int) -> int:
        return sum(len(shard(s)) for s in seeds)

    sig = {release: len(data) for release, data in signer[1].items()}

    by_from = {v["manifest"] or v["from"]: v for v in doc["versions"]}
    assert by_from == {
        "catalog.lock": {
            "model": MODEL,
            "from": "catalog.lock",
            "manifest": None,
            "id": None,
            "commit": COMMITS["v3"],
            "files": 5,
            "bytes": len(CONFIG) + size(3, 5, 6) + sig["v3"],
            "only_bytes": size(6) + sig["v3"],
        },
        "releases/v1.lock": {
            "model": MODEL,
            "from": "releases/v1.lock",
            "manifest": None,
            "id": None,
            "commit": COMMITS["v1"],
            "files": 4,
            "bytes": len(CONFIG) + size(1, 2) + sig["v1"],
            "only_bytes": size(1, 2) + sig["v1"],
        },
        manifests["v2"]: {
            "model": MODEL,
            "from": f"version {version_id('v2')[:8]}…",
            "manifest": manifests["v2"],
            "id": version_id("v2"),
            "commit": COMMITS["v2"],
            "files": 5,
            "bytes": len(CONFIG) + size(3, 4, 5) + sig["v2"],
            "only_bytes": size(4) + sig["v2"],
        },
    }
    human = mdl(
        "prune", "--mirror", versions.template_of(prefix), "--lock", "releases/v1.lock", "--dry-run"
    )
    assert human.exit_code == 0, human.stderr
    lines = [line for line in human.stderr.splitlines() if "kept version of" in line]
    assert len(lines) == 3
    assert (
        f"kept version of {MODEL} from releases/v1.lock (commit {COMMITS['v1'][:7]}): 4 file(s),"
        in lines[1]
    )


def test_a_lock_given_twice_counts_once(
    team: dict[str, Path], signer: Signed, tmp_path: Path
) -> None:
    """catalog.lock again, v1's lock by two spellings: two kept versions, each with its own
    bytes."""
    prefix = f"file://{tmp_path}/shared/hub"
    publish(prefix, tmp_path / "scratch", "v1", "v3", signed=signer[1])
    again = ("--lock", "catalog.lock", "--lock", "releases/v1.lock", "--lock", "./releases/v1.lock")
    _, doc = prune(prefix, "--keep-versions", "0", *again, "--dry-run", "--json")
    assert [(v["from"], v["only_bytes"] > 0) for v in doc["versions"]] == [
        ("catalog.lock", True),
        ("releases/v1.lock", True),
    ]


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (("--lock", "releases/nope.lock"), "--lock: releases/nope.lock: no such file"),
        (("--lock", "releases"), "releases: cannot read the lock"),
        (("--keep-versions", "-1"), "--keep-versions"),
        (("--keep-versions", "２"), "--keep-versions"),
    ],
)
def test_a_missing_lock_or_a_bad_count_is_exit_2_naming_it(
    team: dict[str, Path], signer: Signed, tmp_path: Path, args: tuple[str, ...], words: str
) -> None:
    prefix = f"file://{tmp_path}/shared/hub"
    publish(prefix, tmp_path / "scratch", "v1", signed=signer[1])
    every = held(prefix)
    result = mdl("prune", "--mirror", versions.template_of(prefix), "--keep-days", "0", *args)
    assert result.exit_code == 2, result.stdout
    assert words in result.stderr
    assert held(prefix) == every


@pytest.mark.parametrize("flag", ["--lock", "--keep-versions"])
def test_the_version_flags_are_for_a_mirror(
    team: dict[str, Path], signer: Signed, flag: str
) -> None:
    result = mdl("prune", flag, "releases/v1.lock" if flag == "--lock" else "1")
    assert result.exit_code == 2
    assert f"{flag} is for a mirror: give --mirror URL" in result.stderr


class _Shelf:
    """The two calls published_versions makes of a store, over a dict: what it lists (with the
    store's times) and a bounded read."""

    def __init__(self, objects: dict[str, tuple[bytes, float]]) -> None:
        self.objects = objects

    def listing(self, prefix: str, *, most: int | None = None) -> Iterator[Listed]:
        for uri, (data, modified) in sorted(self.objects.items()):
            if uri.startswith(prefix):
                yield Listed(uri, len(data), modified)

    def read(self, uri: str, *, limit: int, aged: bool = True) -> tuple[bytes, Seen] | None:
        data, modified = self.objects[uri]
        return data[: limit + 1], Seen("1", len(data), modified, modified)


def _flipped(data: bytes, at: int) -> bytes:
    at %= len(data)
    return data[:at] + bytes([data[at] ^ 0x20]) + data[at + 1 :]


@given(
    junk=st.one_of(
        st.binary(max_size=4096),
        st.integers(min_value=0).map(lambda at: _flipped(manifest("v1").to_bytes(), at)),
        st.just(manifest("v1").to_bytes()),
    ),
    name=st.sampled_from(["a" * 64, version_id("v1"), version_id("v2")]),
)
def test_no_manifest_bytes_make_prune_keep_fewer_or_believe_more(junk: bytes, name: str) -> None:
    """Whatever bytes lie at a manifest's name, newest of all (beside the three releases', or in
    place of one's), an unsigned model no lock pins: a version kept is a true one, naming only
    what it holds; nothing is proven this catalog's, so nothing counts and no version is ever
    no longer kept: every true manifest still there is kept."""
    prefix = "mem://shelf/hub"
    uris = {r: versions.manifest_uri(prefix, MODEL, version_id(r)) for r in RELEASES}
    objects = {uris[r]: (manifest(r).to_bytes(), 10.0 * i) for i, r in enumerate(RELEASES, 1)}
    planted = versions.manifest_uri(prefix, MODEL, name)
    objects[planted] = (junk, 40.0)
    found = published_versions(cast(Writer, _Shelf(objects)), prefix, [MODEL], keep=2, locked={})
    kept_ids = {v.id for v in found.kept}
    assert kept_ids <= {version_id(r) for r in RELEASES}
    assert found.unkept == [] and all(v.proof is None for v in found.kept)
    intact = {version_id(r) for r in RELEASES if objects[uris[r]][0] == manifest(r).to_bytes()}
    assert intact <= kept_ids
    for version in found.kept:
        assert {uri for uri, _ in version.objects} <= {
            object_uri(prefix, d) for r in RELEASES for d in RELEASES[r].values()
        }


def test_a_manifest_that_cannot_be_read_keeps_everything(
    team: dict[str, Path], signer: Signed, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """v2's manifest, one of the two newest, cannot be read (the store fails): which versions
    are kept is not known, so nothing goes, and the failure is the exit code, naming it."""
    prefix = f"file://{tmp_path}/shared/hub"
    manifests = publish(prefix, tmp_path / "scratch", "v1", "v2", "v3", signed=signer[1])
    every = held(prefix)
    read = FolderWriter.read

    def failing(self: FolderWriter, uri: str, **kwargs: Any) -> Any:
        if uri == manifests["v2"]:
            raise LocalFSError(f"{uri}: cannot read: Input/output error")
        return read(self, uri, **kwargs)

    monkeypatch.setattr(FolderWriter, "read", failing)
    result = mdl("prune", "--mirror", versions.template_of(prefix), "--keep-days", "0", "--json")
    assert result.exit_code == ExitCode.LOCAL, result.stderr
    doc = json.loads(result.stdout)
    assert removed(doc) == set() and held(prefix) == every
    assert f"{manifests['v2']}: cannot read: Input/output error" in result.stderr
    whole = f"{manifests['v2']} could not be read: every object is kept"
    assert kept(doc)[object_uri(prefix, shard(4))] == whole  # v2's own shard


def test_a_manifest_under_a_name_no_model_has_is_left_alone(
    team: dict[str, Path], signer: Signed, s3: S3
) -> None:
    """--all-models judges every model's manifests; one under a name no catalog model can have
    (control characters) is not judged, not removed, and never reaches the terminal raw."""
    s3.client().create_bucket(Bucket="mirror")
    key = f"hub/.mdl/versions/evil\x1b[2Jname/{'c' * 64}.json"
    s3.put("mirror", key, manifest("v1").to_bytes())
    result = mdl(
        "prune",
        "--mirror",
        "s3://mirror/hub/{model}/{sha256}",
        "--all-models",
        "--keep-days",
        "0",
        "--json",
    )
    assert result.exit_code == 0, result.stderr
    assert "\x1b" not in result.stdout + result.stderr
    doc = json.loads(result.stdout)
    assert removed(doc) == set() and [v["from"] for v in doc["versions"]] == ["catalog.lock"]
    assert doc["warnings"] == [] and doc["kept"] == []  # never read, never judged
    assert held("s3://mirror/hub") == {"s3://mirror/" + key}
