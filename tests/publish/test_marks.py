"""mdl's mark on what it writes into a mirror is bound to the name it was written under and to the
bytes, and says whose: a server-side copy (S3 CopyObject keeps metadata) or a ``cp -a`` of a
filled object is not mdl's, and prune keeps it whatever its age; two catalogs that both name a
model ``llm`` and fill one template keep each other's files, and the collision is said once.
Against real stores: moto and SeaweedFS, a shared folder."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from runfixtures import mdl, use_catalog
from s3server import S3
from seaweed import Weed
from servers import HubServer, make_data

from mdl import partsize
from mdl.buckets.folder import FolderWriter
from mdl.buckets.names import Mark
from mdl.buckets.protocol import side_of
from mdl.buckets.registry import STORES
from mdl.catalog.load import parse_catalog
from mdl.lockfile.io import write_lock
from mdl.lockfile.model import Lock, LockedFile, LockedModel, fingerprint

COMMIT = "c" * 40
CATALOG = '[models.tiny]\nrepo = "org/tiny"\n'
TINY = {"config.json": b'{"a": 1}'}
OLD = b"an older lock's weights"  # a file the lock no longer names
COPIED = "not written by mdl at this name (no mdl mark made for it: a copy, another tool's)"
THEIRS = "written by another catalog's model of this name (another origin)"
NAMED = "named by catalog.lock"


def _pinned(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A catalog of ``tiny`` pinned by its catalog.lock (nothing asks the Hub)."""
    catalog = use_catalog(tmp_path, monkeypatch, CATALOG, endpoint="http://127.0.0.1:9")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    spec = parse_catalog(CATALOG).models[0]
    files = tuple(
        LockedFile(p, len(d), hashlib.sha256(d).hexdigest(), f"hf://org/tiny@{COMMIT}/{p}")
        for p, d in TINY.items()
    )
    lock = Lock({"tiny": LockedModel("tiny", fingerprint(spec), "main", COMMIT, files)})
    write_lock(catalog.with_name("catalog.lock"), lock)


@dataclass
class Bucket:
    server: str
    client: Any
    prefix: str  # a fresh one per test

    def template(self) -> str:
        return f"s3://mirror/{self.prefix}hub/{{model}}/{{path}}"

    def keys(self) -> set[str]:
        listed = self.client.list_objects_v2(Bucket="mirror", Prefix=self.prefix)
        return {str(o["Key"]).removeprefix(self.prefix) for o in listed.get("Contents", [])}


@pytest.fixture(params=["moto", pytest.param("seaweedfs", marks=pytest.mark.slow)])
def bucket(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[Bucket]:
    """moto (reset), or the session's SeaweedFS, with the test's AWS environment (127.0.0.1,
    test credentials, no instance metadata) and a bucket ``mirror``."""
    if request.param == "moto":
        server: S3 = request.getfixturevalue("s3")
        client = server.client()
    else:
        from s3server import aws_environ

        weed: Weed = request.getfixturevalue("seaweed_server")
        for name in [name for name in os.environ if name.startswith("AWS_")]:
            monkeypatch.delenv(name)  # the developer's: never used
        for name, value in aws_environ(weed.endpoint).items():
            monkeypatch.setenv(name, value)
        client = weed.client()
    if "mirror" not in {b["Name"] for b in client.list_buckets().get("Buckets", [])}:
        client.create_bucket(Bucket="mirror")
    yield Bucket(request.param, client, f"{uuid.uuid4().hex}/")


def _kept(result: Any) -> dict[str, str]:
    assert result.exit_code == 0, result.stderr
    return {e["uri"]: e["reason"] for e in json.loads(result.stdout)["kept"]}


def _removed(result: Any) -> list[str]:
    return [e["uri"] for e in json.loads(result.stdout)["removed"]]


def test_a_server_side_copy_is_not_mdls_and_prune_keeps_it(
    bucket: Bucket, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An object mdl uploaded, copied by the store itself (CopyObject, metadata copied, as
    ``aws s3 cp``/``sync`` and rclone do) to a backup name under the model and beside the models:
    the copies carry the metadata, never a mark for their own name. Prune (with --all-models too,
    --keep-days 0) removes the original, which the lock no longer names, and keeps both copies."""
    _pinned(tmp_path, monkeypatch)
    source = tmp_path / "old.bin"
    source.write_bytes(OLD)
    uri = f"s3://mirror/{bucket.prefix}hub/tiny/old.bin"
    writer = STORES["s3"].writer(endpoint=None, secrets=None)
    side = side_of(f"hf://org/tiny@{COMMIT}/old.bin")
    sha = hashlib.sha256(OLD).hexdigest()
    assert writer.upload(uri, source, size=len(OLD), sha256=sha, root="x", side=side)
    copies = [f"{bucket.prefix}hub/tiny/backup/old.bin", f"{bucket.prefix}hub/backup/old.bin"]
    origin = {"Bucket": "mirror", "Key": f"{bucket.prefix}hub/tiny/old.bin"}
    for key in copies:
        bucket.client.copy_object(Bucket="mirror", Key=key, CopySource=origin)
        head = bucket.client.head_object(Bucket="mirror", Key=key)
        assert head["Metadata"].get("mdl"), head  # the metadata travelled with the bytes
    template = bucket.template()
    dry = mdl("prune", "--mirror", template, "--keep-days", "0", "--json", "--dry-run")
    assert _removed(dry) == [uri]
    assert _kept(dry)[f"s3://mirror/{copies[0]}"] == COPIED
    pruned = mdl("prune", "--mirror", template, "--keep-days", "0", "--json", "--all-models")
    kept = _kept(pruned)
    assert _removed(pruned) == [uri]
    assert {kept[f"s3://mirror/{key}"] for key in copies} == {COPIED}
    assert bucket.keys() == {key.removeprefix(bucket.prefix) for key in copies}


def test_a_cp_a_of_a_filled_file_and_its_mark_is_not_mdls(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A shared folder: a file mdl wrote and its mark, both copied with ``cp -a`` (times, owner,
    bytes kept) to a backup name: the copy is another file, so its copied mark names another
    version. Prune removes the original (unnamed) and keeps the copy."""
    _pinned(tmp_path, monkeypatch)
    base = tmp_path / "shared"
    root = f"file://{base}/"
    source = tmp_path / "old.bin"
    source.write_bytes(OLD)
    ours, copy = f"{root}tiny/old.bin", f"{root}tiny/backup/old.bin"
    sha = hashlib.sha256(OLD).hexdigest()
    side = side_of(f"hf://org/tiny@{COMMIT}/old.bin")
    assert FolderWriter().upload(ours, source, size=len(OLD), sha256=sha, root=root, side=side)
    for uri in (ours, Mark.of(ours, root=root).uri):
        target = uri.replace("/tiny/", "/tiny/backup/").removeprefix("file://")
        Path(target).parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(["cp", "-a", uri.removeprefix("file://"), target], check=True, timeout=60)
    assert Path(Mark.of(copy, root=root).uri.removeprefix("file://")).exists()
    pruned = mdl("prune", "--mirror", f"{root}{{model}}/{{path}}", "--keep-days", "0", "--json")
    assert _kept(pruned)[copy] == COPIED
    assert _removed(pruned) == [ours]
    assert Path(copy.removeprefix("file://")).read_bytes() == OLD


# == two catalogs, one name ==========================================================================

A_FILES = {"config.json": b'{"team": "a"}\n', "a.bin": make_data(40_000, seed=61)}
B_FILES = {"config.json": b'{"team": "b", "x": 1}\n', "b.bin": make_data(50_000, seed=62)}
COLLISION = "holds another catalog's file of the same name"


@pytest.fixture
def teams(hub: HubServer, tmp_path: Path) -> dict[str, Path]:
    """Two teams' catalogs, each naming a model ``llm`` from its own repo, each locked."""
    hub.add_repo("team-a/llm", A_FILES)
    hub.add_repo("team-b/llm", B_FILES)
    folders = {}
    for team in ("a", "b"):
        folder = tmp_path / f"team-{team}"
        folder.mkdir()
        (folder / "catalog.toml").write_text(f'[models.llm]\nrepo = "team-{team}/llm"\n')
        locked = mdl("lock", "--all", env=_env(hub, folder))
        assert locked.exit_code == 0, locked.stderr
        folders[team] = folder
    return folders


def _env(hub: HubServer, folder: Path, dest: str = "models") -> dict[str, str]:
    return {
        "HF_ENDPOINT": hub.url,
        "MDL_CATALOG": str(folder / "catalog.toml"),
        "MDL_DEST": str(folder / dest),
        "MDL_LOG_FILE": str(folder / "mdl.log"),
    }


def _two_teams(hub: HubServer, teams: dict[str, Path], template: str, model: str) -> None:
    """Each team pulls twice (into fresh folders), filling ``template``, then prunes it with
    --keep-days 0: each keeps the other's file (``model``: where the model's objects are)."""
    for turn in (1, 2):
        for team, folder in teams.items():
            env = _env(hub, folder, dest=f"models-{turn}")
            pulled = mdl("pull", "--all", "--fill-mirror", "--mirror", template, env=env)
            assert pulled.exit_code == 0, pulled.stderr
            files = A_FILES if team == "a" else B_FILES
            for path, data in files.items():  # each team has its own bytes
                assert (folder / f"models-{turn}" / "llm" / path).read_bytes() == data
            said = pulled.stderr.count(COLLISION)
            # team b meets team a's config.json: said once per pull, never for team a
            assert said == (1 if team == "b" else 0), pulled.stderr
    kept: dict[str, dict[str, str]] = {}
    for team, folder in teams.items():
        pruned = mdl(
            "prune", "--mirror", template, "--keep-days", "0", "--json", env=_env(hub, folder)
        )
        assert _removed(pruned) == [], pruned.stdout
        kept[team] = _kept(pruned)
    assert kept["a"][f"{model}b.bin"] == THEIRS and kept["b"][f"{model}a.bin"] == THEIRS
    assert kept["a"][f"{model}config.json"] == kept["b"][f"{model}config.json"] == NAMED


def test_two_catalogs_naming_one_model_on_a_share_keep_each_others_files(
    hub: HubServer, teams: dict[str, Path], tmp_path: Path
) -> None:
    share = tmp_path / "shared"
    share.mkdir()
    template = f"file://{share}/{{model}}/{{path}}"
    _two_teams(hub, teams, template, f"file://{share}/llm/")
    assert (share / "llm" / "config.json").read_bytes() == A_FILES["config.json"]  # never healed
    assert (share / "llm" / "a.bin").read_bytes() == A_FILES["a.bin"]
    assert (share / "llm" / "b.bin").read_bytes() == B_FILES["b.bin"]


@pytest.mark.slow
def test_two_catalogs_naming_one_model_on_s3_keep_each_others_files(
    hub: HubServer, teams: dict[str, Path], s3: S3
) -> None:
    client = s3.client()
    client.create_bucket(Bucket="mirror")
    moto = Bucket("moto", client, "fleet/")
    _two_teams(hub, teams, moto.template(), "s3://mirror/fleet/hub/llm/")
    body = client.get_object(Bucket="mirror", Key="fleet/hub/llm/config.json")
    assert body["Body"].read() == A_FILES["config.json"]  # never healed
    assert {"hub/llm/a.bin", "hub/llm/b.bin", "hub/llm/config.json"} <= moto.keys()


# == an older mdl beside, and what prune lists ======================================================

OLD_LEASE_BODY = b'{"holder": "node-7:1:ab12", "term": 30.0}'  # mdl 0.3's, beside its object


def test_an_older_mdls_lease_beside_a_fill_is_said_once(
    hub: HubServer, teams: dict[str, Path], tmp_path: Path
) -> None:
    """mdl 0.3 leased ``<object>.mdl-lease`` beside the object: a node on it and a node on this
    mdl do not see each other's leases and both fetch from the origin. The new node says so, once
    for the run (two files leased so), and fills as before; prune keeps them, saying so once."""
    share = tmp_path / "shared"
    for path in A_FILES:
        planted = share / "llm" / f"{path}.mdl-lease"
        planted.parent.mkdir(parents=True, exist_ok=True)
        planted.write_bytes(OLD_LEASE_BODY)
    template = f"file://{share}/{{model}}/{{path}}"
    env = _env(hub, teams["a"])
    pulled = mdl("pull", "--all", "--fill-mirror", "--mirror", template, env=env)
    assert pulled.exit_code == 0, pulled.stderr
    said = f"{template.replace('{model}/{path}', 'llm/')}"
    assert pulled.stderr.count("is the lease of an mdl before 0.4") == 1, pulled.stderr
    assert said in pulled.stderr
    for path, data in A_FILES.items():
        assert (share / "llm" / path).read_bytes() == data
    # prune keeps the old leases (not this mdl's to judge) and says it once too
    pruned = mdl("prune", "--mirror", template, "--dry-run", "--json", env=env)
    kept = _kept(pruned)
    assert all("an mdl before 0.4" in kept[f"{said}{path}.mdl-lease"] for path in A_FILES)
    warned = [w for w in json.loads(pruned.stdout)["warnings"] if "before 0.4" in w]
    assert len(warned) == 1, warned


def test_a_dry_run_lists_a_killed_fills_parts_and_unfinished_upload_and_a_released_lease(
    hub: HubServer, teams: dict[str, Path], s3: S3
) -> None:
    """Right after a fill, ``prune --mirror --dry-run -v`` calls its released leases released
    (not a fill under way), and lists what a killed fill left: its published parts and its
    multipart upload, each with when it goes."""
    client = s3.client()
    client.create_bucket(Bucket="mirror")
    template = "s3://mirror/hub/{model}/{path}"
    env = _env(hub, teams["a"])
    pulled = mdl("pull", "--all", "--fill-mirror", "--mirror", template, env=env)
    assert pulled.exit_code == 0, pulled.stderr
    sha = hashlib.sha256(b"p" * 10).hexdigest()
    part = f"hub/.mdl/parts/llm/big.bin/{sha}-16777216/00001"
    client.put_object(Bucket="mirror", Key=part, Body=b"p" * 10)
    client.create_multipart_upload(Bucket="mirror", Key="hub/llm/big.bin")
    dry = mdl("-v", "prune", "--mirror", template, "--dry-run", env=env)
    assert dry.exit_code == 0, dry.stderr
    lines = dry.stderr.splitlines()
    released = [line for line in lines if "hub/.mdl/leases/llm/" in line]
    assert len(released) == len(A_FILES), dry.stderr
    assert all("a released lease (its fill is done" in line for line in released), released
    assert "a live lease" not in dry.stderr
    folder = f"s3://mirror/{part.rpartition('/')[0]}/"
    assert any(folder in line and "a fill's parts" in line for line in lines), dry.stderr
    # moto dates every upload 2010: this one is past its day, a removal a dry run only lists
    upload = "s3://mirror/hub/llm/big.bin"
    assert f"would remove  {upload}  (0 B)  abandoned upload" in dry.stdout, dry.stdout
    assert client.list_multipart_uploads(Bucket="mirror").get("Uploads")  # a dry run


def test_prune_removes_a_dead_fills_parts_and_their_emptied_folders_on_a_share(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A share: a killed fill's part set, two days old by the folder's clock, goes with the
    folders it leaves empty (``.mdl/parts/<model>/<path>/<set>/``); a young set stays, listed."""
    _pinned(tmp_path, monkeypatch)
    share = tmp_path / "shared"
    parts = share / ".mdl" / "parts"
    dead = parts / "tiny" / "w.bin" / f"{'a' * 64}-16777216"
    live = parts / "tiny" / "x.bin" / f"{'b' * 64}-16777216"
    for folder in (dead, live):
        folder.mkdir(parents=True)
        (folder / "00001").write_bytes(b"part")
    stamp = dead.stat().st_mtime - 2 * 86_400
    os.utime(dead / "00001", (stamp, stamp))
    (share / "tiny").mkdir()
    (share / "tiny" / "config.json").write_bytes(TINY["config.json"])
    pruned = mdl("prune", "--mirror", f"file://{share}/{{model}}/{{path}}", "--json")
    assert pruned.exit_code == 0, pruned.stderr
    assert _removed(pruned) == [f"file://{dead}/"]
    assert not (parts / "tiny" / "w.bin").exists()  # no empty folder left behind
    assert (live / "00001").exists()  # a set a day has not passed over
    kept = _kept(pruned)
    assert kept[f"file://{live}/"] == "a fill's parts (one under way, or killed)"


def test_an_object_marked_by_mdl_0_6_is_kept_and_said_why(
    s3: S3, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """mdl 0.6 marked an upload with ``x-amz-meta-mdl: 1``, which every copy carries too: such
    an object cannot be told from a copy of it, so prune keeps it, saying to remove it by hand
    once; the same bytes under this mdl's mark go."""
    _pinned(tmp_path, monkeypatch)
    client = s3.client()
    client.create_bucket(Bucket="mirror")
    sha = hashlib.sha256(OLD).hexdigest()
    client.put_object(
        Bucket="mirror", Key="hub/tiny/old.bin", Body=OLD, Metadata={"mdl": "1", "sha256": sha}
    )
    source = tmp_path / "old.bin"
    source.write_bytes(OLD)
    side = side_of(f"hf://org/tiny@{COMMIT}/old.bin")
    writer = STORES["s3"].writer(endpoint=None, secrets=None)
    ours = "s3://mirror/hub/tiny/new.bin"
    assert writer.upload(ours, source, size=len(OLD), sha256=sha, root="x", side=side)
    pruned = mdl(
        "prune", "--mirror", "s3://mirror/hub/{model}/{path}", "--keep-days", "0", "--json"
    )
    assert _kept(pruned)["s3://mirror/hub/tiny/old.bin"] == (
        "marked by mdl 0.6 or before, a mark a copy keeps too: remove it by hand once"
    )
    assert _removed(pruned) == [ours]


def test_publish_leaves_another_catalogs_file_of_the_same_name(
    hub: HubServer, teams: dict[str, Path], tmp_path: Path
) -> None:
    """Team a filled ``llm/`` on the share; team b publishes its own ``llm`` there: by content, no
    name of b's is one of a's files, so a's stay as they are and b's all go up (exit 0)."""
    share = tmp_path / "shared"
    share.mkdir()
    template = f"file://{share}/{{model}}/{{path}}"
    filled = mdl("pull", "--all", "--fill-mirror", "--mirror", template, env=_env(hub, teams["a"]))
    assert filled.exit_code == 0, filled.stderr
    theirs = {p: (share / "llm" / p).stat().st_ino for p in A_FILES}
    env = _env(hub, teams["b"])
    assert mdl("pull", "--all", env=env).exit_code == 0
    published = mdl("publish", "--all", "--to", f"file://{share}", env=env)
    assert published.exit_code == 0, published.stderr
    for path, data in A_FILES.items():
        assert (share / "llm" / path).read_bytes() == data
    assert {p: (share / "llm" / p).stat().st_ino for p in A_FILES} == theirs, "a's untouched"
    for data in B_FILES.values():
        assert (share / "llm" / hashlib.sha256(data).hexdigest()).read_bytes() == data


def test_a_fill_in_parts_on_a_share_leaves_no_empty_folder(
    hub: HubServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A fill publishes its parts under ``.mdl/parts/<model>/<path>/<set>/`` and removes them once
    the object is made: the folders go with them (a share kept one per file version filled)."""
    monkeypatch.setattr(partsize, "PART", 1 << 20)  # parts of 1 MiB: 4
    weights = make_data(3 * (1 << 20) + 3, seed=63)
    hub.add_repo("org/big", {"w.safetensors": weights})
    (tmp_path / "catalog.toml").write_text('[models.big]\nrepo = "org/big"\n')
    share = tmp_path / "shared"
    share.mkdir()
    template = f"file://{share}/{{model}}/{{path}}"
    pulled = mdl("pull", "--all", "--fill-mirror", "--mirror", template, env=_env(hub, tmp_path))
    assert pulled.exit_code == 0, pulled.stderr
    assert (share / "big" / "w.safetensors").read_bytes() == weights
    parts = share / ".mdl" / "parts"
    assert parts.is_dir()  # made by the first part published
    assert list(parts.iterdir()) == []
