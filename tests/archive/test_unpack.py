"""``mdl unpack``: every hostile archive (links, devices, bombs, lying sizes, bad CRCs, names that
climb) is refused before a byte is written; good archives round-trip."""

from __future__ import annotations

import hashlib
import os
import re
import signal
import stat
import subprocess
import sys
import textwrap
import unicodedata
import warnings
import zipfile
from pathlib import Path

import pytest
from runfixtures import RecordingProgress, make_hf_run, wait_for
from servers import make_data

from mdl.archive.packer import PackOptions, pack_run
from mdl.archive.unpack import UnpackResult, unpack_archive
from mdl.archive.zipread import shown
from mdl.errors import ArchiveError, ExitCode, IntegrityError, MdlError, UsageError
from mdl.progress import NullProgress, Progress

Entry = tuple[str | zipfile.ZipInfo, bytes]


def build_zip(path: Path, entries: list[Entry], *, deflate: bool = False) -> Path:
    """Write entries exactly as given (zipfile keeps hostile names as they are on POSIX)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "Duplicate name" is the point of some tests
        with zipfile.ZipFile(path, "w") as zf:
            for name, data in entries:
                info = name if isinstance(name, zipfile.ZipInfo) else zipfile.ZipInfo(name)
                info.compress_type = zipfile.ZIP_DEFLATED if deflate else zipfile.ZIP_STORED
                zf.writestr(info, data)
    return path


def raw_name(name: str) -> zipfile.ZipInfo:
    """A ZipInfo whose stored name keeps characters ZipInfo() would cut (a NUL)."""
    info = zipfile.ZipInfo("placeholder")
    info.filename = name
    return info


def typed(name: str, mode: int) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name)
    info.create_system = 3
    info.external_attr = mode << 16
    return info


def unpack(
    archive: Path, dest: Path, *, force: bool = False, progress: Progress | None = None
) -> UnpackResult:
    return unpack_archive(
        archive, dest=dest, force=force, progress=progress or NullProgress(), cwd=archive.parent
    )


def listing(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) if folder.exists() else []


def pack_to(tmp_path: Path, checkpoint: str | None = "latest", output: str = "model.zip") -> Path:
    make_hf_run(tmp_path / "run", steps=(100,))
    options = PackOptions(
        run_dir=Path("run"), output=Path(output), checkpoint=checkpoint, cwd=tmp_path
    )
    pack_run(options, progress=NullProgress())
    return tmp_path / output


def rewrite(
    source: Path, target: Path, change: dict[str, bytes | None], extra: list[Entry] | None = None
) -> Path:
    """Copy an archive entry by entry, replacing (bytes) or dropping (None) some, and adding
    ``extra``.
    """
    entries: list[Entry] = []
    with zipfile.ZipFile(source) as zf:
        for info in zf.infolist():
            data = change.get(info.filename, zf.read(info))
            if data is not None:
                entries.append((info.filename, data))
    return build_zip(target, entries + (extra or []))


# --- the happy path -------------------------------------------------------------------------------


def test_round_trip_reproduces_every_byte(tmp_path: Path) -> None:
    archive = pack_to(tmp_path)
    dest = tmp_path / "deploy"
    result = unpack(archive, dest)
    assert result.dest == str(dest) and result.manifest and result.checkpoint == "checkpoint-100"
    assert result.top_level == ("model",)
    source = tmp_path / "run" / "checkpoint-100"
    for item in result.files:
        extracted = dest / item.path
        assert hashlib.sha256(extracted.read_bytes()).hexdigest() == item.sha256
        if not item.path.endswith("mdl-manifest.json"):
            assert extracted.read_bytes() == (source / item.path.split("/", 1)[1]).read_bytes()
        assert stat.S_IMODE(extracted.stat().st_mode) == 0o644 & ~_umask()
    assert [p for p in os.listdir(dest) if p.startswith(".mdl-unpack-")] == []
    doc = result.to_json()
    assert set(doc) >= {"dest", "files"} and set(doc["files"][0]) == {"path", "size", "sha256"}


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_folders_pack_and_unpack_make_are_never_anyone_may_write(tmp_path: Path) -> None:
    """Under umask 000, ``pack -o p/q/model.zip`` and ``unpack -d u/v`` made 0777 folders (mkdir
    -p's parents): at most 0775, as every folder mdl makes."""
    old = os.umask(0)
    try:
        archive = pack_to(tmp_path, output="p/q/model.zip")
        unpack(archive, tmp_path / "u" / "v")
    finally:
        os.umask(old)
    made = [tmp_path / "p", tmp_path / "p" / "q", tmp_path / "u", tmp_path / "u" / "v"]
    assert {f.name: stat.S_IMODE(f.stat().st_mode) for f in made} == dict.fromkeys("pquv", 0o775)


def test_dest_defaults_to_cwd_like_unzip(tmp_path: Path) -> None:
    pack_to(tmp_path)
    unpack_archive(Path("model.zip"), dest=None, force=False, progress=NullProgress(), cwd=tmp_path)
    assert (tmp_path / "model" / "mdl-manifest.json").is_file()


def test_plain_zip_without_manifest_and_stored_permissions_ignored(tmp_path: Path) -> None:
    archive = build_zip(
        tmp_path / "plain.zip",
        [(typed("tool/run.sh", stat.S_IFREG | 0o4777), b"#!/bin/sh\n"), ("tool/d/", b"")],
    )
    result = unpack(archive, tmp_path / "out")
    assert not result.manifest
    assert stat.S_IMODE((tmp_path / "out" / "tool" / "run.sh").stat().st_mode) == 0o644 & ~_umask()
    assert stat.S_IMODE((tmp_path / "out" / "tool" / "d").stat().st_mode) == 0o755 & ~_umask()


# --- hostile names --------------------------------------------------------------------------------

HOSTILE_NAMES = [
    "../evil",
    "a/../../evil",
    "/etc/x",
    "C:/x",
    "C:\\x",
    "\\\\server\\share\\x",
    "..\\evil",
    "./a",
    "a//b",
    "a\x00b",
    "a\nb",
    "CON",
    "aux.txt",
    "dir/nul.json",
    "x.",
    "x ",
    "a:stream",
    "x" * 300,
    # names mdl's cleanup removes (unpack -'s copy of stdin, a temp file, prune's set-aside)
    ".stdin.zip.0123456789abcdef.mdl-tmp",
    "m/.w.bin.0123456789abcdef.MDL-TMP",
    "m/.w.bin.0123456789ab.mdl-prune",
]


@pytest.mark.parametrize("name", HOSTILE_NAMES, ids=repr)
def test_hostile_names_are_refused_before_writing(tmp_path: Path, name: str) -> None:
    archive = build_zip(
        tmp_path / "evil.zip", [("ok/first.txt", b"fine"), (raw_name(name), b"evil")]
    )
    dest = tmp_path / "dest" / "inner"
    with pytest.raises(ArchiveError) as err:
        unpack(archive, dest)
    assert shown(name) in err.value.message and err.value.exit_code == ExitCode.USAGE
    assert listing(tmp_path / "dest") == []  # not even the destination folder was created
    assert not (tmp_path / "evil").exists()


@pytest.mark.parametrize(
    "names",
    [
        ["cfg.json", "../cfg.json"],
        ["same.txt", "same.txt"],
        ["Model.bin", "model.bin"],
        [unicodedata.normalize("NFC", "café.txt"), unicodedata.normalize("NFD", "café.txt")],
        ["a", "a/b"],
        ["a/b", "a"],
        ["A/b", "a"],
        ["d/", "d"],
    ],
    ids=repr,
)
def test_duplicates_collisions_and_file_folder_clashes(tmp_path: Path, names: list[str]) -> None:
    archive = build_zip(
        tmp_path / "clash.zip", [(n, b"x" if not n.endswith("/") else b"") for n in names]
    )
    with pytest.raises(ArchiveError) as err:
        unpack(archive, tmp_path / "dest")
    assert any(
        repr(n) in err.value.message or repr(n.rstrip("/")) in err.value.message for n in names
    )
    assert listing(tmp_path / "dest") == []


NFC, NFD = unicodedata.normalize("NFC", "café"), unicodedata.normalize("NFD", "café")


@pytest.mark.parametrize(
    "names",
    [
        # folders that differ only in case or Unicode form, at depth 1 and 3, whatever the files in
        # them
        ["top/Dir/a.txt", "top/dir/b.txt"],
        ["Top/a.txt", "top/b.txt"],
        [f"{NFC}/a.txt", f"{NFD}/b.txt"],
        ["r/s/t/Dir/a.txt", "r/s/t/dir/b.txt"],
        [f"r/s/t/{NFC}/a.txt", f"r/s/t/{NFD}/b.txt"],
        ["r/S/t/a.txt", "r/s/t/b.txt"],
        ["top/Dir/", "top/dir/x.txt"],  # an empty folder entry and a file's folder
    ],
    ids=repr,
)
def test_folders_that_differ_only_in_case_or_form_are_refused_at_any_depth(
    tmp_path: Path, names: list[str]
) -> None:
    """On a case-insensitive (or normalising) filesystem the two folders are one: refused before a
    byte is written, whatever the files inside them (issue 27)."""
    archive = build_zip(
        tmp_path / "twins.zip", [(n, b"" if n.endswith("/") else b"x") for n in names]
    )
    with pytest.raises(ArchiveError, match="differ only in case or Unicode form") as err:
        unpack(archive, tmp_path / "dest")
    assert err.value.exit_code == ExitCode.USAGE
    assert listing(tmp_path / "dest") == []


@pytest.mark.parametrize(
    ("mode", "words"),
    [
        (stat.S_IFLNK | 0o777, "symlink"),
        (stat.S_IFCHR | 0o644, "device"),
        (stat.S_IFIFO | 0o644, "FIFO"),
        (stat.S_IFBLK | 0o644, "device"),
    ],
)
@pytest.mark.parametrize("target", [b"/etc/passwd", b"../../outside"])
def test_link_and_device_entries_are_refused(
    tmp_path: Path, mode: int, words: str, target: bytes
) -> None:
    archive = build_zip(tmp_path / "links.zip", [(typed("pkg/link", mode), target)])
    with pytest.raises(ArchiveError, match=words) as err:
        unpack(archive, tmp_path / "dest")
    assert "'pkg/link'" in err.value.message
    assert listing(tmp_path / "dest") == []


# --- bombs, lies and corruption -------------------------------------------------------------------


def test_a_1000_to_1_deflate_bomb_is_refused(tmp_path: Path) -> None:
    archive = build_zip(tmp_path / "bomb.zip", [("bomb/zeros.bin", bytes(64 << 20))], deflate=True)
    assert archive.stat().st_size < (64 << 20) // 500
    with pytest.raises(ArchiveError, match=r"'bomb/zeros.bin'.*zip bomb"):
        unpack(archive, tmp_path / "dest")
    assert listing(tmp_path / "dest") == []


def _patch(path: Path, offset: int, data: bytes) -> None:
    with path.open("r+b") as fh:
        fh.seek(offset)
        fh.write(data)


def _find_central(raw: bytes, name: str) -> int:
    pos = raw.index(b"PK\x01\x02")
    while True:
        name_len = int.from_bytes(raw[pos + 28 : pos + 30], "little")
        extra_len = int.from_bytes(raw[pos + 30 : pos + 32], "little")
        comment_len = int.from_bytes(raw[pos + 32 : pos + 34], "little")
        if raw[pos + 46 : pos + 46 + name_len] == name.encode():
            return pos
        pos += 46 + name_len + extra_len + comment_len


def _declare_size(path: Path, name: str, size: int) -> None:
    """Both headers of the archive's only entry declare ``size`` bytes (a lie that agrees with
    itself).
    """
    _patch(path, 22, size.to_bytes(4, "little"))  # the local header, at offset 0
    _patch(path, _find_central(path.read_bytes(), name) + 24, size.to_bytes(4, "little"))


def test_a_lying_file_size_is_caught(tmp_path: Path) -> None:
    # text: deflates, and deflate is where sizes can lie
    data = make_data(3000, "lie").hex().encode()
    smaller = build_zip(tmp_path / "smaller.zip", [("pkg/a.txt", data)], deflate=True)
    _declare_size(smaller, "pkg/a.txt", 100)
    with pytest.raises(
        ArchiveError, match=re.escape("'pkg/a.txt' is larger than its declared 100 bytes")
    ):
        # real output bytes are counted: it stops at the declared size
        unpack(smaller, tmp_path / "d1")
    larger = build_zip(tmp_path / "larger.zip", [("pkg/a.txt", data)], deflate=True)
    _declare_size(larger, "pkg/a.txt", len(data) + 10)
    with pytest.raises(
        ArchiveError, match=re.escape("'pkg/a.txt' holds 6000 bytes but declares 6010")
    ):
        unpack(larger, tmp_path / "d2")
    stored = build_zip(tmp_path / "stored.zip", [("pkg/a.txt", data)])
    _declare_size(stored, "pkg/a.txt", len(data) + 10)
    with pytest.raises(ArchiveError, match=re.escape("'pkg/a.txt' is stored but declares")):
        unpack(stored, tmp_path / "d3")
    for dest in ("d1", "d2", "d3"):
        assert not (tmp_path / dest / "pkg").exists()
        assert [p for p in listing(tmp_path / dest) if p.startswith(".mdl-unpack-")] == []


def test_a_truncated_archive_is_refused(tmp_path: Path) -> None:
    archive = pack_to(tmp_path)
    raw = archive.read_bytes()
    cut = tmp_path / "cut.zip"
    cut.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ArchiveError, match="not a readable zip"):
        unpack(cut, tmp_path / "dest")
    assert listing(tmp_path / "dest") == []


def test_a_bad_crc_is_an_integrity_error_and_nothing_lands(tmp_path: Path) -> None:
    archive = build_zip(
        tmp_path / "crc.zip", [("pkg/a.bin", b"A" * 5000), ("pkg/b.bin", b"B" * 10)]
    )
    raw = archive.read_bytes()
    _patch(archive, raw.index(b"A" * 100) + 50, b"Z")
    with pytest.raises(IntegrityError, match=r"'pkg/a.bin' is corrupt: its CRC-32") as err:
        unpack(archive, tmp_path / "dest")
    assert err.value.exit_code == ExitCode.INTEGRITY
    assert listing(tmp_path / "dest") == []


@pytest.mark.parametrize(
    ("method", "flags", "words"), [(93, 0, "compression method 93"), (99, 1, "encrypted")]
)
def test_zstd_and_aes_entries_are_refused(
    tmp_path: Path, method: int, flags: int, words: str
) -> None:
    archive = build_zip(tmp_path / "method.zip", [("pkg/w.bin", b"data")])
    central = _find_central(archive.read_bytes(), "pkg/w.bin")
    _patch(archive, central + 8, flags.to_bytes(2, "little") + method.to_bytes(2, "little"))
    # the local header too
    _patch(archive, 6, flags.to_bytes(2, "little") + method.to_bytes(2, "little"))
    with pytest.raises(ArchiveError, match=words) as err:
        unpack(archive, tmp_path / "dest")
    assert "'pkg/w.bin'" in err.value.message


def test_overlapping_entries_are_refused(tmp_path: Path) -> None:
    archive = build_zip(
        tmp_path / "overlap.zip", [("pkg/a.bin", b"a" * 100), ("pkg/b.bin", b"b" * 100)]
    )
    central = _find_central(archive.read_bytes(), "pkg/b.bin")
    _patch(archive, central + 42, (0).to_bytes(4, "little"))  # b's data "starts" where a's does
    with pytest.raises(ArchiveError, match="overlap"):
        unpack(archive, tmp_path / "dest")


def test_not_a_zip_and_missing_archive(tmp_path: Path) -> None:
    (tmp_path / "junk.zip").write_bytes(b"this is not a zip file at all")
    with pytest.raises(ArchiveError, match="not a readable zip"):
        unpack(tmp_path / "junk.zip", tmp_path / "dest")
    with pytest.raises(UsageError, match="archive not found"):
        unpack(tmp_path / "nope.zip", tmp_path / "dest")


# --- the manifest ---------------------------------------------------------------------------------


def test_an_entry_missing_from_the_manifest_is_refused(tmp_path: Path) -> None:
    archive = rewrite(
        pack_to(tmp_path), tmp_path / "extra.zip", {}, [("model/payload.sh", b"rm -rf /")]
    )
    with pytest.raises(
        ArchiveError, match=re.escape("'model/payload.sh' is not listed in the manifest")
    ):
        unpack(archive, tmp_path / "dest")
    assert listing(tmp_path / "dest") == []


def test_a_wrong_sha256_is_an_integrity_error_and_nothing_lands(tmp_path: Path) -> None:
    original = pack_to(tmp_path)
    with zipfile.ZipFile(original) as zf:
        weights = bytearray(zf.read("model/model.safetensors"))
    weights[-1] ^= 0xFF  # same size, valid CRC for the new bytes, wrong sha256
    archive = rewrite(
        original, tmp_path / "tampered.zip", {"model/model.safetensors": bytes(weights)}
    )
    with pytest.raises(
        IntegrityError, match=re.escape("'model/model.safetensors' does not match the sha256")
    ) as err:
        unpack(archive, tmp_path / "dest")
    assert err.value.exit_code == ExitCode.INTEGRITY
    assert listing(tmp_path / "dest") == []


def test_an_entry_listed_but_absent_or_resized(tmp_path: Path) -> None:
    original = pack_to(tmp_path)
    dropped = rewrite(original, tmp_path / "dropped.zip", {"model/config.json": None})
    with pytest.raises(
        IntegrityError,
        match=re.escape("lists 'model/config.json' but the archive has no such entry"),
    ):
        unpack(dropped, tmp_path / "dest")
    resized = rewrite(original, tmp_path / "resized.zip", {"model/config.json": b"{}"})
    with pytest.raises(
        IntegrityError, match=re.escape("'model/config.json' declares 2 bytes, the manifest says")
    ):
        unpack(resized, tmp_path / "dest")
    assert listing(tmp_path / "dest") == []


# --- the destination ------------------------------------------------------------------------------


def test_a_non_empty_destination_is_refused_unless_force(tmp_path: Path) -> None:
    archive = pack_to(tmp_path)
    dest = tmp_path / "dest"
    (dest / "model").mkdir(parents=True)
    (dest / "model" / "old.txt").write_text("old")
    with pytest.raises(UsageError, match="already exists and is not empty") as err:
        unpack(archive, dest)
    assert err.value.hint and "--force" in err.value.hint
    assert listing(dest) == ["model", "model/old.txt"]
    result = unpack(archive, dest, force=True)
    assert result.replaced == ("model",)
    assert not (dest / "model" / "old.txt").exists() and (dest / "model" / "config.json").is_file()
    assert [p for p in os.listdir(dest) if p.startswith(".mdl")] == []


def test_an_empty_folder_in_the_way_is_fine(tmp_path: Path) -> None:
    archive = pack_to(tmp_path)
    (tmp_path / "dest" / "model").mkdir(parents=True)
    assert unpack(archive, tmp_path / "dest").replaced == ()


def test_a_second_archive_into_the_first_ones_output_is_refused(tmp_path: Path) -> None:
    archive = pack_to(tmp_path)
    dest = tmp_path / "dest"
    unpack(archive, dest)
    before = {p: (dest / p).read_bytes() for p in listing(dest) if (dest / p).is_file()}
    second = build_zip(tmp_path / "second.zip", [("model/config.json", b'{"evil": true}')])
    with pytest.raises(UsageError, match="already exists"):
        unpack(second, dest)
    assert {p: (dest / p).read_bytes() for p in listing(dest) if (dest / p).is_file()} == before


def test_a_symlink_already_in_the_destination_is_never_followed(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    dest = tmp_path / "dest"
    dest.mkdir()
    os.symlink(outside, dest / "x")
    archive = build_zip(tmp_path / "x.zip", [("x/y", b"payload")])
    with pytest.raises(UsageError, match="is a symlink"):
        unpack(archive, dest)
    assert list(outside.iterdir()) == []
    unpack(archive, dest, force=True)  # replaces the link itself, never what it points to
    assert list(outside.iterdir()) == []
    assert not (dest / "x").is_symlink() and (dest / "x" / "y").read_bytes() == b"payload"


def test_an_interrupted_extraction_leaves_the_destination_as_it_was(tmp_path: Path) -> None:
    archive = pack_to(tmp_path)
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "keep.txt").write_text("keep")

    def interrupt(key: str, nbytes: int) -> None:
        if key.endswith("model.safetensors"):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        unpack(archive, dest, progress=RecordingProgress(interrupt))
    assert listing(dest) == ["keep.txt"]


def test_a_kill_during_extraction_never_exposes_a_partial_tree(tmp_path: Path) -> None:
    archive = pack_to(tmp_path)
    dest = tmp_path / "dest"
    marker = tmp_path / "extracting"
    child = textwrap.dedent(f"""
        import sys, time
        from pathlib import Path
        sys.path[:0] = {[str(Path(__file__).parents[1]), str(Path(__file__).parents[2])]!r}
        from runfixtures import RecordingProgress
        from mdl.archive.unpack import unpack_archive
        def stall(key, nbytes):
            Path({str(marker)!r}).touch()
            time.sleep(60)
        unpack_archive(Path({str(archive)!r}), dest=Path({str(dest)!r}), force=False,
                       progress=RecordingProgress(stall), cwd=Path("."))
        """)
    proc = subprocess.Popen([sys.executable, "-c", child])
    wait_for(lambda: marker.exists() or proc.poll() is not None, what="the child extracting")
    assert marker.exists(), "the child never started extracting"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (dest / "model").exists()
    leftovers = [p for p in os.listdir(dest) if p.startswith(".mdl-unpack-")]
    # hidden staging, beside the destination, never the destination itself
    assert len(leftovers) == 1
    assert unpack(archive, dest).files  # a later run is not blocked by it
    assert (dest / "model" / "config.json").is_file()


def test_errors_are_mdl_errors_with_one_line_messages(tmp_path: Path) -> None:
    archive = build_zip(tmp_path / "evil.zip", [("a\nb", b"x")])
    with pytest.raises(MdlError) as err:
        unpack(archive, tmp_path / "dest")
    assert "\n" not in err.value.message


def test_an_archive_streamed_to_stdout_unpacks_too(tmp_path: Path) -> None:
    """Piped archives carry data descriptors (a pipe cannot be rewound); they verify all the
    same.
    """
    make_hf_run(tmp_path / "run", steps=(100,))
    with (tmp_path / "streamed.zip").open("wb") as out:
        options = PackOptions(
            run_dir=Path("run"), output=Path("-"), checkpoint="latest", cwd=tmp_path
        )
        pack_run(options, progress=NullProgress(), stdout=out)
    result = unpack(tmp_path / "streamed.zip", tmp_path / "dest")
    assert result.manifest and result.top_level == ("run-checkpoint-100",)
    weights = tmp_path / "dest" / "run-checkpoint-100" / "model.safetensors"
    assert (
        weights.read_bytes()
        == (tmp_path / "run" / "checkpoint-100" / "model.safetensors").read_bytes()
    )


@pytest.mark.parametrize("failure", ["crc", "sha256", "interrupt"])
def test_a_failed_unpack_removes_the_folders_it_made_and_no_other(
    tmp_path: Path, failure: str
) -> None:
    # packaging.md: any failure leaves the destination as it was, so a DIR it made goes too
    original = pack_to(tmp_path)
    with zipfile.ZipFile(original) as zf:
        weights = bytearray(zf.read("model/model.safetensors"))
    weights[-1] ^= 0xFF
    archive = rewrite(original, tmp_path / "bad.zip", {"model/model.safetensors": bytes(weights)})
    if failure == "crc":  # the same bytes, the CRC of the original: a CRC mismatch
        archive = build_zip(tmp_path / "crc.zip", [("pkg/a.bin", b"A" * 5000)])
        _patch(archive, archive.read_bytes().index(b"A" * 100) + 50, b"Z")
    if failure == "interrupt":
        archive = original

    def interrupt(key: str, nbytes: int) -> None:
        raise KeyboardInterrupt

    (tmp_path / "was").mkdir()
    for dest in (tmp_path / "new" / "dest", tmp_path / "was" / "dest"):
        with pytest.raises((IntegrityError, KeyboardInterrupt)):
            unpack(
                archive,
                dest,
                progress=RecordingProgress(interrupt) if failure == "interrupt" else None,
            )
    assert not (tmp_path / "new").exists()
    assert listing(tmp_path / "was") == []  # kept: it was there before


def test_an_archive_without_entries_is_exit_2_naming_it(tmp_path: Path) -> None:
    archive = tmp_path / "empty.zip"
    archive.write_bytes(b"PK\x05\x06" + bytes(18))  # a bare end record, as zipfile writes one
    with pytest.raises(ArchiveError, match=r"empty\.zip holds no files") as err:
        unpack(archive, tmp_path / "dest")
    assert err.value.exit_code == ExitCode.USAGE
    assert not (tmp_path / "dest").exists()


def test_two_unpacks_into_one_folder_at_once_never_replace_each_others_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two cron jobs unpack archives with the same top-level folder into one DIR at once: the one
    that swaps second sees the first's files (exit 2 without --force, as run one after the other),
    never moves them aside unseen; what it extracted is gone, the first's files stay."""
    from mdl.archive import unpack as unpacking

    archive = build_zip(tmp_path / "b.zip", [("p2/config.json", b'{"model_type": "gpt2"}')])
    dest = tmp_path / "U"
    real = unpacking._extract

    def the_other_unpack_swaps_first(*args: object, **kwargs: object) -> object:
        done = real(*args, **kwargs)  # type: ignore[arg-type]
        (dest / "p2").mkdir()
        (dest / "p2" / "config.json").write_bytes(b'{"model_type": "bert"}')
        return done

    monkeypatch.setattr(unpacking, "_extract", the_other_unpack_swaps_first)
    with pytest.raises(UsageError, match="already exists and is not empty"):
        unpack(archive, dest)
    assert [p for p in listing(dest) if not p.startswith(".mdl")] == ["p2", "p2/config.json"]
    assert (dest / "p2" / "config.json").read_bytes() == b'{"model_type": "bert"}'


def test_an_unpack_waits_for_a_swap_under_way_within_its_bound(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another unpack's swap holds DIR (renames only): one held past the bound is a process
    stopped there, exit 7 naming DIR; DIR as it was."""
    import fcntl

    from mdl.archive import staging
    from mdl.errors import LockTimeoutError

    monkeypatch.setattr(staging, "SWAP_WAIT", 0.2)
    archive = build_zip(tmp_path / "a.zip", [("p/x.txt", b"x")])
    dest = tmp_path / "U"
    dest.mkdir()
    held = os.open(dest, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(held, fcntl.LOCK_EX)
        with pytest.raises(LockTimeoutError, match="another unpack is swapping files into it"):
            unpack(archive, dest)
    finally:
        os.close(held)
    assert [p for p in listing(dest) if not p.startswith(".mdl")] == []
    unpack(archive, dest)
    assert [p for p in listing(dest) if not p.startswith(".mdl")] == ["p", "p/x.txt"]
