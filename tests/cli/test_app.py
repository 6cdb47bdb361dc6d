"""The CLI end to end against the loopback Hub: exit codes, stdout vs stderr, --json shapes,
resume.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from runfixtures import HANG, mdl, wait_for
from servers import TOKEN, CdnServer, HubServer, closed_port, hold_after, make_data
from zygote import Forked, forked_mdl, shared

BIG = make_data(3_000_000, seed=7)
WEIGHTS = make_data(40_000_000, seed=3)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


CATALOG = """
[models.tiny]
description = "tiny test model"
tags = ["test"]
repo = "org/tiny"
include = ["*.json", "*.txt", "*.safetensors"]

[models.multi]
files = [
  { repo = "org/tiny", path = "config.json", as = "cfg/config.json" },
  { repo = "org/other", path = "weights.bin" },
]

[models.gated]
repo = "org/gated"

[models.missing-repo]
repo = "org/does-not-exist"

[models.missing-file]
files = [{ repo = "org/tiny", path = "nope.bin" }]
"""


@pytest.fixture
def world(hub: HubServer, catalog: Path, tmp_path: Path) -> dict[str, object]:
    """A Hub with three repos, a catalog naming them, and MDL_* pointing at a fresh destination."""
    hub.add_repo(
        "org/tiny",
        {
            "config.json": b'{"hidden_size": 8}',
            "vocab.txt": b"[PAD]\n[UNK]\n",
            "model.safetensors": BIG,
            "sub/special tokens.json": b"{}",
            "flax_model.msgpack": b"not wanted",
        },
    )
    hub.add_repo("org/other", {"weights.bin": WEIGHTS})
    hub.add_repo("org/gated", {"w.bin": make_data(100_000, seed=5)}, gated="auto")
    catalog.write_text(CATALOG)
    dest = tmp_path / "models"
    return {"hub": hub, "dest": dest, "catalog": catalog, "log": tmp_path / "mdl.log"}


def body_bytes(hub: HubServer) -> int:
    """File data the Hub and its CDN sent: not a metadata ask's first byte (a Hub file's metadata
    is its first byte's answer, issue 79)."""
    records = [
        *hub.cdn.log.records(method="GET"),
        *hub.log.records(method="GET", path_prefix="/org/"),
    ]
    return sum(r.bytes_sent for r in records if not r.asks_metadata)


# -- pull
# ---------------------------------------------------------------------------------------------


def test_pull_fetches_right_bytes_and_rerun_transfers_nothing(world: dict[str, object]) -> None:
    hub = world["hub"]
    dest = world["dest"]
    assert isinstance(hub, HubServer) and isinstance(dest, Path)
    result = mdl("pull", "tiny", "multi", "--json")
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["ok"] is True
    assert {f["action"] for f in doc["files"]} == {"downloaded"}
    assert set(doc["files"][0]) >= {"model", "path", "dest", "size", "sha256", "action", "error"}
    assert (dest / "tiny" / "model.safetensors").read_bytes() == BIG
    assert (dest / "tiny" / "sub" / "special tokens.json").read_bytes() == b"{}"
    assert not (dest / "tiny" / "flax_model.msgpack").exists()
    assert (dest / "multi" / "cfg" / "config.json").read_bytes() == b'{"hidden_size": 8}'
    assert (dest / "multi" / "weights.bin").read_bytes() == WEIGHTS
    by_path = {(f["model"], f["path"]): f for f in doc["files"]}
    assert by_path[("multi", "weights.bin")]["sha256"] == sha(WEIGHTS)
    # The model folders hold only finished files; mdl's own state lives under .mdl/.
    assert sorted(p.name for p in dest.iterdir()) == [".mdl", "multi", "tiny"]
    assert not list((dest / ".mdl" / "partial").iterdir())

    before = body_bytes(hub)
    again = mdl("pull", "tiny", "multi", "--json")
    assert again.exit_code == 0
    assert {f["action"] for f in json.loads(again.stdout)["files"]} == {"skipped"}
    assert body_bytes(hub) == before, "a second pull must transfer no file data"


@pytest.mark.slow
def test_pull_all_then_verify_catches_flipped_byte_and_pull_repairs(
    world: dict[str, object],
) -> None:
    dest = world["dest"]
    assert isinstance(dest, Path)
    assert mdl("pull", "tiny", "multi").exit_code == 0
    target = dest / "multi" / "weights.bin"
    with target.open("r+b") as handle:
        handle.seek(12345)
        byte = handle.read(1)
        handle.seek(12345)
        handle.write(bytes([byte[0] ^ 0xFF]))
    stat = target.stat()
    # same mtime: verify must still re-hash
    os.utime(target, ns=(stat.st_atime_ns, stat.st_mtime_ns))

    verify = mdl("verify", "multi")
    assert verify.exit_code == 6
    assert "multi/weights.bin" in verify.stderr and "sha256 mismatch" in verify.stderr
    assert "Traceback" not in verify.stderr

    dry = mdl("pull", "multi", "--dry-run", "--json")
    actions = {f["path"]: f["action"] for f in json.loads(dry.stdout)["files"]}
    assert actions["cfg/config.json"] == "skip"

    os.utime(target)  # a touched file: pull re-hashes it and repairs it
    repair = mdl("pull", "multi", "--json")
    assert repair.exit_code == 0, repair.stderr
    actions = {f["path"]: f["action"] for f in json.loads(repair.stdout)["files"]}
    assert actions["weights.bin"] == "repaired"
    assert target.read_bytes() == WEIGHTS
    assert mdl("verify", "multi").exit_code == 0


def test_verify_json_shape(world: dict[str, object]) -> None:
    assert mdl("pull", "tiny").exit_code == 0
    result = mdl("verify", "tiny", "--json")
    doc = json.loads(result.stdout)
    assert doc["ok"] is True
    assert {f["action"] for f in doc["files"]} == {"verified"}
    assert all(len(f["sha256"]) == 64 for f in doc["files"])


# -- exit codes
# ---------------------------------------------------------------------------------------


def test_bad_catalog_is_exit_2_naming_file_key_and_line(
    world: dict[str, object], tmp_path: Path
) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[models.x]\nrepo = "a/b"\nincldue = ["*.json"]\n')
    result = mdl("pull", "x", "--catalog", str(bad))
    assert result.exit_code == 2
    assert "bad.toml:3" in result.stderr
    assert "models.x.incldue" in result.stderr and "include" in result.stderr
    assert result.stdout == ""
    assert len(result.stderr.strip().splitlines()) <= 3


def test_bad_catalog_json_error_shape(world: dict[str, object], tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[models.x]\nfiles = [{ repo = "a/b", path = "../../etc/passwd" }]\n')
    result = mdl("list", "--catalog", str(bad), "--json")
    assert result.exit_code == 2
    doc = json.loads(result.stdout)
    assert doc["ok"] is False
    assert doc["error"]["code"] == 2
    assert "models.x.files[0].path" in doc["error"]["message"]


def test_unknown_model_is_exit_2_with_suggestion(world: dict[str, object]) -> None:
    result = mdl("pull", "tinny")
    assert result.exit_code == 2
    assert "unknown model 'tinny'" in result.stderr and "tiny" in result.stderr


def test_missing_repo_is_exit_4(world: dict[str, object]) -> None:
    result = mdl("pull", "missing-repo")
    assert result.exit_code == 4
    assert "org/does-not-exist" in result.stderr


def test_missing_file_is_exit_4(world: dict[str, object]) -> None:
    result = mdl("pull", "missing-file")
    assert result.exit_code == 4
    assert "nope.bin" in result.stderr


def test_gated_without_token_is_exit_3_and_with_token_works(
    world: dict[str, object], monkeypatch: pytest.MonkeyPatch
) -> None:
    hub = world["hub"]
    dest = world["dest"]
    assert isinstance(hub, HubServer) and isinstance(dest, Path)
    result = mdl("pull", "gated")
    assert result.exit_code == 3
    assert "gated" in result.stderr
    assert not (dest / "gated").exists()
    assert not list((dest / ".mdl" / "partial").glob("*")), "a refused download leaves no debris"

    monkeypatch.setenv("HF_TOKEN", TOKEN)
    ok = mdl("pull", "gated", "-v")
    assert ok.exit_code == 0, ok.stderr
    assert (dest / "gated" / "w.bin").read_bytes() == make_data(100_000, seed=5)
    assert all(r.authorization is None for r in hub.cdn.log), "the CDN must never see the Hub token"
    assert any(r.authorization == f"Bearer {TOKEN}" for r in hub.log)
    log_text = Path(str(world["log"])).read_text()
    assert TOKEN not in log_text and TOKEN not in ok.stderr
    assert "X-Amz-Signature=" not in log_text


@pytest.mark.parametrize("spelled", ["HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"])
def test_a_token_with_a_line_break_works_as_huggingface_hub_reads_it(
    world: dict[str, object], monkeypatch: pytest.MonkeyPatch, spelled: str
) -> None:
    hub = world["hub"]
    assert isinstance(hub, HubServer)
    monkeypatch.setenv(spelled, f"  {TOKEN}\r\n")  # a secret mounted from a file, as k8s does
    ok = mdl("pull", "gated")
    assert ok.exit_code == 0, ok.stderr
    assert any(r.authorization == f"Bearer {TOKEN}" for r in hub.log)


def test_unreachable_hub_is_exit_5_quickly(
    world: dict[str, object], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{closed_port()}")
    started = time.monotonic()
    result = mdl("pull", "tiny")
    assert result.exit_code == 5
    assert time.monotonic() - started < HANG  # a safety net, not a measure of speed
    assert "cannot reach the Hub" in result.stderr
    assert "Traceback" not in result.stderr


def test_wrong_sha256_is_exit_6_and_leaves_nothing(
    world: dict[str, object], tmp_path: Path
) -> None:
    hub = world["hub"]
    assert isinstance(hub, HubServer)
    url = hub.cdn.add_file("/files/style.safetensors", BIG)
    catalog = tmp_path / "sha.toml"
    catalog.write_text(f'[models.lora]\nfiles = [{{ url = "{url}", sha256 = "{"0" * 64}" }}]\n')
    result = mdl("pull", "lora", "--catalog", str(catalog), "--json")
    assert result.exit_code == 6
    doc = json.loads(result.stdout)
    assert doc["ok"] is False and doc["files"][0]["action"] == "failed"
    assert "0" * 64 in doc["files"][0]["error"] and sha(BIG) in doc["files"][0]["error"]
    dest = world["dest"]
    assert isinstance(dest, Path)
    assert not (dest / "lora" / "style.safetensors").exists()
    assert not list((dest / ".mdl" / "partial").glob("*.part"))


def test_direct_url_gets_its_headers_and_never_the_hub_token(
    world: dict[str, object], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hub = world["hub"]
    assert isinstance(hub, HubServer)
    url = hub.cdn.add_file(
        "/files/lora.bin", BIG, required_headers={"Authorization": "Bearer civitai-secret"}
    )
    catalog = tmp_path / "url.toml"
    catalog.write_text(
        f'[models.lora]\nfiles = [{{ url = "{url}", size = {len(BIG)}, '
        'headers = { Authorization = "Bearer ${CIVITAI_TOKEN}" } }]\n'
    )
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    missing_var = mdl("pull", "lora", "--catalog", str(catalog))
    assert missing_var.exit_code == 2 and "CIVITAI_TOKEN" in missing_var.stderr
    monkeypatch.setenv("CIVITAI_TOKEN", "civitai-secret")
    result = mdl("pull", "lora", "--catalog", str(catalog))
    assert result.exit_code == 0, result.stderr
    assert all(r.authorization in (None, "Bearer civitai-secret") for r in hub.cdn.log)
    assert not any(TOKEN in (r.authorization or "") for r in hub.cdn.log)


def test_cdn_refusing_direct_url_is_exit_3(world: dict[str, object], tmp_path: Path) -> None:
    hub = world["hub"]
    assert isinstance(hub, HubServer)
    url = hub.cdn.add_file(
        "/files/private.bin", BIG, required_headers={"Authorization": "Bearer x"}
    )
    catalog = tmp_path / "url.toml"
    catalog.write_text(f'[models.p]\nfiles = [{{ url = "{url}", sha256 = "{sha(BIG)}" }}]\n')
    result = mdl("pull", "p", "--catalog", str(catalog))
    assert result.exit_code == 3
    assert "private.bin" in result.stderr


def test_usage_errors_are_exit_2(world: dict[str, object]) -> None:
    assert mdl("pull").exit_code == 2
    assert mdl("pull", "tiny", "--all").exit_code == 2
    assert mdl("pull", "tiny", "--connections", "0").exit_code == 2
    assert mdl("pull", "tiny", "--limit-rate", "fast").exit_code == 2
    assert mdl("list", "--status", "weird").exit_code == 2
    assert mdl("pull", "tiny", "--no-such-flag").exit_code == 2


def test_several_failures_lowest_code_above_one_wins(world: dict[str, object]) -> None:
    result = mdl("pull", "gated", "missing-repo", "tiny", "--json")
    assert result.exit_code == 3
    doc = json.loads(result.stdout)
    errors = {f["model"]: f["action"] for f in doc["files"] if f["action"] == "failed"}
    assert set(errors) == {"gated", "missing-repo"}
    assert any(f["model"] == "tiny" and f["action"] == "downloaded" for f in doc["files"])


# -- list / show / resolve / clean
# --------------------------------------------------------------------


def test_list_statuses_and_json(world: dict[str, object]) -> None:
    dest = world["dest"]
    assert isinstance(dest, Path)
    assert mdl("pull", "tiny").exit_code == 0
    result = mdl("list", "--json")
    assert result.exit_code == 0
    models = {m["name"]: m for m in json.loads(result.stdout)["models"]}
    assert models["tiny"]["status"] == "installed"
    assert models["tiny"]["files"] == 4
    assert models["tiny"]["size"] == len(BIG) + 18 + 12 + 2
    assert models["multi"]["status"] == "missing"
    assert set(models["tiny"]) >= {"name", "description", "tags", "status", "files", "size"}
    (dest / "tiny" / "vocab.txt").unlink()
    assert {
        m["name"] for m in json.loads(mdl("list", "--json", "--status", "partial").stdout)["models"]
    } == {"tiny"}
    assert [
        m["name"] for m in json.loads(mdl("list", "--json", "--tag", "test").stdout)["models"]
    ] == ["tiny"]
    table = mdl("list")
    assert "tiny" in table.stdout and "partial" in table.stdout


def test_list_works_offline(world: dict[str, object], monkeypatch: pytest.MonkeyPatch) -> None:
    assert mdl("pull", "tiny").exit_code == 0
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert json.loads(mdl("list", "--json").stdout)["models"][0]["status"] == "installed"
    pulled = mdl("pull", "tiny", "--json")
    assert pulled.exit_code == 0
    assert {f["action"] for f in json.loads(pulled.stdout)["files"]} == {"skipped"}
    assert mdl("verify", "tiny").exit_code == 0
    assert mdl("pull", "multi").exit_code == 5


def test_show_and_resolve_json_shapes(world: dict[str, object]) -> None:
    hub = world["hub"]
    assert isinstance(hub, HubServer)
    resolved = mdl("resolve", "tiny", "--json")
    assert resolved.exit_code == 0, resolved.stderr
    model = json.loads(resolved.stdout)["models"][0]
    assert model["name"] == "tiny" and model["commit"] == hub.repo("org/tiny").sha
    files = {f["path"]: f for f in model["files"]}
    assert files["model.safetensors"]["sha256"] == sha(BIG)
    assert files["model.safetensors"]["url"].startswith(
        f"{hub.url}/org/tiny/resolve/{model['commit']}/"
    )
    assert set(files["config.json"]) >= {"path", "dest", "url", "size", "sha256", "state"}
    follow = json.loads(mdl("resolve", "tiny", "--follow", "--json").stdout)["models"][0]
    cdn_url = {f["path"]: f["url"] for f in follow["files"]}["model.safetensors"]
    assert cdn_url.startswith(hub.cdn.url) and "X-Amz-Signature=" not in cdn_url

    assert mdl("pull", "tiny").exit_code == 0
    shown = json.loads(mdl("show", "tiny", "--json").stdout)["models"][0]
    assert shown["name"] == "tiny" and shown["commit"] == model["commit"]
    assert {f["state"] for f in shown["files"]} == {"installed"}
    assert set(shown["files"][0]) >= {"path", "dest", "url", "size", "sha256", "state"}
    assert mdl("show", "nope").exit_code == 2


def test_quiet_prints_nothing_on_stderr_but_errors(world: dict[str, object]) -> None:
    result = mdl("pull", "tiny", "-q")
    assert result.exit_code == 0
    assert result.stdout == f"{world['dest']}/tiny\n" and result.stderr == ""
    bad = mdl("pull", "missing-repo", "-q")
    assert bad.exit_code == 4 and "does-not-exist" in bad.stderr


def test_plain_progress_lines_on_stderr_name_files(world: dict[str, object]) -> None:
    result = mdl("pull", "tiny")
    assert result.exit_code == 0
    assert result.stdout == f"{world['dest']}/tiny\n"
    assert "tiny/model.safetensors" in result.stderr
    assert "\x1b" not in result.stderr and "\r" not in result.stderr
    assert all(
        line[:4].isdigit() or line.startswith("pulled") for line in result.stderr.splitlines()
    )


def test_version_flag() -> None:
    result = mdl("--version")
    assert result.exit_code == 0
    assert result.stdout.startswith("mdl ")


# -- interruption and resume (real processes)
# ---------------------------------------------------------


def _spawn(args: list[str], env: dict[str, str]) -> Forked:
    """``mdl ARGS`` forked from the worker's zygote (tests/zygote.py): a signal or a kill -9 is
    mdl's own."""
    return shared().spawn(args, env=env, cwd=Path.cwd())


def _partial_bytes(dest: Path) -> int:
    parts = (
        list((dest / ".mdl" / "partial").glob("*.part"))
        if (dest / ".mdl" / "partial").exists()
        else []
    )
    total = 0
    for part in parts:
        state = part.with_name(part.name + ".json")
        if state.exists():
            pieces = json.loads(state.read_text())["pieces"]
            total += sum(done for _, _, done in pieces)
    return total


@pytest.mark.slow
@pytest.mark.realtime
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_interrupt_exits_130_and_next_run_resumes(
    world: dict[str, object], sig: signal.Signals
) -> None:
    hub = world["hub"]
    dest = world["dest"]
    assert isinstance(hub, HubServer) and isinstance(dest, Path)
    # each answer held after 1.5 MB until the signal was sent: mid-way, however busy the machine
    hub.cdn.throttle_bps = 1_000_000
    sent = hold_after(hub.cdn, 1_500_000)
    env = dict(os.environ)
    proc = _spawn(["pull", "multi", "--connections", "4"], env)
    try:
        wait_for(lambda: _partial_bytes(dest) > 1_000_000)
        proc.send_signal(sig)
    finally:
        sent.set()
    _, err = proc.communicate(timeout=HANG)
    hub.cdn.faults.clear()
    assert proc.returncode == 130, err
    assert b"interrupted" in err and b"Traceback" not in err
    kept = _partial_bytes(dest)
    assert kept > 0 and not (dest / "multi" / "weights.bin").exists()

    hub.cdn.throttle_bps = None
    hub.cdn.log.clear()
    result = mdl("pull", "multi", "--json", "--connections", "4")
    assert result.exit_code == 0, result.stderr
    actions = {f["path"]: f["action"] for f in json.loads(result.stdout)["files"]}
    assert actions["weights.bin"] == "resumed"
    assert (dest / "multi" / "weights.bin").read_bytes() == WEIGHTS
    sent = hub.cdn.log.body_bytes(method="GET")
    assert sent <= len(WEIGHTS) - kept + 4 * 1024 * 1024, (
        "the resume re-fetched data it already had"
    )


def _signals(pid: int, field: str) -> int:
    """A /proc status mask (SigIgn, SigCgt) as an int: bit N-1 is signal N."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1], 16)
    raise AssertionError(field)


def test_a_hang_up_nohup_ignored_stays_ignored(tmp_path: Path) -> None:
    # a real exec: an ignored signal is what a parent hands on across exec (nohup), nothing else
    ignoring = "import os, signal, sys; signal.signal(signal.SIGHUP, signal.SIG_IGN); os.execv(*sys.argv[1:2], sys.argv[1:])"
    proc = subprocess.Popen(
        [sys.executable, "-c", ignoring, sys.executable, "-m", "mdl", "unpack", "-", "-d", "out"],
        stdin=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=tmp_path,
    )
    try:
        bit = lambda sig: 1 << (sig - 1)  # noqa: E731
        wait_for(
            lambda: _signals(proc.pid, "SigCgt") & bit(signal.SIGTERM) != 0, what="SIGTERM set"
        )
        assert _signals(proc.pid, "SigIgn") & bit(signal.SIGHUP)
        proc.send_signal(signal.SIGHUP)
    finally:
        _, err = proc.communicate(b"", timeout=HANG)
    assert proc.returncode == 2, err  # the empty stdin's error: the hang-up was not heard
    assert b"stdin" in err


@pytest.mark.slow
@pytest.mark.realtime
def test_kill_9_loses_at_most_the_last_second(world: dict[str, object]) -> None:
    hub = world["hub"]
    dest = world["dest"]
    assert isinstance(hub, HubServer) and isinstance(dest, Path)
    # each answer held after 4 MB until the kill: mid-way, however busy the machine
    hub.cdn.throttle_bps = 1_500_000
    sent = hold_after(hub.cdn, 4_000_000)
    proc = _spawn(["pull", "multi", "--connections", "2"], dict(os.environ))
    try:
        wait_for(lambda: _partial_bytes(dest) > 3_000_000)
        proc.kill()
    finally:
        sent.set()
    proc.wait(timeout=HANG)
    hub.cdn.faults.clear()
    recorded = _partial_bytes(dest)
    hub.cdn.throttle_bps = None
    hub.cdn.log.clear()
    result = mdl("pull", "multi", "--json")
    assert result.exit_code == 0, result.stderr
    assert (dest / "multi" / "weights.bin").read_bytes() == WEIGHTS
    sent = hub.cdn.log.body_bytes(method="GET")
    # What the record claimed is never fetched again; a kill -9 costs at most what arrived after the
    # last save.
    assert sent <= len(WEIGHTS) - recorded + 2 * 1024 * 1024


@pytest.mark.slow
def test_clean_removes_stale_partials(world: dict[str, object]) -> None:
    hub = world["hub"]
    dest = world["dest"]
    assert isinstance(hub, HubServer) and isinstance(dest, Path)
    hub.cdn.throttle_bps = 500_000
    sent = hold_after(hub.cdn, 1_500_000)  # held until the signal was sent: mid-way, however busy
    proc = _spawn(["pull", "multi"], dict(os.environ))
    try:
        wait_for(lambda: _partial_bytes(dest) > 1_000_000)
        proc.send_signal(signal.SIGINT)
    finally:
        sent.set()
    proc.communicate(timeout=HANG)
    hub.cdn.faults.clear()
    assert list((dest / ".mdl" / "partial").glob("*.part"))
    dry = mdl("clean", "--dry-run", "--json")
    assert dry.exit_code == 0
    assert json.loads(dry.stdout)["files"]
    assert list((dest / ".mdl" / "partial").glob("*.part"))
    result = mdl("clean", "--json")
    assert result.exit_code == 0
    doc = json.loads(result.stdout)
    assert doc["freed"] > 0 and all(f["removed"] for f in doc["files"])
    assert not list((dest / ".mdl" / "partial").iterdir())


def test_parse_errors_honour_json_in_a_real_process(tmp_path: Path) -> None:
    """Typer's own usage errors (bad flag values, unknown commands) still give one JSON document
    and exit 2.
    """
    env = {**os.environ, "MDL_LOG_FILE": str(tmp_path / "mdl.log")}
    bad = subprocess.run(
        [forked_mdl(), "pull", "x", "--json", "--connections", "abc"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert bad.returncode == 2
    doc = json.loads(bad.stdout)
    assert (
        doc["ok"] is False
        and doc["error"]["code"] == 2
        and "--connections" in doc["error"]["message"]
    )
    assert "--connections" in bad.stderr
    unknown = subprocess.run([forked_mdl(), "nosuch"], capture_output=True, text=True, env=env)
    assert unknown.returncode == 2 and unknown.stdout == "" and "nosuch" in unknown.stderr
    version = subprocess.run([forked_mdl(), "--version"], capture_output=True, text=True, env=env)
    assert version.returncode == 0 and version.stdout.startswith("mdl ")


def test_direct_url_headers_never_follow_a_redirect_to_another_origin(
    world: dict[str, object], tmp_path: Path
) -> None:
    """A direct URL's own Authorization goes to that URL's origin only, not to the CDN it redirects
    to (big files too: every range of every connection asks the CDN without it)."""
    hub = world["hub"]
    assert isinstance(hub, HubServer)
    # another origin: another host name and port
    elsewhere = CdnServer(host_alias="localhost").start()
    try:
        target = elsewhere.add_file("/store/big.bin", WEIGHTS)
        url = hub.cdn.add_redirect("/dl/big.bin", target)
        catalog = tmp_path / "redir.toml"
        catalog.write_text(
            f'[models.r]\nfiles = [{{ url = "{url}", sha256 = "{sha(WEIGHTS)}", '
            'headers = { Authorization = "Bearer direct-secret" } }]\n'
        )
        result = mdl("pull", "r", "--catalog", str(catalog), "--connections", "4")
        assert result.exit_code == 0, result.stderr
        store_requests = elsewhere.log.records(path_prefix="/store/")
        assert store_requests and all(r.authorization is None for r in store_requests)
    finally:
        elsewhere.stop()
    assert any(
        r.authorization == "Bearer direct-secret" for r in hub.cdn.log.records(path_prefix="/dl/")
    )
