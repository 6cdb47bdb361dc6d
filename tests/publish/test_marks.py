"""mdl's mark on what it writes into a mirror is bound to the name it was written under and to the
bytes, and says whose: a server-side copy (S3 CopyObject keeps metadata) or a ``cp -a`` of a
filled object is not mdl's, and prune keeps it whatever its age; two catalogs that both name a
model ``llm`` and fill one template keep each other's files, and the collision is said once.
Against real stores: moto and SeaweedFS, a shared folder."""

from __future__ import annotations

import hashlib
import json
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from runfixtures import mdl, use_catalog
from s3server import S3
from seaweed import Weed, seaweed_server  # noqa: F401
from servers import HubServer, make_data

from mdl.buckets.folder import FolderWriter
from mdl.buckets.protocol import mark_uri, side_of
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
NAMED = "named by the catalog.lock"


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
    for uri in (ours, mark_uri(ours, root=root)):
        target = uri.replace("/tiny/", "/tiny/backup/").removeprefix("file://")
        Path(target).parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(["cp", "-a", uri.removeprefix("file://"), target], check=True, timeout=60)
    assert Path(mark_uri(copy, root=root).removeprefix("file://")).exists()
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
