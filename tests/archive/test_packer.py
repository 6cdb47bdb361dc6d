"""``mdl pack`` on real run folders: selection, layout, determinism, links, special files, ZIP64,
atomicity.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import stat
import struct
import subprocess
import threading
import zipfile
from pathlib import Path
from typing import Any

import pytest
from runfixtures import (
    HANG,
    TRAINING_STATE,
    RecordingProgress,
    make_hf_run,
    make_lightning_run,
    safetensors_bytes,
    safetensors_header,
    write,
)

from mdl.archive import _zipwriter
from mdl.archive._zipwriter import Contents, SourceFile, write_file_archive
from mdl.archive.packer import PackOptions, PackResult, pack_run
from mdl.errors import ExitCode, IntegrityError, MdlError, NoSpaceError, UnsafePathError, UsageError
from mdl.progress import NullProgress

UNZIP = shutil.which("unzip")


def pack(root: Path, run: str = "run", **kwargs: Any) -> PackResult:
    """Pack ``root/run`` with cwd=root (so default archives land in root)."""
    progress = kwargs.pop("progress", RecordingProgress())
    stdout = kwargs.pop("stdout", None)
    options = PackOptions(
        run_dir=Path(run),
        output=kwargs.pop("output", None),
        checkpoint=kwargs.pop("checkpoint", None),
        cwd=root,
        **kwargs,
    )
    return pack_run(options, progress=progress, stdout=stdout)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith((".zip", ".partial")))


def assert_unzip_clean(archive: Path) -> None:
    if UNZIP is None:
        pytest.skip("unzip is not installed (apt-get install unzip)")
    result = subprocess.run([UNZIP, "-t", "-q", str(archive)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_latest_checkpoint_layout_manifest_and_zip_details(tmp_path: Path) -> None:
    run = make_hf_run(tmp_path / "run", steps=(100, 200), sharded=(200,))
    result = pack(tmp_path, checkpoint="latest", with_logs=True)
    archive = tmp_path / "run-checkpoint-200.zip"
    assert result.archive == str(archive) and archive.is_file()
    assert result.size == archive.stat().st_size and result.sha256 == sha256(archive)
    with zipfile.ZipFile(archive) as zf:
        infos = zf.infolist()
        assert zf.testzip() is None
        names = [i.filename for i in infos]
        manifest_info = infos[0]
        manifest = json.loads(zf.read(manifest_info))
    # One top-level folder named after the archive; the manifest first, then sorted names.
    assert names[0] == "run-checkpoint-200/mdl-manifest.json"
    assert names[1:] == sorted(names[1:]) and all(
        n.startswith("run-checkpoint-200/") for n in names
    )
    assert manifest_info.compress_type == zipfile.ZIP_STORED and manifest_info.extract_version == 20
    inside = {n.split("/", 1)[1] for n in names}
    assert {
        "model-00001-of-00002.safetensors",
        "model.safetensors.index.json",
        "logs/training.log",
    } <= inside
    assert not inside & set(TRAINING_STATE)  # deploy profile
    for info in infos:
        assert info.date_time == (1980, 1, 1, 0, 0, 0)
        assert info.create_system == 3 and info.external_attr >> 16 == stat.S_IFREG | 0o644
        stored = info.filename.endswith((".safetensors", "mdl-manifest.json"))
        assert info.compress_type == (zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED), (
            info.filename
        )
    # The manifest says what was chosen and why, and each file's size, sha256 and role.
    assert manifest["checkpoint"] == "checkpoint-200" and "latest" in manifest["reason"]
    by_path = {f["path"]: f for f in manifest["files"]}
    ckpt = run.ckpt("checkpoint-200")
    assert by_path["model-00001-of-00002.safetensors"]["sha256"] == sha256(
        ckpt / "model-00001-of-00002.safetensors"
    )
    assert by_path["logs/training.log"]["sha256"] == sha256(run.root / "training.log")
    roles = {p: f["role"] for p, f in by_path.items()}
    assert roles["model-00002-of-00002.safetensors"] == "weights"
    assert roles["config.json"] == "config" and roles["tokenizer.json"] == "tokenizer"
    assert roles["logs/training.log"] == "logs" and roles["vocab.txt"] == "tokenizer"
    assert [f.to_json() for f in result.files] == manifest["files"]
    assert_unzip_clean(archive)


def test_json_shape(tmp_path: Path) -> None:
    make_hf_run(tmp_path / "run", steps=(100,))
    doc = pack(tmp_path, checkpoint="checkpoint-100").to_json()
    assert list(doc)[:7] == ["ok", "archive", "size", "sha256", "checkpoint", "reason", "files"]
    assert set(doc["files"][0]) == {"path", "size", "sha256", "role"}
    json.dumps(doc)


def test_whole_run_leaves_out_checkpoint_folders_and_training_state(tmp_path: Path) -> None:
    run = make_hf_run(tmp_path / "run", steps=(100,))
    (run.root / "tmp-checkpoint-200").mkdir()
    write(run.root / "checkpoints" / "checkpoint_0" / "model.safetensors", b"x")
    write(run.root / "global_step100" / "mp_rank_00_model_states.pt", b"x")
    write(run.root / "style-000001-state" / "optimizer.bin", b"x")
    names = {f.path for f in pack(tmp_path).files}
    assert "model.safetensors" in names and "training.log" in names
    assert not any(n.startswith(("checkpoint", "tmp-", "global_step", "style-")) for n in names)
    assert "training_args.bin" not in names
    full = {f.path for f in pack(tmp_path, profile="full", output=Path("full.zip")).files}
    assert {"training_args.bin", "global_step100/mp_rank_00_model_states.pt"} <= full
    assert not any(n.startswith("checkpoint") for n in full)


def test_same_input_same_bytes(tmp_path: Path) -> None:
    run = make_hf_run(tmp_path / "run", steps=(100,))
    first = pack(tmp_path, checkpoint="latest", output=Path("a/run.zip"))
    for path in run.root.rglob("*"):
        # mtimes must not matter
        os.utime(path, (1_700_000_000, 1_700_000_000), follow_symlinks=False)
    os.chmod(run.ckpt("checkpoint-100") / "config.json", 0o600)  # nor permissions
    second = pack(tmp_path, checkpoint="latest", output=Path("b/run.zip"))
    assert first.sha256 == second.sha256
    assert (tmp_path / "a/run.zip").read_bytes() == (tmp_path / "b/run.zip").read_bytes()


def test_source_date_epoch_sets_every_timestamp(tmp_path: Path) -> None:
    make_hf_run(tmp_path / "run", steps=(100,))
    one = pack(
        tmp_path, checkpoint="latest", output=Path("one.zip"), source_date_epoch=1_700_000_000
    )
    two = pack(
        tmp_path, checkpoint="latest", output=Path("two/one.zip"), source_date_epoch=1_700_000_000
    )
    assert one.sha256 == two.sha256
    with zipfile.ZipFile(tmp_path / "one.zip") as zf:
        assert {i.date_time for i in zf.infolist()} == {(2023, 11, 14, 22, 13, 20)}


def test_compress_none_and_deflate(tmp_path: Path) -> None:
    make_hf_run(tmp_path / "run", steps=(100,))
    pack(tmp_path, checkpoint="latest", compress="none", output=Path("none.zip"))
    pack(tmp_path, checkpoint="latest", compress="deflate", output=Path("deflate.zip"))
    with zipfile.ZipFile(tmp_path / "none.zip") as zf:
        assert {i.compress_type for i in zf.infolist()} == {zipfile.ZIP_STORED}
    with zipfile.ZipFile(tmp_path / "deflate.zip") as zf:
        types = {i.filename.rsplit("/", 1)[1]: i.compress_type for i in zf.infolist()}
        # always stored, so it can be filled in
        assert types.pop("mdl-manifest.json") == zipfile.ZIP_STORED
        assert set(types.values()) == {zipfile.ZIP_DEFLATED}
        assert zf.testzip() is None
    with pytest.raises(UsageError, match="unknown compression 'zstd'"):
        pack(tmp_path, compress="zstd")
    with pytest.raises(UsageError, match="unknown profile"):
        pack(tmp_path, profile="tiny")


def test_dry_run_writes_nothing(tmp_path: Path) -> None:
    make_hf_run(tmp_path / "run", steps=(100,))
    result = pack(tmp_path, checkpoint="latest", dry_run=True)
    assert result.dry_run and result.size is None and result.sha256 is None
    assert result.archive == str(tmp_path / "run-checkpoint-100.zip")
    assert {f.sha256 for f in result.files} == {None} and "model.safetensors" in {
        f.path for f in result.files
    }
    assert leftovers(tmp_path) == []


def test_include_adds_to_the_checkpoint_and_exclude_wins(tmp_path: Path) -> None:
    make_hf_run(tmp_path / "run", steps=(100,))
    progress = RecordingProgress()
    result = pack(
        tmp_path,
        checkpoint="latest",
        includes=("*.json",),
        excludes=("tokenizer*",),
        with_logs=True,
        progress=progress,
    )
    names = {f.path for f in result.files}
    assert "model.safetensors" in names  # --include adds to the checkpoint, never replaces it
    # '*.json' at any depth of the run
    assert {"config.json", "logs/progress.json", "all_results.json"} <= names
    assert not {n for n in names if n.rsplit("/", 1)[-1].startswith("tokenizer")}
    # The run's own config.json would take the checkpoint's name: the checkpoint's is packed, and
    # that is said.
    assert any("not packing 'config.json'" in note for note in progress.notes)
    with pytest.raises(UsageError, match=r"--include '\*\.gguf' matches no file"):
        pack(tmp_path, checkpoint="latest", includes=("*.gguf",))
    with pytest.raises(UsageError, match=r"--exclude 'optimizer\.pt' matches no file"):
        # already left out by the profile
        pack(tmp_path, checkpoint="latest", excludes=("optimizer.pt",))


def test_in_run_symlink_is_stored_as_its_targets_bytes(tmp_path: Path) -> None:
    run = make_lightning_run(tmp_path / "pl")
    result = pack(tmp_path, "pl", checkpoint="last.ckpt")
    assert result.archive == str(tmp_path / "pl-last.zip")
    with zipfile.ZipFile(tmp_path / "pl-last.zip") as zf:
        info = zf.getinfo("pl-last/last.ckpt")
        assert stat.S_ISREG(info.external_attr >> 16)
        assert zf.read(info) == (run.root / "checkpoints" / "epoch=1-step=200.ckpt").read_bytes()
    assert [(f.path, f.role) for f in result.files] == [("last.ckpt", "pickle")]


def test_symlinked_folder_inside_the_run_is_packed_under_the_links_name(tmp_path: Path) -> None:
    run = make_hf_run(tmp_path / "run", steps=(100,))
    write(run.root / "shared" / "extra.txt", "hello")
    os.symlink("../shared", run.ckpt("checkpoint-100") / "extras")
    names = {f.path for f in pack(tmp_path, checkpoint="latest").files}
    assert "extras/extra.txt" in names


@pytest.mark.parametrize("kind", ["file", "folder"])
def test_a_symlink_leaving_the_run_is_an_error_naming_it(tmp_path: Path, kind: str) -> None:
    run = make_hf_run(tmp_path / "run", steps=(100,))
    outside = write(tmp_path / "outside" / "secret.txt", "secret")
    os.symlink(outside if kind == "file" else outside.parent, run.ckpt("checkpoint-100") / "leak")
    with pytest.raises(UnsafePathError) as err:
        pack(tmp_path, checkpoint="latest")
    assert "'checkpoint-100/leak'" in err.value.message and err.value.exit_code == ExitCode.USAGE
    assert leftovers(tmp_path) == []
    # Left out by an exclude pattern, it is never looked at.
    assert pack(tmp_path, checkpoint="latest", excludes=("leak",)).sha256


def test_symlink_cycles_are_errors(tmp_path: Path) -> None:
    run = make_hf_run(tmp_path / "run", steps=(100,))
    os.symlink("b", run.root / "a")
    os.symlink("a", run.root / "b")
    with pytest.raises(UnsafePathError, match="symlink cycle at 'a'"):
        pack(tmp_path)
    (run.root / "a").unlink()
    (run.root / "b").unlink()
    os.symlink("..", run.ckpt("checkpoint-100") / "up")
    with pytest.raises(UnsafePathError, match="symlink cycle: 'checkpoint-100/up'"):
        pack(tmp_path, checkpoint="latest")


def test_a_fifo_is_skipped_with_a_note_and_never_opened(tmp_path: Path) -> None:
    run = make_hf_run(tmp_path / "run", steps=(100,))
    os.mkfifo(run.ckpt("checkpoint-100") / "events.pipe")
    progress = RecordingProgress()
    outcome: list[Any] = []
    worker = threading.Thread(
        target=lambda: outcome.append(pack(tmp_path, checkpoint="latest", progress=progress))
    )
    worker.start()
    worker.join(timeout=HANG)
    assert not worker.is_alive(), "pack hung on a FIFO"
    assert "events.pipe" not in {f.path for f in outcome[0].files}
    assert progress.notes == ["skipping FIFO 'checkpoint-100/events.pipe': not a regular file"]


def test_a_file_growing_while_packed_fails_and_leaves_nothing(tmp_path: Path) -> None:
    run = make_hf_run(tmp_path / "run", steps=(100,))
    growing = run.ckpt("checkpoint-100") / "model.safetensors"

    def trainer_still_writing(key: str, nbytes: int) -> None:
        if key == "model.safetensors":
            with growing.open("ab") as fh:
                fh.write(b"more")

    with pytest.raises(
        IntegrityError,
        match=r"'checkpoint-100/model\.safetensors' (grew|changed) while being packed",
    ):
        pack(
            tmp_path, checkpoint="checkpoint-100", progress=RecordingProgress(trainer_still_writing)
        )
    assert leftovers(tmp_path) == []


def test_a_file_touched_while_packed_fails(tmp_path: Path) -> None:
    run = make_hf_run(tmp_path / "run", steps=(100,))
    config = run.ckpt("checkpoint-100") / "config.json"

    def touch(key: str, nbytes: int) -> None:
        if key == "config.json":
            os.utime(config, (2_000_000_000, 2_000_000_000))

    with pytest.raises(IntegrityError, match=r"'checkpoint-100/config\.json' changed"):
        pack(tmp_path, checkpoint="checkpoint-100", progress=RecordingProgress(touch))


def test_stream_to_stdout(tmp_path: Path) -> None:
    run = make_hf_run(tmp_path / "run", steps=(100,))
    out = io.BytesIO()
    result = pack(tmp_path, checkpoint="latest", output=Path("-"), stdout=out)
    data = out.getvalue()
    assert result.archive == "-" and result.size == len(data)
    assert result.sha256 == hashlib.sha256(data).hexdigest()
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        assert zf.testzip() is None
        assert zf.namelist()[0] == "run-checkpoint-100/mdl-manifest.json"
        manifest = json.loads(zf.read("run-checkpoint-100/mdl-manifest.json"))
        weights = zf.read("run-checkpoint-100/model.safetensors")
    assert weights == (run.ckpt("checkpoint-100") / "model.safetensors").read_bytes()
    recorded = {f["path"]: f["sha256"] for f in manifest["files"]}
    assert recorded["model.safetensors"] == hashlib.sha256(weights).hexdigest()
    assert leftovers(tmp_path) == []


def test_output_name_and_top_folder(tmp_path: Path) -> None:
    make_hf_run(tmp_path / "run", steps=(100,))
    result = pack(tmp_path, checkpoint="latest", output=Path("deploy/model-v2.zip"))
    assert result.top_folder == "model-v2"
    with zipfile.ZipFile(tmp_path / "deploy" / "model-v2.zip") as zf:
        assert {n.split("/")[0] for n in zf.namelist()} == {"model-v2"}
    with pytest.raises(UsageError, match="is a folder"):
        pack(tmp_path, checkpoint="latest", output=Path("deploy"))


def test_an_archive_is_never_written_inside_the_run(tmp_path: Path) -> None:
    """Finding 9: `-o RUN/checkpoint-N/model.safetensors` replaced the weights with the zip (exit
    0).
    """
    run = make_hf_run(tmp_path / "run", steps=(100, 200))
    weights = run.root / "checkpoint-200" / "model.safetensors"
    before = weights.read_bytes()
    (tmp_path / "via-link").symlink_to(run.root / "checkpoint-200")
    for output in (
        "run/checkpoint-200/model.safetensors",
        "run/run.zip",
        "run",
        "via-link/model.safetensors",
    ):
        with pytest.raises(UnsafePathError, match="is inside the run folder") as err:
            pack(tmp_path, checkpoint="latest", output=Path(output))
        assert err.value.exit_code == ExitCode.USAGE and output.split("/")[-1] in err.value.message
    assert weights.read_bytes() == before
    assert leftovers(run.root / "checkpoint-200") == [] and leftovers(run.root) == []
    # the default name, from inside the run
    with pytest.raises(UnsafePathError, match="is inside the run folder"):
        pack(run.root, ".", checkpoint="latest")
    inside = r"'-' \(stdout is .*piped.zip\) is inside the run folder"
    with (
        (run.root / "checkpoint-200" / "piped.zip").open("wb") as out,
        pytest.raises(UnsafePathError, match=inside),
    ):
        # `mdl pack run -o - > run/...`
        pack(tmp_path, checkpoint="latest", output=Path("-"), stdout=out)
    assert weights.read_bytes() == before


def test_names_unpack_would_refuse_are_refused_when_packing(tmp_path: Path) -> None:
    run = make_hf_run(tmp_path / "run", steps=(100,))
    write(run.root / "aux.txt", "x")
    with pytest.raises(UnsafePathError, match=r"cannot pack 'aux\.txt': reserved device name"):
        pack(tmp_path)
    (run.root / "aux.txt").unlink()
    write(run.root / "mdl-manifest.json", "{}")
    with pytest.raises(UsageError, match="reserved for mdl's manifest"):
        pack(tmp_path)


def test_missing_run_and_empty_selection(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="run folder not found"):
        pack(tmp_path, "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UsageError, match="nothing to pack"):
        pack(tmp_path, "empty")


def test_not_enough_space_fails_before_writing(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    usage = os.statvfs(run)
    size = usage.f_bavail * usage.f_frsize + (1 << 30)
    if size >= 15 << 40:
        pytest.skip("too much free space to fake with a sparse file on this filesystem")
    with (run / "huge.bin").open("wb") as fh:
        # sparse: takes no room, but more than is free, so the check must refuse it
        fh.truncate(size)
    with pytest.raises(NoSpaceError) as err:
        pack(tmp_path)
    assert err.value.exit_code == ExitCode.LOCAL
    assert leftovers(tmp_path) == []


def test_zip64_headers_are_read_by_zipfile_and_unzip(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The ZIP64 path of a file archive (from 1 KiB instead of 4 GiB, on small files) with mdl's
    entry attributes passes zipfile and ``unzip -t``."""
    monkeypatch.setattr(_zipwriter, "ZIP64_FROM", 1024)
    run = tmp_path / "run"
    write(run / "w.safetensors", safetensors_bytes({"w": 4096}))
    write(run / "config.json", b'{"a": 1}' * 500)
    result = pack(tmp_path, output=Path("zip64.zip"))
    archive = tmp_path / "zip64.zip"
    raw = archive.read_bytes()
    with zipfile.ZipFile(archive) as zf:
        assert zf.testzip() is None
        # a ZIP64 extra field (tag 1) in the local header of every entry past 1 KiB
        for info in zf.infolist():
            if info.file_size >= 1024:
                name, extra = struct.unpack_from("<HH", raw, info.header_offset + 26)
                start = info.header_offset + 30 + name
                assert extra >= 4 and struct.unpack_from("<H", raw, start)[0] == 1, info.filename
        for item in result.files:
            assert hashlib.sha256(zf.read(f"zip64/{item.path}")).hexdigest() == item.sha256
    assert_unzip_clean(archive)


@pytest.mark.soak
@pytest.mark.skipif(
    not os.environ.get("MDL_SOAK"), reason="writes 4 GiB (~20-50 s); set MDL_SOAK=1 to run"
)
def test_zip64_for_an_entry_over_4_gib(tmp_path: Path) -> None:
    """A >4 GiB shard (sparse on disk, consistent safetensors header) gets ZIP64 headers; the
    manifest does not.
    """
    run = tmp_path / "run"
    ckpt = run / "checkpoint-1"
    data_size = (4 << 30) + 4096
    header = safetensors_header(data_size)
    shard = write(ckpt / "model.safetensors", header)
    os.truncate(shard, len(header) + data_size)
    result = pack(tmp_path, checkpoint="latest")
    archive = tmp_path / "run-checkpoint-1.zip"
    with archive.open("rb") as fh:
        local = fh.read(30)
        # manifest: no ZIP64
        assert local[:4] == b"PK\x03\x04" and struct.unpack("<H", local[4:6])[0] == 20
    with zipfile.ZipFile(archive) as zf:
        big = zf.getinfo("run-checkpoint-1/model.safetensors")
        assert big.file_size == len(header) + data_size and big.extract_version >= 45
        with zf.open(big) as src:
            assert src.read(len(header)) == header
            src.seek(big.file_size - 8)
            assert src.read() == b"\0" * 8
    assert result.files[0].sha256 is not None
    assert_unzip_clean(archive)


class _GrowingManifest(Contents):
    def manifest(self, hashes: dict[str, str], signature: bytes | None = None) -> bytes:
        return super().manifest(hashes, signature) + (b" " if hashes else b"")


def test_a_manifest_that_would_not_fit_its_place_is_never_patched_in(tmp_path: Path) -> None:
    """The manifest is rewritten in place only over its own bytes: one that grew would overwrite
    the next entry.
    """
    src = tmp_path / "w.bin"
    src.write_bytes(b"weights")
    st = src.stat()
    source = SourceFile(
        "w.bin", src, "w.bin", st.st_size, st.st_mtime_ns, st.st_dev, st.st_ino, "weights", False
    )
    contents = _GrowingManifest("run", {"format": 1}, [source], [], None)
    target = tmp_path / "out" / "run.zip"
    with pytest.raises(MdlError, match=r"cannot rewrite 'run/mdl-manifest\.json' in place"):
        write_file_archive(target, contents, NullProgress())
    assert list(target.parent.iterdir()) == [], "neither the archive nor its .partial is left"


def test_names_of_up_to_name_max_bytes_pack(tmp_path: Path) -> None:
    # pack and unpack write no temp name beside a file: get's reserve (229 bytes) is not their rule
    run = make_hf_run(tmp_path / "run", steps=(100,))
    long = "n" * 250 + ".json"
    write(run.root / long, b"{}")
    assert long in {f.path for f in pack(tmp_path).files}
