"""What a pull says and records of Xet files: the Xet hash only a fetch by chunk checked (never the
listing's word alone), the bytes fetched and reused in the record and in ``show --json``; the summary and ``--json`` name
reused bytes only when there are some; --xet/--no-xet, MDL_XET and ``[settings] xet`` reach the run.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from runfixtures import mdl
from servers import HubServer, make_data

from mdl.catalog.settings import Settings
from mdl.cli.render.console import run_summary
from mdl.cli.summary import summary_line
from mdl.report import FileOutcome, RunReport

WEIGHTS = make_data(300_000, seed=11)
WEIGHTS_SHA = hashlib.sha256(WEIGHTS).hexdigest()
XET = "0123456789abcdef" * 4


@pytest.fixture
def tiny(hub: HubServer, catalog: Path) -> Path:
    hub.add_repo("org/tiny", {"config.json": b"{}\n", "model.safetensors": WEIGHTS})
    hub.xet_hashes[WEIGHTS_SHA] = XET
    catalog.write_text('[models.tiny]\nrepo = "org/tiny"\n')
    return catalog


def _show(name: str) -> dict[str, dict[str, object]]:
    result = mdl("show", name, "--json")
    assert result.exit_code == 0, result.stderr
    (model,) = json.loads(result.stdout)["models"]
    return {f["path"]: f for f in model["files"]}


def test_a_pulled_file_records_the_bytes_fetched_and_no_xet_hash_it_did_not_check(
    tiny: Path,
) -> None:
    """Fetched over plain HTTP, its Xet hash (the listing's) was checked against nothing: the
    record names none (a record's Xet hash binds it to the sha256: only a fetch by chunk writes
    one; tests/xet/test_hostile_xet.py)."""
    result = mdl("pull", "tiny", "--no-xet")
    assert result.exit_code == 0, result.stderr
    assert "reused" not in result.stderr  # nothing was
    files = _show("tiny")
    assert (files["model.safetensors"]["xet"], files["model.safetensors"]["fetched"]) == (
        None,
        len(WEIGHTS),
    )
    assert files["model.safetensors"]["reused"] == 0
    assert files["config.json"]["xet"] is None and files["config.json"]["fetched"] == 3
    record = json.loads((tiny.parent / "models" / ".mdl" / "records" / "tiny.json").read_text())
    assert (
        record["files"]["model.safetensors"] | {"reused": 0, "fetched": len(WEIGHTS)}
        == (record["files"]["model.safetensors"])
    )
    assert record["files"]["model.safetensors"].get("xet") is None
    # a re-check of the same bytes keeps how they came (the file found changed in time only)
    weights = tiny.parent / "models" / "tiny" / "model.safetensors"
    weights.touch()
    result = mdl("pull", "tiny", "--json")
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    assert "reused" not in doc and all("reused" not in f for f in doc["files"])
    assert _show("tiny")["model.safetensors"]["fetched"] == len(WEIGHTS)


def test_show_json_of_a_file_recorded_by_an_older_mdl_says_what_is_not_known(tiny: Path) -> None:
    assert mdl("pull", "tiny").exit_code == 0
    path = tiny.parent / "models" / ".mdl" / "records" / "tiny.json"
    record = json.loads(path.read_text())
    for entry in record["files"].values():
        del entry["xet"], entry["reused"], entry["fetched"]
    path.write_text(json.dumps(record))
    shown = _show("tiny")["model.safetensors"]
    assert (shown["state"], shown["xet"], shown["fetched"], shown["reused"]) == (
        "installed",
        None,
        None,
        0,
    )


@pytest.mark.slow
@pytest.mark.parametrize(
    ("args", "env", "catalog_line", "xet"),
    [
        ([], {}, "", True),
        (["--no-xet"], {}, "", False),
        (["--xet"], {"MDL_XET": "0"}, "", True),
        ([], {"MDL_XET": "off"}, "", False),
        ([], {}, "[settings]\nxet = false\n", False),
        ([], {"MDL_XET": "1"}, "[settings]\nxet = false\n", True),
        # huggingface_hub's own switch: as a variable, below --xet and MDL_XET, above the catalog
        ([], {"HF_HUB_DISABLE_XET": "1"}, "[settings]\nxet = true\n", False),
        (["--xet"], {"HF_HUB_DISABLE_XET": "1"}, "", True),
        ([], {"HF_HUB_DISABLE_XET": "1", "MDL_XET": "1"}, "", True),
        ([], {"HF_HUB_DISABLE_XET": "0"}, "", True),
    ],
)
def test_the_setting_reaches_the_run_from_a_flag_the_environment_and_the_catalog(
    tiny: Path,
    monkeypatch: pytest.MonkeyPatch,
    args: list[str],
    env: dict[str, str],
    catalog_line: str,
    xet: bool,
) -> None:
    from mdl.download import puller

    seen: list[Settings] = []

    def pull_models(_models: object, settings: Settings, **_: object) -> RunReport:
        seen.append(settings)
        return RunReport(())

    monkeypatch.setattr(puller, "pull_models", pull_models)
    tiny.write_text(catalog_line + '[models.tiny]\nrepo = "org/tiny"\n')
    result = mdl("pull", "tiny", *args, env=env)
    assert result.exit_code == 0, result.stderr
    assert [s.xet for s in seen] == [xet]


def test_a_bad_mdl_xet_is_a_usage_error_naming_it(tiny: Path) -> None:
    result = mdl("pull", "tiny", env={"MDL_XET": "maybe"})
    assert result.exit_code == 2 and "$MDL_XET" in result.stderr and "maybe" in result.stderr


def _outcome(path: str, fetched: int, reused: int) -> FileOutcome:
    return FileOutcome("tiny", path, f"/d/tiny/{path}", fetched + reused, "a" * 64, "downloaded", fetched=fetched,
                       reused=reused)  # fmt: skip


def test_the_summary_says_reused_bytes_only_when_some_were() -> None:
    plain = [_outcome("a", 1 << 20, 0)]
    assert summary_line(plain, verb="pulled", seconds=2.0).endswith("; 1.00 MiB in 2s")
    assert "reused" not in json.dumps(RunReport(tuple(plain)).to_json())
    assert "reused" not in run_summary(plain, seconds=2.0, text=None)
    upgraded = [*plain, _outcome("b", 1 << 20, 3 << 30)]
    line = summary_line(upgraded, verb="pulled", seconds=2.0)
    assert line.endswith("; 2.00 MiB fetched, 3.00 GiB reused from files already here in 2s"), line
    doc = RunReport(tuple(upgraded)).to_json()
    assert doc["reused"] == 3 << 30 and [f.get("reused") for f in doc["files"]] == [None, 3 << 30]
    assert run_summary(upgraded, seconds=2.0, text=None)["reused"] == 3 << 30
