"""Files of this machine over the run's HTTP client: ``file://localhost/<path>`` answered as a
static file server answers (ranges, validators, a streamed body), for the shared-folder store
(mdl.buckets.folder), whose reads go through the engines as every mirror's do."""

from __future__ import annotations

import email.utils
import errno
import os
import re
import threading
import time
from collections.abc import Iterator
from typing import Literal
from urllib.parse import unquote_to_bytes

import httpx2

from mdl.paths import kind_of

CHUNK = 1 << 20  # bytes read per chunk of a body (the wire's read size)
_RANGE = r"bytes=(\d*)-(\d*)"
# the transport's words for what cannot be read (a mirror's reason for falling through)
NOT_THERE = "not in the folder"
DENIED = "permission denied"
# what an open's errno says is there: a socket (open() finds nothing to read), a link O_NOFOLLOW
# refuses (ELOOP; EMLINK on the BSDs)
_NOT_OPENED = {
    errno.ENXIO: "a socket, not a file",
    **dict.fromkeys((errno.ELOOP, errno.EMLINK), "a symbolic link, never followed"),
}


class FileBody(httpx2.SyncByteStream):
    """Bytes ``[start, end)`` of an open file, a chunk at a time; a file that shrinks under the
    read, or a read that fails, ends the body as a broken connection would."""

    def __init__(self, fd: int, start: int, end: int, *, request: httpx2.Request) -> None:
        self._fd, self._at, self._end, self._request = fd, start, end, request
        self._lock = threading.Lock()

    def __iter__(self) -> Iterator[bytes]:
        while self._at < self._end:
            with self._lock:
                if self._fd < 0:  # closed (the download was stopped)
                    return
                try:
                    chunk = os.pread(self._fd, min(CHUNK, self._end - self._at), self._at)
                except OSError as exc:
                    raise httpx2.ReadError(
                        f"reading the file: {exc}", request=self._request
                    ) from exc
            if not chunk:
                raise httpx2.ReadError(
                    f"the file ended with {self._end - self._at} bytes to come (it changed)",
                    request=self._request,
                )
            self._at += len(chunk)
            yield chunk

    def close(self) -> None:
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1


def _answer(status: int, words: str = "", headers: dict[str, str] | None = None) -> httpx2.Response:
    return httpx2.Response(
        status,
        headers={"Content-Type": "text/plain; charset=utf-8", **(headers or {})},
        content=words.encode(),
    )


def byte_range(value: str | None, size: int) -> tuple[int, int] | Literal[False] | None:
    """The one range a ``Range`` header asks of a ``size``-byte file as ``(start, end)``; None: the
    whole file (no header, several ranges, or one that is not valid: ignored, RFC 9110 §14.2);
    False: none of the file (416)."""
    found = re.fullmatch(_RANGE, (value or "").replace(" ", ""))
    if found is None or not (found.group(1) or found.group(2)):
        return None
    first, last = found.group(1), found.group(2)
    if not first:  # the last N bytes
        wanted = int(last)
        return (max(0, size - wanted), size) if wanted and size else False
    start = int(first)
    if last and int(last) < start:
        return None
    if start >= size:
        return False
    return start, size if not last else min(int(last) + 1, size)


class FolderTransport(httpx2.BaseTransport):
    """GET and HEAD of ``file://localhost/<path>`` as a server of static files answers them:
    ranges (206, 416), a strong ETag and Last-Modified from the file's ``stat``, ``If-Range``;
    404 for a missing path, a folder or a symbolic link, 403 where permission is denied; the body
    streamed."""

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        # here: every client mounts this transport, and only a file:// request needs the folder
        # store's code (a plain URL's get loads none of mdl.buckets)
        from mdl.buckets.folder import LOCAL_HOST

        if request.method not in ("GET", "HEAD"):
            return _answer(405, "a shared folder is read with GET", {"Allow": "GET, HEAD"})
        if request.url.host.lower() != LOCAL_HOST:
            return _answer(400, "file:// URLs name this machine's files: file://localhost/path")
        path = unquote_to_bytes(request.url.raw_path.partition(b"?")[0])
        try:
            # O_NONBLOCK: a FIFO in the folder does not hang the open (a regular file ignores it).
            # O_NOFOLLOW: an object is never read through a link, which anyone who may write the
            # share could plant (to a file of each machine that reads it); a link ``mdl get`` is
            # given on its command line is the user's own, resolved before it comes here.
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
        except (FileNotFoundError, NotADirectoryError):
            return _answer(404, NOT_THERE)
        except PermissionError:
            return _answer(403, DENIED)
        except (OSError, ValueError) as exc:  # ValueError: a NUL in the path
            if (said := _NOT_OPENED.get(getattr(exc, "errno", 0))) is not None:
                return _answer(404, said)
            return _answer(500, f"cannot open the file: {getattr(exc, 'strerror', None) or exc}")
        try:
            return self._serve(request, fd)
        except BaseException:
            os.close(fd)
            raise

    def _serve(self, request: httpx2.Request, fd: int) -> httpx2.Response:
        st = os.fstat(fd)  # before any read: a FIFO, a socket or a device is never read
        if (kind := kind_of(st)) is not None:
            os.close(fd)
            return _answer(404, f"{kind}, not a file")
        from mdl.buckets.folder import file_etag

        size = st.st_size
        etag = f'"{file_etag(st)}"'
        modified = email.utils.formatdate(st.st_mtime, usegmt=True)
        headers = {
            "Content-Type": "application/octet-stream",
            "Accept-Ranges": "bytes",
            "ETag": etag,
            "Last-Modified": modified,
            "Date": email.utils.formatdate(time.time(), usegmt=True),
        }
        if_range = request.headers.get("If-Range")
        asked = request.headers.get("Range") if if_range in (None, etag, modified) else None
        if (span := byte_range(asked, size)) is False:
            os.close(fd)
            return _answer(416, "", {"Content-Range": f"bytes */{size}"})
        status, (start, end) = (200, (0, size)) if span is None else (206, span)
        if status == 206:
            headers["Content-Range"] = f"bytes {start}-{end - 1}/{size}"
        headers["Content-Length"] = str(end - start)
        if request.method == "HEAD" or end == start:
            os.close(fd)
            return httpx2.Response(status, headers=headers, content=b"")
        return httpx2.Response(
            status, headers=headers, stream=FileBody(fd, start, end, request=request)
        )
