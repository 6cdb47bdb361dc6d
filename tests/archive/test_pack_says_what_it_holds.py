"""`mdl pack` says what the archive holds, one source of truth: the files packed, and what stderr
and `mdl-manifest.json` call left out, agree with the archive's entries (`--include` taking
checkpoints a whole-run pack leaves out); a repeated `--checkpoint` is refused, never the last one
kept silently; a cache in the run is left out, and said.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from profiles import examples
from runfixtures import TRAINING_STATE, make_hf_run, write
from runfixtures import mdl as run_mdl
from terminal import unstamped

import mdl
from mdl.archive.collect import (
    CACHE_REASON,
    CACHEDIR_SIGNATURE,
    DENY_REASON,
    GIT_REASON,
    PARTLY_REASON,
    RUN_LEVEL_REASON,
)
from mdl.cli.archive import SHOWN_LEFT_OUT
from mdl.errors import ExitCode


@pytest.fixture
def run_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MDL_LOG_FILE", str(tmp_path / "mdl.log"))
    return make_hf_run(tmp_path / "run", steps=(100, 200, 400)).root


def packed(*args: str) -> tuple[list[str], dict[str, object], dict[str, str]]:
    """Pack (`-o out.zip`, as a user would): the archive's files (below its top folder, the
    manifest aside), its manifest, and what stderr says was left out (path → reason)."""
    result = run_mdl("pack", *args, "-o", "out.zip")
    assert result.exit_code == 0, result.stderr
    with zipfile.ZipFile("out.zip") as archive:
        names = [n.split("/", 1)[1] for n in archive.namelist() if not n.endswith("/")]
        manifest = json.loads(archive.read("out/mdl-manifest.json"))
    said: dict[str, str] = {}
    for line in unstamped(result.stderr):
        if line.startswith("left out "):
            paths, _, reason = line.removeprefix("left out ").partition(": ")
            said |= dict.fromkeys(paths.split(", "), reason)
    return [n for n in names if n != "mdl-manifest.json"], manifest, said


def in_archive(path: str, names: list[str]) -> bool:
    """Whether ``path`` (a path in the run; a folder ends in "/") is in the archive, or some of it."""
    return any(n == path or n.startswith(path if path.endswith("/") else path + "/") for n in names)


def test_checkpoints_an_include_packs_are_not_said_left_out(run_dir: Path) -> None:
    names, manifest, said = packed(
        str(run_dir), "--include", "checkpoint-200/", "--include", "checkpoint-400/"
    )
    skipped = {item["path"]: item for item in manifest["skipped"]}  # type: ignore[attr-defined]
    # what the archive holds, the manifest lists: the same files
    assert sorted(f["path"] for f in manifest["files"]) == sorted(names)  # type: ignore[index]
    assert "checkpoint-200/model.safetensors" in names and "checkpoint-400/config.json" in names
    # ... and nothing it calls left out is in the archive
    assert not [path for path in skipped if in_archive(path, names)]
    assert "checkpoint-200/" not in skipped and "checkpoint-400/" not in skipped
    assert skipped["checkpoint-100/"]["reason"] == RUN_LEVEL_REASON
    assert str(manifest["reason"]).endswith(
        "; --include packs from checkpoint-200/, checkpoint-400/"
    )
    # the profile still left the included checkpoints' training state out: said, file by file
    for step in (200, 400):
        for name in TRAINING_STATE:
            assert skipped[f"checkpoint-{step}/{name}"]["reason"] == DENY_REASON
            assert f"checkpoint-{step}/{name}" not in names
    # stderr says what the manifest says (up to SHOWN_LEFT_OUT paths a reason; here all of one)
    assert said["checkpoint-100/"] == RUN_LEVEL_REASON
    assert "checkpoint-200/" not in said and "checkpoint-400/" not in said
    assert set(said) - {p for p in said if p.startswith("and ")} <= set(skipped)
    assert all(said[p] == skipped[p]["reason"] for p in said if p in skipped)
    assert sum(1 for item in skipped.values() if item["reason"] == DENY_REASON) > SHOWN_LEFT_OUT


def test_what_an_include_takes_of_a_checkpoint_in_part_leaves_the_rest_said(run_dir: Path) -> None:
    for n in range(3):
        write(run_dir / "checkpoint-200" / "samples" / f"{n}" / "step.png", b"png")
    names, manifest, said = packed(str(run_dir), "--include", "checkpoint-200/model.safetensors")
    skipped = {item["path"]: item for item in manifest["skipped"]}  # type: ignore[attr-defined]
    assert "checkpoint-200/model.safetensors" in names
    assert "checkpoint-200/" not in skipped
    rest = PARTLY_REASON.format(folder="checkpoint-200/")
    # a folder none of whose files is packed: said once, not file by file
    assert skipped["checkpoint-200/samples/"]["reason"] == rest
    assert not [path for path in skipped if path.startswith("checkpoint-200/samples/0")]
    assert skipped["checkpoint-200/config.json"]["reason"] == rest
    assert skipped["checkpoint-200/trainer_state.json"]["reason"] == rest
    assert skipped["checkpoint-200/optimizer.pt"]["reason"] == DENY_REASON
    assert not [path for path in skipped if in_archive(path, names)]
    assert said["checkpoint-200/config.json"] == rest


def test_a_checkpoint_latest_passed_over_but_included_is_not_said_passed_over(
    run_dir: Path,
) -> None:
    (run_dir / "checkpoint-400" / "model.safetensors").write_bytes(b"cut")  # incomplete
    names, manifest, _ = packed(
        str(run_dir), "--checkpoint", "latest", "--include", "checkpoint-400/", "--profile", "full"
    )
    assert manifest["checkpoint"] == "checkpoint-200"
    skipped = [item["path"] for item in manifest["skipped"]]  # type: ignore[attr-defined]
    assert "checkpoint-400/model.safetensors" in names
    assert "checkpoint-400/" not in skipped and "checkpoint-400" not in skipped
    assert not [path for path in skipped if in_archive(path, names)]


def test_the_rest_of_another_checkpoint_an_include_packs_from_is_said(run_dir: Path) -> None:
    """checkpoint-100 is neither chosen nor passed over by latest: what --include does not take of
    it (its weights, its training state) is said all the same."""
    names, manifest, said = packed(
        str(run_dir), "--checkpoint", "latest", "--include", "checkpoint-100/*.json"
    )
    assert manifest["checkpoint"] == "checkpoint-400" and "checkpoint-100/config.json" in names
    skipped = {item["path"]: item for item in manifest["skipped"]}  # type: ignore[attr-defined]
    rest = PARTLY_REASON.format(folder="checkpoint-100/")
    assert skipped["checkpoint-100/model.safetensors"]["reason"] == rest
    assert skipped["checkpoint-100/optimizer.pt"]["reason"] == DENY_REASON
    assert said["checkpoint-100/model.safetensors"] == rest
    assert str(manifest["reason"]).endswith("; --include packs from checkpoint-100/")
    assert not [path for path in skipped if in_archive(path, names)]


def test_a_repeated_checkpoint_is_exit_2_naming_the_flag(run_dir: Path, tmp_path: Path) -> None:
    result = run_mdl(
        "pack", str(run_dir), "--checkpoint", "checkpoint-200", "--checkpoint", "checkpoint-400"
    )
    assert result.exit_code == ExitCode.USAGE
    assert (
        "error: --checkpoint given 2 times ('checkpoint-200', 'checkpoint-400'): an archive holds"
        " one checkpoint as its model"
    ) in result.stderr
    assert "--include 'checkpoint-N/'" in result.stderr
    assert "Traceback" not in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mdl.log", "run"], "nothing written"


def test_one_checkpoint_still_packs(run_dir: Path) -> None:
    names, manifest, _ = packed(str(run_dir), "--checkpoint", "checkpoint-200")
    assert manifest["checkpoint"] == "checkpoint-200" and "model.safetensors" in names


def test_caches_in_a_run_are_left_out_and_said(run_dir: Path) -> None:
    write(run_dir / "cache" / "tokenized" / "shard-0.arrow", b"x" * 100)
    write(run_dir / "samples" / "__pycache__" / "gen.cpython-312.pyc", b"pyc")
    write(run_dir / "compile" / "CACHEDIR.TAG", CACHEDIR_SIGNATURE + b"\n# torch compile\n")
    write(run_dir / "compile" / "graph.bin", b"graph")
    write(run_dir / "notes" / "CACHEDIR.TAG", b"not the signature: not a cache\n")
    names, manifest, said = packed(str(run_dir))
    skipped = {item["path"]: item for item in manifest["skipped"]}  # type: ignore[attr-defined]
    for cache in ("cache/", "samples/__pycache__/", "compile/"):
        assert skipped[cache] == {"path": cache, "checkpoint": None, "reason": CACHE_REASON}
        assert said[cache] == CACHE_REASON
        assert not in_archive(cache, names)
    assert "notes/CACHEDIR.TAG" in names, "a tag without the signature marks no cache"


def test_an_include_packs_a_cache(run_dir: Path) -> None:
    write(run_dir / "cache" / "tokenized" / "shard-0.arrow", b"x" * 100)
    names, manifest, said = packed(str(run_dir), "--include", "cache/")
    skipped = [item["path"] for item in manifest["skipped"]]  # type: ignore[attr-defined]
    assert "cache/tokenized/shard-0.arrow" in names
    assert "cache/" not in skipped and "cache/" not in said
    assert not [path for path in skipped if in_archive(path, names)]


def test_a_runs_git_folder_is_left_out_and_said(run_dir: Path) -> None:
    write(run_dir / ".git" / "lfs" / "objects" / "ab" / "cd" / "abcd", b"a second copy")
    write(run_dir / ".gitattributes", b"*.safetensors filter=lfs\n")
    names, manifest, said = packed(str(run_dir))
    skipped = {item["path"]: item for item in manifest["skipped"]}  # type: ignore[attr-defined]
    assert skipped[".git/"]["reason"] == GIT_REASON and said[".git/"] == GIT_REASON
    assert not in_archive(".git/", names)
    assert ".gitattributes" in names, "git's files beside the model are packed, as before"


# -- whatever --include takes, nothing said left out is in the archive
# ------------------------------------------------------------------------------

_PATTERNS = st.sampled_from(
    [
        "checkpoint-200/",
        "checkpoint-400/model.safetensors",
        "checkpoint-*/config.json",
        "**/trainer_state.json",
        "*.json",
        "cache/",
        "cache/a/*",
        "checkpoint-100/tokenizer*",
        "samples/",
    ]
)


@pytest.fixture(scope="module")
def busy_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = make_hf_run(tmp_path_factory.mktemp("busy") / "run", steps=(100, 200, 400)).root
    write(root / "cache" / "a" / "x.arrow", b"x")
    write(root / "cache" / "b.arrow", b"y")
    write(root / "samples" / "step_100.png", b"png")
    return root


@settings(max_examples=examples(30), deadline=None)
@given(includes=st.lists(_PATTERNS, max_size=4, unique=True))
def test_nothing_said_left_out_is_in_the_archive(busy_run: Path, includes: list[str]) -> None:
    result = mdl.pack(busy_run, include=includes, dry_run=True)  # whole run: arcname = run path
    names = [f.path for f in result.files]
    skipped = [item["path"] for item in result.to_json()["skipped"]]
    assert not [path for path in skipped if in_archive(path, names)]
    assert len(set(skipped)) == len(skipped), "each said once"
    # a checkpoint folder nothing was taken from is still said whole
    for step in (100, 200, 400):
        folder = f"checkpoint-{step}/"
        if not in_archive(folder, names):
            assert folder in skipped


def test_a_link_into_a_checkpoint_counts_as_its_target(run_dir: Path) -> None:
    # logs/ck -> ../checkpoint-100: the whole run packed its weights through the link while saying
    # checkpoint-100/ was left out, and --with-logs took them as a log file
    (run_dir / "logs").mkdir(exist_ok=True)
    (run_dir / "logs" / "ck").symlink_to("../checkpoint-100")
    names, manifest, said = packed("run", "--with-logs")
    assert not in_archive("logs/ck/", names)
    assert said["checkpoint-100/"] == said["logs/ck/"] == RUN_LEVEL_REASON
    assert {"path": "logs/ck/", "checkpoint": "checkpoint-100", "reason": RUN_LEVEL_REASON} in (
        manifest["skipped"]  # type: ignore[operator]
    )
    Path("out.zip").unlink()
    names, _, said = packed("run", "--checkpoint", "checkpoint-200", "--with-logs")
    assert not any(n.startswith("logs/ck") for n in names)
    # an --include that names it takes it, and then checkpoint-100/ is not said left out
    Path("out.zip").unlink()
    names, _, said = packed("run", "--include", "logs/**")
    assert in_archive("logs/ck/", names) and "checkpoint-100/" not in said
