"""The archive face of the Python API: ``pack`` a trained run or checkpoint, ``unpack`` an archive safely.
Re-exported by :mod:`mdl.api` (``from mdl import pack, unpack``); typed, keyword-only, prints nothing."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from mdl.api.inputs import checked
from mdl.errors import UsageError
from mdl.progress import NullProgress, Progress

if TYPE_CHECKING:
    from mdl.archive import PackResult, UnpackResult

StrPath = str | os.PathLike[str]


@checked
def pack(
    run_dir: StrPath,
    *,
    output: StrPath | None = None,
    stream: BinaryIO | None = None,
    checkpoint: str | None = None,
    profile: str = "deploy",
    with_logs: bool = False,
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    compress: str = "auto",
    dry_run: bool = False,
    force: bool = False,
    environ: Mapping[str, str] | None = None,
    progress: Progress | None = None,
) -> PackResult:
    """Zip a trained model or one checkpoint (``NAME``, ``latest``, ``best``, ``step:N``) deterministically.

    The archive goes to ``output`` (default ``<run>[-<checkpoint>].zip`` here), or into ``stream``; a file
    already there is a UsageError unless ``force`` replaces it (atomically: the new archive is renamed over it).
    ``$SOURCE_DATE_EPOCH`` in ``environ`` fixes the timestamps.
    """
    from mdl.archive import PackOptions, pack_run

    if stream is not None and output is not None and str(output) != "-":
        raise UsageError("pack: give output or stream, not both")
    if stream is None and output is not None and str(output) == "-":
        raise UsageError("pack: output '-' needs a stream to write the archive to")
    epoch = (os.environ if environ is None else environ).get("SOURCE_DATE_EPOCH")
    try:
        source_date_epoch = int(epoch) if epoch else None
    except ValueError:
        raise UsageError(f"SOURCE_DATE_EPOCH: expected a whole number of seconds, got {epoch!r}") from None
    options = PackOptions(
        run_dir=Path(run_dir),
        output=Path("-") if stream is not None else (Path(output) if output is not None else None),
        checkpoint=checkpoint,
        profile=profile,
        with_logs=with_logs,
        includes=tuple(include),
        excludes=tuple(exclude),
        compress=compress,
        dry_run=dry_run,
        source_date_epoch=source_date_epoch,
        cwd=Path.cwd(),
        force=force,
    )
    return pack_run(options, progress=progress or NullProgress(), stdout=stream)


@checked
def unpack(
    archive: StrPath | BinaryIO,
    *,
    dest: StrPath | None = None,
    force: bool = False,
    max_ratio: float | None = None,
    progress: Progress | None = None,
) -> UnpackResult:
    """Extract an archive into ``dest`` (default: here) safely and verify it against its manifest;
    ``force`` replaces what its top-level entries name; ``max_ratio`` (default 200, ``math.inf`` turns the
    check off) caps how far entries and the whole archive may expand.

    ``archive`` may be a binary stream (``sys.stdin.buffer``): it is spooled to a hidden temp file on the
    destination's filesystem first (a zip is read from its end), and that file is removed whatever happens."""
    from mdl.archive import DEFAULT_MAX_RATIO, unpack_archive, unpack_stream

    folder = Path(dest) if dest is not None else None
    ratio = DEFAULT_MAX_RATIO if max_ratio is None else max_ratio
    if not isinstance(archive, str | os.PathLike):
        return unpack_stream(
            archive, dest=folder, force=force, progress=progress or NullProgress(), cwd=Path.cwd(), max_ratio=ratio
        )
    return unpack_archive(
        Path(archive),
        dest=folder,
        force=force,
        progress=progress or NullProgress(),
        cwd=Path.cwd(),
        max_ratio=ratio,
    )
