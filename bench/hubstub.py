"""The Hub API for the benchmark: tests/servers.py's HubServer, with LFS resolves redirected to our nginx.

HubServer answers ``/api/models/{repo}/revision/{rev}``, ``.../tree/{rev}?recursive=true`` and
``/{repo}/resolve/{rev}/{path}`` (302 with X-Linked-Etag / X-Linked-Size / X-Repo-Commit / ETag for LFS files,
200 with the git blob id as ETag for small ones), which is all huggingface_hub and mdl ask. It talks to its CDN
through two calls only, ``add_blob(content) -> path`` and ``signed_url(path) -> url``, so a small stand-in
object sends the LFS bytes to nginx (``/capped/...`` or ``/fast/...``) instead of the Python CDN.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT / "tests") not in sys.path:
    sys.path.insert(0, str(ROOT / "tests"))

from servers import Content, HubServer  # noqa: E402  (tests/ is not a package)


class NginxCdn:
    """What HubServer needs of a CDN, pointing at nginx: each blob is a file under nginx's data folder."""

    def __init__(self, base_url: str, data: Path, *, capped: set[Path] | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.data = data.resolve()
        self.capped = {p.resolve() for p in capped or set()}

    def add_blob(self, content: Content) -> str:
        """The nginx path of a file-backed content: ``/capped/<rel>`` or ``/fast/<rel>``."""
        path = content.path
        if path is None:
            raise ValueError("bench blobs must be files under the data folder (nginx serves them)")
        path = path.resolve()
        where = "capped" if path in self.capped else "fast"
        return f"/{where}/{path.relative_to(self.data).as_posix()}"

    def signed_url(self, path: str, *, expires: int = 3600) -> str:
        """nginx needs no signature: the plain URL."""
        return self.base_url + path


def file_content(path: Path, *, sha256: str | None = None) -> Content:
    """A file-backed Content; a known sha256 is filled in so HubServer does not hash the file again."""
    content = Content(path)
    if sha256 is not None:
        content.__dict__["sha256"] = sha256  # functools.cached_property keeps its value in the instance dict
    return content


def start_hub(cdn: NginxCdn, repos: dict[str, dict[str, Content]]) -> Any:
    """A started HubServer on 127.0.0.1 holding ``repos`` ({repo_id: {path: content}}); stop() it after."""
    hub = HubServer(cdn=cdn)  # type: ignore[arg-type]  # duck-typed CDN
    for repo_id, files in repos.items():
        hub.add_repo(repo_id, files)
    return hub.start()
