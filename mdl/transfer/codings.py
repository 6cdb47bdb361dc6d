"""Content codings (RFC 9110 §8.4): a body sent gzip'd despite ``Accept-Encoding: identity`` is decoded, never saved.

nginx with ``gzip_static always`` (and other misconfigured servers) compress whatever the client asks for. Such a
body's ``Content-Length`` and any ``Content-Range`` count encoded bytes, so they say nothing about the file: a
whole-file answer is decoded as it streams and checked by its decoded size and hashes, and a ranged one cannot
be spliced at all (a slice of a gzip stream is not a slice of the file).
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx2

from mdl.errors import NetworkError
from mdl.redact import redact_url

# The package that lets httpx2 decode a coding (its documented ``brotli``/``zstd`` extras). ``brotli`` is one of mdl's
# own dependencies (Google's bindings, a 1.4 MB wheel with no dependencies); it can still be missing from an
# install made with --no-deps, and then a ``br`` body is refused naming it.
PACKAGES = {"br": "brotli", "zstd": "zstandard"}


def _decodable() -> frozenset[str]:
    """The codings httpx2 decodes here: gzip and deflate always, br and zstd when their packages are installed.
    Looked up without importing them."""
    from importlib.util import find_spec

    codings = {"gzip", "deflate"}
    if find_spec("brotli") is not None or find_spec("brotlicffi") is not None:
        codings.add("br")
    if find_spec("zstandard") is not None:
        codings.add("zstd")
    return frozenset(codings)


DECODABLE = _decodable()


def content_codings(response: httpx2.Response) -> tuple[str, ...]:
    """The codings applied to the body, in the order they were applied (``identity`` left out)."""
    values = ",".join(response.headers.get_list("Content-Encoding"))
    return tuple(c for c in (v.strip().lower() for v in values.split(",")) if c and c != "identity")


def is_encoded(response: httpx2.Response, *, what: str) -> bool:
    """Whether the body is content-coded; a coding we cannot decode is a network error naming the URL (exit 5)."""
    codings = content_codings(response)
    unknown = [c for c in codings if c not in DECODABLE]
    missing = [PACKAGES[c] for c in unknown if c in PACKAGES]
    if missing:
        raise NetworkError(
            f"{what}: {redact_url(str(response.url))} sent the file with Content-Encoding "
            f"{', '.join(unknown)}; pip install {' '.join(missing)} to accept it",
            hint="or have the server send the file as it is (identity); mdl never saves encoded bytes as the file",
        )
    if unknown:
        raise NetworkError(
            f"{what}: {redact_url(str(response.url))} sent the file with Content-Encoding "
            f"{', '.join(unknown)}, which mdl cannot decode",
            hint="the server should send the file as it is (identity); mdl never saves encoded bytes as the file",
        )
    return bool(codings)


def body_chunks(response: httpx2.Response, *, encoded: bool, what: str) -> Iterator[bytes]:
    """The file's bytes from the body: decoded as they stream when the body is content-coded, raw otherwise."""
    if not encoded:
        yield from response.iter_raw()
        return
    try:
        yield from response.iter_bytes()
    except httpx2.DecodingError as exc:
        raise NetworkError(
            f"{what}: the {', '.join(content_codings(response))} body from {redact_url(str(response.url))} "
            f"is corrupt: {exc}"
        ) from exc
