"""Bytes over HTTP: the one client and redirect follower, and the engine that fetches one file into a ``.part``
over parallel ranges with a resume record, verifies it and finishes atomically."""

from mdl.transfer.connection import NetTransport, origin, set_body_deadline
from mdl.transfer.engine import Engine
from mdl.transfer.http import (
    RETRYABLE_STATUSES,
    Credentials,
    RetryableError,
    RetryPolicy,
    TokenGuard,
    UnreachableError,
    body_excerpt,
    follow,
    hub_auth_hint,
    make_client,
    retry_after_seconds,
    transport_error,
)
from mdl.transfer.job import EngineConfig, Identity, Opening, RetryLog, TransferJob, TransferResult
from mdl.transfer.replies import Probed, probe
from mdl.transfer.resume import discard_partial, saved_progress
from mdl.transfer.scheduling import SPLIT_THRESHOLD, RateLimiter

__all__ = [
    "RETRYABLE_STATUSES",
    "SPLIT_THRESHOLD",
    "Credentials",
    "Engine",
    "EngineConfig",
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
    "discard_partial",
    "follow",
    "hub_auth_hint",
    "make_client",
    "origin",
    "probe",
    "retry_after_seconds",
    "saved_progress",
    "set_body_deadline",
    "transport_error",
]
