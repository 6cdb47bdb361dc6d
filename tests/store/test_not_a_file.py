"""Issue 27: only regular files are read or replaced.

A FIFO, a socket, a device or a folder where mdl must read, hash or replace a file — a `get` target,
a pulled file in either layout, a record, a resume record, `pack -o`, an `unpack` target, a file
`verify` hashes — is looked at with `lstat` first (never opened, so never a hang): `get`, `pack`,
`unpack` and `verify` say exit 7 naming the path and its kind; `--force` replaces a FIFO, socket or
device like a file, never a folder (nor, for `get` and `pack`, a device). Where mdl owns the place
(a model folder, a record, a resume record), `pull` replaces the entry with a warning naming it, as
it repairs a damaged file. Never exit 1, never a traceback, and nothing but the target is changed.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from planted import KINDS, kind_at, no_hang, plant, snapshot
from runfixtures import HANG, make_hf_run, mdl
from servers import HubServer, make_data
from typer.testing import Result

from mdl.paths import shown_path
from mdl.store.store import Store

CONFIG = b'{"model_type": "bert"}\n'
WEIGHTS = make_data(200_000, seed=27)
FILES = {"config.json": CONFIG, "model.safetensors": WEIGHTS}
ABC = b"abc" * 1000
REPLACEABLE = ["fifo", "socket", "device"]
ALL = [*REPLACEABLE, "folder"]


class World:
    """A destination, a folder for `get`, a catalog naming one Hub model, and a way to run mdl
    that cannot hang.
    """

    def __init__(self, root: Path, hub: HubServer) -> None:
        self.root = root
        self.dest = root / "dest"
        self.out = root / "out"
        self.cache = root / "hf-cache"
        self.catalog = root / "catalog.toml"
        self.catalog.write_text('[models.tiny]\nrepo = "org/tiny"\n')
        self.url = hub.cdn.add_file("/files/abc.bin", ABC)

    def source(self, which: str) -> str:
        """abc.bin from the CDN (url) or inline in a job's output (job); config.json from the Hub
        (hf).
        """
        if which == "job":
            data = base64.b64encode(ABC).decode()
            job = {"type": "file_data", "filename": "abc.bin", "data": data, "size": len(ABC)}
            (self.root / "job.json").write_text(json.dumps(job))
            return "job.json"
        return self.url if which == "url" else "hf://org/tiny/config.json"

    def mdl(self, *args: str) -> Result:
        with no_hang(self.root, HANG, f"mdl {' '.join(args)}"):
            return mdl(*args, "--no-progress")

    def pull(self, *args: str) -> Result:
        return self.mdl(
            "pull", "tiny", "--catalog", str(self.catalog), "--dest", str(self.dest), *args
        )

    def verify(self, *args: str) -> Result:
        return self.mdl(
            "verify", "tiny", "--catalog", str(self.catalog), "--dest", str(self.dest), *args
        )


@pytest.fixture
def world(hub: HubServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    hub.add_repo("org/tiny", FILES)
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.setenv("MDL_LOG_FILE", str(tmp_path / "mdl.log"))
    monkeypatch.chdir(tmp_path)
    yield World(tmp_path, hub)


def shown(result: Result) -> str:
    crash = (
        ""
        if result.exception is None or isinstance(result.exception, SystemExit)
        else repr(result.exception)
    )
    return result.stdout + result.stderr + crash


def refused(result: Result, path: Path, kind: str, *, code: int = 7) -> str:
    """Exit `code`, naming `path` and what it is; never a traceback."""
    text = shown(result)
    assert "Traceback" not in text and "internal error" not in text.lower(), text
    assert result.exit_code == code, f"exit {result.exit_code}\n{text}"
    assert f"{shown_path(path)} is {KINDS[kind]}" in text, text
    return text


def succeeded(result: Result) -> str:
    text = shown(result)
    assert result.exit_code == 0 and "Traceback" not in text, f"exit {result.exit_code}\n{text}"
    return text


def visible(root: Path) -> dict[str, object]:
    """What is below `root` but mdl's own state folder (`.mdl/`) and its log."""
    own = ("", ".mdl", "mdl.log", "job.json")  # "": the root itself, whose mtime the log changes
    return {k: v for k, v in snapshot(root).items() if k not in own and not k.startswith(".mdl/")}


def logged(world: World) -> str:
    return (world.root / "mdl.log").read_text()


# -- get: the user's folder: refused (exit 7) unless --force, and a folder or a device is never
# replaced ---------


@pytest.mark.slow
@pytest.mark.parametrize("kind", ALL)
@pytest.mark.parametrize("sha", [False, True])
@pytest.mark.parametrize("source", ["url", "hf", "job"])
def test_get_refuses_an_entry_that_is_not_a_file(
    world: World, kind: str, sha: bool, source: str
) -> None:
    data, name = (CONFIG, "config.json") if source == "hf" else (ABC, "abc.bin")
    target = world.out / name
    plant(target, kind)
    before = visible(world.root)
    args = [world.source(source), "-d", str(world.out)]
    if sha:
        args += ["--sha256", hashlib.sha256(data).hexdigest()]
    text = refused(world.mdl("get", *args), target, kind)
    assert ("--force" in text) is (kind in ("fifo", "socket"))
    assert visible(world.root) == before


@pytest.mark.slow
@pytest.mark.parametrize("kind", ALL)
@pytest.mark.parametrize("source", ["url", "job"])
def test_get_force_replaces_a_fifo_or_socket_never_a_folder_or_device(
    world: World, kind: str, source: str
) -> None:
    target = world.out / "abc.bin"
    plant(target, kind)
    result = world.mdl("get", world.source(source), "-d", str(world.out), "--force", "--json")
    if kind in ("fifo", "socket"):
        succeeded(result)
        assert kind_at(target) == "file" and target.read_bytes() == ABC
        assert '"reason": "--force"' in result.stdout
    else:
        refused(result, target, kind)
        assert kind_at(target) == kind


@pytest.mark.parametrize("kind", REPLACEABLE)
def test_get_dash_o_onto_an_entry_that_is_not_a_file(world: World, kind: str) -> None:
    target = world.root / "abc.out"
    plant(target, kind)
    refused(world.mdl("get", world.url, "-o", str(target)), target, kind)
    assert kind_at(target) == kind


@pytest.mark.parametrize("kind", ["fifo", "socket", "folder"])
def test_get_record_that_is_not_a_file(world: World, kind: str) -> None:
    """get's own record (`DIR/.mdl/get.json`): a FIFO or socket is ignored and replaced, a folder
    is exit 7.
    """
    record = Store(world.out).record_path("")
    plant(record, kind)
    result = world.mdl("get", world.url, "-d", str(world.out))
    if kind == "folder":
        refused(result, record, kind)
    else:
        succeeded(result)
        assert f"{shown_path(record)} is {KINDS[kind]}" in logged(
            world
        )  # as a damaged record is: ignored, said in the log
        assert (world.out / "abc.bin").read_bytes() == ABC and kind_at(record) == "file"


# -- pull: mdl's own folders: the entry is replaced (a warning names it); a folder is exit 7
# ---------------------


def final_paths(world: World, layout: str) -> dict[str, Path]:
    """config.json's entries after a pull: its file (plain), or its blob and its snapshot link
    (hf-cache).
    """
    if layout == "plain":
        return {"file": world.dest / "tiny" / "config.json"}
    link = next(world.cache.glob("models--org--tiny/snapshots/*/config.json"))
    return {"blob": Path(os.path.normpath(link.parent / os.readlink(link))), "link": link}


@pytest.mark.slow
@pytest.mark.parametrize("kind", ALL)
@pytest.mark.parametrize(
    ("layout", "entry"), [("plain", "file"), ("hf-cache", "blob"), ("hf-cache", "link")]
)
def test_pull_replaces_an_entry_where_its_file_goes_but_never_a_folder(
    world: World, kind: str, layout: str, entry: str
) -> None:
    succeeded(world.pull("--layout", layout))
    target = final_paths(world, layout)[entry]
    target.unlink()
    plant(target, kind)
    result = world.pull("--layout", layout)
    if kind == "folder":
        refused(result, target, kind)
        assert kind_at(target) == "folder"
        return
    text = succeeded(result)
    assert f"{shown_path(target)} is {KINDS[kind]}" in text  # said, then replaced
    assert kind_at(target) == ("link" if entry == "link" else "file")
    assert (
        (final_paths(world, layout)["blob" if layout == "hf-cache" else "file"]).read_bytes()
        == CONFIG
    )
    succeeded(world.verify("--layout", layout))


@pytest.mark.parametrize("kind", ["fifo", "socket", "folder"])
def test_a_model_record_that_is_not_a_file(world: World, kind: str) -> None:
    record = Store(world.dest).record_path("tiny")
    plant(record, kind)
    verify = world.verify()
    refused(verify, record, kind)
    result = world.pull()
    if kind == "folder":
        refused(result, record, kind)
        return
    succeeded(result)
    # as a damaged record is: ignored, said in the log
    assert f"{shown_path(record)} is {KINDS[kind]}" in logged(world)
    assert kind_at(record) == "file"
    succeeded(world.verify())


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["fifo", "socket", "folder"])
@pytest.mark.parametrize("which", ["state", "part"])
def test_a_resume_record_or_partial_that_is_not_a_file(world: World, kind: str, which: str) -> None:
    part, state = Store(world.dest).part_paths("tiny", "model.safetensors")
    target = state if which == "state" else part
    plant(target, kind)
    if which == "part":  # a resume record beside it, so that the partial is looked at
        state.write_text('{"version": 1}')
    result = world.pull()
    if kind == "folder":
        refused(result, target, kind)
        assert kind_at(target) == "folder"
        return
    succeeded(result)
    assert (world.dest / "tiny" / "model.safetensors").read_bytes() == WEIGHTS
    assert kind_at(target) is None  # replaced, then removed once the file was finished


# -- verify: a model file that is not a file is exit 7 naming it
# -------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("kind", ALL)
@pytest.mark.parametrize(
    ("layout", "entry"), [("plain", "file"), ("hf-cache", "blob"), ("hf-cache", "link")]
)
def test_verify_names_a_model_file_that_is_not_a_file(
    world: World, kind: str, layout: str, entry: str
) -> None:
    succeeded(world.pull("--layout", layout))
    target = final_paths(world, layout)[entry]
    target.unlink()
    plant(target, kind)
    before = snapshot(world.root / ("dest" if layout == "plain" else "hf-cache"))
    text = refused(world.verify("--layout", layout, "--json"), target, kind)
    assert '"path": "config.json"' in text
    after = snapshot(world.root / ("dest" if layout == "plain" else "hf-cache"))
    assert {k for k in after if ".mdl" not in k and ".locks" not in k} == {
        k for k in before if ".mdl" not in k and ".locks" not in k
    }
    assert kind_at(target) == kind


# -- pack -o and unpack
# ------------------------------------------------------------------------------------------


@pytest.fixture
def run_dir(world: World) -> Path:
    make_hf_run(world.root / "run", steps=(100,))
    return world.root / "run"


@pytest.mark.parametrize("kind", ALL)
def test_pack_output_that_is_not_a_file(world: World, run_dir: Path, kind: str) -> None:
    target = world.root / "out.zip"
    plant(target, kind)
    pack = ("pack", str(run_dir), "--checkpoint", "latest", "-o", str(target))
    code = 2 if kind == "folder" else 7  # `-o FOLDER` is a usage error, as for `get -o FOLDER`
    refused(world.mdl(*pack), target, kind, code=code)
    assert kind_at(target) == kind
    forced = world.mdl(*pack, "--force")
    if kind in ("fifo", "socket"):
        succeeded(forced)
        assert kind_at(target) == "file"
    else:
        refused(forced, target, kind, code=code)
        assert kind_at(target) == kind


@pytest.mark.parametrize("kind", ALL)
def test_pack_partial_output_that_is_not_a_file(world: World, run_dir: Path, kind: str) -> None:
    """`OUT.zip.partial`, where the archive is written before its rename: a FIFO there would
    swallow it.
    """
    partial = world.root / "out.zip.partial"
    plant(partial, kind)
    pack = (
        "pack",
        str(run_dir),
        "--checkpoint",
        "latest",
        "-o",
        str(world.root / "out.zip"),
        "--force",
    )
    refused(world.mdl(*pack), partial, kind)
    assert kind_at(partial) == kind and kind_at(world.root / "out.zip") is None


@pytest.mark.slow
@pytest.mark.parametrize("kind", ALL)
def test_unpack_onto_an_entry_that_is_not_a_file(world: World, run_dir: Path, kind: str) -> None:
    archive = world.root / "model.zip"
    succeeded(world.mdl("pack", str(run_dir), "--checkpoint", "latest", "-o", str(archive)))
    into = world.root / "into"
    target = into / "model"
    plant(target, kind)
    before = snapshot(into)
    result = world.mdl("unpack", str(archive), "-d", str(into))
    # a folder that is not empty: exit 2, as documented, and --force replaces it
    if kind == "folder":
        assert result.exit_code == 2 and str(target) in shown(result), shown(result)
    else:
        refused(result, target, kind)
    assert snapshot(into) == before
    succeeded(world.mdl("unpack", str(archive), "-d", str(into), "--force"))
    assert kind_at(target) == "folder" and (target / "mdl-manifest.json").is_file()


@pytest.mark.parametrize("kind", REPLACEABLE)
def test_unpack_into_a_dir_that_is_not_a_folder(world: World, run_dir: Path, kind: str) -> None:
    archive = world.root / "model.zip"
    succeeded(world.mdl("pack", str(run_dir), "--checkpoint", "latest", "-o", str(archive)))
    into = world.root / "into"
    plant(into, kind)
    refused(world.mdl("unpack", str(archive), "-d", str(into)), into, kind)
    assert kind_at(into) == kind
