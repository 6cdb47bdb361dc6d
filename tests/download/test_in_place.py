"""get's rule for a file already where it goes (outcomes.kept_in_place) and the words each workflow
uses (plan.InPlace).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from mdl.download._outcomes import SAME_BYTES, kept_in_place
from mdl.download._plan import GET, PULL, policy_of
from mdl.errors import UsageError
from mdl.sources.resolve import RemoteFile

DATA = b"the bytes asked for"


def test_the_bytes_asked_for_are_kept_whoever_wrote_them(tmp_path: Path) -> None:
    target = tmp_path / "f.bin"
    target.write_bytes(DATA)
    kept = kept_in_place(
        target, "f.bin", sha256=hashlib.sha256(DATA).hexdigest(), where="src", ours=False
    )
    assert kept is not None and (kept.action, kept.reason, kept.size) == (
        "skipped",
        SAME_BYTES,
        len(DATA),
    )


def test_a_file_get_wrote_is_left_for_its_record_to_decide(tmp_path: Path) -> None:
    target = tmp_path / "f.bin"
    target.write_bytes(b"other bytes")
    assert (
        kept_in_place(
            target, "f.bin", sha256=hashlib.sha256(DATA).hexdigest(), where="src", ours=True
        )
        is None
    )
    assert kept_in_place(target, "f.bin", sha256=None, where="src", ours=True) is None


def test_any_other_file_is_refused_saying_whether_it_is_known_to_differ(tmp_path: Path) -> None:
    target = tmp_path / "f.bin"
    target.write_bytes(b"other bytes")
    with pytest.raises(UsageError, match="differs from src") as differs:
        kept_in_place(
            target, "f.bin", sha256=hashlib.sha256(DATA).hexdigest(), where="src", ours=False
        )
    assert differs.value.hint == "--force to replace it"
    with pytest.raises(UsageError, match="cannot tell whether it is the same file"):
        kept_in_place(target, "f.bin", sha256=None, where="src", ours=False)


def test_a_git_blob_id_is_a_hash_too(tmp_path: Path) -> None:
    target = tmp_path / "f.bin"
    target.write_bytes(DATA)
    oid = hashlib.sha1(b"blob %d\0" % len(DATA) + DATA).hexdigest()
    kept = kept_in_place(target, "f.bin", sha256=None, git_oid=oid, where="src", ours=False)
    assert kept is not None and kept.action == "skipped"


def test_one_off_files_follow_get_s_words_and_model_files_pull_s() -> None:
    one_off = RemoteFile("", "f.bin", "https://example.invalid/f.bin", None, None)
    assert policy_of(one_off) is GET and (GET.replaced, GET.unnamed) == ("replaced", False)
    assert policy_of(RemoteFile("m", "f.bin", "https://example.invalid/f.bin", None, None)) is PULL
    assert (PULL.kept, PULL.replaced, PULL.unnamed) == (None, None, True)
