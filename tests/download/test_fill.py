"""--fill-mirror against real stores: a shared folder (``file://``) as the fleet's mirror and the
Hub stand-in as the origin. The first machine fills the mirror under a lease; the others read it
from there, waiting on a live lease instead of going to the Hub; a lapsed lease is taken over; a
store that ignores conditional writes is read as before, with one warning."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from runfixtures import HANG, wait_for
from s3proxy import s3_proxy
from s3server import S3, s3, s3_server  # noqa: F401
from servers import Fault, HubServer, make_data
from zygote import forked_mdl

import mdl
from mdl.buckets.names import Generation, namespace
from mdl.buckets.protocol import Seen, Writer
from mdl.buckets.registry import STORES
from mdl.catalog.load import parse_catalog
from mdl.catalog.settings import build_settings
from mdl.catalog.specs import CatalogSettings
from mdl.cli.summary import summary_line
from mdl.download.puller import pull_models
from mdl.download.session import TERM_VARIABLE
from mdl.errors import AuthError
from mdl.progress import Event, Progress
from mdl.report import RunReport, file_line
from mdl.setting import Overrides

WEIGHTS = make_data(300_003, seed=52)  # LFS on the Hub: known by sha256
CONFIG = b'{"model_type": "bert", "hidden_size": 8}\n'  # known by its git blob id
FILES = {"model.safetensors": WEIGHTS, "config.json": CONFIG}
CATALOG = """
[models.tiny]
repo = "org/tiny"
include = ["*.json", "*.safetensors"]
"""
# a live lease of "another machine" outlives any wait of the test (by the store's clock)
LONG_TERM = {TERM_VARIABLE: "3600"}
# the log's line when a pull waits on another machine's lease on the weights
WAITING_ON_WEIGHTS = "tiny/model.safetensors: another machine is filling mirror"


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def tiny(hub: HubServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> HubServer:
    hub.add_repo("org/tiny", {**FILES, "README.md": b"# tiny\n"})
    monkeypatch.setenv("MDL_LOG_FILE", str(tmp_path / "mdl.log"))
    return hub


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """The shared folder: the fleet's mirror."""
    folder = tmp_path / "shared"
    folder.mkdir()
    return folder


def template(root: Path) -> str:
    return f"file://{root}/{{model}}/{{path}}"


def object_uri(root: Path, path: str) -> str:
    return f"file://{root}/tiny/{path}"


def writer() -> Writer:
    store = STORES["file"]
    return store.writer(endpoint=None, secrets=None)


class Waits(Progress):
    """Remembers the files that waited (on another machine's lease)."""

    def __init__(self) -> None:
        self.keys: dict[str, str] = {}
        self.started = threading.Event()

    def emit(self, event: Event) -> None:
        if event.kind == "waiting":
            self.keys[event.key] = event.message
            self.started.set()


def pull(
    hub: HubServer,
    dest: Path,
    root: Path,
    *,
    env: dict[str, str] | None = None,
    progress: Progress | None = None,
    fill: bool = True,
    mirror: str | None = None,
) -> RunReport:
    environ = {"HF_ENDPOINT": hub.url, **(env or {})}
    catalog = CatalogSettings(mirrors=(mirror or template(root),))
    settings = build_settings(
        Overrides(fill_mirror=fill), environ=environ, dest=dest, catalog=catalog
    )
    specs = parse_catalog(CATALOG).models
    return pull_models(specs, settings, progress=progress or Progress())


def origin_bytes(hub: HubServer) -> int:
    """File bytes the origin sent: the Hub's resolve answers and its CDN's."""
    resolved = [r for r in hub.log.records(method="GET") if "/resolve/" in r.url_path]
    return sum(r.bytes_sent for r in resolved if r.status == 200) + hub.cdn.log.body_bytes()


def clear(hub: HubServer) -> None:
    hub.log.clear()
    hub.cdn.log.clear()


def by_path(report: RunReport) -> dict[str | None, Any]:
    return {f.path: f for f in report.files}


def leases(root: Path) -> list[Path]:
    """The leases not released in the folder (mdl's namespace, ``<root>/.mdl/leases/``)."""
    found = [p for p in (root / ".mdl" / "leases").rglob("*") if p.name.isdigit()]
    highest = {p.parent: p for p in sorted(found, key=lambda p: int(p.name))}  # the lease
    return [p for p in highest.values() if not json.loads(p.read_bytes()).get("released")]


def written(root: Path) -> list[Path]:
    """The objects, leases and probes in the folder (not the folder store's clock)."""
    return [p for p in root.rglob("*") if p.is_file() and p.name != ".mdl-clock"]


def assert_filled(root: Path) -> None:
    for path, data in FILES.items():
        assert (root / "tiny" / path).read_bytes() == data, path
    assert leases(root) == []
    # the probe's scratch object was removed; nothing of mdl's beside the model's files
    assert not [p for p in (root / ".mdl").iterdir() if p.name.startswith("probe-")]
    assert sorted(p.name for p in (root / "tiny").iterdir()) == sorted(FILES)


# == the first machine fills, the next reads ============================================================


def test_the_first_pull_fills_the_mirror_and_the_next_machine_reads_it(
    tiny: HubServer, root: Path, tmp_path: Path
) -> None:
    first = pull(tiny, tmp_path / "a", root)
    assert first.exit_code == 0, first.files
    assert_filled(root)
    for path in FILES:  # each object carries mdl's mark: prune --mirror may remove it one day
        seen = writer().owned(object_uri(root, path), root=f"file://{root}/")
        assert seen is not None and seen.marked, path
    # the Hub served each file's bytes once
    assert origin_bytes(tiny) == len(WEIGHTS) + len(CONFIG)
    for path, data in FILES.items():
        outcome = by_path(first)[path]
        assert outcome.action == "downloaded" and outcome.mirror is None, outcome
        assert outcome.warnings == (), outcome
        assert outcome.to_json()["fill"] == "filled" and " fill=filled " in file_line(outcome)
        assert (tmp_path / "a" / "tiny" / path).read_bytes() == data

    clear(tiny)
    second = pull(tiny, tmp_path / "b", root)
    assert second.exit_code == 0, second.files
    assert origin_bytes(tiny) == 0
    for path, data in FILES.items():
        outcome = by_path(second)[path]
        assert outcome.mirror is not None and outcome.verified, outcome
        assert outcome.warnings == (), outcome
        assert (tmp_path / "b" / "tiny" / path).read_bytes() == data


def test_a_fill_of_the_content_layout_keeps_every_version(
    tiny: HubServer, root: Path, tmp_path: Path
) -> None:
    """The fleet fills the template publish writes (``{model}/{sha256}``): a new version's weights
    go to their own object and the old version's stay as they were, for the nodes still on it and
    a rollback; the next machine on the new version reads it from the mirror alone."""
    content = f"file://{root}/{{model}}/{{sha256}}"
    first = pull(tiny, tmp_path / "a", root, mirror=content)
    assert first.exit_code == 0, first.files
    old = root / "tiny" / sha(WEIGHTS)
    assert old.read_bytes() == WEIGHTS
    before = old.stat()
    new_weights = make_data(300_007, seed=53)
    tiny.commit("org/tiny", {"model.safetensors": new_weights})
    second = pull(tiny, tmp_path / "b", root, mirror=content)
    assert second.exit_code == 0, second.files
    assert by_path(second)["model.safetensors"].to_json()["fill"] == "filled"
    assert (root / "tiny" / sha(new_weights)).read_bytes() == new_weights
    after = old.stat()
    assert old.read_bytes() == WEIGHTS and (after.st_ino, after.st_mtime_ns) == (
        before.st_ino,
        before.st_mtime_ns,
    ), "the old version's object is never touched"
    clear(tiny)
    third = pull(tiny, tmp_path / "c", root, mirror=content)
    assert third.exit_code == 0, third.files
    weights = by_path(third)["model.safetensors"]
    assert weights.mirror is not None and weights.verified, weights
    assert (tmp_path / "c" / "tiny" / "model.safetensors").read_bytes() == new_weights


def test_without_the_setting_the_mirror_is_only_read(
    tiny: HubServer, root: Path, tmp_path: Path
) -> None:
    report = pull(tiny, tmp_path / "a", root, fill=False)
    assert report.exit_code == 0
    assert written(root) == []
    assert origin_bytes(tiny) == len(WEIGHTS) + len(CONFIG)


def test_a_mirror_object_proved_wrong_is_replaced_and_the_next_machine_reads_it(
    tiny: HubServer, root: Path, tmp_path: Path
) -> None:
    """Today a poisoned object counted as present: every machine went to the origin forever. The
    filler that proved it wrong replaces it (on the version it saw) with the origin's verified
    bytes; the next machine reads it from the mirror."""
    wrong = root / "tiny" / "model.safetensors"
    wrong.parent.mkdir(parents=True)
    wrong.write_bytes(b"x" * len(WEIGHTS))
    report = pull(tiny, tmp_path / "a", root)
    assert report.exit_code == 0
    outcome = by_path(report)["model.safetensors"]
    assert outcome.mirror is None and any("mirror" in w for w in outcome.warnings), outcome
    assert outcome.fill == "filled", outcome
    assert (tmp_path / "a" / "tiny" / "model.safetensors").read_bytes() == WEIGHTS
    assert_filled(root)
    clear(tiny)
    second = pull(tiny, tmp_path / "b", root)
    assert second.exit_code == 0 and origin_bytes(tiny) == 0
    assert all(f.mirror is not None and f.warnings == () for f in second.files), second.files


def test_a_wrong_object_changed_since_it_was_seen_is_replaced_only_when_proved_wrong(
    tiny: HubServer, root: Path, tmp_path: Path
) -> None:
    """The replacement is conditional on the version seen: another writer's newer object is
    judged by its own bytes before anything is replaced; the file's bytes (another machine filled
    it) stay as they are (the same inode)."""
    wrong = root / "tiny" / "model.safetensors"
    wrong.parent.mkdir(parents=True)
    wrong.write_bytes(b"x" * len(WEIGHTS))
    inode: list[int] = []

    def rewritten() -> None:  # while we fetch from the origin, another machine fills it
        wrong.unlink()
        wrong.write_bytes(WEIGHTS)
        inode.append(wrong.stat().st_ino)

    tiny.cdn.faults.add(Fault.call(rewritten))
    report = pull(tiny, tmp_path / "a", root)
    assert report.exit_code == 0
    assert (tmp_path / "a" / "tiny" / "model.safetensors").read_bytes() == WEIGHTS
    assert wrong.read_bytes() == WEIGHTS and [wrong.stat().st_ino] == inode
    assert not report.files[0].warnings, report.files[0].warnings
    assert leases(root) == []


# == another machine's lease ==============================================================================


def lease_folder(root: Path, path: str) -> Path:
    return root / ".mdl" / "leases" / "tiny" / path


def place_lease(root: Path, path: str, body: bytes = b'{"holder": "other:1:x"}') -> Path:
    """A lease of "another machine" on the object ``path``, written as any holder writes one."""
    root_uri = namespace(template(root))
    assert root_uri is not None
    seen = writer().create(Generation.of(root_uri, object_uri(root, path)).uri, body)
    assert seen is not None
    return lease_folder(root, path) / "1"


def test_a_live_lease_makes_the_pull_wait_then_read_the_mirror(
    tiny: HubServer, root: Path, tmp_path: Path
) -> None:
    lease = place_lease(root, "model.safetensors")
    progress, reports = Waits(), []
    thread = threading.Thread(
        target=lambda: reports.append(
            pull(tiny, tmp_path / "a", root, env=LONG_TERM, progress=progress)
        )
    )
    thread.start()
    try:
        assert progress.started.wait(HANG), "the pull did not wait on the lease"
        assert set(progress.keys) == {"tiny/model.safetensors"}
        # the other machine finishes: its upload, then its lease removed
        local = tmp_path / "other-machine.bin"
        local.write_bytes(WEIGHTS)
        uri = object_uri(root, "model.safetensors")
        assert writer().upload(
            uri, local, size=len(WEIGHTS), sha256=sha(WEIGHTS), root=f"file://{root}/"
        )
        lease.unlink()
    finally:
        thread.join(HANG)
    (report,) = reports
    assert report.exit_code == 0, report.files
    outcome = by_path(report)["model.safetensors"]
    assert outcome.mirror is not None and outcome.verified and outcome.waited > 0, outcome
    assert outcome.to_json()["waited"] == round(outcome.waited, 3)
    assert outcome.to_json()["fill"] == "read"
    assert "; mirror: 1 filled, 1 read (waited" in summary_line(
        report.files, verb="pulled", seconds=1, waited=report.waited
    )
    assert report.waited >= outcome.waited  # the run's wall time waiting: one file's, here
    assert f" waited={outcome.waited:.1f} " in file_line(outcome)
    assert (tmp_path / "a" / "tiny" / "model.safetensors").read_bytes() == WEIGHTS
    # only the unleased file came from the Hub
    assert origin_bytes(tiny) == len(CONFIG)
    assert_filled(root)


def test_a_stale_lease_is_taken_over(tiny: HubServer, root: Path, tmp_path: Path) -> None:
    lease = place_lease(root, "model.safetensors")
    an_hour_ago = time.time() - 3600
    os.utime(lease, (an_hour_ago, an_hour_ago))
    report = pull(tiny, tmp_path / "a", root)
    assert report.exit_code == 0, report.files
    assert origin_bytes(tiny) == len(WEIGHTS) + len(CONFIG)
    assert_filled(root)
    outcome = by_path(report)["model.safetensors"]
    assert outcome.waited == 0 and outcome.warnings == (), outcome


def test_a_lease_taken_over_mid_fetch_is_left_to_its_new_holder_and_the_object_still_filled(
    tiny: HubServer, root: Path, tmp_path: Path
) -> None:
    """Our lease lapsed (a long stall, say) and another machine took it while we fetched: we finish
    for ourselves, the conditional upload still fills the mirror, and the new holder's lease is
    never removed by us."""
    ours = lease_folder(root, "model.safetensors") / "1"
    lease = lease_folder(root, "model.safetensors") / "2"

    def taken_over() -> None:
        assert ours.exists()  # ours, while we fetch from the Hub
        assert writer().create(f"file://{lease}", b'{"holder": "other:1:x"}') is not None

    tiny.cdn.faults.add(Fault.call(taken_over))
    report = pull(tiny, tmp_path / "a", root)
    assert report.exit_code == 0, report.files
    assert (root / "tiny" / "model.safetensors").read_bytes() == WEIGHTS
    assert lease.read_bytes() == b'{"holder": "other:1:x"}'
    assert by_path(report)["model.safetensors"].warnings == ()


@pytest.mark.slow
def test_a_lease_held_without_progress_is_given_up_on_and_said(
    tiny: HubServer, root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Today a lease that stays live holds the fleet forever (a body's ``"term": 3600`` was even
    believed). A holder that publishes no part for a few terms is given up on: the file comes
    from the origin, said in one warning naming it and why, and in --json. (The live term is an
    hour; the bound is made short by counting terms, not by any clock.)"""
    monkeypatch.setattr("mdl.buckets.lease.STALL_TERMS", 0.0002)  # 0.7 s of an hour's term
    place_lease(root, "model.safetensors", b'{"holder": "other:1:x", "done": 0, "term": 3600}')
    report = pull(tiny, tmp_path / "a", root, env=LONG_TERM)
    assert report.exit_code == 0, report.files
    outcome = by_path(report)["model.safetensors"]
    (said,) = outcome.warnings
    assert said.startswith(
        f"tiny/model.safetensors: gave up waiting on mirror {object_uri(root, 'model.safetensors')}"
    )
    assert "no part of it" in said and said.endswith("fetching it from the origin")
    assert outcome.fill == "from origin" and outcome.to_json()["fill"] == "from origin"
    assert outcome.waited > 0
    assert (tmp_path / "a" / "tiny" / "model.safetensors").read_bytes() == WEIGHTS
    line = summary_line(report.files, verb="pulled", seconds=1)
    assert "; mirror: " in line and "1 from origin" in line


@pytest.mark.parametrize("kind", ["fifo", "dir", "dangling"])
def test_anything_at_a_lease_name_still_fills(
    tiny: HubServer, root: Path, tmp_path: Path, kind: str
) -> None:
    """Today a FIFO or a dangling link at the lease's name looped forever, a folder was exit 1."""
    folder = lease_folder(root, "model.safetensors")
    folder.mkdir(parents=True)
    if kind == "fifo":
        os.mkfifo(folder / "1")
    elif kind == "dir":
        (folder / "1").mkdir()
    else:
        (folder / "1").symlink_to(tmp_path / "nowhere")
    report = pull(tiny, tmp_path / "a", root)
    assert report.exit_code == 0, report.files
    assert (root / "tiny" / "model.safetensors").read_bytes() == WEIGHTS
    assert by_path(report)["model.safetensors"].warnings == ()


def test_a_model_with_a_file_named_like_an_old_lease_fills(
    hub: HubServer, root: Path, tmp_path: Path
) -> None:
    """Today ``w.bin`` and ``w.bin.mdl-lease/x.bin`` in one model broke every fill: mdl's objects
    are in a namespace of their own now."""
    files = {"w.bin": b"w" * 1000, "w.bin.mdl-lease/x.bin": b"x" * 1000}
    hub.add_repo("org/odd", files)
    catalog = CatalogSettings(mirrors=(template(root),))
    settings = build_settings(
        Overrides(fill_mirror=True),
        environ={"HF_ENDPOINT": hub.url},
        dest=tmp_path / "a",
        catalog=catalog,
    )
    specs = parse_catalog('[models.odd]\nrepo = "org/odd"\n').models
    report = pull_models(specs, settings, progress=Progress())
    assert report.exit_code == 0, report.files
    for path, data in files.items():
        assert (root / "odd" / path).read_bytes() == data
        assert (tmp_path / "a" / "odd" / path).read_bytes() == data
    assert all(f.fill == "filled" for f in report.files), report.files


def test_a_lock_another_process_holds_stalls_no_fill(
    tiny: HubServer, root: Path, tmp_path: Path, processes: list[subprocess.Popen[str]]
) -> None:
    """Today ``fcntl.lockf`` on ``<share>/.mdl-lock`` waited forever in the probe: mdl takes no
    lock in the folder now."""
    script = "import fcntl, os, sys\n"
    for held in (root / ".mdl-lock", root / "tiny" / ".mdl-lock", root / ".mdl" / ".mdl-lock"):
        held.parent.mkdir(parents=True, exist_ok=True)
        script += f"fd = os.open({str(held)!r}, os.O_RDWR | os.O_CREAT)\n"
        script += "fcntl.lockf(fd, fcntl.LOCK_EX)\n"
    holder = subprocess.Popen(
        [sys.executable, "-c", script + "print('held', flush=True)\nsys.stdin.read()\n"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    processes.append(holder)
    assert holder.stdout is not None and holder.stdout.readline() == "held\n"
    report = pull(tiny, tmp_path / "a", root)
    assert report.exit_code == 0, report.files
    assert (root / "tiny" / "model.safetensors").read_bytes() == WEIGHTS


# == a store that cannot hold a lease =====================================================================


class Careless:
    """A folder whose creates ignore the condition, as a store without conditional writes: both of
    two conflicting creates succeed, the second replacing the first."""

    def __init__(self, inner: Writer) -> None:
        self.inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def create(self, uri: str, data: bytes) -> Seen | None:
        if self.inner.head(uri) is not None:
            self.inner.delete(uri)
        return self.inner.create(uri, data)


def test_a_store_that_ignores_conditional_writes_is_read_as_before_with_one_warning(
    tiny: HubServer, root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = STORES["file"]
    real = store.writer
    monkeypatch.setattr(store, "writer", lambda **kw: Careless(real(**kw)))
    report = pull(tiny, tmp_path / "a", root)
    assert report.exit_code == 0, report.files
    said = [w for f in report.files for w in f.warnings]
    probe = (
        f"mirror {template(root)} ignores exclusive creates or does not keep a file's version"
        " (inode, mtime, size); not filling it"
    )
    # said once for the run; each file then missing from the mirror as without --fill-mirror
    assert said.count(probe) == 1
    assert sorted(w for w in said if w != probe) == sorted(
        f"tiny/{path}: mirror {object_uri(root, path)} failed (not in the folder); trying the next"
        " source"
        for path in FILES
    )
    assert origin_bytes(tiny) == len(WEIGHTS) + len(CONFIG)
    # nothing written: no lease, no object, no scratch
    assert written(root) == []
    for path, data in FILES.items():
        assert (tmp_path / "a" / "tiny" / path).read_bytes() == data


class Denied(Careless):
    """A folder this machine may read, not write (as keys without s3:PutObject)."""

    def create(self, uri: str, data: bytes) -> Seen | None:
        raise AuthError(f"{uri}: AccessDenied")


def test_a_store_this_machine_cannot_write_is_read_as_before_with_one_warning(
    tiny: HubServer, root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = STORES["file"]
    real = store.writer
    monkeypatch.setattr(store, "writer", lambda **kw: Denied(real(**kw)))
    first = pull(tiny, tmp_path / "a", root, fill=False)  # another machine's files, published
    for path in FILES:
        (root / "tiny" / path).parent.mkdir(parents=True, exist_ok=True)
        (root / "tiny" / path).write_bytes((tmp_path / "a" / "tiny" / path).read_bytes())
    assert first.exit_code == 0
    clear(tiny)
    report = pull(tiny, tmp_path / "b", root)
    assert report.exit_code == 0, report.files
    said = [w for f in report.files for w in f.warnings]
    assert len(said) == 1 and said[0].startswith(f"mirror {template(root)} cannot be written here")
    assert said[0].endswith("; not filling it")
    assert origin_bytes(tiny) == 0  # read from the mirror all the same
    assert all(f.mirror is not None for f in report.files)


def test_with_only_an_http_mirror_there_is_nothing_to_fill(tiny: HubServer, tmp_path: Path) -> None:
    settings = build_settings(
        Overrides(fill_mirror=True, mirrors=["http://127.0.0.1:9/{model}/{path}"]),
        environ={"HF_ENDPOINT": tiny.url},
        dest=tmp_path / "a",
    )
    report = pull_models(parse_catalog(CATALOG).models, settings, progress=Progress())
    assert report.exit_code == 0
    said = [w for f in report.files for w in f.warnings]
    assert "no s3:// or file:// mirror to fill (http(s) mirrors are read-only)" in said


# == the setting ==========================================================================================


def test_fill_mirror_is_set_by_its_flag_variable_or_catalog_key() -> None:
    def fill(flags: Overrides = Overrides(), **kw: Any) -> bool:
        return build_settings(flags, dest=Path("d"), **{"environ": {}, **kw}).fill_mirror

    assert fill() is False
    assert fill(Overrides(fill_mirror=True)) is True
    assert fill(environ={"MDL_FILL_MIRROR": "yes"}) is True
    on = parse_catalog("[settings]\nfill_mirror = true\n").settings
    assert fill(catalog=on) is True
    assert fill(environ={"MDL_FILL_MIRROR": "0"}, catalog=on) is False


# == whole processes ======================================================================================


def child_env(hub: HubServer, tmp_path: Path, **more: str) -> dict[str, str]:
    """The environment of an ``mdl`` process: this tree's mdl, the Hub stand-in, its own log."""
    tree = str(Path(mdl.__file__).resolve().parents[1])
    return {
        **os.environ,
        "PYTHONPATH": tree,
        "HF_ENDPOINT": hub.url,
        "MDL_LOG_FILE": str(tmp_path / "mdl.log"),
        **more,
    }


def mdl_process(
    catalog: Path, dest: Path, root: Path, env: dict[str, str]
) -> subprocess.Popen[str]:
    command = ["pull", "--all", "--catalog", str(catalog), "--dest", str(dest)]
    fill = ["--mirror", template(root), "--fill-mirror", "--json", "--no-progress"]
    return subprocess.Popen(
        [forked_mdl(), *command, *fill],  # forked from the worker's zygote (tests/zygote.py)
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []
    yield started
    for process in started:  # a failed test leaves none behind
        if process.poll() is None:
            process.kill()
            process.wait()


@pytest.mark.slow
def test_two_processes_at_once_fetch_each_file_from_the_hub_once(
    tiny: HubServer, root: Path, tmp_path: Path, processes: list[subprocess.Popen[str]]
) -> None:
    """The first to reach the Hub's CDN for the weights is held there until the other waits on its
    lease: then both go on, and the waiter reads the weights from the mirror."""
    catalog = tmp_path / "catalog.toml"
    catalog.write_text(CATALOG)
    env = child_env(tiny, tmp_path)
    held = threading.Event()
    tiny.cdn.faults.add(Fault.stall(after_bytes=1000, until=held, resume=True))
    processes += [mdl_process(catalog, tmp_path / f"m{i}", root, env) for i in (1, 2)]
    log = tmp_path / "mdl.log"
    try:
        wait_for(
            lambda: log.exists() and WAITING_ON_WEIGHTS in log.read_text(),
            what="one process waiting on the other's lease",
        )
    finally:
        held.set()
    waited = []
    for process in processes:
        out, err = process.communicate(timeout=HANG)
        assert process.returncode == 0, err
        files = {f["path"]: f for f in json.loads(out)["files"]}
        assert {p: f["verified"] for p, f in files.items()} == dict.fromkeys(FILES, True)
        waited += [f for f in files.values() if "waited" in f]
    # the waiter's weights (and its config too, if it came while the other held that lease), each
    # read from the mirror
    assert "model.safetensors" in {f["path"] for f in waited}
    assert all(f.get("mirror") for f in waited), waited
    for i in (1, 2):
        for path, data in FILES.items():
            assert (tmp_path / f"m{i}" / "tiny" / path).read_bytes() == data
    assert origin_bytes(tiny) == len(WEIGHTS) + len(CONFIG)
    assert_filled(root)


@pytest.mark.slow
def test_ctrl_c_stops_a_wait_on_a_lease_at_once(
    tiny: HubServer, root: Path, tmp_path: Path, processes: list[subprocess.Popen[str]]
) -> None:
    lease = place_lease(root, "model.safetensors")
    catalog = tmp_path / "catalog.toml"
    catalog.write_text(CATALOG)
    process = mdl_process(catalog, tmp_path / "a", root, child_env(tiny, tmp_path, **LONG_TERM))
    processes.append(process)
    log = tmp_path / "mdl.log"
    wait_for(
        lambda: log.exists() and WAITING_ON_WEIGHTS in log.read_text(),
        what="the pull waiting on the lease",
    )
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=HANG)
    assert process.returncode == 130, err
    assert lease.exists()  # another machine's: never ours to remove
    assert not (root / "tiny" / "model.safetensors").exists()


# == an S3 bucket (moto) ==================================================================================

S3_TEMPLATE = "s3://fleet/hub/{model}/{path}"


@pytest.fixture
def bucket(s3: S3) -> Any:  # noqa: F811 (the fixture)
    """moto's S3 (test credentials, its endpoint in the environment) with an empty bucket."""
    client = s3.client()
    client.create_bucket(Bucket="fleet")
    return client


def s3_pull(
    hub: HubServer, dest: Path, *, endpoint: str | None = None, env: dict[str, str] | None = None
) -> RunReport:
    environ = {"HF_ENDPOINT": hub.url, **(env or {})}
    catalog = CatalogSettings(
        mirrors=(S3_TEMPLATE,), mirror_endpoints=((S3_TEMPLATE, endpoint),) if endpoint else ()
    )
    settings = build_settings(
        Overrides(fill_mirror=True), environ=environ, dest=dest, catalog=catalog
    )
    return pull_models(parse_catalog(CATALOG).models, settings, progress=Progress())


def keys(client: Any) -> dict[str, bytes]:
    listed = client.list_objects_v2(Bucket="fleet").get("Contents", [])
    return {
        o["Key"]: client.get_object(Bucket="fleet", Key=o["Key"])["Body"].read() for o in listed
    }


def objects(client: Any) -> dict[str, bytes]:
    """The bucket's objects but mdl's own (its namespace ``hub/.mdl/``)."""
    return {k: v for k, v in keys(client).items() if not k.startswith("hub/.mdl/")}


@pytest.mark.slow
def test_an_s3_mirror_is_filled_by_the_first_machine_and_read_by_the_next(
    tiny: HubServer, bucket: Any, tmp_path: Path
) -> None:
    first = s3_pull(tiny, tmp_path / "a")
    assert first.exit_code == 0, first.files
    assert all(f.warnings == () for f in first.files), first.files
    # the objects, and beside them only released leases in mdl's namespace: no probe
    assert objects(bucket) == {f"hub/tiny/{path}": data for path, data in FILES.items()}
    own = {k: v for k, v in keys(bucket).items() if k.startswith("hub/.mdl/")}
    assert sorted(own) == sorted(f"hub/.mdl/leases/tiny/{path}/1" for path in FILES)
    assert all(json.loads(v)["released"] for v in own.values())
    assert origin_bytes(tiny) == len(WEIGHTS) + len(CONFIG)

    clear(tiny)
    second = s3_pull(tiny, tmp_path / "b")
    assert second.exit_code == 0, second.files
    assert origin_bytes(tiny) == 0
    for path, data in FILES.items():
        outcome = by_path(second)[path]
        assert outcome.mirror == f"s3://fleet/hub/tiny/{path}" and outcome.verified, outcome
        assert (tmp_path / "b" / "tiny" / path).read_bytes() == data


@pytest.mark.slow
def test_an_s3_store_that_ignores_conditional_writes_is_read_as_before_with_one_warning(
    tiny: HubServer,
    s3: S3,  # noqa: F811 (the fixture)
    bucket: Any,
    tmp_path: Path,
) -> None:
    with s3_proxy(s3.endpoint) as proxy:
        proxy.strip_conditions = True
        report = s3_pull(tiny, tmp_path / "a", endpoint=proxy.endpoint)
    assert report.exit_code == 0, report.files
    said = [w for f in report.files for w in f.warnings]
    assert said.count(f"mirror {S3_TEMPLATE} ignores conditional writes; not filling it") == 1
    assert keys(bucket) == {}  # no lease, no object, no probe left
    assert origin_bytes(tiny) == len(WEIGHTS) + len(CONFIG)
    for path, data in FILES.items():
        assert (tmp_path / "a" / "tiny" / path).read_bytes() == data


@pytest.mark.slow
def test_a_lapsed_s3_lease_is_taken_over(tiny: HubServer, bucket: Any, tmp_path: Path) -> None:
    """With a term of one second (the tests' internal variable), a lease not renewed is lapsed by
    the store's clock as soon as the store's Date says so; the pull takes it over, renews its own
    on the same short term, and fills the object."""
    writer = STORES["s3"].writer(endpoint=None, secrets=None)
    lease = "s3://fleet/hub/.mdl/leases/tiny/model.safetensors/1"
    assert writer.create(lease, b'{"holder": "other:1:x"}') is not None

    def lapsed() -> bool:
        seen = writer.head(lease)
        return seen is not None and seen.now - seen.modified > 1

    wait_for(lapsed, what="the lease lapsed by the store's clock")
    report = s3_pull(tiny, tmp_path / "a", env={TERM_VARIABLE: "1"})
    assert report.exit_code == 0, report.files
    assert objects(bucket) == {f"hub/tiny/{path}": data for path, data in FILES.items()}
    assert origin_bytes(tiny) == len(WEIGHTS) + len(CONFIG)
    assert by_path(report)["model.safetensors"].waited == 0
    assert json.loads(keys(bucket)["hub/.mdl/leases/tiny/model.safetensors/2"])["released"]
