"""The end of a pull, get, verify or publish, shared: the JSON document or the command's data on
stdout, then each warning and failure once and one summary line on stderr."""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING

from mdl.cli.render.console import run_summary
from mdl.cli.stdout import unread_if_failing
from mdl.errors import kind_words
from mdl.units import first_few, human_duration, human_size, plural

if TYPE_CHECKING:
    from mdl.cli.run import Run
    from mdl.report import FileOutcome, RunReport

log = logging.getLogger("mdl.cli")


def render_report(
    run: Run, report: RunReport, *, verb: str, data: Callable[[], None] | None = None
) -> int:
    """``report`` as the JSON document, a dry run's plan, or the command's own ``data`` on stdout;
    each warning and failure once, and the summary line saying what was ``verb`` (``pulled 2
    models``) on stderr; its exit code."""
    _show_data(run, report, data)
    _warn_once(run, report)
    _say_extra(run, report)
    _tell_failures(run, report)
    _sum_up(run, report, verb=verb)
    return int(report.exit_code)


# a dry run's plan: each file's field and its column's header
_PLAN_COLUMNS = [
    ("action", "ACTION"),
    ("model", "MODEL"),
    ("path", "PATH"),
    ("size", "SIZE"),
    ("reason", "WHY"),
]
_MAX_NAMED = 5  # problem models named on the summary line; the rest are counted


def _show_data(run: Run, report: RunReport, data: Callable[[], None] | None) -> None:
    """stdout: the JSON document, a dry run's plan as a table, or the command's own data."""
    with unread_if_failing(failing=bool(report.exit_code)):
        if run.json:
            run.emit(report.to_json())
        elif report.dry_run:
            rows = [{**f.to_json(), "size": human_size(f.size)} for f in report.files]
            run.table(rows, _PLAN_COLUMNS)
        elif data is not None:
            data()


def _warn_once(run: Run, report: RunReport) -> None:
    """Each warning once per model (a kept model's files share its warning), in the order they
    happened."""
    for warning in dict.fromkeys(w for f in report.files for w in f.warnings):
        run.console.warn(warning)


def _say_extra(run: Run, report: RunReport) -> None:
    """The files a pull of a lock took out of a model's folder (not of the version the lock
    names), and those it left there (a warning each: a loader reading the folder reads them)."""
    removed = "would remove" if report.dry_run else "removed"
    for extra in report.extra:
        if extra.action == "removed":
            line = f"{extra.model}: {removed} {extra.path}: {extra.reason}"
            log.info("%s", line)
            run.console.info(line)
        else:
            run.console.warn(f"{extra.model}/{extra.path}: left in its folder: {extra.reason}")


def _tell_failures(run: Run, report: RunReport) -> None:
    """The one place a failure is shown (progress displays stay silent): a refusing Hub repo once,
    not once a file; to events each file's own."""
    # (with its paths and redaction: ~7 ms that --help and list need not pay)
    from mdl.report import once_per_repo

    failures = (
        once_per_repo(report.files)
        if run.events is None
        else [(f, 0) for f in report.files if f.failing]
    )
    for f, more in failures:
        if more:
            error = f.error or f.label + ": failed"
            f = f._replace(error=f"{error} (and {plural(more, 'more file')} of {f.hub_repo})")
        run.file_error(f)


def _sum_up(run: Run, report: RunReport, *, verb: str) -> None:
    """The run's counts for the ``end`` event, and the summary line in the log and on stderr: over
    the report's own time when its workflow measured it (serve's pull), else the command's."""
    seconds = time.monotonic() - run.started if report.seconds is None else report.seconds
    summary = (
        None
        if report.dry_run
        else summary_line(report.files, verb=verb, seconds=seconds, waited=report.waited)
    )
    run.summary = run_summary(report.files, seconds=seconds, waited=report.waited, text=summary)
    if summary is not None:
        log.info("%s", summary)
        # Not for one failure alone (its error line says it all, as curl's one message), nor to
        # events (``end`` has it)
        if (len(report.files) != 1 or ok(report.files)) and run.events is None:
            run.console.info(summary)


def units(outcomes: Iterable[FileOutcome]) -> dict[str, list[FileOutcome]]:
    """Outcomes by model, in the report's order; a ``get`` file (no model) is a unit of its own."""
    found: dict[str, list[FileOutcome]] = {}
    for index, f in enumerate(outcomes):
        found.setdefault(f.model or f"\0{index}", []).append(f)
    return found


def ok(unit: Sequence[FileOutcome]) -> bool:
    """Whether every outcome of ``unit`` (a model's, or one file's) is all right."""
    return all(f.exit_code == 0 and f.action != "failed" for f in unit)


def _files_part(files: Sequence[FileOutcome]) -> str:
    """``17 files: 16 downloaded, 1 skipped``: each action in people's words, most first."""
    ranked = sorted(
        Counter(f.shown_action for f in files).items(), key=lambda item: (-item[1], item[0])
    )
    return f"{plural(len(files), 'file')}: {', '.join(f'{n} {word}' for word, n in ranked)}"


def _problem_detail(unit: Sequence[FileOutcome]) -> str:
    """``badname (not found)``, failed as a whole (model or file), or ``badsha (6 files: 5
    downloaded, 1 failed)``.
    """
    name = unit[0].model or unit[0].path or "?"
    files = [f for f in unit if f.path is not None]
    if unit[0].model and files:
        return f"{name} ({_files_part(files)})"
    # each kind's words are its own (mdl/errors.py)
    kinds = dict.fromkeys(f.kind for f in unit if f.action == "failed" and f.kind)
    said = ", ".join(kind_words(kind) for kind in kinds)
    return f"{name} ({said})" if said else name


def summary_line(
    outcomes: Sequence[FileOutcome], *, verb: str, seconds: float, waited: float = 0.0
) -> str:
    """The one summary line of a pull, verify or get: ``pulled 2 models (17 files: 16 downloaded, 1
    skipped); 1 model failed: badname (not found); 1.6 MiB in 3.2s``. ``seconds``: the run's;
    ``waited``: the run's wall time waiting on other machines (RunReport.waited), never a sum of
    its files' waits."""
    grouped = list(units(outcomes).values())
    one_off = all(not f.model for f in outcomes) and bool(outcomes)
    done = _done_part(grouped, verb=verb, one_off=one_off)
    problems = _problems_part(grouped, noun="file" if one_off else "model")
    fill = _fill_part(outcomes, waited=waited) + _swarm_part(outcomes)
    return done + problems + fill + _bytes_part(outcomes, seconds=seconds)


def _swarm_part(outcomes: Sequence[FileOutcome]) -> str:
    """``; swarm: 12 parts from the origin, 40 from the others (16.0 MiB duplicated); 2 files could
    not swarm (m/a.bin, m/b.bin: the lock has no part hashes for it (run `mdl lock` …))``: where a
    swarm's parts came from, and the files that could not swarm, once per run."""
    here, peers = sum(f.origin_parts for f in outcomes), sum(f.peer_parts for f in outcomes)
    twice = sum(f.duplicated for f in outcomes)
    said = ""
    if here or peers:
        said = f"; swarm: {plural(here, 'part')} from the origin, {peers} from the others"
        said += f" ({human_size(twice)} duplicated)" if twice else ""
    return said + _unswarmed_part([f for f in outcomes if f.not_swarmed])


def _unswarmed_part(alone: Sequence[FileOutcome]) -> str:
    """``; 2 files could not swarm (m/a.bin, m/b.bin: why)``, once per run."""
    if not alone:
        return ""
    shown = ", ".join(f.label for f in alone[:3]) + (", …" if len(alone) > 3 else "")
    why = "; ".join(sorted({f.not_swarmed or "" for f in alone}))
    return f"; {plural(len(alone), 'file')} could not swarm ({shown}: {why})"


def _fill_part(outcomes: Sequence[FileOutcome], *, waited: float) -> str:
    """``; mirror: 1 filled (3.20 GiB published beside the fetch), 2 streamed (4.10 GiB), 1 from
    origin (waited 22s)`` with --fill-mirror."""
    counts = Counter(f.fill for f in outcomes if f.fill)
    if not counts:
        return ""
    sizes = {"filled": " published beside the fetch", "streamed": ""}
    said = ", ".join(
        f"{n} {word}"
        + (
            f" ({human_size(b)}{sizes[word]})"
            if word in sizes and (b := _fill_bytes(outcomes, word))
            else ""
        )
        for word, n in counts.items()
    )
    return f"; mirror: {said}" + (f" (waited {human_duration(waited)})" if waited else "")


def _fill_bytes(outcomes: Sequence[FileOutcome], word: str) -> int:
    """The bytes a fill's files moved as parts: published (``filled``), or read (``streamed``)."""
    return sum(f.published if word == "filled" else f.streamed for f in outcomes if f.fill == word)


def _done_part(grouped: Sequence[Sequence[FileOutcome]], *, verb: str, one_off: bool) -> str:
    """``pulled 2 models (17 files: 16 downloaded, 1 skipped)``, or a one-off's files alone."""
    done = [u for u in grouped if ok(u)]
    if not grouped:
        return f"{verb} 0 models: nothing to do"
    if one_off:
        flat = [f for u in done for f in u]
        return f"{verb} {_files_part(flat)}" if flat else f"{verb} 0 files"
    files = [f for u in done for f in u if f.path is not None]
    counted = f"{verb} {plural(len(done), 'model')}"
    return f"{counted} ({_files_part(files)})" if files else counted


def _problem_word(unit: Sequence[FileOutcome]) -> str:
    """What went wrong with ``unit``: ``failed``, or another action's word (``missing``; a model
    some of whose files are there and verified: ``partial``, as ``list`` calls it)."""
    if any(f.action == "failed" for f in unit):
        return "failed"
    word = next(f.shown_action for f in unit if f.exit_code)
    some_there = any(not f.exit_code and f.path is not None for f in unit)
    return "partial" if word == "missing" and some_there else word


def _problems_part(grouped: Sequence[Sequence[FileOutcome]], *, noun: str) -> str:
    """``; 1 model failed: badname (not found)``: the units not all right, by what went wrong, the
    first few named."""
    problems: dict[str, list[Sequence[FileOutcome]]] = {}
    for unit in [u for u in grouped if not ok(u)]:
        problems.setdefault(_problem_word(unit), []).append(unit)
    text = ""
    for word, bad in problems.items():
        named = first_few([_problem_detail(u) for u in bad], _MAX_NAMED)
        text += f"; {plural(len(bad), noun)} {word}: {named}"
    return text


def _bytes_part(outcomes: Sequence[FileOutcome], *, seconds: float) -> str:
    """``; 1.6 MiB in 3.2s`` when bytes moved; Xet chunks copied from files already here are said
    only when there were some."""
    fetched = sum(f.fetched for f in outcomes)
    reused = sum(f.reused for f in outcomes)
    took = f" in {human_duration(seconds)}"
    if reused:
        here = f"{human_size(reused)} reused from files already here"
        return f"; {human_size(fetched)} fetched, {here}{took}"
    if fetched:
        return f"; {human_size(fetched)}{took}"
    return ""
