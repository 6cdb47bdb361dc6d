"""The hostile-archive reader on hand-made zips: versions, flags, names (UTF-8, Info-ZIP, CP437,
bidi, lengths), bombs spread over many entries, lying sizes and descriptor use. Every refusal is
exit 2 naming the entry."""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import sys
import textwrap
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import pytest
from runfixtures import RecordingProgress
from zygote import forked_mdl

from mdl.archive.unpack import UnpackResult, unpack_archive
from mdl.archive.zipread import decode_name
from mdl.errors import ArchiveError, ExitCode, MdlError, UsageError
from mdl.progress import NullProgress, Progress

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Raw:
    """One entry exactly as it will be written: raw name bytes, flags, version, extra and (for
    bombs) lies.
    """

    name: bytes
    data: bytes = b""
    flags: int = 0
    method: int = 0  # 0 stored, 8 deflate
    version: int = 20
    extra: bytes = b""
    level: int = 6
    declared_size: int | None = None  # a lie about the uncompressed size, in both headers


def craft(entries: list[Raw]) -> bytes:
    """A zip with full control over every header field (zipfile would fix or refuse what these
    tests need).
    """
    out = bytearray()
    central = bytearray()
    for e in entries:
        if e.method == 8:
            squeezer = zlib.compressobj(e.level, zlib.DEFLATED, -15)
            payload = squeezer.compress(e.data) + squeezer.flush()
        else:
            payload = e.data
        size = len(e.data) if e.declared_size is None else e.declared_size
        crc = zlib.crc32(e.data)
        offset = len(out)
        fields = (
            e.version,
            e.flags,
            e.method,
            0,
            0x21,
            crc,
            len(payload),
            size,
            len(e.name),
            len(e.extra),
        )
        out += struct.pack("<4sHHHHHLLLHH", b"PK\x03\x04", *fields) + e.name + e.extra + payload
        central += struct.pack(
            "<4sBBHHHHHLLLHHHHHLL",
            b"PK\x01\x02",
            20,
            3,
            *fields,
            0,
            0,
            0,
            (0o100644 if not e.name.endswith(b"/") else 0o40755) << 16,
            offset,
        )
        central += e.name + e.extra
    start = len(out)
    out += central
    out += struct.pack(
        "<4sHHHHLLH", b"PK\x05\x06", 0, 0, len(entries), len(entries), len(central), start, 0
    )
    return bytes(out)


def unicode_path(header_name: bytes, real: str) -> bytes:
    """Info-ZIP's Unicode Path extra field (0x7075): version 1, CRC-32 of the header name, the
    UTF-8 name.
    """
    body = b"\x01" + struct.pack("<L", zlib.crc32(header_name)) + real.encode()
    return struct.pack("<HH", 0x7075, len(body)) + body


def save(tmp_path: Path, entries: list[Raw], name: str = "crafted.zip") -> Path:
    path = tmp_path / name
    path.write_bytes(craft(entries))
    return path


def unpack(
    archive: Path, dest: Path, *, progress: Progress | None = None, **kwargs: float
) -> UnpackResult:
    return unpack_archive(
        archive,
        dest=dest,
        force=False,
        progress=progress or NullProgress(),
        cwd=archive.parent,
        **kwargs,
    )


def tree(folder: Path) -> list[str]:
    return (
        sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*"))
        if folder.exists()
        else []
    )


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MDL_LOG_FILE": str(cwd / "mdl.log")}
    return subprocess.run([forked_mdl(), *args], cwd=cwd, env=env, capture_output=True, text=True)


# --- finding 10: what zipfile raised as NotImplementedError or UnicodeDecodeError (exit 1) is exit
# 2 -------


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        (Raw(b"pkg/w.bin", b"data", version=70), "needs zip version 7.0"),
        (Raw(b"pkg/w.bin", b"data", version=0x3F + 1), "needs zip version 6.4"),
        (Raw(b"pkg/w.bin", b"data", flags=0x40), "encrypted"),
        (Raw(b"pkg/w.bin", b"data", flags=0x20), "patched data"),
        (Raw(b"pkg/w.bin", b"data", flags=0x2000), "encrypted"),
        (Raw(b"pkg/w.bin", b"data", flags=0x1), "encrypted"),
    ],
    ids=[
        "version-7.0",
        "version-6.4",
        "strong-encryption",
        "patched",
        "masked-headers",
        "encrypted",
    ],
)
def test_unsupported_versions_and_flags_are_exit_2_naming_the_entry(
    tmp_path: Path, raw: Raw, words: str
) -> None:
    archive = save(tmp_path, [Raw(b"pkg/ok.txt", b"fine"), raw])
    with pytest.raises(ArchiveError, match=words) as err:
        unpack(archive, tmp_path / "dest")
    assert "'pkg/w.bin'" in err.value.message and err.value.exit_code == ExitCode.USAGE
    assert tree(tmp_path / "dest") == []


def test_utf8_flag_with_invalid_utf8_is_exit_2_naming_the_entry(tmp_path: Path) -> None:
    archive = save(tmp_path, [Raw(b"pkg/bad\xff\xfe.txt", b"x", flags=0x800)])
    with pytest.raises(ArchiveError, match="marked UTF-8") as err:
        unpack(archive, tmp_path / "dest")
    assert "bad\\xff\\xfe" in err.value.message


@pytest.mark.slow
def test_the_same_archives_through_the_cli_exit_2(tmp_path: Path) -> None:
    for i, raw in enumerate(
        [
            Raw(b"p/a", b"x", version=70),
            Raw(b"p/a", b"x", flags=0x40),
            Raw(b"p/\xff", b"x", flags=0x800),
        ]
    ):
        save(tmp_path, [raw], f"a{i}.zip")
        result = cli("unpack", f"a{i}.zip", "-d", "out", cwd=tmp_path)
        assert result.returncode == 2, result.stderr
        assert "p/" in result.stderr and "Traceback" not in result.stderr


def test_zipfile_made_archives_patched_the_same_way(tmp_path: Path) -> None:
    """The reviewer's recipe: a normal archive with its version or flag fields edited in both
    headers.
    """
    for field, value, words in ((4, 70, "7.0"), (6, 0x40, "encrypted"), (6, 0x20, "patched")):
        path = tmp_path / f"z{field}{value}.zip"
        with zipfile.ZipFile(path, "w") as zf:
            zf.writestr("pkg/w.bin", b"data")
        raw = bytearray(path.read_bytes())
        central = raw.index(b"PK\x01\x02")
        struct.pack_into("<H", raw, field, value)
        # the central record has "version made by" first
        struct.pack_into("<H", raw, central + field + 2, value)
        path.write_bytes(raw)
        with pytest.raises(ArchiveError, match=words):
            unpack(path, tmp_path / "dest")


# --- finding 19: names as unzip, 7-Zip and bsdtar read them
# -------------------------------------------


def test_raw_utf8_names_without_the_flag_are_utf8(tmp_path: Path) -> None:
    archive = save(
        tmp_path, [Raw("café/模型.txt".encode(), b"x"), Raw(b"caf\xc3\xa9/plain.txt", b"y")]
    )
    unpack(archive, tmp_path / "dest")
    assert tree(tmp_path / "dest") == ["café", "café/plain.txt", "café/模型.txt"]


def test_the_info_zip_unicode_path_field_wins_when_its_crc_matches(tmp_path: Path) -> None:
    header = "Ölmodell.txt".encode("cp437")
    good = Raw(b"d1/" + header, b"x", extra=unicode_path(b"d1/" + header, "d1/Ölmodell.txt"))
    stale = Raw(b"d2/" + header, b"y", extra=unicode_path(b"d2/other", "d2/ignored.txt"))
    unpack(save(tmp_path, [good, stale]), tmp_path / "dest")
    # stale: CP437
    assert tree(tmp_path / "dest") == ["d1", "d1/Ölmodell.txt", "d2", "d2/Ölmodell.txt"]


def test_names_that_are_not_utf8_are_cp437(tmp_path: Path) -> None:
    unpack(save(tmp_path, [Raw(b"pkg/caf\x82.txt", b"x")]), tmp_path / "dest")
    assert tree(tmp_path / "dest") == ["pkg", "pkg/café.txt"]


@pytest.mark.parametrize("real", ["../evil.txt", "pkg/a\u202etxt.exe", "pkg/CON", "pkg/a\u2028b"])
def test_name_checks_apply_to_the_decoded_name(tmp_path: Path, real: str) -> None:
    archive = save(
        tmp_path, [Raw(b"pkg/harmless.txt", b"x", extra=unicode_path(b"pkg/harmless.txt", real))]
    )
    with pytest.raises(ArchiveError, match="unsafe entry"):
        unpack(archive, tmp_path / "dest")
    assert tree(tmp_path / "dest") == []
    assert not (tmp_path / "evil.txt").exists()


def test_decode_name_rules() -> None:
    assert decode_name("ü".encode(), 0x800, None) == "ü"
    assert decode_name(b"\x81", 0, None) == "ü"  # CP437
    assert decode_name("ü".encode(), 0, None) == "ü"  # raw UTF-8 (zip 3.0)
    assert decode_name(b"x", 0, b"\x01" + struct.pack("<L", zlib.crc32(b"x")) + "ÿ".encode()) == "ÿ"
    assert decode_name(b"x", 0, b"\x01" + struct.pack("<L", 0) + b"y") == "x"
    assert decode_name(b"x", 0, b"\x02junk") == "x"  # unknown version: ignored


@pytest.mark.skipif(shutil.which("zip") is None, reason="Info-ZIP zip is not installed")
def test_an_info_zip_archive_with_non_ascii_names_round_trips(tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "modèle").mkdir(parents=True)
    (src / "modèle" / "配置.json").write_text("{}")
    env = {**os.environ, "LC_ALL": "C.UTF-8"}
    subprocess.run(
        ["zip", "-q", "-r", str(tmp_path / "iz.zip"), "modèle"], cwd=src, env=env, check=True
    )
    unpack(tmp_path / "iz.zip", tmp_path / "dest")
    assert (tmp_path / "dest" / "modèle" / "配置.json").read_text() == "{}"


# --- finding 13 (archive share): invisible and direction characters, NAME_MAX and PATH_MAX
# ------------


@pytest.mark.parametrize(
    "name",
    [
        "pkg/evil\u202etxt.exe",
        "pkg/a\u2028b",
        "pkg/a\u2029b",
        "pkg/zero\u200bwidth",
        "pkg/\ufeffbom",
        "pkg/a\u0085b",
    ],
    ids=repr,
)
def test_bidi_separators_and_invisible_characters_are_refused(tmp_path: Path, name: str) -> None:
    archive = save(tmp_path, [Raw(name.encode(), b"x", flags=0x800)])
    with pytest.raises(ArchiveError, match="unsafe entry") as err:
        unpack(archive, tmp_path / "dest")
    assert err.value.exit_code == ExitCode.USAGE and "\n" not in err.value.message
    assert tree(tmp_path / "dest") == []


def test_components_over_name_max_bytes_are_refused(tmp_path: Path) -> None:
    # 256 bytes, 128 chars
    archive = save(tmp_path, [Raw(("pkg/" + "é" * 128).encode(), b"x", flags=0x800)])
    with pytest.raises(ArchiveError, match=r"longer than 255 bytes \(NAME_MAX 255\)"):
        unpack(archive, tmp_path / "dest")


def test_components_of_up_to_name_max_bytes_unpack(tmp_path: Path) -> None:
    # unpack writes final names, never a temp name beside one: get's reserve (229) is not its rule
    name = "pkg/" + "é" * 127 + "a"  # 255 bytes
    archive = save(tmp_path, [Raw(name.encode(), b"x", flags=0x800)])
    unpack(archive, tmp_path / "dest")
    assert (tmp_path / "dest" / name).read_bytes() == b"x"


def test_paths_too_long_for_the_destination_are_refused_before_writing(tmp_path: Path) -> None:
    # ~3.6 kB: an entry of ~500 bytes pushes it past PATH_MAX
    dest = tmp_path.joinpath(*["d" * 250] * 14)
    name = "pkg/" + "/".join(["n" * 200] * 3)
    archive = save(tmp_path, [Raw(name.encode(), b"x")])
    with pytest.raises(ArchiveError, match="would make a path of"):
        unpack(archive, dest)
    assert not (tmp_path / ("d" * 250)).exists()


# --- findings 6 and 23: bombs, per entry and in total, with a way to let a legitimate archive
# through --


@pytest.mark.slow
def test_a_bomb_spread_over_many_entries_is_refused_in_total(tmp_path: Path) -> None:
    zeros = bytes(1_000_000)  # under the 1 MiB per-entry floor, ~1000:1 each
    entries = [Raw(f"bomb/{i:03}.bin".encode(), zeros, method=8, level=9) for i in range(500)]
    archive = save(tmp_path, entries)
    assert archive.stat().st_size < 1_000_000
    with pytest.raises(ArchiveError, match=r"in total.*zip bomb") as err:
        unpack(archive, tmp_path / "dest")
    assert err.value.hint and "--max-ratio" in err.value.hint
    assert tree(tmp_path / "dest") == []


def test_max_ratio_lets_a_legitimate_archive_through(tmp_path: Path) -> None:
    entries = [Raw(f"sparse/{i}.bin".encode(), bytes(1_000_000), method=8) for i in range(8)]
    archive = save(tmp_path, entries)
    with pytest.raises(ArchiveError, match="zip bomb") as err:
        unpack(archive, tmp_path / "d1")
    assert err.value.hint is not None
    allowed = int(err.value.hint.split("--max-ratio ")[1].split()[0])
    result = unpack(archive, tmp_path / "d2", max_ratio=allowed)
    assert (
        len(result.files) == 8
        and (tmp_path / "d2" / "sparse" / "7.bin").stat().st_size == 1_000_000
    )


def test_a_single_entry_bomb_says_how_to_override(tmp_path: Path) -> None:
    archive = save(tmp_path, [Raw(b"bomb/zeros.bin", bytes(8 << 20), method=8)])
    with pytest.raises(ArchiveError, match=r"'bomb/zeros.bin'.*limit 200:1") as err:
        unpack(archive, tmp_path / "dest")
    assert err.value.hint and "--max-ratio" in err.value.hint
    assert unpack(archive, tmp_path / "ok", max_ratio=float("inf")).files[0].size == 8 << 20


@pytest.mark.parametrize("bad", [0, -1, float("nan")])
def test_max_ratio_must_be_positive(tmp_path: Path, bad: float) -> None:
    archive = save(tmp_path, [Raw(b"pkg/a", b"x")])
    with pytest.raises(UsageError, match="max_ratio"):
        unpack(archive, tmp_path / "dest", max_ratio=bad)


def test_real_output_is_counted_and_stops_at_the_declared_size(tmp_path: Path) -> None:
    """A deflate stream that makes 16 MiB while both headers declare 1000 bytes: at most 1000 are
    written.
    """
    liar = Raw(b"pkg/small.txt", bytes(16 << 20), method=8, declared_size=1000)
    progress = RecordingProgress()
    with pytest.raises(ArchiveError, match="larger than its declared 1000 bytes"):
        unpack(save(tmp_path, [liar]), tmp_path / "dest", progress=progress)
    assert progress.advanced <= 1000
    assert tree(tmp_path / "dest") == []


# --- finding 8: folder descriptors stay bounded
# ---------------------------------------------------------


def test_many_folders_unpack_under_a_low_descriptor_limit(tmp_path: Path) -> None:
    entries = [Raw(f"many/d{i:04}/f.txt".encode(), b"x") for i in range(400)]
    archive = save(tmp_path, entries)
    child = textwrap.dedent(f"""
        import resource, sys
        from pathlib import Path
        resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))
        from mdl.archive.unpack import unpack_archive
        from mdl.progress import NullProgress
        result = unpack_archive(Path({str(archive)!r}), dest=Path({str(tmp_path / "dest")!r}), force=False,
                                progress=NullProgress(), cwd=Path("."))
        print(len(result.files))
        """)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", child], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "400"
    assert (tmp_path / "dest" / "many" / "d0399" / "f.txt").read_bytes() == b"x"


# --- the parser itself
# --------------------------------------------------------------------------------


def test_local_header_names_must_match_the_central_directory(tmp_path: Path) -> None:
    raw = bytearray(craft([Raw(b"pkg/nice.txt", b"x")]))
    # the local header's copy of the name (readers that stream believe it)
    raw[30:42] = b"pkg/evil.txt"
    (tmp_path / "spoof.zip").write_bytes(raw)
    with pytest.raises(ArchiveError, match="spoofed"):
        unpack(tmp_path / "spoof.zip", tmp_path / "dest")


def test_a_truncated_deflate_stream_is_refused(tmp_path: Path) -> None:
    data = os.urandom(200_000).hex().encode()
    raw = craft([Raw(b"pkg/a.txt", data, method=8)])
    cut = bytearray(raw)
    size = struct.unpack_from("<L", cut, 18)[0]
    struct.pack_into("<L", cut, 18, size // 2)  # both headers say the stream is half as long
    central = cut.index(b"PK\x01\x02")
    struct.pack_into("<L", cut, central + 20, size // 2)
    (tmp_path / "cut.zip").write_bytes(cut)
    with pytest.raises(MdlError) as err:
        unpack(tmp_path / "cut.zip", tmp_path / "dest")
    assert err.value.exit_code in (ExitCode.USAGE, ExitCode.INTEGRITY)


def test_an_archive_that_is_a_folder_or_fifo_is_refused(tmp_path: Path) -> None:
    (tmp_path / "folder.zip").mkdir()
    with pytest.raises(UsageError, match="not a regular file"):
        unpack(tmp_path / "folder.zip", tmp_path / "dest")
    os.mkfifo(tmp_path / "pipe.zip")
    with pytest.raises(UsageError, match="not a regular file"):
        unpack(tmp_path / "pipe.zip", tmp_path / "dest")


@pytest.mark.parametrize("offset", [1 << 62, (1 << 64) - 2, 1 << 20])
def test_a_zip64_local_header_offset_past_the_file_is_exit_2_naming_the_entry(
    tmp_path: Path, offset: int
) -> None:
    # every offset an archive states is checked against its size before a seek: 2**62 was exit 7
    # (EINVAL), 2**64-2 an internal error (seek's int overflows)
    extra = struct.pack("<HHQQQ", 1, 24, 4, 4, offset)
    raw = bytearray(craft([Raw(b"pkg/big", b"data", extra=extra)]))
    central = raw.index(b"PK\x01\x02")
    struct.pack_into("<LL", raw, central + 20, 0xFFFFFFFF, 0xFFFFFFFF)
    struct.pack_into("<L", raw, central + 42, 0xFFFFFFFF)
    (tmp_path / "far.zip").write_bytes(raw)
    with pytest.raises(ArchiveError, match=r"entry 'pkg/big' .*outside the file") as err:
        unpack(tmp_path / "far.zip", tmp_path / "dest")
    assert err.value.exit_code == ExitCode.USAGE
    assert not (tmp_path / "dest").exists()
