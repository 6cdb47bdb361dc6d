"""The object stores by URL scheme, and the run's presigner for mirrors in them."""

from __future__ import annotations

import threading
from collections.abc import Mapping

from mdl.buckets.folder import FolderStore
from mdl.buckets.protocol import ObjectStore, Signer
from mdl.buckets.s3store import S3Store
from mdl.redact import Secrets

# scheme → the store: a new store is its module and one line here
STORES: dict[str, ObjectStore] = {"s3": S3Store(), "file": FolderStore()}


def store_for(url: str) -> ObjectStore | None:
    """The store whose scheme ``url`` starts with (``s3://…``); None: an http(s) URL, a path."""
    scheme, sep, _ = url.partition("://")
    if not sep:
        return None
    return STORES.get(scheme)


def store_schemes(*, endpoint: bool = False) -> str:
    """The stores' schemes as a message says them (``s3://``); ``endpoint``: those that take
    one."""
    schemes = [f"{s.scheme}://" for s in STORES.values() if s.takes_endpoint or not endpoint]
    return " or ".join(schemes)


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
