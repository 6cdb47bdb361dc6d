"""show, list, verify and pull --dry-run against one vocabulary of local states, and the folder
show prints.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

import pytest
from runfixtures import mdl
from servers import Fault, HubServer, make_data

WEIGHTS = make_data(1_200_000, seed=11)
CONFIG = b'{"hidden_size": 8}'

CATALOG = """
[models.tiny]
description = "tiny test model"
repo = "org/tiny"

[models.multi]
files = [
  { repo = "org/tiny", path = "config.json", as = "cfg/config.json" },
  { repo = "org/tiny", path = "model.safetensors" },
]

[models.never]
repo = "org/never"
"""


@pytest.fixture
def world(
    hub: HubServer, catalog: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> dict[str, Path]:
    hub.add_repo("org/tiny", {"config.json": CONFIG, "model.safetensors": WEIGHTS})
    hub.add_repo("org/never", {"w.bin": b"never pulled"})
    catalog.write_text(CATALOG)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    return {"dest": tmp_path / "models", "cache": tmp_path / "hf-cache"}


def field(text: str, key: str) -> str:
    """The value of a ``key:   value`` line of ``mdl show``."""
    line = next(line for line in text.splitlines() if line.startswith(f"{key}:"))
    return line.split(":", 1)[1].strip()


# -- item: show prints the folder that exists, in either layout
# ----------------------------------------


def test_show_in_hf_cache_layout_prints_the_snapshot_folder(
    world: dict[str, Path], hub: HubServer
) -> None:
    cache = world["cache"]
    before = mdl("show", "tiny", "--layout", "hf-cache")
    assert before.exit_code == 0, before.stderr
    assert field(before.stdout, "dest") == str(cache / "models--org--tiny"), (
        "not pulled: the repo's folder"
    )

    assert mdl("pull", "tiny", "--layout", "hf-cache").exit_code == 0
    snapshot = cache / "models--org--tiny" / "snapshots" / hub.repo("org/tiny").sha
    text = mdl("show", "tiny", "--layout", "hf-cache")
    assert field(text.stdout, "dest") == str(snapshot)
    assert snapshot.is_dir() and not (world["dest"] / "tiny").exists()
    doc = json.loads(mdl("show", "tiny", "--layout", "hf-cache", "--json").stdout)["models"][0]
    assert doc["dest"] == str(snapshot)
    assert {f["path"]: f["dest"] for f in doc["files"]} == {
        "config.json": str(snapshot / "config.json"),
        "model.safetensors": str(snapshot / "model.safetensors"),
    }
    assert all(Path(f["dest"]).read_bytes() for f in doc["files"])
    plain = json.loads(mdl("show", "tiny", "--json").stdout)["models"][0]
    assert plain["dest"] == str(world["dest"] / "tiny"), "the plain layout keeps its own folder"


def test_show_of_files_renamed_in_the_cache_names_the_snapshot(
    world: dict[str, Path], hub: HubServer
) -> None:
    assert mdl("pull", "multi", "--layout", "hf-cache").exit_code == 0
    snapshot = world["cache"] / "models--org--tiny" / "snapshots" / hub.repo("org/tiny").sha
    doc = json.loads(mdl("show", "multi", "--layout", "hf-cache", "--json").stdout)["models"][0]
    assert doc["dest"] == str(snapshot)
    assert {f["path"]: f["dest"] for f in doc["files"]}["cfg/config.json"] == str(
        snapshot / "config.json"
    )


# -- item: one state vocabulary in show, list and pull --dry-run
# ----------------------------------------


def states(model: str) -> tuple[dict[str, str], dict[str, object], dict[str, tuple[str, str]]]:
    """(show's file states, list's entry, dry-run's action and reason per file) for one model."""
    shown = mdl("show", model, "--json")
    assert shown.exit_code == 0, shown.stderr
    show = {f["path"]: f["state"] for f in json.loads(shown.stdout)["models"][0]["files"]}
    listed = {m["name"]: m for m in json.loads(mdl("list", "--json").stdout)["models"]}[model]
    dry = mdl("pull", model, "--dry-run", "--json")
    assert dry.exit_code == 0, dry.stderr
    plan = {f["path"]: (f["action"], f["reason"]) for f in json.loads(dry.stdout)["files"]}
    return show, listed, plan


def test_same_size_edit_is_modified_in_show_list_and_dry_run(world: dict[str, Path]) -> None:
    assert mdl("pull", "tiny").exit_code == 0
    show, listed, plan = states("tiny")
    assert (
        set(show.values()) == {"installed"}
        and listed["status"] == "installed"
        and listed["unverified"] == 0
    )
    assert {action for action, _ in plan.values()} == {"skip"}

    weights = world["dest"] / "tiny" / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[10] ^= 0xFF
    weights.write_bytes(bytes(data))  # same size, new mtime: only a re-hash can tell
    os.utime(weights, ns=(weights.stat().st_atime_ns, weights.stat().st_mtime_ns + 1_000_000_000))
    show, listed, plan = states("tiny")
    assert show == {"config.json": "installed", "model.safetensors": "modified?"}
    assert listed["status"] == "installed" and listed["unverified"] == 1
    assert plan["model.safetensors"][0] == "check" and plan["model.safetensors"][1].startswith(
        "modified?"
    )
    assert plan["config.json"] == ("skip", "up to date")
    text = mdl("show", "tiny").stdout
    assert field(text, "status") == "installed (1 modified?); `mdl verify tiny` re-hashes them"
    assert re.search(r"model\.safetensors\s+modified\?", text)
    assert re.search(r"tiny\s+installed \(1 modified\?\)", mdl("list").stdout)
    assert [
        m["name"]
        for m in json.loads(mdl("list", "--status", "installed", "--json").stdout)["models"]
    ] == ["tiny"]

    weights.write_bytes(bytes(data) + b"more")  # another size: certainly not what was verified
    show, listed, plan = states("tiny")
    assert show["model.safetensors"] == "modified" and listed["status"] == "partial"
    assert plan["model.safetensors"][0] == "check" and plan["model.safetensors"][1].startswith(
        "modified ("
    )

    weights.unlink()
    show, listed, plan = states("tiny")
    assert show["model.safetensors"] == "missing" and listed["status"] == "partial"
    assert plan["model.safetensors"] == ("download", "missing")


def test_a_file_mdl_never_verified_is_unrecorded_everywhere(world: dict[str, Path]) -> None:
    target = world["dest"] / "multi" / "cfg" / "config.json"
    target.parent.mkdir(parents=True)
    target.write_bytes(CONFIG)  # put there by hand: present, never verified by mdl
    show, listed, plan = states("multi")
    assert show == {"cfg/config.json": "unrecorded", "model.safetensors": "missing"}
    assert listed["status"] == "partial"
    assert plan["cfg/config.json"][0] == "check" and plan["cfg/config.json"][1].startswith(
        "unrecorded"
    )
    assert plan["model.safetensors"] == ("download", "not downloaded yet")


def test_a_cut_download_is_partial_everywhere_and_dry_run_says_how_much_in_human_units(
    world: dict[str, Path], hub: HubServer
) -> None:
    hub.cdn.faults.add(Fault.reset(after_bytes=700_000))
    hub.cdn.faults.add(Fault.http_error(403, times=None))  # refused from then on: the partial stays
    assert mdl("pull", "multi").exit_code != 0
    hub.cdn.faults.clear()
    show, listed, plan = states("multi")
    assert show["model.safetensors"] == "partial" and listed["status"] == "partial"
    action, reason = plan["model.safetensors"]
    assert action == "resume" and re.fullmatch(
        r"\d+(\.\d+)? (KiB|MiB) already downloaded", reason
    ), reason
    text = mdl("pull", "multi", "--dry-run")
    assert text.exit_code == 0, text.stderr
    assert "already downloaded" in text.stdout and "MiB" in text.stdout
    assert not re.search(r"\d{4,} ?(bytes|B)\b", text.stdout), text.stdout


# -- item: verify of a model or file that is not on this disk
# ------------------------------------------


def test_verify_all_with_a_never_pulled_model_exits_4_and_verifies_the_rest(
    world: dict[str, Path],
) -> None:
    assert mdl("pull", "tiny").exit_code == 0
    result = mdl("verify", "tiny", "never", "--json")
    assert result.exit_code == 4, result.stderr
    doc = json.loads(result.stdout)
    assert doc["ok"] is False
    actions = {(f["model"], f["path"]): f["action"] for f in doc["files"]}
    assert actions == {
        ("tiny", "config.json"): "verified",
        ("tiny", "model.safetensors"): "verified",
        ("never", None): "missing",
    }
    never = next(f for f in doc["files"] if f["model"] == "never")
    assert "not on this disk" in never["error"]

    every = mdl("verify", "--all")  # multi is never pulled either
    assert every.exit_code == 4
    assert "never: not on this disk" in every.stderr and "run `mdl pull never`" in every.stderr
    assert "integrity" not in every.stderr.lower() and "sha256 mismatch" not in every.stderr


def test_verify_missing_file_and_corrupt_file_exit_4_and_say_which(world: dict[str, Path]) -> None:
    assert mdl("pull", "tiny").exit_code == 0
    (world["dest"] / "tiny" / "config.json").unlink()
    missing = mdl("verify", "tiny", "--json")
    assert missing.exit_code == 4
    by_path = {f["path"]: f for f in json.loads(missing.stdout)["files"]}
    assert (
        by_path["config.json"]["action"] == "missing"
        and by_path["model.safetensors"]["action"] == "verified"
    )

    weights = world["dest"] / "tiny" / "model.safetensors"
    weights.write_bytes(make_data(len(WEIGHTS), seed=99))
    both = mdl("verify", "tiny", "--json")
    assert both.exit_code == 4, "the lowest code above 1 wins: missing (4) before integrity (6)"
    actions = {f["path"]: f["action"] for f in json.loads(both.stdout)["files"]}
    assert actions == {"config.json": "missing", "model.safetensors": "failed"}

    assert mdl("pull", "tiny").exit_code == 0
    weights.write_bytes(make_data(len(WEIGHTS), seed=98))
    assert mdl("verify", "tiny").exit_code == 6, "corruption alone stays integrity"


def test_verify_off_a_terminal_writes_one_row_per_file_as_it_is_hashed(
    world: dict[str, Path],
) -> None:
    assert mdl("pull", "tiny").exit_code == 0
    result = mdl("verify", "tiny", "never")
    assert result.exit_code == 4
    config, weights = (hashlib.sha256(data).hexdigest() for data in (CONFIG, WEIGHTS))
    assert result.stdout.splitlines() == [
        f"verified  {config}  tiny/config.json",
        f"verified  {weights}  tiny/model.safetensors",
    ], "no header, fixed-width columns first: each row is final when written"
    assert "never: not on this disk" in result.stderr
