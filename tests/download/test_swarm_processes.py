"""A swarm of real processes on one shared folder (issue 78, F and G): ``kill -9`` of a machine
mid-swarm, with a restart (its own claims taken back at once) and without one (the survivors end,
the origin's bytes bounded); and an mdl from git history (the file lease, before the swarm) beside
swarm nodes. Each child is ``mdl pull --fill-mirror`` (this tree's forked from a zygote, the old
tree's ``python -m mdl``); the file has part hashes beside its lock (a range trust, as ``mdl lock``
writes them); parts of 1 MiB in every child (a ``sitecustomize``, or the zygote's preload, lowers
``mdl.partsize.PART`` as the in-process tests do: it is one fact that every mdl of a fleet must
cut alike)."""

from __future__ import annotations

import atexit
import functools
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from runfixtures import HANG, wait_for
from servers import HubServer, hold_after, make_data
from zygote import Forked, Zygote

import mdl
from mdl import api
from mdl.download.session import TERM_VARIABLE
from mdl.lockfile.parts import PartHashes, dump_parts, parts_beside
from mdl.transfer import ranges

MiB = 1 << 20
OLD = "227b73a"  # the commit before the swarm: its mdl fills a mirror under a file's lease
CATALOG = """
[models.tiny]
repo = "org/tiny"
include = ["*.safetensors"]
"""
SMALL_PARTS = "import mdl.partsize\nmdl.partsize.PART = 1 << 20\n"
TREE = Path(mdl.__file__).resolve().parents[1]


@functools.cache
def small_parts() -> Zygote:
    """A zygote of this tree whose children cut at 1 MiB parts (SMALL_PARTS run after its
    preloads: PART is read at each cut), made once per worker: a node without an interpreter's
    start and imports each."""
    folder = Path(tempfile.mkdtemp(prefix="swarm"))
    (folder / "swarm_small_parts.py").write_text(SMALL_PARTS)
    zygote = Zygote(preload=["swarm_small_parts"], cwd=folder)  # (its folder on its sys.path)
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    atexit.register(zygote.__exit__)
    return zygote


pytestmark = pytest.mark.slow


class Machines:
    """Child processes pulling one catalog (with part hashes beside its lock) into one folder."""

    def __init__(self, hub: HubServer, tmp_path: Path, data: bytes) -> None:
        self.hub, self.tmp, self.data = hub, tmp_path, data
        self.root = tmp_path / "shared"
        self.root.mkdir()
        self.started: list[subprocess.Popen[str] | Forked] = []
        self.site = tmp_path / "site"
        self.site.mkdir()
        (self.site / "sitecustomize.py").write_text(SMALL_PARTS)
        hub.add_repo("org/tiny", {"model.safetensors": data})
        self.catalog = tmp_path / "catalog.toml"
        self.catalog.write_text(CATALOG)

    def lock(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """``catalog.lock`` pins the file; its part hashes (1 MiB parts) beside it."""
        monkeypatch.setenv("HF_ENDPOINT", self.hub.url)
        monkeypatch.setenv("MDL_LOG_FILE", str(self.tmp / "lock.log"))
        assert api.lock(all=True, catalog=self.catalog, dest=self.tmp / "nothing").ok
        sha = hashlib.sha256(self.data).hexdigest()
        digests = tuple(
            ranges.digest(self.data[s : s + MiB]) for s in range(0, len(self.data), MiB)
        )
        sidecar = parts_beside(self.catalog.with_suffix(".lock"))
        sidecar.write_text(dump_parts({sha: PartHashes(len(self.data), MiB, digests)}))

    def start(
        self, name: str, *, term: str, tree: Path = TREE, connections: int = 4, real: bool = False
    ) -> subprocess.Popen[str] | Forked:
        env = {
            **os.environ,
            "PYTHONPATH": f"{tree}{os.pathsep}{self.site}",
            "HF_ENDPOINT": self.hub.url,
            "MDL_LOG_FILE": str(self.log_path(name)),
            "MDL_CONNECTIONS": str(connections),
            TERM_VARIABLE: term,
        }
        command = ["pull", "--all", "--catalog", str(self.catalog), "--dest", str(self.dest(name))]
        template = f"file://{self.root}/{{model}}/{{path}}"
        fill = ["--mirror", template, "--fill-mirror", "--json", "--no-progress"]
        process: subprocess.Popen[str] | Forked
        # this tree's mdl, forked, its part size lowered as sitecustomize does (``real``: started)
        if tree == TREE and not real:
            out, err = self.tmp / f"{name}.out", self.tmp / f"{name}.err"
            process = small_parts().spawn(
                [*command, *fill], env=env, cwd=self.tmp, stdout=out, stderr=err
            )
        else:
            process = subprocess.Popen(
                [sys.executable, "-m", "mdl", *command, *fill],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                cwd=self.tmp,
            )
        self.started.append(process)
        return process

    def dest(self, name: str) -> Path:
        return self.tmp / name.split(".")[0]

    def log_path(self, name: str) -> Path:
        return self.tmp / f"{name}.log"

    def log(self, name: str) -> str:
        path = self.log_path(name)
        return path.read_text(errors="replace") if path.exists() else ""

    def ended(self, process: subprocess.Popen[str] | Forked, name: str) -> dict[str, object]:
        """The child's one file, installed and verified: its ``--json`` line."""
        out, err = process.communicate(timeout=HANG)
        assert process.returncode == 0, err
        assert (self.dest(name) / "tiny" / "model.safetensors").read_bytes() == self.data
        (line,) = json.loads(out)["files"]
        return dict(line)

    def token(self, name: str) -> str | None:
        """The run's swarm token, kept beside its partial (``<file>.lease``)."""
        for path in self.dest(name).rglob("*.lease"):
            try:
                return path.read_text().strip() or None
            except OSError:
                continue
        return None

    def claims_of(self, token: str) -> list[Path]:
        """The claims in the store whose body carries ``token``."""
        held = []
        for path in (self.root / ".mdl" / "claims").rglob("*"):
            try:
                if path.is_file() and json.loads(path.read_bytes()).get("token") == token:
                    held.append(path)
            except (OSError, ValueError, AttributeError):
                continue
        return held

    def on_disk(self, name: str) -> int:
        """The bytes its resume record claims (what a restart resumes on)."""
        for record in self.dest(name).rglob("*.part.json"):
            try:
                return sum(done for _, _, done in json.loads(record.read_text())["pieces"])
            except (OSError, ValueError, KeyError, TypeError):
                continue
        return 0

    def published(self) -> int:
        """Parts of the version's own set in the store."""
        folder = self.root / ".mdl" / "parts"
        return sum(1 for p in folder.rglob("0*") if p.is_file()) if folder.exists() else 0

    def mirror_holds_the_file(self) -> None:
        assert (self.root / "tiny" / "model.safetensors").read_bytes() == self.data

    def origin_bytes(self) -> int:
        return self.hub.cdn.log.body_bytes()


@pytest.fixture
def machines(hub: HubServer, tmp_path: Path) -> Iterator[list[Machines]]:
    made: list[Machines] = []
    yield made
    for fleet in made:  # a failed test leaves no child behind
        for process in fleet.started:
            if process.poll() is None:
                process.kill()
                process.wait()


def kill(process: subprocess.Popen[str] | Forked) -> None:
    process.send_signal(signal.SIGKILL)
    process.wait(HANG)


def test_a_machine_killed_mid_swarm_and_restarted_takes_its_claims_back_at_once(
    hub: HubServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    machines: list[Machines],
    request: pytest.FixtureRequest,
) -> None:
    """One machine claims every part of a 4-part file (4 streams) and is killed -9 with bytes of
    them on disk. Its restart and two newcomers start together; the claims are live for an hour
    and the newcomers have timed no part (their end game would wait a term): the restart, whose
    token is beside its partial, takes its claims back at once, resumes on its partial and
    publishes; everyone ends with the file."""
    data = make_data(4 * MiB - 5, seed=787)
    fleet = Machines(hub, tmp_path, data)
    machines.append(fleet)
    fleet.lock(monkeypatch)
    # Each answer (a part) held at half of it until the kill: killed with half the file on its
    # disk, no byte in flight past it, however busy the machine. (Throttled instead, the bytes
    # sent between the quarter seen on its disk and the kill were the machine's pace.)
    held = hold_after(hub.cdn, MiB // 2)
    request.addfinalizer(held.set)
    first = fleet.start("m0", term="3600")
    wait_for(
        lambda: (t := fleet.token("m0")) is not None and len(fleet.claims_of(t)) == 4,
        what="the first machine claims every part",
    )
    token = fleet.token("m0")
    assert token is not None
    wait_for(lambda: fleet.on_disk("m0") >= MiB, what="a quarter of the file on its disk")
    kill(first)
    # the dead run's answers stay held till the test ends: nothing more is counted as sent to
    # sockets no one reads (released, the kernel took a part's rest for them)
    hub.cdn.faults.clear()
    assert len(fleet.claims_of(token)) == 4, "the killed run's claims are live"
    hub.cdn.throttle_bps = MiB  # the rest: a part in a second
    again = fleet.start("m0.again", term="3600")
    others = [fleet.start(name, term="3600") for name in ("m1", "m2")]
    lines = [fleet.ended(again, "m0.again")] + [
        fleet.ended(p, n) for p, n in zip(others, ("m1", "m2"), strict=True)
    ]
    fleet.mirror_holds_the_file()
    took = [
        line
        for line in fleet.log("m0.again").splitlines()
        if "took over lease" in line and "/.mdl/claims/" in line
    ]
    assert len(took) == 4, took  # its own four claims, each at once (live for an hour)
    for name in ("m1", "m2"):
        assert "claimed by another machine" not in fleet.log(name), name
    # the file once, the killed run's bytes in flight past its record, nothing fetched twice
    assert fleet.origin_bytes() <= len(data) + 4 * MiB // 2, (fleet.origin_bytes(), lines)
    print(
        fleet.origin_bytes() / len(data),
        [(x.get("origin_parts"), x.get("peer_parts")) for x in lines],
    )


def test_a_machine_killed_mid_swarm_costs_the_survivors_only_its_claimed_parts(
    hub: HubServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, machines: list[Machines]
) -> None:
    """Three machines swarm a 64-part file; one is killed -9 a quarter in and not restarted. The
    survivors end (its claims past the end game's bound, or lapsed: a term of 5 s), and the
    origin sends at most 1.15x the file and a part."""
    data = make_data(64 * MiB + 3, seed=788)
    fleet = Machines(hub, tmp_path, data)
    machines.append(fleet)
    fleet.lock(monkeypatch)
    hub.cdn.throttle_bps = MiB  # per stream
    names = ("m0", "m1", "m2")
    started = [fleet.start(name, term="5") for name in names]

    def a_quarter_in() -> bool:
        token = fleet.token("m0")
        return (
            token is not None
            and bool(fleet.claims_of(token))
            and fleet.published() >= 16
            and fleet.on_disk("m0") > 0
        )

    wait_for(a_quarter_in, what="a quarter of the parts published, the first holding claims")
    kill(started[0])
    lines = [fleet.ended(p, n) for p, n in zip(started[1:], names[1:], strict=True)]
    fleet.mirror_holds_the_file()
    assert fleet.origin_bytes() <= 1.15 * len(data) + MiB, (fleet.origin_bytes(), lines)
    print(
        fleet.origin_bytes() / len(data),
        [(x.get("origin_parts"), x.get("peer_parts")) for x in lines],
    )


def old_tree(tmp_path: Path) -> Path:
    """mdl as it was before the swarm (git history: the file lease alone)."""
    tree = tmp_path / "old"
    tree.mkdir()
    if shutil.which("git") is None or shutil.which("tar") is None:
        pytest.skip("git and tar are not installed: no old tree to run")
    done = subprocess.run(["git", "-C", str(TREE), "archive", OLD], capture_output=True)
    if done.returncode != 0:  # not a clone, or one without this history (--depth)
        pytest.skip(f"no commit {OLD} here: {done.stderr.decode(errors='replace').strip()}")
    archive = done.stdout
    subprocess.run(["tar", "-x", "-C", str(tree)], input=archive, check=True)
    assert (tree / "mdl" / "download" / "_fill.py").is_file()
    assert not (tree / "mdl" / "download" / "_swarm.py").exists()
    return tree


def test_an_old_node_beside_swarm_nodes_costs_at_most_one_more_fetch(
    hub: HubServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, machines: list[Machines]
) -> None:
    """An mdl from before the swarm (file leases) and two swarm nodes on one folder at once: no
    wrong bytes, no stall (all end), and the origin sends the file at most twice (the old node's
    fetch under its lease, the swarm's between them; and the end game's parts)."""
    data = make_data(24 * MiB + 3, seed=789)
    fleet = Machines(hub, tmp_path, data)
    machines.append(fleet)
    fleet.lock(monkeypatch)
    tree = old_tree(tmp_path)
    hub.cdn.throttle_bps = 4 * MiB
    old = fleet.start("old", term="5", tree=tree)
    # real starts, as the old node's: the three begin together (forked nodes would begin seconds
    # ahead of it on a loaded machine, a race the bound was not measured on)
    new = [fleet.start(name, term="5", real=True) for name in ("m1", "m2")]
    lines = [fleet.ended(old, "old")] + [
        fleet.ended(p, n) for p, n in zip(new, ("m1", "m2"), strict=True)
    ]
    fleet.mirror_holds_the_file()
    # the old node's fetch and the swarm's (2.00x measured); two parts of slack for the swarm's
    # end game, should a loaded machine's claim outlast its bound
    assert fleet.origin_bytes() <= 2 * len(data) + 2 * MiB, (fleet.origin_bytes(), lines)
    print(fleet.origin_bytes() / len(data), [line.get("fill") for line in lines])
