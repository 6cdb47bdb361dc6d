"""The files a pull of a lock found beside the version it installed (a run report's ``extra``).
Apart from mdl.report, whose outcomes every get and pull makes: most runs find none."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class ExtraFile:
    """A file in a model's folder that is not of the version a pull of a lock installed:
    ``removed`` (mdl installed it for another version), or ``kept`` and why (mdl did not install
    it, or it changed since)."""

    model: str
    path: str  # in the model's folder
    dest: str
    size: int | None
    action: str  # "removed" | "kept" (a dry run: what would be)
    reason: str

    def to_json(self) -> dict[str, Any]:  # the fields in order
        return asdict(self)
