"""The Hub's ``RateLimit``/``RateLimit-Policy`` headers read: untrusted, never raising.

The headers are draft-ietf-httpapi-ratelimit-headers: Lists (RFC 8941) of items naming a policy,
with ``r`` (requests remaining) and ``t`` (seconds until the window resets) on ``RateLimit`` and
``q`` (quota) and ``w`` (window) on ``RateLimit-Policy``. The Hub writes its policy as
``"fixed window";"resolvers";q=1000;w=300`` -- a second string where RFC 8941 wants a parameter, so
a strict structured-field parser (http-sf) throws the whole field away. This small hand parser reads
the subset the draft uses, that quirk included, and drops only the member it cannot read.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass

log = logging.getLogger("mdl.http")

HEADER_LIMIT = 4096  # characters of a header read at most: past it, the header is ignored
MEMBER_LIMIT = 64  # members of one list read at most

_KEY = r"[a-z*][a-z0-9_\-.*]{0,63}"
# an sf-token (RFC 8941 §3.3.4)
_SYMBOL = r"[A-Za-z*][!#$%&'*+\-.^_`|~:/0-9A-Za-z]{0,255}"
_INTEGER = r"-?[0-9]{1,15}"
_DECIMAL = r"-?[0-9]{1,12}\.[0-9]{1,3}"
_STRING = r'"((?:[ !#-\[\]-~]|\\["\\]){0,256})"'
_OTHER = r"\?[01]|:[A-Za-z0-9+/=]{0,1024}:"  # booleans, byte sequences: not used


@dataclass(frozen=True)
class Limit:
    """One ``RateLimit`` item: its policy's name, remaining requests, seconds to the reset, and the
    quota and window its ``RateLimit-Policy`` item gives (None: not said, or not a number)."""

    name: str
    remaining: int | None = None
    reset: float | None = None
    quota: int | None = None
    window: int | None = None


@dataclass(frozen=True)
class RateLimits:
    """What one reply's rate-limit headers say."""

    limits: tuple[Limit, ...]

    @property
    def wait(self) -> float | None:
        """How long a refusal asks to wait: the longest reset of the policies used up (none: of
        all); None when no item names a reset."""
        resets = [x.reset for x in self.limits if x.reset is not None and x.remaining == 0]
        resets = resets or [x.reset for x in self.limits if x.reset is not None]
        return max(resets) if resets else None

    @property
    def tightest(self) -> Limit | None:
        """The policy with the fewest requests left (ties: the later reset)."""
        known = [x for x in self.limits if x.remaining is not None and x.reset is not None]
        return min(known, key=lambda x: (x.remaining, -(x.reset or 0.0)), default=None)


def _bare(text: str) -> tuple[str, object] | None:
    """A bare item (kind, value): a string, token, integer, decimal, boolean or byte sequence."""
    if match := re.fullmatch(_STRING, text):
        return "string", re.sub(r"\\(.)", r"\1", match.group(1))
    if re.fullmatch(_DECIMAL, text):
        return "number", float(text)
    if re.fullmatch(_INTEGER, text):
        return "integer", int(text)
    if re.fullmatch(_SYMBOL, text):
        return "token", text
    return ("other", text) if re.fullmatch(_OTHER, text) else None


def _split(text: str, sep: str) -> list[str] | None:
    """``text`` split at ``sep`` outside quoted strings (None: a string left open)."""
    part = rf'(?:"(?:[^"\\]|\\.)*"|[^"{sep}])*'
    if re.fullmatch(rf"{part}(?:{sep}{part})*", text, re.DOTALL) is None:
        return None
    return [m[0] for m in re.finditer(rf"(?:^|(?<={sep})){part}", text, re.DOTALL)]


def _member(text: str) -> tuple[str, dict[str, object]] | None:
    """One list member: its name and parameters; None when it cannot be read. A lone string among
    the parameters renames the member (the Hub's ``"fixed window";"resolvers";q=…``)."""
    if not (segments := _split(text.strip(" \t"), ";")):
        return None
    if (head := _bare(segments[0].strip(" \t"))) is None or head[0] not in ("string", "token"):
        return None
    name, params = str(head[1]), {}
    for segment in segments[1:]:
        segment = segment.strip(" \t")
        key, eq, value = segment.partition("=")
        if eq and re.fullmatch(_KEY, key):
            if (item := _bare(value)) is None:
                return None
            params[key] = item[1] if item[0] in ("integer", "number") else None
        elif re.fullmatch(_KEY, segment):
            params[segment] = None  # a flag: true, nothing mdl reads
        elif (item := _bare(segment)) is not None and item[0] == "string":
            name = str(item[1])
        else:
            return None
    return name, params


def _members(value: str | None) -> list[tuple[str, dict[str, object]]]:
    if not value or len(value) > HEADER_LIMIT:
        return []
    parts = _split(value, ",") or []
    found = (_member(part) for part in parts[:MEMBER_LIMIT])
    return [m for m in found if m is not None]


def _count(value: object) -> int | None:
    return value if isinstance(value, int) and value >= 0 else None


def _span(value: object) -> float | None:
    if isinstance(value, int | float) and math.isfinite(value) and value >= 0:
        return float(value)
    return None


def read_rate_limits(ratelimit: str | None, policy: str | None = None) -> RateLimits | None:
    """What ``RateLimit`` and ``RateLimit-Policy`` say (None: no readable item); never raises,
    whatever the server sent."""
    try:
        policies = dict(_members(policy))
        limits = []
        for name, params in _members(ratelimit):
            quota = policies.get(name, {})
            limits.append(
                Limit(
                    name,
                    remaining=_count(params.get("r")),
                    reset=_span(params.get("t")),
                    quota=_count(quota.get("q")),
                    window=_count(quota.get("w")),
                )
            )
    except (ValueError, OverflowError, RecursionError):  # the parser's bug, never the run's end
        log.debug("unreadable RateLimit header ignored", exc_info=True)
        return None
    return RateLimits(tuple(limits)) if limits else None


def rate_limits_of(headers: Mapping[str, str]) -> RateLimits | None:
    return read_rate_limits(headers.get("RateLimit"), headers.get("RateLimit-Policy"))
