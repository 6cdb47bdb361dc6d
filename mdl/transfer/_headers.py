"""What a reply's headers say: strict numbers and ranges (RFC 9110 §14.4, §8.6), content codings
(§8.4).
"""

from __future__ import annotations

import email.utils
import re
import time
from importlib.util import find_spec

import httpx2

from mdl.errors import NetworkError
from mdl.redact import redact_url

MAX_DIGITS = 19  # ASCII digits a number may have (``int()`` takes '²' and chokes on 5000 digits)
_NUMBER = rf"[0-9]{{1,{MAX_DIGITS}}}"
_DECIMAL = re.compile(rf"[ \t]*({_NUMBER})[ \t]*", re.ASCII)
_CONTENT_RANGE = rf"(?ai)[ \t]*bytes[ \t]+(?:({_NUMBER})-({_NUMBER})|\*)/({_NUMBER}|\*)[ \t]*"


class ContentRangeError(ValueError):
    """A Content-Range header we cannot trust."""


def parse_content_range(value: str) -> tuple[int, int, int | None]:
    """``bytes a-b/total`` → (a, b, total or None for ``*``); anything else is an error."""
    if not (match := re.fullmatch(_CONTENT_RANGE, value or "")) or match.group(1) is None:
        raise ContentRangeError(f"unparseable Content-Range {value[:100]!r}")
    start, end = int(match.group(1)), int(match.group(2))
    total = None if match.group(3) == "*" else int(match.group(3))
    if end < start or (total is not None and end >= total):
        raise ContentRangeError(f"inconsistent Content-Range {value[:100]!r}")
    return start, end, total


def parse_decimal(value: str | None) -> int | None:
    """A header holding one non-negative number (``Content-Length``, ``Retry-After`` seconds),
    else None.
    """
    match = _DECIMAL.fullmatch(value or "")
    return int(match.group(1)) if match else None


def content_range_total(value: str | None) -> int | None:
    """The complete length in a Content-Range (``bytes a-b/N``, or ``bytes */N`` of a 416), or
    None.
    """
    match = re.fullmatch(_CONTENT_RANGE, value or "")
    return int(match.group(3)) if match and match.group(3) != "*" else None


# The package that lets httpx2 decode a coding (its ``brotli``/``zstd`` extras); an install made
# with --no-deps may lack brotli, and then a ``br`` body is refused naming it. Looked up without
# importing them.
PACKAGES = {"br": "brotli", "zstd": "zstandard"}
DECODABLE = frozenset(
    {"gzip", "deflate"}
    | ({"br"} if find_spec("brotli") is not None or find_spec("brotlicffi") is not None else set())
    | ({"zstd"} if find_spec("zstandard") is not None else set())
)


def content_codings(response: httpx2.Response) -> tuple[str, ...]:
    values = ",".join(response.headers.get_list("Content-Encoding"))
    return tuple(c for c in (v.strip().lower() for v in values.split(",")) if c and c != "identity")


def is_encoded(response: httpx2.Response, *, what: str) -> bool:
    """Whether the body is content-coded; a coding we cannot decode is a network error naming the
    URL (exit 5).
    """
    codings = content_codings(response)
    if unknown := [c for c in codings if c not in DECODABLE]:
        missing = [PACKAGES[c] for c in unknown if c in PACKAGES]
        sent = (
            f"{what}: {redact_url(str(response.url))} sent the file with Content-Encoding"
            f" {', '.join(unknown)}"
        )
        raise NetworkError(
            (
                f"{sent}; pip install {' '.join(missing)} to accept it"
                if missing
                else f"{sent}, which mdl cannot decode"
            ),
            hint=("or have the server" if missing else "the server should")
            + " send the file as it is (identity); mdl never saves encoded bytes as the file",
        )
    return bool(codings)


def retry_after_seconds(value: str | None, *, now: float | None = None) -> float | None:
    """A Retry-After header's wait in seconds (delay-seconds or an HTTP-date), or None."""
    value = (value or "").strip()
    if (delay := parse_decimal(value)) is not None:
        return float(delay)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


# RFC 9530 §3 (Repr-Digest: a dictionary, each value a byte sequence ``:base64:``); RFC 3230 §4.3.2
# (Digest: ``SHA-256=base64``); S3's full-object ``x-amz-checksum-sha256`` (base64; a composite one,
# of the parts, ends in ``-N``). Each names the sha256 of the whole representation, whatever range
# the reply carries.
_REPR_SHA256 = r"(?a)(?:^|,)[ \t]*sha-256[ \t]*=[ \t]*:([A-Za-z0-9+/]{43}=):"
_DIGEST_SHA256 = r"(?ai)(?:^|,)[ \t]*sha-256[ \t]*=[ \t]*([A-Za-z0-9+/]{43}=)"
_BASE64_SHA256 = r"(?a)[ \t]*([A-Za-z0-9+/]{43}=)[ \t]*"


def served_sha256(headers: httpx2.Headers) -> str | None:
    """The sha256 (hex) a reply says its whole representation has, or None: it says none, or not
    in a form read strictly. A claim, never a proof: it names which content a URL serves (another
    URL of the same bytes is not another file); the bytes fetched are held to it all the same."""
    from base64 import b64decode

    found: set[str] = set()
    for name, pattern in (("repr-digest", _REPR_SHA256), ("digest", _DIGEST_SHA256)):
        for value in headers.get_list(name):
            found.update(m.group(1) for m in re.finditer(pattern, value))
    checksum = headers.get("x-amz-checksum-sha256")
    composite = headers.get("x-amz-checksum-type", "").strip().upper() == "COMPOSITE"
    if checksum is not None and not composite and (m := re.fullmatch(_BASE64_SHA256, checksum)):
        found.add(m.group(1))
    digests = {b64decode(value).hex() for value in found}
    # two that disagree say nothing
    return digests.pop() if len(digests) == 1 else None
