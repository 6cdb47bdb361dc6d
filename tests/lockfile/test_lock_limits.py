"""Issue 37, class C: catalog.lock has a bound on the whole, checked before a byte of it is parsed
(exit 2 naming the file and the limit), mdl never writes a lock it would refuse to read, and reading
one costs memory for its entries, not for copies of its text."""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import tracemalloc
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from runfixtures import mdl, use_catalog
from zygote import forked_mdl

from mdl.catalog.load import parse_catalog
from mdl.errors import CatalogError, ExitCode
from mdl.lockfile import io as lock_io
from mdl.lockfile.io import read_lock, write_lock
from mdl.lockfile.model import Lock, LockedFile, LockedModel, fingerprint
from mdl.paths import read_bounded

CATALOG = '[models.big]\nrepo = "org/big"\n'
COMMIT = "c" * 40


def big_lock(folder: Path, files: int) -> Path:
    """A valid catalog.lock (as mdl lock writes it) pinning ``files`` files of model ``big``."""
    spec = parse_catalog(CATALOG).models[0]
    entries = tuple(
        LockedFile(
            f"shards/part-{i:06d}.safetensors",
            i,
            hashlib.sha256(str(i).encode()).hexdigest(),
            f"hf://org/big@{COMMIT}/shards/part-{i:06d}.safetensors",
        )
        for i in range(files)
    )
    lock = Lock({"big": LockedModel("big", fingerprint(spec), "main", COMMIT, entries)})
    path = folder / "catalog.lock"
    write_lock(path, lock)
    return path


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    use_catalog(tmp_path, monkeypatch, CATALOG, endpoint="http://127.0.0.1:9")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return tmp_path


COMMANDS = [
    ("list",),
    ("show", "big"),
    ("verify", "big"),
    ("resolve", "big"),
    ("lock", "--check"),
    ("pull", "big"),
]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: c[0])
def test_an_oversize_lock_is_exit_2_naming_the_file_and_the_limit_unparsed(
    env: Path, command: tuple[str, ...]
) -> None:
    lock = env / "catalog.lock"
    # sparse: 64 MiB of NULs, which any parse would call invalid TOML
    with lock.open("wb") as handle:
        handle.truncate(lock_io.MAX_LOCK_BYTES + 1)
    result = mdl(*command)
    assert result.exit_code == ExitCode.USAGE == 2, result.output
    assert f"{lock}: more than the 64 MiB a lock may hold; not read" in result.stderr
    assert "invalid TOML" not in result.stderr and "internal error" not in result.stderr


def test_a_lock_one_byte_over_the_limit_is_refused_and_at_the_limit_is_read(
    env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = big_lock(env, 20)
    size = path.stat().st_size
    monkeypatch.setattr(lock_io, "MAX_LOCK_BYTES", size)
    assert read_lock(path) is not None
    monkeypatch.setattr(lock_io, "MAX_LOCK_BYTES", size - 1)
    with pytest.raises(CatalogError, match="more than the 0 MiB a lock may hold") as info:
        read_lock(path)
    assert info.value.exit_code == 2 and str(path) in info.value.message


def test_mdl_never_writes_a_lock_it_would_refuse_to_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    small = big_lock(tmp_path, 2)
    before = small.read_bytes()
    (tmp_path / "other").mkdir()
    lock = read_lock(big_lock(tmp_path / "other", 20))
    assert lock is not None
    monkeypatch.setattr(lock_io, "MAX_LOCK_BYTES", len(before) + 10)
    with pytest.raises(
        CatalogError, match=r"the lock would be \d+ bytes, more than the 0 MiB a lock may hold; not"
    ):
        write_lock(small, lock)
    assert small.read_bytes() == before, "the lock there is left as it was"


@pytest.mark.slow
def test_a_fifo_at_the_locks_name_is_refused_without_waiting(env: Path) -> None:
    os.mkfifo(env / "catalog.lock")
    done = subprocess.run(
        [forked_mdl(), "list"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=os.environ,
    )
    assert done.returncode == 2, done.stderr
    assert "catalog.lock: cannot read the lock: it is a FIFO, not a regular file" in done.stderr


@pytest.mark.slow
def test_reading_a_lock_costs_its_entries_not_copies_of_its_text(tmp_path: Path) -> None:
    path = big_lock(tmp_path, 5000)
    read_lock(path)  # imports and caches first
    tracemalloc.start()
    try:
        lock = read_lock(path)
        kept, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert lock is not None and len(lock.models["big"].files) == 5000
    # Before: the bytes, the text, the whole TOML document and the entries at once (7.3 x the file's
    # size at the peak, 3.3 MiB of entries); now each form is let go as the next is made, each
    # file's table as its entry is, and the entries have no __dict__ (4.2 x, 2.1 MiB).
    size = path.stat().st_size
    assert peak < 5.5 * size, f"peak {peak / size:.1f} x the lock's size"
    assert kept < 2.5 * size, f"entries {kept / size:.1f} x the lock's size"


def test_a_lock_error_still_names_the_key_path(tmp_path: Path) -> None:
    path = big_lock(tmp_path, 3)
    path.write_text(path.read_text().replace("size = 2,", 'size = "2",'))
    with pytest.raises(
        CatalogError, match=r"model\[0\]\.files\[2\]\.size: Input should be a valid integer"
    ):
        read_lock(path)


@given(data=st.binary(max_size=300), limit=st.integers(min_value=0, max_value=300))
def test_read_bounded_reads_at_most_one_byte_past_the_limit(data: bytes, limit: int) -> None:
    handle = io.BytesIO(data)
    got = read_bounded(handle, limit=limit)
    if len(data) <= limit:
        assert got == data
    else:
        assert got is None
        assert handle.tell() <= limit + 1
