"""``mdl pack``: find a run's checkpoints, tell complete from broken ones (reading untrusted JSON and safetensors
headers) and choose one (NAME, latest, best or step:N); choose its files (profile deny-list, link rules, special files,
patterns, logs and roles); and stream them into a deterministic zip."""

from __future__ import annotations

import contextlib
import difflib
import errno
import fnmatch
import json
import math
import os
import re
import stat
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO

from mdl.archive.zipread import MANIFEST_NAME, collision_key, first_twin, name_problem
from mdl.archive.zipwriter import Contents, SourceFile, stdout_file, write_file_archive, write_stdout_archive
from mdl.errors import LocalFSError, UnsafePathError, UsageError
from mdl.progress import ArchiveProgress, Progress
from mdl.store import REPLACEABLE, not_a_file, not_a_file_error
from mdl.version import __version__

# ASCII digits only: Python's \d also matches full-width digits such as "００５".
_HF_DIR = re.compile(r"checkpoint-([0-9]+)")
_TMP_DIR = re.compile(r"tmp-checkpoint-([0-9]+)")
_ACCELERATE_DIR = re.compile(r"checkpoint_([0-9]+)")  # accelerate: checkpoints/checkpoint_<i>/
_KOHYA_STEP = re.compile(r".+-step([0-9]+)\.safetensors")
_KOHYA_EPOCH = re.compile(r".+-([0-9]{6})\.safetensors")
_LIGHTNING_STEP = re.compile(r"(?:.*[-_])?step=([0-9]+)(?:[-_].*)?\.ckpt")
_LIGHTNING_LAST = "last.ckpt"
_PICKLED_WEIGHTS = re.compile(r"(pytorch_model|adapter_model|diffusion_pytorch_model).*\.bin")
KNOWN_PATTERNS = (
    "checkpoint-N/, checkpoints/checkpoint_N/, NAME-stepN.safetensors, NAME-NNNNNN.safetensors, "
    "*step=N*.ckpt, last.ckpt"
)
_SAFETENSORS_MAX_HEADER = 100_000_000  # the limit the safetensors library itself enforces
_JSON_MAX = 64 << 20  # trainer_state.json and shard indexes are small; refuse to slurp anything huge
PROFILES = ("deploy", "full")
COMPRESSIONS = ("auto", "none", "deflate")
# Training state that a deployment never needs (left out by --profile deploy); matched on names.
DEPLOY_DENY: tuple[str, ...] = ("optimizer.*", "scheduler.*", "scaler.pt", "rng_state*.pth", "random_states_*.pkl")
DEPLOY_DENY += ("sampler.bin", "training_args.bin", "global_step*", "*-state")
# Checkpoint folders are left out when the whole run (no --checkpoint) is packed.
_RUN_LEVEL_SKIP = ("checkpoint-*", "tmp-checkpoint-*", "checkpoints")
DENY_REASON = "training state, not needed to deploy (profile deploy; --profile full keeps it)"
RUN_LEVEL_REASON = "a checkpoint: the whole run packs its own final model (--checkpoint NAME packs one)"
LOG_PATTERNS = ("*.log", "progress.json", "all_results.json", "*_results.json", "metrics.csv")
_PICKLE_SUFFIXES = frozenset({".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle", ".npz"})
_WEIGHT_SUFFIXES = frozenset({".safetensors", ".gguf", ".onnx", ".h5", ".msgpack", ".npy", ".tflite", ".pb"})
# Tensors, pickles and what is compressed already are stored: deflate saves ~7-8 % on fp16/fp32 weights at
# 40-120x the time (measured).
_COMPRESSED = frozenset({".zip", ".gz", ".bz2", ".xz", ".zst", ".7z", ".png", ".jpg", ".jpeg", ".webp"})
STORED_SUFFIXES = _PICKLE_SUFFIXES | _WEIGHT_SUFFIXES | _COMPRESSED
_TOKENIZER_NAMES = frozenset(
    {"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json", "merges.txt"}
    | {"spiece.model", "tokenizer.model", "sentencepiece.bpe.model", "chat_template.jinja"}
)


def _parse_int(text: str) -> int:
    if abs(value := int(text)) >= 1 << 1024:  # past float range: no step, size or metric is this large
        raise ValueError(f"number {text[:20]}... is out of range")
    return value


def _parse_float(text: str) -> float:
    if not math.isfinite(value := float(text)):  # 1e400: a number that overflows is not a value anyone wrote on purpose
        raise ValueError(f"number {text[:40]} is out of range")
    return value


def parse_json(raw: bytes) -> Any:
    """``json.loads`` for untrusted input: numbers out of float range and nesting too deep are ValueError."""
    try:
        return json.loads(raw, parse_int=_parse_int, parse_float=_parse_float)
    except RecursionError:
        raise ValueError("nested too deeply") from None


@contextlib.contextmanager
def _opened(path: Path, shown: str) -> Iterator[tuple[int, os.stat_result]]:
    """``path`` opened (no final link followed, no FIFO waited on) and its stat; an OSError is exit 2 naming it."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise UsageError(f"cannot read '{shown}': {exc.strerror}") from exc
    try:
        yield fd, os.fstat(fd)
    except OSError as exc:
        raise UsageError(f"cannot read '{shown}': {exc.strerror}") from exc
    finally:
        os.close(fd)


def read_small_json(path: Path, shown: str) -> Any:
    """Parse a small JSON file; every failure is exit 2 naming ``shown``."""
    with _opened(path, shown) as (fd, st):
        if not stat.S_ISREG(st.st_mode):
            raise UsageError(f"'{shown}' is not a regular file")
        with os.fdopen(os.dup(fd), "rb") as fh:
            raw = fh.read(_JSON_MAX + 1)
    if len(raw) > _JSON_MAX:
        raise UsageError(f"'{shown}' is too large to be a JSON index")
    try:
        return parse_json(raw)
    except ValueError as exc:  # UnicodeDecodeError is a ValueError
        raise UsageError(f"'{shown}' is not valid JSON: {str(exc)[:200]}") from exc


def safetensors_problem(path: Path, shown: str | None = None) -> str | None:
    """Why a safetensors file is inconsistent (header length, JSON, data extent vs file size), or None."""
    shown = path.name if shown is None else shown
    with _opened(path, shown) as (fd, st):
        if not stat.S_ISREG(st.st_mode):
            return "not a regular file"
        if len(head := os.pread(fd, 8, 0)) < 8:
            return f"truncated: {st.st_size} bytes, no header"
        header_len = int.from_bytes(head, "little")
        if header_len > _SAFETENSORS_MAX_HEADER or 8 + header_len > st.st_size:
            return f"header length {header_len} does not fit in {st.st_size} bytes"
        raw = os.pread(fd, header_len, 8)
    try:
        header = parse_json(raw)
    except ValueError:
        return "header is not JSON"
    if not isinstance(header, dict):
        return "header is not a JSON object"
    end = 0
    for key, tensor in header.items():
        if key == "__metadata__":
            continue
        offsets = tensor.get("data_offsets") if isinstance(tensor, dict) else None
        first, last = offsets if isinstance(offsets, list) and len(offsets) == 2 else (None, None)
        if not (type(first) is int and type(last) is int and 0 <= first <= last):
            return f"tensor {key!r} has bad data_offsets"
        end = max(end, last)
    if (expected := 8 + header_len + end) != st.st_size:
        return f"data should end at byte {expected} but the file has {st.st_size} (truncated or still being written)"
    return None


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
    """What is not packed, and why: a checkpoint ``latest`` passed over, or what the profile or a whole run left out."""

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
    """The real path behind ``path``; a cycle, a dangling link or a way out of the run raises, naming ``shown``."""
    try:
        real = Path(os.path.realpath(path, strict=True))
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise UnsafePathError(f"symlink cycle at '{shown}'") from exc
        if exc.errno == errno.ENOENT:
            raise UsageError(f"'{shown}' is a dangling symlink") from exc
        raise UsageError(f"cannot resolve '{shown}': {exc.strerror}") from exc
    if real != run_real and not real.is_relative_to(run_real):
        raise UnsafePathError(f"symlink '{shown}' points outside the run, to {real}")
    return real


def candidate_problem(candidate: Candidate, run_real: Path) -> str | None:
    """Why ``candidate`` is not a complete checkpoint (missing or inconsistent weights), or None; a link leaving the
    run raises."""
    folder, shown = real_inside(candidate.path, run_real, candidate.name), candidate.name
    if not candidate.is_dir and candidate.name.endswith(".safetensors"):
        return safetensors_problem(folder, shown)
    if not candidate.is_dir:  # a Lightning .ckpt is a pickle: never opened beyond its size while choosing
        return None if folder.stat().st_size > 0 else "empty file"
    # Weights sit at the top (Trainer, PEFT, accelerate) or one level down (diffusers: unet/, vae/).
    found_weights = False
    for sub in [folder, *sorted(p for p in folder.iterdir() if p.is_dir() and not p.is_symlink())]:
        indexed: set[str] = set()
        for index in sorted(sub.glob("*.index.json")):
            label = f"{shown}/{index.relative_to(folder)}"
            data = read_small_json(real_inside(index, run_real, label), label)
            weight_map = data.get("weight_map") if isinstance(data, dict) else None
            if not isinstance(weight_map, dict) or not weight_map:
                return f"{index.name} has no weight_map"
            for shard in sorted({str(v) for v in weight_map.values()}):
                # Shards live beside their index; anything else is a hostile or broken index.
                if "/" in shard or "\\" in shard or shard in ("", ".", ".."):
                    return f"{index.name} names unsafe shard path {shard!r}"
                if not (sub / shard).exists() and not (sub / shard).is_symlink():
                    return f"shard {shard} named in {index.name} is missing"
                indexed.add(shard)
        for weights in sorted(sub.iterdir()):
            inside = weights.relative_to(folder)
            label = f"{shown}/{inside}"
            if weights.name.endswith(".safetensors"):
                if problem := safetensors_problem(real_inside(weights, run_real, label), label):
                    return f"{inside}: {problem}"
                found_weights = True
            elif _PICKLED_WEIGHTS.fullmatch(weights.name):
                found_weights = found_weights or real_inside(weights, run_real, label).stat().st_size > 0
        found_weights = found_weights or bool(indexed)
    return None if found_weights else "no weights (model.safetensors, shards with their index, or adapter weights)"


def _classify(name: str, is_dir: bool) -> tuple[int | None, str] | None:
    if is_dir:
        match = _HF_DIR.fullmatch(name)
        return (int(match.group(1)), "step") if match else None
    for pattern, unit in ((_KOHYA_STEP, "step"), (_KOHYA_EPOCH, "epoch"), (_LIGHTNING_STEP, "step")):
        if match := pattern.fullmatch(name):
            return int(match.group(1)), unit
    return (None, "alias") if name == _LIGHTNING_LAST else None


def find_candidates(run_dir: Path) -> tuple[list[Candidate], list[str]]:
    """Every checkpoint in the run, and the names of tmp-checkpoint-* folders (sorted by name)."""
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
    if (nested := run_dir / "checkpoints").is_dir() and not nested.is_symlink():
        with os.scandir(nested) as entries:
            for entry in entries:
                if (match := _ACCELERATE_DIR.fullmatch(entry.name)) and entry.is_dir():
                    found.append(Candidate(entry.name, Path(entry.path), int(match.group(1)), "index", True))
    found.sort(key=lambda c: (c.number is None, c.number or 0, c.name))  # numerically: 500 before 1000
    seen: dict[tuple[str, int | None], str] = {}  # two names for one step (checkpoint-7, checkpoint-007): ambiguous
    for cand in found:
        if (first := seen.setdefault((cand.unit, cand.number), cand.name)) != cand.name and cand.number is not None:
            raise UsageError(
                f"checkpoints '{first}' and '{cand.name}' are both {cand.unit} {cand.number}",
                hint="rename or remove one of them",
            )
    return found, sorted(temporary)


def _complete(candidate: Candidate, run_real: Path, why: str, reason: str, metric: float | None = None) -> Selection:
    """``candidate`` chosen for ``reason``; refused if it is incomplete, saying ``why`` it was asked for."""
    if problem := candidate_problem(candidate, run_real):
        raise UsageError(f"checkpoint '{candidate.name}' ({why}) is incomplete: {problem}")
    return Selection(candidate.name, candidate.path, not candidate.is_dir, reason, (), metric)


def _select_latest(candidates: list[Candidate], temporary: list[str], run_real: Path) -> Selection:
    """The highest-numbered complete checkpoint, and those passed over on the way."""
    numbered = [c for c in candidates if c.number is not None]
    if len(units := {c.unit for c in numbered}) > 1:
        raise UsageError(
            f"the run mixes {' and '.join(sorted(units))} numbering; 'latest' is ambiguous",
            hint="name the checkpoint with --checkpoint NAME",
        )
    skipped = [LeftOut(name, name, "temporary folder left by an interrupted save") for name in temporary]
    for cand in sorted(numbered, key=lambda c: c.number or 0, reverse=True):
        try:
            problem = candidate_problem(cand, run_real)
        except UnsafePathError as exc:
            problem = exc.message  # not packed, so not fatal: just not a candidate
        if problem is None:
            reason = f"latest: highest complete {cand.unit} ({cand.number})"
            return Selection(cand.name, cand.path, not cand.is_dir, reason, tuple(skipped))
        skipped.append(LeftOut(cand.name, cand.name, problem))
    detail = "; ".join(f"{s.checkpoint}: {s.reason}" for s in skipped) or "none found"
    raise UsageError(f"no complete checkpoint in the run ({detail})")


def _select_best(run_dir: Path, candidates: list[Candidate], run_real: Path) -> Selection:
    """The checkpoint trainer_state.json calls best, by the basename of its (often stale) path."""
    # The trainer_state.json with the highest global_step (ordered by step, never by mtime).
    places = [(run_dir, "")] + [(c.path, f"{c.name}/") for c in candidates if c.is_dir and c.unit == "step"]
    found: list[tuple[int, int, str, Any]] = []  # (step, -order: ties go to the run's own file, shown, state)
    for order, (folder, prefix) in enumerate(places):
        shown, path = f"{prefix}trainer_state.json", folder / "trainer_state.json"
        if path.is_file():
            state = read_small_json(real_inside(path, run_real, shown), shown)
            step = state.get("global_step") if isinstance(state, dict) else None
            found.append((step if isinstance(step, int) else -1, -order, shown, state))
    if not found:
        raise UsageError("no trainer_state.json in the run or its checkpoints; cannot tell which is best")
    _, _, shown, state = max(found, key=lambda item: item[:2])
    recorded = state.get("best_model_checkpoint") if isinstance(state, dict) else None
    best_step = state.get("best_global_step") if isinstance(state, dict) else None
    if isinstance(recorded, str) and recorded.strip("/\\"):
        # The path is as it was at training time (absolute, other machine): only its last part counts.
        name = re.split(r"[/\\]", recorded.rstrip("/\\"))[-1]
        source = f"best_model_checkpoint {recorded!r} in {shown}"
    elif isinstance(best_step, int) and not isinstance(best_step, bool):
        name = f"checkpoint-{best_step}"
        source = f"best_global_step {best_step} in {shown}"
    else:
        raise UsageError(f"{shown} records no best checkpoint (no best_model_checkpoint or best_global_step)")
    if (chosen := next((c for c in candidates if c.name == name and c.is_dir and c.unit == "step"), None)) is None:
        raise UsageError(f"{source} does not name a checkpoint folder in the run")
    metric = state.get("best_metric")
    try:  # NaN, infinities (trainers write them), ints past float range and non-numbers count as no metric
        metric_value = float(metric) if math.isfinite(metric) and not isinstance(metric, bool) else None
    except (TypeError, OverflowError):
        metric_value = None
    reason = f"best: {source}" + (f", best_metric {metric_value}" if metric_value is not None else "")
    return _complete(chosen, run_real, "best", reason, metric_value)


def select_checkpoint(run_dir: Path, spec: str | None) -> Selection:
    """Resolve ``--checkpoint`` (NAME, latest, best, step:N or None) to what gets packed."""
    run_real = Path(os.path.realpath(run_dir))
    if spec is None:
        return Selection(None, run_dir, False, "the run's own files, without checkpoint folders")
    candidates, temporary = find_candidates(run_dir)
    if spec == "latest":
        return _select_latest(candidates, temporary, run_real)
    if spec == "best":
        return _select_best(run_dir, candidates, run_real)
    if spec.startswith("step:"):
        if not (match := re.fullmatch(r"step:([0-9]+)", spec)):
            raise UsageError(f"bad checkpoint {spec!r}: step:N takes ASCII digits")
        step = int(match.group(1))
        if (chosen_step := next((c for c in candidates if c.unit == "step" and c.number == step), None)) is None:
            steps = sorted(c.number for c in candidates if c.unit == "step" and c.number is not None)
            near = min(steps, key=lambda n: (abs(n - step), n)) if steps else None
            raise UsageError(
                f"no checkpoint for step {step} (steps present: {', '.join(map(str, steps)) or 'none'})",
                hint=f"did you mean step:{near}?" if near is not None else None,
            )
        return _complete(chosen_step, run_real, spec, f"step {step} requested")
    name = spec.removesuffix("/")
    if "/" in name or "\\" in name or name in ("", ".", ".."):
        raise UsageError(f"checkpoint {spec!r} must be a name in the run, not a path")
    if (named := next((c for c in candidates if c.name == name), None)) is None:
        if _TMP_DIR.fullmatch(name):
            raise UsageError(f"'{name}' is a temporary folder left by an interrupted save, not a checkpoint")
        close = difflib.get_close_matches(name, ["latest", "best", *(c.name for c in candidates)], n=1, cutoff=0.6)
        hint = f"did you mean {close[0]}?" if close else None
        if (run_dir / name).exists() or (_classify(name, True) is None and _classify(name, False) is None):
            raise UsageError(f"'{name}' is not a checkpoint name (known: {KNOWN_PATTERNS})", hint=hint)
        raise UsageError(f"no checkpoint '{name}' in the run", hint=hint)
    return _complete(named, run_real, "named", "named on the command line")


@dataclass(frozen=True)
class PackOptions:
    """Everything ``mdl pack`` was asked to do."""

    run_dir: Path
    output: Path | None  # None: "<run>[-<checkpoint>].zip" in cwd; Path("-"): stream to stdout
    checkpoint: str | None  # NAME | "latest" | "best" | "step:N" | None
    profile: str = "deploy"
    with_logs: bool = False
    includes: tuple[str, ...] = ()
    excludes: tuple[str, ...] = ()
    compress: str = "auto"
    dry_run: bool = False
    source_date_epoch: int | None = None
    cwd: Path = Path()
    force: bool = False  # replace an archive already at the output path (never silently, as get and unpack)


def role_of(arcname: str) -> str:
    """The manifest role of a file: weights, config, tokenizer, logs, pickle or other."""
    name = arcname.rsplit("/", 1)[-1]
    suffix = PurePosixPath(name).suffix.lower()
    logs = arcname.startswith("logs/") or name == "trainer_state.json" or name.startswith("events.out.tfevents.")
    roles = (
        (logs or _matches(name, LOG_PATTERNS), "logs"),
        (suffix in _PICKLE_SUFFIXES, "pickle"),
        (suffix in _WEIGHT_SUFFIXES, "weights"),
        (name in _TOKENIZER_NAMES or name.startswith("vocab."), "tokenizer"),
        (suffix in (".json", ".yaml", ".yml", ".toml") or name == "README.md", "config"),
    )
    return next((role for matched, role in roles if matched), "other")


def _matches(name: str, patterns: Iterable[str]) -> bool:
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)


@dataclass
class _Collector:
    """Walks folders with lstat, applying the profile and the link rules, into candidate files."""

    run_real: Path
    deny: tuple[str, ...]
    excludes: tuple[str, ...]
    compress: str  # auto, none or deflate
    top_skip: tuple[str, ...]  # names left out at the top (checkpoint folders, for a whole-run pack)
    # (arcname, file): a special file's is the note said if it is selected, an empty folder's ("a/b/") is None
    found: list[tuple[str, SourceFile | str | None]] = field(default_factory=list)
    left_out: list[LeftOut] = field(default_factory=list)

    def add_file(self, real: Path, st: os.stat_result, arcname: str, shown: str) -> None:
        """Record one file (or a special file, to skip with a note if it ends up selected)."""
        if not stat.S_ISREG(st.st_mode):
            kind = "FIFO" if stat.S_ISFIFO(st.st_mode) else "socket" if stat.S_ISSOCK(st.st_mode) else "device"
            self.found.append((arcname, f"skipping {kind} '{shown}': not a regular file"))
            return
        suffix = PurePosixPath(arcname).suffix.lower()
        squeeze = self.compress == "deflate" or (self.compress == "auto" and suffix not in STORED_SUFFIXES)
        src = SourceFile(
            arcname, real, shown, st.st_size, st.st_mtime_ns, st.st_dev, st.st_ino, role_of(arcname), squeeze
        )
        self.found.append((arcname, src))

    def walk(self, folder: Path, arc_prefix: str, shown_prefix: str, above: frozenset[Path] = frozenset()) -> None:
        """Collect everything under ``folder`` (a real path), following in-run links by their targets."""
        from huggingface_hub.utils import filter_repo_objects  # type: ignore[attr-defined]

        ancestors = above | {folder}
        with os.scandir(folder) as it:
            entries = sorted(it, key=lambda e: e.name)
        if not entries and arc_prefix:  # an empty folder is packed as zip -r packs it: an entry of its own
            self.found.append((arc_prefix, None))
        for entry in entries:
            arcname, shown = arc_prefix + entry.name, shown_prefix + entry.name
            denied, whole_run = _matches(entry.name, self.deny), not arc_prefix and _matches(entry.name, self.top_skip)
            if denied or whole_run:
                slash = "/" if entry.is_dir(follow_symlinks=False) else ""
                reason = DENY_REASON if denied else RUN_LEVEL_REASON
                self.left_out.append(LeftOut(shown + slash, None if denied else entry.name, reason))
                continue
            path = Path(entry.path)
            st = entry.stat(follow_symlinks=False)
            if stat.S_ISLNK(st.st_mode):
                if any(filter_repo_objects([arcname, arcname + "/"], allow_patterns=list(self.excludes))):
                    # Left out by --exclude: never resolved, but listed so the pattern counts as matching.
                    self.found.append((arcname, f"skipping symlink '{shown}': excluded"))
                    continue
                path = real_inside(path, self.run_real, shown)
                st = path.stat()
            if stat.S_ISDIR(st.st_mode):
                if path in ancestors or folder.is_relative_to(path):
                    raise UnsafePathError(f"symlink cycle: '{shown}' leads back to a folder that contains it")
                self.walk(path, arcname + "/", shown + "/", ancestors)
            else:
                self.add_file(path, st, arcname, shown)


def collect_files(
    selection: Selection, *, run_dir: Path, options: PackOptions, progress: Progress
) -> tuple[list[SourceFile], list[str], list[LeftOut]]:
    """The files and empty folders ("a/b/") to pack, sorted, and what the profile or a whole-run pack left out."""
    from huggingface_hub.utils import filter_repo_objects  # type: ignore[attr-defined]  # heavy: only when packing

    run_real = Path(os.path.realpath(run_dir))
    deny = DEPLOY_DENY if options.profile == "deploy" else ()
    top_skip = _RUN_LEVEL_SKIP if selection.checkpoint is None else ()
    collector = _Collector(run_real, deny, options.excludes, options.compress, top_skip)
    if selection.checkpoint is None:
        collector.walk(run_real, "", "")
        if options.with_logs:
            progress.note("--with-logs: the run's logs are already part of a whole-run archive")
    else:
        shown = selection.root.relative_to(run_dir).as_posix()
        root = real_inside(selection.root, run_real, shown)
        if selection.single_file:
            collector.add_file(root, root.stat(), selection.root.name, shown)
        else:
            collector.walk(root, "", shown + "/")
        if options.with_logs:
            before = len(collector.found)
            with os.scandir(run_real) as it:
                for entry in sorted(it, key=lambda e: e.name):
                    if _matches(entry.name, LOG_PATTERNS) and entry.is_file():
                        real = real_inside(Path(entry.path), run_real, entry.name)
                        collector.add_file(real, real.stat(), f"logs/{entry.name}", entry.name)
            if len(collector.found) == before:
                progress.note("--with-logs: no logs found in the run")
    # --include/--exclude with huggingface_hub's rules; a pattern matching nothing is an error.
    names = [arcname for arcname, _ in collector.found]
    for flag, pattern in [("--include", p) for p in options.includes] + [("--exclude", p) for p in options.excludes]:
        if not any(filter_repo_objects(names, allow_patterns=[pattern])):
            raise UsageError(f"{flag} {pattern!r} matches no file")
    files: list[SourceFile] = []
    folders: list[str] = []
    patterns = {"allow_patterns": list(options.includes) or None, "ignore_patterns": list(options.excludes) or None}
    for arcname, src in filter_repo_objects(collector.found, key=lambda item: item[0], **patterns):
        if src is None:
            folders.append(arcname)
        elif isinstance(src, str):
            progress.note(src)  # opening a FIFO would hang
        else:
            files.append(src)
    files.sort(key=lambda f: f.arcname)
    folders.sort()
    model = any(  # training_args.bin and optimizer state are no model
        f.role == "weights" or (f.role == "pickle" and not _matches(f.arcname.rsplit("/", 1)[-1], DEPLOY_DENY))
        for f in files
    )
    if selection.checkpoint is None and not options.includes and not model and (found := find_candidates(run_dir)[0]):
        # A whole-run pack with no weights of its own, only checkpoints: packing it would leave the model out.
        names = [c.name for c in found]
        listed = ", ".join([*names[:3], "…", *names[-2:]] if len(names) > 6 else names)
        raise UsageError(
            f"{run_dir.name} has no final model, only checkpoints ({listed}): the whole run would pack none of them",
            hint="choose one: --checkpoint latest (or best, step:N, a name)",
        )
    # Refuse names that mdl unpack (or Windows/macOS) would reject or fold together.
    seen: dict[str, str] = {}
    named = [(src.arcname, src.shown) for src in files] + [(name.rstrip("/"), name) for name in folders]
    for arcname, shown in named:
        if problem := name_problem(arcname):
            raise UnsafePathError(f"cannot pack '{shown}': {problem}")
        if arcname == MANIFEST_NAME:
            raise UsageError(f"cannot pack '{shown}': {MANIFEST_NAME} is reserved for mdl's manifest")
        if (key := collision_key(arcname)) in seen:
            raise UnsafePathError(f"cannot pack both '{seen[key]}' and '{shown}': their names collide")
        seen[key] = shown
    twins = first_twin(arcname for arcname, _ in named)
    if twins is not None:  # unpack refuses such an archive: a case-insensitive filesystem merges the two
        raise UnsafePathError(
            f"cannot pack both '{twins[0]}' and '{twins[1]}': they differ only in case or Unicode form"
        )
    return files, folders, collector.left_out


@dataclass(frozen=True)
class PackedFile:
    """One file in the archive (path relative to its top-level folder)."""

    path: str
    size: int
    sha256: str | None
    role: str

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class PackResult:
    """What ``mdl pack`` wrote (or, with dry_run, would write)."""

    archive: str
    size: int | None
    sha256: str | None
    checkpoint: str | None
    reason: str
    files: tuple[PackedFile, ...]
    dry_run: bool = False
    top_folder: str = ""
    profile: str = "deploy"
    skipped: tuple[LeftOut, ...] = ()
    folders: tuple[str, ...] = ()  # empty folders packed as entries of their own ("a/b/")
    metric: float | None = None
    notes: tuple[str, ...] = ()
    left_out: tuple[LeftOut, ...] = ()  # what the profile (or a whole-run pack) left out, and why

    def to_json(self) -> dict[str, Any]:
        """The fields in order; ``skipped``: the checkpoints ``latest`` passed over, then what was left out."""
        doc = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "left_out"}
        doc["skipped"] = [asdict(left) for left in (*self.skipped, *self.left_out)]
        return doc | {"files": [asdict(f) for f in self.files], "folders": [*self.folders], "notes": [*self.notes]}


def _refuse_output_in_run(path: str, run_real: Path, shown: str) -> None:
    """The archive must not be written inside the run it packs: it could replace the very files it reads."""
    candidate = Path(path)
    for real in (Path(os.path.realpath(candidate)), Path(os.path.realpath(candidate.parent)) / candidate.name):
        if real == run_real or real.is_relative_to(run_real):
            raise UnsafePathError(
                f"output {shown} is inside the run folder {run_real}", hint="write the archive outside the run"
            )


def pack_run(options: PackOptions, *, progress: Progress, stdout: BinaryIO | None = None) -> PackResult:
    """Choose, check and pack a run or one of its checkpoints into a deterministic zip."""
    for what, value, known in (("profile", options.profile, PROFILES), ("compression", options.compress, COMPRESSIONS)):
        if value not in known:
            raise UsageError(f"unknown {what} {value!r} (choose {', '.join(known)})")
    if not (run_dir := options.cwd / options.run_dir).is_dir():
        raise UsageError(f"run folder not found: {options.run_dir}")
    run_real = Path(os.path.realpath(run_dir))
    to_stdout = options.output is not None and str(options.output) == "-"
    if to_stdout and stdout is None and not options.dry_run:
        raise UsageError("-o - needs a stdout stream")

    try:
        selection = select_checkpoint(run_dir, options.checkpoint)
        label = run_real.name
        if selection.checkpoint:
            base, dot, suffix = selection.checkpoint.rpartition(".")
            single = selection.single_file and dot and suffix in ("safetensors", "ckpt")
            label += "-" + (base if single else selection.checkpoint)
        if to_stdout:
            target, stem = None, label
        else:
            target = options.cwd / (options.output if options.output is not None else f"{label}.zip")
            stem = target.name[:-4] if target.name.lower().endswith(".zip") else target.name
        if problem := name_problem(stem):  # the archive's stem is its top-level folder
            raise UsageError(f"archive name {stem!r} cannot be its top-level folder: {problem}")
        if target is not None:
            _refuse_output_in_run(str(target), run_real, f"'{target}'")
        elif stdout is not None and (found := stdout_file(stdout)) is not None and found[1] is not None:
            _refuse_output_in_run(found[1], run_real, f"'-' (stdout is {found[1]})")
        files, folders, left_out = collect_files(selection, run_dir=run_dir, options=options, progress=progress)
    except OSError as exc:  # anything the checks above did not foresee still names the file (exit 7, not 1)
        raise LocalFSError(f"cannot read '{exc.filename}': {exc.strerror}") from exc
    except RecursionError:
        raise UsageError(f"the folders in {options.run_dir} are nested too deeply to pack") from None
    if not files:
        raise UsageError("nothing to pack: no file is left after the checkpoint, profile and patterns")
    if target is not None:  # an archive already there is replaced only with --force (renamed over, atomically)
        if target.is_dir():
            raise UsageError(f"output {target} is a folder, not a file")  # -o names a file, as get's -o does
        kind = not_a_file(target)  # lstat: a FIFO is never opened (-o - streams to a pipe)
        if kind is not None and not (options.force and kind in REPLACEABLE):
            hint = "use --force to replace it, or -o - to write to a pipe" if kind in REPLACEABLE else None
            raise not_a_file_error(target, kind, where="output ", hint=hint)
        if not options.force and (target.exists() or target.is_symlink()):
            raise UsageError(f"'{target}' already exists", hint="use --force to replace it")

    meta: dict[str, Any] = {
        "format": "mdl-pack",
        "version": 1,
        "mdl_version": __version__,
        "run": run_real.name,
        "checkpoint": selection.checkpoint,
        "reason": selection.reason,
        "skipped": [{"checkpoint": s.checkpoint, "reason": s.reason} for s in selection.skipped],
        "metric": selection.metric,
        "profile": options.profile,
        "with_logs": options.with_logs,
        "include": list(options.includes),
        "exclude": list(options.excludes),
    }
    result_args: dict[str, Any] = {
        "archive": "-" if target is None else str(target),
        "checkpoint": selection.checkpoint,
        "reason": selection.reason,
        "top_folder": stem,
        "profile": options.profile,
        "skipped": selection.skipped,
        "metric": selection.metric,
        "left_out": tuple(left_out),
        "folders": tuple(folders),
    }
    if options.dry_run:
        listed = tuple(PackedFile(f.arcname, f.size, None, f.role) for f in files)
        return PackResult(size=None, sha256=None, files=listed, dry_run=True, **result_args)

    progress = ArchiveProgress(progress, target.name if target is not None else None)
    contents = Contents(stem, meta, files, folders, options.source_date_epoch)
    if target is None:
        assert stdout is not None
        size, digest, hashes = write_stdout_archive(stdout, contents, progress)
    else:
        size, digest, hashes = write_file_archive(target, contents, progress)
    packed = tuple(PackedFile(f.arcname, f.size, hashes[f.arcname], f.role) for f in files)
    return PackResult(size=size, sha256=digest, files=packed, **result_args)
