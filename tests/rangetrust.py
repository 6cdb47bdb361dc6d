"""A lock's range trust for test data: one BLAKE3 digest per part (what ``mdl lock``'s part hashes
give a file), and every pull of this process handed it as a lock would hand it."""

from __future__ import annotations

import pytest

from mdl.download.session import FileSources
from mdl.transfer import ranges
from mdl.transfer.context import JobContext
from mdl.transfer.ranges import Digests


def trust_of(data: bytes, part: int) -> Digests:
    """``data``'s ranges of ``part`` bytes, each with its digest, as a lock pins them."""
    digests = [ranges.digest(data[s : s + part]) for s in range(0, len(data), part)]
    return Digests.fixed("lock", len(data), part, digests)


def give_trust(monkeypatch: pytest.MonkeyPatch, data: bytes, part: int) -> None:
    """Every file's fetch in this process carries ``data``'s trust (``trust_of``)."""
    real = FileSources.beside.fget
    assert real is not None

    def with_trust(sources: FileSources) -> JobContext:
        return real(sources)._replace(trust=trust_of(data, part))

    monkeypatch.setattr(FileSources, "beside", property(with_trust))
