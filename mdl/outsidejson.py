"""The one reader of JSON mdl did not write in this process (Hub and CAS replies, manifests,
claims, records a co-tenant could write, signatures, archives, job outputs): bounded in size and
nesting before it is parsed, strict (no duplicate keys, no number past float range), and every
failure one ``OutsideJSONError`` naming the source."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable

from mdl.errors import OutsideJSONError

# Deeper than anything mdl reads (a Hub listing or a lock record is 4 deep): the bound is checked
# before parsing, so the parser's recursion never nears Python's limit.
MAX_DEPTH = 64
# Past this an integer a JSON reader takes as a double is not exact (2**53): no count reaches it
EXACT_INTS = 2**53

_STRING = rb'"[^"]*"'  # (patterns: compiled the first time a document needs them)
_PAIR = rb"[\[{][\]}]"
_NOT_STRUCTURE = bytes(b for b in range(256) if b not in b'"[]{}')

Pairs = Callable[[list[tuple[str, object]]], object]


def read_json(
    data: bytes | bytearray | str, *, source: str, limit: int, pairs: Pairs | None = None
) -> object:
    """``data`` as JSON, or ``OutsideJSONError`` naming ``source`` when it is over ``limit``
    bytes, nested deeper than ``MAX_DEPTH``, not UTF-8 JSON, or has a key twice or a number out of
    range. ``pairs`` makes an object of its checked pairs (a ``dict`` by default)."""
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else bytes(data)
    if len(raw) > limit:
        raise OutsideJSONError(f"{source}: more than {limit} bytes of JSON")
    if _too_deep(raw):
        raise OutsideJSONError(
            f"{source}: not usable JSON (nested too deeply: more than {MAX_DEPTH} levels)"
        )
    make = pairs or dict

    def checked(found: list[tuple[str, object]]) -> object:
        if len({key for key, _ in found}) != len(found):
            raise ValueError("a key given twice in one object")
        return make(found)

    try:
        return json.loads(
            raw.decode("utf-8"), object_pairs_hook=checked, parse_float=_finite, parse_int=_in_range
        )
    except json.JSONDecodeError as exc:
        where = f"line {exc.lineno}, column {exc.colno}: {exc.msg}"
        raise OutsideJSONError(f"{source}: not valid JSON ({where})") from None
    # UnicodeDecodeError, a key twice, too many digits, out of range; recursion cannot happen
    # (bounded above) but would be the document's fault too
    except (ValueError, RecursionError) as exc:
        raise OutsideJSONError(f"{source}: not usable JSON ({_said(exc)})") from None


def _too_deep(raw: bytes) -> bool:
    """Whether the parser would descend deeper than ``MAX_DEPTH`` into ``raw``'s brackets, found
    at C speed: escapes and strings dropped, innermost pairs removed once per level, then what no
    pass could close (``[`` x 100,000 is never given to the parser)."""
    shape = raw.replace(b"\\\\", b"").replace(b'\\"', b"").translate(None, _NOT_STRUCTURE)
    shape = re.sub(_STRING, b"", shape.replace(b'""', b"")).replace(b'"', b"")
    for _ in range(MAX_DEPTH):
        shape, removed = re.subn(_PAIR, b"", shape)
        if not removed:
            break
    else:
        if re.search(_PAIR, shape):
            return True
    return len(shape.translate(None, b"]}")) > MAX_DEPTH


def _in_range(text: str) -> int:
    # past float range: no size, step, count or metric is this large (its digits counted first:
    # Python refuses to convert 4,300 of them, in words of its own)
    if len(text) > 310 or abs(value := int(text)) >= 1 << 1024:
        raise ValueError(f"number {text[:20]}... is out of range")
    return value


def _finite(text: str) -> float:
    if not math.isfinite(value := float(text)):
        raise ValueError(f"number {text[:40]} is out of range")
    return value


def _said(exc: BaseException) -> str:
    if isinstance(exc, RecursionError):
        return "nested too deeply"
    return str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
