"""`mdl get` of a job output whose file names hold folders (`samples/step_100.png`): saved below
`-d` in their folders, by the one rule unpack applies to an archive's names, never above `-d` nor
through a link planted there.

Through the real CLI against the loopback Hub stand-in's CDN (tests/servers.py) for the presigned
links; Hypothesis over names for the confinement.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from pathlib import Path
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from runfixtures import mdl
from servers import HubServer, make_data

from mdl.errors import ExitCode, UsageError
from mdl.paths import name_problem
from mdl.sources.joboutput import parse_job_output
from mdl.sources.oneoff import save_targets

PNG = make_data(5_000, seed=31)
GRID = make_data(7_000, seed=32)
LORA = make_data(300_000, seed=33)


def inline(name: str, data: bytes) -> dict[str, Any]:
    return {"type": "file_data", "filename": name, "data": base64.b64encode(data).decode()}


def redirect(name: str, url: str, data: bytes) -> dict[str, Any]:
    sha256 = hashlib.sha256(data).hexdigest()
    return {"type": "redirect", "url": url, "filename": name, "size": len(data), "sha256": sha256}


def tree(folder: Path) -> list[str]:
    """Every entry below ``folder``, relative and sorted (hidden ones included)."""
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*"))


@pytest.fixture
def env(hub: HubServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> HubServer:
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    monkeypatch.setenv("MDL_LOG_FILE", str(tmp_path / "mdl.log"))
    monkeypatch.chdir(tmp_path)
    return hub


def job_with_folders(hub: HubServer) -> dict[str, Any]:
    url = hub.cdn.add_file("/jobs/7/lora.safetensors", LORA, signed=True)
    files = [
        inline("samples/step_100.png", PNG),
        inline("samples/grid/step_200.png", GRID),
        redirect("weights/lora.safetensors", url, LORA),
    ]
    return {"id": "job-7", "status": "COMPLETED", "output": {"files": files}}


def test_a_job_outputs_folders_are_kept_below_d(env: HubServer, tmp_path: Path) -> None:
    job = json.dumps(job_with_folders(env))
    result = mdl("get", "-", "-d", "out", "--json", stdin=job)
    assert result.exit_code == 0, result.stderr
    out = tmp_path / "out"
    doc = json.loads(result.stdout)
    assert [(f["path"], f["action"], f["dest"]) for f in doc["files"]] == [
        ("samples/step_100.png", "downloaded", str(out / "samples" / "step_100.png")),
        ("samples/grid/step_200.png", "downloaded", str(out / "samples" / "grid" / "step_200.png")),
        ("weights/lora.safetensors", "downloaded", str(out / "weights" / "lora.safetensors")),
    ]
    assert (out / "samples" / "step_100.png").read_bytes() == PNG
    assert (out / "samples" / "grid" / "step_200.png").read_bytes() == GRID
    assert (out / "weights" / "lora.safetensors").read_bytes() == LORA
    assert tree(out) == [
        ".mdl",
        ".mdl/get.json",
        "samples",
        "samples/grid",
        "samples/grid/step_200.png",
        "samples/step_100.png",
        "weights",
        "weights/lora.safetensors",
    ], "no temp file left, nothing beside the files but get's record"
    # stdout (without --json) is where each file is, as for any get
    again = mdl("get", "-", "-d", "out", stdin=job)
    assert again.exit_code == 0, again.stderr
    assert again.stdout.split() == [
        str(out / "samples" / "step_100.png"),
        str(out / "samples" / "grid" / "step_200.png"),
        str(out / "weights" / "lora.safetensors"),
    ]


def test_a_second_get_of_a_job_with_folders_keeps_its_files(env: HubServer, tmp_path: Path) -> None:
    """The folder's record names a file by its path below -d: a file a get wrote in a folder is
    known as its own the next time (not refused as the user's)."""
    url = env.cdn.add_file("/jobs/8/b.bin", LORA, signed=True)
    job = json.dumps([{"type": "redirect", "url": url, "filename": "sub/b.bin"}])
    assert mdl("get", "-", "-d", "out", stdin=job).exit_code == 0
    again = mdl("get", "-", "-d", "out", "--json", stdin=job)
    assert again.exit_code == 0, again.stderr
    assert [f["action"] for f in json.loads(again.stdout)["files"]] == ["skipped"]
    assert (tmp_path / "out" / "sub" / "b.bin").read_bytes() == LORA


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("../x", "climbs out with '..'"),
        ("/etc/x", "absolute path"),
        ("a/../../x", "climbs out with '..'"),
        ("samples/../../x", "climbs out with '..'"),
        ("C:/x", "drive letter"),
        ("samples\\..\\..\\x", "backslash in name"),
        ("samples/a\x00b", "control character"),
        ("samples/.mdl/x", "a name mdl reserves"),
    ],
)
def test_a_hostile_folder_name_is_exit_2_naming_the_entry_and_nothing_is_written(
    env: HubServer, tmp_path: Path, name: str, why: str
) -> None:
    job = {"files": [inline("samples/ok.png", PNG), inline(name, b"evil")]}
    result = mdl("get", "-", "-d", "out", stdin=json.dumps(job))
    assert result.exit_code == ExitCode.USAGE, result.stderr
    line = next(line for line in result.stderr.splitlines() if "error:" in line)
    said = f"stdin.files[1].filename: must be a relative path inside the folder, got {name!r} ("
    assert said in line and why in line, line
    assert tree(tmp_path) == ["mdl.log"], "nothing written, no folder made"


@pytest.mark.parametrize(
    "names",
    [
        ["samples", "samples/step_100.png"],  # a file where a folder must be
        ["Samples/a.png", "samples/b.png"],  # one folder on macOS and Windows
        ["samples/caf\u00e9.png", "samples/cafe\u0301.png"],  # one file there too
    ],
)
def test_names_one_folder_cannot_hold_are_exit_2_before_anything_is_written(
    env: HubServer, tmp_path: Path, names: list[str]
) -> None:
    job = [inline(name, PNG) for name in names]
    result = mdl("get", "-", "-d", "out", stdin=json.dumps(job))
    assert result.exit_code == ExitCode.USAGE, result.stderr
    assert "stdin[1]" in result.stderr
    assert tree(tmp_path) == ["mdl.log"]


@pytest.mark.parametrize("kind", ["inline", "redirect"])
def test_a_link_planted_below_d_is_never_written_through(
    env: HubServer, tmp_path: Path, kind: str
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "samples").symlink_to(outside)
    url = env.cdn.add_file("/jobs/9/x.png", PNG, signed=True)
    item = inline("samples/x.png", PNG) if kind == "inline" else redirect("samples/x.png", url, PNG)
    result = mdl("get", "-", "-d", "out", stdin=json.dumps([item]))
    assert result.exit_code == ExitCode.USAGE, result.stderr
    assert "is a symbolic link; mdl never follows links inside" in result.stderr
    assert "Traceback" not in result.stderr
    assert list(outside.iterdir()) == [], "not a byte outside -d"


# -- the rule, over any name
# ------------------------------------------------------------------------------

# pieces a hostile or careless job joins into names: climbs, roots, drives, separators, controls,
# reserved names, Unicode twins
_PIECES = st.sampled_from(
    [
        "..",
        ".",
        "",
        "a",
        "samples",
        "step_1.png",
        "C:",
        "c:x",
        "\\",
        "..\\x",
        "\x00",
        "\n",
        "CON",
        "nul.txt",
        ".mdl",
        "x.",
        "x ",
        "\u202e",
        "caf\u00e9",
        "cafe\u0301",
        "~",
        "/",
    ]
)
_NAMES = st.one_of(
    st.lists(_PIECES, min_size=1, max_size=5).map("/".join), st.text(min_size=0, max_size=40)
)


@pytest.fixture(scope="module")
def below(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty folder for -d (looked at, never written: save_targets only checks)."""
    return tmp_path_factory.mktemp("out")


@given(name=_NAMES)
@example(name="../x")
@example(name="/etc/x")
@example(name="a/../../x")
@example(name="samples/step_100.png")
def test_a_job_output_name_lands_below_d_or_is_refused_by_unpacks_rule(
    below: Path, name: str
) -> None:
    directory = below
    doc = json.dumps([inline(name, b"x")])
    try:
        [item] = parse_job_output(doc, where="job.json")
        [target] = save_targets([item], output=None, directory=directory, force=False)
    except UsageError as exc:
        assert exc.exit_code == ExitCode.USAGE
        assert str(exc).startswith("job.json[0].filename: ")
        assert name_problem(name) is not None, "refused by the rule unpack applies, no other"
        return
    assert name_problem(name) is None, "what unpack refuses, get refuses"
    relative = target.relative_to(directory)  # below -d ...
    assert relative.as_posix() == name  # ... exactly where the job named it
    assert os.path.normpath(target) == str(target), "no '..' or '.' to fold"
    assert ".." not in relative.parts and not relative.is_absolute()
