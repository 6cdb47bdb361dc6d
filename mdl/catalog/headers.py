"""Request headers a user adds to direct URLs (the catalog's ``headers``, ``mdl get -H 'Name:
value'``): one rule for names and values, the ``-H`` line parser, and which values are secrets."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

from mdl.errors import UsageError
from mdl.redact import Secrets, is_secret_param, printable

if TYPE_CHECKING:
    from mdl.catalog.specs import Catalog

# ``${NAME}`` in a header value, expanded from the environment at request time (see expand_headers).
# (a pattern: compiled the first time a header needs it, not by every start that loads this module)
VAR_RE = r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}"
# RFC 9110 §5.6.2: a field name is a token.
HEADER_NAME_RE = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
# What mdl sets itself to fetch ranges and check what it got: another value would break resume and
# verification.
MANAGED_HEADERS = frozenset(
    {"range", "if-range", "accept-encoding", "host", "content-length", "transfer-encoding"}
)
# Values that are credentials whatever a catalog or a command line says of them (beside
# is_secret_param's names).
_SECRET_HEADERS = frozenset({"cookie", "proxy-authorization"})
# a Hub token no header can carry (HF_TOKEN, the stored token file): usually a paste gone wrong
PASTE_AGAIN = "copy the token again from https://huggingface.co/settings/tokens"


def header_name_problem(name: str) -> str | None:
    """Why ``name`` cannot be a header mdl sends for a user, or None."""
    if not re.fullmatch(HEADER_NAME_RE, name):
        return "is not a valid HTTP header name"
    if name.lower() in MANAGED_HEADERS:
        return "is a header mdl sets itself (ranges, resume, verification)"
    return None


def header_value_problem(value: str) -> str | None:
    """Why ``value`` cannot be sent as a header value, or None (never quoting it: it is usually a
    secret). The rule the HTTP library applies when it sends (h11's field-value), checked where the
    value is given: a value it would refuse at send time is bad input (exit 2) before any request,
    never a failed request."""
    # A CR or LF would let the value inject extra headers (RFC 9110 §5.5).
    if any((ord(ch) < 0x20 and ch != "\t") or ord(ch) == 0x7F for ch in value):
        return "must not contain line breaks or control characters"
    # HTTP/1.1 sends header values as ASCII; anything else would fail at send time (RFC 9110 §5.5:
    # obs-text).
    if not value.isascii():
        return "must be ASCII (percent- or base64-encode other characters)"
    # RFC 9110 §5.5: a field value neither begins nor ends with a blank (h11 refuses one that does).
    if value != value.strip(" \t"):
        return "must not begin or end with a space or tab"
    return None


def is_secret_header(name: str) -> bool:
    """Whether a header's value is a credential (Authorization, X-Api-Key, Cookie, ...): never
    shown.
    """
    return is_secret_param(name) or name.lower() in _SECRET_HEADERS


def parse_header(text: str, *, flag: str = "--header") -> tuple[str, str]:
    """A ``Name: value`` line as curl -H takes it → (name, value), the value's surrounding blanks
    dropped (RFC 9110 §5.5 OWS); UsageError (exit 2) naming the header, never showing its value."""
    name, colon, value = text.partition(":")
    if not colon:
        # Show it only when it is a bare name: anything else may be a token pasted without its name.
        shown = f" {text!r}" if re.fullmatch(HEADER_NAME_RE, text) else ""
        raise UsageError(
            f"{flag}{shown}: expected 'Name: value' (no ':' found)",
            hint="write 'Name: value', e.g. -H 'X-Api-Key: ...'",
        )
    name, value = name.strip(), value.strip(" \t")
    if not name:
        raise UsageError(
            f"{flag}: the header has no name before its ':'",
            hint="write 'Name: value', e.g. -H 'X-Api-Key: ...'",
        )
    return check_header(name, value, where=f"{flag} {printable(name, limit=80)!r}")


def check_header(
    name: str, value: str, *, where: str, secrets: Secrets | None = None
) -> tuple[str, str]:
    """(name, value) when both may be sent, else UsageError naming ``where``; a credential's value
    is registered in the run's ``secrets`` (as the catalog's headers' are) so that no sink shows it.
    """
    problem = header_name_problem(name)
    if problem is None and not value:
        problem = "has no value (mdl sends only headers with values)"
    if problem is None:
        problem = header_value_problem(value)
        problem = f"has a value that {problem}" if problem else None
    # never "Authorization': …": the redaction would take the next word for its value
    if problem is not None:
        raise UsageError(f"{where} {problem}")
    if is_secret_header(name) and secrets is not None:
        secrets.add(value)
    return name, value


def check_headers(
    pairs: Iterable[tuple[str, str]], *, where: str, secrets: Secrets | None = None
) -> tuple[tuple[str, str], ...]:
    """Each pair held to :func:`check_header` (credentials registered in ``secrets``); a name given
    twice (names are case-insensitive, RFC 9110 §5.1) is refused, as the catalog refuses it."""
    checked: list[tuple[str, str]] = []
    seen: set[str] = set()
    for name, value in pairs:
        shown = f"{where} {printable(name, limit=80)!r}"
        if name.lower() in seen:
            raise UsageError(f"{shown} is given twice (header names are case-insensitive)")
        seen.add(name.lower())
        checked.append(check_header(name, value, where=shown, secrets=secrets))
    return tuple(checked)


def catalog_secrets(catalog: Catalog, environ: Mapping[str, str], secrets: Secrets) -> None:
    """The one place a loaded catalog's secrets are registered, before any is used: its files' and
    mirrors' URLs' credentials, the values its headers take from the environment (whatever the
    variable is called: ``${MY_HEADER}``) and the whole value of those and of any credential-like
    header (Authorization, X-Api-Key, Cookie)."""
    for template in catalog.settings.mirrors:
        secrets.add_url(template)
    for file in (file for model in catalog.models for file in model.files):
        secrets.add_url(file.url or "")
        for name, raw in file.headers:
            found = [environ.get(variable, "") for variable in re.findall(VAR_RE, raw)]
            if found or is_secret_header(name):
                for value in (*found, re.sub(VAR_RE, lambda m: environ.get(m.group(1), ""), raw)):
                    secrets.add(value)
