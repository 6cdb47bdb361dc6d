"""Where files come from (the Hub, URLs, hf://, s3://, job outputs, mirrors): RemoteFiles and
what is known of them.
"""

from mdl.sources.hub import Hub, hub_file_url, read_hub_pages, resolve_token, xet_token_url
from mdl.sources.joboutput import (
    InlineCheck,
    InlineFile,
    UrlFile,
    check_expected_sha256,
    read_job_output,
    write_inline,
)
from mdl.sources.netrc import NetrcLogins, read_netrc
from mdl.sources.oneoff import (
    Parsed,
    Source,
    check_payloads,
    list_repos,
    parse_sources,
    read_sources,
    save_targets,
)
from mdl.sources.resolve import (
    RemoteFile,
    ResolvedModel,
    XetRef,
    marked_signature,
    mirror_targets,
    resolve_file,
    resolve_model,
    signature_spec,
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
    sha256_of_head,
)

__all__ = [
    "Hub",
    "InlineCheck",
    "InlineFile",
    "NetrcLogins",
    "Parsed",
    "RemoteFile",
    "ResolvedModel",
    "S3Prefix",
    "S3Signer",
    "Source",
    "UrlFile",
    "XetRef",
    "check_expected_sha256",
    "check_payloads",
    "hub_file_url",
    "list_repos",
    "marked_signature",
    "mirror_targets",
    "parse_s3_prefix",
    "parse_sources",
    "read_hub_pages",
    "read_job_output",
    "read_netrc",
    "read_sources",
    "resolve_file",
    "resolve_model",
    "resolve_token",
    "s3_client",
    "s3_error",
    "s3_errors",
    "s3_reason",
    "save_targets",
    "sha256_of_head",
    "signature_spec",
    "with_probe",
    "write_inline",
    "xet_token_url",
]
