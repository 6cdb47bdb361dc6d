"""``mdl pack``: choose a run's files (or one checkpoint) and stream them into a deterministic zip."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, BinaryIO

from mdl.archive.checkpoints import Skipped, select_checkpoint
from mdl.archive.names import name_problem
from mdl.archive.selection import LeftOut, PackOptions, collect_files
from mdl.archive.zipwriter import Contents, local_fs_error, stdout_file, write_file_archive, write_stdout_archive
from mdl.errors import LocalFSError, UnsafePathError, UsageError
from mdl.progress import ArchiveProgress, Progress
from mdl.store import REPLACEABLE, not_a_file, not_a_file_error
from mdl.version import __version__

PROFILES = ("deploy", "full")
COMPRESSIONS = ("auto", "none", "deflate")


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
    skipped: tuple[Skipped, ...] = ()
    folders: tuple[str, ...] = ()  # empty folders packed as entries of their own ("a/b/")
    metric: float | None = None
    notes: tuple[str, ...] = ()
    left_out: tuple[LeftOut, ...] = ()  # what the profile (or a whole-run pack) left out, and why

    def to_json(self) -> dict[str, Any]:
        """The fields in order; ``skipped``: the checkpoints ``latest`` passed over, then what was left out."""
        doc = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "left_out"}
        doc["skipped"] = [{"path": s.checkpoint, "checkpoint": s.checkpoint, "reason": s.reason} for s in self.skipped]
        doc["skipped"] += [{"path": f.path, "checkpoint": f.checkpoint, "reason": f.reason} for f in self.left_out]
        return doc | {
            "files": [f.to_json() for f in self.files],
            "folders": list(self.folders),
            "notes": list(self.notes),
        }


def _refuse_output_in_run(path: str | None, run_real: Path, shown: str) -> None:
    """The archive must not be written inside the run it packs: it could replace the very files it reads."""
    if path is None:
        return
    candidate = Path(path)
    for real in (Path(os.path.realpath(candidate)), Path(os.path.realpath(candidate.parent)) / candidate.name):
        if real == run_real or real.is_relative_to(run_real):
            raise UnsafePathError(
                f"output {shown} is inside the run folder {run_real}", hint="write the archive outside the run"
            )


def pack_run(options: PackOptions, *, progress: Progress, stdout: BinaryIO | None = None) -> PackResult:
    """Choose, check and pack a run or one of its checkpoints into a deterministic zip."""
    if options.profile not in PROFILES:
        raise UsageError(f"unknown profile {options.profile!r} (choose {', '.join(PROFILES)})")
    if options.compress not in COMPRESSIONS:
        raise UsageError(f"unknown compression {options.compress!r} (choose {', '.join(COMPRESSIONS)})")
    run_dir = options.cwd / options.run_dir
    if not run_dir.is_dir():
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
        problem = name_problem(stem)
        if problem:  # the archive's stem is its top-level folder
            raise UsageError(f"archive name {stem!r} cannot be its top-level folder: {problem}")
        if target is not None:
            _refuse_output_in_run(str(target), run_real, f"'{target}'")
        elif stdout is not None and (found := stdout_file(stdout)) is not None:
            _refuse_output_in_run(found[1], run_real, f"'-' (stdout is {found[1]})")
        chosen = collect_files(selection, run_dir=run_dir, options=options, progress=progress)
    except OSError as exc:  # anything the checks above did not foresee still names the file (exit 7, not 1)
        raise LocalFSError(f"cannot read '{exc.filename}': {exc.strerror}") from exc
    except RecursionError:
        raise UsageError(f"the folders in {options.run_dir} are nested too deeply to pack") from None
    files, folders = chosen.files, chosen.folders
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
    archive_label = "-" if target is None else str(target)
    result_args: dict[str, Any] = {
        "archive": archive_label,
        "checkpoint": selection.checkpoint,
        "reason": selection.reason,
        "top_folder": stem,
        "profile": options.profile,
        "skipped": selection.skipped,
        "metric": selection.metric,
        "left_out": tuple(chosen.left_out),
        "folders": tuple(folders),
    }
    if options.dry_run:
        listed = tuple(PackedFile(f.arcname, f.size, None, f.role) for f in files)
        return PackResult(size=None, sha256=None, files=listed, dry_run=True, **result_args)

    progress = ArchiveProgress(progress, target.name if target is not None else None)
    contents = Contents(stem, meta, files, folders, options.source_date_epoch)
    if target is None:
        assert stdout is not None
        try:
            size, digest, hashes = write_stdout_archive(stdout, contents, progress)
        except OSError as exc:  # the files are opened by open_unchanged, which raises our own errors
            raise local_fs_error(exc, "to stdout") from exc
    else:
        size, digest, hashes = write_file_archive(target, contents, progress)
    packed = tuple(PackedFile(f.arcname, f.size, hashes[f.arcname], f.role) for f in files)
    return PackResult(size=size, sha256=digest, files=packed, **result_args)
