"""Issue 24: every command is safe beside every other on one destination (real processes, loopback
servers only).

The matrix runs every pair of `pull get verify clean lock add unpack publish` (each with itself too)
on one destination at once and checks that both end with a documented exit code — never 1, never a
traceback — and that every byte each one was asked for is right. A run that moves bytes (pull, get)
or asks the Hub (lock, add) goes first and is held at its server until the other has started (or
finished); two offline commands start together. Pairs run side by side, each with its own Hub, CDN,
catalog and destination; each command a real process forked from one zygote (tests/zygote.py: no
interpreter's start and imports per command), the setup in this process. The other tests here: two `get`s of one file into one folder, a resumed
`get`, a waiting run naming the holder's pid, and per-file locks.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import signal
import subprocess
import threading
import time
import tomllib
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from runfixtures import HANG, make_hf_run, mdl_as_child, recorded, wait_for
from s3server import S3, aws_environ, s3_server  # noqa: F401
from servers import Fault, HubServer, make_data
from zygote import Forked, Zygote, shared

pytestmark = pytest.mark.slow  # the real-process matrix

BASE = {"config.json": b'{"base": true}', "weights.safetensors": make_data(300_000, seed=401)}
FRESH = {"config.json": b'{"fresh": true}', "model.safetensors": make_data(400_000, seed=402)}
TINY = {"config.json": b'{"tiny": 1}', "model.safetensors": make_data(2_000_000, seed=403)}
CATALOG = '[models.base]\nrepo = "org/base"\n\n[models.fresh]\nrepo = "org/fresh"\n'
TINY_URI = "hf://org/tiny-model/model.safetensors"
BUCKET = "mdl-pairs"
COMMANDS = ("pull", "get", "verify", "clean", "lock", "add", "unpack", "publish")
# who goes first and is held: transfers, then Hub askers
FIRST = {"pull": 0, "get": 0, "lock": 1, "add": 1}
PAIRS = list(itertools.combinations_with_replacement(COMMANDS, 2))
DROP = ("MDL_", "HF_", "XDG_", "HUGGINGFACE_", "AWS_")


def clean_environ(home: Path) -> dict[str, str]:
    """os.environ without the developer's MDL_/HF_/AWS_/proxy setup, with HOME and XDG dirs under
    `home`.
    """
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(DROP) and not k.lower().endswith("_proxy")
    }
    for name in (
        "REQUESTS_CA_BUNDLE",
        "CURL_CA_BUNDLE",
        "SSL_CERT_FILE",
        "SSL_CERT_DIR",
        "NO_COLOR",
    ):
        env.pop(name, None)
    env.update(
        HOME=str(home),
        TERM="dumb",
        HF_HUB_DISABLE_TELEMETRY="1",
        HF_HOME=str(home / ".cache" / "hf"),
    )
    for var, sub in (
        ("CONFIG", ".config"),
        ("DATA", ".local/share"),
        ("CACHE", ".cache"),
        ("STATE", ".local/state"),
    ):
        env[f"XDG_{var}_HOME"] = str(home / sub)
    return env


def make_hub() -> HubServer:
    hub = HubServer().start()
    hub.add_repo("org/base", BASE)  # the same order on every Hub: the same commit ids
    hub.add_repo("org/fresh", FRESH)
    hub.add_repo("org/tiny-model", TINY)
    return hub


def tree(folder: Path) -> list[str]:
    return (
        sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*"))
        if folder.exists()
        else []
    )


@dataclass
class Kit:
    """What every pair shares: a pulled `base` to copy, an archive to unpack, the S3 endpoint and
    a client of it, the zygote its commands are forked from."""

    template: Path
    archive: Path
    archive_files: dict[str, bytes]
    s3: S3
    bucket: Any
    zygote: Zygote


@dataclass
class Pair:
    """One pair's folder (catalog, destination, log) and servers, and what went wrong."""

    name: str
    root: Path
    hub: HubServer
    env: dict[str, str]
    problems: list[str] = field(default_factory=list)

    @property
    def dest(self) -> Path:
        return self.root / "models"

    def argv(self, cmd: str, kit: Kit) -> list[str]:
        return {
            "pull": ["pull", "fresh"],
            "get": ["get", TINY_URI, "-d", str(self.dest)],
            "verify": ["verify", "base"],
            "clean": ["clean"],
            "lock": ["lock"],
            "add": ["add", "extra", "hf://org/tiny-model/config.json"],
            "unpack": ["unpack", str(kit.archive), "-d", str(self.dest), "--force"],
            "publish": ["publish", "base", "--to", f"s3://{BUCKET}/{self.name}"],
        }[cmd]

    def spawn(self, index: int, cmd: str, kit: Kit) -> Forked:
        out, err = self.root / f"{index}-{cmd}.out", self.root / f"{index}-{cmd}.err"
        return kit.zygote.spawn(
            self.argv(cmd, kit), env=self.env, cwd=self.root, stdout=out, stderr=err
        )

    def stderr(self, index: int, cmd: str) -> str:
        return (self.root / f"{index}-{cmd}.err").read_text(errors="replace")

    def waiting_in_log(self, pid: int) -> bool:
        log = self.root / "mdl.log"
        return log.exists() and any(
            f" pid={pid} " in ln and "waiting" in ln for ln in log.read_text().splitlines()
        )


def make_pair(name: str, base_root: Path, kit: Kit) -> Pair:
    root = base_root / name
    root.mkdir(parents=True)
    (root / "catalog.toml").write_text(CATALOG)
    # `base` pulled and recorded (copy2 keeps the mtimes)
    shutil.copytree(kit.template, root / "models")
    hub = make_hub()
    env = clean_environ(root / "home")
    env.update(aws_environ(kit.s3.endpoint))
    env.update(
        HF_ENDPOINT=hub.url,
        MDL_CATALOG=str(root / "catalog.toml"),
        MDL_DEST=str(root / "models"),
        MDL_LOG_FILE=str(root / "mdl.log"),
        MDL_TIMEOUT="30",  # the hold below keeps requests waiting for seconds, on purpose
    )
    return Pair(name, root, hub, env)


def run_pair(pair: Pair, first: str, second: str, kit: Kit) -> None:
    """Start `first`, hold it at its server, run `second` beside it, release, and check both and
    the bytes.
    """
    gate = threading.Event()
    held: Fault | None = None
    if first in ("pull", "get"):
        held = pair.hub.cdn.faults.add(
            Fault.call(lambda: gate.wait(HANG), path_prefix="/blobs/", times=None)
        )
    elif first in ("lock", "add"):
        held = pair.hub.faults.add(Fault.call(lambda: gate.wait(HANG), times=None))
    try:
        p1 = pair.spawn(1, first, kit)
        if held is not None:
            wait_for(lambda: held.seen > 0 or p1.poll() is not None, what=f"{first} at its server")
            if p1.poll() is not None:
                pair.problems.append(f"{first} ended before it was held (exit {p1.returncode})")
        p2 = pair.spawn(2, second, kit)
        if held is not None:
            seen = held.seen
            deadline = time.monotonic() + 8
            while time.monotonic() < deadline and p2.poll() is None:
                if held.seen > seen or pair.waiting_in_log(p2.pid):
                    time.sleep(0.3)
                    break
                time.sleep(0.05)
            if p1.poll() is not None:
                pair.problems.append(f"{first} did not stay held while {second} ran")
    finally:
        gate.set()
    for index, cmd, proc in ((1, first, p1), (2, second, p2)):
        try:
            code = proc.wait(timeout=HANG)
        except subprocess.TimeoutExpired:
            proc.kill()
            code = proc.wait()
        err = pair.stderr(index, cmd)
        if code != 0 or "Traceback" in err:
            pair.problems.append(f"{cmd} (#{index}) exit {code}: {err.strip()[-600:]}")
    check_effects(pair, {first, second}, kit)
    pair.hub.stop()
    pair.problems.extend(f"server error: {e[-300:]}" for e in pair.hub.errors + pair.hub.cdn.errors)


def check_effects(pair: Pair, cmds: set[str], kit: Kit) -> None:
    """Every byte each command was asked for is right, and nothing it was not asked for was
    touched.
    """
    expect: dict[str, bytes] = {f"base/{p}": d for p, d in BASE.items()}
    if "pull" in cmds:
        expect.update({f"fresh/{p}": d for p, d in FRESH.items()})
    if "get" in cmds:
        expect["model.safetensors"] = TINY["model.safetensors"]
    if "unpack" in cmds:
        expect.update(kit.archive_files)
    for path, data in expect.items():
        target = pair.dest / path
        if not target.is_file() or target.read_bytes() != data:
            pair.problems.append(f"{path}: {'wrong bytes' if target.is_file() else 'missing'}")
    if not (pair.dest / ".mdl" / "records" / "base.json").is_file():
        pair.problems.append("the record of the pulled model `base` is gone")
    for model, files in (("base", BASE), ("fresh", FRESH if "pull" in cmds else {})):
        extra = set(tree(pair.dest / model)) - set(files)
        if extra:
            pair.problems.append(f"{model}/ holds more than its files: {sorted(extra)}")
    catalog = tomllib.loads((pair.root / "catalog.toml").read_text())["models"]
    wanted = {"base", "fresh"} | ({"extra"} if "add" in cmds else set())
    if set(catalog) != wanted:
        pair.problems.append(f"catalog models {sorted(catalog)}, expected {sorted(wanted)}")
    if "lock" in cmds:
        lock = pair.root / "catalog.lock"
        names = (
            {m["name"] for m in tomllib.loads(lock.read_text())["model"]}
            if lock.exists()
            else set()
        )
        if not {"base", "fresh"} <= names:
            pair.problems.append(f"catalog.lock pins {sorted(names)}")
    if "publish" in cmds:
        listed = kit.bucket.list_objects_v2(
            Bucket=BUCKET, Prefix=f"{pair.name}/.mdl/versions/base/"
        )
        if not listed.get("Contents"):
            pair.problems.append("publish: no version manifest in the bucket")


@pytest.fixture(scope="module")
def zygote() -> Zygote:
    """Where the module's commands are forked from: the worker's (tests/zygote.py)."""
    return shared()


@pytest.fixture(scope="module")
def matrix(
    tmp_path_factory: pytest.TempPathFactory,
    s3_server: S3,  # noqa: F811
    zygote: Zygote,
) -> dict[str, list[str]]:
    """Run every pair once, side by side; each pair's problems (empty: it passed)."""
    root = tmp_path_factory.mktemp("pairs")
    bucket = s3_server.client()
    bucket.create_bucket(Bucket=BUCKET)
    hub = make_hub()
    try:
        env = {
            **clean_environ(root / "home"),
            "HF_ENDPOINT": hub.url,
            "MDL_LOG_FILE": str(root / "setup.log"),
        }
        (root / "catalog.toml").write_text(CATALOG)
        template = root / "template"
        args = ["pull", "base", "--catalog", "catalog.toml", "--dest", str(template)]
        pulled = mdl_as_child(args, env=env, cwd=root)
        assert pulled.exit_code == 0, pulled.stderr
    finally:
        hub.stop()
    make_hf_run(root / "run", steps=(10, 20))
    archive = root / "ckpt.zip"
    args = ["pack", str(root / "run"), "-o", str(archive), "--checkpoint", "latest"]
    packed = mdl_as_child(args, env=env, cwd=root)
    assert packed.exit_code == 0, packed.stderr
    with zipfile.ZipFile(archive) as zf:
        files = {i.filename: zf.read(i) for i in zf.infolist() if not i.is_dir()}
    kit = Kit(template, archive, files, s3_server, bucket, zygote)
    pairs = {f"{a}-{b}": make_pair(f"{a}-{b}", root, kit) for a, b in PAIRS}

    def one(names: tuple[str, str]) -> None:
        first, second = sorted(names, key=lambda c: FIRST.get(c, 2))
        pair = pairs[f"{names[0]}-{names[1]}"]
        try:
            run_pair(pair, first, second, kit)
        except Exception as exc:
            pair.problems.append(f"the pair could not run: {exc!r}")
            pair.hub.stop()

    with ThreadPoolExecutor(max_workers=6) as pool:
        list(pool.map(one, PAIRS))
    return {name: pair.problems for name, pair in pairs.items()}


@pytest.mark.parametrize("pair", [f"{a}-{b}" for a, b in PAIRS])
def test_two_commands_at_once_on_one_destination(matrix: dict[str, list[str]], pair: str) -> None:
    assert matrix[pair] == [], "\n".join(matrix[pair])


# -- get beside get, a resumed get, who holds the lock, per-file locks
# ------------------------------------------


@pytest.fixture
def env(hub: HubServer, tmp_path: Path) -> dict[str, str]:
    hub.add_repo("org/tiny-model", TINY)
    small = {"small.json": b'{"s": 1}', "small.safetensors": make_data(100_000, seed=404)}
    hub.add_repo("org/mixed", {**small, "big.safetensors": make_data(2_000_000, seed=405)})
    (tmp_path / "catalog.toml").write_text(
        '[models.tiny]\nrepo = "org/tiny-model"\n\n[models.mixed]\nrepo = "org/mixed"\n'
    )
    return {
        **clean_environ(Path(os.environ["HOME"])),
        "HF_ENDPOINT": hub.url,
        "MDL_CATALOG": str(tmp_path / "catalog.toml"),
        "MDL_DEST": str(tmp_path / "models"),
        "MDL_LOG_FILE": str(tmp_path / "mdl.log"),
        # a held request waits as long as the test holds it, however slow the machine
        "MDL_TIMEOUT": str(HANG),
    }


_RUNS = itertools.count()  # each run's own stdout and stderr files


def spawn(zygote: Zygote, env: dict[str, str], *args: str) -> Forked:
    """``mdl ARGS`` as a process of its own (forked from the zygote), in the catalog's folder."""
    cwd, number = Path(env["MDL_CATALOG"]).parent, next(_RUNS)
    out, err = cwd / f"run-{number}.out", cwd / f"run-{number}.err"
    return zygote.spawn(args, env=env, cwd=cwd, stdout=out, stderr=err)


def finish(proc: Forked) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=HANG)
    return proc.wait(), out.decode(), err.decode()


def log_says_waiting(env: dict[str, str], pid: int) -> bool:
    log = Path(env["MDL_LOG_FILE"])
    return log.exists() and any(
        f" pid={pid} " in ln and "waiting" in ln for ln in log.read_text().splitlines()
    )


def hold_blobs(hub: HubServer, prefix: str = "/blobs/") -> tuple[threading.Event, Fault]:
    gate = threading.Event()
    return gate, hub.cdn.faults.add(
        Fault.call(lambda: gate.wait(HANG), path_prefix=prefix, times=None)
    )


def test_two_gets_of_one_file_into_one_folder(
    hub: HubServer, env: dict[str, str], tmp_path: Path, zygote: Zygote
) -> None:
    same = tmp_path / "SAMEDIR"
    gate, held = hold_blobs(hub)
    first = spawn(zygote, env, "get", TINY_URI, "-d", str(same))
    try:
        wait_for(lambda: held.seen > 0 or first.poll() is not None, what="the first get at the CDN")
        second = spawn(zygote, env, "get", TINY_URI, "-d", str(same))
        wait_for(
            lambda: held.seen > 1 or log_says_waiting(env, second.pid) or second.poll() is not None
        )
    finally:
        gate.set()
    (code1, _, err1), (code2, _, err2) = finish(first), finish(second)
    assert (code1, code2) == (0, 0), (err1, err2)
    assert "Traceback" not in err1 + err2
    assert (same / "model.safetensors").read_bytes() == TINY["model.safetensors"]
    assert tree(same) == [".mdl", ".mdl/get.json", "model.safetensors"], (
        "a finished get keeps only its record"
    )
    if log_says_waiting(env, second.pid):
        assert str(first.pid) in err2, (
            f"the waiting get does not name the holder (pid {first.pid}): {err2}"
        )


def saved(folder: Path) -> bool:
    """Whether a partial's record in ``folder`` names bytes already on disk."""
    for record in (folder / ".mdl" / "partial").glob("*.part.json"):
        try:
            return bool(json.loads(record.read_text()).get("pieces"))
        except (OSError, ValueError):
            return False
    return False


def test_a_resumed_get_leaves_no_empty_state_folders(
    hub: HubServer, env: dict[str, str], tmp_path: Path, zygote: Zygote
) -> None:
    same = tmp_path / "SAMEDIR"
    # every answer sends its first 400 kB, then holds the rest until the get was cut: the get is
    # mid-way when SIGTERM comes, however fast or slow it runs
    gate = threading.Event()
    hub.cdn.faults.add(
        Fault.stall(after_bytes=400_000, until=gate, path_prefix="/blobs/", times=None)
    )
    # a 2 MB file is one stream, which saves its record when bytes arrive or when it is dropped:
    # its stalled answer is dropped after 1 s (--stall-timeout), not the default 30
    cut = {**env, "MDL_STALL_TIMEOUT": "1"}
    first = spawn(zygote, cut, "get", TINY_URI, "-d", str(same), "--connections", "2")
    try:
        wait_for(lambda: saved(same) or first.poll() is not None, what="a partial's record")
        first.send_signal(signal.SIGTERM)
        code, _, err = finish(first)
    finally:
        hub.cdn.faults.clear()
        gate.set()
    assert code == 130, err
    assert any(p.endswith(".part") for p in tree(same)), f"nothing kept to resume: {tree(same)}"
    code, out, err = finish(spawn(zygote, env, "get", TINY_URI, "-d", str(same), "--json"))
    assert code == 0, err
    assert (same / "model.safetensors").read_bytes() == TINY["model.safetensors"]
    assert tree(same) == [".mdl", ".mdl/get.json", "model.safetensors"], (
        "no empty .mdl/{locks,partial,records}"
    )
    assert json.loads(out)["files"][0]["action"] == "resumed", out


def test_a_waiting_pull_names_the_pid_that_holds_the_lock(
    hub: HubServer, env: dict[str, str], zygote: Zygote
) -> None:
    gate, held = hold_blobs(hub)
    first = spawn(zygote, env, "pull", "tiny")
    try:
        wait_for(
            lambda: held.seen > 0 or first.poll() is not None, what="the first pull at the CDN"
        )
        second = spawn(zygote, env, "pull", "tiny")
        wait_for(
            lambda: log_says_waiting(env, second.pid) or second.poll() is not None,
            what="the second waiting",
        )
    finally:
        gate.set()
    (code1, _, err1), (code2, _, err2) = finish(first), finish(second)
    assert (code1, code2) == (0, 0), (err1, err2)
    named = [line for line in err2.splitlines() if str(first.pid) in line]
    assert named, f"the waiting run does not name the holder (pid {first.pid}): {err2}"
    assert any("pull" in line for line in named), (
        f"the waiting run does not name the holder's command: {named}"
    )


def test_a_file_another_run_finished_is_not_held_by_its_big_file(
    hub: HubServer, env: dict[str, str], zygote: Zygote
) -> None:
    big = f"/blobs/{hub.repo('org/mixed').files['big.safetensors'].sha256}"
    gate, held = hold_blobs(hub, big)
    dest = Path(env["MDL_DEST"]) / "mixed"
    first = spawn(zygote, env, "pull", "mixed")
    try:
        wait_for(
            lambda: held.seen > 0 or first.poll() is not None,
            what="the first pull's big file at the CDN",
        )
        # done and recorded: a finished file's lock is released with its record (once a second)
        wait_for(
            lambda: (
                recorded(dest.parent, "mixed", ["small.json", "small.safetensors"])
                or first.poll() is not None
            ),
            what="the small files recorded",
        )
        assert first.poll() is None, finish(first)
        code, out, err = finish(
            spawn(zygote, env, "pull", "mixed", "--lock-timeout", "2", "--json")
        )
    finally:
        gate.set()
    code1, _, err1 = finish(first)
    assert code1 == 0, err1
    assert code in (0, 7), (code, err)
    assert "Traceback" not in err
    actions = {f["path"]: f for f in json.loads(out)["files"]}
    for small in ("small.json", "small.safetensors"):
        assert actions[small]["action"] != "failed", (
            f"{small} waited for the other run's big file: {actions[small]}"
        )
    if code == 7:
        assert (
            actions["big.safetensors"]["action"] == "failed"
            and "lock" in actions["big.safetensors"]["error"]
        )
