"""What ``mdl add`` is asked to add: ``hf://`` repos and files, and direct URLs, as catalog entry tables."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from mdl.errors import UsageError
from mdl.hfuri import HF_URI_FORMS, parse_hf_uri
from mdl.paths import safe_relative_path, url_basename
from mdl.redact import redact_url, remember_url_secrets

_SHA256 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class AddSource:
    """One SOURCE argument: a whole Hub repo, one file in one, or a direct URL."""

    given: str  # as typed (URLs redacted), for messages
    repo: str | None = None
    repo_type: str = "model"
    revision: str | None = None  # None when the URI names none (the catalog's default, main)
    path: str | None = None
    url: str | None = None

    @property
    def is_snapshot(self) -> bool:
        """A whole repo (``hf://owner/name[@rev]`` without a path)."""
        return self.repo is not None and self.path is None


def parse_source(text: str) -> AddSource:
    """``hf://[datasets/|spaces/]owner/name[@rev][/path]`` or an ``http(s)://`` URL; UsageError otherwise."""
    if text.lower().startswith(("https://", "http://")):
        remember_url_secrets(text)  # a presigned URL given to add: no sink may show its signature
        return AddSource(redact_url(text), url=text)
    if not text.startswith("hf://"):
        example = f"hf://{text}" if re.fullmatch(r"[\w.-]+/[\w.-]+(@[^/]+)?(/.*)?", text) else None
        raise UsageError(
            f"{text}: expected {HF_URI_FORMS}, or an https:// URL",
            hint=f"write it as {example}" if example else None,
        )
    uri = parse_hf_uri(text)
    return AddSource(text, repo=uri.repo, repo_type=uri.repo_type, revision=uri.revision, path=uri.path)


def snapshot_table(source: AddSource, *, include: Sequence[str], exclude: Sequence[str]) -> dict[str, Any]:
    """The source keys of a whole-repo entry (defaults left out: a model repo, ``main``, no filters)."""
    table: dict[str, Any] = {"repo": source.repo}
    if source.repo_type != "model":
        table["repo_type"] = source.repo_type
    if source.revision is not None and source.revision != "main":
        table["revision"] = source.revision
    if include:
        table["include"] = list(include)
    if exclude:
        table["exclude"] = list(exclude)
    return table


def file_table(source: AddSource, *, save_as: str | None, sha256: str | None) -> dict[str, Any]:
    """One ``files`` entry: ``repo`` + ``path`` (with ``revision``/``repo_type`` when not the defaults) or ``url``."""
    table: dict[str, Any]
    if source.url is not None:
        table = {"url": source.url}
    else:
        table = {"repo": source.repo, "path": source.path}
        if source.revision is not None and source.revision != "main":
            table["revision"] = source.revision
        if source.repo_type != "model":
            table["repo_type"] = source.repo_type
    if sha256 is not None:
        table["sha256"] = sha256.strip().lower().removeprefix("sha256:")
        if not _SHA256.fullmatch(table["sha256"]):
            raise UsageError(f"--sha256: expected 64 hex digits (optionally 'sha256:…'), got {sha256!r}")
    if save_as is not None:
        table["as"] = safe_relative_path(save_as, where="--as")
    return table


def save_path(table: dict[str, Any], *, where: str) -> str:
    """Where a ``files`` entry saves inside the model folder: ``as``, else ``path``, else the URL's last segment."""
    if table.get("as"):
        return str(table["as"])
    if table.get("path"):
        return str(table["path"])
    return url_basename(str(table.get("url", "")), where=where)


def canonical_file(table: dict[str, Any]) -> dict[str, Any]:
    """A ``files`` entry with defaults filled in, to tell the same file asked twice from a different one."""
    out = dict(table)
    if "repo" in out:
        out.setdefault("revision", "main")
        out.setdefault("repo_type", "model")
    if isinstance(out.get("sha256"), str):
        out["sha256"] = out["sha256"].strip().lower().removeprefix("sha256:")
    return out


def canonical_snapshot(table: dict[str, Any]) -> dict[str, Any]:
    """The source keys of a whole-repo entry with defaults filled in."""
    return {
        "repo": table.get("repo"),
        "repo_type": table.get("repo_type", "model"),
        "revision": table.get("revision", "main"),
        "include": list(table.get("include", [])),
        "exclude": list(table.get("exclude", [])),
    }
