"""Issue 24: a pull writes what the model should be before its first byte; every offline view judges
from that.

Real processes against the loopback Hub: a pull is cut (SIGTERM → exit 130, or kill -9) while the
model's big file is held at the CDN, after its small files are done. Then the record
`<dest>/.mdl/records/<model>.json` already names the commit and every file with its size and hash,
and `list`, `list --status`, `show` and `verify` all say `partial` (verify: exit 4 naming the
missing file) — with and without a `catalog.lock`. Pulled again to the end, everything says
`installed` and verify exits 0.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from runfixtures import HANG, recorded, wait_for
from servers import Fault, HubServer, make_data
from zygote import Forked, forked_mdl, shared

MODEL = "half"
FILES: dict[str, bytes] = {
    "config.json": b'{"hidden_size": 8, "num_layers": 2}',
    "tokenizer.json": b'{"model": {"vocab": {"a": 0, "b": 1}}}',
    "adapter.safetensors": make_data(150_000, seed=241),  # LFS, small: done before the cut
    "weights.safetensors": make_data(3_000_000, seed=242),  # LFS: held at the CDN until the cut
}
BIG = "weights.safetensors"
SMALL = sorted(set(FILES) - {BIG})
CATALOG = f'[models.{MODEL}]\ndescription = "half pulled, then finished"\nrepo = "org/half"\n'


class Setup:
    """The catalog, destination and environment of one test, and a way to run mdl in a real
    process.
    """

    def __init__(self, hub: HubServer, tmp_path: Path) -> None:
        self.hub = hub
        self.root = tmp_path
        self.catalog = tmp_path / "catalog.toml"
        self.dest = tmp_path / "models"
        self.env = {
            **os.environ,
            "HF_ENDPOINT": hub.url,
            "MDL_CATALOG": str(self.catalog),
            "MDL_DEST": str(self.dest),
            "MDL_LOG_FILE": str(tmp_path / "mdl.log"),
        }

    def spawn(
        self, *args: str, offline: bool = False, real: bool = False
    ) -> subprocess.Popen[bytes] | Forked:
        """``mdl ARGS`` as a process forked from the worker's zygote (tests/zygote.py), by its
        ``mdl`` command; ``real``: the forked child itself, for the runs a signal ends (a kill -9
        of the command reaches its child a moment later)."""
        env = {**self.env, "HF_HUB_OFFLINE": "1"} if offline else self.env
        if real:
            return shared().spawn(args, env=env, cwd=self.root)
        return subprocess.Popen(
            [forked_mdl(), *args],
            env=env,
            cwd=self.root,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )

    def record(self) -> Any:
        path = self.dest / ".mdl" / "records" / f"{MODEL}.json"
        assert path.is_file(), (
            f"no record at {path}: the expected state was not written before the first byte"
        )
        return json.loads(path.read_text(encoding="utf-8"))


def _run(
    setup: Setup, *args: str, offline: bool = True, timeout: float = 60
) -> tuple[int, str, str]:
    proc = setup.spawn(*args, offline=offline)
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out.decode(), err.decode()


@pytest.fixture
def setup(hub: HubServer, tmp_path: Path) -> Iterator[Setup]:
    hub.add_repo("org/half", FILES)
    (tmp_path / "catalog.toml").write_text(CATALOG)
    yield Setup(hub, tmp_path)


def interrupt_pull(setup: Setup, sig: signal.Signals) -> tuple[int, str]:
    """Start `mdl pull half`, hold its big file at the CDN until the small files are in place,
    then send `sig`.
    """
    big_blob = f"/blobs/{setup.hub.repo('org/half').files[BIG].sha256}"
    gate = threading.Event()
    held = setup.hub.cdn.faults.add(
        Fault.call(lambda: gate.wait(10 * HANG), path_prefix=big_blob, times=None)
    )
    proc = setup.spawn("pull", MODEL, "--no-progress", real=True)
    try:
        wait_for(
            lambda: held.seen > 0 or proc.poll() is not None,
            what="the big file's request at the CDN",
        )
        wait_for(
            lambda: (
                all((setup.dest / MODEL / p).is_file() for p in SMALL) or proc.poll() is not None
            ),
            what="the small files in place",
        )
        # the record of the small files written, as it would be in real life (once a second)
        wait_for(
            lambda: recorded(setup.dest, MODEL, SMALL) or proc.poll() is not None,
            what="the small files' record",
        )
        assert proc.poll() is None, f"the pull ended before it was cut: {proc.communicate()}"
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=HANG)
    finally:
        setup.hub.cdn.faults.clear()
        gate.set()
    return proc.returncode, err.decode()


def find_expected_entry(doc: Any, path: str) -> dict[str, Any] | None:
    """The record's entry for `path`, whatever the record's shape: a dict keyed by path or
    holding `"path"`.
    """
    stack: list[tuple[str | None, Any]] = [(None, doc)]
    while stack:
        key, node = stack.pop()
        if isinstance(node, dict):
            if (node.get("path") == path or key == path) and "size" in node:
                return node
            stack.extend(node.items())
        elif isinstance(node, list):
            stack.extend((None, item) for item in node)
    return None


def assert_expected_state_recorded(setup: Setup) -> None:
    """The record names the commit and every file with its size and hash — the big one too, never
    fetched.
    """
    repo = setup.hub.repo("org/half")
    doc = setup.record()
    text = json.dumps(doc)
    assert repo.sha in text, f"the record does not name the commit {repo.sha}: {text[:600]}"
    for path, data in FILES.items():
        entry = find_expected_entry(doc, path)
        assert entry is not None, f"the record does not name {path} with its size: {text[:800]}"
        assert entry["size"] == len(data), (path, entry)
        hub_file = repo.files[path]
        hashes = {hub_file.sha256, hub_file.oid, hub_file.content.git_sha1}
        assert hashes & {str(v) for v in entry.values()}, (
            f"{path}: no sha256 or git blob id in {entry}"
        )


def list_entry(setup: Setup, *extra: str) -> dict[str, Any] | None:
    code, out, err = _run(setup, "list", "--json", *extra)
    assert code == 0, (code, err)
    return next((m for m in json.loads(out)["models"] if m["name"] == MODEL), None)


def run_views(
    setup: Setup, status: str, locked: tuple[str, ...]
) -> dict[str, tuple[int, str, str]]:
    """Every offline view at once (they only read): key → (exit code, stdout, stderr)."""
    other = "installed" if status == "partial" else "partial"
    views = {
        "list --json": ("list", "--json"),
        "list": ("list",),
        f"list --status {status}": ("list", "--json", "--status", status),
        f"list --status {other}": ("list", "--json", "--status", other),
        "show --json": ("show", MODEL, "--json"),
        "show": ("show", MODEL),
        "verify --json": ("verify", MODEL, "--json"),
    }
    procs = {key: setup.spawn(*args, *locked, offline=True) for key, args in views.items()}
    done = {key: proc.communicate(timeout=60) for key, proc in procs.items()}
    return {
        key: (procs[key].returncode, out.decode(), err.decode()) for key, (out, err) in done.items()
    }


def in_listing(result: tuple[int, str, str]) -> dict[str, Any] | None:
    code, out, err = result
    assert code == 0, (code, err)
    return next((m for m in json.loads(out)["models"] if m["name"] == MODEL), None)


def assert_views_say(setup: Setup, status: str, *, locked: tuple[str, ...] = ()) -> None:
    """`list` (table and JSON), `list --status`, `show` (JSON and text) and `verify` all agree on
    `status`.
    """
    got = run_views(setup, status, locked)
    flags = " ".join(locked)
    entry = in_listing(got["list --json"])
    assert entry is not None and entry["status"] == status, f"list --json {flags}: {entry}"
    code, out, err = got["list"]
    assert code == 0, err
    (row,) = [line for line in out.splitlines() if line.split()[:1] == [MODEL]]
    assert row.split()[1] == status, f"list {flags}: {row!r}"
    other = "installed" if status == "partial" else "partial"
    assert in_listing(got[f"list --status {status}"]) is not None, (
        f"list --status {status} {flags} leaves it out"
    )
    assert in_listing(got[f"list --status {other}"]) is None, (
        f"list --status {other} {flags} shows it"
    )
    code, out, err = got["show --json"]
    assert code == 0, err
    (shown,) = json.loads(out)["models"]
    assert shown["status"] == status, f"show --json {flags}: {shown['status']}"
    assert {f["path"] for f in shown["files"]} == set(FILES), (
        f"show lists {[f['path'] for f in shown['files']]}"
    )
    code, out, err = got["show"]
    assert code == 0, err
    assert any(line.startswith("status:") and status in line for line in out.splitlines()), out
    code, out, err = got["verify --json"]
    actions = {f["path"]: f["action"] for f in json.loads(out)["files"]}
    if status == "installed":
        assert code == 0, (code, err)
        assert actions == dict.fromkeys(FILES, "verified"), actions
    else:
        assert code == 4, f"verify {flags} of a partial model: exit {code}, {err}"
        assert actions.get(BIG) == "missing", (
            f"verify {flags} does not name {BIG} as missing: {actions}"
        )
        assert BIG in err, f"verify's stderr does not name {BIG}: {err}"
        assert "Traceback" not in err


@pytest.mark.slow
@pytest.mark.realtime
@pytest.mark.parametrize("with_lock", [False, True], ids=["no-lock", "catalog.lock"])
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "kill-9"])
def test_an_interrupted_pull_is_partial_everywhere_until_it_is_finished(
    setup: Setup, sig: signal.Signals, with_lock: bool
) -> None:
    locked: tuple[str, ...] = ()
    if with_lock:
        code, _, err = _run(setup, "lock", offline=False)
        assert code == 0, err
        assert (setup.root / "catalog.lock").is_file()
        locked = ("--locked",)
    code, err = interrupt_pull(setup, sig)
    if sig == signal.SIGTERM:
        assert code == 130, f"SIGTERM: exit {code}, {err}"
        assert "Traceback" not in err
    else:
        assert code == -signal.SIGKILL
    assert not (setup.dest / MODEL / BIG).exists(), "the held file reached its final path"
    assert_views_say(setup, "partial")
    if with_lock:
        assert_views_say(setup, "partial", locked=locked)
    assert_expected_state_recorded(setup)

    code, _, err = _run(setup, "pull", MODEL, offline=False)
    assert code == 0, err
    for path, data in FILES.items():
        assert (setup.dest / MODEL / path).read_bytes() == data, path
    assert_views_say(setup, "installed")
    if with_lock:
        assert_views_say(setup, "installed", locked=locked)


@pytest.mark.slow
def test_the_expected_state_is_written_before_the_first_byte(setup: Setup) -> None:
    """Held before any LFS byte arrives (every blob gated): the record already names all four
    files.
    """
    gate = threading.Event()
    held = setup.hub.cdn.faults.add(
        Fault.call(lambda: gate.wait(10 * HANG), path_prefix="/blobs/", times=None)
    )
    proc = setup.spawn("pull", MODEL, "--no-progress")
    try:
        wait_for(lambda: held.seen > 0 or proc.poll() is not None, what="the first CDN request")
        assert proc.poll() is None, proc.communicate()
        assert not any(
            (setup.dest / MODEL / p).exists() for p in FILES if p.endswith(".safetensors")
        )
        assert_expected_state_recorded(setup)
        entry = list_entry(setup)
        assert entry is not None and entry["status"] != "installed", (
            f"a model mid-pull listed as {entry}"
        )
    finally:
        gate.set()
    _, err = proc.communicate(timeout=HANG)
    assert proc.returncode == 0, err.decode()
    assert_views_say(setup, "installed")


@pytest.mark.slow
def test_list_takes_locked_and_frozen(setup: Setup) -> None:
    code, _, err = _run(setup, "list", "--locked")
    assert "No such option" not in err, f"list does not take --locked: {err}"
    assert code == 2, f"list --locked without catalog.lock: exit {code} ({err})"
    assert "catalog.lock" in err, err
    assert "Traceback" not in err
    code, _, err = _run(setup, "lock", offline=False)
    assert code == 0, err
    for flag in ("--locked", "--frozen"):
        code, out, err = _run(setup, "list", flag, "--json")
        assert code == 0, f"list {flag} with a fresh lock: exit {code} ({err})"
        (entry,) = [m for m in json.loads(out)["models"] if m["name"] == MODEL]
        assert entry["status"] == "missing", entry
    code, _, err = _run(setup, "list", "--locked", "--frozen")
    assert code == 2 and "No such option" not in err, f"list --locked --frozen: exit {code} ({err})"


@pytest.mark.slow
def test_sigterm_ends_a_pull_a_silent_server_holds_at_once(setup: Setup) -> None:
    # The CDN never answers the big file; SIGTERM must not wait for --timeout or --stall-timeout (10
    # x HANG here, far past the safety net): the run shuts its connections down and exits 130 with
    # the small files kept.
    big_blob = f"/blobs/{setup.hub.repo('org/half').files[BIG].sha256}"
    gate = threading.Event()
    held = setup.hub.cdn.faults.add(
        Fault.call(lambda: gate.wait(10 * HANG), path_prefix=big_blob, times=None)
    )
    wrong = str(10 * HANG)
    args = ("pull", MODEL, "--no-progress", "--timeout", wrong, "--stall-timeout", wrong)
    proc = setup.spawn(*args, real=True)
    try:
        wait_for(
            lambda: held.seen > 0 or proc.poll() is not None,
            what="the big file's request at the CDN",
        )
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=HANG)  # a wait for the silent server would outlast this many times
    finally:
        setup.hub.cdn.faults.clear()
        gate.set()
    assert proc.returncode == 130
