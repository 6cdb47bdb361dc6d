"""An OCI registry as a source: an ``oci://`` reference → its manifest digest (a tag resolved, an
index's model artifact picked) → its layers as remote files, each a blob fetched by the engine
with its sha256 and size pinned (ranges, resume, stalls, rate limit, records as for any file)."""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urljoin

import httpx2

from mdl.catalog.specs import ModelSpec
from mdl.errors import IntegrityError, NotFoundError, RegistryReplyError
from mdl.paths import OciRef, check_digest, parse_oci_ref, parse_oci_source
from mdl.redact import Secrets, redact_url
from mdl.sources.ociauth import RegistryAuth, find_login
from mdl.sources.ocimanifest import (
    ACCEPT,
    MAX_MANIFEST_BYTES,
    Manifest,
    layer_files,
    manifest_digest,
    parse_manifest,
    pick_artifact,
    read_registry_json,
)
from mdl.sources.resolve import RemoteFile, ResolvedModel
from mdl.transfer.connection import origin
from mdl.transfer.failures import read_reply
from mdl.transfer.http import Credentials, RetryPolicy, error_for_status, follow

log = logging.getLogger("mdl.oci")
TAGS_PAGE = 1000  # tags asked per page of a tag list
_NEXT = re.compile(r'<([^<>]{1,4096})>\s*;\s*rel="?next"?')


@dataclass(frozen=True)
class OciModel:
    """A model in a registry at one manifest: the reference with its digest, and its files."""

    ref: OciRef
    digest: str  # the manifest's: "sha256:<64 hex>"
    files: tuple[RemoteFile, ...]


class Registry:
    """The registries of one run on its client: one authorization per repository, shared by the
    manifest's requests and its blobs'."""

    def __init__(
        self,
        client: httpx2.Client,
        *,
        environ: Mapping[str, str],
        secrets: Secrets | None,
        retry: RetryPolicy | None = None,
        cancel: threading.Event | None = None,
    ) -> None:
        self.client, self.environ, self.secrets = client, environ, secrets
        self.retry = retry or RetryPolicy()
        self.cancel = cancel
        self._auths: dict[tuple[str, str], RegistryAuth] = {}
        self._lock = threading.Lock()

    def credentials(self, source: str) -> Credentials | None:
        """What the requests for a registry's file carry (its source, ``oci://…@sha256:…/PATH``,
        names its repository), or None: the source is no registry's."""
        parsed = parse_oci_source(source)
        return self.auth(parsed[0]).credentials() if parsed is not None else None

    def auth(self, ref: OciRef) -> RegistryAuth:
        """The authorization of ``ref``'s repository (its login looked up once)."""
        key = (ref.base, ref.repository)
        with self._lock:
            if key not in self._auths:
                login = find_login(ref.registry, self.environ)
                self._auths[key] = RegistryAuth(
                    f"{ref.scheme}://{ref.registry}",
                    ref.repository,
                    client=self.client,
                    login=login,
                    secrets=self.secrets,
                    retry=self.retry,
                    cancel=self.cancel,
                )
            return self._auths[key]

    def resolve(self, ref: OciRef, *, model: str = "", what: str | None = None) -> OciModel:
        """``ref``'s files at one manifest digest (a tag resolved now; a digest as pinned);
        NotFoundError (exit 4): a manifest with no layer that is a file."""
        what = what or ref.given
        digest, manifest = self.manifest(ref, what=what)
        if manifest.is_index:
            chosen = pick_artifact(manifest, what=f"{what} ({digest})")
            log.debug("%s: index %s picks %s", what, digest, chosen.digest)
            digest, manifest = self.manifest(ref._replace(digest=chosen.digest), what=what)
            if manifest.is_index:
                raise RegistryReplyError(f"{what}: the index's artifact {digest} is an index too")
        pinned = ref._replace(digest=digest)
        files = tuple(
            RemoteFile(
                model=model,
                path=file.path,
                url=ref.blob_url(f"sha256:{file.sha256}"),
                size=file.size,
                sha256=file.sha256,
                source=pinned.source(file.path),
            )
            for file in layer_files(manifest, what=f"{what} ({digest})")
        )
        if not files:  # (a container image's config alone, an empty artifact)
            raise NotFoundError(f"{what}: {pinned.given} has no layers that are files")
        return OciModel(pinned, digest, files)

    def resolve_model(self, spec: ModelSpec) -> ResolvedModel:
        """A catalog model whose ``oci`` names it: its files at the manifest the tag names now
        (or the digest pinned)."""
        assert spec.oci is not None
        ref = parse_oci_ref(spec.oci, where=f"models.{spec.name}.oci")
        found = self.resolve(ref, model=spec.name, what=spec.name)
        return ResolvedModel(spec.name, ref.tag, None, found.files)

    def manifest(self, ref: OciRef, *, what: str) -> tuple[str, Manifest]:
        """The manifest (or index) ``ref`` names and its digest: the sha256 of its bytes, held to
        the digest asked (or the one the registry states for a tag)."""
        missing = f"the registry has no manifest {ref.reference} in {ref.repository}"
        headers = {"Accept": ACCEPT, "Accept-Encoding": "identity"}
        raw, said = self.ask(
            ref, f"manifests/{ref.reference}", what=what, missing=missing, headers=headers
        )
        digest = manifest_digest(raw)
        if len(raw) <= MAX_MANIFEST_BYTES:
            _check_manifest_digest(ref, digest, said.get("Docker-Content-Digest"), what=what)
        content_type = said.get("Content-Type")
        return digest, parse_manifest(raw, content_type=content_type, what=f"{what}: its manifest")

    def tags(self, ref: OciRef, *, most: int, pages: int, what: str) -> list[str] | None:
        """The repository's tags (``GET /v2/REPOSITORY/tags/list``, then each page its ``Link``
        names), None past ``most`` tags or ``pages`` pages, or at a page named again (a walk
        that would not end); NotFoundError: no such repository."""
        found: list[str] = []
        page: str | None = f"{ref.base}/tags/list?n={TAGS_PAGE}"
        missing = f"the registry has no repository {ref.repository}"
        asked: set[str] = set()
        while page is not None and len(found) <= most:
            if page in asked or len(asked) == pages:
                return None
            asked.add(page)
            raw, said = self.ask(ref, page, what=what, missing=missing)
            doc = read_registry_json(raw, what=f"{what}: its tags")
            tags = (doc.get("tags") or []) if isinstance(doc, dict) else None
            if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
                raise RegistryReplyError(f"{what}: its tag list is not a list of names")
            found += tags
            page = _next_page(said.get("Link"), ref, what=what) if tags else None
        return found if len(found) <= most else None

    def small_reply(self, ref: OciRef, url: str, *, what: str) -> tuple[bytes, str | None] | None:
        """A manifest-sized reply of ``ref``'s repository (a referrers listing, an index by tag, a
        signature bundle): its bytes (one past the 4 MiB bound at most) and content type; None:
        404."""
        headers = {"Accept": ACCEPT, "Accept-Encoding": "identity"}
        try:
            raw, said = self.ask(ref, url, what=what, missing="", headers=headers)
        except NotFoundError:
            return None
        return raw, said.get("Content-Type")

    def ask(
        self,
        ref: OciRef,
        path: str,
        *,
        what: str,
        missing: str,
        method: str = "GET",
        headers: Mapping[str, str] | None = None,
    ) -> tuple[bytes, httpx2.Headers]:
        """``path`` under ``ref``'s repository (``/v2/REPOSITORY/…``, or a full URL: the next
        page a ``Link`` named) with its authorization: the body's first ``MAX_MANIFEST_BYTES`` + 1
        bytes and the headers; ``missing``: what a 404 says."""
        url = path if "://" in path else f"{ref.base}/{path}"
        auth = self.auth(ref)
        credentials = auth.credentials()

        def ask() -> tuple[bytes, httpx2.Headers]:
            with follow(
                self.client, url, credentials=credentials, headers=headers, method=method, what=what
            ) as response:
                if response.status_code == 404:
                    shown = redact_url(str(response.url))
                    raise NotFoundError(f"{what}: {missing} (HTTP 404 from {shown})")
                if response.status_code == 401:
                    raise auth.refused(response, what=what)
                if response.is_error:
                    raise error_for_status(response, what=what, credentials=credentials)
                timeout = self.client.timeout.read
                body = read_reply(response, MAX_MANIFEST_BYTES, what=what, timeout=timeout)
                return bytes(body), response.headers

        wait = self.cancel.wait if self.cancel is not None else None
        return self.retry.run(ask, what=what, wait=wait)


def _next_page(link: str | None, ref: OciRef, *, what: str) -> str | None:
    """The next page a ``Link: <…>; rel="next"`` names (on the registry's origin only), or None."""
    found = _NEXT.search(link or "")
    if found is None:
        return None
    try:
        url: str = urljoin(ref.base, found[1])
        elsewhere = origin(url) != origin(ref.base)
    except ValueError as exc:  # (a host or port no URL has: the standard library refuses it)
        raise RegistryReplyError(f"{what}: the next page of tags is no URL: {exc}") from None
    if elsewhere:
        raise RegistryReplyError(f"{what}: the next page of tags is on another host: {url!r}")
    return url


def _check_manifest_digest(ref: OciRef, digest: str, stated: str | None, *, what: str) -> None:
    """A manifest asked by digest must hash to it; one asked by tag to the digest the registry
    states (when it states a sha256 one)."""
    if ref.digest is not None and digest != ref.digest:
        raise IntegrityError(
            f"{what}: the manifest the registry sent for {ref.digest} hashes to {digest}; refused"
        )
    if ref.digest is None and stated and stated.startswith("sha256:"):
        check_digest(stated, what=f"{what}: the registry's Docker-Content-Digest")
        if stated != digest:
            raise IntegrityError(
                f"{what}: the registry states manifest {stated} for tag {ref.reference}, but sent"
                f" one that hashes to {digest}; refused"
            )
