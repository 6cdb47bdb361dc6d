"""Per-file outcomes of pull, verify, get and resolve, and the exit code they add up to."""

# (annotations here are evaluated, not postponed: typing compiles each string annotation of a
# NamedTuple's fields at every start)
import json
import logging
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath
from typing import Any, ClassVar, NamedTuple, TypeVar

from mdl.errors import (
    ExitCode,
    MdlError,
    UsageError,
    error_for_exit_code,
    server_details,
    worst_exit_code,
)
from mdl.paths import parse_hf_uri, shown_path
from mdl.redact import Secrets, safe_text, shown_data


class Done:
    """A report of a command that raises what fails it (list, show, clean, pack, unpack): one it
    returns did its work, as exit 0 says (every report has ``ok`` and ``exit_code``)."""

    ok: ClassVar[bool] = True
    exit_code: ClassVar[int] = int(ExitCode.OK)


# A retry cause (``retries``) that starts with this is also a warning for the user (a mirror that
# failed for the file: the part that chose another source has no other way into the outcome).
WARNING_CAUSE = "warning: "
# the line per file; the log handler makes it safe (no secrets)
file_log = logging.getLogger("mdl.files")

_SWARM = ("origin_parts", "peer_parts", "duplicated", "not_swarmed")  # a swarm's, on the line

# the fields a file's JSON has only when set (not zero, empty or None), in the contract's order
_WHEN_SET = (
    "reused", "waited", "fill", "streamed", "published", "origin_parts", "peer_parts",
    "duplicated", "not_swarmed", "range_trust", "ranges_refetched", "released_wrong",
)  # fmt: skip


class FileOutcome(NamedTuple):
    """What happened to one file (or to a whole model that failed before its files were known). A
    tuple: a frozen dataclass of these fields cost each start ~10 M instructions to make (its
    methods compiled), a third of a small `mdl get`'s own modules' import."""

    model: str
    path: str | None
    dest: str | None
    size: int | None
    sha256: str | None
    action: str
    error: str | None = None
    exit_code: int = 0
    reason: str = ""
    fetched: int = 0
    mirror: str | None = None  # the mirror the bytes came from (redacted), when not the origin
    # bytes copied from files already here instead of fetched (Xet chunks a file on disk holds)
    reused: int = 0
    # For the log (not in the JSON contract): where from, how long, why it had to retry, what the
    # server said.
    source: str | None = None  # redacted
    seconds: float | None = None
    retries: tuple[str, ...] = ()
    status: int | None = None  # the HTTP status of a server's refusal
    server_text: str | None = None  # the server's own error text, sanitised
    # done despite a problem (the Hub could not be asked, a FIFO replaced): said once
    warning: str | None = None
    hint: str | None = None  # what to do about ``error`` (shown under it on stderr)
    # the error's kind ("not_found", "integrity", ...): the summary's short reason
    kind: str | None = None
    word: str | None = None  # what people read instead of ``action`` ("re-downloaded", "replaced")
    # False: fetched, but no hash checked it and it did not come whole in one answer (engine rule
    # 15); None: not known
    verified: bool | None = None
    # get: the folder a whole Hub repo went into (its stdout names it, not each file)
    within: str | None = None
    # seconds spent waiting on another machine filling a mirror with it (--fill-mirror)
    waited: float = 0.0
    fill: str | None = None  # what filling the mirror made of it (TransferResult.fill)
    streamed: int = 0  # bytes read from another machine's parts as they landed (or taken over)
    published: int = 0  # bytes this machine published as parts beside its fetch
    # a swarm (--fill-mirror, a file with a range trust): parts this machine fetched from the
    # origin, parts it read from the others', bytes it fetched of parts another machine held (the
    # end game); or why the file could not swarm
    origin_parts: int = 0
    peer_parts: int = 0
    duplicated: int = 0
    not_swarmed: str | None = None
    # the root each range was checked against as it landed (lock, signature, xet), if any, and
    # the ranges that failed it and were fetched again alone
    range_trust: str | None = None
    ranges_refetched: int = 0
    # ``[start, end)`` of each range that left to a loader (serve --pull) before the file's hash
    # refused the bytes it was fetched with
    released_wrong: tuple[tuple[int, int], ...] = ()

    @property
    def label(self) -> str:
        """``model/path`` (the model alone for a model-wide failure, the path alone for a one-off
        ``get`` file).
        """
        return "/".join(part for part in (self.model, self.path) if part)

    @property
    def shown_action(self) -> str:
        """The action in people's words (the JSON keeps the contract's ``action``)."""
        word = self.word or self.action
        return f"{word} (unverified)" if self.verified is False else word

    @property
    def warnings(self) -> tuple[str, ...]:
        """``warning`` and the causes marked with ``WARNING_CAUSE``, in order."""
        marked = tuple(
            c.removeprefix(WARNING_CAUSE) for c in self.retries if c.startswith(WARNING_CAUSE)
        )
        return (self.warning, *marked) if self.warning else marked

    @property
    # ``missing``: verify found it not on this disk (exit 4, "not found")
    def failing(self) -> bool:
        return self.action in ("failed", "missing")

    @property
    def hub_repo(self) -> str | None:
        """``[datasets/|spaces/]owner/name`` of a Hub file (its ``source`` an ``hf://``), else
        None.
        """
        if not (self.source or "").startswith("hf://"):
            return None
        try:
            uri = parse_hf_uri(str(self.source))
        except MdlError:
            return None
        return f"{'' if uri.repo_type == 'model' else uri.repo_type + 's/'}{uri.repo}"

    def to_json(self) -> dict[str, Any]:
        """The contract's per-file shape (``mirror`` only when one served the file); absent
        values are null.
        """
        shown = {
            "waited": round(self.waited, 3),
            "released_wrong": [[start, end - 1] for start, end in self.released_wrong],
        }
        return {
            "model": self.model or None,
            "path": self.path,
            "dest": self.dest,
            "size": self.size,
            "sha256": self.sha256,
            "action": self.action,
            "error": self.error,
            "hint": self.hint or None,
            "reason": self.reason or None,
            "warning": "; ".join(self.warnings) or None,
            "verified": self.verified,
            **({"mirror": self.mirror} if self.mirror is not None else {}),
            **{
                name: shown.get(name, getattr(self, name))
                for name in _WHEN_SET
                if getattr(self, name)
            },
        }


class ExtraFile(NamedTuple):
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
        return self._asdict()


@dataclass(frozen=True)
class RunReport:
    """The outcome of a pull, verify or get."""

    files: tuple[FileOutcome, ...]
    dry_run: bool = False
    # Each signed model's signature as this run found it (list's and show's shape): {"verified",
    # "by", "file"}
    signatures: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    # seconds the run waited on the Hub's rate limits (pull and get; None: a run that asks no Hub)
    hub_wait_seconds: float | None = None
    # seconds of the run's wall time in which a file waited on another machine filling a mirror
    # (--fill-mirror; WallWaits: files that waited together count once)
    waited: float = 0.0
    # the run's own seconds when its workflow measured them (serve's pull: not the server's life)
    seconds: float | None = None
    # pull: the files in the folders of the models a lock pinned that are not of that version
    extra: tuple[ExtraFile, ...] = ()

    @property
    def exit_code(self) -> int:
        return worst_exit_code([f.exit_code for f in self.files])

    @property
    def ok(self) -> bool:
        return self.exit_code == ExitCode.OK

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "files": [f.to_json() for f in self.files],
            **({"dry_run": True} if self.dry_run else {}),
            **({"reused": reused} if (reused := sum(f.reused for f in self.files)) else {}),
            **(
                {"signatures": {name: dict(one) for name, one in self.signatures.items()}}
                if self.signatures
                else {}
            ),
            **(
                {"hub_wait_seconds": self.hub_wait_seconds}
                if self.hub_wait_seconds is not None
                else {}
            ),
            **({"extra": [e.to_json() for e in self.extra]} if self.extra else {}),
        }

    def path(self, model: str) -> Path:
        """The folder holding ``model``'s files (for ``from_pretrained``), else a failed file's
        error or UsageError.
        """
        outcomes = self._of_model(model)
        for f in outcomes:
            if f.failing:
                raise error_for_exit_code(f.exit_code)(f.error or f"{model}/{f.path}: failed")
        folders = {folder(f) for f in outcomes}
        (found, *others) = folders
        if others or found is None:
            raise UsageError(f"{model}: its files are not in one folder; use each file's dest")
        return found

    def _of_model(self, model: str) -> list[FileOutcome]:
        """``model``'s files, or UsageError naming the models this report has."""
        outcomes = [f for f in self.files if f.model == model]
        if not outcomes:
            known = ", ".join(sorted({f.model for f in self.files if f.model})) or "none"
            raise UsageError(f"{model}: not in this report (it has: {known})")
        return outcomes


ReportT = TypeVar("ReportT", bound=RunReport)


class WallWaits:
    """The wall time in which at least one of a run's waits was under way: waits that overlap
    (two files waiting on one machine at once) count once, never a sum over files."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock, self._lock = clock, threading.Lock()
        self._open, self._since, self._total = 0, 0.0, 0.0

    def begin(self) -> float:
        """A wait starts; returns when, for :meth:`end`."""
        with self._lock:
            now = self._clock()
            if self._open == 0:
                self._since = now
            self._open += 1
            return now

    def end(self, began: float) -> float:
        """The wait :meth:`begin` started ends; returns its own seconds."""
        with self._lock:
            now = self._clock()
            self._open -= 1
            if self._open == 0:
                self._total += now - self._since
            return now - began

    @property
    def seconds(self) -> float:
        """The waits' wall time so far (one under way: up to now)."""
        with self._lock:
            return self._total + (self._clock() - self._since if self._open else 0.0)


def warned(report: ReportT, warnings: Mapping[str, str]) -> ReportT:
    """The report, each outcome of a model the lock did not pin carrying why."""
    files = tuple(
        o._replace(warning=warnings[o.model]) if o.model in warnings and o.warning is None else o
        for o in report.files
    )
    return replace(report, files=files)


def once_per_repo(outcomes: Sequence[FileOutcome]) -> list[tuple[FileOutcome, int]]:
    """The failures to tell people, in order, each with how many more were folded into it: a Hub
    repo that refuses access (a gated or private repo, a refused token) refuses every file of it
    alike, so that is said once."""
    first: dict[object, FileOutcome] = {}  # by (repo, hint), else by its place: the outcome said
    more: Counter[object] = Counter()
    for index, outcome in enumerate(o for o in outcomes if o.failing):
        repo = outcome.hub_repo if outcome.exit_code == ExitCode.AUTH else None
        key = index if repo is None else (repo, outcome.hint)
        more[key] += key in first
        first.setdefault(key, outcome)
    return [(outcome, more[key]) for key, outcome in first.items()]


def folder(outcome: FileOutcome) -> Path | None:
    """The folder ``outcome.dest`` sits in once its save path is taken off (None when they do not
    match).
    """
    if outcome.dest is None or outcome.path is None:
        return None
    dest, rel = Path(outcome.dest), PurePosixPath(outcome.path).parts
    if len(dest.parts) <= len(rel) or dest.parts[-len(rel) :] != rel:
        return None
    return dest.parents[len(rel) - 1]


def failed(
    model: str,
    path: str | None,
    exc: MdlError,
    *,
    dest: Path | None = None,
    source: str | None = None,
) -> FileOutcome:
    """An outcome for a failure, keeping the error's message and exit code, and the server's
    status and text.
    """
    status, server_text = server_details(exc)
    # a 4 KiB path: cut
    label = shown_path(f"{model}/{path}" if model and path else model or path or "")
    return FileOutcome(
        model=model,
        path=path,
        dest=str(dest) if dest is not None else None,
        size=None,
        sha256=None,
        action="failed",
        # API callers print it too: made safe
        error=labelled(safe_text(exc.message), label, model=model),
        exit_code=int(exc.exit_code),
        source=source,
        status=status,
        server_text=server_text,
        hint=exc.hint,
        kind=exc.kind,
        fetched=exc.fetched,
    )


def labelled(message: str, label: str, *, model: str) -> str:
    """``message`` naming its file once, ``tiny/config.json: <why>`` (a one-off get's names its
    source already).
    """
    doubled = f"{label}: {label}: "
    while label and message.startswith(doubled):
        message = message[len(label) + 2 :]
    if model and not message.startswith((f"{model}:", f"{model}/")):
        message = f"{label}: {message}"
    return message


def hidden(outcomes: Sequence[FileOutcome], secrets: Secrets) -> tuple[FileOutcome, ...]:
    """The outcomes as a library caller gets them: a text (an error, a hint, a warning, a server's
    words) in which the run has a secret is cut through it. Parts build outcomes without the run's
    secrets (the CLI's sinks cut them when printing); the API is a sink too."""

    def cut(text: str | None) -> str | None:
        if not text:
            return text
        shown = safe_text(text, multiline=True, secrets=secrets)
        return shown if shown != safe_text(text, multiline=True) else text

    return tuple(
        o._replace(
            error=cut(o.error),
            hint=cut(o.hint),
            warning=cut(o.warning),
            server_text=cut(o.server_text),
        )
        for o in outcomes
    )


# The log line per file: what was done, from where.
SERVER_TEXT_LIMIT = 500  # characters of the server's text kept (transfer.http cuts it there)
_BARE = re.compile(r"[^\s\"=\\]+")


def _value(text: str) -> str:
    """A value as the line holds it: bare when unambiguous, else a JSON string."""
    return text if _BARE.fullmatch(text) else json.dumps(text, ensure_ascii=False)


def file_line(outcome: FileOutcome) -> str:
    """``file model=… path=… …``: a value with spaces, quotes, ``=`` or nothing in it is
    a JSON string.
    """
    fields = _fields(outcome)
    if outcome.action == "failed":
        fields += _failure_fields(outcome)
    # each value on one line, a URL without its credentials; the log redacts the rest (a sink)
    shown = (
        f"{key}={_value(shown_data(str(value)))}" for key, value in fields if value is not None
    )
    return "file " + " ".join(shown)


def _fields(outcome: FileOutcome) -> list[tuple[str, object | None]]:
    """The fields of every file's line (None: left out)."""
    return [
        ("model", outcome.model),
        ("path", outcome.path or ""),
        ("action", outcome.action),
        ("dest", outcome.dest),
        ("source", outcome.source),
        ("size", outcome.size),
        ("sha256", outcome.sha256),
        ("fetched", outcome.fetched if outcome.action != "skipped" or outcome.fetched else None),
        ("reused", outcome.reused or None),
        ("seconds", f"{outcome.seconds:.3f}" if outcome.seconds is not None else None),
        # on another machine filling a mirror with it (--fill-mirror)
        ("waited", f"{outcome.waited:.1f}" if outcome.waited else None),
        ("fill", outcome.fill),
        ("streamed", outcome.streamed or None),
        ("published", outcome.published or None),
        *((name, getattr(outcome, name) or None) for name in _SWARM),
        ("retries", len(outcome.retries)),
        ("warning", outcome.warning or None),  # e.g. kept although the Hub could not be asked
        ("causes", " | ".join(outcome.retries) or None),
    ]


def _failure_fields(outcome: FileOutcome) -> list[tuple[str, object | None]]:
    """What a failed file's line says besides: its exit code and the server's answer (cut where it
    was read: SERVER_TEXT_LIMIT)."""
    return [
        ("exit", outcome.exit_code),
        ("status", outcome.status),
        ("server_text", outcome.server_text or None),
        ("error", outcome.error or "failed"),
    ]


def log_outcome(outcome: FileOutcome) -> None:
    """Write the file's line: INFO when it is present and verified, ERROR when it failed."""
    level = logging.ERROR if outcome.action == "failed" else logging.INFO
    file_log.log(level, "%s", file_line(outcome))
