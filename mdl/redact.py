"""Keep secrets and control characters out of every sink (stderr, stdout JSON, the log file,
records): registered secrets as tokens in any encoding and however a server reflows them, Hub
tokens, bearer and ``Authorization`` values, URL userinfo, signed URLs' queries and secret path
parameters. Data a command exists to print (names, paths, sizes, hashes: see ``TEXT_KEYS``) is never
rewritten by a run's secrets: only its URLs lose their credentials."""

from __future__ import annotations

import base64
import functools
import json
import re
import string
import threading
from bisect import bisect_right
from collections.abc import Callable, Iterable, Iterator, Mapping
from itertools import accumulate
from pathlib import PurePath
from typing import Any
from urllib.parse import parse_qsl, quote, quote_plus, unquote, unquote_plus, urlsplit, urlunsplit

REDACTED = "REDACTED"

# A query parameter whose name holds one of these (any case) makes the URL a bearer credential:
# presigned URLs of every cloud, JWTs, API keys. Matching parts of names catches a new cloud's
# ``X-Foo-Signature`` too.
_BEARER_PARAM_WORDS = (
    "sig|token|credential|auth|key|jwt|secret|policy|session|sessid|pass|hdnts|hmac"
)
# whole names only: as parts they are in ordinary words
_SECRET_PARAM_NAMES = frozenset({"sid", "ssid"})
_SECRET_PARAM_PREFIXES = ("x-amz-", "x-goog-", "x-oss-", "x-cos-", "x-obs-", "q-")
_LOWER_HEX = "%[0-9A-F]{2}"
_UNRESERVED = "[A-Za-z0-9._~-]+"  # RFC 3986 unreserved: no encoding changes them
# Parameters whose name makes a query secret but whose value is public: when it was signed, how, for
# how long, which headers. Registering "host" or "3600" would redact those words everywhere.
_PUBLIC_PARAM = (
    r"(algorithm|date|expires|signedheaders|signature-version|sign-time|key-time|header-list"
    r"|url-param-list"
    r"|additional-headers)\Z"
)
# Shorter values are never used to rewrite text: they cannot be told from words (they are still
# never sent where they do not belong: that is the HTTP client's rule, not this module's).
MIN_SECRET_LENGTH = 8

_URL_RE = re.compile(r"\b[A-Za-z][A-Za-z0-9+.-]*://[^\s\"'<>]+")
# A Hub token is "hf_" and at least 16 letters or digits (real ones have 34): "hf_hub" or "hf_xet"
# stay.
_HUB_TOKEN_RE = re.compile(r"\bhf_[A-Za-z0-9]{16,}")
_BEARER_RE = re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]{6,}")
# "Authorization: <value>", "Authorization=<value>", {"Authorization": "<value>"}: the value is the
# first word, or a scheme and its credentials ("Basic dXNlcjpwYXNz"). Not after "headers." (a
# catalog key path names the header, and the message goes on in words), and never a value already
# REDACTED (applying twice changes nothing).
_AUTHORIZATION_RE = re.compile(
    r"(?i)((?<!headers\.)authorization[\"']?\s*[:=]\s*[\"']?)(?!REDACTED)"
    # SigV4's value is fields, commas between: Credential=…, SignedHeaders=…, Signature=…
    r"(?:aws4-hmac-sha256\s+(?:[\w-]+=[^\s\"',}&]*(?:,\s*|(?=[\s\"'}&]|\Z)))+"
    r"|(?:(?:bearer|basic|token|digest|negotiate|bot|apikey|aws4-hmac-sha256|aws)\s+)?"
    r"[^\s\"',}&]+)"
)
# A path parameter (RFC 3986 3.3: "/a;jsessionid=…/b"): a secret name's value is a secret, as in a
# query.
_PATH_PARAM = re.compile(r";([^;/=?#]*)=([^;/?#]*)")
# A request target without scheme and host (``/bucket/key?X-Amz-Signature=…``, as a server logs
# what it was asked), or a bare query: at a word's start (after a space, a quote, a bracket, "=").
_TARGET_RE = re.compile(
    r"(?<![^\s\"'(\[<=,])(?:(/[^\s\"'<>?#]*)(?:\?([^\s\"'<>#)\]]+))?|\?([^\s\"'<>#)\]]+))"
)
# A name=value pair after a query's mark or a separator, wherever it sits (a target a client sent
# with a quote or a bracket in its query, ``*?…``, a request line quoted in a message): a secret
# name's value replaced, the rest kept. (Not at a word's start: a file's path ``session_id=4/…``
# is no query.)
_PARAM_RE = re.compile(r"([?&;]([\w%.~+-]+)=)(?!REDACTED)([^&;#\s\"'<>,]+)")

# Format characters (Unicode category Cf): the soft hyphen, zero-width space and joiners, bidi marks
# and overrides, the BOM, invisible tag characters. A terminal shows nothing of them; a server may
# put them inside a secret.
_FORMAT = (
    "\xad\u0600-\u0605\u061c\u06dd\u070f\u0890\u0891\u08e2\u180e\u200b-\u200f\u202a-\u202e"
    "\u2060-\u206f\ufeff\ufff9-\ufffb\U000110bd\U000110cd\U00013430-\U0001343f"
    "\U0001bca0-\U0001bca3\U0001d173-\U0001d17a"
    "\U000e0001\U000e0020-\U000e007f"
)
# C0/C1 controls, line separators and format characters: anything that could move the cursor,
# retitle a terminal, forge a log line or hide text. Tab and newline only in multi-line text.
_UNPRINTABLE = f"[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029{_FORMAT}]"
# What a secret is matched across: line breaks, header folding, the spaces of a wrapped page, format
# characters.
_IGNORABLE = f"([\\s{_FORMAT}]+)"
_FORMATS = f"[{_FORMAT}]+"
# a hex value matches in any case (a signature a server upper-cases)
_HEX = "[0-9a-fA-F]+"
_ASCII_LOWER = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)
_GRAM = 4
# probing every _STEP characters, some probe falls wholly inside any secret
_STEP = MIN_SECRET_LENGTH - _GRAM + 1


def _fold(text: str) -> str:
    """ASCII letters in lower case, nothing else changed: every character stays at its index."""
    return text.lower() if text.isascii() else text.translate(_ASCII_LOWER)


def _squeeze(text: str) -> str:
    """``text`` without whitespace and format characters: the form a secret is matched in."""
    squeezed = "".join(text.split())  # (str.split's whitespace is the regular expressions' \s)
    return re.sub(_FORMATS, "", squeezed) if re.search(_FORMATS, squeezed) else squeezed


class Secrets:
    """The secret values of one run (tokens, passwords, header values, signatures) and their encoded
    forms: built where a command or API call begins, told what the run learns (:meth:`add`,
    :meth:`add_url`), handed to every sink (``secrets=`` of :func:`safe_text` and :func:`safe_doc`).
    Values only grow; readers take no lock. Indexed for one linear scan of a text: by each form's
    first MIN_SECRET_LENGTH characters (folded), and those by each _GRAM-long piece a probe may see.
    """

    def __init__(self, values: Iterable[str | None] = ()) -> None:
        # head -> length -> (exact, folded forms)
        self.heads: dict[str, dict[int, tuple[set[str], set[str]]]] = {}
        self.grams: dict[str, frozenset[int]] = {}  # a piece of a head -> where in the head it sits
        self.longest = 0
        self._forms: set[str] = set()
        self._lock = threading.Lock()
        for value in values:
            self.add(value)

    def add(self, value: str | None) -> None:
        """Register ``value`` (a token, a header value, a signature) so that no sink shows it, in
        any encoding; a header value ``<scheme> <credentials>`` registers its credentials alone too
        (a server may echo them so)."""
        if not value or len(value) < MIN_SECRET_LENGTH:
            return
        forms = _forms_of(value)
        with self._lock:
            for form in forms - self._forms:
                if self._index(form):
                    self._forms.add(form)

    def add_url(self, url: str) -> None:
        """Register a URL's userinfo (and its Basic credentials) and secret query and path parameter
        values when read (S3's ``SignatureDoesNotMatch`` echoes them, a server's page may quote its
        ``;jsessionid=``)."""
        try:
            parts = urlsplit(url)
        except ValueError:
            return
        userinfo, at, _ = parts.netloc.rpartition("@")
        if at:
            user, colon, password = userinfo.partition(":")
            for value in (userinfo, password if colon else user):
                self.add(value)
                self.add(unquote(value))
            # and as an HTTP client sends it (RFC 7617: Basic base64(user:password)), which a server
            # may quote alone
            self.add(
                base64.b64encode(f"{unquote(user)}:{unquote(password)}".encode()).decode("ascii")
            )
        pieces = [
            piece.split("=", 1)
            for piece in f"{parts.query}&{parts.fragment}".split("&")
            if "=" in piece
        ]
        for raw_name, raw_value in [*_PATH_PARAM.findall(parts.path), *pieces]:
            if not _secret_name(raw_name):
                continue
            # AWS/GCS credentials are "<access key id>/<date>/<region>/…": the key id alone too
            key_id = unquote_plus(raw_name).lower().endswith("credential")
            for value in {raw_value, unquote(raw_value), unquote_plus(raw_value)}:
                self.add(value)
                if key_id:
                    self.add(value.partition("/")[0])

    def known(self) -> tuple[str, ...]:
        """The registered secrets and their encoded forms, longest first."""
        return tuple(sorted(self._forms, key=len, reverse=True))

    def __call__(self, request: Any) -> None:
        """An HTTP client's request hook: every URL the run asks for (each hop of a redirect)
        registered before it is sent, and the run's secrets carried by the request for what reads
        its answer (:meth:`of`)."""
        self.add_url(str(request.url))
        request.extensions[_EXTENSION] = self

    @staticmethod
    def of(response: Any) -> Secrets | None:
        """The secrets of the run whose client asked for ``response`` (None: a client without
        them).
        """
        try:
            found = response.request.extensions.get(_EXTENSION)
        except RuntimeError:  # a response built without its request
            return None
        return found if isinstance(found, Secrets) else None

    def _index(self, form: str) -> bool:
        """Index ``form`` (squeezed); False when that is too short to be told from words."""
        form = _squeeze(form)
        if len(form) < MIN_SECRET_LENGTH or form == REDACTED:
            return False
        head = _fold(form[:MIN_SECRET_LENGTH])
        exact, folded = self.heads.setdefault(head, {}).setdefault(len(form), (set(), set()))
        if re.fullmatch(_HEX, form):
            folded.add(_fold(form))
        else:
            exact.add(form)
        for at in range(_STEP):
            piece = head[at : at + _GRAM]
            self.grams[piece] = self.grams.get(piece, frozenset()) | {at}
        self.longest = max(self.longest, len(form))
        return True


_EXTENSION = "mdl.secrets"


@functools.lru_cache(maxsize=1024)
def encoded_forms(value: str) -> frozenset[str]:
    """``value`` as a server may quote it: raw, printable, percent-encoded, JSON- and
    HTML-escaped.
    """
    # a hex signature, a base64url token: every encoding leaves it as it is
    if re.fullmatch(_UNRESERVED, value):
        return frozenset((value,))
    forms = {value, printable(value)}
    for safe in ("", "/"):
        for encoded in (quote(value, safe=safe), quote_plus(value, safe=safe)):
            forms.update((encoded, re.sub(_LOWER_HEX, lambda m: m.group(0).lower(), encoded)))
    for ascii_only in (True, False):
        escaped = json.dumps(value, ensure_ascii=ascii_only)[1:-1]
        forms.update((escaped, escaped.replace("/", "\\/")))
    import html  # (html.entities: ~1.5 ms, only for a run that has secrets)

    forms.update((html.escape(value), html.escape(value, quote=False)))
    return frozenset(f for f in forms if len(f) >= MIN_SECRET_LENGTH and f != REDACTED)


def _forms_of(value: str) -> frozenset[str]:
    """The encoded forms of ``value``, and of its credentials alone when it is ``<scheme>
    <credentials>``.
    """
    forms = encoded_forms(value)
    scheme, _, credentials = value.partition(" ")
    if credentials and scheme.isalpha() and " " not in credentials.strip():
        forms |= encoded_forms(credentials.strip())
    return forms


def is_secret_param(name: str) -> bool:
    """Whether a query parameter's name looks like it carries a credential."""
    lowered = name.lower()
    return (
        lowered.startswith(_SECRET_PARAM_PREFIXES)
        or lowered in _SECRET_PARAM_NAMES
        or bool(re.search(_BEARER_PARAM_WORDS, lowered))
    )


def is_signed_url(url: str) -> bool:
    """True when the URL's query carries a signature, token or other credential-like parameter."""
    try:
        query = urlsplit(url).query
    except ValueError:
        return True
    return any(is_secret_param(key) for key, _ in parse_qsl(query, keep_blank_values=True))


def redact_url(url: str) -> str:
    """The URL without credentials: userinfo dropped, a secret path parameter's value and the whole
    query of a signed URL replaced."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return REDACTED
    path = _hide_path_params(parts.path)
    query = REDACTED if parts.query and is_signed_url(url) else parts.query
    return urlunsplit((parts.scheme, parts.netloc.rsplit("@", 1)[-1], path, query, parts.fragment))


def _hide_path_params(path: str) -> str:
    return _PATH_PARAM.sub(
        lambda m: f";{m.group(1)}={REDACTED}" if _secret_name(m.group(1)) else m.group(0), path
    )


def _redact_targets(text: str) -> str:
    """Request targets and bare queries (``GET /b/k?Signature=…``) as :func:`redact_url` leaves a
    URL: a secret path parameter's value and the whole query of a signed one replaced."""
    if "?" not in text and ";" not in text:
        return text

    def one(m: re.Match[str]) -> str:
        path, query = _hide_path_params(m.group(1) or ""), m.group(2) or m.group(3)
        if query is None:
            return path
        return f"{path}?{REDACTED if is_signed_url('?' + query) else query}"

    return _TARGET_RE.sub(one, text)


def _redact_params(text: str) -> str:
    """Any secret name=value pair left (see _PARAM_RE): its value replaced."""
    if "=" not in text:
        return text
    return _PARAM_RE.sub(
        lambda m: m.group(1) + REDACTED if _secret_name(m.group(2)) else m.group(0), text
    )


def _secret_name(raw: str) -> bool:
    """Whether a (still encoded) parameter name carries a credential and is not one of the public
    ones.
    """
    name = unquote_plus(raw).lower()
    return is_secret_param(name) and not re.search(_PUBLIC_PARAM, name)


def _redact_urls(text: str) -> str:
    return _URL_RE.sub(lambda m: _redact_found_url(m.group(0)), text) if "://" in text else text


def _redact_found_url(url: str) -> str:
    # Nothing to take out (no userinfo, path parameter or query) and nothing urlsplit refuses: as it
    # is, cheaply.
    return url if url.isascii() and not any(mark in url for mark in "@;?[") else redact_url(url)


def _where(text: str) -> Callable[[int], int]:
    """Where each character of ``text`` squeezed is in ``text``."""
    parts = re.split(_IGNORABLE, text)
    if len(parts) == 1:
        return lambda at: at
    # where each kept piece starts in ``text``
    starts = [0, *list(accumulate(map(len, parts)))[1::2]]
    offsets = list(accumulate(map(len, parts[0::2]), initial=0))  # ... and in the squeezed text

    def where(at: int) -> int:
        piece = bisect_right(offsets, at) - 1
        return starts[piece] + at - offsets[piece]

    return where


# the _GRAM characters at every _STEP-th index
_PROBES = f"(?s)(.{{{_GRAM}}}).{{0,{_STEP - _GRAM}}}"


def _spans(text: str, secrets: Secrets | None) -> list[tuple[int, int]]:
    """Where registered secrets stand as tokens in ``text`` (across line breaks, folding, wrapping
    spaces and format characters; hex ones in any case): spans of ``text``, merged, in order. Linear
    in ``text``: the pieces every _STEP characters are looked up at once, and only the places a
    piece of a secret is found are checked."""
    if secrets is None or not secrets.heads or len(text) < MIN_SECRET_LENGTH:
        return []
    squeezed = _squeeze(text)
    matched = _found(squeezed, _fold(squeezed), secrets)
    if not matched:
        return []
    where = _where(text)
    return _tokens(text, {(where(start), where(end - 1) + 1) for start, end in matched})


def _found(squeezed: str, low: str, secrets: Secrets) -> set[tuple[int, int]]:
    """Where secrets stand in ``squeezed`` (``low``: folded): checked only where a probe is a piece
    of some secret's head."""
    probes = re.findall(_PROBES, low)
    chosen = set(probes).intersection(secrets.grams)
    matched: set[tuple[int, int]] = set()
    for at in [k * _STEP for k, piece in enumerate(probes) if piece in chosen]:
        for offset in secrets.grams.get(probes[at // _STEP], ()):
            matched.update(_starting(squeezed, low, at - offset, secrets))
    return matched


def _starting(squeezed: str, low: str, start: int, secrets: Secrets) -> Iterator[tuple[int, int]]:
    """The spans of the secrets that start at ``start``."""
    lengths = secrets.heads.get(low[start : start + MIN_SECRET_LENGTH]) if start >= 0 else None
    for length, (exact, folded) in list(lengths.items()) if lengths else ():
        end = start + length
        if end <= len(low) and (squeezed[start:end] in exact or low[start:end] in folded):
            yield start, end


def _tokens(text: str, found: set[tuple[int, int]]) -> list[tuple[int, int]]:
    """The spans of ``text`` found that are tokens, merged, in order."""
    starts, ends = {a for a, _ in found}, {b for _, b in found}
    merged: list[tuple[int, int]] = []
    for start, end in sorted(found):
        # A token: not part of a longer word (a letter or digit on both sides of an edge), unless
        # the word is secrets back to back.
        if (start not in ends and _glued(text, start)) or (end not in starts and _glued(text, end)):
            continue
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    return merged


def _glued(text: str, at: int) -> bool:
    """Whether ``at`` falls inside a word: a letter or digit on both sides."""
    return 0 < at < len(text) and text[at - 1].isalnum() and text[at].isalnum()


def _remove_secrets(text: str, secrets: Secrets | None) -> tuple[str, bool]:
    """``text`` with every secret replaced, also those a replacement makes up, and whether there
    was any.
    """
    removed = False
    for _ in range(16):
        spans = _spans(text, secrets)
        if not spans:
            break
        starts, ends = zip(*spans, strict=True)
        text = REDACTED.join(
            text[a:b] for a, b in zip((0, *ends), (*starts, len(text)), strict=True)
        )
        removed = True
    return text, removed


# A text a secret may hide in behind escapes: percent-encoding, HTML/XML entities, JSON string
# escapes (and the \xNN, \UNNNNNNNN ones ``printable`` writes: a message made printable before it
# reached its sink).
_MAY_BE_ENCODED = re.compile(r"[%&\\]")
_ESCAPE = (
    r"\\(?:u([0-9a-fA-F]{4})|x([0-9a-fA-F]{2})|U(00(?:0[0-9a-fA-F]|10)[0-9a-fA-F]{4})"
    r'|(["\\/bfnrt]))'
)
_JSON_SIMPLE = {
    '"': '"',
    "\\": "\\",
    "/": "/",
    "b": "\b",
    "f": "\f",
    "n": "\n",
    "r": "\r",
    "t": "\t",
}


def _unescape(text: str) -> str:
    def one(m: re.Match[str]) -> str:
        code = m.group(1) or m.group(2) or m.group(3)
        return chr(int(code, 16)) if code else _JSON_SIMPLE[m.group(4)]

    decoded = re.sub(_ESCAPE, one, text)
    # "\\ud83d\\ude00" is one character; lone halves stay (printable escapes them)
    if re.search(_SURROGATES, decoded):
        decoded = decoded.encode("utf-16", "surrogatepass").decode("utf-16", "surrogatepass")
    return decoded


def _html_unescape(text: str) -> str:
    import html  # (only for a text that may hide a secret encoded)

    return html.unescape(text)


_DECODERS: tuple[Callable[[str], str], ...] = (_html_unescape, _unescape, unquote) * 2


def _redact(text: str, secrets: Secrets | None, *, multiline: bool) -> str:
    # Matched first in the raw text: a line break, a fold or a format character inside a secret is
    # still there.
    text, _ = _remove_secrets(text, secrets)
    text = printable(text, multiline=multiline)
    if _MAY_BE_ENCODED.search(text) and secrets is not None and secrets.heads:
        # A form no list holds (a numeric entity, mixed-case hex, a JSON escape in HTML): if a
        # secret shows only in the decoded text, keep that, redacted; decode on past a find, as a
        # second may hide one layer deeper.
        probe, shown = text, None
        for decode in _DECODERS:
            step = decode(probe)
            if step == probe:
                continue
            probe, removed = _remove_secrets(step, secrets)
            if removed:
                shown = probe
        if shown is not None:
            # decoding may have made control characters ("%1b")
            text = printable(shown, multiline=multiline)
    text = _redact_targets(_redact_urls(text))
    text = _HUB_TOKEN_RE.sub("hf_" + REDACTED, text)
    text = _BEARER_RE.sub(lambda m: m.group(1) + REDACTED, text)
    text = _AUTHORIZATION_RE.sub(lambda m: m.group(1) + REDACTED, text)
    text = _redact_params(text)
    # a URL rewrite may have joined pieces into a secret again
    text, _ = _remove_secrets(text, secrets)
    return text


def hide_cut_secret(text: str, secrets: Secrets | None) -> str:
    """``text`` cut short (a body read up to a limit) with the start of a secret the cut split
    replaced too (when at least MIN_SECRET_LENGTH characters of it are left: fewer cannot be told
    from words)."""
    if secrets is None or not secrets.heads:
        return text
    skeleton = _squeeze(text)
    low, where = _fold(skeleton), _where(text)
    for start in range(max(0, len(low) - secrets.longest), len(low) - MIN_SECRET_LENGTH + 1):
        lengths = secrets.heads.get(low[start : start + MIN_SECRET_LENGTH])
        if not lengths or not _begins(skeleton[start:], low[start:], lengths):
            continue
        at = where(start)
        if not _glued(text, at):
            return text[:at] + REDACTED
    return text


def _begins(tail: str, tail_low: str, lengths: dict[int, tuple[set[str], set[str]]]) -> bool:
    """Whether ``tail`` (``tail_low``: folded) is how one of these secrets begins."""
    for exact, folded in list(lengths.values()):
        if any(f.startswith(tail) for f in tuple(exact)):
            return True
        if any(f.startswith(tail_low) for f in tuple(folded)):
            return True
    return False


def redact_text(text: str, *, secrets: Secrets | None = None) -> str:
    """Free text from outside (lines kept): :func:`safe_text` with ``multiline``."""
    return safe_text(text, multiline=True, secrets=secrets)


# Lone surrogates (from bytes decoded with "surrogateescape") cannot be encoded as UTF-8 by any
# sink.
_SURROGATES = "[\ud800-\udfff]"
_NEWLINES = "[\t\n]"
# The characters a line said at a sink keeps (after redaction: no secret is cut in two)
LINE_LIMIT = 4000


def printable(text: str, *, limit: int | None = None, multiline: bool = False) -> str:
    """Control and invisible characters escaped, tabs and newlines spaces unless ``multiline``,
    cut to ``limit``.
    """
    if text.isprintable():  # (none of them: the common case, answered in C)
        return _cut(text, limit)
    cleaned = re.sub(
        _UNPRINTABLE, lambda m: m.group(0).encode("unicode_escape").decode("ascii"), text
    )
    cleaned = re.sub(_SURROGATES, lambda m: f"\\u{ord(m.group(0)):04x}", cleaned)
    if not multiline:
        cleaned = re.sub(_NEWLINES, " ", cleaned)
    return _cut(cleaned, limit)


def _cut(text: str, limit: int | None) -> str:
    return text[:limit] + "…" if limit is not None and len(text) > limit else text


def unshown(record: object) -> str:
    """The ``__repr__`` of a record that may hold a secret (a token, headers, a signed URL): its
    type alone, as an object's own repr says it, never its fields (a traceback, a log's ``%r``)."""
    return f"<{type(record).__module__}.{type(record).__qualname__}>"


def safe_text(
    text: str, *, limit: int | None = None, multiline: bool = False, secrets: Secrets | None = None
) -> str:
    """The one redaction, for text from outside (server replies, URLs, headers, error messages, log
    lines) at every sink: the run's ``secrets`` out as tokens, however quoted or reflowed, then
    control characters escaped, URLs' credentials and token-shaped values out, then cut (a secret is
    never half-shown): to ``limit``, and each line to LINE_LIMIT."""
    shown = _redact(text, secrets, multiline=multiline)
    if len(shown) > LINE_LIMIT:  # (a server's URL or words of any length: a 100 KB Location)
        shown = "\n".join(_cut(line, LINE_LIMIT) for line in shown.split("\n"))
    return _cut(shown, limit)


def shown_data(text: str) -> str:
    """Data a command exists to print (a path, a name, a hash, a URL it was given) as a line shows
    it: never rewritten by the registry; only its URLs' credentials are taken out, and control
    characters escaped."""
    return printable(_redact_urls(text))


# The keys of a JSON document (or event) whose strings are text from outside or about it — what went
# wrong, what a server said, what to do — and so pass :func:`safe_text`, everything under them
# included. Every other string is data a command exists to print, built from the user's inputs and
# the disk (names, paths, sizes, hashes, the URLs it was given): :func:`shown_data`, never rewritten
# by a run's secrets. A field that carries a server's words must have one of these names.
TEXT_KEYS = frozenset(
    {"error", "message", "hint", "warning", "warnings", "lock_error", "server_text"}
)


def safe_doc(doc: Any, *, secrets: Secrets | None = None, text: bool = False) -> Any:
    """A JSON document (dicts, lists, strings, numbers) as a sink may write it: the strings under
    ``TEXT_KEYS`` (all of them with ``text``) through :func:`safe_text`, the others, data, through
    :func:`shown_data`."""
    if isinstance(doc, str | PurePath):
        return safe_text(str(doc), secrets=secrets) if text else shown_data(str(doc))
    if isinstance(doc, Mapping):
        return {
            key: safe_doc(value, secrets=secrets, text=text or key in TEXT_KEYS)
            for key, value in doc.items()
        }
    if isinstance(doc, list | tuple):
        if hasattr(doc, "to_json"):  # a record (a file's outcome): its to_json() is the document
            raise TypeError(f"{type(doc).__name__} is not a JSON document: write its to_json()")
        return [safe_doc(value, secrets=secrets, text=text) for value in doc]
    return doc


def record_text(text: str | None) -> str | None:
    """A source URL, an ETag, a commit or a revision as a record keeps it: data
    (:func:`shown_data`), compared with the same file's next run (a registered word rewritten in it
    would make the same file another one)."""
    return None if text is None else shown_data(text)
