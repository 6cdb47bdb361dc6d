"""The Python API (``from mdl import pull, …``) against the loopback Hub and CDN: bytes, reports,
errors, no output.
"""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from runfixtures import RecordingProgress, make_hf_run
from servers import TOKEN, CdnServer, HubServer, make_data

import mdl
from mdl import CatalogError, IntegrityError, MdlError, NotFoundError, UsageError
from mdl.errors import ExitCode

WEIGHTS = make_data(3_000_000, seed=21)
CONFIG = b'{"hidden_size": 8}'

CATALOG = """
[models.tiny]
description = "tiny test model"
tags = ["test"]
repo = "org/tiny"
include = ["*.json", "*.safetensors", "sub/*"]

[models.gone]
repo = "org/does-not-exist"
"""


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def world(hub: HubServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path | str]:
    """A Hub with one repo and a catalog naming it; cwd is an empty folder, nothing in os.environ
    points anywhere.
    """
    hub.add_repo(
        "org/tiny",
        {
            "config.json": CONFIG,
            "model.safetensors": WEIGHTS,
            "sub/vocab.txt": b"a\nb\n",
            "x.msgpack": b"no",
        },
    )
    catalog = tmp_path / "catalog.toml"
    catalog.write_text(CATALOG)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    return {"catalog": catalog, "dest": tmp_path / "models", "endpoint": hub.url}


def env(world: dict[str, Path | str], **extra: str) -> dict[str, str]:
    return {"HF_ENDPOINT": str(world["endpoint"]), **extra}


def test_pull_fetches_the_bytes_and_report_path_is_the_model_folder(
    world: dict[str, Path | str], capsys: pytest.CaptureFixture[str]
) -> None:
    report = mdl.pull("tiny", catalog=world["catalog"], dest=world["dest"], environ=env(world))
    assert report.ok and report.exit_code == 0
    folder = report.path("tiny")
    assert folder == Path(world["dest"]) / "tiny"
    assert (folder / "model.safetensors").read_bytes() == WEIGHTS
    assert (folder / "config.json").read_bytes() == CONFIG
    assert (folder / "sub" / "vocab.txt").read_bytes() == b"a\nb\n"
    assert not (folder / "x.msgpack").exists()
    assert {f.path: f.action for f in report.files} == {
        "config.json": "downloaded",
        "model.safetensors": "downloaded",
        "sub/vocab.txt": "downloaded",
    }
    assert {f.path: f.sha256 for f in report.files}["model.safetensors"] == sha(WEIGHTS)
    assert report.to_json()["ok"] is True

    again = mdl.pull("tiny", catalog=world["catalog"], dest=world["dest"], environ=env(world))
    assert {f.action for f in again.files} == {"skipped"}
    assert again.path("tiny") == folder
    assert capsys.readouterr() == ("", "")


def test_report_path_raises_the_models_own_error(world: dict[str, Path | str]) -> None:
    report = mdl.pull(
        "gone", "tiny", catalog=world["catalog"], dest=world["dest"], environ=env(world)
    )
    assert not report.ok
    assert report.exit_code == ExitCode.NOT_FOUND
    assert report.path("tiny").is_dir()
    with pytest.raises(NotFoundError) as caught:
        report.path("gone")
    assert caught.value.exit_code == 4 and "org/does-not-exist" in caught.value.message
    with pytest.raises(UsageError, match="not in this report"):
        report.path("never-asked")


def test_environ_is_honoured_and_read_at_call_time(
    world: dict[str, Path | str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MDL_DEST", str(tmp_path / "from-os-environ"))
    mine = env(world, MDL_DEST=str(tmp_path / "from-mapping"), MDL_CATALOG=str(world["catalog"]))
    report = mdl.pull("tiny", environ=mine)
    assert report.path("tiny") == tmp_path / "from-mapping" / "tiny"
    assert not (tmp_path / "from-os-environ").exists()

    # Without environ=, os.environ is read when the function is called, not when mdl was imported.
    monkeypatch.setenv("HF_ENDPOINT", str(world["endpoint"]))
    monkeypatch.setenv("MDL_CATALOG", str(world["catalog"]))
    assert mdl.pull("tiny").path("tiny") == tmp_path / "from-os-environ" / "tiny"

    # A broken setting in the mapping is the same usage error the CLI gives (exit code 2).
    with pytest.raises(UsageError, match=r"\$MDL_JOBS") as caught:
        mdl.pull("tiny", environ={**mine, "MDL_JOBS": "lots"})
    assert caught.value.exit_code == 2


def test_progress_receives_the_transfer(world: dict[str, Path | str]) -> None:
    progress = RecordingProgress()
    report = mdl.pull(
        "tiny", catalog=world["catalog"], dest=world["dest"], environ=env(world), progress=progress
    )
    assert report.ok
    assert progress.begun is not None and progress.begun[1] == 3
    assert len(progress.started) == 3
    assert progress.advanced == len(WEIGHTS) + len(CONFIG) + len(b"a\nb\n")


def test_verify_finds_a_corrupted_file(
    world: dict[str, Path | str], capsys: pytest.CaptureFixture[str]
) -> None:
    pulled = mdl.pull("tiny", catalog=world["catalog"], dest=world["dest"], environ=env(world))
    good = mdl.verify("tiny", catalog=world["catalog"], dest=world["dest"], environ={})
    assert good.ok and {f.action for f in good.files} == {"verified"}

    weights = pulled.path("tiny") / "model.safetensors"
    broken = bytearray(weights.read_bytes())
    broken[1000] ^= 0xFF  # same size: only the hash can tell
    weights.write_bytes(bytes(broken))
    bad = mdl.verify(all=True, catalog=world["catalog"], dest=world["dest"], environ={})
    # "gone" was never pulled: missing (4, "not found") wins over the corruption (6); each outcome
    # says which.
    assert not bad.ok and bad.exit_code == ExitCode.NOT_FOUND
    assert {f.model: f.action for f in bad.files if f.path is None} == {"gone": "missing"}
    failed = {f.path: f for f in bad.files if f.action == "failed"}
    assert "model.safetensors" in failed and failed["model.safetensors"].exit_code == 6
    with pytest.raises(IntegrityError):
        bad.path("tiny")
    assert capsys.readouterr() == ("", "")


def test_offline_views_list_show_resolve_clean(world: dict[str, Path | str]) -> None:
    where = {"catalog": world["catalog"], "dest": world["dest"], "environ": env(world)}
    assert [(m.spec.name, m.status) for m in mdl.list_models(**where).models] == [
        ("tiny", "missing"),
        ("gone", "missing"),
    ]
    mdl.pull("tiny", **where)
    listing = mdl.list_models(status="installed", **where)
    assert [m.spec.name for m in listing.models] == ["tiny"]
    assert listing.to_json()["dest"] == str(world["dest"])
    info = mdl.show("tiny", **where)
    assert info.folder == Path(world["dest"]) / "tiny" and info.status.status == "installed"
    resolved = mdl.resolve("tiny", **where)
    assert resolved.ok
    files = {f["path"]: f for f in resolved.models[0]["files"]}
    assert files["model.safetensors"]["sha256"] == sha(WEIGHTS)
    failed = mdl.resolve("gone", **where)
    assert not failed.ok and failed.exit_code == 4
    assert mdl.clean(**where).to_json() == {"ok": True, "dry_run": False, "freed": 0, "files": []}
    with pytest.raises(UsageError, match="not both"):
        mdl.pull("tiny", all=True, **where)
    with pytest.raises(UsageError, match="nope"):
        mdl.show("nope", **where)
    with pytest.raises(UsageError, match="status"):
        mdl.list_models(status="gone", **where)


def test_catalog_accepts_a_loaded_catalog(world: dict[str, Path | str]) -> None:
    catalog = mdl.load_catalog(world["catalog"])
    assert [m.name for m in catalog.models] == ["tiny", "gone"]
    report = mdl.pull("tiny", catalog=catalog, dest=world["dest"], environ=env(world))
    assert report.path("tiny").is_dir()


def test_load_catalog_errors_carry_exit_code_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(CatalogError, match="catalog not found") as caught:
        mdl.load_catalog(tmp_path / "missing.toml")
    assert caught.value.exit_code == ExitCode.USAGE == 2
    assert isinstance(caught.value, MdlError)

    broken = tmp_path / "broken.toml"
    broken.write_text('[models.x]\nrepo = "a/b"\nfiles = [{ url = "https://x/y" }]\n')
    with pytest.raises(CatalogError) as caught:
        mdl.load_catalog(broken)
    assert caught.value.exit_code == 2 and "models.x" in caught.value.message

    typo = tmp_path / "typo.toml"
    typo.write_text('[models.x]\nrepo = "a/b"\nrevison = "v1"\n')
    with pytest.raises(CatalogError, match="revision"):
        mdl.load_catalog(typo)

    with pytest.raises(UsageError, match="no catalog found") as caught:
        # no catalog.toml here, and the (isolated) user config dir is empty
        mdl.load_catalog(environ={})
    assert caught.value.exit_code == 2

    ok = tmp_path / "ok.toml"
    ok.write_text('[models.y]\nrepo = "a/b"\n')
    assert [m.name for m in mdl.load_catalog(environ={"MDL_CATALOG": str(ok)}).models] == ["y"]


def test_get_fetches_a_url_and_checks_its_hash(
    cdn: CdnServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    data = make_data(500_000, seed=4)
    url = cdn.add_file("/files/lora.safetensors", data)
    report = mdl.get(url, directory=tmp_path / "dl", sha256=sha(data), environ={})
    assert report.ok
    assert (tmp_path / "dl" / "lora.safetensors").read_bytes() == data
    assert [(f.path, f.action, f.sha256) for f in report.files] == [
        ("lora.safetensors", "downloaded", sha(data))
    ]

    wrong = mdl.get(url, output=tmp_path / "other.bin", sha256="ab" * 32, environ={})
    assert not wrong.ok and wrong.exit_code == ExitCode.INTEGRITY
    assert not (tmp_path / "other.bin").exists()
    with pytest.raises(UsageError, match="not both"):
        mdl.get(url, output=tmp_path / "a", directory=tmp_path / "b")
    assert capsys.readouterr() == ("", "")


def test_pack_and_unpack_round_trip(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    run = make_hf_run(tmp_path / "bert-run", steps=(100, 200), best_step=200)
    progress = RecordingProgress()
    packed = mdl.pack(run.root, output=tmp_path / "best.zip", checkpoint="best", progress=progress)
    assert packed.checkpoint == "checkpoint-200"
    archive = tmp_path / "best.zip"
    assert packed.sha256 == sha(archive.read_bytes())
    names = {f.path for f in packed.files}
    assert "model.safetensors" in names and "optimizer.pt" not in names
    assert progress.advanced > 0

    unpacked = mdl.unpack(archive, dest=tmp_path / "deploy")
    assert unpacked.manifest and unpacked.top_level == (packed.top_folder,)
    model = tmp_path / "deploy" / packed.top_folder
    assert {f.path for f in unpacked.files} == {f"{packed.top_folder}/{n}" for n in names} | {
        f"{packed.top_folder}/mdl-manifest.json"
    }
    for name in names:
        assert (model / name).read_bytes() == (run.ckpt("checkpoint-200") / name).read_bytes()

    with pytest.raises(UsageError, match="archive not found"):
        mdl.unpack(tmp_path / "nope.zip")
    assert capsys.readouterr() == ("", "")


def test_pack_honours_source_date_epoch_and_writes_to_a_stream(tmp_path: Path) -> None:
    run = make_hf_run(tmp_path / "run", steps=(100,))
    fixed = {"SOURCE_DATE_EPOCH": "1700000000"}
    first, second = io.BytesIO(), io.BytesIO()
    mdl.pack(run.root, stream=first, checkpoint="latest", environ=fixed)
    mdl.pack(run.root, stream=second, checkpoint="latest", environ=fixed)
    assert first.getvalue() == second.getvalue()
    with zipfile.ZipFile(first) as zf:
        assert zf.testzip() is None
        assert {info.date_time[0] for info in zf.infolist()} == {2023}
    with pytest.raises(UsageError, match="SOURCE_DATE_EPOCH"):
        mdl.pack(run.root, stream=io.BytesIO(), environ={"SOURCE_DATE_EPOCH": "soon"})
    with pytest.raises(UsageError, match="run folder not found"):
        mdl.pack(tmp_path / "missing", output=tmp_path / "x.zip")


def test_import_mdl_is_light() -> None:
    code = (
        "import sys, mdl; heavy = ('huggingface_hub', 'httpx2', 'rich', 'typer', 'pydantic');"
        "before = [m for m in heavy if m in sys.modules]; mdl.pull; mdl.MdlError;"
        "after = [m for m in heavy if m in sys.modules];"
        "print(before, after, 'mdl.api' in sys.modules, sorted(set(mdl.__all__) - set(dir(mdl))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[] [] True []"
    with pytest.raises(AttributeError):
        _ = mdl.no_such_thing


@pytest.mark.slow
def test_a_call_leaves_loggers_as_it_found_them(
    world: dict[str, Path | str], tmp_path: Path
) -> None:
    """huggingface_hub installs a stderr handler on its logger when it is first imported, which a
    call of mdl's may be (a pull builds Hub URLs with it): mdl takes it off again, and its own
    logger has only a NullHandler (issue 27). A token stored by `hf auth login` is read with the
    library's get_token, whose module sets that logging up: the case here."""
    stored = tmp_path / "hf-token"
    stored.write_text(TOKEN)
    code = f"""
import logging, sys
import mdl
names = ("", "huggingface_hub")
before = {{n: (list(logging.getLogger(n).handlers), logging.getLogger(n).level) for n in names}}
assert "huggingface_hub" not in sys.modules
report = mdl.pull("tiny", catalog={str(world["catalog"])!r}, dest={str(world["dest"])!r},
                  environ={{"HF_ENDPOINT": {str(world["endpoint"])!r}}})
assert report.ok, report.to_json()
assert "huggingface_hub.utils.logging" in sys.modules, "the call set up huggingface_hub's logging (the case here)"
after = {{n: (list(logging.getLogger(n).handlers), logging.getLogger(n).level) for n in names}}
assert after == before, (before, after)
assert [type(h).__name__ for h in logging.getLogger("mdl").handlers] == ["NullHandler"]
"""
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env={**os.environ, "HF_TOKEN_PATH": str(stored)},
    )
    assert done.returncode == 0, done.stderr


def test_the_reports_the_api_returns_have_annotations_that_resolve() -> None:
    """What a call returns can be given to tools that read its fields' types (cattrs, pydantic's
    TypeAdapter): every annotation of the result types names a type that exists at run time."""
    import typing

    from mdl.report import ExtraFile, FileOutcome, RunReport
    from mdl.resolution import Resolution

    assert typing.get_type_hints(RunReport)["extra"] == tuple[ExtraFile, ...]
    assert typing.get_type_hints(Resolution)["failures"] == tuple[FileOutcome, ...]


def test_every_report_has_ok_exit_code_and_ok_in_its_json(tmp_path: Path) -> None:
    """docs/python-api.md: "Every report has .ok, .exit_code … and .to_json()" (the --json
    document, which has ``ok``), those of commands that raise what fails them too."""
    catalog = tmp_path / "catalog.toml"
    catalog.write_text('[models.a]\nfiles = [{ url = "https://127.0.0.1:9/a.bin" }]\n')
    run = tmp_path / "run"
    run.mkdir()
    (run / "model.safetensors").write_bytes(b"x")
    dest = tmp_path / "m"
    reports = [
        mdl.clean(catalog=catalog, dest=dest),
        mdl.prune(catalog=catalog, dest=dest, dry_run=True),
        mdl.list_models(catalog=catalog, dest=dest),
        mdl.show("a", catalog=catalog, dest=dest),
        mdl.pack(run, output=tmp_path / "o.zip"),
        mdl.unpack(tmp_path / "o.zip", dest=tmp_path / "u"),
    ]
    for report in reports:
        assert (report.ok, report.exit_code) == (True, 0), report
        assert report.to_json()["ok"] is True, report
