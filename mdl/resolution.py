"""What ``resolve`` reports: the models resolved upstream and the failures. Apart from mdl.report,
whose outcomes every get and pull makes: most runs never make one."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mdl.errors import worst_exit_code
from mdl.report import FileOutcome  # (at run time: a public type's annotations resolve)


@dataclass(frozen=True)
class Resolution:
    """Models resolved upstream (concrete files, URLs, sizes, sha256, commit), and what could not
    be.
    """

    models: tuple[dict[str, Any], ...]
    failures: tuple[FileOutcome, ...]

    @property
    def exit_code(self) -> int:
        return worst_exit_code([f.exit_code for f in self.failures])

    @property
    def ok(self) -> bool:
        return not self.failures

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "models": list(self.models),
            "errors": [f.to_json() for f in self.failures],
        }
