"""``mdl get``: one-off sources — https URLs, ``hf://`` URIs and serverless job-output JSON."""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import json
import os
import re
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mdl.errors import IntegrityError, JobOutputError, LocalFSError, MdlError, UsageError
from mdl.paths import safe_relative_path, url_basename
from mdl.progress import Progress
from mdl.redact import redact_url
from mdl.report import FileOutcome, RunReport, failed
from mdl.settings import Settings

_HF_URI = re.compile(
    r"^hf://(?:(?P<type>datasets|spaces|models)/)?(?P<repo>[A-Za-z0-9][\w.-]*/[\w.-]+)"
    r"(?:@(?P<rev>refs/(?:pr|convert)/[\w.-]+|[^/]+))?/(?P<path>.+)$"
)
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class InlineFile:
    """A job output carried inside the JSON as base64 (``type = file_data``)."""

    filename: str
    data: bytes
    size: int | None


@dataclass(frozen=True)
class UrlFile:
    """A file to download: a direct/presigned URL or a Hub file."""

    filename: str
    url: str | None
    size: int | None
    sha256: str | None
    hub: tuple[str, str, str, str] | None = None  # (repo_type, repo, revision, path)


Source = InlineFile | UrlFile


def parse_hf_uri(uri: str) -> UrlFile:
    """``hf://[datasets/|spaces/]owner/name[@rev]/path`` → a Hub file."""
    match = _HF_URI.match(uri)
    if not match:
        raise UsageError(f"{uri}: expected hf://[datasets/|spaces/]owner/name[@revision]/path")
    repo_type = {"datasets": "dataset", "spaces": "space", "models": "model", None: "model"}[match.group("type")]
    path = safe_relative_path(match.group("path"), where=uri)
    return UrlFile(
        filename=path.rsplit("/", 1)[-1],
        url=None,
        size=None,
        sha256=None,
        hub=(repo_type, match.group("repo"), match.group("rev") or "main", path),
    )


def parse_job_output(text: str, *, where: str) -> list[Source]:
    """Serverless job output: one object, a list, or ``{"files"|"outputs"|"results": [...]}``."""
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise JobOutputError(f"{where}: not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})") from exc
    if isinstance(doc, dict) and "type" not in doc:
        for key in ("files", "outputs", "results", "data"):
            if isinstance(doc.get(key), list):
                doc = doc[key]
                break
    items = doc if isinstance(doc, list) else [doc]
    if not items:
        raise JobOutputError(f"{where}: the job output lists no files")
    return [_job_item(item, where=f"{where}[{i}]" if isinstance(doc, list) else where) for i, item in enumerate(items)]


def _job_item(item: Any, *, where: str) -> Source:
    if not isinstance(item, dict):
        raise JobOutputError(f"{where}: expected an object with a 'type', got {type(item).__name__}")
    kind = item.get("type")
    if kind not in ("file_data", "redirect"):
        raise JobOutputError(f"{where}.type: expected 'file_data' or 'redirect', got {kind!r}")
    filename = item.get("filename")
    if not isinstance(filename, str) or not filename:
        raise JobOutputError(f"{where}.filename: missing or not a string")
    filename = safe_relative_path(filename, where=f"{where}.filename")
    size = item.get("size")
    if size is not None and (not isinstance(size, int) or isinstance(size, bool) or size < 0):
        raise JobOutputError(f"{where}.size: expected a whole number of bytes, got {size!r}")
    sha256 = item.get("sha256")
    if sha256 is not None and (not isinstance(sha256, str) or not _SHA256.match(sha256.lower())):
        raise JobOutputError(f"{where}.sha256: expected 64 hex digits")
    if kind == "file_data":
        data = item.get("data")
        if not isinstance(data, str):
            raise JobOutputError(f"{where}.data: missing or not a base64 string")
        try:
            raw = base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise JobOutputError(f"{where}.data: not valid base64 ({exc})") from exc
        return InlineFile(filename, raw, size)
    url = item.get("url")
    if not isinstance(url, str) or not url.startswith(("https://", "http://")):
        raise JobOutputError(f"{where}.url: expected an http(s) URL")
    return UrlFile(filename, url, size, sha256.lower() if sha256 else None)


def parse_sources(sources: Sequence[str], *, read_text: Callable[[str], str]) -> list[Source]:
    """Every SOURCE argument → the files it stands for."""
    found: list[Source] = []
    for source in sources:
        if source.startswith(("https://", "http://")):
            found.append(UrlFile(url_basename(source, where=redact_url(source)), source, None, None))
        elif source.startswith("hf://"):
            found.append(parse_hf_uri(source))
        else:
            where = "stdin" if source == "-" else source
            found.extend(parse_job_output(read_text(source), where=where))
    return found


def get_sources(
    sources: Sequence[str],
    settings: Settings,
    *,
    output: Path | None,
    directory: Path,
    sha256: str | None,
    progress: Progress,
    read_text: Callable[[str], str],
) -> RunReport:
    """Fetch one-off sources into ``directory`` (or ``output`` for a single file), verified and atomic."""
    if sha256 is not None and not _SHA256.match(sha256.lower()):
        raise UsageError(f"--sha256: expected 64 hex digits, got {sha256!r}")
    items = parse_sources(sources, read_text=read_text)
    if output is not None and len(items) != 1:
        raise UsageError(f"-o names one file, but the sources stand for {len(items)} files; use -d DIR")
    if sha256 is not None and len(items) != 1:
        raise UsageError("--sha256 applies to a single file")
    targets = [output if output is not None else directory / Path(*item.filename.split("/")) for item in items]
    seen: set[Path] = set()
    for target in targets:
        if target in seen:
            raise UsageError(f"two sources would both be saved as {target}")
        seen.add(target)
    outcomes: list[FileOutcome] = []
    inline = [(i, t) for i, t in zip(items, targets, strict=True) if isinstance(i, InlineFile)]
    remote = [(i, t) for i, t in zip(items, targets, strict=True) if isinstance(i, UrlFile)]
    for item, target in inline:
        outcomes.append(_write_inline(item, target, expected=sha256))
    if remote:
        outcomes.extend(_fetch_remote(remote, settings, expected=sha256, progress=progress))
    return RunReport(tuple(outcomes))


def _write_inline(item: InlineFile, target: Path, *, expected: str | None) -> FileOutcome:
    digest = hashlib.sha256(item.data).hexdigest()
    try:
        if item.size is not None and item.size != len(item.data):
            raise IntegrityError(f"{item.filename}: job output says {item.size} bytes, its data holds {len(item.data)}")
        if expected and digest != expected.lower():
            raise IntegrityError(f"{item.filename}: sha256 mismatch: expected {expected.lower()}, got {digest}")
        _atomic_write(target, item.data)
    except MdlError as exc:
        return failed("", item.filename, exc, dest=target)
    return FileOutcome("", item.filename, str(target), len(item.data), digest, "downloaded")


def _atomic_write(target: Path, data: bytes) -> None:
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{os.getpid()}.mdl-tmp")
        with tmp.open("wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        tmp.replace(target)
    except OSError as exc:
        with contextlib.suppress(OSError, UnboundLocalError):
            tmp.unlink()
        raise LocalFSError(f"cannot write {target}: {exc.strerror or exc}") from exc


def _fetch_remote(
    items: list[tuple[UrlFile, Path]], settings: Settings, *, expected: str | None, progress: Progress
) -> list[FileOutcome]:
    from mdl.catalog import FileSpec
    from mdl.pull import Puller
    from mdl.resolve import RemoteFile, resolve_file

    outcomes: list[FileOutcome] = []
    by_folder: dict[Path, list[tuple[UrlFile, Path]]] = {}
    for item, target in items:
        by_folder.setdefault(target.parent, []).append((item, target))
    for folder, group in by_folder.items():
        puller = Puller(_with_dest(settings, folder), progress=progress)
        state_existed = puller.store.state_dir.exists()
        try:
            remotes: list[RemoteFile] = []
            for item, target in group:
                name = target.name
                try:
                    if item.hub is not None:
                        repo_type, repo, revision, path = item.hub
                        hub = puller.hub()
                        if hub is None:
                            raise UsageError(f"hf://{repo}/{path}: HF_HUB_OFFLINE is set")
                        spec = FileSpec(
                            key_path=f"hf://{repo}/{path}",
                            repo=repo,
                            path=path,
                            revision=revision,
                            repo_type=repo_type,
                            sha256=expected,
                            save_as=name,
                        )
                        remotes.append(resolve_file("", spec, hub=hub, environ={}))
                    else:
                        assert item.url is not None
                        remote = RemoteFile(
                            model="",
                            path=name,
                            url=item.url,
                            size=item.size,
                            sha256=expected or item.sha256,
                            source=redact_url(item.url),
                        )
                        remotes.append(remote if remote.sha256 else puller.probe(remote))
                except MdlError as exc:
                    outcomes.append(failed("", name, exc, dest=target))
            plans = [puller.plan(r) for r in remotes]
            if plans:
                puller.store.ensure_dirs()
                puller.check_space(plans)
                outcomes.extend(puller.execute(plans, commits={}))
        finally:
            puller.close()
        if not state_existed and not puller.store.partials():
            # One-off fetches leave no state behind unless there is something to resume.
            shutil.rmtree(puller.store.state_dir, ignore_errors=True)
    return outcomes


def _with_dest(settings: Settings, folder: Path) -> Settings:
    from dataclasses import replace

    return replace(settings, dest=folder.absolute())
