"""Packing a training run into a deterministic zip (checkpoint and file selection, the streaming writer) and
unpacking archives safely (hostile names refused before a byte is written)."""

from mdl.archive.packer import PackOptions, PackResult, pack_run
from mdl.archive.unpack import UnpackResult, unpack_archive

__all__ = [
    "PackOptions",
    "PackResult",
    "UnpackResult",
    "pack_run",
    "unpack_archive",
]
