"""The destination on disk: layouts (plain, hf-cache), per-model records, per-file locks, free space, partial files,
and the offline views of it (list, show, verify, clean)."""

from mdl.store.cleaning import CleanedFile, clean
from mdl.store.confined import open_file, read_bytes, rename, rmdir_empty, unlink, write_atomic
from mdl.store.filelocks import HeldLocks
from mdl.store.filesystem import (
    REPLACEABLE,
    DirSyncs,
    creatable_problem,
    fsync_dir,
    hash_file,
    kind_of,
    not_a_file,
    not_a_file_error,
    stat_file,
)
from mdl.store.inventory import (
    LocalFile,
    ModelStatus,
    PinnedFile,
    file_state,
    list_models,
    model_status,
    unplaced_path,
)
from mdl.store.layout import HubFileRef, Layout, Placement, adopt_cached, hub_source, parse_hub_source
from mdl.store.records import ExpectedFile, FileRecord, ModelRecord, now_iso
from mdl.store.states import (
    FILE_STATES,
    INSTALLED,
    MISSING,
    MODIFIED,
    MODIFIED_MAYBE,
    PARTIAL,
    RECHECK_REASON,
    UNRECORDED,
    judge,
)
from mdl.store.store import Store
from mdl.store.verifying import verify_file, verify_models
from mdl.store.views import CleanReport, ModelInfo, ModelList

__all__ = [
    "FILE_STATES",
    "INSTALLED",
    "MISSING",
    "MODIFIED",
    "MODIFIED_MAYBE",
    "PARTIAL",
    "RECHECK_REASON",
    "REPLACEABLE",
    "UNRECORDED",
    "CleanReport",
    "CleanedFile",
    "DirSyncs",
    "ExpectedFile",
    "FileRecord",
    "HeldLocks",
    "HubFileRef",
    "Layout",
    "LocalFile",
    "ModelInfo",
    "ModelList",
    "ModelRecord",
    "ModelStatus",
    "PinnedFile",
    "Placement",
    "Store",
    "adopt_cached",
    "clean",
    "creatable_problem",
    "file_state",
    "fsync_dir",
    "hash_file",
    "hub_source",
    "judge",
    "kind_of",
    "list_models",
    "model_status",
    "not_a_file",
    "not_a_file_error",
    "now_iso",
    "open_file",
    "parse_hub_source",
    "read_bytes",
    "rename",
    "rmdir_empty",
    "stat_file",
    "unlink",
    "unplaced_path",
    "verify_file",
    "verify_models",
    "write_atomic",
]
