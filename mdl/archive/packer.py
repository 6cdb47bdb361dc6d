"""``mdl pack``: choose a run's files (profile, link rules, special files, patterns, logs, roles)
and zip them.
"""

from __future__ import annotations

import fnmatch
import functools
import os
import re
import stat
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO

from mdl.archive.checkpoints import (
    LeftOut,
    Selection,
    find_candidates,
    real_inside,
    select_checkpoint,
)
from mdl.archive.zipread import MANIFEST_NAME, collision_key, first_twin, name_problem
from mdl.archive.zipwriter import (
    Contents,
    SourceFile,
    stdout_file,
    write_file_archive,
    write_stdout_archive,
)
from mdl.errors import LocalFSError, UnsafePathError, UsageError
from mdl.paths import PICKLE_SUFFIXES, WEIGHT_SUFFIXES, reserved_by_mdl
from mdl.progress import ArchiveProgress, Progress
from mdl.signing import SIGNATURE_FILE, sign_digests, skipped_by_signature
from mdl.store import REPLACEABLE, not_a_file, not_a_file_error
from mdl.version import __version__

PROFILES = ("deploy", "full")
COMPRESSIONS = ("auto", "none", "deflate")
# Training state that a deployment never needs (left out by --profile deploy); matched on names.
DEPLOY_DENY: tuple[str, ...] = (
    "optimizer.*",
    "scheduler.*",
    "scaler.pt",
    "rng_state*.pth",
    "random_states_*.pkl",
)
DEPLOY_DENY += ("sampler.bin", "training_args.bin", "global_step*", "*-state")
# Checkpoint folders are left out when the whole run (no --checkpoint) is packed.
STATE_REASON = "mdl's own state (records, partial downloads): never packed"
_RUN_LEVEL_SKIP = ("checkpoint-*", "tmp-checkpoint-*", "checkpoints")
DENY_REASON = "training state, not needed to deploy (profile deploy; --profile full keeps it)"
RUN_LEVEL_REASON = (
    "a checkpoint: the whole run packs its own final model (--checkpoint NAME packs one)"
)
# --with-logs: these at the top of the run, everything under logs/, TensorBoard's event files under
# runs/.
LOG_PATTERNS = (
    "*.log",
    "progress.json",
    "metrics*.json",
    "trainer_state.json",
    "*_results.json",
    "metrics.csv",
)
LOG_FOLDER, EVENTS_FOLDER, EVENTS_PREFIX = "logs", "runs", "events.out.tfevents."
_LOGS_LOOKED_FOR = (
    f"{', '.join(LOG_PATTERNS)} at its top, {LOG_FOLDER}/, {EVENTS_FOLDER}/**/{EVENTS_PREFIX}*"
)
_SHOWN_LOGS = 8
# Tensors, pickles and what is compressed already are stored: deflate saves ~7-8 % on fp16/fp32
# weights at 40-120x the time (measured).
_COMPRESSED = frozenset(
    {".zip", ".gz", ".bz2", ".xz", ".zst", ".7z", ".png", ".jpg", ".jpeg", ".webp"}
)
STORED_SUFFIXES = PICKLE_SUFFIXES | WEIGHT_SUFFIXES | _COMPRESSED
_TOKENIZER_NAMES = frozenset(
    {
        "tokenizer.json",
        "tokenizer_config.json",
        "special_tokens_map.json",
        "added_tokens.json",
        "merges.txt",
    }
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
    # replace an archive already at the output path (never silently, as get and unpack)
    force: bool = False
    # an EC private key (PEM): model.sig over the packed files goes in with them
    sign: Path | None = None


def role_of(arcname: str) -> str:
    """The manifest role of a file: weights, config, tokenizer, logs, pickle or other."""
    name = arcname.rsplit("/", 1)[-1]
    suffix = PurePosixPath(name).suffix.lower()
    logs = (
        arcname.startswith("logs/")
        or name == "trainer_state.json"
        or name.startswith("events.out.tfevents.")
    )
    roles = (
        (logs or _matches(name, LOG_PATTERNS), "logs"),
        (suffix in PICKLE_SUFFIXES, "pickle"),
        (suffix in WEIGHT_SUFFIXES, "weights"),
        (name in _TOKENIZER_NAMES or name.startswith("vocab."), "tokenizer"),
        (suffix in (".json", ".yaml", ".yml", ".toml") or name == "README.md", "config"),
    )
    return next((role for matched, role in roles if matched), "other")


def _matches(name: str, patterns: Iterable[str]) -> bool:
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)


@functools.lru_cache(maxsize=256)
def _glob_regex(pattern: str) -> tuple[re.Pattern[str], bool]:
    """A ``--include``/``--exclude`` pattern as git and rsync read it, and whether it names only
    folders (``dir/``). ``*`` and ``?`` stay within one folder, ``**`` crosses folders (``**/`` may
    be none), ``[...]`` is a class; a pattern with no ``/`` but at its end matches a name at any
    depth; one with a ``/`` (``logs/*``, ``/x``) is anchored at the run's top."""
    folders_only = pattern.endswith("/")
    body = pattern.rstrip("/")
    anchored = "/" in body
    body = body.removeprefix("/")
    out, i = [], 0
    while i < len(body):
        if body.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif body.startswith("**", i):
            out.append(".*")
            i += 2
        elif body[i] == "[" and (end := body.find("]", i + 2)) > 0:
            inner = body[i + 1 : end]
            out.append(
                "["
                + ("^" + inner[1:] if inner.startswith("!") else inner).replace("\\", "\\\\")
                + "]"
            )
            i = end + 1
        else:
            out.append({"*": "[^/]*", "?": "[^/]"}.get(body[i], re.escape(body[i])))
            i += 1
    return re.compile(("" if anchored else "(?:.*/)?") + "".join(out)), folders_only


def glob_matches(path: str, pattern: str) -> bool:
    """Whether ``pattern`` (git/rsync rules, see ``_glob_regex``) takes ``path`` (a ``/`` path in
    the run): the file itself, or a folder it is in (``logs`` and ``logs/`` take all of ``logs/``).
    """
    regex, folders_only = _glob_regex(pattern)
    parts = path.strip("/").split("/")
    itself = not folders_only or path.endswith("/")  # an empty folder's path ends in "/"
    return any(
        regex.fullmatch("/".join(parts[:depth]))
        for depth in range(1, len(parts) + (1 if itself else 0))
    )


def _any_glob(paths: Iterable[str], patterns: Iterable[str]) -> bool:
    return any(glob_matches(path, pattern) for path in paths for pattern in patterns)


# arcname, path in the run, and the file (see _Collector.found)
Found = tuple[str, str, "SourceFile | str | None"]


@dataclass
class _Collector:
    """Walks folders with lstat, applying the profile and the link rules, into candidate files."""

    run_real: Path
    deny: tuple[str, ...]
    excludes: tuple[str, ...]
    compress: str  # auto, none or deflate
    # names left out at the top (checkpoint folders, for a whole-run pack)
    top_skip: tuple[str, ...]
    # Only the files (and links) whose path in the run this takes are looked at; empty folders then
    # are not packed.
    keep: Callable[[str], bool] | None = None
    # (arcname, path in the run, file): a special file's is the note said if it is selected, an
    # empty folder's ("a/b/") is None
    found: list[Found] = field(default_factory=list)
    left_out: list[LeftOut] = field(default_factory=list)

    def add_file(self, real: Path, st: os.stat_result, arcname: str, shown: str) -> None:
        """Record one file (or a special file, to skip with a note if it ends up selected)."""
        if not stat.S_ISREG(st.st_mode):
            kind = (
                "FIFO"
                if stat.S_ISFIFO(st.st_mode)
                else "socket"
                if stat.S_ISSOCK(st.st_mode)
                else "device"
            )
            self.found.append((arcname, shown, f"skipping {kind} '{shown}': not a regular file"))
            return
        suffix = PurePosixPath(arcname).suffix.lower()
        squeeze = self.compress == "deflate" or (
            self.compress == "auto" and suffix not in STORED_SUFFIXES
        )
        src = SourceFile(
            arcname,
            real,
            shown,
            st.st_size,
            st.st_mtime_ns,
            st.st_dev,
            st.st_ino,
            role_of(arcname),
            squeeze,
        )
        self.found.append((arcname, shown, src))

    def walk(
        self, folder: Path, arc_prefix: str, shown_prefix: str, above: frozenset[Path] = frozenset()
    ) -> None:
        """Collect everything under ``folder`` (a real path), following in-run links by their
        targets.
        """
        ancestors = above | {folder}
        with os.scandir(folder) as it:
            entries = sorted(it, key=lambda e: e.name)
        # an empty folder is packed as zip -r packs it
        if not entries and arc_prefix and self.keep is None:
            self.found.append((arc_prefix, shown_prefix, None))
        for entry in entries:
            arcname, shown = arc_prefix + entry.name, shown_prefix + entry.name
            denied, whole_run = (
                _matches(entry.name, self.deny),
                not arc_prefix and _matches(entry.name, self.top_skip),
            )
            # `mdl get -d RUN` keeps RUN/.mdl/: mdl's state, never a run's
            reserved = reserved_by_mdl(entry.name)
            if reserved or denied or whole_run:
                slash = "/" if entry.is_dir(follow_symlinks=False) else ""
                reason = STATE_REASON if reserved else DENY_REASON if denied else RUN_LEVEL_REASON
                self.left_out.append(
                    LeftOut(shown + slash, None if reserved or denied else entry.name, reason)
                )
                continue
            path = Path(entry.path)
            st = entry.stat(follow_symlinks=False)
            if not stat.S_ISDIR(st.st_mode) and self.keep is not None and not self.keep(shown):
                continue  # not asked for: never resolved nor opened
            if stat.S_ISLNK(st.st_mode):
                if _any_glob((arcname, shown), self.excludes):
                    # Left out by --exclude: never resolved, but listed so the pattern counts as
                    # matching.
                    self.found.append((arcname, shown, f"skipping symlink '{shown}': excluded"))
                    continue
                path = real_inside(path, self.run_real, shown)
                st = path.stat()
            if stat.S_ISDIR(st.st_mode):
                if path in ancestors or folder.is_relative_to(path):
                    raise UnsafePathError(
                        f"symlink cycle: '{shown}' leads back to a folder that contains it"
                    )
                self.walk(path, arcname + "/", shown + "/", ancestors)
            else:
                self.add_file(path, st, arcname, shown)


def _is_log(path: str) -> bool:
    """Whether a path in the run is one of its logs (``--with-logs``)."""
    top, _, rest = path.partition("/")
    if not rest:
        return _matches(top, LOG_PATTERNS)
    return top == LOG_FOLDER or (
        top == EVENTS_FOLDER and path.rsplit("/", 1)[-1].startswith(EVENTS_PREFIX)
    )


def _log_arcname(path: str) -> str:
    """Where a log goes in a checkpoint's archive: under ``logs/`` (a file of the run's ``logs/``
    keeps its path).
    """
    return path if path.startswith(LOG_FOLDER + "/") else f"{LOG_FOLDER}/{path}"


def _run_logs(run_real: Path, options: PackOptions) -> list[Found]:
    """The run's logs, each under its name in the archive: its top's log files, ``logs/``,
    TensorBoard's events.
    """
    logs = _Collector(run_real, (), options.excludes, options.compress, (), keep=_is_log)
    with os.scandir(run_real) as it:
        for entry in sorted(it, key=lambda e: e.name):
            name, arcname = entry.name, _log_arcname(entry.name)
            if name in (LOG_FOLDER, EVENTS_FOLDER) and entry.is_dir(follow_symlinks=False):
                logs.walk(Path(entry.path), _log_arcname(name + "/"), name + "/")
            elif _is_log(name) and not entry.is_dir():
                if entry.is_symlink() and _any_glob([name, arcname], options.excludes):
                    logs.found.append((arcname, name, f"skipping symlink '{name}': excluded"))
                    continue
                real = real_inside(Path(entry.path), run_real, name)
                logs.add_file(real, real.stat(), arcname, name)
    return logs.found


def _inside(selection: Selection, run_dir: Path, path: str) -> str | None:
    """``path`` (in the run) as named in a checkpoint's archive if it is part of the chosen
    checkpoint, else None.
    """
    if selection.checkpoint is None:
        return path
    shown = selection.root.relative_to(run_dir).as_posix()
    if selection.single_file:
        return selection.root.name if path == shown else None
    return path.removeprefix(shown + "/") if path.startswith(shown + "/") else None


def collect_files(
    selection: Selection, *, run_dir: Path, options: PackOptions, progress: Progress
) -> tuple[list[SourceFile], list[str], list[LeftOut], list[str]]:
    """The files and empty folders ("a/b/") to pack, sorted, what the profile or a whole-run pack
    left out, and the notes said on the way. The chosen checkpoint (or the whole run), then
    ``--with-logs``, then what ``--include`` adds from anywhere in the run (the profile still
    applies); ``--exclude`` wins over all of them."""
    run_real = Path(os.path.realpath(run_dir))
    deny = DEPLOY_DENY if options.profile == "deploy" else ()
    top_skip = _RUN_LEVEL_SKIP if selection.checkpoint is None else ()
    collector = _Collector(run_real, deny, options.excludes, options.compress, top_skip)
    notes: list[str] = []
    if selection.checkpoint is None:
        collector.walk(run_real, "", "")
    else:
        shown = selection.root.relative_to(run_dir).as_posix()
        root = real_inside(selection.root, run_real, shown)
        if selection.single_file:
            collector.add_file(root, root.stat(), selection.root.name, shown)
        else:
            collector.walk(root, "", shown + "/")
    candidates = list(collector.found)
    if options.with_logs:
        logs = (
            [item for item in collector.found if _is_log(item[1])]
            if selection.checkpoint is None
            else []
        )
        if selection.checkpoint is not None:
            candidates += (logs := _run_logs(run_real, options))
        taken = [
            a
            for a, p, src in logs
            if isinstance(src, SourceFile) and not _any_glob((a, p), options.excludes)
        ]
        if not taken:
            notes.append(f"--with-logs: no logs found in the run (looked for {_LOGS_LOOKED_FOR})")
        else:
            more = len(taken) - _SHOWN_LOGS
            listed = ", ".join(taken[:_SHOWN_LOGS]) + (f" and {more} more" if more > 0 else "")
            whole = (
                " (a whole-run archive holds them already)" if selection.checkpoint is None else ""
            )
            notes.append(
                f"--with-logs: {len(taken)} log file{'s' if len(taken) != 1 else ''}{whole}:"
                f" {listed}"
            )
    # added from anywhere in the run, named as in the chosen checkpoint when part of it
    if options.includes:
        adding = _Collector(
            run_real,
            deny,
            options.excludes,
            options.compress,
            (),
            lambda path: _any_glob((path,), options.includes),
        )
        adding.walk(run_real, "", "")
        for _, path, src in adding.found:
            arcname = _inside(selection, run_dir, path) or path
            if isinstance(src, SourceFile) and src.arcname != arcname:
                src = replace(src, arcname=arcname, role=role_of(arcname))
            candidates.append((arcname, path, src))
        for pattern in options.includes:
            if not any(glob_matches(path, pattern) for _, path, _ in adding.found):
                hint = (
                    "the deploy profile leaves training state out: --profile full keeps it"
                    if deny
                    else None
                )
                raise UsageError(f"--include {pattern!r} matches no file", hint=hint)
    # a pattern matching nothing is a typo, said rather than ignored
    for pattern in options.excludes:
        if not any(
            glob_matches(arcname, pattern) or glob_matches(path, pattern)
            for arcname, path, _ in candidates
        ):
            raise UsageError(f"--exclude {pattern!r} matches no file")
    files: list[SourceFile] = []
    folders: list[str] = []
    # arcname -> the path in the run it comes from: the first wins
    chosen: dict[str, tuple[str, object]] = {}
    for arcname, path, src in candidates:
        if _any_glob((arcname, path), options.excludes):
            continue
        identity = (src.device, src.inode) if isinstance(src, SourceFile) else path
        # the same file found twice, or another file for one name
        if (key := arcname.rstrip("/")) in chosen:
            first, first_identity = chosen[key]
            if isinstance(src, SourceFile) and first_identity != identity:
                notes.append(
                    f"not packing '{path}': '{first}' is packed under its name, '{arcname}'"
                )
            continue
        chosen[key] = (path, identity)
        if src is None:
            folders.append(arcname)
        elif isinstance(src, str):
            notes.append(src)  # opening a FIFO would hang
        else:
            files.append(src)
    for note in notes:
        progress.note(note)
    files.sort(key=lambda f: f.arcname)
    folders.sort()
    model = any(  # training_args.bin and optimizer state are no model
        f.role == "weights"
        or (f.role == "pickle" and not _matches(f.arcname.rsplit("/", 1)[-1], DEPLOY_DENY))
        for f in files
    )
    if (
        selection.checkpoint is None
        and not options.includes
        and not model
        and (found := find_candidates(run_dir)[0])
    ):
        # A whole-run pack with no weights of its own, only checkpoints: packing it would leave the
        # model out.
        names = [c.name for c in found]
        listed = ", ".join([*names[:3], "…", *names[-2:]] if len(names) > 6 else names)
        raise UsageError(
            f"{run_dir.name} has no final model, only checkpoints ({listed}): the whole run would"
            " pack none of them",
            hint="choose one: --checkpoint latest (or best, step:N, a name)",
        )
    # Refuse names that mdl unpack (or Windows/macOS) would reject or fold together.
    seen: dict[str, str] = {}
    named = [(src.arcname, src.shown) for src in files] + [
        (name.rstrip("/"), name) for name in folders
    ]
    for arcname, shown in named:
        if problem := name_problem(arcname):
            raise UnsafePathError(f"cannot pack '{shown}': {problem}")
        if arcname == MANIFEST_NAME:
            raise UsageError(
                f"cannot pack '{shown}': {MANIFEST_NAME} is reserved for mdl's manifest"
            )
        if options.sign is not None and collision_key(arcname.split("/", 1)[0]) == collision_key(
            SIGNATURE_FILE
        ):
            raise UsageError(
                f"cannot pack '{shown}' with --sign: {SIGNATURE_FILE} is the signature --sign"
                " writes",
                hint=(
                    f"--exclude {arcname.split('/', 1)[0]} leaves it out (the new signature covers"
                    " every packed file)"
                ),
            )
        if (key := collision_key(arcname)) in seen:
            raise UnsafePathError(
                f"cannot pack both '{seen[key]}' and '{shown}': their names collide"
            )
        seen[key] = shown
    # Unpack refuses such an archive: a case-insensitive filesystem merges the two.
    if (twins := first_twin(arcname for arcname, _ in named)) is not None:
        raise UnsafePathError(
            f"cannot pack both '{twins[0]}' and '{twins[1]}': they differ only in case or Unicode"
            " form"
        )
    return files, folders, collector.left_out, notes


# What pack's signature leaves out: mdl's manifest (it lists model.sig, so it cannot be signed by
# it) and, as model_signing always does, git's files (packed, never signed).
UNSIGNED = (MANIFEST_NAME,)


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
    # model.sig's path in the top-level folder when the archive is signed
    signature: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The fields in order; ``skipped``: the checkpoints ``latest`` passed over, then what
        was left out.
        """
        doc = asdict(self) | {"skipped": skipped_entries(self.skipped, self.left_out)}
        del doc["left_out"]
        return doc | {key: list(doc[key]) for key in ("files", "folders", "notes")}


def skipped_entries(
    passed_over: tuple[LeftOut, ...], left_out: tuple[LeftOut, ...]
) -> list[dict[str, Any]]:
    """What is not in the archive, as the manifest and ``--json`` both list it: checkpoints
    passed over, then files.
    """
    return [asdict(left) for left in (*passed_over, *left_out)]


def _refuse_output_in_run(path: str, run_real: Path, shown: str) -> None:
    """The archive must not be written inside the run it packs: it could replace the very files
    it reads.
    """
    candidate = Path(path)
    for real in (
        Path(os.path.realpath(candidate)),
        Path(os.path.realpath(candidate.parent)) / candidate.name,
    ):
        if real == run_real or real.is_relative_to(run_real):
            raise UnsafePathError(
                f"output {shown} is inside the run folder {run_real}",
                hint="write the archive outside the run",
            )


def pack_run(
    options: PackOptions, *, progress: Progress, stdout: BinaryIO | None = None
) -> PackResult:
    """Choose, check and pack a run or one of its checkpoints into a deterministic zip."""
    for what, value, known in (
        ("profile", options.profile, PROFILES),
        ("compression", options.compress, COMPRESSIONS),
    ):
        if value not in known:
            raise UsageError(f"unknown {what} {value!r} (choose {', '.join(known)})")
    if not (run_dir := options.cwd / options.run_dir).is_dir():
        raise UsageError(f"run folder not found: {options.run_dir}")
    run_real = Path(os.path.realpath(run_dir))
    to_stdout = options.output is not None and str(options.output) == "-"
    if to_stdout and stdout is None and not options.dry_run:
        raise UsageError("-o - needs a stdout stream")
    key = None if options.sign is None else options.cwd / options.sign
    # a key model_signing cannot use is exit 2 before anything is written: sign nothing with it
    if key is not None:
        sign_digests({}, private_key=key, model_name=key.stem)

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
            target = options.cwd / (
                options.output if options.output is not None else f"{label}.zip"
            )
            stem = target.name[:-4] if target.name.lower().endswith(".zip") else target.name
        if problem := name_problem(stem):  # the archive's stem is its top-level folder
            raise UsageError(f"archive name {stem!r} cannot be its top-level folder: {problem}")
        if target is not None:
            _refuse_output_in_run(str(target), run_real, f"'{target}'")
        elif (
            stdout is not None
            and (found := stdout_file(stdout)) is not None
            and found[1] is not None
        ):
            _refuse_output_in_run(found[1], run_real, f"'-' (stdout is {found[1]})")
        files, folders, left_out, notes = collect_files(
            selection, run_dir=run_dir, options=options, progress=progress
        )
    # anything the checks above did not foresee still names the file (exit 7, not 1)
    except OSError as exc:
        raise LocalFSError(f"cannot read '{exc.filename}': {exc.strerror}") from exc
    except RecursionError:
        raise UsageError(
            f"the folders in {options.run_dir} are nested too deeply to pack"
        ) from None
    if not files:
        raise UsageError(
            "nothing to pack: no file is left after the checkpoint, profile and patterns"
        )
    # an archive already there is replaced only with --force (renamed over, atomically)
    if target is not None:
        if target.is_dir():
            # -o names a file, as get's -o does
            raise UsageError(f"output {target} is a folder, not a file")
        kind = not_a_file(target)  # lstat: a FIFO is never opened (-o - streams to a pipe)
        if kind is not None and not (options.force and kind in REPLACEABLE):
            hint = (
                "use --force to replace it, or -o - to write to a pipe"
                if kind in REPLACEABLE
                else None
            )
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
        "skipped": skipped_entries(selection.skipped, tuple(left_out)),
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
        "notes": tuple(notes),
        "signature": None if key is None else SIGNATURE_FILE,
    }
    if key is not None and (
        unsigned := [f.arcname for f in files if skipped_by_signature(f.arcname, UNSIGNED)]
    ):
        note = (
            f"--sign: {SIGNATURE_FILE} leaves out {', '.join(unsigned)} (model_signing never signs"
            " git's files)"
        )
        progress.note(note)
        result_args["notes"] += (note,)
    if options.dry_run:
        listed = tuple(PackedFile(f.arcname, f.size, None, f.role) for f in files)
        return PackResult(size=None, sha256=None, files=listed, dry_run=True, **result_args)

    progress = ArchiveProgress(progress, target.name if target is not None else None)
    made: list[bytes] = []

    def sign(hashes: dict[str, str]) -> bytes:
        assert key is not None
        digests = {
            path: sha256
            for path, sha256 in hashes.items()
            if not skipped_by_signature(path, UNSIGNED)
        }
        made.append(sign_digests(digests, private_key=key, model_name=stem, ignore_paths=UNSIGNED))
        return made[-1]

    contents = Contents(
        stem, meta, files, folders, options.source_date_epoch, sign if key is not None else None
    )
    if target is None:
        assert stdout is not None
        size, digest, hashes = write_stdout_archive(stdout, contents, progress)
    else:
        size, digest, hashes = write_file_archive(target, contents, progress)
    packed = tuple(PackedFile(f.arcname, f.size, hashes[f.arcname], f.role) for f in files)
    packed += tuple(
        PackedFile(SIGNATURE_FILE, len(data), hashes[SIGNATURE_FILE], "signature") for data in made
    )
    return PackResult(size=size, sha256=digest, files=packed, **result_args)
