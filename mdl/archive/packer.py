"""``mdl pack``: choose a checkpoint and its files, check the archive's name and place, and write
a deterministic zip (signed with ``--sign``).
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, BinaryIO

from mdl.archive._checkpoints import LeftOut, Selection, select_checkpoint
from mdl.archive._zipwriter import (
    Contents,
    SourceFile,
    stdout_file,
    write_file_archive,
    write_stdout_archive,
)
from mdl.archive.collect import COMPRESSIONS, PROFILES, Collected, PackOptions, collect_files
from mdl.archive.unpack import PIPE_HINT
from mdl.archive.zipread import MANIFEST_NAME
from mdl.errors import LocalFSError, UnsafePathError, UsageError
from mdl.paths import name_problem, quoted, shown_name
from mdl.progress import ArchiveProgress, Progress
from mdl.report import Done
from mdl.signing.library import sign_digests
from mdl.signing.statement import SIGNATURE_FILE, skipped_by_signature
from mdl.store.filesystem import REPLACEABLE, not_a_file, not_a_file_error
from mdl.version import __version__

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
class PackResult(Done):
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
        doc = (
            {"ok": True} | asdict(self) | {"skipped": skipped_entries(self.skipped, self.left_out)}
        )
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
                f"output {shown} is inside the run folder {shown_name(run_real)}",
                hint="write the archive outside the run",
            )


@dataclass(frozen=True)
class _Plan:
    """What pack decided before writing a byte: the checkpoint, the archive (``target`` None:
    stdout) and its top-level folder, the files, and the key that signs them."""

    options: PackOptions
    run_name: str
    selection: Selection
    target: Path | None
    stem: str
    collected: Collected
    key: Path | None

    def meta(self) -> dict[str, Any]:
        """The manifest's fields, besides its files."""
        options, selection = self.options, self.selection
        return {
            "format": "mdl-pack",
            "version": 1,
            "mdl_version": __version__,
            "run": self.run_name,
            "checkpoint": selection.checkpoint,
            "reason": self.collected.reason,
            "skipped": skipped_entries(self.collected.passed_over, tuple(self.collected.left_out)),
            "metric": selection.metric,
            "profile": options.profile,
            "with_logs": options.with_logs,
            "include": list(options.includes),
            "exclude": list(options.excludes),
        }

    def result(self, notes: tuple[str, ...]) -> PackResult:
        """The result of a dry run: the files listed without their sha256."""
        selection, collected = self.selection, self.collected
        return PackResult(
            archive="-" if self.target is None else str(self.target),
            size=None,
            sha256=None,
            checkpoint=selection.checkpoint,
            reason=collected.reason,
            files=tuple(PackedFile(f.arcname, f.size, None, f.role) for f in collected.files),
            dry_run=True,
            top_folder=self.stem,
            profile=self.options.profile,
            skipped=collected.passed_over,
            folders=tuple(collected.folders),
            metric=selection.metric,
            notes=notes,
            left_out=tuple(collected.left_out),
            signature=None if self.key is None else SIGNATURE_FILE,
        )


@dataclass
class _Signer:
    """Signs the packed files' sha256 into model.sig once the writer has them, keeping what it
    made."""

    key: Path
    model_name: str
    made: list[bytes] = field(default_factory=list)

    def __call__(self, hashes: dict[str, str]) -> bytes:
        digests = {
            path: sha256
            for path, sha256 in hashes.items()
            if not skipped_by_signature(path, UNSIGNED)
        }
        made = sign_digests(
            digests, private_key=self.key, model_name=self.model_name, ignore_paths=UNSIGNED
        )
        self.made.append(made)
        return made


def pack_run(
    options: PackOptions, *, progress: Progress, stdout: BinaryIO | None = None
) -> PackResult:
    """Choose, check and pack a run or one of its checkpoints into a deterministic zip."""
    plan = _plan(options, _checked_inputs(options, stdout), progress=progress, stdout=stdout)
    if plan.target is not None:
        _refuse_existing_output(plan.target, force=options.force)
    notes = tuple(plan.collected.notes)
    unsigned = _unsigned_note(plan.collected.files)
    if plan.key is not None and unsigned is not None:
        progress.note(unsigned)
        notes += (unsigned,)
    dry = plan.result(notes)
    return dry if options.dry_run else _write(plan, dry, progress, stdout)


def _checked_inputs(options: PackOptions, stdout: BinaryIO | None) -> Path:
    """The run folder, once the profile, compression, stdout and signing key are known good."""
    for what, value, known in (
        ("profile", options.profile, PROFILES),
        ("compression", options.compress, COMPRESSIONS),
    ):
        if value not in known:
            raise UsageError(f"unknown {what} {value!r} (choose {', '.join(known)})")
    run_dir = options.cwd / options.run_dir
    if not run_dir.is_dir():
        raise UsageError(f"run folder not found: {shown_name(options.run_dir)}")
    if _to_stdout(options) and not options.dry_run:
        _refuse_stdout(stdout)
    # a key model_signing cannot use is exit 2 before anything is written: sign nothing with it
    if (key := _key(options)) is not None:
        sign_digests({}, private_key=key, model_name=key.stem)
    return run_dir


def _refuse_stdout(stdout: BinaryIO | None) -> None:
    """``-o -`` writes the zip's bytes to stdout: never onto a terminal (as curl refuses, and as
    ``mdl unpack -`` refuses one on stdin)."""
    if stdout is None:
        raise UsageError("-o - needs a stdout stream")
    with contextlib.suppress(AttributeError, ValueError):  # a closed or odd stream says so later
        if stdout.isatty():
            raise UsageError(
                "-o - would write the archive's binary bytes onto a terminal",
                hint=f"write it to a file with -o FILE, or into a pipe: {PIPE_HINT}",
            )


def _to_stdout(options: PackOptions) -> bool:
    """Whether ``-o -`` streams the archive to stdout."""
    return options.output is not None and str(options.output) == "-"


def _key(options: PackOptions) -> Path | None:
    """The ``--sign`` key's path, or None."""
    return None if options.sign is None else options.cwd / options.sign


def _plan(
    options: PackOptions, run_dir: Path, *, progress: Progress, stdout: BinaryIO | None
) -> _Plan:
    """The checkpoint, the archive's name and the files; a filesystem error names the file (exit
    7, not 1), and nothing left to pack is exit 2."""
    run_real = Path(os.path.realpath(run_dir))
    try:
        selection = select_checkpoint(run_dir, options.checkpoint)
        target, stem = _archive_name(options, selection, run_real.name)
        _refuse_writing_into_run(target, stdout, run_real)
        collected = collect_files(selection, run_dir=run_dir, options=options, progress=progress)
    # anything the checks above did not foresee still names the file (exit 7, not 1)
    except OSError as exc:
        raise LocalFSError(f"cannot read {quoted(str(exc.filename))}: {exc.strerror}") from exc
    except RecursionError:
        raise UsageError(
            f"the folders in {shown_name(options.run_dir)} are nested too deeply to pack"
        ) from None
    if not collected.files:
        raise UsageError(
            "nothing to pack: no file is left after the checkpoint, profile and patterns"
        )
    return _Plan(options, run_real.name, selection, target, stem, collected, _key(options))


def _archive_name(
    options: PackOptions, selection: Selection, run_name: str
) -> tuple[Path | None, str]:
    """Where the archive goes (None: stdout) and its stem, which is its top-level folder:
    ``<run>[-<checkpoint>]`` unless ``-o`` names it."""
    label = run_name + _checkpoint_label(selection)
    if _to_stdout(options):
        target, stem = None, label
    else:
        target = options.cwd / (options.output if options.output is not None else f"{label}.zip")
        stem = target.name[:-4] if target.name.lower().endswith(".zip") else target.name
    if problem := name_problem(stem):
        raise UsageError(f"archive name {quoted(stem)} cannot be its top-level folder: {problem}")
    return target, stem


def _checkpoint_label(selection: Selection) -> str:
    """``-<checkpoint>`` for the archive's name (a single file's without its suffix), or ""."""
    if not selection.checkpoint:
        return ""
    base, dot, suffix = selection.checkpoint.rpartition(".")
    single = selection.single_file and dot and suffix in ("safetensors", "ckpt")
    return "-" + (base if single else selection.checkpoint)


def _refuse_writing_into_run(target: Path | None, stdout: BinaryIO | None, run_real: Path) -> None:
    """The output file, or the regular file stdout is, must not be inside the run."""
    if target is not None:
        _refuse_output_in_run(str(target), run_real, quoted(target))
        return
    found = stdout_file(stdout) if stdout is not None else None
    if found is not None and found[1] is not None:
        _refuse_output_in_run(found[1], run_real, f"'-' (stdout is {shown_name(found[1])})")


def _refuse_existing_output(target: Path, *, force: bool) -> None:
    """An archive already there is replaced only with --force (renamed over, atomically); a
    folder, a FIFO or a device never."""
    if target.is_dir():
        # -o names a file, as get's -o does
        raise UsageError(f"output {shown_name(target)} is a folder, not a file")
    kind = not_a_file(target)  # lstat: a FIFO is never opened (-o - streams to a pipe)
    if kind is not None and not (force and kind in REPLACEABLE):
        hint = (
            "use --force to replace it, or -o - to write to a pipe" if kind in REPLACEABLE else None
        )
        raise not_a_file_error(target, kind, where="output ", hint=hint)
    if not force and (target.exists() or target.is_symlink()):
        raise UsageError(f"{quoted(target)} already exists", hint="use --force to replace it")


def _unsigned_note(files: list[SourceFile]) -> str | None:
    """What --sign's signature leaves out of the packed files (git's), or None."""
    if not (unsigned := [f.arcname for f in files if skipped_by_signature(f.arcname, UNSIGNED)]):
        return None
    return (
        f"--sign: {SIGNATURE_FILE} leaves out {', '.join(unsigned)} (model_signing never signs"
        " git's files)"
    )


def _write(plan: _Plan, dry: PackResult, progress: Progress, stdout: BinaryIO | None) -> PackResult:
    """Write the archive (signed with the plan's key) and say what it holds, with each sha256."""
    target, files = plan.target, plan.collected.files
    named = ArchiveProgress(progress, target.name if target is not None else None)
    signer = None if plan.key is None else _Signer(plan.key, plan.stem)
    contents = Contents(
        plan.stem,
        plan.meta(),
        files,
        plan.collected.folders,
        plan.options.source_date_epoch,
        signer,
    )
    if target is None:
        assert stdout is not None
        size, digest, hashes = write_stdout_archive(stdout, contents, named)
    else:
        force = plan.options.force
        size, digest, hashes = write_file_archive(target, contents, named, force=force)
    packed = tuple(PackedFile(f.arcname, f.size, hashes[f.arcname], f.role) for f in files)
    made = signer.made if signer is not None else []
    packed += tuple(
        PackedFile(SIGNATURE_FILE, len(data), hashes[SIGNATURE_FILE], "signature") for data in made
    )
    return replace(dry, size=size, sha256=digest, files=packed, dry_run=False)
