"""Bytes over HTTP: the one client factory, range parsing, and the engine that fetches one file into a ``.part``
over parallel ranges with a resume record, verifies it and finishes atomically."""

from mdl.transfer.codings import is_encoded
from mdl.transfer.connection import drain, set_body_deadline
from mdl.transfer.engine import Engine
from mdl.transfer.excerpt import body_excerpt
from mdl.transfer.guard import TokenGuard, shown_origin
from mdl.transfer.http import (
    RETRYABLE_STATUSES,
    Credentials,
    RetryableError,
    UnreachableError,
    error_for_status,
    follow,
    hub_auth_hint,
    make_client,
    make_transport,
    open_stream,
    origin,
    retry_after_seconds,
    transport_error,
)
from mdl.transfer.job import EngineConfig, Identity, Opening, RetryLog, TransferJob, TransferResult
from mdl.transfer.ranges import ContentRangeError, content_range_total, parse_content_range, parse_decimal
from mdl.transfer.ratelimit import RateLimiter
from mdl.transfer.replies import CARRIED, Probed, probe, validators
from mdl.transfer.resume import discard_partial, saved_progress
from mdl.transfer.retry import RetryPolicy
from mdl.transfer.scheduling import SPLIT_THRESHOLD

__all__ = [
    "CARRIED",
    "RETRYABLE_STATUSES",
    "SPLIT_THRESHOLD",
    "ContentRangeError",
    "Credentials",
    "Engine",
    "EngineConfig",
    "Identity",
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
    "content_range_total",
    "discard_partial",
    "drain",
    "error_for_status",
    "follow",
    "hub_auth_hint",
    "is_encoded",
    "make_client",
    "make_transport",
    "open_stream",
    "origin",
    "parse_content_range",
    "parse_decimal",
    "probe",
    "retry_after_seconds",
    "saved_progress",
    "set_body_deadline",
    "shown_origin",
    "transport_error",
    "validators",
]
