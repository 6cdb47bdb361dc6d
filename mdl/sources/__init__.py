"""Where files come from (the Hub, URLs, hf://, s3://, job outputs, mirrors): RemoteFiles and what is known of them."""

from mdl.sources.hub import Hub, resolve_token
from mdl.sources.hubpages import hub_page_as_hf, read_hub_pages
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
    read_job_output,
    write_inline,
)
from mdl.sources.netrc import NetrcLogins, read_netrc
from mdl.sources.resolve import (
    RemoteFile,
    ResolvedModel,
    listing_clash,
    mirror_targets,
    resolve_file,
    resolve_model,
    with_probe,
)
from mdl.sources.s3 import (
    S3Prefix,
    S3Signer,
    parse_s3_prefix,
    s3_client,
    s3_error,
    s3_errors,
    s3_reason,
    s3_source,
    sha256_of_head,
)

__all__ = [
    "Hub",
    "InlineCheck",
    "InlineFile",
    "NetrcLogins",
    "RemoteFile",
    "ResolvedModel",
    "S3Prefix",
    "S3Signer",
    "UrlFile",
    "check_expected_sha256",
    "check_inline",
    "check_url",
    "decoded_size",
    "hub_page_as_hf",
    "listing_clash",
    "mirror_targets",
    "name_key",
    "parse_job_output",
    "parse_s3_prefix",
    "read_hub_pages",
    "read_job_output",
    "read_netrc",
    "resolve_file",
    "resolve_model",
    "resolve_token",
    "s3_client",
    "s3_error",
    "s3_errors",
    "s3_reason",
    "s3_source",
    "sha256_of_head",
    "with_probe",
    "write_inline",
]
