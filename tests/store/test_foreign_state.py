"""Issue 37, class A: an entry where mdl keeps its state is trusted only if mdl made it (engine rule
14).

O_NOFOLLOW stops symbolic links only. Here a hard link to a file outside the destination (or another
user's file) sits where mdl keeps a lock, a partial download, a resume record, a record or get.json,
in `<dest>/.mdl/` and in the Hugging Face cache (huggingface_hub's blob lock included). Whatever the
command does, the outside file keeps its bytes, size and mtime: a lock file is locked, never
truncated to its holder line; a partial beside a resume record that matches is set aside and the
download starts over, never written in place; a record is replaced by an atomic rename, never
written through.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from planted import snapshot
from runfixtures import mdl
from servers import HubServer, make_data
from typer.testing import Result

from mdl.store.confined import ForeignEntryError, not_own, open_file, read_bytes
from mdl.store.store import Store
from mdl.wait import Wait

CONFIG = b'{"model_type": "bert"}\n'
WEIGHTS = make_data(400_000, seed=37)
FILES = {"config.json": CONFIG, "model.safetensors": WEIGHTS}
SHA = hashlib.sha256(WEIGHTS).hexdigest()
FOREIGN_UID = 12345


class Dest:
    """A destination, a Hugging Face cache, an outside folder of canaries and a catalog naming
    the Hub's `org/tiny`.
    """

    def __init__(self, root: Path, hub: HubServer) -> None:
        self.root, self.hub = root, hub
        self.dest, self.cache, self.outside = root / "dest", root / "hf-cache", root / "outside"
        self.catalog = root / "catalog.toml"
        self.catalog.write_text('[models.tiny]\nrepo = "org/tiny"\n')
        self.outside.mkdir()
        self.dest.mkdir()
        self.store = Store(self.dest)
        self.cache_store = Store(self.cache, state_dir=self.cache / ".locks" / "mdl")

    def canary(self, name: str, data: bytes | None = None) -> Path:
        path = self.outside / name
        path.write_bytes(data if data is not None else b"canary " + name.encode() + b"\n" * 40)
        os.utime(path, ns=(1_600_000_000_000_000_000, 1_600_000_000_000_000_000))
        return path

    def hard_link(self, rel: Path, name: str, data: bytes | None = None) -> Path:
        """`rel` (inside the destination or the cache) made another name of a new outside canary."""
        rel.parent.mkdir(parents=True, exist_ok=True)
        os.link(self.canary(name, data), rel)
        return rel

    def mdl(self, *args: str) -> Result:
        if args[0] == "get":
            return mdl(*args, "-d", str(self.dest), "--no-progress")
        common = ["--catalog", str(self.catalog), "--dest", str(self.dest), "--no-progress"]
        return mdl(*args, *common, *(["--lock-timeout", "5"] if args[0] == "pull" else []))


@pytest.fixture
def place(hub: HubServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Dest]:
    hub.add_repo("org/tiny", FILES)
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.setenv("MDL_LOG_FILE", str(tmp_path / "mdl.log"))
    yield Dest(tmp_path, hub)


def ok(result: Result) -> str:
    shown = result.stdout + result.stderr
    assert result.exit_code == 0 and "Traceback" not in shown, f"exit {result.exit_code}\n{shown}"
    return shown


# -- lock files
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("which", ["file", "record"])
@pytest.mark.parametrize("command", [("pull", "tiny"), ("get", "hf://org/tiny/config.json")])
def test_a_hard_linked_lock_file_is_never_truncated(
    place: Dest, which: str, command: tuple[str, ...]
) -> None:
    model = "tiny" if command[0] == "pull" else ""
    lock = place.store.lock_path(model, "config.json")
    if which == "record":
        lock = lock.with_name(f"{model or '.get'}.record.lock")
    place.hard_link(lock, "victim.txt")
    before = snapshot(place.outside)
    ok(place.mdl(*command))
    assert snapshot(place.outside) == before, (
        "the lock file's holder line was written into the outside file"
    )
    # set aside: the link is gone, the file is not
    assert (place.outside / "victim.txt").stat().st_nlink == 1


def test_a_lock_file_of_another_user_is_never_written(place: Dest) -> None:
    if os.geteuid() != 0:
        pytest.skip("making another user's file needs root")
    lock = place.store.lock_path("tiny", "model.safetensors")
    lock.parent.mkdir(parents=True)
    lock.write_bytes(b"someone else's\n")
    os.chown(lock, FOREIGN_UID, FOREIGN_UID)
    fd = os.open(lock, os.O_RDONLY)  # keeps the inode to look at after it is set aside
    try:
        ok(place.mdl("pull", "tiny"))
        assert os.pread(fd, 100, 0) == b"someone else's\n"
    finally:
        os.close(fd)
    assert (place.dest / "tiny" / "model.safetensors").read_bytes() == WEIGHTS


def test_huggingface_hubs_blob_lock_is_locked_never_written(place: Dest) -> None:
    """The cache's own lock (`.locks/models--org--tiny/<sha>.lock`) is huggingface_hub's: mdl
    only ever locks it.
    """
    blob_lock = place.cache / ".locks" / "models--org--tiny" / f"{SHA}.lock"
    place.hard_link(blob_lock, "blob.lock")
    place.hard_link(place.cache_store.lock_path("tiny", "model.safetensors"), "own.lock")
    before = snapshot(place.outside)
    ok(place.mdl("pull", "tiny", "--layout", "hf-cache"))
    assert snapshot(place.outside) == before
    assert blob_lock.samefile(place.outside / "blob.lock"), (
        "huggingface_hub's lock file is not mdl's to set aside"
    )


# -- partial downloads and resume records
# ----------------------------------------------------------------------


def resume_record(done: int) -> bytes:
    """A resume record that matches the Hub's model.safetensors, claiming `done` bytes on disk."""
    identity = {"size": len(WEIGHTS), "sha256": SHA, "git_oid": None, "etag": None}
    doc = {
        "version": 1,
        "source": "hf://org/tiny/model.safetensors",
        "identity": identity,
        "validator": None,
    }
    return json.dumps({**doc, "pieces": [[0, len(WEIGHTS), done]]}).encode()


@pytest.mark.parametrize("layout", ["plain", "hf-cache"])
def test_a_hard_linked_partial_beside_a_matching_resume_record_is_never_written_in_place(
    place: Dest, layout: str
) -> None:
    store = place.store if layout == "plain" else place.cache_store
    part, state = store.part_paths("tiny", "model.safetensors")
    # as long as the file: its bytes look resumable
    place.hard_link(part, "victim.bin", b"\0" * len(WEIGHTS))
    state.write_bytes(resume_record(len(WEIGHTS) // 2))
    before = snapshot(place.outside)
    ok(place.mdl("pull", "tiny", "--layout", layout))
    assert snapshot(place.outside) == before, "the download was written into the outside file"
    final = (
        place.dest / "tiny" / "model.safetensors"
        if layout == "plain"
        else place.cache.glob("*/blobs/" + SHA)
    )
    blob = final if isinstance(final, Path) else next(iter(final))
    assert blob.read_bytes() == WEIGHTS
    assert not part.exists() and not state.exists()


def test_a_hard_linked_resume_record_is_never_trusted_or_written_through(place: Dest) -> None:
    part, state = place.store.part_paths("tiny", "model.safetensors")
    place.hard_link(state, "state.json", resume_record(len(WEIGHTS)))
    # a record claiming every byte: trusted, it would be installed
    part.write_bytes(b"\0" * len(WEIGHTS))
    before = snapshot(place.outside)
    ok(place.mdl("pull", "tiny"))
    assert snapshot(place.outside) == before
    assert (place.dest / "tiny" / "model.safetensors").read_bytes() == WEIGHTS


# -- records
# ---------------------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("command", [("pull", "tiny"), ("verify", "tiny"), ("list",), ("clean",)])
def test_a_hard_linked_record_is_replaced_never_written_through(
    place: Dest, command: tuple[str, ...]
) -> None:
    ok(place.mdl("pull", "tiny"))
    record = place.store.record_path("tiny")
    text = record.read_bytes()
    record.unlink()
    # even a record with the right content: not one mdl made
    place.hard_link(record, "record.json", text)
    before = snapshot(place.outside)
    result = place.mdl(*command)
    assert result.exit_code in (0, 4, 6) and "Traceback" not in result.stdout + result.stderr, (
        result.stderr
    )
    assert snapshot(place.outside) == before
    ok(place.mdl("pull", "tiny"))  # re-hashed, recorded anew beside it
    assert snapshot(place.outside) == before
    assert not record.samefile(place.outside / "record.json")
    ok(place.mdl("verify", "tiny"))


def test_a_hard_linked_get_json_is_replaced_never_written_through(place: Dest) -> None:
    url = place.hub.cdn.add_file("/files/w.bin", WEIGHTS)
    ok(place.mdl("get", url))
    record = place.dest / ".mdl" / "get.json"
    text = record.read_bytes()
    record.unlink()
    place.hard_link(record, "get.json", text)
    before = snapshot(place.outside)
    # not a record mdl made: the file there is mdl's no more (exit 2, --force)
    result = place.mdl("get", url)
    assert result.exit_code in (0, 2), result.stderr
    ok(place.mdl("get", url, "--force"))
    assert snapshot(place.outside) == before
    assert not record.samefile(place.outside / "get.json")


# -- the one check
# -----------------------------------------------------------------------------------------------


def test_not_own_names_what_mdl_did_not_make(tmp_path: Path) -> None:
    mine = tmp_path / "mine"
    mine.write_bytes(b"x")
    assert not_own(mine.lstat()) is None
    os.link(mine, tmp_path / "other")
    assert not_own(mine.lstat()) == "a hard link (2 names for one file)"
    (tmp_path / "link").symlink_to(mine)
    assert not_own((tmp_path / "link").lstat()) == "a symbolic link"
    assert not_own(tmp_path.lstat()) == "a folder"
    if os.geteuid() == 0:
        theirs = tmp_path / "theirs"
        theirs.write_bytes(b"x")
        os.chown(theirs, FOREIGN_UID, FOREIGN_UID)
        assert not_own(theirs.lstat()) == f"another user's file (uid {FOREIGN_UID})"


def test_confined_reads_and_opens_refuse_a_hard_link(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.write_bytes(b"outside bytes")
    state = tmp_path / "root" / ".mdl" / "partial"
    state.mkdir(parents=True)
    os.link(outside, state / "x.part")
    with pytest.raises(ForeignEntryError, match=r"x\.part is a hard link"):
        read_bytes(tmp_path / "root", state / "x.part", limit=100)
    from mdl.errors import UnsafePathError

    with pytest.raises(UnsafePathError, match=r"x\.part is a hard link") as caught:
        open_file(tmp_path / "root", state / "x.part", os.O_RDWR | os.O_CREAT | os.O_TRUNC)
    assert caught.value.exit_code == 2
    assert outside.read_bytes() == b"outside bytes"
    # made fresh: one link, ours
    fresh = open_file(tmp_path / "root", state / "y.part", os.O_RDWR | os.O_CREAT)
    os.close(fresh)
    assert not_own((state / "y.part").lstat()) is None


def test_a_lock_set_aside_still_excludes_every_other_taker(tmp_path: Path) -> None:
    """Eight takers race for one lock whose file is first a hard link to an outside file: the one
    holding it sets it aside (unlinks it while held, as a release does), so no two ever hold the
    lock at once."""
    import threading

    from mdl.store.filelocks import acquire_locks

    outside = tmp_path / "outside.txt"
    outside.write_bytes(b"outside\n")
    lock = tmp_path / "dest" / ".mdl" / "locks" / "x.lock"
    lock.parent.mkdir(parents=True)
    os.link(outside, lock)
    inside, overlaps, errors = [0], [], []
    guard = threading.Lock()

    def taker() -> None:
        try:
            for _ in range(20):
                with acquire_locks(tmp_path / "dest", [lock], label="x", wait=Wait.within(30)):
                    with guard:
                        inside[0] += 1
                        if inside[0] > 1:
                            overlaps.append(inside[0])
                    time.sleep(0.001)
                    with guard:
                        inside[0] -= 1
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=taker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors and not overlaps
    assert outside.read_bytes() == b"outside\n" and outside.stat().st_nlink == 1
    assert not lock.exists()  # each release removed its own lock file
