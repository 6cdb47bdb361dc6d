"""Choosing a run's checkpoint (NAME, latest, best or step:N): find them, tell complete from
broken ones.
"""

from __future__ import annotations

import contextlib
import difflib
import errno
import math
import os
import re
import stat
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from mdl.errors import OutsideJSONError, UnsafePathError, UsageError
from mdl.outsidejson import read_json
from mdl.paths import opened, quoted, shown_name

# ASCII digits only: Python's \d also matches full-width digits such as "００５".
_HF_DIR = re.compile(r"checkpoint-([0-9]+)")
_TMP_DIR = re.compile(r"tmp-checkpoint-([0-9]+)")
_ACCELERATE_DIR = re.compile(r"checkpoint_([0-9]+)")  # accelerate: checkpoints/checkpoint_<i>/
# where accelerate and Lightning (a version_N folder's, or the root's without a logger) save them
NESTED = "checkpoints"
_KOHYA_STEP = re.compile(r".+-step([0-9]+)\.safetensors")
_KOHYA_EPOCH = re.compile(r".+-([0-9]{6})\.safetensors")
_LIGHTNING_STEP = re.compile(r"(?:.*[-_])?step=([0-9]+)(?:[-_].*)?\.ckpt")
_LIGHTNING_LAST = "last.ckpt"
_PICKLED_WEIGHTS = re.compile(r"(pytorch_model|adapter_model|diffusion_pytorch_model).*\.bin")
KNOWN_PATTERNS = (
    "checkpoint-N/, checkpoints/checkpoint_N/, NAME-stepN.safetensors, NAME-NNNNNN.safetensors, "
    "*step=N*.ckpt, last.ckpt (at the top or in checkpoints/)"
)
_SAFETENSORS_MAX_HEADER = 100_000_000  # the limit the safetensors library itself enforces
# trainer_state.json and shard indexes are small; refuse to slurp anything huge
_JSON_MAX = 64 << 20


@contextlib.contextmanager
def _opened(path: Path, shown: str) -> Iterator[tuple[int, os.stat_result]]:
    """``path`` opened (no final link followed, no FIFO waited on) and its stat; an OSError is
    exit 2 naming it.
    """
    try:
        with opened(path) as found:
            yield found
    except OSError as exc:
        raise UsageError(f"cannot read {quoted(shown)}: {exc.strerror}") from exc


def read_small_json(path: Path, shown: str) -> Any:
    """Parse a small JSON file; every failure is exit 2 naming ``shown``."""
    with _opened(path, shown) as (fd, st):
        if not stat.S_ISREG(st.st_mode):
            raise UsageError(f"{quoted(shown)} is not a regular file")
        with os.fdopen(os.dup(fd), "rb") as fh:
            raw = fh.read(_JSON_MAX + 1)
    return read_json(raw, source=quoted(shown), limit=_JSON_MAX)


class _Incomplete(Exception):
    """Why a checkpoint or a safetensors file is not complete: said by the step that finds it."""


def safetensors_problem(path: Path, shown: str | None = None) -> str | None:
    """Why a safetensors file is inconsistent (header length, JSON, data extent vs file size), or
    None.
    """
    try:
        header_len, size, header = _safetensors_header(path, path.name if shown is None else shown)
        end = _data_end(header)
    except _Incomplete as exc:
        return str(exc)
    if (expected := 8 + header_len + end) != size:
        return (
            f"data should end at byte {expected} but the file has {size} (truncated or still"
            " being written)"
        )
    return None


def _safetensors_header(path: Path, shown: str) -> tuple[int, int, dict[str, Any]]:
    """The header's length, the file's size and the header itself; _Incomplete when unreadable."""
    with _opened(path, shown) as (fd, st):
        if not stat.S_ISREG(st.st_mode):
            raise _Incomplete("not a regular file")
        head = os.pread(fd, 8, 0)
        if len(head) < 8:
            raise _Incomplete(f"truncated: {st.st_size} bytes, no header")
        header_len = int.from_bytes(head, "little")
        if header_len > _SAFETENSORS_MAX_HEADER or 8 + header_len > st.st_size:
            raise _Incomplete(f"header length {header_len} does not fit in {st.st_size} bytes")
        raw = os.pread(fd, header_len, 8)
    try:
        header = read_json(raw, source="header", limit=_SAFETENSORS_MAX_HEADER)
    except OutsideJSONError:
        raise _Incomplete("header is not JSON") from None
    if not isinstance(header, dict):
        raise _Incomplete("header is not a JSON object")
    return header_len, st.st_size, header


def _data_end(header: dict[str, Any]) -> int:
    """Where the last tensor's data ends, past the header."""
    end = 0
    for key, tensor in header.items():
        if key != "__metadata__":
            end = max(end, _tensor_end(key, tensor))
    return end


def _tensor_end(key: str, tensor: object) -> int:
    """A tensor's end offset; _Incomplete unless its data_offsets are two ordered natural ints."""
    bad = _Incomplete(f"tensor {key!r} has bad data_offsets")
    offsets = tensor.get("data_offsets") if isinstance(tensor, dict) else None
    if not isinstance(offsets, list) or len(offsets) != 2:
        raise bad
    first, last = offsets
    if not (type(first) is int and type(last) is int and 0 <= first <= last):
        raise bad
    return int(last)


@dataclass(frozen=True)
class Candidate:
    """One checkpoint found in a run: a folder or a single file."""

    name: str
    path: Path
    number: int | None
    unit: str  # "step", "epoch", "index", or "alias" for last.ckpt
    is_dir: bool


@dataclass(frozen=True)
class LeftOut:
    """What is not packed, and why: a checkpoint ``latest`` passed over, or what the profile or a
    whole run left out.
    """

    path: str  # relative to the run, as users know it; a folder ends with "/"
    checkpoint: str | None  # the checkpoint it is, when a whole checkpoint is left out
    reason: str


@dataclass(frozen=True)
class Selection:
    """What ``--checkpoint`` chose: the folder (or single file) to pack, and why."""

    checkpoint: str | None
    root: Path
    single_file: bool
    reason: str
    skipped: tuple[LeftOut, ...] = ()
    metric: float | None = None


def real_inside(path: Path, run_real: Path, shown: str) -> Path:
    """The real path behind ``path``; a cycle, a dangling link or a way out of the run raises,
    naming ``shown``.
    """
    try:
        real = Path(os.path.realpath(path, strict=True))
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise UnsafePathError(f"symlink cycle at {quoted(shown)}") from exc
        if exc.errno == errno.ENOENT:
            raise UsageError(f"{quoted(shown)} is a dangling symlink") from exc
        raise UsageError(f"cannot resolve {quoted(shown)}: {exc.strerror}") from exc
    if real != run_real and not real.is_relative_to(run_real):
        raise UnsafePathError(
            f"symlink {quoted(shown)} points outside the run, to {shown_name(real)}"
        )
    return real


def candidate_problem(candidate: Candidate, run_real: Path) -> str | None:
    """Why ``candidate`` is not a complete checkpoint (missing or inconsistent weights), or None; a
    link leaving the run raises."""
    path = real_inside(candidate.path, run_real, candidate.name)
    try:
        if candidate.is_dir:
            _CheckpointFolder(path, candidate.name, run_real).check()
        else:
            _check_single_file(path, candidate.name)
    except _Incomplete as exc:
        return str(exc)
    return None


def _check_single_file(path: Path, shown: str) -> None:
    """A single-file checkpoint: a safetensors file whole, a Lightning .ckpt (a pickle: never
    opened beyond its size while choosing) not empty."""
    if shown.endswith(".safetensors"):
        if (problem := safetensors_problem(path, shown)) is not None:
            raise _Incomplete(problem)
    elif path.stat().st_size == 0:
        raise _Incomplete("empty file")


def _unsafe_name(name: str) -> bool:
    """Whether ``name`` is not one plain name (a path, empty, ``.`` or ``..``)."""
    return "/" in name or "\\" in name or name in ("", ".", "..")


@dataclass(frozen=True)
class _CheckpointFolder:
    """A checkpoint folder (real path, as shown) checked for complete weights."""

    folder: Path
    shown: str
    run_real: Path

    def check(self) -> None:
        """Weights sit at the top (Trainer, PEFT, accelerate) or one level down (diffusers: unet/,
        vae/); _Incomplete names the first problem, or that there are none."""
        subfolders = (p for p in self.folder.iterdir() if p.is_dir() and not p.is_symlink())
        found_weights = False
        for sub in [self.folder, *sorted(subfolders)]:
            indexed = self.indexed_shards(sub)
            found_weights = self.has_weights(sub, found_weights) or bool(indexed)
        if not found_weights:
            raise _Incomplete(
                "no weights (model.safetensors, shards with their index, or adapter weights)"
            )

    def label(self, path: Path) -> str:
        """``path`` as shown: under the checkpoint's name."""
        return f"{self.shown}/{path.relative_to(self.folder)}"

    def indexed_shards(self, sub: Path) -> set[str]:
        """The shards the ``*.index.json`` files in ``sub`` name, each one there."""
        indexes = sorted(sub.glob("*.index.json"))
        return set().union(*(self.shards_of(index, sub) for index in indexes))

    def shards_of(self, index: Path, sub: Path) -> set[str]:
        """The shards one index names; shards live beside their index, anything else is a hostile
        or broken index."""
        label = self.label(index)
        data = read_small_json(real_inside(index, self.run_real, label), label)
        weight_map = data.get("weight_map") if isinstance(data, dict) else None
        if not isinstance(weight_map, dict) or not weight_map:
            raise _Incomplete(f"{shown_name(index.name)} has no weight_map")
        shards = sorted({str(v) for v in weight_map.values()})
        for shard in shards:
            if _unsafe_name(shard):
                raise _Incomplete(
                    f"{shown_name(index.name)} names unsafe shard path {quoted(shard)}"
                )
            if not (sub / shard).exists() and not (sub / shard).is_symlink():
                raise _Incomplete(
                    f"shard {shown_name(shard)} named in {shown_name(index.name)} is missing"
                )
        return set(shards)

    def has_weights(self, sub: Path, found: bool) -> bool:
        """Whether weights were ``found`` or ``sub`` holds some: each safetensors file whole, a
        pickled weights file not empty (looked at only while none is found)."""
        for weights in sorted(sub.iterdir()):
            label = self.label(weights)
            if weights.name.endswith(".safetensors"):
                problem = safetensors_problem(real_inside(weights, self.run_real, label), label)
                if problem:
                    raise _Incomplete(f"{shown_name(weights.relative_to(self.folder))}: {problem}")
                found = True
            elif not found and _PICKLED_WEIGHTS.fullmatch(weights.name):
                found = real_inside(weights, self.run_real, label).stat().st_size > 0
        return found


def _classify(name: str, is_dir: bool) -> tuple[int | None, str] | None:
    if is_dir:
        match = _HF_DIR.fullmatch(name)
        return (int(match.group(1)), "step") if match else None
    for pattern, unit in (
        (_KOHYA_STEP, "step"),
        (_KOHYA_EPOCH, "epoch"),
        (_LIGHTNING_STEP, "step"),
    ):
        if match := pattern.fullmatch(name):
            return int(match.group(1)), unit
    return (None, "alias") if name == _LIGHTNING_LAST else None


def find_candidates(run_dir: Path) -> tuple[list[Candidate], list[str]]:
    """Every checkpoint in the run, and the names of tmp-checkpoint-* folders (sorted by name): at
    its top, in accelerate's checkpoints/checkpoint_<i>/ and Lightning's checkpoints/*.ckpt (its
    version_N/checkpoints/, or the root's when logging is off)."""
    found, temporary = _top_candidates(run_dir)
    found += _nested_candidates(run_dir / NESTED)
    found = [_as_its_target(cand, found) for cand in found]
    # numerically: 500 before 1000
    found.sort(key=lambda c: (c.number is None, c.number or 0, c.name))
    _refuse_twin_steps(found)
    return found, sorted(temporary)


def _top_candidates(run_dir: Path) -> tuple[list[Candidate], list[str]]:
    """The checkpoints at the run's top, and its tmp-checkpoint-* folders."""
    found: list[Candidate] = []
    temporary: list[str] = []
    with os.scandir(run_dir) as entries:
        for entry in entries:
            is_dir = entry.is_dir()  # follows a link: an escaping one is caught when it is used
            if is_dir and _TMP_DIR.fullmatch(entry.name):
                temporary.append(entry.name)
                continue
            if (kind := _classify(entry.name, is_dir)) is not None and (is_dir or entry.is_file()):
                found.append(Candidate(entry.name, Path(entry.path), kind[0], kind[1], is_dir))
    return found, temporary


def _nested_candidates(nested: Path) -> list[Candidate]:
    """accelerate's checkpoints/checkpoint_<i>/ folders and Lightning's checkpoints/*.ckpt files (a
    linked checkpoints/ is not looked in)."""
    if not nested.is_dir() or nested.is_symlink():
        return []
    found: list[Candidate] = []
    with os.scandir(nested) as entries:
        for entry in entries:
            if (match := _ACCELERATE_DIR.fullmatch(entry.name)) and entry.is_dir():
                found.append(
                    Candidate(entry.name, Path(entry.path), int(match.group(1)), "index", True)
                )
            elif entry.name.endswith(".ckpt") and entry.is_file():
                kind = _classify(entry.name, False)
                if kind is not None:
                    found.append(Candidate(entry.name, Path(entry.path), *kind, False))
    return found


def _as_its_target(cand: Candidate, found: list[Candidate]) -> Candidate:
    """A checkpoint that is a link counts as what it links to: the number its target's name holds
    (none, when it holds none), and none when the target is another checkpoint of the run (an alias
    such as Lightning's last.ckpt), so no link lends its own name's step to other content."""
    if not cand.path.is_symlink():
        return cand
    real = os.path.realpath(cand.path)
    kind = _classify(Path(real).name, cand.is_dir)
    others = (os.path.realpath(c.path) for c in found if c is not cand and not c.path.is_symlink())
    if kind is None or real in others:
        kind = (None, "alias")
    return replace(cand, number=kind[0], unit=kind[1])


def _refuse_twin_steps(found: list[Candidate]) -> None:
    """Two names for one step (checkpoint-7, checkpoint-007) are ambiguous: exit 2."""
    seen: dict[tuple[str, int | None], str] = {}
    for cand in found:
        first = seen.setdefault((cand.unit, cand.number), cand.name)
        if first != cand.name and cand.number is not None:
            raise UsageError(
                f"checkpoints {quoted(first)} and {quoted(cand.name)} are both {cand.unit}"
                f" {cand.number}",
                hint="rename or remove one of them",
            )


def _complete(
    candidate: Candidate, run_real: Path, why: str, reason: str, metric: float | None = None
) -> Selection:
    """``candidate`` chosen for ``reason``; refused if it is incomplete, saying ``why`` it was
    asked for.
    """
    if problem := candidate_problem(candidate, run_real):
        raise UsageError(f"checkpoint {quoted(candidate.name)} ({why}) is incomplete: {problem}")
    return Selection(candidate.name, candidate.path, not candidate.is_dir, reason, (), metric)


def _select_latest(
    run_dir: Path, candidates: list[Candidate], temporary: list[str], run_real: Path
) -> Selection:
    """The highest-numbered complete checkpoint, and those passed over on the way (each by its
    path in the run, a folder's ending in "/")."""
    numbered = [c for c in candidates if c.number is not None]
    if len(units := {c.unit for c in numbered}) > 1:
        raise UsageError(
            f"the run mixes {' and '.join(sorted(units))} numbering; 'latest' is ambiguous",
            hint="name the checkpoint with --checkpoint NAME",
        )
    skipped = [
        LeftOut(f"{name}/", name, "temporary folder left by an interrupted save")
        for name in temporary
    ]
    for cand in sorted(numbered, key=lambda c: c.number or 0, reverse=True):
        try:
            problem = candidate_problem(cand, run_real)
        except UnsafePathError as exc:
            problem = exc.message  # not packed, so not fatal: just not a candidate
        if problem is None:
            reason = f"latest: highest complete {cand.unit} ({cand.number})"
            return Selection(cand.name, cand.path, not cand.is_dir, reason, tuple(skipped))
        path = cand.path.relative_to(run_dir).as_posix() + ("/" if cand.is_dir else "")
        skipped.append(LeftOut(path, cand.name, problem))
    detail = "; ".join(f"{s.checkpoint}: {s.reason}" for s in skipped) or "none found"
    raise UsageError(f"no complete checkpoint in the run ({detail})")


def _step_folders(candidates: list[Candidate]) -> list[Candidate]:
    """The checkpoint folders numbered by step (the Trainer's, which ``best`` can name)."""
    return [c for c in candidates if c.is_dir and c.unit == "step"]


def _select_best(run_dir: Path, candidates: list[Candidate], run_real: Path) -> Selection:
    """The checkpoint trainer_state.json calls best, by the basename of its (often stale) path."""
    shown, state = _newest_trainer_state(run_dir, candidates, run_real)
    name, source = _recorded_best(shown, state)
    if (chosen := next((c for c in _step_folders(candidates) if c.name == name), None)) is None:
        raise UsageError(f"{source} does not name a checkpoint folder in the run")
    metric = _finite_metric(state.get("best_metric"))
    reason = f"best: {source}"
    if metric is not None:
        reason += f", best_metric {metric}"
    return _complete(chosen, run_real, "best", reason, metric)


def _newest_trainer_state(
    run_dir: Path, candidates: list[Candidate], run_real: Path
) -> tuple[str, Any]:
    """The trainer_state.json with the highest global_step (ordered by step, never by mtime; ties
    go to the run's own file), as shown, and its contents."""
    places = [(run_dir, ""), *((c.path, f"{c.name}/") for c in _step_folders(candidates))]
    # (step, -order, shown, state)
    found: list[tuple[int, int, str, Any]] = []
    for order, (folder, prefix) in enumerate(places):
        shown, path = f"{prefix}trainer_state.json", folder / "trainer_state.json"
        if path.is_file():
            state = read_small_json(real_inside(path, run_real, shown), shown)
            found.append((_global_step(state), -order, shown, state))
    if not found:
        raise UsageError(
            "no trainer_state.json in the run or its checkpoints; cannot tell which is best"
        )
    return max(found, key=lambda item: item[:2])[2:]


def _global_step(state: Any) -> int:
    """A trainer state's global_step, -1 when it has none."""
    step = state.get("global_step") if isinstance(state, dict) else None
    return step if isinstance(step, int) else -1


def _recorded_best(shown: str, state: Any) -> tuple[str, str]:
    """The checkpoint name a trainer state records as best, and where that was read."""
    fields = state if isinstance(state, dict) else {}
    recorded = fields.get("best_model_checkpoint")
    best_step = fields.get("best_global_step")
    if isinstance(recorded, str) and recorded.strip("/\\"):
        # The path is as it was at training time (absolute, other machine): only its last part
        # counts.
        name = re.split(r"[/\\]", recorded.rstrip("/\\"))[-1]
        return name, f"best_model_checkpoint {quoted(recorded)} in {shown_name(shown)}"
    if isinstance(best_step, int) and not isinstance(best_step, bool):
        return f"checkpoint-{best_step}", f"best_global_step {best_step} in {shown_name(shown)}"
    raise UsageError(
        f"{shown_name(shown)} records no best checkpoint (no best_model_checkpoint or"
        " best_global_step)"
    )


def _finite_metric(metric: object) -> float | None:
    """best_metric as a float; NaN and infinities (trainers write them) and ints past float range
    count as none."""
    if not isinstance(metric, int | float) or isinstance(metric, bool):
        return None
    try:
        finite = math.isfinite(metric)
    except OverflowError:
        return None
    return float(metric) if finite else None


def select_checkpoint(run_dir: Path, spec: str | None) -> Selection:
    """Resolve ``--checkpoint`` (NAME, latest, best, step:N or None) to what gets packed."""
    run_real = Path(os.path.realpath(run_dir))
    if spec is None:
        return Selection(None, run_dir, False, "the run's own files, without checkpoint folders")
    candidates, temporary = find_candidates(run_dir)
    if spec == "latest":
        return _select_latest(run_dir, candidates, temporary, run_real)
    if spec == "best":
        return _select_best(run_dir, candidates, run_real)
    if spec.startswith("step:"):
        return _select_step(spec, candidates, run_real)
    return _select_named(spec, run_dir, candidates, run_real)


def _select_step(spec: str, candidates: list[Candidate], run_real: Path) -> Selection:
    """``step:N``: the checkpoint numbered by step N; exit 2 naming the steps there are."""
    if not (match := re.fullmatch(r"step:([0-9]+)", spec)):
        raise UsageError(f"bad checkpoint {quoted(spec)}: step:N takes ASCII digits")
    step = int(match.group(1))
    chosen = next((c for c in candidates if c.unit == "step" and c.number == step), None)
    if chosen is None:
        raise _no_step(step, candidates)
    return _complete(chosen, run_real, spec, f"step {step} requested")


def _no_step(step: int, candidates: list[Candidate]) -> UsageError:
    """No checkpoint for ``step``: the steps there are, and the nearest as a hint."""
    steps = sorted(c.number for c in candidates if c.unit == "step" and c.number is not None)
    near = min(steps, key=lambda n: (abs(n - step), n)) if steps else None
    present = ", ".join(map(str, steps)) or "none"
    return UsageError(
        f"no checkpoint for step {step} (steps present: {present})",
        hint=f"did you mean step:{near}?" if near is not None else None,
    )


def _select_named(
    spec: str, run_dir: Path, candidates: list[Candidate], run_real: Path
) -> Selection:
    """A checkpoint named on the command line; exit 2 with the closest name when there is none."""
    name = spec.removesuffix("/")
    if _unsafe_name(name):
        raise UsageError(f"checkpoint {quoted(spec)} must be a name in the run, not a path")
    named = [c for c in candidates if c.name == name]
    if not named:
        raise _no_checkpoint_named(name, run_dir, candidates)
    if len(named) > 1:  # last.ckpt at the top and in checkpoints/
        raise UsageError(
            f"two checkpoints are named {quoted(name)}: at the run's top and in {NESTED}/",
            hint="rename or remove one of them",
        )
    return _complete(named[0], run_real, "named", "named on the command line")


def _no_checkpoint_named(name: str, run_dir: Path, candidates: list[Candidate]) -> UsageError:
    """What to say when no checkpoint has ``name``: a temporary folder, no checkpoint's name at
    all, or a checkpoint name the run lacks."""
    if _TMP_DIR.fullmatch(name):
        return UsageError(
            f"{quoted(name)} is a temporary folder left by an interrupted save, not a checkpoint"
        )
    close = difflib.get_close_matches(
        name, ["latest", "best", *(c.name for c in candidates)], n=1, cutoff=0.6
    )
    hint = f"did you mean {close[0]}?" if close else None
    unknown = _classify(name, True) is None and _classify(name, False) is None
    if (run_dir / name).exists() or unknown:
        return UsageError(
            f"{quoted(name)} is not a checkpoint name (known: {KNOWN_PATTERNS})", hint=hint
        )
    return UsageError(f"no checkpoint {quoted(name)} in the run", hint=hint)
