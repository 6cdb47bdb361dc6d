"""Keep tokens and URL signatures out of output, logs, records and JSON."""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlsplit, urlunsplit

# Query keys that make a URL a bearer credential (S3/GCS/Azure/CloudFront presigned URLs, token params).
_SECRET_QUERY_KEYS = frozenset(
    k.lower()
    for k in (
        "X-Amz-Signature",
        "X-Amz-Credential",
        "X-Amz-Security-Token",
        "X-Goog-Signature",
        "X-Goog-Credential",
        "Signature",
        "sig",
        "se",
        "sv",
        "token",
        "access_token",
        "auth",
        "Policy",
        "Key-Pair-Id",
        "api_key",
        "apikey",
        "key",
        "X-Xet-Signed-Range",
        "hdnts",
    )
)
REDACTED = "REDACTED"

_URL_RE = re.compile(r"https?://[^\s\"'<>]+")
_TOKEN_RES = (
    re.compile(r"\bhf_[A-Za-z0-9]{8,}"),
    re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]{6,}"),
    re.compile(r"(?i)(authorization[\"']?\s*[:=]\s*[\"']?)[^\s\"',}]+(\s+[^\s\"',}]+)?"),
)


def is_signed_url(url: str) -> bool:
    """True when the URL's query carries a signature or token."""
    query = urlsplit(url).query
    return any(key.lower() in _SECRET_QUERY_KEYS for key, _ in parse_qsl(query, keep_blank_values=True))


def redact_url(url: str) -> str:
    """The URL without credentials: userinfo dropped, and the whole query of a signed URL replaced."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return REDACTED
    netloc = parts.netloc.rsplit("@", 1)[-1]
    query = REDACTED if parts.query and is_signed_url(url) else parts.query
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def redact_text(text: str, *, secrets: tuple[str, ...] = ()) -> str:
    """Free text with URLs redacted, Hub tokens and bearer credentials masked, and known secrets removed."""
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, REDACTED)
    text = _URL_RE.sub(lambda m: redact_url(m.group(0)), text)
    text = _TOKEN_RES[0].sub("hf_" + REDACTED, text)
    text = _TOKEN_RES[1].sub(lambda m: m.group(1) + REDACTED, text)
    return _TOKEN_RES[2].sub(lambda m: m.group(1) + REDACTED, text)


# C0/C1 controls (escape sequences, bells, carriage returns), bidi overrides and isolates, line/paragraph
# separators and zero-width characters: anything that could move the cursor, rewrite a terminal title, forge a
# log line or hide text. Tab and newline are kept only where the caller allows multi-line text.
_UNPRINTABLE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2028\u2029\u2060-\u2069\ufeff]")
_NEWLINES = re.compile("[\t\n]")


def printable(text: str, *, limit: int | None = None, multiline: bool = False) -> str:
    """Server- or user-provided text made safe for a terminal, a log line or a record.

    Control and invisible characters become ``\\xNN``/``\\uNNNN`` escapes (visible, never interpreted); tabs and
    newlines become spaces unless ``multiline``; ``limit`` keeps the first characters and marks the cut with ``…``.
    """
    cleaned = _UNPRINTABLE.sub(lambda m: m.group(0).encode("unicode_escape").decode("ascii"), text)
    if not multiline:
        cleaned = _NEWLINES.sub(" ", cleaned)
    if limit is not None and len(cleaned) > limit:
        cleaned = cleaned[:limit] + "…"
    return cleaned
