"""Where files come from: the Hub, direct URLs, ``hf://`` and ``s3://`` URIs, serverless job outputs and mirrors.
Turns a catalog entry or a one-off source into ``RemoteFile``s with what is known about them."""

from mdl.sources.hub import Hub as Hub
from mdl.sources.hub import resolve_token as resolve_token
from mdl.sources.joboutput import InlineCheck as InlineCheck
from mdl.sources.joboutput import InlineFile as InlineFile
from mdl.sources.joboutput import UrlFile as UrlFile
from mdl.sources.joboutput import check_expected_sha256 as check_expected_sha256
from mdl.sources.joboutput import check_inline as check_inline
from mdl.sources.joboutput import check_url as check_url
from mdl.sources.joboutput import decoded_size as decoded_size
from mdl.sources.joboutput import name_key as name_key
from mdl.sources.joboutput import parse_job_output as parse_job_output
from mdl.sources.joboutput import write_inline as write_inline
from mdl.sources.resolve import RemoteFile as RemoteFile
from mdl.sources.resolve import ResolvedModel as ResolvedModel
from mdl.sources.resolve import mirror_targets as mirror_targets
from mdl.sources.resolve import resolve_file as resolve_file
from mdl.sources.resolve import resolve_model as resolve_model
from mdl.sources.resolve import with_probe as with_probe
from mdl.sources.s3 import S3Prefix as S3Prefix
from mdl.sources.s3 import S3Signer as S3Signer
from mdl.sources.s3 import parse_s3_prefix as parse_s3_prefix
from mdl.sources.s3 import s3_client as s3_client
from mdl.sources.s3 import s3_error as s3_error
from mdl.sources.s3 import s3_reason as s3_reason
from mdl.sources.s3 import s3_source as s3_source
from mdl.sources.s3 import sha256_of_head as sha256_of_head
