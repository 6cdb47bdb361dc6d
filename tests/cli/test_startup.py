"""Start-up (issue 15): each command loads only what it uses. `mdl --help` and `mdl list` never load
the HTTP stack, the Hub client or boto3; `mdl get` of a plain URL never loads the Hub client.
Checked on real `python -m mdl` processes by the modules they end with (behaviour, not timing)."""

from __future__ import annotations

import ast
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hostile import ScratchCA, TlsCdn
from runfixtures import mdl
from servers import TOKEN, CdnServer, HubServer

ROOT = Path(__file__).resolve().parents[2]
NET = ("httpx2", "httpcore2", "huggingface_hub", "boto3", "botocore")
# Help is written and the process ends before any work: nothing below the CLI is needed for it.
NOT_FOR_HELP = (*NET, "rich.progress", "mdl.catalog", "mdl.store", "mdl.download", "mdl.transfer")
NOT_FOR_LIST = (
    *NET,
    "rich.progress",
    "mdl.transfer",
    "mdl.download",
    "mdl.sources",
    "mdl.catalog.edit",
)
# A URL is not the Hub: neither the Hub client, nor its pydantic reply models, nor (without a
# catalog) the catalog's.
NOT_FOR_GET = (
    "huggingface_hub",
    "boto3",
    "botocore",
    "mdl.sources._hubreplies",
    "mdl.catalog._schema",
)
# A run builds only the command it runs (mdl.cli.app.COMMANDS): the other command modules are not
# even imported.
COMMAND_MODULES = tuple(
    f"mdl.cli.{m}" for m in ("archive", "download", "edit", "get", "inspect", "lock", "publish")
)
# What a plain URL's get (no catalog) never runs: the Hub client and its replies, Xet, the lock, the
# mirror filling and its leases, S3 writes, signatures, prune and the catalog's editing; nor the
# libraries under them; nor pydantic (Typer 0.29 converts each value through a pydantic TypeAdapter:
# mdl.cli.app.given hands on a value given as text, or none, without it).
NOT_FOR_PLAIN_GET = (
    *NOT_FOR_GET,
    "pydantic",
    "rich",
    # issue 90: an http:// host looked up as the ASCII bytes it is (a str loads the IDNA codec)
    "encodings.idna",
    "stringprep",
    # issue 90: a plain line (get SOURCE... -o/-d/-q) runs without Typer (mdl.cli.plain)
    "typer",
    "mdl.cli.app",
    "mdl.cli.options",
    # a run of one file asks no median of its small files' waits (fractions, decimal)
    "statistics",
    "model_signing",
    "blake3",
    "lz4",
    "numpy",
    "huggingface_hub",
    "mdl.sources.hub",
    "mdl.lockfile",
    "mdl.lockfile.model",
    "mdl.xet.fetch",
    "mdl.xet._streams",
    "mdl.xet._cas",
    "mdl.buckets._s3write",
    "mdl.buckets._s3conditional",
    "mdl.buckets._s3upload",
    "mdl.buckets.lease",
    "mdl.download._fill",
    "mdl.download.resolve",
    "mdl.download.lock",
    "mdl.download.puller",
    "mdl.download._signed",
    "mdl.download.catalog_edits",
    "mdl.signing.library",
    "mdl.store.prune",
    "mdl.store.verify",
    # a file judged against its record is mdl.store.states' (a model's state, list and show are
    # the inventory's: 6 dataclasses, ~5 ms)
    "mdl.store.inventory",
    # a record's expected files are a pull's (a get writes none)
    "mdl.store.expected",
    # issue 90: judging the places get wrote is list's, clean's and prune's (a get notes its place in
    # mdl.store.register); the Hub's RateLimit headers are read when a reply may state a limit
    "mdl.store.oneoffs",
    "mdl.transfer.rateheaders",
    "mdl.catalog.edit",
    "mdl.catalog.files",
    "mdl.api._download",
    "mdl.api._lock",
    # issue 90: a get without a catalog builds its settings from none: the catalog's types (four
    # frozen dataclasses) are not made
    "mdl.catalog.specs",
    # issue 90: what resolve reports (a frozen dataclass)
    "mdl.resolution",
    # no object store's code for an http(s) URL (the registry makes each store when its scheme is
    # asked), no signing without a signer, no HTML parser without an HTML error page, no TOML
    # without a catalog
    "mdl.buckets.s3",
    "mdl.buckets._s3store",
    "mdl.buckets.folder",
    "mdl.signing",
    "mdl.signing.statement",
    "mdl.transfer._htmltext",
    "html",
    "html.parser",
    "tomllib",
    # issue 79: one flock per lock is fcntl's, not the filelock package's 21 modules; the log file
    # rotates on logging.FileHandler (logging.handlers brings pickle and queue); temporary names
    # are os.urandom's (secrets brings hmac); platformdirs only for a default folder or log (the
    # probe's log is MDL_LOG_FILE); no object store's protocol for an http(s) URL
    "filelock",
    "logging.handlers",
    "pickle",
    "secrets",
    "hmac",
    "platformdirs",
    "mdl.buckets.protocol",
    # issue 90: no netrc file, no parser for one (nor shlex under it)
    "netrc",
    "shlex",
)
# How many of mdl's modules a plain URL's get loads, at most (80 when this was set, from 116: each
# command loads what it runs; 75 once stores, signing and the engine were made only when used; 76
# with the streams' redirect target its own state object, mdl.transfer._target, issue 60; 77 with
# the log file's handler its own module, mdl.cli.render.logfile, which the readiness probe does not
# load; 78 with mdl.background, the house's one way to run background work, which the stdout
# watcher of a piped run uses: stdlib only, threading and logging already loaded, issue 69; 76
# with no object store's protocol for a URL, mdl.buckets.protocol, and a margin of one less,
# issue 79).
# A change that needs more on this path says why here: the small files' route (mdl.transfer.small,
# issue 79), which the engine's module brings, on the import-ahead thread while the probe is out;
# 79 with get's memory (mdl.download._getrecord: a no-op get reads no file back) and the register of
# the places get wrote (mdl.store.oneoffs: list, prune, remove and clean see them), issue 88; 80
# with the one bounded reader of outside JSON (mdl.outsidejson: its records are read through it),
# issue 86; 79 with no Typer for a plain line (mdl.cli.app, .options and .get not loaded; its body
# is mdl.cli.plain's) and a file's state judged by mdl.store.states, not the inventory, issue 90.
# 84, issue 89: the same code split by job into five more modules a get runs (the claim state
# transfer._state, the body copy transfer._copy, transfer.hasher, transfer.tls out of connection,
# and the one wait value mdl.wait); no new work, and the get's CPU fell (bench/startup.py)
# 85, issues 89 and 90: transfer.http split by idea (a failed request's words are
# mdl.transfer.failures); a get notes its folder in mdl.store.register and loads neither the
# register's readers (mdl.store.oneoffs) nor the RateLimit parser (mdl.transfer.rateheaders)
# 87, issue 90: the first request sent while the rest loads (mdl.transfer.early, standard library
# only) and read on the connection it opened (mdl.transfer.earlywire, once the download takes it)
# 88, issue 90: the one whole write of a buffer (mdl.writes, below the parts: buckets and the
# swarm write with it too), which transfer._copy's write_at moved to
# 89, issue 90: which hosts plain http may go to (mdl.transfer.hosts: the early request asks it too)
# 90: the walk to a folder by descriptor out of mdl.paths (at its size limit) into mdl.folderwalk,
# with the owner rule for folders it now holds (a co-tenant's folder where anyone may write)
# 91, issue 90: the user's folders by platformdirs' Linux rule written out (mdl.userfolders), so a
# get no longer loads platformdirs' seven modules (1.4 % fewer instructions)
PLAIN_GET_MODULES = 91
MDL_MODULES = tuple(
    sorted(
        ".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        for p in (ROOT / "mdl").rglob("*.py")
    )
)
CATALOG = (
    '[models.tiny]\nrepo = "org/tiny"\n\n[models.direct]\nfiles = [{ url ='
    ' "https://example.com/x.bin" }]\n'
)

# Runs mdl as the console script does, then writes which of the modules named in argv[1] (JSON) were
# loaded.
PROBE = """\
import atexit, json, sys
watch, out = json.loads(sys.argv[1]), sys.argv[2]
atexit.register(lambda: open(out, "w").write(json.dumps([m for m in watch if m in sys.modules])))
sys.argv = ["mdl", *sys.argv[3:]]
from mdl.__main__ import main
main()
"""


def run_script(tmp_path: Path, script: str, *args: str) -> None:
    """``python -c SCRIPT ARGS`` in ``tmp_path`` (a script that runs mdl's ``main``): it exits 0."""
    done = subprocess.run(
        [sys.executable, "-c", script, *args],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        # (this tree's mdl, whatever an editable install elsewhere points at)
        env={**os.environ, "MDL_LOG_FILE": str(tmp_path / "mdl.log"), "PYTHONPATH": str(ROOT)},
        timeout=60,
    )
    assert done.returncode == 0, done.stderr


def loaded(tmp_path: Path, watch: tuple[str, ...], *args: str) -> list[str]:
    """Which of ``watch`` a `mdl ARGS` process had imported when it exited (successfully)."""
    out = tmp_path / "loaded.json"
    run_script(tmp_path, PROBE, json.dumps(watch), str(out), *args)
    found: list[str] = json.loads(out.read_text())
    return found


def test_help_loads_nothing_below_the_cli(tmp_path: Path) -> None:
    # Not even pydantic: Typer 0.29 converts each option's value through a pydantic TypeAdapter
    # (the global options' too, before a command's --help), and none given is converted by none.
    for args in (("--help",), ("pull", "--help"), ("help", "pull"), ("get", "--help")):
        assert loaded(tmp_path, (*NOT_FOR_HELP, "pydantic"), *args) == [], args


@pytest.mark.slow
def test_list_is_offline_and_light(tmp_path: Path) -> None:
    (tmp_path / "catalog.toml").write_text(CATALOG)
    assert loaded(tmp_path, NOT_FOR_LIST, "list") == []
    assert loaded(tmp_path, (*NOT_FOR_LIST, *COMMAND_MODULES), "list", "--json") == [
        "mdl.cli.inspect"
    ]


def test_get_of_a_url_never_loads_the_hub_client(tmp_path: Path, cdn: CdnServer) -> None:
    url = cdn.add_file("/x.bin", b"forty-two bytes of a very small model file")
    # a plain line runs without Typer (mdl.cli.plain), so without get's Typer command too
    assert loaded(tmp_path, (*NOT_FOR_GET, *COMMAND_MODULES), "get", url, "-o", "x.bin") == []
    assert loaded(tmp_path, COMMAND_MODULES, "get", url, "-o", "y.bin", "--force") == [
        "mdl.cli.get"
    ]
    assert (tmp_path / "x.bin").read_bytes() == b"forty-two bytes of a very small model file"


@pytest.mark.slow
def test_a_plain_get_loads_only_what_it_runs(tmp_path: Path, cdn: CdnServer) -> None:
    url = cdn.add_file("/tiny.bin", b"tiny")
    assert loaded(tmp_path, NOT_FOR_PLAIN_GET, "get", url, "-o", "tiny.bin") == []
    ours = loaded(tmp_path, MDL_MODULES, "get", url, "-o", "again.bin")
    assert "mdl.download.get" in ours  # the probe sees the get's own modules
    assert len(ours) <= PLAIN_GET_MODULES, ours
    assert (tmp_path / "again.bin").read_bytes() == b"tiny"
    # issue 90: -q shows nothing, and loads no display's module to show nothing with
    assert loaded(tmp_path, ("mdl.cli.render.progress",), "get", url, "-o", "q.bin", "-q") == []
    assert (tmp_path / "q.bin").read_bytes() == b"tiny"


# Runs mdl as the console script does, then writes how many methods of mdl's classes were compiled
# from source at import: each a dataclass's generated __init__, __repr__, __eq__, __hash__,
# __setattr__ or __delattr__ (a NamedTuple's one __new__), ~1 M instructions each under Python 3.11.
COMPILED = """\
import atexit, sys
out = sys.argv[1]
def count():
    classes = [
        v for name, m in list(sys.modules.items()) if name.startswith("mdl")
        for v in list(vars(m).values()) if isinstance(v, type) and v.__module__ == name
    ]
    methods = [f for c in classes for f in vars(c).values() if hasattr(f, "__code__")]
    open(out, "w").write(str(sum(f.__code__.co_filename == "<string>" for f in methods)))
atexit.register(count)
sys.argv = ["mdl", *sys.argv[2:]]
from mdl.__main__ import main
main()
"""
# At most this many for a plain URL's get (issue 90: 275 before; records nothing compares or prints
# are eq=False and repr=False, or a NamedTuple; a quarter of the get's CPU went to compiling them;
# 65 -> 33 once Settings, RemoteFile, TransferJob and Credentials were NamedTuples and the engine's
# and a run's state plain classes; 24 -> 14 once FileOutcome and ExtraFile were NamedTuples, and
# Wait a plain class; -> 7 once ModelRecord was a NamedTuple: RunReport's six are left).
PLAIN_GET_COMPILED = 7


def test_a_plain_get_compiles_few_methods_at_import(tmp_path: Path, cdn: CdnServer) -> None:
    url = cdn.add_file("/c.bin", b"tiny")
    out = tmp_path / "compiled.txt"
    run_script(tmp_path, COMPILED, str(out), "get", url, "-o", "c.bin")
    assert 0 < int(out.read_text()) <= PLAIN_GET_COMPILED
    assert (tmp_path / "c.bin").read_bytes() == b"tiny"


# Runs mdl's console script (mdl._start, which turns the cyclic collector off before the CLI's first
# import), then writes whether the collector was on when the process exited.
COLLECTOR = """\
import atexit, gc, sys
out = sys.argv[1]
atexit.register(lambda: open(out, "w").write(str(gc.isenabled())))
sys.argv = ["mdl", *sys.argv[2:]]
from mdl._start import main
main()
"""


def test_the_console_script_loads_without_the_collector_and_turns_it_back_on(
    tmp_path: Path, cdn: CdnServer
) -> None:
    """Issue 90: the collector's passes over a start's new objects (none of them garbage) are off
    while the CLI loads, from its first import; once loaded the run has it again (a process of its
    own: the console script's start is what is tested)."""
    url = cdn.add_file("/g.bin", b"g")
    out = tmp_path / "collector.txt"
    run_script(tmp_path, COLLECTOR, str(out), "get", url, "-o", "g.bin")
    assert (out.read_text(), (tmp_path / "g.bin").read_bytes()) == ("True", b"g")


# Runs mdl as the console script does, then writes how many TLS contexts it made (the first is
# OpenSSL's set-up, ~5 M instructions of a tiny get).
TLS_CONTEXTS = """\
import atexit, ssl, sys
out, made, new = sys.argv[1], [], ssl.SSLContext.__new__
def counted(cls, *args, **kwargs):
    made.append(cls)
    return new(cls, *args, **kwargs)
ssl.SSLContext.__new__ = staticmethod(counted)
atexit.register(lambda: open(out, "w").write(str(len(made))))
sys.argv = ["mdl", *sys.argv[2:]]
from mdl.__main__ import main
main()
"""


def test_a_plain_http_get_makes_no_tls_context(
    tmp_path: Path, cdn: CdnServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 90: the http:// route's pool is given no context (httpcore2 uses one only for an
    https:// origin, which has a route of its own); an https:// get makes the one it verifies
    with."""
    out = tmp_path / "contexts.txt"
    run_script(tmp_path, TLS_CONTEXTS, str(out), "get", cdn.add_file("/p.bin", b"p"), "-o", "p.bin")
    assert (int(out.read_text()), (tmp_path / "p.bin").read_bytes()) == (0, b"p")
    ca = ScratchCA()
    server = TlsCdn(ca).start()
    try:
        server.add_file("/s.bin", b"s")
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(ca.write_bundle(tmp_path / "ca.pem")))
        run_script(tmp_path, TLS_CONTEXTS, str(out), "get", f"{server.url}/s.bin", "-o", "s.bin")
    finally:
        server.stop()
    assert (int(out.read_text()) >= 1, (tmp_path / "s.bin").read_bytes()) == (True, b"s")


# Runs mdl as the console script does, then writes which thread began importing each module named
# in argv[1] (JSON) that it imported.
BY_THREAD = """\
import atexit, builtins, json, sys, threading
watch, out, by = json.loads(sys.argv[1]), sys.argv[2], {}
atexit.register(lambda: open(out, "w").write(json.dumps(by)))
imported = builtins.__import__
def noted(name, *args, **kwargs):
    if name in watch and name not in sys.modules:
        by.setdefault(name, threading.current_thread().name)
    return imported(name, *args, **kwargs)
builtins.__import__ = noted
sys.argv = ["mdl", *sys.argv[3:]]
from mdl.__main__ import main
main()
"""


def test_a_get_imports_its_transfer_modules_while_its_probe_is_out(
    tmp_path: Path, cdn: CdnServer
) -> None:
    """Issue 79: the files' plans, the fetch and the engine load on a background thread started
    as the probe goes out (0.3 s from a far bucket), and the get waits for them before it uses
    them: the main thread never begins their import."""
    url = cdn.add_file("/t.bin", b"tiny")
    out = tmp_path / "by.json"
    watch = ["mdl.download._fetch", "mdl.transfer.engine"]
    run_script(tmp_path, BY_THREAD, json.dumps(watch), str(out), "get", url, "-o", "t.bin")
    assert json.loads(out.read_text()) == dict.fromkeys(watch, "mdl-import-ahead")
    assert (tmp_path / "t.bin").read_bytes() == b"tiny"


def test_values_given_as_text_reach_get_without_pydantic(tmp_path: Path, cdn: CdnServer) -> None:
    """Typer 0.29 converts each value through a pydantic TypeAdapter; a get's text (its URL, a
    header, a hash, a count read by mdl's own parser) and paths reach it as Typer hands them on,
    without pydantic."""
    body = b"forty-two bytes of a very small model file"
    url = cdn.add_file("/h.bin", body, required_headers={"X-Team": "a b"})
    given = ("-d", "out", "-H", "X-Team: a b", "--connections", "2", "--timeout", "30")
    sha256 = hashlib.sha256(body).hexdigest()
    assert loaded(tmp_path, ("pydantic",), "get", url, *given, "--sha256", sha256) == []
    assert (tmp_path / "out" / "h.bin").read_bytes() == body
    wrong = mdl(
        "get", url, "-d", str(tmp_path / "other"), "-H", "X-Team: a b", "--sha256", "0" * 64
    )
    assert wrong.exit_code == 6, wrong.stderr  # the hash given is the one checked
    assert not (tmp_path / "other" / "h.bin").exists()


@pytest.mark.slow
def test_the_readiness_probe_loads_no_log_file_handler(tmp_path: Path, cdn: CdnServer) -> None:
    """`mdl verify --all --quick --locked` writes no log: the log file's handler is not loaded; nor
    the network code, nor rich. A run that logs loads the handler, and never logging.handlers
    (pickle, queue)."""
    url = cdn.add_file("/w.bin", b"weights")
    catalog = f'[settings]\ndest = "models"\n\n[models.one]\nfiles = [{{ url = "{url}" }}]\n'
    (tmp_path / "catalog.toml").write_text(catalog)
    assert loaded(tmp_path, (), "pull", "one") == []
    assert loaded(tmp_path, (), "lock") == []
    handlers = ("mdl.cli.render.logfile", "logging.handlers")
    # nor Typer: a plain verify line runs without it (mdl.cli.plain), issue 90
    watched = (*handlers, "rich", *NET, "typer", "mdl.cli.app")
    assert loaded(tmp_path, watched, "verify", "--all", "--quick", "--locked") == []
    # Catalog and lock checked before, their bytes unchanged (mdl.lockfile.remembered): not
    # checked again, so neither pydantic nor the rules' modules nor a TOML parser is loaded.
    unchecked = ("pydantic", "mdl.catalog._schema", "mdl.lockfile.checked", "tomllib")
    assert loaded(tmp_path, (*watched, *unchecked), "verify", "--all", "--quick", "--locked") == []
    assert loaded(tmp_path, handlers, "verify", "--all") == ["mdl.cli.render.logfile"]


@pytest.mark.slow
def test_a_hub_pull_never_loads_hf_hub_url_s_module(
    tmp_path: Path, hub: HubServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """huggingface_hub.file_download (~0.2 s to import) is never loaded: mdl writes the resolve URL
    and the cache folder's name out (tests/sources/test_hub_file_url.py,
    tests/store/test_repo_folder.py hold them equal to the library's)."""
    # more files than the first workers: each judges whether the lane needs more (a median of
    # their waits, asked without ``statistics``)
    shards = {f"s/{n:02}.txt": b"x%d" % n for n in range(12)}
    hub.add_repo("org/tiny", {"config.json": b"{}", "w.bin": b"weights", **shards})
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    (tmp_path / "catalog.toml").write_text(
        '[settings]\ndest = "models"\n\n[models.tiny]\nrepo = "org/tiny"\n'
    )
    watched = ("huggingface_hub.file_download", "rich", "boto3", "mdl.download._fill", "statistics")
    assert loaded(tmp_path, watched, "pull", "tiny") == []
    assert (tmp_path / "models" / "tiny" / "w.bin").read_bytes() == b"weights"
    cache = ("huggingface_hub.file_download",)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    assert loaded(tmp_path, cache, "pull", "tiny", "--layout", "hf-cache") == []
    # the name written out is the one huggingface_hub reads
    assert [
        p.read_bytes() for p in (tmp_path / "hf").glob("models--org--tiny/snapshots/*/w.bin")
    ] == [b"weights"]


def test_a_hub_pull_with_no_token_anywhere_never_loads_the_token_s_module(
    tmp_path: Path, hub: HubServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No HF_TOKEN, no token file, no OIDC: huggingface_hub.utils (yaml, filelock: ~25 ms before
    the first request) is not loaded to say there is no token (tests/sources/test_stored_token.py
    holds the answer to the library's), nor pydantic to read the Hub's replies; a token file there
    is read and sent."""
    hub.add_repo("org/tiny", {"config.json": b"{}", "w.bin": b"weights"})
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    (tmp_path / "catalog.toml").write_text(
        '[settings]\ndest = "models"\n\n[models.tiny]\nrepo = "org/tiny"\n'
    )
    # (its first request planned while the rest loads: a catalog no pull checked yet sends
    # nothing early, the pull asks once)
    watched = ("huggingface_hub.utils", "mdl.download.earlyhub")
    assert loaded(tmp_path, watched, "pull", "tiny", "-q") == ["mdl.download.earlyhub"]
    assert (tmp_path / "models" / "tiny" / "w.bin").read_bytes() == b"weights"
    assert len(hub.log.records(path_prefix="/api/models/org/tiny/revision/main")) == 1
    # a get of a Hub file plans its first request the same way (that the get takes it, asked
    # once, is tests/download/test_earlyhub.py's: a process here may start slower than an early
    # connection stays fresh)
    got = loaded(tmp_path, watched[1:], "get", "hf://org/tiny/w.bin", "-d", "got", "-q")
    assert got == ["mdl.download.earlyhub"]
    assert (tmp_path / "got" / "w.bin").read_bytes() == b"weights"
    # the catalog checked once (its rules are pydantic's), a pull reads the Hub's replies without
    # pydantic (mdl.sources._hubreplies: ~80 ms a start)
    watched = ("huggingface_hub.utils", "pydantic")
    assert loaded(tmp_path, watched, "pull", "tiny", "-q", "--dest", "again") == []
    assert (tmp_path / "again" / "tiny" / "w.bin").read_bytes() == b"weights"
    # a private repo: only the token stored in the file opens it
    hub.add_repo("org/secret", {"w.bin": b"private weights"}, private=True)
    (tmp_path / "catalog.toml").write_text(
        '[settings]\ndest = "models"\n\n[models.secret]\nrepo = "org/secret"\n'
    )
    (tmp_path / "hf-home").mkdir()
    (tmp_path / "hf-home" / "token").write_text(f"{TOKEN}\n")
    assert loaded(tmp_path, (), "pull", "secret", "-q") == []
    assert (tmp_path / "models" / "secret" / "w.bin").read_bytes() == b"private weights"


def test_every_command_is_built_as_registered() -> None:
    """The lazy table builds each command from its own function, under its own name; help lists
    them in order.
    """
    import typer.main

    from mdl.cli.app import COMMANDS, app, build_command

    for name, (module, function) in COMMANDS.items():
        command = build_command(name)
        assert command.name == name
        assert command.callback is not None
        assert (command.callback.__module__, command.callback.__name__) == (
            f"mdl.cli.{module}",
            function,
        )
    group = typer.main.get_command(app)
    assert list(group.commands) == list(COMMANDS)  # type: ignore[attr-defined]
    section = mdl("--help").stdout.split("Commands:")[1].split("\n\n")[0]  # then Examples
    listed = [
        line.split()[0] for line in section.splitlines() if line.startswith("  ") and line[2] != " "
    ]
    assert listed == list(COMMANDS)


@pytest.mark.slow
def test_pull_of_a_one_url_model_never_loads_the_hub_client(tmp_path: Path, cdn: CdnServer) -> None:
    url = cdn.add_file("/w.bin", b"weights")
    catalog = f'[settings]\ndest = "models"\n\n[models.one]\nfiles = [{{ url = "{url}" }}]\n'
    (tmp_path / "catalog.toml").write_text(catalog)
    # nor a version's manifest (mdl.buckets.versions, pydantic's models): read only when a pull
    # signs or has a mirror (issue 90: a third of a tiny pull's instructions, its catalog checked)
    # nor, with no lock pinning it, the walk that leaves a folder as a lock's version (prune's
    # modules), difflib (a name a lock does not hold) or the Hub's URLs for locked files, issue 90
    watched = (
        *("huggingface_hub", "boto3", "mdl.sources._hubreplies", "mdl.buckets.versions"),
        *("mdl.store.extras", "mdl.store.prune", "difflib", "mdl.sources.hub"),
    )
    assert loaded(tmp_path, watched, "pull", "one") == []
    assert (tmp_path / "models" / "one" / "w.bin").read_bytes() == b"weights"


@pytest.mark.slow
def test_get_reads_only_a_catalog_it_is_given(tmp_path: Path, cdn: CdnServer) -> None:
    """A catalog beside a get is not read (get names its sources); one named with --catalog is,
    schema and all.
    """
    (tmp_path / "catalog.toml").write_text(CATALOG)
    url = cdn.add_file("/x.bin", b"42")
    watched = ("mdl.catalog._schema", "huggingface_hub")
    assert loaded(tmp_path, watched, "get", url, "-o", "x.bin") == []
    assert loaded(tmp_path, watched, "get", url, "-o", "y.bin", "--catalog", "catalog.toml") == [
        "mdl.catalog._schema"
    ]


# -- the rules behind it
# -----------------------------------------------------------------------------------


def test_command_modules_keep_real_annotations() -> None:
    """Typer reads each command's signature at every start; string annotations would be evaluated
    each time.
    """
    postponed = []
    for path in sorted((ROOT / "mdl" / "cli").glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        defines_command = any(
            isinstance(node, ast.FunctionDef)
            and (node.name.endswith("_cmd") or node.name == "_root")
            for node in tree.body
        )
        future = any(isinstance(n, ast.ImportFrom) and n.module == "__future__" for n in tree.body)
        if defines_command and future:
            postponed.append(path.name)
    assert postponed == []
