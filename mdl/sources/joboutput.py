"""Serverless job output: descriptors (inline base64 or presigned links), validated, decoded in
chunks.
"""

# (annotations evaluated, not postponed: typing compiles each string annotation of a NamedTuple
# field at every start)
import base64
import contextlib
import hashlib
import json
import os
import stat
import sys
import unicodedata
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO, NamedTuple
from urllib.parse import urlsplit

from mdl.buckets.registry import store_schemes
from mdl.errors import (
    IntegrityError,
    JobOutputError,
    LocalFSError,
    MdlError,
    OutsideJSONError,
    UsageError,
)
from mdl.outsidejson import read_json
from mdl.paths import SHA256_HEX, is_http_url, read_bounded, safe_folder_path, temp_name
from mdl.progress import NullProgress, Progress
from mdl.redact import unshown
from mdl.sources.resolve import RemoteFile
from mdl.store.confined import open_file, rename, unlink
from mdl.store.filesystem import fsync_dir
from mdl.transfer.hosts import is_local_host

# Base64 text decoded per step: a multiple of 4 characters, small enough that a payload of any size
# costs a few MiB of memory (the JSON text itself is already in memory once; never hold a second
# full copy).
B64_CHUNK = 1 << 20
# A job output is read whole and parsed in memory: a bound on it, checked before parsing (a
# platform's inline results are tens of MiB at most; bigger outputs come as links).
MAX_JOB_OUTPUT_BYTES = 256 << 20
# MIME-wrapped payloads (RFC 2045 §6.8) put a newline every 76 characters
_WHITESPACE = " \t\r\n\f\v"
_DROP_WHITESPACE = str.maketrans("", "", _WHITESPACE)
_WRAPPER_KEYS = ("files", "outputs", "results", "data")
_PENDING = frozenset({"in_queue", "in_progress", "queued", "running", "pending", "starting"})
_MAX_ERROR_TEXT = 300


class InlineFile(NamedTuple):
    """A job output carried inside the JSON as base64 (``type = file_data``); ``data`` is never
    copied.
    """

    filename: str
    data: str
    size: int | None
    sha256: str | None
    where: str  # the descriptor's key path, e.g. ``job.json.files[1]``


class UrlFile(NamedTuple):
    """A file to download: a direct/presigned URL (a ``redirect`` descriptor or an argument) or a
    Hub file.
    """

    filename: str
    url: str | None
    size: int | None
    sha256: str | None
    # what to call it in errors (descriptor key path, the redacted URL, or the hf:// URI)
    where: str
    hub: tuple[str, str, str, str] | None = None  # (repo_type, repo, revision, path)
    # a whole repo's file, as its listing named it (no HEAD needed)
    listed: RemoteFile | None = None
    # -H headers (a URL given as a SOURCE): secrets, never output
    headers: tuple[tuple[str, str], ...] = ()
    # the user typed the URL (a SOURCE): not a job output's link, nor a presigned s3:// GET
    typed: bool = False

    def __repr__(self) -> str:  # (no -H header or signed URL in a traceback)
        return unshown(self)


class InlineCheck(NamedTuple):
    """What an inline payload decodes to (nothing of it is kept)."""

    size: int
    sha256: str


def name_key(name: str) -> str:
    """What makes two file names the same file on macOS and Windows (case and Unicode form
    ignored).
    """
    return unicodedata.normalize("NFC", name).casefold()


def read_job_output(source: str) -> str:
    """The text of a job-output JSON source: a file, or stdin for ``-``; more than
    MAX_JOB_OUTPUT_BYTES is refused before it is parsed (exit 2), and never read past that."""
    where = "stdin" if source == "-" else source
    try:
        # a text stream put in its place (io.StringIO)
        if source == "-" and not hasattr(sys.stdin, "buffer"):
            text = sys.stdin.read(MAX_JOB_OUTPUT_BYTES + 1)
            if len(text) > MAX_JOB_OUTPUT_BYTES:
                raise _too_big(where)
            return text
        if source == "-":
            data = _read_at_most(sys.stdin.buffer, where=where)
        else:
            with Path(source).open("rb") as handle:  # a FIFO is fine: `mdl get <(curl …)` reads one
                data = _read_at_most(handle, where=where)
    except FileNotFoundError:
        expected = f"a URL, an hf:// or {store_schemes()} URI or a job-output JSON"
        raise UsageError(f"{source}: no such file (expected {expected})") from None
    except OSError as exc:
        raise UsageError(f"{source}: cannot read it: {exc.strerror or exc}") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise JobOutputError(
            f"{where}: not UTF-8 text ({exc.reason} at byte {exc.start})"
        ) from None


def _read_at_most(handle: BinaryIO, *, where: str) -> bytearray:
    """All of ``handle`` within the bound: a file's size says it at once, a pipe is read to one
    byte past it.
    """
    # no descriptor (a test's stream): read and count
    with contextlib.suppress(OSError, ValueError):
        found = os.fstat(handle.fileno())
        if stat.S_ISREG(found.st_mode) and found.st_size > MAX_JOB_OUTPUT_BYTES:
            raise _too_big(where)
    data = read_bounded(handle, limit=MAX_JOB_OUTPUT_BYTES)
    if data is None:
        raise _too_big(where)
    return data


def _too_big(where: str) -> JobOutputError:
    return JobOutputError(
        f"{where}: more than the {MAX_JOB_OUTPUT_BYTES >> 20} MiB a job output may be; not read",
        hint='a job\'s outputs that big come as links ("type": "redirect"), not inline',
    )


def parse_job_output(text: str, *, where: str) -> list[InlineFile | UrlFile]:
    """Job output JSON → its files: a descriptor, a list, ``{"files": [...]}``, or a completed
    job's ``output``.
    """
    # text from any reader (the API's read_text too), before it is parsed
    if len(text) > MAX_JOB_OUTPUT_BYTES:
        raise _too_big(where)
    try:  # a byte-order mark, as Windows tools write, is not JSON
        doc: Any = read_json(text.removeprefix("\ufeff"), source=where, limit=MAX_JOB_OUTPUT_BYTES)
    except OutsideJSONError as exc:
        raise JobOutputError(exc.message) from None
    # a platform's job record
    if isinstance(doc, dict) and "type" not in doc and ("output" in doc or "status" in doc):
        doc, where = _unwrap_envelope(doc, where=where)
    found = [_descriptor(item, where=at) for item, at in _descriptors(doc, where=where)]
    _refuse_duplicates(found)
    return found


def _unwrap_envelope(doc: dict[str, Any], *, where: str) -> tuple[Any, str]:
    """The envelope's ``output`` (and its key path), once its ``status`` says the job completed."""
    job = doc.get("id")
    name = (
        f"job {_one_line(str(job))}"
        if isinstance(job, str | int) and not isinstance(job, bool)
        else "the job"
    )
    if "status" in doc:
        _check_completed(doc, name=name, where=where)
    if doc.get("output") is not None:
        return doc["output"], f"{where}.output"
    if any(isinstance(doc.get(key), list) for key in _WRAPPER_KEYS):
        return doc, where  # {"status": "COMPLETED", "files": [...]}
    raise JobOutputError(f"{where}: {name} completed without an output")


def _check_completed(doc: dict[str, Any], *, name: str, where: str) -> None:
    """The envelope's ``status`` must say the job completed; else what it is, and its error."""
    status = doc["status"]
    if not isinstance(status, str):
        raise JobOutputError(f"{where}.status: expected a string, got {type(status).__name__}")
    said = status.strip().lower()
    if said == "completed":  # platforms spell it COMPLETED
        return
    error = doc.get("error")
    detail = f": {_error_text(error)}" if error not in (None, "", {}, []) else ""
    hint = (
        "it has not finished: wait, fetch its output again, then run mdl get"
        if said in _PENDING
        else None
    )
    raise JobOutputError(
        f"{where}: {name} is {_one_line(status) or repr(status)}{detail}", hint=hint
    )


def _error_text(error: Any) -> str:
    if isinstance(error, dict):
        for key in ("message", "error", "detail"):
            if isinstance(error.get(key), str):
                return _one_line(error[key])
    return _one_line(error if isinstance(error, str) else json.dumps(error, ensure_ascii=False))


# for error messages: control characters dropped, whitespace squeezed, shortened
def _one_line(text: str) -> str:
    text = "".join(
        ch for ch in text if unicodedata.category(ch) not in ("Cc", "Cs") or ch in _WHITESPACE
    )
    text = " ".join(text.split())
    return text if len(text) <= _MAX_ERROR_TEXT else text[:_MAX_ERROR_TEXT] + "…"


def _descriptors(doc: Any, *, where: str) -> list[tuple[Any, str]]:
    """The descriptors in ``doc``, each with its key path."""
    if isinstance(doc, dict) and "type" in doc:
        return [(doc, where)]
    if isinstance(doc, dict):
        doc, where = _wrapped(doc, where=where)
    if not isinstance(doc, list):
        raise JobOutputError(f"{where}: expected a JSON object or list, got {type(doc).__name__}")
    if not doc:
        raise JobOutputError(f"{where}: the job output lists no files")
    return [(item, f"{where}[{i}]") for i, item in enumerate(doc)]


def _wrapped(doc: dict[str, Any], *, where: str) -> tuple[Any, str]:
    """The list in a wrapper object (``{"files": [...]}``) and its key path."""
    key = next((key for key in _WRAPPER_KEYS if isinstance(doc.get(key), list)), None)
    if key is None:
        keys = ", ".join(sorted(map(str, doc))[:8]) or "none"
        raise JobOutputError(
            f"{where}: expected a file (an object with a 'type'), a list of them, or an object"
            f" with 'files' (keys found: {_one_line(keys)})"
        )
    return doc[key], f"{where}.{key}"


def _descriptor(item: Any, *, where: str) -> InlineFile | UrlFile:
    """One ``file_data`` or ``redirect`` descriptor, checked field by field (base64 later)."""
    if not isinstance(item, dict):
        raise JobOutputError(
            f"{where}: expected an object with a 'type', got {type(item).__name__}"
        )
    kind = item.get("type")
    if kind not in ("file_data", "redirect"):
        shown = _one_line(repr(kind))
        raise JobOutputError(f"{where}.type: expected 'file_data' or 'redirect', got {shown}")
    filename = item.get("filename")
    if not isinstance(filename, str):
        raise JobOutputError(f"{where}.filename: missing or not a string")
    # a name may hold folders ("samples/step_100.png"): saved below -d in them, by unpack's rule
    filename = safe_folder_path(filename, where=f"{where}.filename")
    size = _size_field(item.get("size"), where=f"{where}.size")
    sha256 = _sha256_field(item.get("sha256"), where=f"{where}.sha256")
    if kind == "file_data":
        data = item.get("data")
        if not isinstance(data, str):
            raise JobOutputError(f"{where}.data: missing or not a base64 string")
        return InlineFile(filename, data, size, sha256, where)
    url = _url_field(item.get("url"), where=f"{where}.url")
    return UrlFile(filename, url, size, sha256, where)


def _size_field(size: Any, *, where: str) -> int | None:
    """A descriptor's ``size``: absent, or a whole number of bytes."""
    if size is None:
        return None
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise JobOutputError(
            f"{where}: expected a whole number of bytes, got {_one_line(repr(size))}"
        )
    return size


def _sha256_field(sha256: Any, *, where: str) -> str | None:
    """A descriptor's ``sha256``: absent, or 64 hex digits (lowercased)."""
    if sha256 is None:
        return None
    if not isinstance(sha256, str) or not SHA256_HEX.fullmatch(sha256.lower()):
        raise JobOutputError(f"{where}: expected 64 hex digits")
    return sha256.lower()


def _url_field(url: Any, *, where: str) -> str:
    """A ``redirect`` descriptor's ``url``: an http(s) URL as ``check_url`` takes one."""
    if not isinstance(url, str) or not url.lower().startswith(("https://", "http://")):
        raise JobOutputError(f"{where}: expected an http(s) URL")
    if any(unicodedata.category(ch) in ("Cc", "Cs") for ch in url):
        raise JobOutputError(f"{where}: contains control characters or invalid Unicode")
    check_url(url, where=where)
    return url


ACCEPTED_URLS = (
    "mdl takes https:// URLs, and http:// ones to loopback or private hosts (localhost, 10.x,"
    " 192.168.x)"
)


def check_url(url: str, *, where: str) -> None:
    """An http(s) URL as ``paths.is_http_url`` has it, plain http only to a loopback/private
    host, else UsageError.
    """
    if not is_http_url(url):  # `where` names it: the URL itself (get), or its key (a job output)
        # the one it was written as
        scheme = "http://" if url[:7].lower() == "http://" else "https://"
        raise UsageError(
            f"{where}: not a valid {scheme} URL (it needs a host, a port up to 65535 if any, no"
            " spaces)",
            hint=ACCEPTED_URLS,
        )
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.scheme == "http" and not is_local_host(host):
        raise UsageError(
            f"{where}: plain http:// is only allowed to loopback or private hosts, not {host}; use"
            " https://"
        )


def _refuse_duplicates(items: list[InlineFile | UrlFile]) -> None:
    """Two descriptors with one file name would overwrite each other (also on case-insensitive
    disks).
    """
    seen: dict[str, str] = {}
    for item in items:
        first = seen.setdefault(name_key(item.filename), item.where)
        if first != item.where:  # key paths are unique: another descriptor had the name first
            raise JobOutputError(
                f"{item.where}.filename: {item.filename!r} is also the file name of {first}; "
                "the job output names the same file twice"
            )


def iter_base64(data: str, *, where: str) -> Iterator[bytes]:
    """Decode base64 text a chunk at a time: strict alphabet and padding, ASCII whitespace
    ignored.
    """
    carry = ""
    ended = False  # a group with '=' padding was seen: only whitespace may follow
    for start in range(0, len(data), B64_CHUNK):
        piece = data[start : start + B64_CHUNK]
        if not piece.isascii():
            raise JobOutputError(f"{where}.data: not valid base64 (non-ASCII character)")
        if any(ch in piece for ch in _WHITESPACE):
            piece = piece.translate(_DROP_WHITESPACE)
        piece = carry + piece
        usable = len(piece) - len(piece) % 4
        carry = piece[usable:]
        if not usable:
            continue
        if ended:
            raise JobOutputError(f"{where}.data: not valid base64 (data after the '=' padding)")
        block = piece[:usable]
        try:
            decoded = base64.b64decode(block, validate=True)
        except ValueError as exc:  # binascii.Error is one
            raise JobOutputError(f"{where}.data: not valid base64 ({exc})") from None
        # validate=True accepts '=' only at the end of what it is given; across chunks we check it
        # ourselves.
        ended = block.endswith("=")
        yield decoded
    if carry:
        raise JobOutputError(
            f"{where}.data: not valid base64 (incorrect padding: {len(carry)} character(s) left"
            " over)"
        )


def decoded_size(item: InlineFile) -> int:
    """The descriptor's size, else about 3/4 of its base64 (for a progress total)."""
    return item.size if item.size is not None else len(item.data) * 3 // 4


def check_inline(
    item: InlineFile, *, expected_sha256: str | None = None, progress: Progress | None = None
) -> InlineCheck:
    """Decode ``item`` without keeping it: its size and sha256, checked against the descriptor."""
    key = f"check:{item.filename}"
    # a big payload takes seconds to decode: its bar moves meanwhile
    progress = progress or NullProgress()
    progress.start(
        key, label=f"checking {item.filename}", total=decoded_size(item), path=item.filename
    )
    size, actual = _decoded(item, None, progress=progress, key=key)
    progress.finish(key, ok=True)
    if item.size is not None and item.size != size:
        raise IntegrityError(
            f"{item.where}: the job output says {item.size} bytes, its data decodes to {size}"
        )
    if item.sha256 is not None and item.sha256 != actual:
        raise IntegrityError(
            f"{item.where}: sha256 mismatch: the job output says {item.sha256}, the data is"
            f" {actual}"
        )
    if expected_sha256 is not None and expected_sha256 != actual:
        raise IntegrityError(
            f"{item.where}: sha256 mismatch: --sha256 says {expected_sha256}, the data is {actual}"
        )
    return InlineCheck(size, actual)


def _decoded(
    item: InlineFile, handle: BinaryIO | None, *, progress: Progress, key: str
) -> tuple[int, str]:
    """The payload decoded chunk by chunk (into ``handle`` if given: the caller syncs it), each
    chunk told to ``progress`` as ``key``: its size and sha256."""
    digest, size = hashlib.sha256(), 0
    for chunk in iter_base64(item.data, where=item.where):
        if handle is not None:
            handle.write(chunk)
        digest.update(chunk)
        size += len(chunk)
        progress.advance(key, len(chunk))
    return size, digest.hexdigest()


def write_inline(
    item: InlineFile, target: Path, *, root: Path, check: InlineCheck, progress: Progress
) -> None:
    """Decode ``item`` chunk by chunk into a temp file beside ``target``, then move it into place
    atomically; below ``root`` (``-d``) every folder is made and walked as ``mdl.store.confined``
    does, so a link planted there is refused (exit 2), never written through.
    """
    label = item.filename
    progress.start(label, label=label, total=check.size, path=label)  # belongs to no model
    # Dot-prefixed and in the target's folder: invisible to scanners, and the rename stays atomic.
    # Its length is what path_problem keeps room for, so a name that passed the check always fits
    # here too.
    tmp = target.with_name(temp_name(target.name))
    try:
        # made fresh, never through a link; the umask applies, as for any file open() creates
        fd = open_file(root, tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    except OSError as exc:
        progress.finish(label, ok=False, message=str(exc.strerror or exc))
        raise LocalFSError(
            f"{item.where}: cannot write into {target.parent}: {exc.strerror or exc}"
        ) from exc
    except MdlError as exc:  # a link on the way (exit 2), a file where a folder goes (exit 7)
        progress.finish(label, ok=False, message=exc.message)
        raise type(exc)(
            f"{item.where}: cannot write into {target.parent}: {exc.message}", hint=exc.hint
        ) from None
    try:
        # check_inline verified a first decoding; what is installed is this second one, so it is
        # checked too.
        with os.fdopen(fd, "wb") as handle:
            written = _decoded(item, handle, progress=progress, key=label)
            handle.flush()
            os.fsync(handle.fileno())
            made = os.fstat(handle.fileno())
        # the data is immutable: a bug if so
        if written != (check.size, check.sha256):
            raise IntegrityError(f"{item.where}: decoded differently on the second pass")
        rename(root, tmp, target, written=made)
        fsync_dir(target.parent)
    except BaseException as exc:  # Ctrl-C included: never leave a half-written temp file behind
        with contextlib.suppress(OSError, MdlError):
            unlink(root, tmp)
        if not isinstance(exc, OSError):
            progress.finish(
                label, ok=False, message=exc.message if isinstance(exc, MdlError) else "interrupted"
            )
            raise
        progress.finish(label, ok=False, message=str(exc.strerror or exc))
        raise LocalFSError(f"{item.where}: cannot write {target}: {exc.strerror or exc}") from exc
    progress.finish(label, ok=True)


def check_expected_sha256(value: str | None) -> str | None:
    if value is not None and not SHA256_HEX.fullmatch(value.lower()):
        raise UsageError(f"--sha256: expected 64 hex digits, got {_one_line(repr(value))}")
    return None if value is None else value.lower()
