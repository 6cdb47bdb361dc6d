"""Bytes over HTTP: the one client and redirect follower, and the engine that fetches one file into
a ``.part`` over parallel ranges with a resume record, verifies it and finishes atomically."""

from mdl.transfer.body import promised, read_body
from mdl.transfer.connection import NetTransport, origin, set_read_timeout, set_reply_deadline
from mdl.transfer.engine import Engine
from mdl.transfer.http import (
    RETRYABLE_STATUSES,
    Credentials,
    RetryableError,
    RetryPolicy,
    TokenGuard,
    UnreachableError,
    body_excerpt,
    error_for_status,
    follow,
    hub_auth_hint,
    make_client,
    retry_after_seconds,
    transport_error,
)
from mdl.transfer.job import EngineConfig, Identity, Opening, RetryLog, TransferJob, TransferResult
from mdl.transfer.replies import Probed, probe
from mdl.transfer.resume import (
    BY_CHUNK,
    Hasher,
    boot_id,
    discard_partial,
    finish_part,
    job_root,
    planted,
    saved_progress,
    start_writeback,
)
from mdl.transfer.scheduling import SPLIT_THRESHOLD, RateLimiter

__all__ = [
    "BY_CHUNK",
    "RETRYABLE_STATUSES",
    "SPLIT_THRESHOLD",
    "Credentials",
    "Engine",
    "EngineConfig",
    "Hasher",
    "Identity",
    "NetTransport",
    "Opening",
    "Probed",
    "RateLimiter",
    "RetryLog",
    "RetryPolicy",
    "RetryableError",
    "TokenGuard",
    "TransferJob",
    "TransferResult",
    "UnreachableError",
    "body_excerpt",
    "boot_id",
    "discard_partial",
    "error_for_status",
    "finish_part",
    "follow",
    "hub_auth_hint",
    "job_root",
    "make_client",
    "origin",
    "planted",
    "probe",
    "promised",
    "read_body",
    "retry_after_seconds",
    "saved_progress",
    "set_read_timeout",
    "set_reply_deadline",
    "start_writeback",
    "transport_error",
]
