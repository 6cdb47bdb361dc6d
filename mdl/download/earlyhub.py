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
from mdl.transfer.early import Early, asking, routed, split_url

if TYPE_CHECKING:
    from mdl.catalog.specs import Catalog, ModelSpec

# [settings] that change nothing the pull asks first (the endpoint is read; any other set: nothing)
QUIET = frozenset(
    {"dest", "connections", "jobs", "limit_rate", "xet", "retries"}
    | {"stall_timeout", "timeout", "lock_timeout", "retry_max_time", "endpoint"}
)
# huggingface_hub finds a token through these besides its file (mdl.sources.hub._nothing_stored)
TOKEN_VARIABLES = ("HF_OIDC_RESOURCE", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")


def planned_pull(
    names: Sequence[str],
    catalog: Path | None,
    environ: Mapping[str, str],
    *,
    all_models: bool = False,
    dest: Path | None = None,
) -> Early | None:
    """The first connection (and request) of a pull of ``names`` (``--all``: none) with
    ``--catalog catalog`` and ``--dest dest``, or None when it is not known for sure."""
    try:
        if len(names) != 1 or all_models or routed(environ):
            return None
        found = _remembered(catalog, environ)
        model = _model(found, names[0], dest) if found is not None else None
        return _first(found, model, environ) if found is not None and model is not None else None
    # (a catalog or a folder that cannot be read, an endpoint the pull refuses, a path that is not
    # text: the pull says why)
    except (MdlError, OSError, ValueError):
        return None


def _first(catalog: Catalog, model: ModelSpec, environ: Mapping[str, str]) -> Early | None:
    """The pull's first ask of the Hub for ``model``: a snapshot's commit (then its listing), a
    one-file entry's first byte; None for anything else."""
    written = catalog.settings.endpoint
    if model.repo is not None:
        return _hub_early(environ, written, model.repo, model.repo_type, model.revision, None)
    file = model.files[0] if len(model.files) == 1 else None
    if file is None or file.repo is None or file.path is None or file.url is not None:
        return None
    kind, revision = file.repo_type or "model", file.revision or "main"
    return _hub_early(environ, written, file.repo, kind, revision, file.path)


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
    """Model ``name``, when the catalog's settings leave the pull's first request to it alone and
    the pull takes its destination (else it refuses before it asks)."""
    settings = catalog.settings
    loud = [f.name for f in dataclasses.fields(cast("Any", settings)) if f.name not in QUIET]
    if any(getattr(settings, name) not in (None, ()) for name in loud) or _dest_refused(
        catalog, dest
    ):
        return None
    model = next((spec for spec in catalog.models if spec.name == name), None)
    return model if model is not None and model.oci is None and model.signature is None else None


def _dest_refused(catalog: Catalog, dest: Path | None) -> bool:
    """Whether no file can be made in the destination (``--dest``, else the catalog's: from its
    folder, ~ expanded; else the default), by the rule a run's files are held to, or the run
    refuses it (``settings.shown_folder``)."""
    from mdl.catalog.settings import default_dest, unshowable
    from mdl.store.filesystem import creatable_problem

    where, written = dest, catalog.settings.dest
    if where is None and written is not None and catalog.path is not None:
        where = catalog.path.parent / os.path.expanduser(written)  # noqa: PTH111
    folder = os.path.abspath(where or default_dest())  # noqa: PTH100 (os.path's: never raises)
    return unshowable(folder) is not None or creatable_problem(Path(folder, "x")) is not None


def planned_get(
    sources: Sequence[str],
    output: Path | None,
    directory: Path | None,
    environ: Mapping[str, str],
    *,
    sha256: str | None = None,
) -> Early | None:
    """The first connection (and request) of a plain get of one ``hf://`` file or repo under
    ``directory`` (none with ``-o`` or ``--sha256``: their checks come first), or None when it is
    not known for sure. The same whether the file is there or not (the get asks the Hub which
    version it is)."""
    from mdl.paths import safe_file_name
    from mdl.store.filesystem import creatable_problem

    try:
        if len(sources) != 1 or output or sha256 or routed(environ):
            return None
        if not sources[0].startswith("hf://"):
            return None
        uri = parse_hf_uri(sources[0])
        # where its files go, by the get's own rules (a name it refuses, a folder it cannot
        # write in: refused before it asks)
        names = [safe_file_name(part, where=uri.given) for part in (uri.path or "x").split("/")]
        folder = os.path.abspath(directory or ".")  # noqa: PTH100 (a deleted one: OSError)
        if creatable_problem(Path(folder, *names)) is not None:
            return None
        revision = uri.revision or "main"
        return _hub_early(environ, None, uri.repo, uri.repo_type, revision, uri.path)
    except (MdlError, OSError, ValueError):  # (a source the get refuses: it says why)
        return None


def _hub_early(
    environ: Mapping[str, str],
    written: str | None,
    repo: str,
    kind: str,
    revision: str,
    path: str | None,
) -> Early | None:
    """The early connection (and request) of the first ask of a Hub repo (its revision's commit;
    none for a commit already: its listing is asked first) or of one file of it (its first byte),
    at the endpoint the run reads (HF_ENDPOINT, else ``written``, the catalog's, else the default;
    UsageError: one the run refuses)."""
    from mdl.catalog.settings import parse_setting
    from mdl.sources.huburls import hub_api_url, hub_file_url

    setting = SETTING["endpoint"]
    given = environ.get(setting.env) or written or setting.default
    endpoint = str(parse_setting(setting, given, where=f"${setting.env}"))
    if path is not None:
        url, asked = hub_file_url(endpoint, repo, path, kind, revision), b"bytes=0-0"
    elif GIT_OID_HEX.fullmatch(revision):
        return None
    else:
        url, asked = hub_api_url(endpoint, repo, kind, "revision", revision), None
    at = split_url(url)
    return asking(at, asked, send=not _token_somewhere(environ)) if at is not None else None


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
