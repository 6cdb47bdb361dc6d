"""User templates (mirror URLs): literal text and ``{known_name}`` placeholders, filled by plain replacement; never
``str.format``, whose format specs a user could abuse (``{path:>99999999}`` builds a 100 MB string)."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from mdl.errors import UsageError

_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")


def parse_template(template: str, *, fields: Sequence[str], where: str) -> tuple[str | Placeholder, ...]:
    """Literal text and ``{name}`` placeholders of ``fields``; a format spec, conversion or stray brace is refused."""
    parts: list[str | Placeholder] = []
    at = 0
    for match in _PLACEHOLDER.finditer(template):
        parts.append(_literal(template[at : match.start()], template, where=where))
        name = match.group(1)
        bare = re.split(r"[:!]", name, maxsplit=1)[0]
        if name != bare and bare in fields:
            raise UsageError(
                f"{where}: {{{bare}}} takes no format spec or conversion in {_cut(template)}; write {{{bare}}}"
            )
        if name not in fields:
            known = ", ".join("{" + f + "}" for f in fields)
            shown = name if len(name) <= 40 else name[:40] + "…"
            raise UsageError(f"{where}: unknown placeholder {{{shown}}} in {_cut(template)} (known: {known})")
        parts.append(Placeholder(name))
        at = match.end()
    parts.append(_literal(template[at:], template, where=where))
    return tuple(part for part in parts if part != "")


def fill_template(parts: Sequence[str | Placeholder], values: Mapping[str, str]) -> str:
    """A parsed template with each placeholder replaced by its value, as plain text."""
    return "".join(values[part.name] if isinstance(part, Placeholder) else part for part in parts)


@dataclass(frozen=True)
class Placeholder:  # {name} in a template
    name: str


def _literal(text: str, template: str, *, where: str) -> str:
    if "{" in text or "}" in text:
        raise UsageError(f"{where}: a lone '{{' or '}}' in {_cut(template)}; placeholders are {{name}} alone")
    return text


def _cut(template: str) -> str:
    """A template as an error names it: quoted, and cut when it is long (a 20 MB template is not echoed)."""
    return repr(template if len(template) <= 200 else template[:200] + "…")
