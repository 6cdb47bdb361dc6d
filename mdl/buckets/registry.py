"""The object stores by URL scheme, and the run's presigner for mirrors in them."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING

from mdl.lazy import load

if TYPE_CHECKING:
    from mdl.buckets.protocol import ObjectStore, Signer
    from mdl.redact import Secrets

    _Table = dict[str, ObjectStore]
else:
    _Table = dict

# scheme → the store's class, loaded when first asked for: a new store is its module and one line
# here
KNOWN = {"s3": "mdl.buckets._s3store:S3Store", "file": "mdl.buckets.folder:FolderStore"}


class _Stores(_Table):
    """scheme → the store, each made (its module imported) when first asked for: a URL of no
    store's scheme (http(s), the plain get's) loads none of them."""

    def __missing__(self, scheme: str) -> ObjectStore:
        made = load(KNOWN[scheme])  # (KeyError: no such store)
        store: ObjectStore = made()  # type: ignore[operator]
        self[scheme] = store
        return store

    def every(self) -> list[ObjectStore]:
        """Every store, the known ones (made now) first, in their order."""
        known = [self[scheme] for scheme in KNOWN]
        return [*known, *(store for scheme, store in self.items() if scheme not in KNOWN)]


STORES = _Stores()


def store_for(url: str) -> ObjectStore | None:
    """The store whose scheme ``url`` starts with (``s3://…``); None: an http(s) URL, a path."""
    scheme, sep, _ = url.partition("://")
    return STORES[scheme] if sep and (scheme in STORES or scheme in KNOWN) else None


def store_schemes(*, endpoint: bool = False) -> str:
    """The stores' schemes as a message says them (``s3://``); ``endpoint``: those that take
    one."""
    return " or ".join(f"{s.scheme}://" for s in STORES.every() if s.takes_endpoint or not endpoint)


class Presigner:
    """Presigned GETs for mirror URLs in stores: one signer per store and endpoint for the run (a
    client costs tens of ms)."""

    def __init__(
        self, endpoints: Mapping[str, str] | None = None, *, secrets: Secrets | None = None
    ) -> None:
        self._endpoints = dict(endpoints or {})  # mirror template → its catalog endpoint
        self._secrets = secrets
        self._signers: dict[tuple[str, str | None], Signer] = {}
        self._lock = threading.Lock()

    def presign(self, url: str, *, template: str | None = None) -> str:
        """A GET URL for ``url``, an object in a store (its template's endpoint, if it names
        one)."""
        store = store_for(url)
        assert store is not None, "only URLs in a store are presigned"
        endpoint = self._endpoints.get(template) if template is not None else None
        with self._lock:
            key = (store.scheme, endpoint)
            if key not in self._signers:
                self._signers[key] = store.signer(endpoint=endpoint, secrets=self._secrets)
            signer = self._signers[key]
        return signer.presign(url)
