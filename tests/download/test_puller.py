"""pull end to end against the loopback Hub and CDN: download, skip, check/repair, dry run,
space, failures.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from runfixtures import HANG, wait_for
from servers import TOKEN, Fault, HubServer, git_blob_sha1, make_data

from mdl.catalog.load import parse_catalog
from mdl.catalog.settings import Settings, build_settings
from mdl.catalog.specs import ModelSpec
from mdl.download._plan import check_space, plan_file
from mdl.download.puller import PullSession, RunReport, pull_models, resolve
from mdl.errors import ExitCode, NoSpaceError
from mdl.progress import NullProgress
from mdl.setting import Overrides
from mdl.sources.resolve import RemoteFile
from mdl.store.store import Store

# over 1 MiB: fetched by the engine's pieces, so an interrupted fetch is resumed (a smaller file is
# one GET held in memory, mdl/transfer/small.py, and fetched again whole)
WEIGHTS = make_data(1_300_003, seed=1)
CONFIG = b'{"model_type": "bert"}\n'
VOCAB = b"[PAD]\n[UNK]\n" * 50
LORA = make_data(40_000, seed=2)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class Notes(NullProgress):
    """A progress sink that keeps the notes (thread-safe enough: list.append)."""

    def __init__(self) -> None:
        self.notes: list[str] = []
        self.waits: list[str] = []

    def note(self, message: str) -> None:
        self.notes.append(message)

    def waiting(self, key: str, message: str) -> None:
        self.waits.append(f"{key}: {message}")


@pytest.fixture
def tiny(hub: HubServer) -> HubServer:
    hub.add_repo(
        "org/tiny",
        {
            "config.json": CONFIG,
            "model.safetensors": WEIGHTS,
            "nested/vocab.txt": VOCAB,
            "README.md": b"# t\n",
        },
    )
    return hub


def catalog_models(hub: HubServer, extra: str = "") -> dict[str, ModelSpec]:
    lora_url = hub.cdn.add_file("/loras/style.safetensors", LORA)
    text = f"""
[models.tiny]
repo = "org/tiny"
include = ["*.json", "*.safetensors", "*.txt"]

[[models.combo.files]]
repo = "org/tiny"
path = "model.safetensors"
as = "vae/ae.safetensors"

[[models.combo.files]]
url = "{lora_url}"
sha256 = "{sha256(LORA)}"
{extra}
"""
    return {m.name: m for m in parse_catalog(text).models}


def make_settings(
    hub: HubServer, dest: Path, env: dict[str, str] | None = None, **flags: Any
) -> Settings:
    environ = {"HF_ENDPOINT": hub.url, **(env or {})}
    return build_settings(Overrides(**flags), environ=environ, dest=dest)


def pull(hub: HubServer, dest: Path, models: list[ModelSpec], **kwargs: Any) -> RunReport:
    return pull_models(models, make_settings(hub, dest, **kwargs), progress=NullProgress())


def actions(report: RunReport) -> dict[tuple[str, str | None], str]:
    return {(f.model, f.path): f.action for f in report.files}


EXPECTED_TINY = {"config.json": CONFIG, "model.safetensors": WEIGHTS, "nested/vocab.txt": VOCAB}


def assert_tiny_on_disk(dest: Path) -> None:
    for path, data in EXPECTED_TINY.items():
        assert (dest / "tiny" / path).read_bytes() == data
    assert not (dest / "tiny" / "README.md").exists()


def body_requests(hub: HubServer) -> list[Any]:
    """Requests that carried file contents: GETs on resolve URLs and anything on the CDN."""
    return [
        r
        for r in hub.log.records(method="GET")
        if "/resolve/" in r.url_path and not r.asks_metadata
    ] + hub.cdn.log.records()


# -- the happy path
# --------------------------------------------------------------------------------------


def test_full_pull_is_byte_exact_and_recorded(tiny: HubServer, tmp_path: Path) -> None:
    dest = tmp_path / "models"
    models = catalog_models(tiny)
    report = pull(tiny, dest, [models["tiny"], models["combo"]], connections=4, jobs=3)
    assert report.ok and report.exit_code == 0
    assert actions(report) == {
        ("tiny", "config.json"): "downloaded",
        ("tiny", "model.safetensors"): "downloaded",
        ("tiny", "nested/vocab.txt"): "downloaded",
        ("combo", "vae/ae.safetensors"): "downloaded",
        ("combo", "style.safetensors"): "downloaded",
    }
    assert_tiny_on_disk(dest)
    assert (dest / "combo" / "vae" / "ae.safetensors").read_bytes() == WEIGHTS
    assert (dest / "combo" / "style.safetensors").read_bytes() == LORA
    for outcome in report.files:
        assert outcome.dest is not None
        assert outcome.sha256 == sha256(Path(outcome.dest).read_bytes())
        assert outcome.error is None
    # Only finished files in the model folders; nothing left in the partial area.
    assert list((dest / ".mdl" / "partial").iterdir()) == []
    assert sorted(p.name for p in (dest / "tiny").rglob("*") if p.is_file()) == [
        "config.json",
        "model.safetensors",
        "vocab.txt",
    ]
    commit = tiny.repo("org/tiny").sha
    record = Store(dest).read_record("tiny")
    assert record is not None
    assert (record.revision, record.commit) == ("main", commit)
    assert record.files["model.safetensors"].sha256 == sha256(WEIGHTS)
    assert record.files["config.json"].git_oid == git_blob_sha1(CONFIG)
    assert record.files["config.json"].source == f"hf://org/tiny@{commit}/config.json"
    combo = Store(dest).read_record("combo")
    assert combo is not None
    assert combo.files["style.safetensors"].source == f"{tiny.cdn.url}/loras/style.safetensors"
    json.dumps(report.to_json())  # the JSON document is serialisable


def test_second_pull_transfers_no_body_bytes(tiny: HubServer, tmp_path: Path) -> None:
    dest = tmp_path / "models"
    models = catalog_models(tiny)
    assert pull(tiny, dest, [models["tiny"], models["combo"]]).ok
    tiny.log.clear()
    tiny.cdn.log.clear()
    report = pull(tiny, dest, [models["tiny"], models["combo"]])
    assert report.ok
    assert set(actions(report).values()) == {"skipped"}
    assert all(f.reason == "up to date" for f in report.files)
    assert body_requests(tiny) == []
    assert tiny.cdn.log.body_bytes() == 0
    # Only metadata went over the wire: the listing, the commit and one first byte's GET per
    # explicit Hub file (its redirect, or that byte).
    assert not tiny.log.records(method="HEAD")
    assert all(r.url_path.startswith("/api/") or r.asks_metadata for r in tiny.log.records())


def test_hub_token_reaches_the_hub_only(hub: HubServer, tmp_path: Path) -> None:
    hub.add_repo("org/gated", {"model.safetensors": WEIGHTS, "config.json": CONFIG}, gated="manual")
    (spec,) = parse_catalog('[models.g]\nrepo = "org/gated"\n').models
    report = pull(hub, tmp_path, [spec], env={"HF_TOKEN": TOKEN}, connections=4)
    assert report.ok
    assert (tmp_path / "g" / "model.safetensors").read_bytes() == WEIGHTS
    assert all(r.authorization == f"Bearer {TOKEN}" for r in hub.log.records())
    assert hub.cdn.log.records()
    assert all(r.authorization is None for r in hub.cdn.log.records())


def test_direct_url_headers_from_the_environment(hub: HubServer, tmp_path: Path) -> None:
    url = hub.cdn.add_file(
        "/private/w.bin", LORA, required_headers={"Authorization": "Bearer civ-123"}
    )
    (spec,) = parse_catalog(f"""
[[models.lora.files]]
url = "{url}"
headers = {{ Authorization = "Bearer ${{CIVITAI_TOKEN}}" }}
""").models
    report = pull(hub, tmp_path, [spec], env={"CIVITAI_TOKEN": "civ-123", "HF_TOKEN": TOKEN})
    assert report.ok, report.files
    assert (tmp_path / "lora" / "w.bin").read_bytes() == LORA
    # The Hub token never goes to a direct URL; its own header does.
    assert {r.authorization for r in hub.cdn.log.records()} == {"Bearer civ-123"}
    # No sha256 in the catalog: the record keeps the ETag so the next run can tell a change.
    record = Store(tmp_path).read_record("lora")
    assert record is not None
    assert record.files["w.bin"].etag == f'"{hashlib.md5(LORA).hexdigest()}"'


# -- check, repair, force
# --------------------------------------------------------------------------------


def test_modified_file_is_repaired_and_touched_file_only_rechecked(
    tiny: HubServer, tmp_path: Path
) -> None:
    dest = tmp_path / "models"
    spec = catalog_models(tiny)["tiny"]
    assert pull(tiny, dest, [spec]).ok
    weights = dest / "tiny" / "model.safetensors"
    corrupt = bytearray(WEIGHTS)
    corrupt[1000] ^= 0x01
    weights.write_bytes(bytes(corrupt))  # same size, new mtime
    config = dest / "tiny" / "config.json"
    os.utime(config, ns=(1, 1))  # content intact, only the mtime changed
    (dest / "tiny" / "nested" / "vocab.txt").unlink()

    dry = pull(tiny, dest, [spec], dry_run=True)
    assert actions(dry) == {
        ("tiny", "config.json"): "check",
        ("tiny", "model.safetensors"): "check",
        ("tiny", "nested/vocab.txt"): "download",
    }

    tiny.log.clear()
    tiny.cdn.log.clear()
    report = pull(tiny, dest, [spec])
    assert report.ok
    assert actions(report) == {
        ("tiny", "config.json"): "skipped",
        ("tiny", "model.safetensors"): "repaired",
        ("tiny", "nested/vocab.txt"): "downloaded",
    }
    assert_tiny_on_disk(dest)
    fetched = {
        r.url_path.rsplit("/", 1)[-1]
        for r in tiny.log.records(method="GET")
        if "/resolve/" in r.url_path
    }
    assert "config.json" not in fetched
    assert "vocab.txt" in fetched
    assert tiny.cdn.log.body_bytes() >= len(WEIGHTS)

    # The re-check refreshed the record: a third run skips everything without hashing or fetching.
    tiny.log.clear()
    tiny.cdn.log.clear()
    third = pull(tiny, dest, [spec])
    assert set(actions(third).values()) == {"skipped"}
    assert all(f.reason == "up to date" for f in third.files)
    assert body_requests(tiny) == []


def test_unrecorded_file_in_place_is_hashed_not_fetched(tiny: HubServer, tmp_path: Path) -> None:
    dest = tmp_path / "models"
    (dest / "tiny").mkdir(parents=True)
    (dest / "tiny" / "model.safetensors").write_bytes(WEIGHTS)  # e.g. copied over by hand
    spec = catalog_models(tiny)["tiny"]
    report = pull(tiny, dest, [spec])
    assert report.ok
    assert actions(report)[("tiny", "model.safetensors")] == "skipped"
    assert tiny.cdn.log.records() == []
    record = Store(dest).read_record("tiny")
    assert record is not None
    assert record.files["model.safetensors"].sha256 == sha256(WEIGHTS)


def test_force_fetches_again(tiny: HubServer, tmp_path: Path) -> None:
    dest = tmp_path / "models"
    spec = catalog_models(tiny)["tiny"]
    assert pull(tiny, dest, [spec]).ok
    tiny.cdn.log.clear()
    report = pull(tiny, dest, [spec], force=True)
    # Replaced, not "repaired": nothing said they were wrong (the JSON contract's word, with the
    # reason).
    assert set(actions(report).values()) == {"downloaded"}
    assert {f.reason for f in report.files} == {"--force"}
    assert {f.shown_action for f in report.files} == {"re-downloaded"}
    assert tiny.cdn.log.body_bytes() == len(WEIGHTS)
    assert_tiny_on_disk(dest)


def test_changed_upstream_is_downloaded_again(tiny: HubServer, tmp_path: Path) -> None:
    dest = tmp_path / "models"
    spec = catalog_models(tiny)["tiny"]
    assert pull(tiny, dest, [spec]).ok
    tiny.replace_file("org/tiny", "config.json", b'{"model_type": "gpt2"}\n')
    report = pull(tiny, dest, [spec])
    assert actions(report)[("tiny", "config.json")] == "downloaded"
    assert (dest / "tiny" / "config.json").read_bytes() == b'{"model_type": "gpt2"}\n'
    record = Store(dest).read_record("tiny")
    assert record is not None
    assert record.commit == tiny.repo("org/tiny").sha


# -- dry run, offline, space
# ---------------------------------------------------------------------------


def test_dry_run_changes_nothing(tiny: HubServer, tmp_path: Path) -> None:
    dest = tmp_path / "models"
    models = catalog_models(tiny)
    report = pull(tiny, dest, [models["tiny"], models["combo"]], dry_run=True)
    assert report.dry_run
    assert report.to_json()["dry_run"] is True
    assert set(actions(report).values()) == {"download"}
    assert all(f.reason == "not downloaded yet" for f in report.files)
    assert not dest.exists()
    assert body_requests(tiny) == []


def test_offline_pull_uses_the_record_and_no_network(tiny: HubServer, tmp_path: Path) -> None:
    dest = tmp_path / "models"
    spec = catalog_models(tiny)["tiny"]
    assert pull(tiny, dest, [spec]).ok
    tiny.log.clear()
    tiny.cdn.log.clear()
    report = pull(tiny, dest, [spec], env={"HF_HUB_OFFLINE": "1"})
    assert report.ok
    assert set(actions(report).values()) == {"skipped"}
    assert len(tiny.log) == len(tiny.cdn.log) == 0

    (dest / "tiny" / "config.json").unlink()
    report = pull(tiny, dest, [spec], env={"HF_HUB_OFFLINE": "1"})
    failed = [f for f in report.files if f.action == "failed"]
    assert [f.path for f in failed] == ["config.json"]
    assert "HF_HUB_OFFLINE" in (failed[0].error or "")
    assert report.exit_code == ExitCode.NETWORK
    assert len(tiny.log) == len(tiny.cdn.log) == 0


def test_offline_pull_of_a_model_never_pulled(tiny: HubServer, tmp_path: Path) -> None:
    report = pull(tiny, tmp_path, [catalog_models(tiny)["tiny"]], env={"HF_HUB_OFFLINE": "1"})
    assert report.exit_code == ExitCode.NETWORK
    ((model, path),) = actions(report)
    assert (model, path) == ("tiny", None)


def test_not_enough_space_is_refused_before_transferring(
    tiny: HubServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(Store, "free_bytes", lambda self: 1000)
    dest = tmp_path / "models"
    with pytest.raises(NoSpaceError) as info:
        pull(tiny, dest, [catalog_models(tiny)["tiny"]])
    assert info.value.exit_code == ExitCode.LOCAL == 7
    assert "not enough space" in info.value.message
    assert "free" in info.value.message
    assert body_requests(tiny) == []
    assert not (dest / "tiny").exists()


def test_space_check_counts_only_what_is_missing(
    tiny: HubServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dest = tmp_path / "models"
    spec = catalog_models(tiny)["tiny"]
    assert pull(tiny, dest, [spec]).ok
    (dest / "tiny" / "config.json").unlink()
    # exactly enough for the one file
    monkeypatch.setattr(Store, "free_bytes", lambda self: len(CONFIG))
    report = pull(tiny, dest, [spec])
    assert report.ok
    assert actions(report)[("tiny", "config.json")] == "downloaded"


# -- failures
# ----------------------------------------------------------------------------------------------


def test_per_model_failures_do_not_stop_the_others(tiny: HubServer, tmp_path: Path) -> None:
    tiny.add_repo("org/gated", {"model.safetensors": WEIGHTS}, gated="manual")
    bad_url = tiny.cdn.add_file("/w/bad.bin", LORA)
    models = catalog_models(
        tiny,
        extra=f"""
[models.missing]
repo = "org/does-not-exist"

[models.gated]
repo = "org/gated"

[[models.corrupt.files]]
url = "{bad_url}"
sha256 = "{"0" * 64}"
""",
    )
    order = [models[n] for n in ("missing", "gated", "tiny", "corrupt")]
    report = pull(tiny, tmp_path, order)
    assert not report.ok
    assert report.exit_code == ExitCode.AUTH == 3  # codes 4, 3 and 6: the lowest above 1 wins
    by_model = {f.model: f for f in report.files if f.action == "failed"}
    assert set(by_model) == {"missing", "gated", "corrupt"}
    assert by_model["missing"].exit_code == 4 and "org/does-not-exist" in (
        by_model["missing"].error or ""
    )
    assert by_model["gated"].exit_code == 3
    assert by_model["corrupt"].exit_code == 6 and sha256(LORA) in (by_model["corrupt"].error or "")
    assert [f.action for f in report.files if f.model == "tiny"] == ["downloaded"] * 3
    assert_tiny_on_disk(tmp_path)
    assert not (tmp_path / "corrupt" / "bad.bin").exists()
    assert not (tmp_path / "gated" / "model.safetensors").exists()
    assert all(r.authorization is None for r in tiny.cdn.log.records())

    # Without the auth failure, not-found (4) beats integrity (6).
    report = pull(tiny, tmp_path, [models["corrupt"], models["missing"], models["tiny"]])
    assert report.exit_code == ExitCode.NOT_FOUND


def test_interrupted_pull_is_resumed_by_the_next_run(tiny: HubServer, tmp_path: Path) -> None:
    dest = tmp_path / "models"
    spec = catalog_models(tiny)["tiny"]
    tiny.cdn.faults.add(Fault.reset(after_bytes=200_000))
    first = pull(tiny, dest, [spec], env={"MDL_RETRIES": "0"})
    assert first.exit_code == ExitCode.NETWORK
    failed = [f for f in first.files if f.action == "failed"]
    assert [f.path for f in failed] == ["model.safetensors"]
    assert not (dest / "tiny" / "model.safetensors").exists()
    tiny.cdn.log.clear()
    second = pull(tiny, dest, [spec])
    assert second.ok
    outcome = next(f for f in second.files if f.path == "model.safetensors")
    assert outcome.action == "resumed"
    assert outcome.fetched == len(WEIGHTS) - 200_000
    assert tiny.cdn.log.body_bytes() == len(WEIGHTS) - 200_000
    assert_tiny_on_disk(dest)


@contextlib.contextmanager
def cut_at_1000(tiny: HubServer, dest: Path) -> Iterator[tuple[PullSession, RemoteFile]]:
    """A session on ``dest`` after a pull of the weights was cut at their 1,000th byte, and the
    weights' remote file."""
    spec = catalog_models(tiny)["tiny"]
    tiny.cdn.faults.add(Fault.reset(after_bytes=1000))
    assert pull(tiny, dest, [spec], env={"MDL_RETRIES": "0"}).exit_code == ExitCode.NETWORK
    session = PullSession(make_settings(tiny, dest), progress=NullProgress())
    try:
        (model,), _ = resolve(session, [spec], lock=None)
        yield session, next(f for f in model.files if f.path == "model.safetensors")
    finally:
        session.owned.close()


def test_partial_bytes_come_from_the_resume_record(
    tiny: HubServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with cut_at_1000(tiny, tmp_path / "models") as (session, remote):
        planned = plan_file(session.layout, remote, force=False, offline=False)
        assert planned.decision.action.value == "resume"
        assert planned.partial_bytes == 1000
        # and so the space check asks for the bytes still to come
        monkeypatch.setattr(Store, "free_bytes", lambda self: 1000)
        with pytest.raises(NoSpaceError):
            check_space([planned])


def test_a_resume_needs_no_space_for_the_blocks_its_partial_already_holds(
    tiny: HubServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A run stopped by a full disk: its streams had written more than the record counts as done
    # (written, not yet durable). Those blocks are on disk already: the resume writes over them.
    with cut_at_1000(tiny, tmp_path / "models") as (session, remote):
        part, _ = session.layout.plain.part_paths("tiny", "model.safetensors")
        with part.open("r+b") as handle:  # the uncounted bytes: written where they go
            handle.seek(1000)
            handle.write(WEIGHTS[1000 : len(WEIGHTS) // 2])
            os.fsync(handle.fileno())
        held = part.stat().st_blocks * 512
        planned = plan_file(session.layout, remote, force=False, offline=False)
        assert planned.decision.action.value == "resume" and planned.partial_bytes == 1000
        # free space short of what the record leaves to fetch, enough for what the disk leaves
        monkeypatch.setattr(Store, "free_bytes", lambda self: len(WEIGHTS) - held + 4096)
        check_space([planned])
        assert held >= len(WEIGHTS) // 2 - 1000
        # and no less: what is not held yet is still asked for
        monkeypatch.setattr(Store, "free_bytes", lambda self: len(WEIGHTS) - held - 4096)
        with pytest.raises(NoSpaceError):
            check_space([planned])


@pytest.mark.slow
def test_two_concurrent_pulls_fetch_the_bytes_once(tiny: HubServer, tmp_path: Path) -> None:
    dest = tmp_path / "models"
    spec = catalog_models(tiny)["tiny"]
    # the weights held at the CDN until the other run waits on their lock: the runs overlap,
    # whichever thread starts first and however late the other
    gate = threading.Event()
    tiny.cdn.faults.add(Fault.call(lambda: gate.wait(HANG), path_prefix="/blobs/", times=None))
    reports: list[RunReport] = []
    notes = [Notes(), Notes()]

    def run(progress: Notes) -> None:
        reports.append(pull_models([spec], make_settings(tiny, dest), progress=progress))

    threads = [threading.Thread(target=run, args=(n,)) for n in notes]
    try:
        for t in threads:
            t.start()
        wait_for(lambda: any(n.waits for n in notes), what="a run waiting on the other's lock")
    finally:
        gate.set()
    for t in threads:
        t.join(HANG)
    assert len(reports) == 2
    assert all(r.ok for r in reports)
    assert_tiny_on_disk(dest)
    # Fetched about once: the second run waited for the lock, then found the file done.
    assert tiny.cdn.log.body_bytes() == len(WEIGHTS)
    weights_actions = sorted(
        next(f.action for f in r.files if f.path == "model.safetensors") for r in reports
    )
    assert weights_actions == ["downloaded", "skipped"]
    # on the file's bar, not as a loose line
    assert any("another mdl run" in n for p in notes for n in p.waits)
