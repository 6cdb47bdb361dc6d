"""``mdl pack`` on broken or hostile run folders: every failure is a documented exit code naming the
file, and non-finite metrics never reach JSON (findings 10 and 11)."""

from __future__ import annotations

import json
import os
import subprocess
import zipfile
from pathlib import Path
from typing import Any

import pytest
from runfixtures import make_hf_run, write
from zygote import forked_mdl

from mdl.archive.packer import PackOptions, PackResult, pack_run, select_checkpoint
from mdl.errors import ExitCode, MdlError, UsageError
from mdl.progress import NullProgress


def pack(root: Path, checkpoint: str | None, output: str = "out.zip") -> PackResult:
    options = PackOptions(run_dir=Path("run"), output=Path(output), checkpoint=checkpoint, cwd=root)
    return pack_run(options, progress=NullProgress())


def refused(root: Path, checkpoint: str | None, *words: str) -> MdlError:
    with pytest.raises(MdlError) as err:
        pack(root, checkpoint)
    assert err.value.exit_code == ExitCode.USAGE, err.value.message
    for word in words:
        assert word in err.value.message
    assert not (root / "out.zip").exists()
    return err.value


def strict_json(text: str | bytes) -> Any:
    def no_constants(name: str) -> Any:
        raise ValueError(f"{name} is not JSON")

    return json.loads(text, parse_constant=no_constants)


def set_state(run: Path, **changes: Any) -> None:
    for path in run.rglob("trainer_state.json"):
        state = json.loads(path.read_text())
        state.update(changes)
        path.write_text(json.dumps(state))


def test_an_unreadable_trainer_state_is_exit_2_naming_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_hf_run(tmp_path / "run", steps=(100, 200))
    real_open = os.open

    def deny(path: Any, flags: int, *args: Any, **kwargs: Any) -> int:
        if str(path).endswith("trainer_state.json"):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", deny)  # chmod 000 does not stop root
    refused(tmp_path, "best", "trainer_state.json", "Permission denied")


@pytest.mark.parametrize(
    "weights", ["model.safetensors", "pytorch_model.bin", "adapter_model.safetensors"]
)
def test_a_dangling_weights_link_under_latest_is_exit_2_naming_it(
    tmp_path: Path, weights: str
) -> None:
    run = make_hf_run(tmp_path / "run", steps=(100, 200))
    folder = run.root / "checkpoint-200"
    (folder / "model.safetensors").unlink()
    (folder / weights).symlink_to("gone.bin")
    refused(tmp_path, "latest", f"checkpoint-200/{weights}", "dangling")


def test_json_nested_100k_deep_is_exit_2_naming_the_file(tmp_path: Path) -> None:
    run = make_hf_run(tmp_path / "run", steps=(100, 200))
    for path in run.root.rglob("trainer_state.json"):
        path.write_text("[" * 100_000 + "]" * 100_000)
    refused(tmp_path, "best", "trainer_state.json", "nested too deeply")
    index = run.root / "checkpoint-200" / "model.safetensors.index.json"
    write(index, '{"weight_map": ' * 50_000 + "{}" + "}" * 50_000)
    refused(tmp_path, "checkpoint-200", "model.safetensors.index.json", "nested too deeply")


def test_a_safetensors_header_nested_too_deeply_is_just_not_complete(tmp_path: Path) -> None:
    run = make_hf_run(tmp_path / "run", steps=(100,))
    header = b"[" * 60_000 + b"]" * 60_000
    write(
        run.root / "checkpoint-100" / "model.safetensors",
        len(header).to_bytes(8, "little") + header,
    )
    refused(tmp_path, "latest", "no complete checkpoint", "header is not JSON")


@pytest.mark.parametrize("literal", ["1e400", "-1e400", "1" + "0" * 400])
def test_a_best_metric_out_of_range_is_exit_2_naming_the_file(tmp_path: Path, literal: str) -> None:
    run = make_hf_run(tmp_path / "run", steps=(100, 200))
    for path in run.root.rglob("trainer_state.json"):
        path.write_text(
            path.read_text().replace('"best_metric": 0.25', f'"best_metric": {literal}')
        )
    refused(tmp_path, "best", "trainer_state.json", "out of range")


@pytest.mark.parametrize(
    "name", ["model.safetensors.index.json", "adapter_model.safetensors.index.json"]
)
def test_a_folder_named_like_an_index_is_exit_2_naming_it(tmp_path: Path, name: str) -> None:
    run = make_hf_run(tmp_path / "run", steps=(100, 200))
    (run.root / "checkpoint-200" / name).mkdir()
    for spec in ("latest", "checkpoint-200", "step:200"):
        refused(tmp_path, spec, f"checkpoint-200/{name}", "not a regular file")


def test_a_folder_named_like_weights_is_not_a_complete_checkpoint(tmp_path: Path) -> None:
    run = make_hf_run(tmp_path / "run", steps=(100, 200))
    (run.root / "checkpoint-200" / "model.safetensors").unlink()
    (run.root / "checkpoint-200" / "model.safetensors").mkdir()
    selection = select_checkpoint(run.root, "latest")
    assert selection.checkpoint == "checkpoint-100"
    assert "not a regular file" in selection.skipped[0].reason


@pytest.mark.parametrize("metric", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_metrics_are_absent_and_never_serialised(tmp_path: Path, metric: float) -> None:
    run = make_hf_run(tmp_path / "run", steps=(100, 200), best_step=200)
    set_state(run.root, best_metric=metric)  # json.dumps writes NaN / Infinity, as the Trainer does
    result = pack(tmp_path, "best")
    assert result.checkpoint == "checkpoint-200" and result.metric is None
    assert "nan" not in result.reason.lower() and "inf" not in result.reason.lower()
    strict_json(json.dumps(result.to_json(), allow_nan=False))
    with zipfile.ZipFile(tmp_path / "out.zip") as zf:
        manifest = strict_json(zf.read("out/mdl-manifest.json"))
    assert manifest["metric"] is None


def test_nan_through_the_cli_json_is_valid_json(tmp_path: Path) -> None:
    run = make_hf_run(tmp_path / "run", steps=(100, 200), best_step=200)
    set_state(run.root, best_metric=float("nan"))
    env = {**os.environ, "MDL_LOG_FILE": str(tmp_path / "mdl.log")}
    done = subprocess.run(
        [forked_mdl(), "pack", "run", "--checkpoint", "best", "-o", "x.zip", "--json"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert strict_json(done.stdout)["metric"] is None


def test_the_cli_says_exit_2_for_deep_json(tmp_path: Path) -> None:
    run = make_hf_run(tmp_path / "run", steps=(100,))
    for path in run.root.rglob("trainer_state.json"):
        path.write_text("{" + '"a":{' * 100_000 + "}" * 100_001)
    env = {**os.environ, "MDL_LOG_FILE": str(tmp_path / "mdl.log")}
    done = subprocess.run(
        [forked_mdl(), "pack", "run", "--checkpoint", "best"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr
    assert "trainer_state.json" in done.stderr and "Traceback" not in done.stderr


def test_other_unreadable_files_are_a_documented_code(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_hf_run(tmp_path / "run", steps=(100,))
    real_scandir = os.scandir

    def deny(path: Any = ".") -> Any:
        if str(path).endswith("checkpoint-100"):
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", deny)
    with pytest.raises(MdlError) as err:
        pack(tmp_path, "checkpoint-100")
    assert (
        err.value.exit_code in (ExitCode.USAGE, ExitCode.LOCAL)
        and "checkpoint-100" in err.value.message
    )
    assert not isinstance(err.value, UsageError) or err.value.exit_code == ExitCode.USAGE


@pytest.mark.parametrize(
    "names",
    [
        ["extra/Dir/a.txt", "extra/dir/b.txt"],
        ["extra/x/y/Dir/a.txt", "extra/x/y/dir/b.txt"],
        [
            "extra/" + __import__("unicodedata").normalize("NFC", "café") + "/a.txt",
            "extra/" + __import__("unicodedata").normalize("NFD", "café") + "/b.txt",
        ],
    ],
    ids=repr,
)
def test_folders_that_differ_only_in_case_or_form_are_not_packed(
    tmp_path: Path, names: list[str]
) -> None:
    """What unpack would refuse (a case-insensitive filesystem merges the two folders), pack refuses
    first, at any depth, before the archive is written (issue 27)."""
    run = make_hf_run(tmp_path / "run")
    for name in names:
        write(run.root / name, b"x")
    refused(tmp_path, None, "differ only in case or Unicode form")
