"""The one ``hf://`` parser: a whole Hub repo or one file in it, for ``mdl get`` and ``mdl add`` alike."""

from __future__ import annotations

import re
from dataclasses import dataclass

from mdl.errors import UsageError
from mdl.paths import safe_relative_path

# hf://[datasets/|spaces/|models/]owner/name[@revision][/path]; refs/pr/N and refs/convert/X may hold slashes.
_HF_URI = re.compile(
    r"^hf://(?:(?P<type>datasets|spaces|models)/)?(?P<repo>[A-Za-z0-9][\w.-]*/[\w.-]+)"
    r"(?:@(?P<rev>refs/(?:pr|convert)/[\w.-]+|[^/]+))?(?:/(?P<path>.+))?$"
)
_REPO_TYPES = {"datasets": "dataset", "spaces": "space", "models": "model", None: "model"}

# The accepted forms, in words. Never "hf://[datasets/|spaces/]…": the redaction at every sink takes a bracket
# after "://" for a URL it cannot parse (or "x@y" for userinfo) and would print REDACTED instead of the help.
HF_URI_FORMS = (
    "hf://owner/name, hf://owner/name@revision or hf://owner/name/path "
    "(hf://datasets/owner/name/... and hf://spaces/owner/name/... for those)"
)


@dataclass(frozen=True)
class HfUri:
    """``hf://`` parsed; ``revision`` None is the default branch, ``path`` None the whole repo."""

    given: str
    repo_type: str
    repo: str
    revision: str | None
    path: str | None


def parse_hf_uri(text: str) -> HfUri:
    """``hf://…`` → HfUri; UsageError naming the accepted forms, or UnsafePathError for an unsafe path."""
    match = _HF_URI.match(text.rstrip("/"))
    if match is None:
        raise UsageError(f"{text}: expected {HF_URI_FORMS}")
    path = match.group("path")
    return HfUri(
        given=text,
        repo_type=_REPO_TYPES[match.group("type")],
        repo=match.group("repo"),
        revision=match.group("rev"),
        path=safe_relative_path(path, where=text) if path is not None else None,
    )
