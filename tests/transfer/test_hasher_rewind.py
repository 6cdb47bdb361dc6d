"""Bytes claimed no more (a take-back, a dropped piece) are hashed again from the hashes' last mark
before them, not from the file's first byte: a flaky server's every drop no longer costs a read back
of the whole prefix."""

from __future__ import annotations

import hashlib
import os

import pytest

from mdl.transfer import hasher as hasher_module
from mdl.transfer.hasher import Hasher

MiB = 1 << 20


def git_blob(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@pytest.fixture
def marks_every_mib(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hasher_module, "MARK_EVERY", MiB)


@pytest.mark.usefixtures("marks_every_mib")
def test_a_take_back_rehashes_from_the_mark_before_it_and_ends_with_the_new_bytes(fd: int) -> None:
    old = os.urandom(5 * MiB)
    os.pwrite(fd, old, 0)
    hasher = Hasher(fd, len(old), git=True)
    hasher.catch_up(len(old))
    assert hasher.read_back == 5 * MiB
    # the bytes from 3.5 MiB on are taken back, and another answer writes other bytes there
    hasher.unclaim(3 * MiB + MiB // 2)
    assert hasher.position == 3 * MiB  # its last mark at or before the take-back
    new = old[: 3 * MiB + MiB // 2] + os.urandom(len(old) - 3 * MiB - MiB // 2)
    os.pwrite(fd, new[3 * MiB :], 3 * MiB)
    hasher.catch_up(len(new))
    assert hasher.read_back == 7 * MiB  # 5, then 2 again: not 5 again
    assert hasher.sha256.hexdigest() == hashlib.sha256(new).hexdigest()
    assert hasher.sha1 is not None and hasher.sha1.hexdigest() == git_blob(new)


@pytest.mark.usefixtures("marks_every_mib")
def test_a_take_back_before_the_first_mark_starts_over_and_one_past_the_hash_keeps_it(
    fd: int,
) -> None:
    data = os.urandom(3 * MiB)
    os.pwrite(fd, data, 0)
    hasher = Hasher(fd, len(data), git=False)
    hasher.catch_up(2 * MiB + 10)
    epoch = hasher.epoch
    hasher.unclaim(3 * MiB)  # past what is hashed: nothing to hash again
    assert (hasher.position, hasher.epoch) == (2 * MiB + 10, epoch + 1)
    hasher.unclaim(MiB - 1)  # before the first mark: from byte 0
    assert hasher.position == 0
    hasher.catch_up(len(data))
    assert hasher.read_back == 2 * MiB + 10 + 3 * MiB
    hasher.unclaim(2 * MiB)  # at a mark: from that mark
    assert hasher.position == 2 * MiB
    hasher.catch_up(len(data))
    assert hasher.read_back == 2 * MiB + 10 + 3 * MiB + MiB
    assert hasher.sha256.hexdigest() == hashlib.sha256(data).hexdigest()
