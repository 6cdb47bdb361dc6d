"""The destination store: safe paths, records, partial listing, hashing and per-file locks."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from clocks import FakeClock
from filelock import FileLock
from runfixtures import HANG

from mdl.errors import (
    ExitCode,
    InterruptedByUserError,
    LocalFSError,
    LockTimeoutError,
    UnsafePathError,
)
from mdl.store.filesystem import hash_file, stat_file
from mdl.store.records import FileRecord, ModelRecord
from mdl.store.store import Store
from mdl.wait import Wait


def rec(path: str, n: int = 1) -> FileRecord:
    return FileRecord(
        path=path,
        size=n,
        sha256=hashlib.sha256(path.encode()).hexdigest(),
        mtime_ns=n,
        source=f"hf://org/x@c/{path}",
        git_oid="1" * 40,
        etag='"e"',
        commit="c" * 40,
        fetched_at="2026-01-01T00:00:00Z",
    )


# -- paths
# -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["model.bin", "vae/ae.safetensors", "a/b/c.txt", "a/../b.txt"])
def test_final_path_inside_the_model_folder(tmp_path: Path, path: str) -> None:
    store = Store(tmp_path)
    got = store.final_path("m", path)
    assert os.path.normpath(got).startswith(str(tmp_path / "m") + os.sep)


@pytest.mark.parametrize(
    "path", ["..", "../x", "../../etc/passwd", "a/../../x", "", "a/../..", "."]
)
def test_final_path_refuses_escaping_paths(tmp_path: Path, path: str) -> None:
    with pytest.raises(UnsafePathError) as info:
        Store(tmp_path).final_path("m", path)
    assert info.value.exit_code == ExitCode.USAGE


def test_state_paths_live_under_dot_mdl(tmp_path: Path) -> None:
    store = Store(tmp_path)
    part, state = store.part_paths("m", "deep/dir/we ird?.bin")
    assert part.parent == tmp_path / ".mdl" / "partial"
    assert state == part.with_name(part.name + ".json")
    assert part.name.endswith("we_ird_.bin.part")
    # distinct files never share a partial, even with the same base name
    assert store.part_paths("m", "a/x.bin")[0] != store.part_paths("m", "b/x.bin")[0]
    assert store.part_paths("m1", "x.bin")[0] != store.part_paths("m2", "x.bin")[0]
    assert store.lock_path("m", "x").parent == tmp_path / ".mdl" / "locks"
    assert store.record_path("m") == tmp_path / ".mdl" / "records" / "m.json"


# -- records
# ---------------------------------------------------------------------------------------------


def test_record_round_trip(tmp_path: Path) -> None:
    store = Store(tmp_path / "dest")
    assert store.read_record("m") is None
    written = store.update_record("m", revision="main", commit="c" * 40, put=rec("a.bin"))
    got = store.read_record("m")
    assert got is not None
    assert got.files == {"a.bin": rec("a.bin")}
    assert (got.name, got.revision, got.commit) == ("m", "main", "c" * 40)
    assert got.updated_at == written.updated_at != ""
    raw = json.loads(store.record_path("m").read_text())
    assert raw["version"] == 1
    assert raw["files"]["a.bin"]["sha256"] == rec("a.bin").sha256


def test_update_record_merges_removes_and_keeps_revision(tmp_path: Path) -> None:
    store = Store(tmp_path)
    store.update_record("m", revision="main", commit="c1", put=rec("a"))
    store.update_record("m", revision=None, commit=None, put=rec("b"))
    got = store.read_record("m")
    assert got is not None
    assert set(got.files) == {"a", "b"}
    assert (got.revision, got.commit) == ("main", "c1")
    store.update_record("m", revision="v2", commit="c2", remove=("a", "missing"))
    got = store.read_record("m")
    assert got is not None
    assert set(got.files) == {"b"}
    assert (got.revision, got.commit) == ("v2", "c2")


def test_update_record_merges_concurrent_puts(tmp_path: Path) -> None:
    store = Store(tmp_path)
    names = [f"file{i:02d}.bin" for i in range(24)]

    def put(name: str) -> None:
        # A fresh Store per thread, like separate runs sharing one destination.
        Store(tmp_path).update_record("m", revision="main", commit="c", put=rec(name))

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(put, names))
    got = store.read_record("m")
    assert got is not None
    assert sorted(got.files) == names
    leftovers = [
        p.name for p in (tmp_path / ".mdl" / "records").iterdir() if p.name.endswith(".tmp")
    ]
    assert leftovers == []


def test_update_record_merges_puts_from_other_processes(tmp_path: Path) -> None:
    script = (
        "import sys; from pathlib import Path; from mdl.store.store import Store\n"
        "from mdl.store.records import FileRecord\n"
        "for i in range(15):\n"
        "    p = f'{sys.argv[2]}-{i}'\n"
        "    Store(Path(sys.argv[1])).update_record('m', revision=None, commit=None,"
        " put=FileRecord(path=p, size=i, sha256='0'*64, mtime_ns=0))\n"
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script, str(tmp_path), tag], cwd=Path(__file__).parents[2]
        )
        for tag in ("x", "y", "z")
    ]
    for proc in procs:
        assert proc.wait(timeout=60) == 0
    got = Store(tmp_path).read_record("m")
    assert got is not None
    assert len(got.files) == 45


@pytest.mark.parametrize(
    "content",
    [
        "not json at all",
        "[]",
        '{"files": []}',
        '{"files": {"a": {"path": "a"}}}',  # a file entry missing its fields
        '{"files": {"a": "x"}}',
        "\x00\x01",
    ],
)
def test_unreadable_record_is_none(tmp_path: Path, content: str) -> None:
    store = Store(tmp_path)
    store.ensure_dirs()
    store.record_path("m").write_text(content)
    assert store.read_record("m") is None


def test_record_with_unknown_keys_still_reads(tmp_path: Path) -> None:
    store = Store(tmp_path)
    store.ensure_dirs()
    entry = {"path": "a", "size": 1, "sha256": "0" * 64, "mtime_ns": 5, "future_key": True}
    store.record_path("m").write_text(json.dumps({"version": 1, "files": {"a": entry}}))
    got = store.read_record("m")
    assert got is not None
    assert got.files["a"] == FileRecord(path="a", size=1, sha256="0" * 64, mtime_ns=5)


def test_model_record_to_json_sorts_files() -> None:
    record = ModelRecord(name="m", files={"b": rec("b"), "a": rec("a")})
    assert list(record.to_json()["files"]) == ["a", "b"]


# -- partials
# --------------------------------------------------------------------------------------------


def test_partials_lists_parts_orphans_and_temp_files(tmp_path: Path) -> None:
    store = Store(tmp_path)
    assert store.partials() == []
    store.ensure_dirs()
    part, state = store.part_paths("m", "big.bin")
    with part.open("wb") as fh:
        fh.write(b"x" * 5000)
        fh.truncate(1 << 30)  # preallocated, sparse: what counts is what is on disk
    state.write_text(json.dumps({"source": "hf://org/x@c/big.bin"}))
    orphan_part, orphan_state = store.part_paths("m", "gone.bin")
    orphan_state.write_text(json.dumps({"source": "https://cdn.example/gone.bin"}))
    # a resume record being written when the run was killed
    tmp = state.with_name(state.name + ".tmp")
    tmp.write_text("{")
    # not a name mdl gives: never mdl's to remove
    foreign = tmp_path / ".mdl" / "partial" / "notes.tmp"
    foreign.write_text("mine")

    found = {p.part_path: p for p in store.partials()}
    assert set(found) == {part, orphan_state, tmp}
    assert found[part].state_path == state
    assert found[part].label == "hf://org/x@c/big.bin"
    assert 5000 <= found[part].size < 1 << 30
    assert found[orphan_state].label == "https://cdn.example/gone.bin"
    assert found[tmp].label == tmp.name  # unreadable: named by its file

    for partial in store.partials():
        store.remove_partial(partial)
    assert list((tmp_path / ".mdl" / "partial").iterdir()) == [foreign]
    assert not orphan_part.exists()


# -- hashing
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "git_sha1"),
    [
        (b"", "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391"),  # `git hash-object /dev/null`
        # `echo hello | git hash-object --stdin`
        (b"hello\n", "ce013625030ba8dba906f756967f9e9ca394464a"),
        (b"hello world\n", "3b18e512dba79e4c8300dd08aeb37f8e728b8dad"),
    ],
)
def test_hash_file_git_blob_sha1_matches_git(tmp_path: Path, data: bytes, git_sha1: str) -> None:
    path = tmp_path / "f"
    path.write_bytes(data)
    size, sha256, oid = hash_file(path, git=True)
    assert (size, sha256, oid) == (len(data), hashlib.sha256(data).hexdigest(), git_sha1)


def test_hash_file_in_many_blocks(tmp_path: Path) -> None:
    data = os.urandom(100_003)
    path = tmp_path / "f"
    path.write_bytes(data)
    size, sha256, oid = hash_file(path, block=4096)
    assert (size, sha256, oid) == (len(data), hashlib.sha256(data).hexdigest(), None)
    _, _, oid = hash_file(path, git=True, block=7)
    assert oid == hashlib.sha1(b"blob 100003\0" + data).hexdigest()


def test_stat_file(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"abc")
    assert stat_file(tmp_path / "f").st_size == 3  # type: ignore[union-attr]
    assert stat_file(tmp_path / "missing") is None
    assert stat_file(tmp_path / "f" / "under-a-file") is None


# -- locks
# -----------------------------------------------------------------------------------------------


def test_file_lock_uncontended_does_not_call_on_wait(tmp_path: Path) -> None:
    store = Store(tmp_path)
    store.ensure_dirs()
    waited: list[bool] = []
    with store.acquire_file_lock(
        "m", "a.bin", Wait.within(1), on_wait=lambda holder: waited.append(True)
    ):
        assert store.lock_path("m", "a.bin").exists()
    assert waited == []


def test_a_released_file_lock_goes_empty_before_it_goes(tmp_path: Path) -> None:
    """The holder's note is taken out before the name: ext4 drops an empty unlinked file ~100x
    faster (a pull releases one lock per file, the last batch at its very end)."""
    store = Store(tmp_path)
    store.ensure_dirs()
    where = store.lock_path("m", "a.bin")
    with store.acquire_file_lock("m", "a.bin", Wait.within(1)):
        assert b"pid " in where.read_bytes()  # who holds it, for a waiter to say
        seen = os.open(where, os.O_RDONLY)  # as a waiter holds it open
    try:
        assert not where.exists() and os.fstat(seen).st_size == 0
    finally:
        os.close(seen)


def test_file_lock_waits_for_a_holder_in_another_thread(tmp_path: Path) -> None:
    store = Store(tmp_path)
    store.ensure_dirs()
    held = threading.Event()
    released = threading.Event()
    waiting = threading.Event()

    # not a fixed 0.3 s: the waiter may be late on a busy machine
    def hold_until_waited_for() -> None:
        # filelock state is per thread: acquire and release in the holder's own thread.
        with FileLock(store.lock_path("m", "a.bin")):
            held.set()
            waiting.wait(HANG)
            released.set()

    waited: list[bool] = []
    thread = threading.Thread(target=hold_until_waited_for)
    thread.start()
    try:
        assert held.wait(HANG)
        on_wait = lambda holder: (waited.append(True), waiting.set())  # noqa: E731
        with store.acquire_file_lock("m", "a.bin", Wait.within(HANG), on_wait=on_wait):
            assert released.is_set()
    finally:
        thread.join()
    assert waited == [True]


def test_file_lock_times_out_when_another_process_holds_it(tmp_path: Path) -> None:
    store = Store(tmp_path)
    store.ensure_dirs()
    lock = store.lock_path("m", "a.bin")
    script = (
        "import sys, time; from filelock import FileLock\n"
        "l = FileLock(sys.argv[1]); l.acquire(); print('held', flush=True); time.sleep(3600)\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", script, str(lock)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "held"
        waited: list[bool] = []
        clock = FakeClock()  # 0.05 s a look at it: the timeout is never waited out

        def ticking() -> float:
            clock.now += 0.05
            return clock.now

        started = clock.now
        with (
            pytest.raises(LockTimeoutError) as info,
            store.acquire_file_lock(
                "m",
                "a.bin",
                Wait.within(0.3, clock=ticking),
                on_wait=lambda holder: waited.append(True),
            ),
        ):
            pytest.fail("the lock must not be obtained")
        # it waited its timeout, by its clock
        assert clock.now - started >= 0.3 and "(waited 0.3s)" in info.value.message
        assert waited == [True]
        assert info.value.exit_code == ExitCode.LOCAL == 7
        assert "m/a.bin" in info.value.message
        assert str(lock) in info.value.message
    finally:
        proc.kill()
        proc.wait()
    # Once the holder is gone the lock is free again.
    with store.acquire_file_lock("m", "a.bin", Wait.within(1)):
        pass


def test_file_lock_wait_is_cancellable(tmp_path: Path) -> None:
    store = Store(tmp_path)
    store.ensure_dirs()
    held = threading.Event()
    done = threading.Event()

    def hold() -> None:
        with FileLock(store.lock_path("m", "a.bin")):
            held.set()
            done.wait(HANG)

    thread = threading.Thread(target=hold)
    thread.start()
    try:
        assert held.wait(HANG)
        cancel = threading.Event()
        threading.Timer(0.2, cancel.set).start()
        # a timeout far past HANG: only the cancel ends this wait (a lock timeout is another error)
        with (
            pytest.raises(
                InterruptedByUserError, match="interrupted while waiting for a lock"
            ) as info,
            store.acquire_file_lock("m", "a.bin", Wait.within(10 * HANG, cancel)),
        ):
            pytest.fail("the lock must not be obtained")
        assert info.value.exit_code == ExitCode.INTERRUPTED
    finally:
        done.set()
        thread.join()


def test_free_bytes_probes_the_nearest_existing_parent(tmp_path: Path) -> None:
    store = Store(tmp_path / "not" / "yet" / "there")
    assert store.free_bytes() > 0
    assert not (tmp_path / "not").exists()


def test_a_folder_where_a_lock_file_goes_is_exit_7_naming_it(tmp_path: Path) -> None:
    store = Store(tmp_path)
    store.lock_path("m", "a.bin").mkdir(parents=True)
    with pytest.raises(
        LocalFSError, match=r"cannot lock .*\.lock: it is a folder, not a file"
    ) as caught:
        store.acquire_file_lock("m", "a.bin", Wait.within(1))
    assert caught.value.exit_code == 7


def test_the_cache_store_keeps_the_records_of_earlier_commits(tmp_path: Path) -> None:
    """In the Hugging Face cache another commit's file stays on disk: its record moves to
    ``earlier``, comes back when a pull returns to that content, and round-trips through the file;
    the plain layout keeps no history."""
    old_commit, new_commit = "a" * 40, "b" * 40

    def hub(commit: str, sha: str) -> FileRecord:
        return FileRecord("w.bin", 3, sha, 7, f"hf://org/m@{commit}/w.bin", commit=commit)

    cache = Store(tmp_path / "cache", keeps_revisions=True)
    cache.update_record("m", revision="v1", commit=old_commit, put=hub(old_commit, "1" * 64))
    record = cache.update_record(
        "m", revision="main", commit=new_commit, put=hub(new_commit, "2" * 64)
    )
    assert record.files["w.bin"].commit == new_commit
    assert record.earlier == {
        f"{old_commit}/w.bin": hub(old_commit, "1" * 64)._replace(path=f"{old_commit}/w.bin")
    }
    assert cache.read_record("m") == record, "round-trips through the file"
    assert record.entry_for("w.bin", sha256="1" * 64, git_oid=None) == hub(old_commit, "1" * 64)
    assert record.entry_for("w.bin", sha256="2" * 64, git_oid=None) == hub(new_commit, "2" * 64)
    back = cache.update_record("m", revision="v1", commit=old_commit, put=hub(old_commit, "1" * 64))
    assert set(back.earlier) == {f"{new_commit}/w.bin"}, (
        "current again: out of earlier; the other one in"
    )
    cache.drop_from_record("m", (), forget=(f"{new_commit}/w.bin",))
    assert cache.read_record("m").earlier == {}  # type: ignore[union-attr]

    plain = Store(tmp_path / "plain")
    plain.update_record("m", revision="v1", commit=old_commit, put=hub(old_commit, "1" * 64))
    assert (
        plain.update_record("m", revision=None, commit=None, put=hub(new_commit, "2" * 64)).earlier
        == {}
    )
