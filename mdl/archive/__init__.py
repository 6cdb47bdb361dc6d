"""Packing a training run into a deterministic zip (checkpoint and file selection, the streaming writer) and
unpacking archives safely (hostile names refused before a byte is written), from a file or a pipe."""

from mdl.archive.entries import DEFAULT_MAX_RATIO
from mdl.archive.packer import PackResult, pack_run
from mdl.archive.selection import PackOptions
from mdl.archive.swap import recover as recover_unpacks
from mdl.archive.unpack import UnpackResult, unpack_archive, unpack_stream

__all__ = [
    "DEFAULT_MAX_RATIO",
    "PackOptions",
    "PackResult",
    "UnpackResult",
    "pack_run",
    "recover_unpacks",
    "unpack_archive",
    "unpack_stream",
]
