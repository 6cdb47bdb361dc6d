"""A file the model should have, as a record's ``expected`` section holds it (mdl.store.records)."""

from typing import NamedTuple


class ExpectedFile(NamedTuple):
    """One file the model should have, as its last resolution said (the Hub listing, the lock or the
    catalog): written before the first byte of a pull moves, so a pull that stops halfway never
    looks installed."""

    path: str
    size: int | None
    sha256: str | None = None
    git_oid: str | None = None
    source: str = ""
