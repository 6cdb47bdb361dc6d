"""``pack`` and ``unpack``: a trained model or checkpoint zipped deterministically, and an archive
extracted safely."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from mdl.api._inputs import checked
from mdl.errors import UsageError
from mdl.progress import NullProgress, Progress
from mdl.setting import StrPath

if TYPE_CHECKING:
    from mdl.archive.packer import PackResult
    from mdl.archive.unpack import UnpackResult


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
    sign: StrPath | None = None,
    environ: Mapping[str, str] | None = None,
    progress: Progress | None = None,
) -> PackResult:
    """Zip a trained model or one of its checkpoints deterministically into ``output`` or
    ``stream``; ``sign``: an EC private key (PEM) that signs the packed files into the archive's
    model.sig (OpenSSF model signing)."""
    from mdl.archive.collect import PackOptions
    from mdl.archive.packer import pack_run

    options = PackOptions(
        Path(run_dir),
        pack_output(output, stream),
        checkpoint,
        profile=profile,
        with_logs=with_logs,
        includes=tuple(include),
        excludes=tuple(exclude),
        compress=compress,
        dry_run=dry_run,
        source_date_epoch=source_date_epoch(os.environ if environ is None else environ),
        cwd=Path.cwd(),
        force=force,
        sign=None if sign is None else Path(sign),
    )
    return pack_run(options, progress=progress or NullProgress(), stdout=stream)


def pack_output(output: StrPath | None, stream: BinaryIO | None) -> Path | None:
    """Where the archive goes: ``-`` for a stream, else ``output`` (None: named after the run)."""
    if stream is not None and output is not None and str(output) != "-":
        raise UsageError("pack: give output or stream, not both")
    if stream is None and output is not None and str(output) == "-":
        raise UsageError("pack: output '-' needs a stream to write the archive to")
    if stream is not None:
        return Path("-")
    return None if output is None else Path(output)


def source_date_epoch(environ: Mapping[str, str]) -> int | None:
    """``$SOURCE_DATE_EPOCH`` (reproducible builds' clock), or None when unset."""
    epoch = environ.get("SOURCE_DATE_EPOCH")
    try:
        return int(epoch) if epoch else None
    except ValueError:
        raise UsageError(
            f"SOURCE_DATE_EPOCH: expected a whole number of seconds, got {epoch!r}"
        ) from None


@checked
def unpack(
    archive: StrPath | BinaryIO,
    *,
    dest: StrPath | None = None,
    force: bool = False,
    max_ratio: float | None = None,
    signed_by: StrPath | None = None,
    progress: Progress | None = None,
) -> UnpackResult:
    """Extract an archive (a path or a binary stream) into ``dest`` safely and verify it against its
    manifest; ``signed_by``: a PEM public key its model.sig must verify with, every extracted file
    held to the signed digests."""
    from mdl.archive.unpack import unpack_archive, unpack_stream
    from mdl.archive.zipread import DEFAULT_MAX_RATIO
    from mdl.signing.statement import Trust

    unpacking = (
        partial(unpack_archive, Path(archive))
        if isinstance(archive, str | os.PathLike)
        else partial(unpack_stream, archive)
    )
    return unpacking(
        dest=Path(dest) if dest is not None else None,
        force=force,
        cwd=Path.cwd(),
        trust=None if signed_by is None else Trust(key=Path.cwd() / signed_by),
        progress=progress or NullProgress(),
        max_ratio=DEFAULT_MAX_RATIO if max_ratio is None else max_ratio,
    )
