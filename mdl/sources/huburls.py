"""The Hub's URLs as huggingface_hub writes them, with nothing heavier than ``urllib`` loaded: a
pull's first request is written from them before the HTTP stack loads (mdl.download.earlyhub)."""

from __future__ import annotations

from urllib.parse import quote

from mdl.errors import UsageError
from mdl.paths import check_revision, repo_id_problem

# huggingface_hub's hf_hub_url written out: its module (huggingface_hub.file_download) costs ~0.2 s
# to import, more than a small pull's requests. tests/sources/test_hub_file_url.py holds the two
# equal for any repo id, path, revision, repo type and endpoint.
_URL_PREFIXES = {"model": "", "dataset": "datasets/", "space": "spaces/", "kernel": "kernels/"}


def hub_file_url(endpoint: str, repo: str, path: str, repo_type: str, revision: str) -> str:
    """huggingface_hub's resolve URL of a Hub file
    (``{endpoint}/{type prefix}{repo}/resolve/{revision}/{path}``, the revision quoted whole, the
    path with its '/' kept); a repo id it refuses is UsageError (exit 2)."""
    # quoted whole, yet '..' would still ask for another revision
    check_revision(revision, where=repo)
    # a repo id the catalog allows but the Hub does not (org/a--b)
    if (problem := repo_id_problem(repo)) is not None:
        raise UsageError(f"{repo}: not a valid Hub repo id ({problem})")
    if repo_type not in _URL_PREFIXES:
        raise ValueError("Invalid repo type")  # as hf_hub_url: a caller's mistake, not the user's
    prefix = _URL_PREFIXES[repo_type]
    return f"{endpoint}/{prefix}{repo}/resolve/{quote(revision, safe='')}/{quote(path)}"


def hub_api_url(endpoint: str, repo: str, repo_type: str, *parts: str) -> str:
    """``{endpoint}/api/{type}s/{repo}/{part}/...``, each part quoted whole: the Hub API's URL of
    one repo's ``parts`` (a revision or a commit among them: one a URL path would fold away is
    refused, exit 2)."""
    for part in parts:
        check_revision(part, where=repo)
    return "/".join(
        [
            f"{endpoint.rstrip('/')}/api/{repo_type}s/{repo}",
            *(quote(part, safe="") for part in parts),
        ]
    )


def xet_token_url(endpoint: str, repo: str, repo_type: str, commit: str) -> str:
    """Where the Hub gives a Xet read token for the repo at ``commit`` (docs/xet/auth.md)."""
    return hub_api_url(endpoint, repo, repo_type, "xet-read-token", commit)
