"""The action a run reports is what happened: ``resumed`` only when bytes of an earlier run were
kept.

A server that answers a ranged request with a whole 200 (Apache answering ``If-Range`` with an old
ETag, or ignoring ranges) makes mdl start over from zero: that file was ``downloaded``, not
``resumed``.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from runfixtures import mdl
from servers import CdnServer, Fault, make_data
from typer.testing import Result

from mdl.errors import ExitCode
from mdl.transfer._state import OVERLAP

DATA = make_data(3_000_000, seed=21)
CUT = 1_000_000


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def served(cdn: CdnServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("MDL_LOG_FILE", str(tmp_path / "mdl.log"))
    monkeypatch.chdir(tmp_path)
    return cdn.add_file("/files/weights.bin", DATA, etag='"v1"')


def cut_first_run(cdn: CdnServer, *args: str) -> None:
    """Run once with the body cut after CUT bytes and no retries: a partial download is kept."""
    cdn.faults.add(Fault.reset(after_bytes=CUT, path_prefix="/files/", times=None))
    first = mdl(*args, env={"MDL_RETRIES": "0"})
    cdn.faults.clear()
    assert first.exit_code == ExitCode.NETWORK, first.output


def action_of(result: Result) -> str:
    assert result.exit_code == 0, result.output
    [file] = json.loads(result.stdout)["files"]
    assert file["sha256"] == sha(DATA)
    return str(file["action"])


def test_get_resumed_when_the_server_honours_the_range(
    cdn: CdnServer, served: str, tmp_path: Path
) -> None:
    cut_first_run(cdn, "get", served, "-d", "out")
    cdn.log.clear()
    assert action_of(mdl("get", served, "-d", "out", "--json")) == "resumed"
    assert cdn.log.body_bytes(method="GET") < len(DATA)
    assert (tmp_path / "out" / "weights.bin").read_bytes() == DATA


def test_get_restarted_by_a_200_to_if_range_is_downloaded(
    cdn: CdnServer, served: str, tmp_path: Path
) -> None:
    cut_first_run(cdn, "get", served, "-d", "out")
    cdn.log.clear()
    # 200 and the whole body to every ranged request, whatever If-Range says (the probe's too).
    cdn.faults.add(Fault.full_body(path_prefix="/files/", times=None))
    result = mdl("get", served, "-d", "out", "--json")
    guarded = [r for r in cdn.log.records(method="GET") if r.if_range is not None]
    assert guarded and guarded[0].if_range == '"v1"', (
        "the resume asked for the rest, guarded by the old ETag"
    )
    # ... from a little before the bytes on disk: no hash checks this file, so the overlap is
    # compared (rule 15)
    assert guarded[0].range == f"bytes={CUT - OVERLAP}-{len(DATA) - 1}", guarded[0].range
    assert action_of(result) == "downloaded"
    assert (tmp_path / "out" / "weights.bin").read_bytes() == DATA


def test_get_restarted_because_the_etag_changed_is_downloaded(
    cdn: CdnServer, served: str, tmp_path: Path
) -> None:
    cut_first_run(cdn, "get", served, "-d", "out")
    # Re-uploaded with a new ETag after the probe: the ranged GET with If-Range "v1" gets the whole
    # new file.
    cdn.faults.add(
        Fault.call(
            lambda: cdn.add_file("/files/weights.bin", DATA, etag='"v2"'),
            path_prefix="/files/",
            skip=1,
        )
    )
    cdn.log.clear()
    assert action_of(mdl("get", served, "-d", "out", "--json")) == "downloaded"
    guarded = [r for r in cdn.log.records(method="GET") if r.if_range is not None]
    assert guarded and guarded[0].if_range == '"v1"' and guarded[0].status == 200


def test_pull_restarted_by_a_200_is_downloaded(cdn: CdnServer, served: str, tmp_path: Path) -> None:
    catalog = tmp_path / "catalog.toml"
    catalog.write_text(
        f'[models.w]\nfiles = [{{ url = "{served}", sha256 = "{sha(DATA)}", size = {len(DATA)}'
        " }]\n"
    )
    args = ("pull", "w", "--catalog", str(catalog), "--dest", str(tmp_path / "models"))
    cut_first_run(cdn, *args)
    cdn.faults.add(Fault.full_body(path_prefix="/files/", times=None))
    assert action_of(mdl(*args, "--json")) == "downloaded"
    assert (tmp_path / "models" / "w" / "weights.bin").read_bytes() == DATA
