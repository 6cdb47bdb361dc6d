"""What a pull, verify or get did: each pulled model's folder (or fetched file) for stdout, and one summary line:
``pulled 2 models (17 files: 16 downloaded, 1 skipped); 1 model failed: badname (not found); 1.6 MiB in 3.2s``."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

from mdl.report import FileOutcome, folder
from mdl.units import human_duration, human_size

# Short reasons for the summary line, by error kind (mdl/errors.py); the error line above says it in full.
_KIND_WORDS = {
    "usage": "refused",
    "catalog": "catalog error",
    "unsafe_path": "unsafe path",
    "job_output": "bad job output",
    "auth": "not authorised",
    "not_found": "not found",
    "network": "network error",
    "hub_reply": "bad reply from the Hub",
    "token_leak": "token refused",
    "integrity": "integrity error",
    "filesystem": "local filesystem error",
    "no_space": "no space",
    "lock_timeout": "lock timeout",
    "interrupted": "interrupted",
    "internal": "internal error",
}
_MAX_NAMED = 5  # problem models named on the summary line; the rest are counted


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _units(outcomes: Iterable[FileOutcome]) -> dict[str, list[FileOutcome]]:
    """Outcomes by model, in the report's order; a ``get`` file (no model) is a unit of its own."""
    units: dict[str, list[FileOutcome]] = {}
    for index, f in enumerate(outcomes):
        units.setdefault(f.model or f"\0{index}", []).append(f)
    return units


def _ok(unit: Sequence[FileOutcome]) -> bool:
    return all(f.exit_code == 0 and f.action != "failed" for f in unit)


def _files_part(files: Sequence[FileOutcome]) -> str:
    """``17 files: 16 downloaded, 1 skipped``: each action in people's words, most first."""
    ranked = sorted(Counter(f.shown_action for f in files).items(), key=lambda item: (-item[1], item[0]))
    return f"{_plural(len(files), 'file')}: {', '.join(f'{n} {word}' for word, n in ranked)}"


def _problem_word(unit: Sequence[FileOutcome]) -> str:
    """What went wrong with a unit, in one word: failed, or another action with a non-zero code (missing)."""
    return "failed" if any(f.action == "failed" for f in unit) else next(f.shown_action for f in unit if f.exit_code)


def _problem_detail(unit: Sequence[FileOutcome]) -> str:
    """``badname (not found)``, failed as a whole (model or file), or ``badsha (6 files: 5 downloaded, 1 failed)``."""
    name = unit[0].model or unit[0].path or "?"
    files = [f for f in unit if f.path is not None]
    if unit[0].model and files:
        return f"{name} ({_files_part(files)})"
    reasons = dict.fromkeys(_KIND_WORDS.get(f.kind or "", "") for f in unit if f.action == "failed")
    said = ", ".join(r for r in reasons if r)
    return f"{name} ({said})" if said else name


def says_it_all(outcomes: Sequence[FileOutcome]) -> bool:
    """Whether the report is one failure alone: its error line says it all (one message, as curl prints)."""
    return len(outcomes) == 1 and not _ok(outcomes)


def summary_line(outcomes: Sequence[FileOutcome], *, verb: str, seconds: float) -> str:
    """The one summary line of a pull, verify or get."""
    units = list(_units(outcomes).values())
    one_off = all(not f.model for f in outcomes) and bool(outcomes)
    noun = "file" if one_off else "model"
    done = [u for u in units if _ok(u)]
    if not units:
        text = f"{verb} 0 models: nothing to do"
    elif one_off:
        flat = [f for u in done for f in u]
        text = f"{verb} {_files_part(flat)}" if flat else f"{verb} 0 files"
    else:
        files = [f for u in done for f in u if f.path is not None]
        text = f"{verb} {_plural(len(done), noun)}" + (f" ({_files_part(files)})" if files else "")
    problems: dict[str, list[Sequence[FileOutcome]]] = {}
    for unit in [u for u in units if not _ok(u)]:
        problems.setdefault(_problem_word(unit), []).append(unit)
    for word, bad in problems.items():
        named = ", ".join(_problem_detail(u) for u in bad[:_MAX_NAMED])
        more = f" and {len(bad) - _MAX_NAMED} more" if len(bad) > _MAX_NAMED else ""
        text += f"; {_plural(len(bad), noun)} {word}: {named}{more}"
    fetched = sum(f.fetched for f in outcomes)
    if fetched:
        text += f"; {human_size(fetched)} in {human_duration(seconds)}"
    return text


def model_folders(outcomes: Sequence[FileOutcome]) -> list[str]:
    """The folder of each model that is all here (each of its folders if several), in order: ``pull``'s stdout."""
    folders: list[str] = []
    for unit in _units(outcomes).values():
        files = [f for f in unit if f.path is not None and f.dest is not None]
        if unit[0].model and files and _ok(unit):
            folders.extend(str(folder(f) or Path(str(f.dest)).parent) for f in files)
    return list(dict.fromkeys(folders))


def fetched_paths(outcomes: Sequence[FileOutcome]) -> list[str]:
    """Each file ``get`` has (fetched, or skipped as the same file), in order: its stdout."""
    return [f.dest for f in outcomes if f.dest is not None and f.exit_code == 0 and f.action != "failed"]
