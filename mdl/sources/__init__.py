"""Where files come from (the Hub, URLs, hf://, object stores, job outputs, mirrors): RemoteFiles
and what is known of them.
"""

from typing import TYPE_CHECKING

from mdl.lazy import export_lazily

if TYPE_CHECKING:
    from mdl.sources.hub import Hub, hub_file_url, resolve_token, xet_token_url
    from mdl.sources.hubpages import read_hub_pages
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
        GetRequest,
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

__all__ = [
    "GetRequest",
    "Hub",
    "InlineCheck",
    "InlineFile",
    "NetrcLogins",
    "Parsed",
    "RemoteFile",
    "ResolvedModel",
    "Source",
    "UrlFile",
    "XetRef",
    "check_expected_sha256",
    "check_payloads",
    "hub_file_url",
    "list_repos",
    "marked_signature",
    "mirror_targets",
    "parse_sources",
    "read_hub_pages",
    "read_job_output",
    "read_netrc",
    "read_sources",
    "resolve_file",
    "resolve_model",
    "resolve_token",
    "save_targets",
    "signature_spec",
    "with_probe",
    "write_inline",
    "xet_token_url",
]

export_lazily(
    __name__,
    {
        "Hub": "hub",
        "hub_file_url": "hub",
        "read_hub_pages": "hubpages",
        "resolve_token": "hub",
        "xet_token_url": "hub",
        "InlineCheck": "joboutput",
        "InlineFile": "joboutput",
        "UrlFile": "joboutput",
        "check_expected_sha256": "joboutput",
        "read_job_output": "joboutput",
        "write_inline": "joboutput",
        "NetrcLogins": "netrc",
        "read_netrc": "netrc",
        "GetRequest": "oneoff",
        "Parsed": "oneoff",
        "Source": "oneoff",
        "check_payloads": "oneoff",
        "list_repos": "oneoff",
        "parse_sources": "oneoff",
        "read_sources": "oneoff",
        "save_targets": "oneoff",
        "RemoteFile": "resolve",
        "ResolvedModel": "resolve",
        "XetRef": "resolve",
        "marked_signature": "resolve",
        "mirror_targets": "resolve",
        "resolve_file": "resolve",
        "resolve_model": "resolve",
        "signature_spec": "resolve",
        "with_probe": "resolve",
    },
)
