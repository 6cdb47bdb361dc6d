"""Writing to an OCI registry (the distribution spec's push): a blob sent only when the repository
lacks it (``HEAD`` first; else mounted from another repository of the registry that holds it;
else uploaded in chunks, the session resumed after a lost connection from the registry's
``Range``), and a manifest put by tag or by digest. Every request carries the repository's
authorization (``mdl.sources.ociauth``: a 401's challenge answered, ``push`` asked where the
registry wants it), has the client's timeouts, and every reply is read bounded."""

from __future__ import annotations

import hashlib
import logging
import re
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode, urljoin, urlsplit

import httpx2

from mdl.errors import AuthError, LocalFSError, MdlError, NotFoundError, RegistryReplyError
from mdl.paths import OciRef
from mdl.redact import printable, redact_url
from mdl.sources.oci import Registry
from mdl.sources.ocimanifest import manifest_digest
from mdl.transfer.connection import drain
from mdl.transfer.failures import RetryableError, server_text, transport_error
from mdl.transfer.http import Tries, error_for_status

log = logging.getLogger("mdl.oci")
CHUNK_SIZE = 64 << 20  # bytes per PATCH: what a lost connection can cost again, at most
READ_SIZE = 1 << 20  # bytes read from a file at a time (a chunk is never whole in memory)
THERE, MOUNTED, UPLOADED = "there", "mounted", "uploaded"
_RANGE = re.compile(r"(?:bytes=)?0-([0-9]{1,19})")
Sent = Callable[[int], None]


@dataclass(frozen=True)
class Blob:
    """A blob to push: its digest and size, and its bytes (``data``) or the file that holds them
    (``path``, read in ``READ_SIZE`` pieces when sent)."""

    digest: str  # "sha256:<64 hex>"
    size: int
    data: bytes | None = None
    path: Path | None = None

    @classmethod
    def of(cls, data: bytes) -> Blob:
        """Bytes in memory as a blob (a config, a signature)."""
        return cls("sha256:" + hashlib.sha256(data).hexdigest(), len(data), data=data)

    def pieces(self, start: int, length: int, reached: Sent) -> Iterator[bytes]:
        """``length`` bytes from ``start``, a piece at a time; ``reached`` told the offset each
        piece ends at (it raises to stop the upload: Ctrl-C)."""
        if self.data is not None:
            for at in range(start, start + length, READ_SIZE):
                piece = self.data[at : min(at + READ_SIZE, start + length)]
                yield piece
                reached(at + len(piece))
            return
        assert self.path is not None
        try:
            with self.path.open("rb") as f:
                f.seek(start)
                left = length
                while left > 0:
                    piece = f.read(min(READ_SIZE, left))
                    if not piece:
                        raise LocalFSError(f"{self.path}: shorter than its {self.size} bytes")
                    left -= len(piece)
                    yield piece
                    reached(start + length - left)
        except OSError as exc:
            raise LocalFSError(f"{self.path}: not read: {exc.strerror or exc}") from exc


@dataclass(frozen=True)
class _Reply:
    """What a push request got back: its status, headers and URL (the body, bounded, unread)."""

    status: int
    headers: httpx2.Headers
    url: str

    def location(self, *, what: str) -> str:
        """The upload session's URL the reply names (a relative one against the request's)."""
        said = self.headers.get("Location")
        try:  # (a host or port no URL has: the standard library refuses it)
            where = urljoin(self.url, said or "")
            parts = urlsplit(where)
            scheme = parts.scheme if parts.port != -1 else ""  # (.port raises on one out of range)
        except ValueError:
            where, scheme = said or "", ""
        if not said or scheme not in ("https", urlsplit(self.url).scheme):
            raise RegistryReplyError(
                f"{what}: the registry named no upload location mdl sends to (http(s), never"
                f" https to http): {redact_url(where)}"
            )
        return where


@dataclass
class _Session:
    """An upload session: its URL (each reply names the next) and the bytes the registry has."""

    location: str
    offset: int = 0
    lost: bool = False  # a request of it failed: ask the registry where it stands first


class RegistryWriter:
    """Pushes to one repository of a registry (``ref``'s), with its authorization from the run's
    ``registry``."""

    def __init__(
        self,
        registry: Registry,
        ref: OciRef,
        *,
        chunk_size: int = CHUNK_SIZE,
        cancel: threading.Event | None = None,
    ) -> None:
        self.registry, self.ref = registry, ref
        self.client = registry.client
        self.auth = registry.auth(ref)
        self.credentials = self.auth.credentials()
        self.chunk_size = chunk_size
        self.cancel = cancel or registry.cancel

    def has_blob(self, digest: str, size: int, *, what: str) -> bool:
        """Whether the repository holds the blob (a 307 to its storage: it does); a 200 whose
        own ``Content-Length`` or ``Docker-Content-Digest`` names another blob is no proof: it is
        sent (the closing ``PUT ?digest=`` has the registry check the bytes)."""
        reply = self._ask("HEAD", self.ref.blob_url(digest), what=what, ok=(200, 307, 302, 404))
        if reply.status == 404:
            return False
        stated = reply.headers.get("Docker-Content-Digest", digest)
        length = reply.headers.get("Content-Length", str(size)) if reply.status == 200 else None
        if stated == digest and length in (None, str(size)):
            return True
        log.warning(
            "%s: %s answers HEAD %s with 200 but states Content-Length %s, Docker-Content-Digest"
            " %s; sending it",
            what,
            redact_url(self.ref.base),
            digest,
            printable(str(length), limit=40),
            printable(stated, limit=80),
        )
        return False

    def push_blob(
        self,
        blob: Blob,
        *,
        what: str,
        mount_from: str | None = None,
        sent: Sent | None = None,
        head: bool = True,
    ) -> str:
        """The blob in the repository: ``there`` already, ``mounted`` from the repository
        ``mount_from`` of the same registry, or ``uploaded`` (``head``: False when the caller
        just found it missing)."""
        if head and self.has_blob(blob.digest, blob.size, what=what):
            return THERE
        session = None
        if mount_from is not None and mount_from != self.ref.repository:
            query = urlencode({"mount": blob.digest, "from": mount_from})
            try:
                reply = self._ask("POST", self._uploads(query), what=what, ok=(201, 202))
            except AuthError:  # no pull on the other repository for this login: sent instead
                log.debug("%s: not mounted from %s (not authorised there)", what, mount_from)
            else:
                if reply.status == 201:
                    log.debug("%s: mounted from %s", what, mount_from)
                    return MOUNTED
                session = _Session(reply.location(what=what))  # not mounted: upload to it
        self._upload(blob, session or self._start(what=what), what=what, sent=sent)
        return UPLOADED

    def push_manifest(
        self, data: bytes, *, media_type: str, what: str, tag: str | None = None
    ) -> str:
        """``data`` as a manifest of the repository, by ``tag`` (None: by its digest); its
        digest."""
        digest = manifest_digest(data)
        url = f"{self.ref.base}/manifests/{tag or digest}"
        headers = {"Content-Type": media_type}
        self._ask("PUT", url, what=what, ok=(201,), content=lambda: data, headers=headers)
        return digest

    def _uploads(self, query: str = "") -> str:
        return f"{self.ref.base}/blobs/uploads/" + (f"?{query}" if query else "")

    def _start(self, *, what: str) -> _Session:
        reply = self._ask("POST", self._uploads(), what=what, ok=(202,))
        return _Session(reply.location(what=what))

    def _upload(self, blob: Blob, session: _Session, *, what: str, sent: Sent | None) -> None:
        """Send the blob's bytes the session lacks, a chunk a request, then close it with the
        digest; a lost connection is retried from where the registry says it stands (a try that
        moved the session on starts the retry budget over)."""
        wait = self.cancel.wait if self.cancel is not None else None
        tries = Tries(self.registry.retry, what, wait=wait)
        mark = [0]  # the furthest byte told: bytes sent again after a resume are told once

        def reached(at: int) -> None:
            if sent is not None:
                sent(max(at - mark[0], 0))
            mark[0] = max(mark[0], at)

        while True:
            before = session.offset
            try:
                if session.lost:
                    session = self._resumed(session, blob.size, what=what)
                self._send(blob, session, what=what, sent=reached)
                return
            except RetryableError as exc:
                if session.offset > before:
                    tries.failures = 0
                session.lost = True
                tries.failed(exc, lost=True)

    def _send(self, blob: Blob, session: _Session, *, what: str, sent: Sent) -> None:
        """Chunks from the session's offset, the last with the closing ``PUT ?digest=``."""
        while True:
            start = session.offset
            length = min(self.chunk_size, blob.size - start)
            headers = {"Content-Type": "application/octet-stream", "Content-Length": str(length)}

            def body(start: int = start, length: int = length) -> Iterable[bytes]:
                return blob.pieces(start, length, sent)

            if start + length == blob.size:
                sep = "&" if "?" in session.location else "?"
                url = f"{session.location}{sep}{urlencode({'digest': blob.digest})}"
                self._request("PUT", url, what=what, ok=(201,), content=body, headers=headers)
                return
            headers["Content-Range"] = f"{start}-{start + length - 1}"
            reply = self._request(
                "PATCH", session.location, what=what, ok=(202,), content=body, headers=headers
            )
            session.location = reply.location(what=what)
            session.offset = _held(reply, start + length, what=what)

    def _resumed(self, session: _Session, size: int, *, what: str) -> _Session:
        """Where the session stands (``GET`` its location: ``Range: 0-N``), or a new session
        when the registry dropped it or holds nothing of it yet."""
        reply = self._request("GET", session.location, what=what, ok=(204, 200, 400, 404, 416))
        end = _end(reply) if reply.status in (200, 204) else None
        if end is not None and end > size:
            raise RegistryReplyError(
                f"{what}: the registry says the upload holds {end} bytes of a {size}-byte blob"
            )
        if end is None:
            log.info("%s: the registry kept nothing of the upload; starting it again", what)
            return self._start(what=what)
        log.info("%s: the registry holds %d bytes of the upload; sending the rest", what, end)
        return _Session(reply.location(what=what), end)

    def _ask(
        self,
        method: str,
        url: str,
        *,
        what: str,
        ok: tuple[int, ...],
        content: Callable[[], Iterable[bytes] | bytes] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> _Reply:
        """One request, tried again as the run's retries say on a lost connection or a 5xx (a
        chunk's are ``_upload``'s: they resume)."""
        wait = self.cancel.wait if self.cancel is not None else None
        return self.registry.retry.run(
            lambda: self._request(method, url, what=what, ok=ok, content=content, headers=headers),
            what=what,
            wait=wait,
        )

    def _request(
        self,
        method: str,
        url: str,
        *,
        what: str,
        ok: tuple[int, ...],
        content: Callable[[], Iterable[bytes] | bytes] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> _Reply:
        """One request of the push: a 401 answered once (a token renewed, ``push`` where asked),
        any status not ``ok`` its error (exit 3, 4, 5, named)."""
        for attempt in (0, 1):
            sent = {**(headers or {}), **self.credentials.headers_for(url)}
            request = self.client.build_request(
                method, url, headers=sent, content=content() if content is not None else None
            )
            try:
                response = self.client.send(request, stream=True)
            except httpx2.TransportError as exc:
                raise transport_error(exc, what=what, url=url) from exc
            with closing(response):
                if attempt == 0 and self.credentials.renewed(response):
                    continue
                if response.status_code in ok:
                    drain(response)  # a short body read: the connection kept for the next
                    return _Reply(response.status_code, response.headers, str(response.url))
                raise self._refused(response, what=what)
        raise AssertionError("unreachable: the second answer is returned or raised")

    def _refused(self, response: httpx2.Response, *, what: str) -> MdlError:
        """The error of a push request's answer: a login (3), no such thing (4), too large, or
        another refusal (5) with the registry's words."""
        status = response.status_code
        if status == 401:
            return self.auth.refused(response, what=what)
        if status == 413:
            said = server_text(response)
            return RegistryReplyError(
                f"{what}: the registry refuses it as too large (HTTP 413"
                f"{': ' + said if said else ''})",
                hint="the registry's layer size limit: raise it, or publish to another registry",
            )
        if status == 404:
            said = server_text(response)
            return NotFoundError(
                f"{what}: the registry has no repository {self.ref.repository} or refuses to"
                f" make it (HTTP 404{': ' + said if said else ''})"
            )
        return error_for_status(response, what=what, credentials=self.credentials)


def _held(reply: _Reply, sent: int, *, what: str) -> int:
    """Where a session stands after a chunk that ended at byte ``sent``: there, as the registry's
    ``Range`` says (or does not); any other answer is refused, never sent from again (a registry
    that says it holds less each time would be sent the same chunk forever)."""
    said = _end(reply)
    if said is not None and said != sent:
        raise RegistryReplyError(
            f"{what}: the registry says the upload holds {said} bytes after a chunk that ended at"
            f" byte {sent}"
        )
    return sent


def _end(reply: _Reply) -> int | None:
    """The bytes a session holds by the registry's ``Range: 0-N`` (N the last byte's offset):
    N + 1; None when it says none or is not sure (``0-0``: none or one, as distribution says
    both)."""
    found = _RANGE.fullmatch(reply.headers.get("Range", "").strip())
    last = int(found[1]) if found is not None else 0
    return last + 1 if last > 0 else None
