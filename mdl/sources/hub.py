"""The Hugging Face Hub through huggingface_hub: the token, repo listings, file metadata and URLs, our errors."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from typing import Any, TypeVar

from mdl.errors import AuthError, NetworkError, NotFoundError
from mdl.redact import redact_text
from mdl.transfer import RETRYABLE_STATUSES, RetryableError, RetryPolicy, retry_after_seconds, transport_error

T = TypeVar("T")


def resolve_token(environ: Mapping[str, str]) -> str | None:
    """``HF_TOKEN``, else the token huggingface_hub has stored (read only when the Hub is needed)."""
    token = environ.get("HF_TOKEN")
    if token:
        return token
    from huggingface_hub import get_token

    return get_token()


class Hub:
    """The Hub through huggingface_hub, with its errors turned into ours."""

    def __init__(self, endpoint: str, token: str | None, *, retry: RetryPolicy | None = None) -> None:
        from huggingface_hub import HfApi

        self.endpoint = endpoint
        self.token = token
        self.retry = retry or RetryPolicy()
        self.api = HfApi(endpoint=endpoint, token=token or False)

    def _call(self, call: Callable[[], T], what: str, *, repo: str, revision: str, path: str | None = None) -> T:
        """One Hub API call with our error translation, retried on 5xx, 429 and dropped connections."""

        def attempt() -> T:
            with self.errors(what, repo=repo, revision=revision, path=path):
                return call()

        return self.retry.run(attempt, what=what)

    def commit_of(self, repo: str, *, repo_type: str, revision: str, what: str) -> str:
        """Pin a branch/tag/commit to its commit sha."""
        info = self._call(
            lambda: self.api.repo_info(repo, repo_type=repo_type, revision=revision),
            what,
            repo=repo,
            revision=revision,
        )
        sha = getattr(info, "sha", None)
        if not sha:
            raise NetworkError(f"{what}: the Hub did not say which commit {revision!r} of {repo} is")
        return str(sha)

    def list_files(self, repo: str, *, repo_type: str, commit: str, what: str) -> list[Any]:
        """Every file of the repo at ``commit``, with sizes and LFS sha256 (one listing, no HEADs)."""
        from huggingface_hub.hf_api import RepoFile

        items = self._call(
            lambda: list(self.api.list_repo_tree(repo, repo_type=repo_type, revision=commit, recursive=True)),
            what,
            repo=repo,
            revision=commit,
        )
        return [item for item in items if isinstance(item, RepoFile)]

    def file_metadata(self, repo: str, path: str, *, repo_type: str, revision: str, what: str) -> Any:
        """HEAD the file's resolve URL: commit, ETag (sha256 for LFS, blob sha1 otherwise), size."""
        from huggingface_hub import get_hf_file_metadata, hf_hub_url

        url = hf_hub_url(repo, path, repo_type=repo_type, revision=revision, endpoint=self.endpoint)
        return self._call(
            lambda: get_hf_file_metadata(url, token=self.token or False, endpoint=self.endpoint),
            what,
            repo=repo,
            revision=revision,
            path=path,
        )

    def file_url(self, repo: str, path: str, *, repo_type: str, revision: str) -> str:
        """``{endpoint}/{datasets/|spaces/}{repo}/resolve/{revision}/{path}``."""
        from huggingface_hub import hf_hub_url

        return hf_hub_url(repo, path, repo_type=repo_type, revision=revision, endpoint=self.endpoint)

    @contextlib.contextmanager
    def errors(self, what: str, *, repo: str, revision: str, path: str | None = None) -> Iterator[None]:
        """Translate huggingface_hub and httpx2 failures into MdlErrors naming the model and repo."""
        import httpx2
        from huggingface_hub import errors as hf

        target = f"{repo}/{path}" if path else repo
        try:
            yield
        except hf.GatedRepoError as exc:
            raise AuthError(
                f"{what}: {repo} is gated and this request is not authorised{_detail(exc)}",
                hint="accept the repo's terms on the Hub, then set HF_TOKEN (or run `hf auth login`)",
            ) from exc
        except hf.RepositoryNotFoundError as exc:
            if _status(exc) in (401, 403) and _error_code(exc) != "RepoNotFound":
                raise AuthError(f"{what}: not authorised for {repo}{_detail(exc)}") from exc
            raise NotFoundError(
                f"{what}: repository {repo} not found",
                hint=None if self.token else "if it is private, set HF_TOKEN",
            ) from exc
        except hf.RevisionNotFoundError as exc:
            raise NotFoundError(f"{what}: revision {revision!r} not found in {repo}") from exc
        except hf.RemoteEntryNotFoundError as exc:
            raise NotFoundError(f"{what}: {path or 'file'} not found in {repo} at {revision!r}") from exc
        except hf.HfHubHTTPError as exc:
            status = _status(exc)
            if status in (401, 403):
                raise AuthError(f"{what}: not authorised for {target} (HTTP {status}){_detail(exc)}") from exc
            message = f"{what}: the Hub answered HTTP {status} for {target}{_detail(exc)}"
            if status in RETRYABLE_STATUSES:
                response = getattr(exc, "response", None)
                after = response.headers.get("Retry-After") if response is not None else None
                raise RetryableError(message, retry_after=retry_after_seconds(after)) from exc
            raise NetworkError(message) from exc
        except hf.OfflineModeIsEnabled as exc:
            raise NetworkError(f"{what}: HF_HUB_OFFLINE is set, cannot reach the Hub") from exc
        except httpx2.TransportError as exc:
            raise transport_error(
                exc,
                what=what,
                url=self.endpoint,
                server=f"the Hub at {self.endpoint}",
                hint="check the network, or set HF_ENDPOINT to a reachable mirror",
            ) from exc


def _status(exc: Any) -> int | None:
    response = getattr(exc, "response", None)
    return getattr(response, "status_code", None)


def _error_code(exc: Any) -> str | None:
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None)
    return headers.get("X-Error-Code") if headers is not None else None


def _detail(exc: Any) -> str:
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None)
    message = headers.get("X-Error-Message") if headers is not None else None
    return f": {redact_text(message)}" if message else ""
