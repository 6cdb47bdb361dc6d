"""``mdl verify --all --quick --locked``, the readiness probe of the README's fleet recipe, says what
is true: an exit code per state (ready 0; missing, outdated or another user's record 4, "not
ready"; changed 6, which pages a person; a catalog naming no model 2), a pull as root trusted by a
probe as ``nobody`` (as ssh's ``StrictModes`` trusts root's files), one line on stderr, nothing on
stdout but ``--json``, no log line, and none of the network code loaded."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from locks import lock_catalog
from runfixtures import mdl
from servers import HubServer, make_data

from mdl.lockfile.io import read_lock, write_lock
from mdl.lockfile.model import Lock, LockedFile, LockedModel

PROBE = ("verify", "--all", "--quick", "--locked")
NOBODY = 65534
OTHER = 54321  # a user no system names
CATALOG = '[models.tiny]\nrepo = "org/tiny"\n\n[models.small]\nrepo = "org/small"\n'


@pytest.fixture
def shared(hub: HubServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Two models locked and pulled (as root, in these tests) into a folder every user may read
    (pytest's own temporary folders are root's alone); the folder."""
    folder = Path(tempfile.mkdtemp(prefix="mdl-probe-"))
    try:
        folder.chmod(0o755)
        hub.add_repo("org/tiny", {"config.json": b'{"v": 1}', "w.bin": make_data(50_000, seed=1)})
        hub.add_repo("org/small", {"s.bin": make_data(20_000, seed=2)})
        catalog = folder / "catalog.toml"
        catalog.write_text(CATALOG)
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        monkeypatch.setenv("MDL_CATALOG", str(catalog))
        monkeypatch.setenv("MDL_DEST", str(folder / "models"))
        monkeypatch.setenv("MDL_LOG_FILE", str(folder / "mdl.log"))
        lock_catalog(catalog, hub)
        pulled = mdl("pull", "--all", "--locked")
        assert pulled.exit_code == 0, pulled.stderr
        (folder / "mdl.log").unlink()
        yield folder
    finally:
        shutil.rmtree(folder)


def record(folder: Path, model: str) -> Path:
    return folder / "models" / ".mdl" / "records" / f"{model}.json"


@contextlib.contextmanager
def as_user(uid: int) -> Iterator[None]:
    """This process acting as ``uid`` (its effective user: what mdl trusts by, what the kernel
    checks), root again after."""
    if os.geteuid() != 0:
        pytest.skip("acting as another user needs root")
    mdl(*PROBE)  # every module the probe loads, loaded while root may read them all
    os.seteuid(uid)
    try:
        yield
    finally:
        os.seteuid(0)


def test_a_ready_fleet_is_exit_0_one_line_on_stderr_nothing_on_stdout_nor_in_the_log(
    shared: Path,
) -> None:
    result = mdl(*PROBE)
    assert result.exit_code == 0, result.stderr
    assert result.stdout == ""
    assert [line.split("] ", 1)[1] for line in result.stderr.splitlines()] == [
        "checked 2 models (3 files: 3 ready)"
    ]
    assert not (shared / "mdl.log").exists()
    # --json keeps every file; a log asked for on the command line is written
    doc = json.loads(mdl(*PROBE, "--json", "--log-file", str(shared / "asked.log")).stdout)
    assert doc["ok"] is True and len(doc["files"]) == 3
    assert "checked 2 models" in (shared / "asked.log").read_text()


def test_a_failing_probe_writes_no_log_either(shared: Path) -> None:
    """A startup probe fails every few seconds until the first pull is done: each failure is said
    on stderr (kubelet keeps it in the pod's events), never a line in the pull's log."""
    (shared / "models" / "tiny" / "w.bin").unlink()
    result = mdl(*PROBE)
    assert result.exit_code == 4
    assert "tiny/w.bin: missing" in result.stderr
    assert not (shared / "mdl.log").exists()


def outdate(folder: Path, model: str, path: str) -> None:
    """A new catalog.lock, as `mdl lock --upgrade` writes when upstream moved: ``path`` pinned at
    other bytes."""
    lock_path = folder / "catalog.lock"
    lock = read_lock(lock_path)
    assert lock is not None
    old = lock.models[model]
    files = tuple(
        LockedFile(f.path, f.size, "f" * 64, f.source, None) if f.path == path else f
        for f in old.files
    )
    models = {
        **lock.models,
        model: LockedModel(model, old.fingerprint, old.revision, old.commit, files),
    }
    write_lock(lock_path, Lock(models))


def test_each_state_has_its_exit_code(shared: Path, hub: HubServer) -> None:
    """ready 0; outdated 4 (a routine new lock: not ready, never 6); changed 6 (a file touched
    since mdl verified it: a person looks); with both, the lowest code wins."""
    assert mdl(*PROBE).exit_code == 0

    outdate(shared, "tiny", "config.json")
    result = mdl(*PROBE, "--json")
    assert result.exit_code == 4
    (failed,) = [f for f in json.loads(result.stdout)["files"] if f["error"]]
    assert failed["path"] == "config.json"
    assert "tiny/config.json: outdated: another version than the catalog.lock pins" in str(
        failed["error"]
    )

    with open(shared / "models" / "small" / "s.bin", "r+b") as f:
        f.truncate(100)
    assert mdl(*PROBE).exit_code == 4
    lock_catalog(shared / "catalog.toml", hub)  # the lock as pulled again: only the change is left
    result = mdl(*PROBE)
    assert result.exit_code == 6
    assert "small/s.bin: its size changed since mdl verified it" in result.stderr


def test_a_missing_file_is_exit_4(shared: Path) -> None:
    (shared / "models" / "small" / "s.bin").unlink()
    assert mdl(*PROBE).exit_code == 4


def test_a_catalog_naming_no_model_is_never_ready(
    shared: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The probe pointed at the wrong file: exit 2 naming it, not "ready" for nothing checked."""
    empty = shared / "wrong.toml"
    empty.write_text('[settings]\ndest = "models"\n')
    monkeypatch.setenv("MDL_CATALOG", str(empty))
    result = mdl(*PROBE)
    assert result.exit_code == 2
    assert f"{empty} names no models: nothing to verify" in result.stderr
    doc = json.loads(mdl(*PROBE, "--json").stdout)
    assert doc["ok"] is False and doc["error"]["code"] == 2


def test_a_pull_as_root_is_ready_for_a_probe_as_nobody(shared: Path) -> None:
    """An init container pulls as root, the app runs as nobody: root's records are trusted (as ssh
    trusts root's files) and the probe writes nothing (a read-only container)."""
    with as_user(NOBODY):
        result = mdl(*PROBE)
    assert result.exit_code == 0, result.stderr
    assert "checked 2 models (3 files: 3 ready)" in result.stderr


def test_a_file_this_user_may_not_read_is_not_ready(shared: Path) -> None:
    """Pulled by root with umask 077: present and as verified, but the app cannot open it."""
    (shared / "models" / "small" / "s.bin").chmod(0o600)
    with as_user(NOBODY):
        result = mdl(*PROBE)
    assert result.exit_code == 7
    assert "small/s.bin: this user (nobody (uid 65534)) may not read it" in result.stderr


def test_a_catalog_in_a_folder_this_user_may_not_enter_is_exit_7_naming_it(
    shared: Path, hub: HubServer
) -> None:
    """Not an internal error (exit 1, a bug's words): a stat refused to this user is exit 7, the
    path named, wherever mdl meets it first (the catalog's lookup; a get's output)."""
    private = shared / "private"
    private.mkdir(mode=0o700)
    shutil.copy(shared / "catalog.toml", private / "catalog.toml")
    url = f"{hub.url}/org/small/resolve/main/s.bin"
    assert mdl("get", url, "-o", str(shared / "warm.bin")).exit_code == 0  # (its modules, as root)
    with as_user(NOBODY):
        listed = mdl("list", "--catalog", str(private / "catalog.toml"))
        got = mdl("get", url, "-o", str(private / "out.bin"))
    for result, path in ((listed, private / "catalog.toml"), (got, private / "out.bin")):
        assert result.exit_code == 7, result.stderr
        assert f"{path}: permission denied" in result.stderr
        assert "internal error" not in result.stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a record to another user needs root")
@pytest.mark.parametrize(("owner", "reader"), [(NOBODY, 0), (OTHER, NOBODY)])
def test_another_users_record_is_not_ready_naming_its_owner(
    shared: Path, owner: int, reader: int
) -> None:
    """Never "damaged" (exit 6, which pages a person, the reason only in a log): exit 4 and the
    owner named, whoever reads (root trusts no other user's file either)."""
    os.chown(record(shared, "small"), owner, owner)
    with as_user(reader) if reader else contextlib.nullcontext():
        result = mdl(*PROBE)
    assert result.exit_code == 4, result.stderr
    name = "nobody (uid 65534)" if owner == NOBODY else f"uid {OTHER}"
    assert f"small: its record {record(shared, 'small')} belongs to {name}" in result.stderr
    assert "damaged" not in result.stderr
    assert "1 model failed: small (not ready)" in result.stderr


def test_a_damaged_record_says_how_where_it_is_seen(shared: Path) -> None:
    """A read-only container writes no log: the reason is in the message."""
    record(shared, "small").write_text('{"version": 1, "files": {"s.bin": {"size": "2"}}}')
    result = mdl(*PROBE)
    assert result.exit_code == 6
    assert "is damaged (files" in result.stderr


# Runs mdl as the console script does, then writes which of the modules named in argv[1] (JSON) it
# had loaded (as tests/cli/test_startup.py).
LOADED = """\
import atexit, json, sys
watch, out = json.loads(sys.argv[1]), sys.argv[2]
atexit.register(lambda: open(out, "w").write(json.dumps(sorted(
    m for m in sys.modules if any(m == w or m.startswith(w + ".") for w in watch)))))
sys.argv = ["mdl", *sys.argv[3:]]
from mdl.__main__ import main
main()
"""


@pytest.mark.slow
def test_the_probe_loads_no_network_code(shared: Path, tmp_path: Path) -> None:
    """Each probe's cost is start-up: none of the HTTP stack, the Hub client, boto3, transfers or
    signing (~0.3 CPU-s of imports a probe never uses)."""
    out = tmp_path / "loaded.json"
    watch = ["httpx2", "httpcore2", "huggingface_hub", "boto3", "mdl.transfer", "mdl.sources"]
    watch += ["mdl.download.session", "mdl.signing.library", "rich.progress"]
    done = subprocess.run(
        [sys.executable, "-c", LOADED, json.dumps(watch), str(out), *PROBE],
        capture_output=True,
        text=True,
        env=dict(os.environ),
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(out.read_text()) == []
