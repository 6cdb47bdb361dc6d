"""``mdl pack``: choose a run's files (profile, link rules, special files, patterns, logs, roles) and zip them."""

from __future__ import annotations

import fnmatch
import os
import stat
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO

from mdl.archive.checkpoints import LeftOut, Selection, find_candidates, real_inside, select_checkpoint
from mdl.archive.zipread import MANIFEST_NAME, collision_key, first_twin, name_problem
from mdl.archive.zipwriter import Contents, SourceFile, stdout_file, write_file_archive, write_stdout_archive
from mdl.errors import LocalFSError, UnsafePathError, UsageError
from mdl.progress import ArchiveProgress, Progress
from mdl.store import REPLACEABLE, not_a_file, not_a_file_error
from mdl.version import __version__

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
                if self.excludes and any(
                    filter_repo_objects([arcname, arcname + "/"], allow_patterns=list(self.excludes))
                ):
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
        return doc | {"files": [f.to_json() for f in self.files], "folders": [*self.folders], "notes": [*self.notes]}


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
