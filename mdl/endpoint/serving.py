"""One ``mdl serve`` run: the endpoint up on its address, the loader's environment said, then a
pull of the models in the order loaders read them (when asked), fetched again while a file fails
to verify, and serving until stopped."""

from __future__ import annotations

import contextlib
import errno
import grp
import logging
import os
import pwd
import secrets
import shlex
import stat
import struct
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from mdl.buckets.s3 import is_bucket_name
from mdl.catalog.settings import Settings
from mdl.catalog.specs import ModelSpec
from mdl.download.demand import Demand
from mdl.download.puller import pull_models
from mdl.endpoint import s3api
from mdl.endpoint.auth import Key
from mdl.endpoint.server import Endpoint
from mdl.endpoint.shelf import Shelf
from mdl.errors import ExitCode, LocalFSError, UsageError
from mdl.lockfile.model import Lock
from mdl.paths import is_loopback, opened
from mdl.progress import Progress
from mdl.report import WARNING_CAUSE, FileOutcome, RunReport
from mdl.store.layout import Layout

log = logging.getLogger("mdl.serve")

# pulls after the first while files fail to verify (a corrupt byte from the origin): the loader
# still gets its model, or, after these, an S3 error that says why
REFETCHES = 2
REGION = "us-east-1"


@dataclass(frozen=True)
class ServeOptions:
    """How to serve: where, under which bucket, how long a GET waits for bytes to verify."""

    host: str = "127.0.0.1"
    port: int = 8390
    bucket: str = "mdl"
    wait: float = 600.0
    pull: bool = False
    env_file: Path | None = None


@dataclass(frozen=True)
class Serving:
    """What a loader needs, said once the endpoint listens."""

    url: str
    bucket: str
    models: tuple[str, ...]
    environment: dict[str, str] = field(repr=False)  # (it holds the run's secret key)
    warnings: tuple[str, ...] = ()

    def exports(self) -> list[str]:
        """The environment as lines a shell sources (``export NAME=value``)."""
        return [f"export {name}={shlex.quote(value)}" for name, value in self.environment.items()]

    def to_json(self) -> dict[str, Any]:
        return {
            "endpoint": self.url,
            "bucket": self.bucket,
            "models": [f"s3://{self.bucket}/{name}" for name in self.models],
            "environment": self.environment,
        }


@dataclass(frozen=True)
class ServeReport:
    """How the run ended: its pull's report (None: nothing pulled), and what it served."""

    pulled: RunReport | None
    served: Serving

    @property
    def exit_code(self) -> int:
        return self.pulled.exit_code if self.pulled is not None else int(ExitCode.OK)


def loader_environment(url: str, key: Key, *, wait: float) -> dict[str, str]:
    """The variables an unmodified loader reads: the endpoint and key for any AWS SDK (and the
    endpoint as s5cmd reads it, plain HTTP allowed as obstore asks), path-style addressing, and a
    request timeout past the endpoint's wait for run:ai's streamer (which gives up on a request
    that brings no byte within 1 s by default and does not retry) and for obstore (30 s)."""
    timeout_ms = int((wait + 30) * 1000)
    return {
        "AWS_ENDPOINT_URL": url,
        "S3_ENDPOINT_URL": url,
        "AWS_ALLOW_HTTP": "true",
        "AWS_ACCESS_KEY_ID": key.access_key,
        "AWS_SECRET_ACCESS_KEY": key.secret_key,
        "AWS_REGION": REGION,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_EC2_METADATA_DISABLED": "true",
        "RUNAI_STREAMER_S3_USE_VIRTUAL_ADDRESSING": "0",
        "RUNAI_STREAMER_S3_REQUEST_TIMEOUT_MS": str(timeout_ms),
        "AWS_TIMEOUT": f"{timeout_ms}ms",
    }


MOST_WAIT = 86400.0  # seconds: a day


def check_options(options: ServeOptions) -> None:
    """UsageError (exit 2) naming the flag for a bucket S3 clients cannot name, or a wait past
    a day."""
    if not is_bucket_name(options.bucket):
        raise UsageError(
            f"--bucket {options.bucket!r} is not an S3 bucket name",
            hint="3-63 letters, digits, dots, hyphens and underscores, such as mdl",
        )
    if not 0 <= options.wait <= MOST_WAIT:
        raise UsageError(f"--wait {options.wait}: give 0 to {MOST_WAIT:.0f} seconds")


def serve_models(
    models: Sequence[ModelSpec],
    settings: Settings,
    *,
    options: ServeOptions,
    progress: Progress,
    lock: Lock | None = None,
    on_ready: Callable[[Serving], None] | None = None,
    stop: threading.Event | None = None,
    key: Key | None = None,
    on_error: Callable[[str], None] | None = None,
    on_pulled: Callable[[ServeReport], None] | None = None,
) -> ServeReport:
    """Serve ``models`` (pulling them first when ``options.pull``) until ``stop`` is set or Ctrl-C;
    ``on_ready`` hears the endpoint's facts as soon as it listens, ``on_error`` a line per request
    refused, ``on_pulled`` the pull's report as soon as the pull ends (the server goes on)."""
    check_options(options)
    key = key or Key.fresh()
    settings.secrets.add(key.secret_key)
    demand = Demand() if options.pull else None
    layout = Layout(settings)
    stopping = threading.Event()  # the endpoint's: ends every wait of a request
    shelf = Shelf(
        models,
        layout,
        on_wait=demand.want if demand is not None else None,
        planned=demand.planned if demand is not None else None,
        releases=demand.releases if demand is not None else None,
        stop=stopping,
    )
    facts = s3api.BucketFacts(options.bucket, wait=options.wait, region=REGION)
    stop = stop or threading.Event()
    with Endpoint(
        (options.host, options.port),
        key=key,
        facts=facts,
        shelf=shelf,
        cancel=stopping,
        on_error=on_error,
    ) as endpoint:
        served = Serving(
            url=endpoint.url,
            bucket=options.bucket,
            models=tuple(spec.name for spec in models),
            environment=loader_environment(endpoint.url, key, wait=options.wait),
            warnings=_address_warnings(options.host),
        )
        if options.env_file is not None:
            _write_env_file(options.env_file, served)
        try:  # a stop once it said where it serves (a loader may read it and stop it at once)
            log.info("serving %s as s3://%s/ (%d models)", served.url, options.bucket, len(models))
            if on_ready is not None:
                on_ready(served)
        except KeyboardInterrupt:  # as in _until_stopped: the way a server is stopped
            return ServeReport(None, served)
        pulled = None
        if options.pull:
            shelf.pulling.set()
            try:
                pulled = _pull(models, settings, progress=progress, lock=lock, demand=demand,
                               shelf=shelf, stop=stop)  # fmt: skip
            finally:
                shelf.pulling.clear()
                if demand is not None:  # (every record written, or none will be: let them go)
                    demand.releases.forget()
        report = ServeReport(pulled, served)
        _until_stopped(report, stop, on_pulled)
        return report


def _until_stopped(
    report: ServeReport, stop: threading.Event, on_pulled: Callable[[ServeReport], None] | None
) -> None:
    """The pull's end said (``on_pulled``, then the log's ``pull done``), then serving until
    ``stop`` is set or Ctrl-C; a stop while the pull's end is said is a stop too, not an error."""
    try:
        if report.pulled is not None:
            if on_pulled is not None:
                on_pulled(report)
            files = report.pulled.files
            log.info("pull done (%d files, %d failed); serving %s until stopped", len(files),
                     sum(1 for outcome in files if outcome.failing), report.served.url)  # fmt: skip
        while not stop.wait(0.5):  # short: Ctrl-C is heard
            pass
    except KeyboardInterrupt:  # the way a server is stopped: after its pull, not an error
        log.info("stopped serving %s", report.served.url)


def _pull(
    models: Sequence[ModelSpec],
    settings: Settings,
    *,
    progress: Progress,
    lock: Lock | None,
    demand: Demand | None,
    shelf: Shelf,
    stop: threading.Event,
) -> RunReport:
    """Pull, and again while files fail to verify (``_tries``); those that never do are told to
    the shelf, with why. The report covers every try: its seconds (the pull's own, not the
    server's), bytes and waits, each file fetched again with why as a warning."""
    started = time.monotonic()
    report = _tries(models, settings, progress=progress, lock=lock, demand=demand, stop=stop)
    report = replace(report, files=tuple(_released_wrong(o, shelf) for o in report.files))
    for outcome in report.files:
        if outcome.failing and outcome.path is not None:
            shelf.fail(outcome.model, outcome.path, outcome.error or "failed")
    return replace(report, seconds=time.monotonic() - started)


def _tries(
    models: Sequence[ModelSpec],
    settings: Settings,
    *,
    progress: Progress,
    lock: Lock | None,
    demand: Demand | None,
    stop: threading.Event,
) -> RunReport:
    """A pull, then the models whose files failed to verify pulled again (at most REFETCHES
    times, till ``stop``): one report of every try."""
    cancel = threading.Event()
    report = pull_models(models, settings, progress=progress, lock=lock, cancel=cancel,
                         demand=demand)  # fmt: skip
    for _ in range(REFETCHES):
        corrupt = {o.model for o in report.files if o.exit_code == ExitCode.INTEGRITY}
        if not corrupt or stop.is_set():
            break
        log.warning("fetching again what did not verify: %s", ", ".join(sorted(corrupt)))
        again = [spec for spec in models if spec.name in corrupt]
        retried = pull_models(again, settings, progress=progress, lock=lock, cancel=cancel,
                              demand=demand)  # fmt: skip
        report = _tried_again(report, retried)
    return report


def _released_wrong(outcome: FileOutcome, shelf: Shelf) -> FileOutcome:
    """The outcome of a file some of whose ranges left to a loader before its hash refused the
    bytes they came with: failed (exit 6) whatever a later try installed, naming the ranges (the
    endpoint refuses the object from then on)."""
    wrong = shelf.released_wrong(outcome.model, outcome.path) if outcome.path else ()
    if not wrong:
        return outcome
    shown = ", ".join(f"{start}-{end - 1}" for start, end in wrong)
    return outcome._replace(
        action="failed",
        word=None,
        exit_code=int(ExitCode.INTEGRITY),
        kind="integrity",
        error=f"{outcome.label}: bytes {shown} left to a loader before the file verified, and"
        " its hash then refused them: a loader may have read wrong bytes",
        hint="start the loader again with a new mdl serve (the endpoint refuses this file now)",
        released_wrong=wrong,
    )


def _tried_again(first: RunReport, again: RunReport) -> RunReport:
    """``first`` with what the pull ``again`` redid: what it found in place is as the first said
    (downloaded, resumed, ...); its waits and the bytes of both tries are the run's."""
    redone = {(o.model, o.path): o for o in again.files if o.action != "skipped"}
    files = tuple(
        _fetched_again(o, redone.pop((o.model, o.path))) if (o.model, o.path) in redone else o
        for o in first.files
    )
    return replace(
        first,
        files=files + tuple(redone.values()),
        waited=first.waited + again.waited,
        hub_wait_seconds=_added(first.hub_wait_seconds, again.hub_wait_seconds),
    )


def _added(first: float | None, again: float | None) -> float | None:
    """Two tries' figure (None: neither has one)."""
    return None if first is None and again is None else (first or 0.0) + (again or 0.0)


def _fetched_again(before: FileOutcome, after: FileOutcome) -> FileOutcome:
    """The outcome of a file fetched again after ``before`` failed: ``after``'s, with the bytes of
    both tries, and why it was fetched again as a warning (said once, as any warning of a pull)."""
    why = f"{before.error or before.label + ': failed'}; fetched it again"
    return after._replace(
        fetched=before.fetched + after.fetched,
        retries=(*before.retries, WARNING_CAUSE + why, *after.retries),
        word=after.word or (None if after.failing else "fetched again"),
    )


def _address_warnings(host: str) -> tuple[str, ...]:
    if is_loopback(host):
        return ()
    return (
        f"serving on {host}, not loopback: other machines can reach it (each request still needs"
        " the run's key; the traffic is plain HTTP)",
    )


_NEW = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
# an env file is a few hundred bytes: a longer file is no earlier run's
_MOST_ENV_FILE = 4096


def _write_env_file(path: Path, served: Serving) -> None:
    """The environment in ``path``, readable by this user only, written whole (a loader may
    source it as soon as it is not empty). The name is taken by an exclusive create (never
    through a link, never a file someone else put there), then the whole text renamed over it. A
    file already there is replaced only when it is an earlier run's; any other is refused
    (LocalFSError, exit 7, naming it)."""
    text = "".join(line + "\n" for line in served.exports()).encode()
    _refuse_a_folder_of_anothers(path)
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    made = False
    try:
        try:
            os.close(os.open(path, _NEW, 0o600))  # empty: `[ -s FILE ]` waits on
            made = True
        except FileExistsError:
            if not _an_earlier_runs(path):
                raise LocalFSError(
                    f"--env-file {path} is already there and no earlier mdl serve of this user "
                    "wrote it: not replaced",
                    hint="remove it, or name a file in a folder only you can write (mktemp -d)",
                ) from None
        fd = os.open(temporary, _NEW, 0o600)
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(fd, 0o600)  # (whatever the umask)
            handle.write(text)
        temporary.replace(path)
    except OSError as exc:
        for left in (temporary, path) if made else (temporary,):
            with contextlib.suppress(OSError):
                left.unlink()
        raise LocalFSError(f"cannot write --env-file {path}: {exc.strerror or exc}") from exc


def _refuse_a_folder_of_anothers(path: Path) -> None:
    """LocalFSError (exit 7) when someone other than this user and root could swap the file for
    theirs once it is written (another endpoint, another model): a folder that holds a name the
    path goes through (``_holders``: a link's and its target's alike) that another user owns, or
    that others may write without the sticky bit (``_who_else_writes``)."""
    for each in _holders(path):
        try:
            found = each.stat()
        except OSError:
            return  # (the write says why it cannot)
        whose = _who_else_writes(each, found)
        if whose is not None:
            raise LocalFSError(
                f"--env-file {path}: the folder {each} {whose} could replace the file: not written",
                hint="name a file in a folder only you can write (mktemp -d)",
            )


# as the kernel's lookup: more links on one path is ELOOP (the write then says so)
_MOST_LINKS = 40


def _holders(path: Path) -> list[Path]:
    """The folders holding each name ``path`` goes through, as the system looks it up (and a
    loader sourcing it will): from ``/``, each link on the way followed from the folder holding
    it, so both the folder of a link and those of its target are there; the last name is not
    followed (the write takes it without following). Whoever can write one of them can rename
    that name to theirs. Stops where a name is missing (the write then says why)."""
    try:
        whole = path if path.is_absolute() else Path.cwd() / path
    except OSError:
        return []  # (no working folder: the write says why)
    folder, holders, links = Path("/"), [Path("/")], 0
    todo = list(reversed(whole.parts[1:]))
    while len(todo) > 1 and links <= _MOST_LINKS:
        try:
            folder, names = _through(folder, todo.pop())
        except OSError:
            break
        if names is not None:
            links += 1
            todo.extend(reversed(names))
        if folder not in holders:
            holders.append(folder)
    return holders


def _through(folder: Path, name: str) -> tuple[Path, tuple[str, ...] | None]:
    """Where the lookup of ``name`` in ``folder`` goes on: the folder it names (no names: it is
    no link), or, for a link, the folder its target is looked up from and the target's names.
    OSError: nothing there."""
    if name == "..":
        return folder.parent, None
    try:
        target = (folder / name).readlink()
    except OSError as exc:
        if exc.errno != errno.EINVAL:  # (EINVAL: not a link)
            raise
        return folder / name, None
    if target.is_absolute():
        return Path("/"), target.parts[1:]
    return folder, target.parts


# a POSIX access list (acl_ea_header, then acl_ea_entry: tag, perm, id; little-endian, as the
# kernel's xattr ABI): the tags that name someone, and the mask that bounds them all
_ACL = "system.posix_acl_access"
_ACL_USER, _ACL_GROUP_OBJ, _ACL_GROUP, _ACL_MASK = 0x02, 0x04, 0x08, 0x10
_ACL_ENTRY = struct.Struct("<HHI")
_NO_ACL = frozenset({errno.ENODATA, errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOSYS})


def _who_else_writes(folder: Path, found: os.stat_result) -> str | None:
    """Who besides this user and root may rename a file in ``folder`` (``found``: its stat), as
    the tail of a sentence; None: nobody. Its owner when another user; else, without the sticky
    bit (which leaves a file to its owner, as ``/tmp``'s): anyone (the world bits), a group other
    than this user's own (the group bits), or a user or group its access list lets write it."""
    if found.st_uid not in (0, os.geteuid()):
        return f"is another user's (uid {found.st_uid}), who"
    if found.st_mode & stat.S_ISVTX:
        return None
    if found.st_mode & stat.S_IWOTH:
        return "may be written by anyone (no sticky bit): anyone"
    try:
        entries = _access_list(folder)
    except ValueError as exc:
        return f"has an access list mdl cannot read ({exc}), by which others"
    if entries is None:  # the mode says it all: its group bits are its group's
        writers = [("group", found.st_gid)] if found.st_mode & stat.S_IWGRP else []
    else:  # an extended list: the group bits are its mask
        writers = _acl_writers(entries, found.st_gid)
    others = [(kind, who) for kind, who in writers if not _only_me(kind, who)]
    if not others:
        return None
    kind, who = others[0]
    named = _name_of(kind, who)
    if entries is None:
        return f"may be written by the group {named} (no sticky bit): its members"
    return f"has an access list letting the {kind} {named} write it (no sticky bit): they"


def _access_list(folder: Path) -> list[tuple[int, int, int]] | None:
    """The entries (tag, perm, id) of ``folder``'s POSIX access list; None: it has none beyond its
    mode (or the file system keeps none). ValueError: one it has cannot be read."""
    try:
        raw = os.getxattr(folder, _ACL)
    except OSError as exc:
        if exc.errno in _NO_ACL:
            return None
        raise ValueError(exc.strerror or str(exc)) from None
    body = raw[4:]
    if raw[:4] != b"\x02\x00\x00\x00" or len(body) % _ACL_ENTRY.size:
        raise ValueError("not a version 2 list")
    return list(_ACL_ENTRY.iter_unpack(body))


def _acl_writers(entries: list[tuple[int, int, int]], gid: int) -> list[tuple[str, int]]:
    """Who an access list lets write (each entry's permission within the mask): named users,
    the owning group, named groups."""
    mask = next((perm for tag, perm, _ in entries if tag == _ACL_MASK), 0o7)
    kinds = {_ACL_USER: "user", _ACL_GROUP_OBJ: "group", _ACL_GROUP: "group"}
    return [
        (kinds[tag], gid if tag == _ACL_GROUP_OBJ else who)
        for tag, perm, who in entries
        if tag in kinds and perm & mask & 0o2
    ]


def _only_me(kind: str, who: int) -> bool:
    """Whether the user or group ``who`` is this user alone: this user (or root, who may anyway);
    or its private group: its primary group, named as the user, listing no other member. Asked
    by id alone (no listing of every account, slow on a directory and partial where it does not
    enumerate); another account given this user's private group as its own primary group is the
    administrator's grant to it."""
    me = os.geteuid()
    if kind == "user":
        return who in (0, me)
    try:
        user, group = pwd.getpwuid(me), grp.getgrgid(who)
    except KeyError:
        return False
    alone = set(group.gr_mem) <= {user.pw_name}
    return who == user.pw_gid and group.gr_name == user.pw_name and alone


def _name_of(kind: str, who: int) -> str:
    try:
        return pwd.getpwuid(who).pw_name if kind == "user" else grp.getgrgid(who).gr_name
    except KeyError:
        return f"(id {who})"


def _an_earlier_runs(path: Path) -> bool:
    """Whether the file at ``path`` is one an earlier run wrote: a regular file (not a link) of
    this user's with one name, mode 600, of ``export`` lines only, naming the endpoint. Nobody
    else can make a file this user owns; what this user keeps elsewhere (a key file, a shell's
    profile) does not read so."""
    try:
        with opened(path) as (fd, found):
            return (
                stat.S_ISREG(found.st_mode)
                and found.st_uid == os.geteuid()
                and stat.S_IMODE(found.st_mode) == 0o600
                and found.st_nlink == 1
                and _exports_only(os.read(fd, _MOST_ENV_FILE + 1))
            )
    except OSError:
        return False


def _exports_only(text: bytes) -> bool:
    lines = text.splitlines()
    return (
        len(text) <= _MOST_ENV_FILE
        and all(line.startswith(b"export ") for line in lines)
        and any(line.startswith(b"export AWS_ENDPOINT_URL=") for line in lines)
    )
