"""Where files come from: the Hub, direct URLs, ``hf://`` URIs, serverless job outputs and mirrors.
Turns a catalog entry or a one-off source into ``RemoteFile``s with what is known about them."""

from mdl.sources.hub import Hub, resolve_token
from mdl.sources.joboutput import (
    InlineCheck,
    InlineFile,
    UrlFile,
    check_expected_sha256,
    check_inline,
    check_url,
    decoded_size,
    name_key,
    parse_job_output,
    write_inline,
)
from mdl.sources.mirrors import mirror_urls
from mdl.sources.resolve import RemoteFile, ResolvedModel, resolve_file, resolve_model, with_probe

__all__ = [
    "Hub",
    "InlineCheck",
    "InlineFile",
    "RemoteFile",
    "ResolvedModel",
    "UrlFile",
    "check_expected_sha256",
    "check_inline",
    "check_url",
    "decoded_size",
    "mirror_urls",
    "name_key",
    "parse_job_output",
    "resolve_file",
    "resolve_model",
    "resolve_token",
    "with_probe",
    "write_inline",
]
