"""Keep secrets and control characters out of every sink (stderr, stdout JSON, the log file, records): registered
secrets in any encoding, Hub tokens, bearer and ``Authorization`` values, URL userinfo, signed URLs' queries."""

from __future__ import annotations

import functools
import html
import json
import re
import threading
from collections.abc import Callable, Iterable
from pathlib import PurePath
from typing import Any
from urllib.parse import parse_qsl, quote, quote_plus, unquote, unquote_plus, urlsplit, urlunsplit

REDACTED = "REDACTED"

# A query parameter whose name holds one of these (any case) makes the URL a bearer credential: presigned URLs of
# every cloud, JWTs, API keys. Matching parts of names catches a new cloud's ``X-Foo-Signature`` too.
_SECRET_PARAM_PART = re.compile("sig|token|credential|auth|key|jwt|secret|policy|session|pass|hdnts|hmac")
_SECRET_PARAM_PREFIXES = ("x-amz-", "x-goog-", "x-oss-", "x-cos-", "x-obs-", "q-")
_LOWER_HEX = re.compile("%[0-9A-F]{2}")
_UNRESERVED = re.compile("[A-Za-z0-9._~-]+")  # RFC 3986 unreserved: no encoding changes them
# Parameters whose name makes a query secret but whose value is public: when it was signed, how, for how long,
# which headers. Registering "host" or "3600" would redact those words everywhere.
_PUBLIC_PARAM = re.compile(
    r"(algorithm|date|expires|signedheaders|signature-version|sign-time|key-time|header-list|url-param-list"
    r"|additional-headers)\Z"
)
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

# Every registered secret and its encoded forms, indexed by their first MIN_SECRET_LENGTH characters, so a lookup
# per window of a text costs the same for tens of thousands of them. Lists only grow (readers take no lock).
_secrets: set[str] = set()
_index: dict[str, list[str]] = {}
_longest = 0  # the longest registered form: how far back a cut can have split one
_secrets_lock = threading.Lock()


def remember_secret(value: str | None) -> None:
    """Register ``value`` (a token, a header value, a signature) so that no sink ever shows it, in any encoding; a
    header value ``<scheme> <credentials>`` registers its credentials alone too (a server may echo them so)."""
    if not value or len(value) < MIN_SECRET_LENGTH or value in REDACTED:
        return
    scheme, _, credentials = value.partition(" ")
    forms = set(encoded_forms(value))
    if credentials and scheme.isalpha() and " " not in credentials.strip():
        forms.update(encoded_forms(credentials.strip()))
    with _secrets_lock:
        global _longest
        new = forms - _secrets
        if not new:
            return
        _secrets.update(new)
        for form in new:
            key = form[:MIN_SECRET_LENGTH]
            _index.setdefault(key, []).append(form)
            _longest = max(_longest, len(form))


def forget_secrets() -> None:
    """Drop every registered secret (tests, and long-lived API users switching credentials)."""
    global _longest
    with _secrets_lock:
        _secrets.clear()
        _index.clear()
        _longest = 0


def known_secrets() -> tuple[str, ...]:
    """The registered secrets and their encoded forms, longest first."""
    return tuple(sorted(_secrets, key=len, reverse=True))


@functools.lru_cache(maxsize=1024)
def encoded_forms(value: str) -> frozenset[str]:
    """``value`` as a server may quote it: raw, printable, percent-encoded, JSON- and HTML-escaped."""
    if _UNRESERVED.fullmatch(value):  # a hex signature, a base64url token: every encoding leaves it as it is
        return frozenset((value,))
    forms = {value, printable(value)}
    for safe in ("", "/"):
        for encoded in (quote(value, safe=safe), quote_plus(value, safe=safe)):
            forms.update((encoded, _LOWER_HEX.sub(lambda m: m.group(0).lower(), encoded)))
    for ascii_only in (True, False):
        escaped = json.dumps(value, ensure_ascii=ascii_only)[1:-1]
        forms.update((escaped, escaped.replace("/", "\\/")))
    forms.update((html.escape(value), html.escape(value, quote=False)))
    return frozenset(f for f in forms if len(f) >= MIN_SECRET_LENGTH and f not in REDACTED)


def remember_url_secrets(url: str) -> None:
    """Register a URL's userinfo and secret query values when read (S3's ``SignatureDoesNotMatch`` echoes them)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return
    userinfo, at, _ = parts.netloc.rpartition("@")
    if at:
        user, colon, password = userinfo.partition(":")
        for value in (userinfo, password if colon else user):
            remember_secret(value)
            remember_secret(unquote(value))
    for piece in (*parts.query.split("&"), *parts.fragment.split("&")):
        raw_name, equals, raw_value = piece.partition("=")
        name = unquote_plus(raw_name).lower()
        if not equals or not is_secret_param(name) or _PUBLIC_PARAM.search(name):
            continue
        for value in {raw_value, unquote(raw_value), unquote_plus(raw_value)}:
            remember_secret(value)
            if name.endswith("credential"):  # AWS/GCS "<access key id>/<date>/<region>/…": the key id alone too
                remember_secret(value.partition("/")[0])


def is_secret_param(name: str) -> bool:
    """Whether a query parameter's name looks like it carries a credential."""
    lowered = name.lower()
    return lowered.startswith(_SECRET_PARAM_PREFIXES) or bool(_SECRET_PARAM_PART.search(lowered))


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


def _spans(text: str, extra: tuple[str, ...]) -> list[tuple[int, int]]:
    """Where registered secrets (and ``extra`` forms) occur in ``text``: overlapping spans merged, in order."""
    forms = list(extra)
    if _index:
        for key in {text[i : i + MIN_SECRET_LENGTH] for i in range(len(text) - MIN_SECRET_LENGTH + 1)}:
            forms.extend(_index.get(key, ()))
    found: list[tuple[int, int]] = []
    for form in forms:
        at = text.find(form)
        while at >= 0:
            found.append((at, at + len(form)))
            at = text.find(form, at + 1)
    merged: list[tuple[int, int]] = []
    for start, end in sorted(found):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    return merged


def _remove_secrets(text: str, extra: tuple[str, ...]) -> tuple[str, bool]:
    """``text`` with every secret replaced, also those a replacement makes up, and whether there was any."""
    removed = False
    for _ in range(16):
        spans = _spans(text, extra)
        if not spans:
            break
        removed = True
        for start, end in reversed(spans):
            text = text[:start] + REDACTED + text[end:]
    return text, removed


# A text a secret may hide in behind escapes: percent-encoding, HTML/XML entities, JSON string escapes.
_MAY_BE_ENCODED = re.compile(r"[%&\\]")
_JSON_ESCAPE = re.compile(r'\\(?:u([0-9a-fA-F]{4})|(["\\/bfnrt]))')
_JSON_SIMPLE = {'"': '"', "\\": "\\", "/": "/", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}


def _json_unescape(text: str) -> str:
    decoded = _JSON_ESCAPE.sub(lambda m: chr(int(m.group(1), 16)) if m.group(1) else _JSON_SIMPLE[m.group(2)], text)
    if _SURROGATES.search(decoded):  # "\\ud83d\\ude00" is one character; lone halves stay (printable escapes them)
        decoded = decoded.encode("utf-16", "surrogatepass").decode("utf-16", "surrogatepass")
    return decoded


_DECODERS: tuple[Callable[[str], str], ...] = (html.unescape, _json_unescape, unquote) * 2


def _extra_forms(secrets: Iterable[str]) -> tuple[str, ...]:
    return tuple(
        {form for s in secrets if len(s) >= MIN_SECRET_LENGTH and s not in REDACTED for form in encoded_forms(s)}
    )


def _redact(text: str, extra: tuple[str, ...], *, multiline: bool) -> str:
    text, _ = _remove_secrets(text, extra)
    if _MAY_BE_ENCODED.search(text) and (_secrets or extra):
        # A form no list holds (a numeric entity, mixed-case hex, a JSON escape in HTML): if a secret shows only in
        # the decoded text, keep that, redacted; decode on past a find, as a second may hide one layer deeper.
        probe, shown = text, None
        for decode in _DECODERS:
            step = decode(probe)
            if step == probe:
                continue
            probe, removed = _remove_secrets(step, extra)
            if removed:
                shown = probe
        if shown is not None:
            text = printable(shown, multiline=multiline)  # decoding may have made control characters ("%1b")
    text = _URL_RE.sub(lambda m: redact_url(m.group(0)), text)
    text = _HUB_TOKEN_RE.sub("hf_" + REDACTED, text)
    text = _BEARER_RE.sub(lambda m: m.group(1) + REDACTED, text)
    text = _AUTHORIZATION_RE.sub(lambda m: m.group(1) + REDACTED, text)
    text, _ = _remove_secrets(text, extra)  # a URL rewrite may have joined pieces into a secret again
    return text


def hide_cut_secret(text: str) -> str:
    """``text`` cut short (a body read up to a limit) with the start of a secret the cut split replaced too."""
    for at in range(max(0, len(text) - _longest), len(text) - MIN_SECRET_LENGTH + 1):
        tail = text[at:]
        if any(form.startswith(tail) for form in _index.get(tail[:MIN_SECRET_LENGTH], ())):
            return text[:at] + REDACTED
    return text


def redact_text(text: str, *, secrets: Iterable[str] = ()) -> str:
    """Free text with the registered secrets (and ``secrets``) removed, URLs redacted, credentials masked."""
    return _redact(text, _extra_forms(secrets), multiline=True)


# C0/C1 controls, bidi overrides and isolates, line separators, zero-width characters: anything that could move the
# cursor, retitle a terminal, forge a log line or hide text. Tab and newline only in multi-line text.
_UNPRINTABLE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2028\u2029\u2060-\u2069\ufeff]")
_NEWLINES = re.compile("[\t\n]")
# Lone surrogates (from bytes decoded with "surrogateescape") cannot be encoded as UTF-8 by any sink.
_SURROGATES = re.compile("[\ud800-\udfff]")


def printable(text: str, *, limit: int | None = None, multiline: bool = False) -> str:
    """Control and invisible characters escaped, tabs and newlines spaces unless ``multiline``, cut to ``limit``."""
    cleaned = _UNPRINTABLE.sub(lambda m: m.group(0).encode("unicode_escape").decode("ascii"), text)
    cleaned = _SURROGATES.sub(lambda m: f"\\u{ord(m.group(0)):04x}", cleaned)
    if not multiline:
        cleaned = _NEWLINES.sub(" ", cleaned)
    return _cut(cleaned, limit)


def _cut(text: str, limit: int | None) -> str:
    return text[:limit] + "…" if limit is not None and len(text) > limit else text


def safe_text(text: str, *, limit: int | None = None, multiline: bool = False, secrets: Iterable[str] = ()) -> str:
    """What every sink applies to text: printable, then redacted, then cut (a secret is never half-shown)."""
    return _cut(_redact(printable(text, multiline=multiline), _extra_forms(secrets), multiline=multiline), limit)


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
