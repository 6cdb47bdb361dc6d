"""decide(): every branch of the pure skip / download / resume / repair / check decision."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mdl.download._plan import NEW_SOURCE, UNNAMED, Action, LocalState, decide, same_content
from mdl.sources.resolve import RemoteFile
from mdl.store.records import FileRecord

SHA = "a" * 64
OTHER_SHA = "b" * 64
OID = "c" * 40
OTHER_OID = "d" * 40
MTIME = 1_700_000_000_000_000_000


SOURCE = "http://x/release-1/f.bin"


def remote(
    *,
    size: int | None = 10,
    sha256: str | None = SHA,
    git_oid: str | None = None,
    etag: str | None = None,
    source: str = SOURCE,
) -> RemoteFile:
    return RemoteFile(
        model="m",
        path="f.bin",
        url=source,
        size=size,
        sha256=sha256,
        git_oid=git_oid,
        etag=etag,
        source=source,
    )


def record(
    *,
    size: int = 10,
    sha256: str = SHA,
    git_oid: str | None = None,
    etag: str | None = None,
    mtime_ns: int = MTIME,
    source: str = SOURCE,
) -> FileRecord:
    return FileRecord(
        path="f.bin",
        size=size,
        sha256=sha256,
        mtime_ns=mtime_ns,
        git_oid=git_oid,
        etag=etag,
        source=source,
    )


ABSENT = LocalState(size=None, mtime_ns=None, partial_bytes=0)
ABSENT_WITH_PARTIAL = LocalState(size=None, mtime_ns=None, partial_bytes=4)
PRESENT = LocalState(size=10, mtime_ns=MTIME, partial_bytes=0)
TOUCHED = LocalState(size=10, mtime_ns=MTIME + 1, partial_bytes=0)
RESIZED = LocalState(size=11, mtime_ns=MTIME, partial_bytes=0)


@pytest.mark.parametrize(
    ("case", "rem", "rec", "local", "force", "action", "reason"),
    [
        ("absent+force", remote(), record(), ABSENT, True, Action.DOWNLOAD, "missing"),
        (
            "absent+force+partial",
            remote(),
            None,
            ABSENT_WITH_PARTIAL,
            True,
            Action.RESUME,
            "4 B already downloaded",
        ),
        (
            "absent+partial",
            remote(),
            None,
            ABSENT_WITH_PARTIAL,
            False,
            Action.RESUME,
            "4 B already downloaded",
        ),
        (
            "absent+partial+record",
            remote(),
            record(),
            ABSENT_WITH_PARTIAL,
            False,
            Action.RESUME,
            "4 B already",
        ),
        ("deleted since recorded", remote(), record(), ABSENT, False, Action.DOWNLOAD, "missing"),
        ("never fetched", remote(), None, ABSENT, False, Action.DOWNLOAD, "not downloaded yet"),
        ("present+force", remote(), record(), PRESENT, True, Action.DOWNLOAD, "--force"),
        (
            "present+force, unrecorded",
            remote(sha256=None),
            None,
            PRESENT,
            True,
            Action.DOWNLOAD,
            "--force",
        ),
        ("unrecorded, sha256 known", remote(), None, PRESENT, False, Action.CHECK, "unrecorded"),
        (
            "unrecorded, git oid known",
            remote(sha256=None, git_oid=OID),
            None,
            PRESENT,
            False,
            Action.CHECK,
            "unrecorded",
        ),
        (
            "unrecorded, nothing to check",
            remote(sha256=None),
            None,
            PRESENT,
            False,
            Action.DOWNLOAD,
            "no hash",
        ),
        (
            "changed upstream (sha)",
            remote(sha256=OTHER_SHA),
            record(),
            PRESENT,
            False,
            Action.DOWNLOAD,
            "changed upstream",
        ),
        (
            "changed upstream (size)",
            remote(size=12),
            record(),
            PRESENT,
            False,
            Action.DOWNLOAD,
            "changed upstream",
        ),
        ("up to date", remote(), record(), PRESENT, False, Action.SKIP, "up to date"),
        ("mtime changed", remote(), record(), TOUCHED, False, Action.CHECK, "modified? (same size"),
        (
            "size changed locally",
            remote(),
            record(),
            RESIZED,
            False,
            Action.CHECK,
            "modified (its size",
        ),
    ],
)
def test_decide(
    case: str,
    rem: RemoteFile,
    rec: FileRecord | None,
    local: LocalState,
    force: bool,
    action: Action,
    reason: str,
) -> None:
    decision = decide(rem, rec, local, force=force)
    assert decision.action is action, case
    assert reason in decision.reason, case


@pytest.mark.parametrize(
    ("rem", "rec", "same"),
    [
        (remote(), record(), True),
        (remote(size=None), record(), True),
        (remote(size=11), record(), False),
        (remote(sha256=OTHER_SHA), record(), False),
        # sha256 wins over a matching git oid
        (remote(sha256=OTHER_SHA, git_oid=OID), record(git_oid=OID), False),
        (remote(sha256=None, git_oid=OID), record(git_oid=OID), True),
        (remote(sha256=None, git_oid=OID), record(git_oid=OTHER_OID), False),
        (remote(sha256=None, git_oid=OID), record(git_oid=None), False),
        (remote(sha256=None, etag='"e1"'), record(etag='"e1"'), True),
        (remote(sha256=None, etag='"e1"'), record(etag='"e2"'), False),
        # nothing to compare but the size: trust the record
        (remote(sha256=None, etag='"e1"'), record(etag=None), True),
        (remote(sha256=None), record(), True),
    ],
)
def test_same_content(rem: RemoteFile, rec: FileRecord, same: bool) -> None:
    assert same_content(rec, rem) is same


def test_a_one_off_get_trusts_no_size_alone() -> None:
    """``unnamed=False`` (get, as wget -N): without a hash or a validator on both sides, fetch
    again.
    """
    for rem, rec in (
        (remote(sha256=None), record()),
        (remote(sha256=None, etag='"e1"'), record(etag=None)),
    ):
        assert same_content(rec, rem, unnamed=False) is False
        decision = decide(rem, rec, PRESENT, force=False, unnamed=False)
        assert (decision.action, decision.reason) == (Action.DOWNLOAD, UNNAMED)
    kept = decide(
        remote(sha256=None, etag='"e1"'), record(etag='"e1"'), PRESENT, force=False, unnamed=False
    )
    assert kept.action is Action.SKIP


def test_changed_upstream_by_etag_means_download() -> None:
    decision = decide(remote(sha256=None, etag='"new"'), record(etag='"old"'), PRESENT, force=False)
    assert decision.action is Action.DOWNLOAD


def test_local_state_of(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"12345")
    stat = os.lstat(path)
    state = LocalState.of(stat, partial_bytes=3)
    assert state == LocalState(size=5, mtime_ns=stat.st_mtime_ns, partial_bytes=3)
    assert LocalState.of(None, partial_bytes=7) == LocalState(None, None, 7)


def test_action_values_are_the_dry_run_words() -> None:
    assert [a.value for a in Action] == ["skip", "download", "resume", "repair", "check"]


def test_resume_reason_is_a_human_size_not_a_byte_count() -> None:
    decision = decide(
        remote(), None, LocalState(size=None, mtime_ns=None, partial_bytes=1_523_456), force=False
    )
    assert decision.reason == "1.45 MiB already downloaded"


RELEASE_2 = "http://x/release-2/f.bin"


@pytest.mark.parametrize(
    ("rem", "rec", "same"),
    [
        # nginx's ETag is "<mtime>-<size>": two releases copied with `cp -p` share it; the source
        # tells them apart
        (remote(sha256=None, etag='"5f3a-a"', source=RELEASE_2), record(etag='"5f3a-a"'), False),
        (remote(sha256=None, source=RELEASE_2), record(), False),
        # a record from before sources counted names none: of no known source, never the same
        (remote(sha256=None, etag='"e1"'), record(etag='"e1"', source=""), False),
        # a hash names the bytes wherever they come from: another source of the same bytes is the
        # same file
        (remote(source=RELEASE_2), record(), True),
        (remote(sha256=None, git_oid=OID, source=RELEASE_2), record(git_oid=OID, source=""), True),
        # a source as records keep it (secrets redacted) is the same source
        (
            remote(sha256=None, etag='"e1"', source="http://u:pw@x/f.bin"),
            record(etag='"e1"', source="http://x/f.bin"),
            True,
        ),
    ],
)
def test_a_file_is_known_by_its_source_when_no_hash_names_it(
    rem: RemoteFile, rec: FileRecord, same: bool
) -> None:
    assert same_content(rec, rem) is same
    assert same_content(rec, rem, unnamed=False) is same


def test_another_source_is_fetched_again_and_says_why() -> None:
    rem = remote(sha256=None, etag='"5f3a-a"', source=RELEASE_2)
    for unnamed in (True, False):
        decision = decide(rem, record(etag='"5f3a-a"'), PRESENT, force=False, unnamed=unnamed)
        assert (decision.action, decision.reason) == (Action.DOWNLOAD, NEW_SOURCE)
    assert (
        decide(rem, record(etag='"5f3a-a"', source=""), TOUCHED, force=False).action
        is Action.DOWNLOAD
    )
    # the same source, the same validator: kept
    assert (
        decide(remote(sha256=None, etag='"e"'), record(etag='"e"'), PRESENT, force=False).action
        is Action.SKIP
    )
