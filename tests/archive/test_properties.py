"""The parsers of untrusted input in pack/unpack, fuzzed: whatever the bytes, the outcome is success
or an MdlError with a documented exit code — never another exception, never a byte written outside
the target folder."""

from __future__ import annotations

import io
import json
import math
import os
import struct
import tempfile
import unicodedata
import zipfile
import zlib
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from profiles import examples
from runfixtures import make_hf_run, write

from mdl.archive.packer import PackOptions, pack_run, select_checkpoint
from mdl.archive.unpack import unpack_archive
from mdl.archive.zipread import decode_name
from mdl.errors import ArchiveError, ExitCode, MdlError
from mdl.paths import name_problem
from mdl.progress import NullProgress

FUZZ = settings(
    max_examples=examples(60), deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
DOCUMENTED = {ExitCode.USAGE, ExitCode.INTEGRITY, ExitCode.LOCAL}


def _seed_archives() -> list[bytes]:
    """Valid archives to mutate: an mdl pack (manifest, stored and deflated), a plain zip with
    folders and UTF-8 names, and one with ZIP64 extras and an Info-ZIP Unicode Path field."""
    seeds: list[bytes] = []
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        make_hf_run(root / "run", steps=(1,))
        pack_run(
            PackOptions(run_dir=Path("run"), output=Path("m.zip"), checkpoint="latest", cwd=root),
            progress=NullProgress(),
        )
        seeds.append((root / "m.zip").read_bytes())
    plain = io.BytesIO()
    with zipfile.ZipFile(plain, "w") as zf:
        zf.writestr("pkg/", b"")
        zf.writestr(zipfile.ZipInfo("pkg/café.txt"), b"caf\xc3\xa9 " * 40)
        zf.writestr("pkg/sub/data.bin", bytes(range(256)) * 4, compress_type=zipfile.ZIP_DEFLATED)
    seeds.append(plain.getvalue())
    zip64 = io.BytesIO()
    with zipfile.ZipFile(zip64, "w") as zf:
        with zf.open(zipfile.ZipInfo("z/big.bin"), "w", force_zip64=True) as entry:
            entry.write(b"z" * 300)
        info = zipfile.ZipInfo("z/e.txt")
        info.extra = _unicode_path(b"z/e.txt", "z/é.txt")
        zf.writestr(info, b"text")
    seeds.append(zip64.getvalue())
    return seeds


def _unicode_path(header: bytes, real: str) -> bytes:
    body = b"\x01" + struct.pack("<L", zlib.crc32(header)) + real.encode()
    return struct.pack("<HH", 0x7075, len(body)) + body


SEEDS = _seed_archives()


def _header_offsets(data: bytes) -> list[int]:
    """Where the headers are: mutations there reach the parser instead of the payload."""
    found = []
    for signature in (b"PK\x03\x04", b"PK\x01\x02", b"PK\x05\x06", b"PK\x06\x06", b"PK\x06\x07"):
        start = data.find(signature)
        while start >= 0:
            found.append(start)
            start = data.find(signature, start + 1)
    return found


def _unpack_and_check(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        (root / "a.zip").write_bytes(data)
        dest = root / "out" / "dest"
        try:
            unpack_archive(
                Path("a.zip"), dest=Path("out/dest"), force=False, progress=NullProgress(), cwd=root
            )
        except MdlError as exc:
            assert exc.exit_code in DOCUMENTED, exc
            assert "\n" not in exc.message
        assert sorted(os.listdir(root)) in (["a.zip"], ["a.zip", "out"])
        if (root / "out").exists():
            assert os.listdir(root / "out") == ["dest"]
        for path in dest.rglob("*") if dest.exists() else ():
            assert not path.is_symlink()
            assert Path(os.path.realpath(path)).is_relative_to(dest)
            assert not path.name.startswith(".mdl-unpack-")


@FUZZ
@given(st.binary(max_size=3000))
def test_random_bytes(data: bytes) -> None:
    _unpack_and_check(data)


@FUZZ
@given(st.binary(min_size=22, max_size=400))
def test_random_bytes_behind_a_real_end_record(data: bytes) -> None:
    count = data[0] % 4
    end = struct.pack("<4sHHHHLLH", b"PK\x05\x06", 0, 0, count, count, len(data), 0, 0)
    _unpack_and_check(data + end)


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(SEEDS)))
    hot = _header_offsets(bytes(data))
    for _ in range(draw(st.integers(1, 3))):
        if draw(st.booleans()):
            pos = draw(st.sampled_from(hot)) + draw(st.integers(0, 60))
        else:
            pos = draw(st.integers(0, len(data) - 1))
        pos = min(pos, len(data) - 1)
        kind = draw(st.sampled_from(["byte"] * 4 + ["word"] * 3 + ["big"] * 3 + ["cut", "insert"]))
        if kind == "byte":
            data[pos] = draw(st.integers(0, 255))
        elif kind == "word":
            data[pos : pos + 2] = draw(
                st.sampled_from([0, 1, 0x800, 0x8, 0x40, 0x20, 0xFFFF, 63, 70])
            ).to_bytes(2, "little")
        elif kind == "big":
            data[pos : pos + 4] = draw(
                st.sampled_from([0, 0xFFFFFFFF, 1 << 31, 1 << 20, 7])
            ).to_bytes(4, "little")
        elif kind == "cut":
            del data[pos:]
            if not data:
                break
        else:
            data[pos:pos] = draw(st.binary(min_size=1, max_size=8))
    return bytes(data)


@settings(max_examples=examples(150), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
def test_mutated_archives(data: bytes) -> None:
    _unpack_and_check(data)


@FUZZ
@given(st.text(max_size=80))
def test_names_that_pass_are_safe(name: str) -> None:
    problem = name_problem(name)
    if problem is not None:
        assert isinstance(problem, str) and problem
        return
    parts = name.split("/")
    assert all(part not in ("", ".", "..") and len(part.encode()) <= 255 for part in parts)
    assert not name.startswith("/") and "\\" not in name and ":" not in name
    assert all(unicodedata.category(c) not in ("Cc", "Cf", "Cs", "Zl", "Zp") for c in name)


@FUZZ
@given(st.binary(max_size=60), st.integers(0, 0xFFFF), st.one_of(st.none(), st.binary(max_size=40)))
def test_decoding_names_is_a_string_or_an_archive_error(
    raw: bytes, flags: int, extra: bytes | None
) -> None:
    try:
        assert isinstance(decode_name(raw, flags, extra), str)
    except ArchiveError as exc:
        assert exc.exit_code == ExitCode.USAGE


JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=20)
    | st.sampled_from(
        ["checkpoint-1", "/old/run/checkpoint-1", "../../x", "/etc", "checkpoint-１"]
    ),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=20,
)
STATE = st.fixed_dictionaries(
    {},
    optional={
        "global_step": JSON | st.integers(0, 5),
        "best_metric": JSON,
        "best_global_step": JSON | st.integers(0, 3),
        "best_model_checkpoint": (
            JSON | st.sampled_from(["checkpoint-1", "x/checkpoint-1", "checkpoint-2"])
        ),
    },
)


def _select_best(text: str | bytes) -> None:
    with tempfile.TemporaryDirectory() as folder:
        run = Path(folder) / "run"
        make_hf_run(run, steps=(1,))
        write(run / "trainer_state.json", text)
        write(run / "checkpoint-1" / "trainer_state.json", text)
        try:
            selection = select_checkpoint(run, "best")
        except MdlError as exc:
            assert exc.exit_code == ExitCode.USAGE, exc
            return
        assert selection.checkpoint == "checkpoint-1"
        assert selection.metric is None or math.isfinite(selection.metric)
        json.dumps({"metric": selection.metric, "reason": selection.reason}, allow_nan=False)


@FUZZ
@given(STATE)
def test_trainer_state_documents(state: dict[str, Any]) -> None:
    _select_best(json.dumps(state))


@FUZZ
@given(st.one_of(st.binary(max_size=200), st.text(max_size=200), JSON.map(json.dumps)))
def test_trainer_state_bytes(raw: str | bytes) -> None:
    _select_best(raw)
