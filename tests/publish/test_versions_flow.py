"""Issue 76's measurements, end to end against real stores (moto, SeaweedFS, a shared folder):
three versions of a 2-shard model (v2 re-sharded into 3, v3 changing one shard) pulled by a
seeding machine, published signed, locked; then a fresh machine on each version's lock, with the
origin answering 503 to everything, deploys it from the store alone; the store holds each distinct
file once; a re-publish writes nothing; and mdl 0.9.0 (git history) pulls the current version
from the new layout with ``--frozen`` and the ``{sha256}`` template.

One publish of the three versions per store (a module-scoped fixture); each test only reads it
(a fresh destination per deploy), so the tests stay independent of each other's order."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tomllib
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from releases import store_clock_past, writer_of
from runfixtures import HANG, mdl, mdl_from_history
from s3server import S3, aws_environ, s3_server  # noqa: F401
from seaweed import Weed
from servers import Fault, HubServer, make_data
from signkeys import key_pair

from mdl.buckets import versions

ROOT = Path(__file__).resolve().parents[2]
REPO = "team/llm"
MODEL = "llm"
BUCKET = "team-models"
RELEASE_090 = "39e42f9"  # the 0.9.0 release commit ("0.9.0: CHANGELOG")


def _shard(name: str, size: int) -> bytes:
    return make_data(size, name)


def _index(shards: list[str]) -> bytes:
    weights = {f"layer.{i}.weight": name for i, name in enumerate(shards)}
    return json.dumps({"metadata": {}, "weight_map": weights}, sort_keys=True).encode() + b"\n"


CONFIG = b'{"model_type": "llama", "hidden_size": 16}\n'
V1_SHARDS = {f"model-0000{i}-of-00002.safetensors": _shard(f"v1-{i}", 4000 + i) for i in (1, 2)}
V2_SHARDS = {f"model-0000{i}-of-00003.safetensors": _shard(f"v2-{i}", 2700 + i) for i in (1, 2, 3)}
V3_SHARD = {"model-00002-of-00003.safetensors": _shard("v3-2", 2702)}
INDEX = "model.safetensors.index.json"
# each version as the Hub's commit on top of the one before (None: the file is deleted)
CHANGES: dict[str, dict[str, bytes | None]] = {
    "v1": {"config.json": CONFIG, **V1_SHARDS, INDEX: _index(sorted(V1_SHARDS))},
    "v2": {**dict.fromkeys(V1_SHARDS), **V2_SHARDS, INDEX: _index(sorted(V2_SHARDS))},
    "v3": V3_SHARD,
}


def _versions() -> dict[str, dict[str, bytes]]:
    """Each version's whole file set."""
    files: dict[str, bytes] = {}
    out: dict[str, dict[str, bytes]] = {}
    for name, changes in CHANGES.items():
        for path, data in changes.items():
            if data is None:
                files.pop(path)
            else:
                files[path] = data
        out[name] = dict(files)
    return out


VERSIONS = _versions()


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass
class Store:
    """One store the versions are published to: its prefix, the environment that reaches it, and
    its objects under the prefix ({key below the prefix: (size, what changes when it is written
    again: ETag and time, or inode and mtime)})."""

    kind: str
    prefix: str
    env: dict[str, str]
    objects: Callable[[], dict[str, tuple[int, str]]]
    writes: Callable[[], int] = lambda: 0  # writes the store saw since the last call (moto)

    @property
    def template(self) -> str:
        return f"{self.prefix}/{{model}}/{{sha256}}"


@dataclass
class Flow:
    """The three versions published to one store: where each lock is, the seeder's copy, the
    Hub, and what each publish said."""

    store: Store
    hub: HubServer
    root: Path
    locks: dict[str, Path] = field(default_factory=dict)

    @property
    def deploy(self) -> Path:
        return self.root / "deploy" / "catalog.toml"

    @property
    def seed(self) -> Path:
        return self.root / "seed.toml"

    def env(self, **extra: str) -> dict[str, str]:
        return {
            **self.store.env,
            "HF_ENDPOINT": self.hub.url,
            "MDL_LOG_FILE": str(self.root / "mdl.log"),
            **extra,
        }

    def run(self, *args: str) -> dict[str, object]:
        done = mdl(*args, "--json", "--no-progress", env=self.env())
        assert done.exit_code == 0, f"mdl {' '.join(args)}: {done.stderr}{done.stdout}"
        doc: dict[str, object] = json.loads(done.stdout)
        return doc


def _s3_objects(
    client: object, bucket: str, prefix: str
) -> Callable[[], dict[str, tuple[int, str]]]:
    def objects() -> dict[str, tuple[int, str]]:
        found: dict[str, tuple[int, str]] = {}
        pages = client.get_paginator("list_objects_v2").paginate(  # type: ignore[attr-defined]
            Bucket=bucket, Prefix=prefix + "/"
        )
        for page in pages:
            for obj in page.get("Contents", []):
                stamp = f"{obj['ETag']} {obj['LastModified'].isoformat()}"
                found[obj["Key"][len(prefix) + 1 :]] = (obj["Size"], stamp)
        return found

    return objects


def _folder_objects(root: Path) -> Callable[[], dict[str, tuple[int, str]]]:
    def objects() -> dict[str, tuple[int, str]]:
        found = {}
        for path in root.rglob("*"):
            if path.is_file():
                st = path.stat()
                found[path.relative_to(root).as_posix()] = (
                    st.st_size,
                    f"{st.st_ino} {st.st_mtime_ns}",
                )
        return found

    return objects


def _store(kind: str, request: pytest.FixtureRequest, root: Path) -> Store:
    unique = uuid.uuid4().hex[:12]
    if kind == "folder":
        hub_dir = root / "share" / "hub"
        hub_dir.mkdir(parents=True)
        return Store(kind, hub_dir.as_uri(), {}, _folder_objects(hub_dir))
    if kind == "moto":
        server: S3 = request.getfixturevalue("s3_server")
        client = server.client()
        endpoint = server.endpoint
        cutter = server.cutter

        def writes() -> int:
            count = len(cutter.writes)
            cutter.writes.clear()
            return count

    else:
        weed: Weed = request.getfixturevalue("seaweed_server")
        client = weed.client()
        endpoint = weed.endpoint
        writes = Store.writes
    if BUCKET not in {b["Name"] for b in client.list_buckets().get("Buckets", [])}:
        client.create_bucket(Bucket=BUCKET)
    env = {
        **aws_environ(endpoint),
        "AWS_CONFIG_FILE": str(root / "no-aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(root / "no-aws-credentials"),
    }
    prefix = f"{unique}/hub"
    return Store(kind, f"s3://{BUCKET}/{prefix}", env, _s3_objects(client, BUCKET, prefix), writes)


@pytest.fixture(
    scope="module", params=["moto", "folder", pytest.param("seaweedfs", marks=pytest.mark.slow)]
)
def flow(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Flow]:
    """v1, v2 and v3 of ``team/llm`` committed to the Hub one after another; after each, the
    seeding machine pulls it, publishes it signed to the store, and the deploy catalog's lock is
    upgraded to it and kept as ``locks/vN.lock`` (with its part hashes)."""
    root = tmp_path_factory.mktemp(f"flow-{request.param}")
    store = _store(request.param, request, root)
    private, public = key_pair(root / "deploy" / "keys", "team")
    # the seeding machine's catalog names the signer too, and no mirror: its pull of a version
    # not signed yet: pulled --unsigned, the files checked against the Hub, for publish --sign
    signer = f'\n[models.{MODEL}.signature]\nkey = "deploy/keys/{public.name}"\n'
    (root / "seed.toml").write_text(f'[models.{MODEL}]\nrepo = "{REPO}"\n{signer}')
    (root / "deploy" / "catalog.toml").write_text(
        f'[settings]\nmirrors = ["{store.template}"]\n\n[models.{MODEL}]\nrepo = "{REPO}"\n\n'
        f'[models.{MODEL}.signature]\nkey = "keys/{public.name}"\n'
    )
    (root / "locks").mkdir()
    hub = HubServer().start()
    try:
        built = Flow(store, hub, root)
        for version, changes in CHANGES.items():
            if version == "v1":
                hub.add_repo(REPO, {k: v for k, v in changes.items() if v is not None})
            else:
                hub.commit(REPO, changes, title=version)
            seeder = ("--catalog", str(built.seed), "--dest", str(root / "seeder"))
            pulled = mdl("pull", MODEL, *seeder, "--unsigned", "--no-progress", env=built.env())
            assert pulled.exit_code == 0, pulled.stderr
            assert "none was found" in pulled.stderr and "--unsigned" in pulled.stderr
            published = built.run(
                "publish", MODEL, *seeder, "--to", store.prefix, "--sign", str(private)
            )
            assert published["template"] == store.template, "what the nodes read it with"
            # the next version newer by the store's clock (S3 says seconds: a tie is kept, never
            # ordered by prune; a folder's mtime has ticks, and its clock would be one more file)
            (manifest,) = [v["manifest"] for v in published["versions"]]  # type: ignore[index]
            with pytest.MonkeyPatch.context() as patch:  # (the store's endpoint, as mdl's)
                for name, value in store.env.items():
                    patch.setenv(name, value)
                if store.kind != "folder":
                    store_clock_past(writer_of(store.prefix), manifest)
            built.run(
                "lock", "--upgrade", MODEL, "--catalog", str(built.deploy),
                "--dest", str(root / "seeder"),
            )  # fmt: skip
            lock = built.deploy.with_suffix(".lock")
            built.locks[version] = root / "locks" / f"{version}.lock"
            shutil.copyfile(lock, built.locks[version])
            shutil.copyfile(f"{lock}.parts", f"{built.locks[version]}.parts")
        yield built
    finally:
        hub.stop()


@pytest.fixture
def origin_down(flow: Flow) -> Iterator[HubServer]:
    """The Hub and its CDN answer 503 to everything, and count every request."""
    hub = flow.hub
    faults = [server.faults.add(Fault.http_error(503, times=None)) for server in (hub, hub.cdn)]
    hub.log.clear()
    hub.cdn.log.clear()
    try:
        yield hub
    finally:
        for server, fault in zip((hub, hub.cdn), faults, strict=True):
            assert fault in server.faults.pending()  # forever: never used up
            server.faults.clear()  # the next test has the Hub back


def _installed(folder: Path, files: Mapping[str, bytes]) -> dict[str, str]:
    return {path: sha((folder / path).read_bytes()) for path in files}


@pytest.mark.parametrize("version", list(VERSIONS))
def test_a_fresh_machine_on_each_versions_lock_deploys_it_from_the_store_alone(
    flow: Flow, origin_down: HubServer, version: str, tmp_path: Path
) -> None:
    dest = tmp_path / "node"
    done = mdl(
        "pull", "--all", "--frozen", "--lock", str(flow.locks[version]), "--catalog", str(flow.deploy),
        "--dest", str(dest), "--json", "--no-progress", env=flow.env(),
    )  # fmt: skip
    assert done.exit_code == 0, done.stderr
    files = VERSIONS[version]
    assert _installed(dest / MODEL, files) == {p: sha(d) for p, d in files.items()}
    signature = sha((dest / MODEL / "model.sig").read_bytes())
    assert signature == _lock_pin(flow.locks[version], "model.sig"), "its own, as locked"
    requests = len(origin_down.log) + len(origin_down.cdn.log)
    print(f"[{flow.store.kind} {version}] origin requests: {requests}")
    assert requests == 0


def test_each_version_pins_its_own_signature_none_replaced(flow: Flow) -> None:
    pinned = {v: _lock_pin(lock, "model.sig") for v, lock in flow.locks.items()}
    assert len(set(pinned.values())) == 3, pinned
    objects = flow.store.objects()
    assert all(f"{MODEL}/{h}" in objects for h in pinned.values()), "every version's, stored"


def _lock_pin(lock: Path, path: str) -> str:
    """The sha256 the lock at ``lock`` pins ``path`` of the model to."""
    doc = tomllib.loads(lock.read_text(encoding="utf-8"))
    (model,) = [m for m in doc["model"] if m["name"] == MODEL]
    (found,) = [f["sha256"] for f in model["files"] if f["path"] == path]
    return str(found)


def test_the_store_holds_each_distinct_file_once(flow: Flow) -> None:
    objects = {k: size for k, (size, _) in flow.store.objects().items()}
    content = {k: s for k, s in objects.items() if not k.startswith(".mdl/")}
    distinct = {sha(d): len(d) for files in VERSIONS.values() for d in files.values()}
    signatures = {_lock_pin(lock, "model.sig") for lock in flow.locks.values()}
    manifests = {k: s for k, s in objects.items() if k.startswith(".mdl/versions/")}
    state = {k: s for k, s in objects.items() if k.startswith(".mdl/") and k not in manifests}
    stored, wanted = sum(content.values()), sum(distinct.values())
    sig_bytes = sum(content[f"{MODEL}/{h}"] for h in signatures)
    print(
        f"[{flow.store.kind}] content objects: {len(content)}, {stored} B; distinct files:"
        f" {len(distinct)}, {wanted} B (+ {len(signatures)} signatures, {sig_bytes} B);"
        f" manifests: {len(manifests)}, {sum(manifests.values())} B; other mdl state (a"
        f" folder's marks): {len(state)}, {sum(state.values())} B;"
        f" files the three versions list: {sum(len(f) for f in VERSIONS.values())},"
        f" {sum(len(d) for f in VERSIONS.values() for d in f.values())} B"
    )
    assert set(content) == {f"{MODEL}/{h}" for h in [*distinct, *signatures]}
    assert stored <= wanted + sig_bytes
    assert len(manifests) == 3
    # nothing per version under a version-less name: no by-name object, no .mdl/<model>.json
    assert all(k.startswith(".mdl/marks/") for k in state), sorted(state)


def test_a_republish_writes_nothing(flow: Flow) -> None:
    """The seeding machine's publish --sign run again (its cron): every object and the version's
    manifest already there, its signature named by the manifest; nothing written."""
    before = flow.store.objects()
    flow.store.writes()
    again = flow.run(
        "publish", MODEL, "--catalog", str(flow.seed), "--dest", str(flow.root / "seeder"),
        "--to", flow.store.prefix, "--sign", str(flow.root / "deploy" / "keys" / "team.pem"),
    )  # fmt: skip
    assert flow.store.objects() == before
    assert flow.store.writes() == 0
    files = again["files"]
    assert isinstance(files, list) and {f["action"] for f in files} == {"skipped"}, files
    assert [v["action"] for v in again["versions"]] == ["skipped"]  # type: ignore[attr-defined]


@pytest.mark.parametrize("v1_kept", [False, True], ids=["v2-and-v3", "and-a-v1-lock"])
def test_prune_keeping_v2_and_v3_would_remove_exactly_v1s_own_and_nothing_with_its_lock(
    flow: Flow, v1_kept: bool
) -> None:
    """The dry run (the module's store stays whole for the other tests), with no grace period:
    catalog.lock (v3) and the newest two versions kept, v1's files that neither names go (its
    shards, its index, its signature) and its manifest; with v1's lock given, nothing."""
    extra = ("--lock", str(flow.locks["v1"])) if v1_kept else ()
    said = flow.run(
        "prune", "--mirror", flow.store.template, "--catalog", str(flow.deploy),
        "--keep-versions", "2", "--keep-days", "0", "--dry-run", *extra,
    )  # fmt: skip
    removed = {r["uri"].removeprefix(flow.store.prefix + "/") for r in said["removed"]}  # type: ignore[attr-defined]
    later = {sha(d) for v in ("v2", "v3") for d in VERSIONS[v].values()}
    only_v1 = {sha(d) for d in VERSIONS["v1"].values()} - later
    v1_sig = _lock_pin(flow.locks["v1"], "model.sig")
    rows = [(p, len(d), sha(d)) for p, d in VERSIONS["v1"].items()]
    v1_manifest = {f".mdl/versions/{MODEL}/{versions.version_id(rows)}.json"}
    expected = set() if v1_kept else {f"{MODEL}/{h}" for h in [*only_v1, v1_sig]} | v1_manifest
    print(f"[{flow.store.kind} prune, v1 lock kept: {v1_kept}] would free {said['freed']} B")
    assert removed == expected
    assert len(v1_manifest) == 1 and len(only_v1) == 3


# -- mdl 0.9.0, from git history


def _git(*args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        ["git", "-C", str(ROOT), *args], capture_output=True, timeout=120, check=False
    )


@pytest.fixture(scope="module")
def mdl_090(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """mdl 0.9.0's package (``git archive 39e42f9``) in a folder of its own, for PYTHONPATH."""
    if shutil.which("git") is None:
        pytest.skip("git is not installed: mdl 0.9.0 cannot be taken from history")
    shown = _git("show", f"{RELEASE_090}:mdl/version.py")
    if shown.returncode != 0:
        pytest.skip(f"not a git checkout holding mdl 0.9.0 ({RELEASE_090}): {shown.stderr[:200]!r}")
    assert b'"0.9.0"' in shown.stdout
    return mdl_from_history(RELEASE_090, tmp_path_factory.mktemp("mdl-0.9.0"))


@pytest.mark.slow  # a real 0.9.0 process
def test_a_090_node_pulls_the_current_version_from_the_new_layout(
    flow: Flow, mdl_090: Path, origin_down: HubServer, tmp_path: Path
) -> None:
    node = tmp_path / "node"
    node.mkdir()
    shutil.copytree(flow.deploy.parent / "keys", node / "keys")
    shutil.copyfile(flow.deploy, node / "catalog.toml")
    shutil.copyfile(flow.locks["v3"], node / "catalog.lock")
    shutil.copyfile(f"{flow.locks['v3']}.parts", node / "catalog.lock.parts")
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "MDL_", "HF_"))},
        **flow.env(MDL_DEST=str(tmp_path / "models")),
        "PYTHONPATH": str(mdl_090),
    }
    version = subprocess.run(
        [sys.executable, "-m", "mdl", "--version"], env=env, capture_output=True, text=True,
        timeout=HANG, check=False, cwd=node,
    )  # fmt: skip
    assert "0.9.0" in version.stdout, version.stderr
    done = subprocess.run(
        [sys.executable, "-m", "mdl", "pull", "--all", "--frozen", "--no-progress"], env=env,
        capture_output=True, text=True, timeout=HANG, check=False, cwd=node,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    files = VERSIONS["v3"]
    assert _installed(tmp_path / "models" / MODEL, files) == {p: sha(d) for p, d in files.items()}
    assert len(origin_down.log) + len(origin_down.cdn.log) == 0
