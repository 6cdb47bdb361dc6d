"""A plain ``mdl pull NAME``'s or ``mdl get hf://…``'s first request to the Hub, sent while Python
loads the rest, as a get's of a URL is (mdl.transfer.early): for a whole repo the Hub's answer
naming its revision's commit, for one file its first byte. A pull's is planned only from a catalog
whose very bytes a pull checked before (the validated models it remembered:
mdl.lockfile.remembered), and only when nothing there or in the environment may change that
request: a lock beside the catalog, a mirror, a pinned commit, more files, a signature, a
destination that is not a folder send nothing; a get's only for one hf:// source with nothing yet
where its file goes. A token the run may send leaves the request to it (the connection only is
opened early). The run takes the connection only when it asks those very bytes; else the answer is
dropped unread."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from mdl.errors import MdlError
from mdl.paths import GIT_OID_HEX, parse_hf_uri
from mdl.setting import SETTING
from mdl.transfer.early import Early, asking, begin, routed, split_url

if TYPE_CHECKING:
    from mdl.catalog.specs import Catalog, ModelSpec

# [settings] that change nothing the pull asks first (the endpoint is read; any other set: nothing)
QUIET = frozenset(
    {"dest", "connections", "jobs", "limit_rate", "xet", "retries"}
    | {"stall_timeout", "timeout", "lock_timeout", "retry_max_time", "endpoint"}
)
# huggingface_hub finds a token through these besides its file (mdl.sources.hub._nothing_stored)
TOKEN_VARIABLES = ("HF_OIDC_RESOURCE", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")


def send_early_pull(
    names: Sequence[str],
    catalog: Path | None,
    environ: Mapping[str, str] = os.environ,
    *,
    all_models: bool = False,
    dest: Path | None = None,
) -> None:
    """Open the connection (and send the request) the pull of ``names`` starts with, when it is
    known (:func:`planned_pull`)."""
    early = None if all_models else planned_pull(names, catalog, environ, dest=dest)
    if early is not None:
        begin(early)


def planned_pull(
    names: Sequence[str],
    catalog: Path | None,
    environ: Mapping[str, str],
    *,
    dest: Path | None = None,
) -> Early | None:
    """The first connection (and request) of a pull of ``names`` with ``--catalog catalog`` and
    ``--dest dest``, or None when it is not known for sure."""
    try:
        if len(names) != 1 or routed(environ):
            return None
        found = _remembered(catalog, environ)
        model = _model(found, names[0], dest) if found is not None else None
        if found is None or model is None:
            return None
        url, asked = _first_url(found, model, environ)
        send = not _token_somewhere(environ)
    # (a catalog or a folder that cannot be read, an endpoint the pull refuses, a path that is not
    # text: the pull says why)
    except (MdlError, OSError, ValueError):
        return None
    at = split_url(url) if url is not None else None
    return asking(at, asked, send=send) if at is not None else None


def _remembered(catalog: Path | None, environ: Mapping[str, str]) -> Catalog | None:
    """The catalog the pull reads, when a pull checked these bytes before and no lock is beside
    it."""
    from mdl.catalog.load import find_catalog, lock_beside
    from mdl.catalog.settings import user_config_dir
    from mdl.lockfile.remembered import recalled_catalog

    found = find_catalog(
        flag=catalog, environ=environ, cwd=Path.cwd(), config_dir=user_config_dir()
    )
    if found is None or os.path.lexists(lock_beside(found)):
        return None
    return recalled_catalog(found)


def _model(catalog: Catalog, name: str, dest: Path | None) -> ModelSpec | None:
    """Model ``name``, when the catalog's settings leave the pull's first request to it alone
    and its destination is a folder or not there yet."""
    settings = catalog.settings
    loud = [f.name for f in dataclasses.fields(cast("Any", settings)) if f.name not in QUIET]
    if any(getattr(settings, name) not in (None, ()) for name in loud) or _refused(catalog, dest):
        return None
    model = next((spec for spec in catalog.models if spec.name == name), None)
    return model if model is not None and model.oci is None and model.signature is None else None


def _refused(catalog: Catalog, dest: Path | None) -> bool:
    """Whether the destination (``--dest``, else the catalog's: from its folder, ~ expanded; else
    the default) is not a folder where the pull would make one: it refuses it before it asks."""
    from mdl.catalog.settings import default_dest

    where, written = dest, catalog.settings.dest
    if where is None and written is not None and catalog.path is not None:
        where = catalog.path.parent / os.path.expanduser(written)  # noqa: PTH111 (never raises)
    where = Path(os.path.abspath(where or default_dest()))  # noqa: PTH100
    # its nearest part there is a folder (os.path's: one that cannot be searched is "not there")
    there = next((p for p in (where, *where.parents) if os.path.lexists(p)), where)
    return not os.path.isdir(there)  # noqa: PTH112


def _first_url(
    catalog: Catalog, model: ModelSpec, environ: Mapping[str, str]
) -> tuple[str | None, bytes | None]:
    """(URL, Range) of the pull's first request for ``model``; (None, None): not known."""
    endpoint = _endpoint(environ, catalog.settings.endpoint)
    if model.repo is not None:  # a snapshot: its commit, then its listing
        return _hub_ask(endpoint, model.repo, model.repo_type, model.revision, None)
    if len(model.files) == 1 and (file := model.files[0]).url is None and file.repo and file.path:
        kind, revision = file.repo_type or "model", file.revision or "main"
        return _hub_ask(endpoint, file.repo, kind, revision, file.path)
    return None, None


def send_early_get(
    sources: Sequence[str],
    output: Path | None,
    directory: Path | None,
    environ: Mapping[str, str] = os.environ,
    *,
    sha256: str | None = None,
) -> None:
    """Open the connection (and send the request) a plain get of one ``hf://`` source starts
    with, when it is known (:func:`planned_get`)."""
    early = None if output or sha256 else planned_get(sources, directory, environ)
    if early is not None:
        begin(early)


def planned_get(
    sources: Sequence[str], directory: Path | None, environ: Mapping[str, str]
) -> Early | None:
    """The first connection (and request) of a plain get of one ``hf://`` file or repo under
    ``directory`` (no ``-o``, no ``--sha256``: a line whose checks the get makes first), or None
    when it is not known for sure. The same whether the file is there or not (the get asks the
    Hub which version it is)."""
    from mdl.paths import safe_file_name
    from mdl.store.filesystem import creatable_problem

    try:
        if len(sources) != 1 or not sources[0].startswith("hf://") or routed(environ):
            return None
        uri = parse_hf_uri(sources[0])
        # where its files go, by the get's own rules (a name it refuses, a folder it cannot
        # write in: refused before it asks)
        names = [safe_file_name(part, where=uri.given) for part in (uri.path or "x").split("/")]
        if creatable_problem(Path(os.path.abspath(directory or "."), *names)) is not None:  # noqa: PTH100
            return None
        endpoint = _endpoint(environ, None)
        url, asked = _hub_ask(endpoint, uri.repo, uri.repo_type, uri.revision or "main", uri.path)
        send = not _token_somewhere(environ)
    except (MdlError, OSError, ValueError):  # (a source the get refuses: it says why)
        return None
    at = split_url(url) if url is not None else None
    return asking(at, asked, send=send) if at is not None else None


def _endpoint(environ: Mapping[str, str], written: str | None) -> str:
    """The Hub's endpoint as the run reads it: HF_ENDPOINT, else the catalog's, else the default
    (UsageError: one the run refuses)."""
    from mdl.catalog.settings import parse_setting

    setting = SETTING["endpoint"]
    given = environ.get(setting.env) or written or setting.default
    return str(parse_setting(setting, given, where=f"${setting.env}"))


def _hub_ask(
    endpoint: str, repo: str, kind: str, revision: str, path: str | None
) -> tuple[str | None, bytes | None]:
    """(URL, Range) of the first request for a Hub repo (its revision's commit; none for a commit
    already: its listing is asked first) or for one file of it (its first byte)."""
    from mdl.sources.huburls import hub_api_url, hub_file_url

    if path is not None:
        return hub_file_url(endpoint, repo, path, kind, revision), b"bytes=0-0"
    if GIT_OID_HEX.fullmatch(revision):
        return None, None
    return hub_api_url(endpoint, repo, kind, "revision", revision), None


def _token_somewhere(environ: Mapping[str, str]) -> bool:
    """Whether the pull may send the Hub a token: a variable huggingface_hub reads one from is set,
    staging moves its file, or a file is at its token file's path."""
    if any(environ.get(name) for name in TOKEN_VARIABLES) or "HUGGINGFACE_CO_STAGING" in environ:
        return True
    try:  # (as mdl.sources.hub._nothing_stored: only a file not there is no token)
        os.lstat(hub_token_path(environ))
    except FileNotFoundError:
        return False
    except OSError:
        return True
    return True


def hub_token_path(environ: Mapping[str, str]) -> str:
    """huggingface_hub's ``constants.HF_TOKEN_PATH`` for ``environ`` (written out: its module reads
    the process's environment once; tests/download/test_earlyhub.py holds the two equal)."""
    home = environ.get("HOME") or os.path.expanduser("~")  # noqa: PTH111 (never raises)
    cache = environ.get("XDG_CACHE_HOME", os.path.join(home, ".cache"))  # noqa: PTH118
    hf_home = _expanded(environ.get("HF_HOME", os.path.join(cache, "huggingface")))  # noqa: PTH118
    return _expanded(environ.get("HF_TOKEN_PATH", os.path.join(hf_home, "token")))  # noqa: PTH118


def _expanded(path: str) -> str:
    return os.path.expandvars(os.path.expanduser(path))  # noqa: PTH111
