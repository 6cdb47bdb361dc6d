"""Keep secrets and control characters out of every sink: stderr, stdout JSON, the log file and records.

One rule for all sinks: ``safe_text`` (free text) and ``safe_doc`` (a JSON document) make text printable
(``printable``) and then remove every secret (``redact_text``): the values registered with
``remember_secret`` (the Hub token, every expanded catalog header value), Hub tokens, bearer and
``Authorization`` values, URL userinfo, and the whole query of any URL whose parameter names look like
credentials.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable
from pathlib import PurePath
from typing import Any
from urllib.parse import parse_qsl, urlsplit, urlunsplit

REDACTED = "REDACTED"

# A query parameter whose name contains one of these (case-insensitive) makes the URL a bearer credential:
# presigned object-store URLs of every cloud (AWS, GCS, Azure SAS, Alibaba OSS, Tencent COS, Huawei OBS,
# CloudFront, Akamai), JWTs and API keys in the query. Redacting the whole query of such a URL is safer than
# knowing every provider's parameter names: a new cloud's ``X-Foo-Signature`` is caught by "sig".
_SECRET_PARAM_PARTS = (
    "sig",
    "token",
    "credential",
    "auth",
    "key",
    "jwt",
    "secret",
    "policy",
    "session",
    "pass",
    "hdnts",
    "hmac",
)
_SECRET_PARAM_PREFIXES = ("x-amz-", "x-goog-", "x-oss-", "x-cos-", "x-obs-", "q-")
# Shorter values are not treated as secrets: replacing them would garble ordinary words.
MIN_SECRET_LENGTH = 4

_URL_RE = re.compile(r"\b[A-Za-z][A-Za-z0-9+.-]*://[^\s\"'<>]+")
# A Hub token is "hf_" and at least 16 letters or digits (real ones have 34): "hf_hub" or "hf_xet" stay.
_HUB_TOKEN_RE = re.compile(r"\bhf_[A-Za-z0-9]{16,}")
_BEARER_RE = re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]{6,}")
# "Authorization: <value>", "Authorization=<value>", {"Authorization": "<value>"}: the value is the first word, or
# a scheme and its credentials ("Basic dXNlcjpwYXNz"). Not after "headers." (a catalog key path names the
# header, and the message goes on in words), and never a value already REDACTED (applying twice changes nothing).
_AUTHORIZATION_RE = re.compile(
    r"(?i)((?<!headers\.)authorization[\"']?\s*[:=]\s*[\"']?)"
    r"(?!REDACTED)(?:(?:bearer|basic|token|digest|negotiate|bot|apikey|aws4-hmac-sha256)\s+)?[^\s\"',}&]+"
)

_secrets: set[str] = set()
_ordered: tuple[str, ...] = ()  # _secrets longest first, rebuilt when they change (every log line reads it)
_secrets_lock = threading.Lock()


def remember_secret(value: str | None) -> None:
    """Register ``value`` (a token, an expanded header value) so that no sink ever shows it.

    Values shorter than ``MIN_SECRET_LENGTH``, or that are part of the word REDACTED itself, cannot be told
    apart from ordinary text and are not registered.
    """
    if value and len(value) >= MIN_SECRET_LENGTH and value not in REDACTED:
        with _secrets_lock:
            _secrets.add(value)
            # Also its printable form: sinks make text printable before redacting it.
            _secrets.add(printable(value))
            _reorder()


def forget_secrets() -> None:
    """Drop every registered secret (tests, and long-lived API users switching credentials)."""
    with _secrets_lock:
        _secrets.clear()
        _reorder()


def _reorder() -> None:
    global _ordered  # the one cache of the registry, rebuilt under _secrets_lock
    _ordered = tuple(sorted(_secrets, key=len, reverse=True))


def known_secrets() -> tuple[str, ...]:
    """The registered secrets, longest first (so a secret that contains another is removed whole)."""
    return _ordered  # a tuple, replaced whole under the lock: reading it needs no lock


def is_secret_param(name: str) -> bool:
    """Whether a query parameter's name looks like it carries a credential."""
    lowered = name.lower()
    return lowered.startswith(_SECRET_PARAM_PREFIXES) or any(part in lowered for part in _SECRET_PARAM_PARTS)


def is_signed_url(url: str) -> bool:
    """True when the URL's query carries a signature, token or other credential-like parameter."""
    try:
        query = urlsplit(url).query
    except ValueError:
        return True
    return any(is_secret_param(key) for key, _ in parse_qsl(query, keep_blank_values=True))


def redact_url(url: str) -> str:
    """The URL without credentials: userinfo dropped, and the whole query of a signed URL replaced."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return REDACTED
    netloc = parts.netloc.rsplit("@", 1)[-1]
    query = REDACTED if parts.query and is_signed_url(url) else parts.query
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def _remove(text: str, secret: str) -> str:
    """``text`` with every occurrence of ``secret`` replaced, also those the replacement itself makes up."""
    for _ in range(16):  # "TEDx1x1" with secret "TEDx1" becomes "REDACTEDx1": look again
        if secret not in text:
            break
        text = text.replace(secret, REDACTED)
    return text


def redact_text(text: str, *, secrets: Iterable[str] = ()) -> str:
    """Free text with known secrets removed, URLs redacted, and Hub tokens and bearer credentials masked.

    The registered secrets (``remember_secret``) are always removed; ``secrets`` adds more.
    """
    extra = sorted((s for s in secrets if s and len(s) >= MIN_SECRET_LENGTH), key=len, reverse=True)
    for secret in (*extra, *known_secrets()):
        text = _remove(text, secret)
    text = _URL_RE.sub(lambda m: redact_url(m.group(0)), text)
    text = _HUB_TOKEN_RE.sub("hf_" + REDACTED, text)
    text = _BEARER_RE.sub(lambda m: m.group(1) + REDACTED, text)
    text = _AUTHORIZATION_RE.sub(lambda m: m.group(1) + REDACTED, text)
    for secret in (*extra, *known_secrets()):  # a URL rewrite may have joined pieces into a secret again
        text = _remove(text, secret)
    return text


# C0/C1 controls (escape sequences, bells, carriage returns), bidi overrides and isolates, line/paragraph
# separators and zero-width characters: anything that could move the cursor, rewrite a terminal title, forge a
# log line or hide text. Tab and newline are kept only where the caller allows multi-line text.
_UNPRINTABLE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2028\u2029\u2060-\u2069\ufeff]")
_NEWLINES = re.compile("[\t\n]")
# Lone surrogates (from bytes decoded with "surrogateescape") cannot be encoded as UTF-8 by any sink.
_SURROGATES = re.compile("[\ud800-\udfff]")


def printable(text: str, *, limit: int | None = None, multiline: bool = False) -> str:
    """Server- or user-provided text made safe for a terminal, a log line or a record.

    Control and invisible characters become ``\\xNN``/``\\uNNNN`` escapes (visible, never interpreted); tabs and
    newlines become spaces unless ``multiline``; ``limit`` keeps the first characters and marks the cut with ``…``.
    """
    cleaned = _UNPRINTABLE.sub(lambda m: m.group(0).encode("unicode_escape").decode("ascii"), text)
    cleaned = _SURROGATES.sub(lambda m: f"\\u{ord(m.group(0)):04x}", cleaned)
    if not multiline:
        cleaned = _NEWLINES.sub(" ", cleaned)
    return _cut(cleaned, limit)


def _cut(text: str, limit: int | None) -> str:
    return text[:limit] + "…" if limit is not None and len(text) > limit else text


def safe_text(text: str, *, limit: int | None = None, multiline: bool = False, secrets: Iterable[str] = ()) -> str:
    """The one function every sink applies to text: printable, then every secret removed, then cut to ``limit``.

    Redacting after ``printable`` means an escape sequence cannot hide a secret from it; cutting last means
    a secret is never half-shown at the cut.
    """
    return _cut(redact_text(printable(text, multiline=multiline), secrets=secrets), limit)


def safe_doc(doc: Any, *, secrets: Iterable[str] = ()) -> Any:
    """A JSON document (dicts, lists, strings, numbers) with ``safe_text`` applied to every string in it."""
    extra = tuple(secrets)
    if isinstance(doc, str | PurePath):
        return safe_text(str(doc), secrets=extra)
    if isinstance(doc, dict):
        return {safe_doc(k, secrets=extra): safe_doc(v, secrets=extra) for k, v in doc.items()}
    if isinstance(doc, list | tuple):
        return [safe_doc(v, secrets=extra) for v in doc]
    return doc


def record_text(text: str | None) -> str | None:
    """Server-provided text (a source URL, an ETag, a commit) as it may be written into a record."""
    return None if text is None else safe_text(text)
