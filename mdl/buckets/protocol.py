"""What mdl needs of an object store (``s3://``, later a shared folder): one Protocol, one per
scheme."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from mdl.redact import Secrets


@dataclass(frozen=True)
class StoredObject:
    """One object named on the command line: its name, a GET URL for the engine, what the store
    says of it."""

    name: str  # the last part of its key: the file name ``mdl get`` saves it as
    url: str  # presigned: the engines fetch it as any URL, ignorant of buckets
    size: int | None
    sha256: str | None  # only when the store keeps a full-object SHA-256
    where: str  # the URI as shown (control characters escaped)


class Signer(Protocol):
    """Presigns GETs for one endpoint of a store, for one run (it may keep a client)."""

    def presign(self, uri: str) -> str:
        """A plain URL the engine can GET for ``uri`` (an object of this store)."""


class ObjectStore(Protocol):
    """An object store as mdl uses one: its URIs as ``get`` sources and mirror templates, a GET the
    engine can fetch (presigned), and what its failures mean."""

    scheme: str  # "s3": the store's URIs start with "s3://"
    # a catalog mirror of this store may name its own endpoint ({ url, endpoint })
    takes_endpoint: bool
    # mirror template values are URL-quoted when filled (False: the store quotes keys itself)
    quotes_values: bool

    def check_template(self, template: str, *, where: str) -> None:
        """Refuse (UsageError) a mirror template whose fixed part cannot name a place in the
        store."""

    def one_off(self, uri: str, *, secrets: Secrets | None) -> StoredObject:
        """A ``mdl get`` source: the object, asked of the store (exit 2 for a bad URI, 3, 4, 5)."""

    def signer(self, *, endpoint: str | None, secrets: Secrets | None) -> Signer:
        """A run's presigner for ``endpoint`` (None: the store's default); cheap until used."""

    def reason(self, text: str | None, status: int | None) -> str | None:
        """What the store's error reply to a presigned GET says, in a few words, or None."""

    def is_down(self, said: str) -> bool:
        """Whether a failure's text says the store cannot serve this mirror at all (keys, bucket),
        not only one object."""
