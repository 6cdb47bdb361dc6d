"""Which of a run's files ``mdl pack`` takes: the profile, the link rules, special files, the
``--include``/``--exclude`` patterns, the logs, and each file's role in the manifest.
"""

from __future__ import annotations

import fnmatch
import functools
import os
import re
import stat
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath

from mdl.archive._checkpoints import LeftOut, Selection, find_candidates, real_inside
from mdl.archive._zipwriter import SourceFile
from mdl.archive.zipread import MANIFEST_NAME, collision_key, first_twin
from mdl.errors import UnsafePathError, UsageError
from mdl.paths import (
    PICKLE_SUFFIXES,
    WEIGHT_SUFFIXES,
    name_problem,
    opened,
    quoted,
    reserved_by_mdl,
    shown_name,
)
from mdl.progress import Progress
from mdl.signing.statement import SIGNATURE_FILE
from mdl.units import first_few

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
# Caches: made again when used, never what a model needs (huggingface_hub's upload_folder leaves
# .cache/huggingface out, pip and uv leave __pycache__ out). A folder by these names, or one holding
# a CACHEDIR.TAG (bford.info/cachedir: uv, pytest, ruff, mypy and tar --exclude-caches honour it).
CACHE_NAMES = frozenset({"cache", ".cache", "__pycache__"})
CACHEDIR_TAG = "CACHEDIR.TAG"
CACHEDIR_SIGNATURE = b"Signature: 8a477f597d28d172789f06886806bc55"
CACHE_REASON = "a cache, made again when used: not needed to deploy (--include 'FOLDER/' packs it)"
# A run cloned from a repo: version control's history (git's with every LFS object, a second copy
# of the weights), left out as huggingface_hub's upload_folder and pip's sdists leave .git out.
VCS_NAMES = frozenset({".git", ".hg", ".svn"})
VCS_REASON = "version control's own data, not the model (--include 'FOLDER/' packs it)"
# ... but never git's: a name with a .git component is refused by the names rule, and unpack
# leaves such entries out (git status there would run what its config names)
GIT_REASON = "version control's own data, not the model (git's is never packed)"
# an --include took some files of a folder left out: the rest of it, file by file
PARTLY_REASON = "the rest of {folder}, of which --include packs only some files"
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
# which paths in the run a collector looks at (None: all)
_Keep = Callable[[str], bool] | None


def is_cache(folder: os.DirEntry[str]) -> bool:
    """Whether a folder of the run is a cache: its name, or a CACHEDIR.TAG with the signature the
    convention asks for (its first 43 bytes, read without following a link or waiting on a FIFO)."""
    if folder.name.casefold() in CACHE_NAMES:
        return True
    try:
        with opened(Path(folder.path) / CACHEDIR_TAG) as (fd, found):
            return stat.S_ISREG(found.st_mode) and (
                os.read(fd, len(CACHEDIR_SIGNATURE)) == CACHEDIR_SIGNATURE
            )
    except OSError:
        return False


def _special_kind(mode: int) -> str:
    """What a file that is not a regular one is, as the note names it."""
    if stat.S_ISFIFO(mode):
        return "FIFO"
    return "socket" if stat.S_ISSOCK(mode) else "device"


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
    keep: _Keep = None
    # caches and version control's folders are left out (an --include's walk takes what its
    # patterns name, in them too)
    caches: bool = True
    # (arcname, path in the run, file): a special file's is the note said if it is selected, an
    # empty folder's ("a/b/") is None
    found: list[Found] = field(default_factory=list)
    left_out: list[LeftOut] = field(default_factory=list)
    # the paths in the run of the files ``keep`` did not take
    unasked: list[str] = field(default_factory=list)

    def add_file(self, real: Path, st: os.stat_result, arcname: str, shown: str) -> None:
        """Record one file (or a special file, to skip with a note if it ends up selected)."""
        if not stat.S_ISREG(st.st_mode):
            kind = _special_kind(st.st_mode)
            self.found.append(
                (arcname, shown, f"skipping {kind} {quoted(shown)}: not a regular file")
            )
            return
        suffix = PurePosixPath(arcname).suffix.lower()
        src = SourceFile(
            arcname,
            real,
            shown,
            st.st_size,
            st.st_mtime_ns,
            st.st_dev,
            st.st_ino,
            role_of(arcname),
            self.compress == "deflate"
            or (self.compress == "auto" and suffix not in STORED_SUFFIXES),
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
            if self.leaves_out(entry, shown, top=not arc_prefix):
                continue
            if (target := self.target(entry, arcname, shown)) is None:
                continue
            path, st = target
            if not stat.S_ISDIR(st.st_mode):
                self.add_file(path, st, arcname, shown)
                continue
            if path in ancestors or folder.is_relative_to(path):
                raise UnsafePathError(
                    f"symlink cycle: {quoted(shown)} leads back to a folder that contains it"
                )
            self.walk(path, arcname + "/", shown + "/", ancestors)

    def leaves_out(self, entry: os.DirEntry[str], shown: str, *, top: bool) -> bool:
        """Whether the profile, mdl's own state or a whole-run pack leaves ``entry`` out (noted in
        ``left_out``)."""
        # `mdl get -d RUN` keeps RUN/.mdl/: mdl's state, never a run's
        folder = entry.is_dir(follow_symlinks=False)
        if reserved_by_mdl(entry.name):
            checkpoint, reason = None, STATE_REASON
        elif _matches(entry.name, self.deny):
            checkpoint, reason = None, DENY_REASON
        elif top and _matches(entry.name, self.top_skip):
            checkpoint, reason = entry.name, RUN_LEVEL_REASON
        elif self.caches and folder and is_cache(entry):
            checkpoint, reason = None, CACHE_REASON
        elif self.caches and folder and entry.name in VCS_NAMES:
            checkpoint, reason = None, GIT_REASON if entry.name == ".git" else VCS_REASON
        else:
            return False
        slash = "/" if folder else ""
        self.left_out.append(LeftOut(shown + slash, checkpoint, reason))
        return True

    def target(
        self, entry: os.DirEntry[str], arcname: str, shown: str
    ) -> tuple[Path, os.stat_result] | None:
        """What ``entry`` is, by lstat, a link by its target inside the run; None when it is not
        looked at (not asked for, or a link --exclude leaves out)."""
        path = Path(entry.path)
        st = entry.stat(follow_symlinks=False)
        if not stat.S_ISDIR(st.st_mode) and self.keep is not None and not self.keep(shown):
            self.unasked.append(shown)
            return None  # not asked for: never resolved nor opened
        if not stat.S_ISLNK(st.st_mode):
            return path, st
        if _any_glob((arcname, shown), self.excludes):
            # Left out by --exclude: never resolved, but listed so the pattern counts as matching.
            self.found.append((arcname, shown, f"skipping symlink {quoted(shown)}: excluded"))
            return None
        real = real_inside(path, self.run_real, shown)
        # a link counts as its target: into a folder this pack leaves out, it is left out too
        top = real.relative_to(self.run_real).parts[:1]
        if top and _matches(top[0], self.top_skip):
            slash = "/" if real.is_dir() else ""
            self.left_out.append(LeftOut(shown + slash, top[0], RUN_LEVEL_REASON))
            return None
        return real, real.stat()


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
    # (a link into a checkpoint folder is no log: left out, as in a whole run)
    logs = _Collector(
        run_real, (), options.excludes, options.compress, _RUN_LEVEL_SKIP, keep=_is_log
    )
    with os.scandir(run_real) as it:
        for entry in sorted(it, key=lambda e: e.name):
            name, arcname = entry.name, _log_arcname(entry.name)
            if name in (LOG_FOLDER, EVENTS_FOLDER) and entry.is_dir(follow_symlinks=False):
                logs.walk(Path(entry.path), _log_arcname(name + "/"), name + "/")
            elif _is_log(name) and not entry.is_dir():
                if entry.is_symlink() and _any_glob([name, arcname], options.excludes):
                    logs.found.append((arcname, name, f"skipping symlink {quoted(name)}: excluded"))
                    continue
                real = real_inside(Path(entry.path), run_real, name)
                logs.add_file(real, real.stat(), arcname, name)
    return logs.found


def _logs_note(logs: list[Found], excludes: tuple[str, ...], *, whole_run: bool) -> str:
    """What ``--with-logs`` found: the logs packed (the first few named), or where it looked."""
    taken = [
        a for a, p, src in logs if isinstance(src, SourceFile) and not _any_glob((a, p), excludes)
    ]
    if not taken:
        return f"--with-logs: no logs found in the run (looked for {_LOGS_LOOKED_FOR})"
    listed = first_few(taken, _SHOWN_LOGS)
    whole = " (a whole-run archive holds them already)" if whole_run else ""
    plural = "s" if len(taken) != 1 else ""
    return f"--with-logs: {len(taken)} log file{plural}{whole}: {listed}"


@dataclass(frozen=True)
class Collected:
    """What pack takes from a run: the files and empty folders ("a/b/") to pack, sorted, what the
    profile or a whole-run pack left out, and the notes said on the way."""

    files: list[SourceFile]
    folders: list[str]
    left_out: list[LeftOut]
    notes: list[str]
    # the checkpoints ``latest`` passed over, none of whose files is packed
    passed_over: tuple[LeftOut, ...] = ()
    # why these files: what --checkpoint chose, and the folders left out --include packs from
    reason: str = ""


@dataclass(frozen=True)
class _Run:
    """The run being packed, what ``--checkpoint`` chose in it, and the options that pick files."""

    selection: Selection
    run_dir: Path
    real: Path
    options: PackOptions

    @property
    def deny(self) -> tuple[str, ...]:
        """The names the profile leaves out."""
        return DEPLOY_DENY if self.options.profile == "deploy" else ()

    def collector(
        self, deny: tuple[str, ...], top_skip: tuple[str, ...] = (), keep: _Keep = None
    ) -> _Collector:
        """A collector over this run with its --exclude patterns and compression."""
        options = self.options
        return _Collector(self.real, deny, options.excludes, options.compress, top_skip, keep)

    def selected(self) -> _Collector:
        """The chosen checkpoint (a folder or one file), or the whole run without checkpoints."""
        selection = self.selection
        if selection.checkpoint is None:
            collector = self.collector(self.deny, _RUN_LEVEL_SKIP)
            collector.walk(self.real, "", "")
            return collector
        collector = self.collector(self.deny)
        shown = selection.root.relative_to(self.run_dir).as_posix()
        root = real_inside(selection.root, self.real, shown)
        if selection.single_file:
            collector.add_file(root, root.stat(), selection.root.name, shown)
        else:
            collector.walk(root, "", shown + "/")
        return collector

    def logs(self, selected: list[Found]) -> list[Found]:
        """``--with-logs``: the logs among the whole run's files, or the run's, for a checkpoint."""
        if self.selection.checkpoint is None:
            return [item for item in selected if _is_log(item[1])]
        return _run_logs(self.real, self.options)

    def inside(self, path: str) -> str | None:
        """``path`` (in the run) as named in a checkpoint's archive if it is part of the chosen
        checkpoint, else None.
        """
        selection = self.selection
        if selection.checkpoint is None:
            return path
        shown = selection.root.relative_to(self.run_dir).as_posix()
        if selection.single_file:
            return selection.root.name if path == shown else None
        return path.removeprefix(shown + "/") if path.startswith(shown + "/") else None

    def included(self) -> tuple[list[Found], list[LeftOut]]:
        """What ``--include`` adds from anywhere in the run (the profile still applies, caches are
        taken), named as in the chosen checkpoint when part of it, and what its walk saw it leave
        out (the profile's, and each file it did not take); a pattern matching nothing is exit 2."""
        includes = self.options.includes
        adding = self.collector(self.deny, keep=lambda path: _any_glob((path,), includes))
        adding.caches = False
        adding.walk(self.real, "", "")
        seen = [*adding.left_out, *(LeftOut(path, None, "") for path in adding.unasked)]
        added: list[Found] = []
        for _, path, src in adding.found:
            arcname = self.inside(path) or path
            if isinstance(src, SourceFile) and src.arcname != arcname:
                src = replace(src, arcname=arcname, role=role_of(arcname))
            added.append((arcname, path, src))
        for pattern in includes:
            if not any(glob_matches(path, pattern) for _, path, _ in adding.found):
                hint = (
                    "the deploy profile leaves training state out: --profile full keeps it"
                    if self.deny
                    else None
                )
                raise UsageError(f"--include {quoted(pattern)} matches no file", hint=hint)
        return added, seen


def collect_files(
    selection: Selection, *, run_dir: Path, options: PackOptions, progress: Progress
) -> Collected:
    """The files and empty folders to pack, what was left out, and the notes said on the way. The
    chosen checkpoint (or the whole run), then ``--with-logs``, then what ``--include`` adds from
    anywhere in the run (the profile still applies); ``--exclude`` wins over all of them."""
    run = _Run(selection, run_dir, Path(os.path.realpath(run_dir)), options)
    collector = run.selected()
    candidates = list(collector.found)
    notes: list[str] = []
    if options.with_logs:
        logs = run.logs(collector.found)
        if selection.checkpoint is not None:
            candidates += logs
        notes.append(_logs_note(logs, options.excludes, whole_run=selection.checkpoint is None))
    seen: list[LeftOut] = []
    if options.includes:
        added, seen = run.included()
        candidates += added
    _refuse_unmatched_excludes(candidates, options.excludes)
    files, folders = _first_of_each_name(candidates, options.excludes, notes)
    _refuse_run_without_model(run, files, candidates)
    # before the notes name them
    _refuse_bad_names(files, folders, signing=options.sign is not None)
    for note in notes:
        progress.note(note)
    # each file by its path in the run and, reached through a link, by its target's (a checkpoint
    # folder an in-run link packs from is not said left out)
    packed = {src.shown for src in files} | {
        src.path.relative_to(run.real).as_posix() for src in files
    }
    claims = [*selection.skipped, *_other_checkpoints_included(run, packed)]
    passed_over, opened = not_packed(claims, seen, packed)
    left_out, opened_too = not_packed(collector.left_out, seen, packed)
    reason = selection.reason
    if opened := [*opened, *opened_too]:  # (the whole run's reason says "without checkpoints")
        reason += f"; --include packs from {', '.join(opened)}"
    return Collected(files, folders, left_out, notes, tuple(passed_over), reason)


def _other_checkpoints_included(run: _Run, packed: set[str]) -> list[LeftOut]:
    """The checkpoint folders besides the chosen one (and those ``latest`` passed over) that
    ``--include`` packs files from: what of them is not packed is said."""
    selection = run.selection
    if selection.checkpoint is None or not run.options.includes:
        return []
    claimed = {left.path for left in selection.skipped}
    found: list[LeftOut] = []
    for cand in find_candidates(run.run_dir)[0]:
        path = cand.path.relative_to(run.run_dir).as_posix() + "/"
        opened = any(file.startswith(path) for file in packed)
        if cand.is_dir and cand.path != selection.root and path not in claimed and opened:
            found.append(LeftOut(path, cand.name, ""))
    return found


def not_packed(
    claims: list[LeftOut], seen: list[LeftOut], packed: set[str]
) -> tuple[list[LeftOut], list[str]]:
    """What is left out, as the archive holds it (``packed``: the paths in the run of its files):
    each of ``claims`` none of whose files is packed; for a folder ``--include`` took some files
    of, what of it its walk (``seen``) found not packed, said instead, each folder none of whose
    files is packed said once. And those folders."""
    # every packed file and each folder above one: a claim in it is not true
    holding = {
        "/".join(parts[:depth])
        for parts in (path.split("/") for path in packed)
        for depth in range(1, len(parts) + 1)
    }
    kept: list[LeftOut] = []
    opened: list[str] = []
    for claim in claims:
        folder = claim.path.rstrip("/")
        if folder not in holding:
            kept.append(claim)
            continue
        opened.append(folder + "/")
        rest = PARTLY_REASON.format(folder=folder + "/")
        said: dict[str, LeftOut] = {}
        for one in seen:
            if one.path.startswith(folder + "/") and one.path.rstrip("/") not in holding:
                path = _outermost_unpacked(one.path, holding)
                reason = (one.reason if path == one.path else "") or rest
                said.setdefault(path, LeftOut(path, one.checkpoint, reason))
        kept += said.values()
    return kept, opened


def _outermost_unpacked(path: str, holding: set[str]) -> str:
    """The outermost folder above ``path`` (or ``path`` itself) that holds no packed file, as a
    left-out entry names it (a folder ends in "/")."""
    parts = path.rstrip("/").split("/")
    depth = next(d for d in range(1, len(parts) + 1) if "/".join(parts[:d]) not in holding)
    return path if depth == len(parts) else "/".join(parts[:depth]) + "/"


def _refuse_unmatched_excludes(candidates: list[Found], excludes: tuple[str, ...]) -> None:
    """A pattern matching nothing is a typo, said rather than ignored."""
    for pattern in excludes:
        if not any(
            glob_matches(arcname, pattern) or glob_matches(path, pattern)
            for arcname, path, _ in candidates
        ):
            raise UsageError(f"--exclude {quoted(pattern)} matches no file")


def _first_of_each_name(
    candidates: list[Found], excludes: tuple[str, ...], notes: list[str]
) -> tuple[list[SourceFile], list[str]]:
    """The files and empty folders not excluded, sorted, each name from the first candidate that
    has it; another file for a taken name, and a special file, are noted."""
    files: list[SourceFile] = []
    folders: list[str] = []
    # arcname -> the path in the run it comes from: the first wins
    chosen: dict[str, tuple[str, object]] = {}
    for arcname, path, src in candidates:
        if _any_glob((arcname, path), excludes):
            continue
        identity = (src.device, src.inode) if isinstance(src, SourceFile) else path
        # the same file found twice, or another file for one name
        if (key := arcname.rstrip("/")) in chosen:
            first, first_identity = chosen[key]
            if isinstance(src, SourceFile) and first_identity != identity:
                notes.append(
                    f"not packing {quoted(path)}: {quoted(first)} is packed under its name,"
                    f" {quoted(arcname)}"
                )
            continue
        chosen[key] = (path, identity)
        if src is None:
            folders.append(arcname)
        elif isinstance(src, str):
            notes.append(src)  # opening a FIFO would hang
        else:
            files.append(src)
    return sorted(files, key=lambda f: f.arcname), sorted(folders)


def _refuse_run_without_model(run: _Run, files: list[SourceFile], candidates: list[Found]) -> None:
    """A whole-run pack with no weights of its own, only checkpoints: packing it would leave the
    model out (the user's ``--exclude`` named when it is what left them out)."""
    if run.selection.checkpoint is not None or run.options.includes:
        return
    # training_args.bin and optimizer state are no model
    if any(_is_model(f) for f in files):
        return
    excludes = run.options.excludes
    if left := [
        src.shown
        for arcname, path, src in candidates
        if isinstance(src, SourceFile) and _is_model(src) and _any_glob((arcname, path), excludes)
    ]:
        raise UsageError(
            f"--exclude {' '.join(map(quoted, excludes))} leaves out the weights of"
            f" {shown_name(run.run_dir.name)} ({', '.join(map(quoted, left[:3]))}): it would pack"
            " no model",
            hint="narrow the --exclude patterns",
        )
    if not (found := find_candidates(run.run_dir)[0]):
        return
    names = [c.name for c in found]
    listed = ", ".join([*names[:3], "…", *names[-2:]] if len(names) > 6 else names)
    raise UsageError(
        f"{shown_name(run.run_dir.name)} has no final model, only checkpoints ({listed}): the whole"
        " run would pack none of them",
        hint="choose one: --checkpoint latest (or best, step:N, a name)",
    )


def _is_model(file: SourceFile) -> bool:
    """Whether a packed file is model weights (a pickle, unless it is training state)."""
    return file.role == "weights" or (
        file.role == "pickle" and not _matches(file.arcname.rsplit("/", 1)[-1], DEPLOY_DENY)
    )


def _refuse_bad_names(files: list[SourceFile], folders: list[str], *, signing: bool) -> None:
    """Refuse names that mdl unpack (or Windows/macOS) would reject or fold together."""
    seen: dict[str, str] = {}
    named = [
        *((src.arcname, src.shown) for src in files),
        *((name.rstrip("/"), name) for name in folders),
    ]
    for arcname, shown in named:
        _refuse_name(arcname, shown, signing=signing)
        if (key := collision_key(arcname)) in seen:
            raise UnsafePathError(
                f"cannot pack both {quoted(seen[key])} and {quoted(shown)}: their names collide"
            )
        seen[key] = shown
    # Unpack refuses such an archive: a case-insensitive filesystem merges the two.
    if (twins := first_twin(arcname for arcname, _ in named)) is not None:
        raise UnsafePathError(
            f"cannot pack both {quoted(twins[0])} and {quoted(twins[1])}: they differ only in case"
            " or Unicode form"
        )


def _refuse_name(arcname: str, shown: str, *, signing: bool) -> None:
    """One name unpack would reject, mdl's manifest's, or (``signing``) model.sig's."""
    if problem := name_problem(arcname, room=0):  # as unpack reads it
        raise UnsafePathError(f"cannot pack {quoted(shown)}: {problem}")
    if arcname == MANIFEST_NAME:
        raise UsageError(
            f"cannot pack {quoted(shown)}: {MANIFEST_NAME} is reserved for mdl's manifest"
        )
    top = arcname.split("/", 1)[0]
    if signing and collision_key(top) == collision_key(SIGNATURE_FILE):
        raise UsageError(
            f"cannot pack {quoted(shown)} with --sign: {SIGNATURE_FILE} is the signature --sign"
            " writes",
            hint=f"--exclude {top} leaves it out (the new signature covers every packed file)",
        )
