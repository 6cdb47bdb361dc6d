"""Issue 37, exits and words: a Ctrl-C says what was kept for *that* command (pull and get: partial
downloads; pack: the unfinished archive removed; unpack: the destination as it was; publish: what
was uploaded), each said once; and running out of memory is exit 7 "out of memory", never exit 1
"internal error".

The interrupts are real SIGINTs sent to real `mdl` processes caught mid-work; the memory
runs out under a real address-space limit (RLIMIT_AS).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import resource
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from runfixtures import HANG, make_hf_run, mdl, use_catalog, wait_for
from s3server import S3, s3, s3_server  # noqa: F401
from servers import CdnServer, HubServer, hold_after, make_data
from zygote import Forked, forked_mdl, shared

from mdl.cli.run import Run
from mdl.cli.translate import KEPT_ON_INTERRUPT, translate
from mdl.errors import ExitCode, InterruptedByUserError
from mdl.lockfile.io import write_lock
from mdl.lockfile.model import Lock, LockedFile, LockedModel, fingerprint
from mdl.store import inventory

MiB = 1024 * 1024
INVENTORY = str(Path(inventory.__file__))  # a module's file that compiles
KEPT_DOWNLOADS = "interrupted; what had arrived is kept, run again to resume"


def spawn(
    args: list[str], *, cwd: Path, stdin: int | None = None
) -> subprocess.Popen[str] | Forked:
    """``mdl ARGS`` forked from the worker's zygote (tests/zygote.py), its SIGINT its own (a
    signal passed on by a command would come after what the test does next). With ``stdin``, a
    pipe the test writes, ``python -m mdl``."""
    env = {**os.environ, "MDL_LOG_FILE": str(cwd / "mdl.log")}
    if stdin is None:
        return shared().spawn(args, env=env, cwd=cwd)
    return subprocess.Popen(
        [sys.executable, "-m", "mdl", *args],
        cwd=cwd,
        env=env,
        stdin=stdin,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def interrupt(
    proc: subprocess.Popen[str] | Forked,
    ready: object,
    *,
    what: str,
    sent: threading.Event | None = None,
) -> str:
    """SIGINT ``proc`` once ``ready()`` holds (then set ``sent``: what a server held until the
    signal goes on); its stderr, after it ended with 130."""
    try:
        wait_for(ready, what=what)  # type: ignore[arg-type]
        proc.send_signal(signal.SIGINT)
        if sent is not None:
            sent.set()
        _, told = proc.communicate(timeout=HANG)
        err = told.decode() if isinstance(told, bytes) else told
    finally:
        if sent is not None:
            sent.set()
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == ExitCode.INTERRUPTED == 130, err
    assert "Traceback" not in err and "internal error" not in err
    return err


def parts(dest: Path) -> list[Path]:
    """Partial downloads whose resume record says some bytes are done (what a next run resumes)."""
    folder = dest / ".mdl" / "partial"
    found = []
    for part in folder.glob("*.part") if folder.exists() else []:
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
            record = json.loads(part.with_name(part.name + ".json").read_text())
            if sum(done for _, _, done in record["pieces"]) > MiB:
                found.append(part)
    return found


# -- each command says what it kept
# ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "command", sorted({*KEPT_ON_INTERRUPT, "list", "show", "resolve", "verify", "clean"})
)
def test_every_command_says_its_own_words_once(
    command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    run = Run(command=command)
    for ending in (KeyboardInterrupt(), InterruptedByUserError("interrupted")):
        assert translate(ending, run) == 130
        err = capsys.readouterr().err
        kept = KEPT_ON_INTERRUPT.get(command)
        assert (f"interrupted; {kept}" if kept else "interrupted") in err
        assert err.count("interrupted") == 1
        if command not in ("pull", "get"):
            assert "partial downloads" not in err


def test_a_core_interruption_keeps_its_own_words_and_gets_the_commands(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert translate(
        InterruptedByUserError("tiny/w.bin: interrupted while waiting for a lock"),
        Run(command="pull"),
    )
    assert (
        "tiny/w.bin: interrupted while waiting for a lock; what had arrived is kept"
        in capsys.readouterr().err
    )


@pytest.fixture
def slow_hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[HubServer]:
    cdn = CdnServer(throttle_bps=2_000_000)
    with cdn, HubServer(cdn=cdn) as hub:
        hub.add_repo("org/big", {"weights.bin": make_data(40 * MiB, seed=3), "config.json": b"{}"})
        use_catalog(tmp_path, monkeypatch, '[models.big]\nrepo = "org/big"\n', endpoint=hub.url)
        yield hub


@pytest.mark.slow
def test_pull_interrupted_says_partial_downloads_were_kept(
    slow_hub: HubServer, tmp_path: Path
) -> None:
    sent = hold_after(slow_hub.cdn, 2 * MiB)
    proc = spawn(["pull", "big"], cwd=tmp_path)
    err = interrupt(
        proc, lambda: bool(parts(tmp_path / "models")), what="a partial download", sent=sent
    )
    assert err.count(KEPT_DOWNLOADS) == 1, err
    assert parts(tmp_path / "models"), "what it said was kept is there"


@pytest.mark.slow
def test_get_interrupted_says_partial_downloads_were_kept(tmp_path: Path) -> None:
    with CdnServer(throttle_bps=2_000_000) as cdn:
        url = cdn.add_file("/files/w.bin", make_data(40 * MiB, seed=4))
        sent = hold_after(cdn, 2 * MiB)
        proc = spawn(["get", url, "-d", str(tmp_path / "out")], cwd=tmp_path)
        err = interrupt(
            proc, lambda: bool(parts(tmp_path / "out")), what="a partial download", sent=sent
        )
    assert err.count(KEPT_DOWNLOADS) == 1, err
    assert parts(tmp_path / "out")


def test_pack_interrupted_says_the_unfinished_archive_was_removed(tmp_path: Path) -> None:
    run = tmp_path / "run"
    make_hf_run(run, steps=(100,))
    # sparse: quick to read, slow enough to write
    with (run / "big.safetensors").open("wb") as handle:
        handle.truncate(2048 * MiB)
    partial = tmp_path / "out.zip.partial"
    proc = spawn(["pack", "run", "-o", "out.zip"], cwd=tmp_path)
    err = interrupt(
        proc,
        lambda: partial.exists() and partial.stat().st_size > 16 * MiB,
        what="an archive on its way",
    )
    assert "interrupted; the unfinished archive was removed" in err, err
    assert "partial downloads" not in err
    assert not partial.exists() and not (tmp_path / "out.zip").exists()


@pytest.mark.slow
def test_unpack_interrupted_says_the_destination_was_left_as_it_was(tmp_path: Path) -> None:
    run = tmp_path / "run"
    make_hf_run(run, steps=(100,))
    (run / "big.safetensors").write_bytes(os.urandom(24 * MiB))
    archive = subprocess.run(
        [forked_mdl(), "pack", "run", "-o", "-"], cwd=tmp_path, capture_output=True, check=True
    ).stdout
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "mine.txt").write_text("kept")
    proc = spawn(["unpack", "-", "-d", str(dest)], cwd=tmp_path, stdin=subprocess.PIPE)
    assert proc.stdin is not None
    proc.stdin.write(archive[: len(archive) // 2].decode("latin-1"))  # the writer is still going
    proc.stdin.flush()

    def spooling() -> bool:
        return any(p.name.startswith(".stdin.zip.") for p in dest.iterdir())

    err = interrupt(proc, spooling, what="the stdin spool")
    assert "interrupted; the destination was left as it was" in err, err
    assert "partial downloads" not in err
    assert sorted(p.name for p in dest.iterdir()) == ["mine.txt"]


@pytest.mark.slow
def test_publish_interrupted_says_what_was_uploaded_is_kept(
    s3: S3,  # noqa: F811 - the fixture
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    big, small = make_data(34 * MiB, seed=8), b"{}"
    with HubServer() as hub:
        hub.add_repo("org/tiny", {"config.json": small, "nested/big.safetensors": big})
        use_catalog(tmp_path, monkeypatch, '[models.tiny]\nrepo = "org/tiny"\n', endpoint=hub.url)
        assert mdl("pull", "tiny").exit_code == 0
    s3.client().create_bucket(Bucket="team-models")
    s3.cutter.hold_parts = sent = threading.Event()  # parts held until the SIGINT was sent
    proc = spawn(["publish", "tiny", "--to", "s3://team-models/hub"], cwd=tmp_path)

    def uploading() -> bool:
        return any("partNumber=" in query for _, _, query in s3.cutter.writes)

    err = interrupt(proc, uploading, what="a multipart upload", sent=sent)
    s3.cutter.hold_parts = None
    assert (
        "interrupted while uploading; files already uploaded are kept, run again to send the rest"
        in err
    ), err
    assert "partial downloads" not in err


# -- out of memory
# -----------------------------------------------------------------------------------------


def locked_catalog(folder: Path, files: int) -> None:
    (folder / "catalog.toml").write_text('[models.big]\nrepo = "org/big"\n')
    from mdl.catalog.load import parse_catalog

    spec = parse_catalog((folder / "catalog.toml").read_text()).models[0]
    commit = "c" * 40
    entries = tuple(
        LockedFile(
            f"s/p-{i:06d}.bin",
            i,
            hashlib.sha256(b"%d" % i).hexdigest(),
            f"hf://org/big@{commit}/s/p-{i:06d}.bin",
        )
        for i in range(files)
    )
    write_lock(
        folder / "catalog.lock",
        Lock({"big": LockedModel("big", fingerprint(spec), "main", commit, entries)}),
    )


SAFETY_NET = 600  # seconds: each child does a fraction of a second's work; only a hang waits this
# The child's peak address space as the kernel counted it, written to $PEAK_FILE as it exits.
PEAK = (
    "import atexit, os, re\n"
    "status = lambda: open('/proc/self/status').read()\n"
    "atexit.register(lambda: open(os.environ['PEAK_FILE'], 'w').write("
    "re.search(r'VmPeak:\\s+(\\d+)', status())[1]))\n"
)
# exit 7 says so in two lines (the error, its hint), each maybe stamped (stderr is no terminal)
OUT_OF_MEMORY = re.compile(
    r"(\S+ \[\d+\] )?mdl: error: out of memory\n(\S+ \[\d+\] )?  hint: [^\n]+\n"
)
# what `mdl list` says when it works: its total, on stderr (the table is stdout's)
LISTED = re.compile(r"((\S+ \[\d+\] )?total: [^\n]+ on disk in [^\n]+\n)?")


def ended_well(code: int, stderr: str) -> bool:
    """Exit 0 saying nothing but, for `list`, its total."""
    return code == 0 and bool(LISTED.fullmatch(stderr))


def mdl_under(folder: Path, limit: int | None, *args: str) -> subprocess.CompletedProcess[str]:
    """``python -m mdl ARGS`` in ``folder`` with at most ``limit`` bytes of address space; with
    ``limit`` None, ``python -c ARGS`` with no limit, its peak written to ``folder/peak``."""

    def cap() -> None:
        if limit is not None:
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    env = {**os.environ, "MALLOC_ARENA_MAX": "1", "MDL_LOG_FILE": str(folder / "mdl.log")}
    env.update({"MDL_CATALOG": str(folder / "catalog.toml"), "MDL_DEST": str(folder / "models")})
    env.update({"PEAK_FILE": str(folder / "peak")})
    env.pop("MDL_DEBUG", None)
    command = ["-m", "mdl", *args] if limit is not None else ["-c", PEAK + args[0], *args[1:]]
    with (folder / "stdout").open("w") as out:
        return subprocess.run(
            [sys.executable, *command],
            stdout=out,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            preexec_fn=cap,  # the limit is the child's own
            timeout=SAFETY_NET,
            check=False,
        )


def peak(folder: Path, code: str, *args: str) -> int:
    """The most address space ``python -c CODE ARGS`` held, in bytes."""
    done = mdl_under(folder, None, code, *args)
    assert done.returncode == 0, done.stderr
    return int((folder / "peak").read_text()) * 1024


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RLIMIT_AS as Linux enforces it")
def test_running_out_of_memory_anywhere_is_exit_7_out_of_memory(tmp_path: Path) -> None:
    """Under an address-space limit anywhere from just what Python and the mdl package need up to
    what `mdl list` needs, mdl ends 0 or 7 "out of memory" in two lines: never exit 1 (an ImportError
    "failed to map segment", a SystemError, a ValueError that are memory running out), never an
    abort, a traceback or a hang. Limits measured on this Python, not guessed; no timing."""
    locked_catalog(tmp_path, 2)
    # what runs before any code of mdl's can say anything (the package's own imports)
    floor = peak(tmp_path, "import mdl.__main__") + MiB
    need = peak(tmp_path, "import runpy, sys; runpy.run_module('mdl', run_name='__main__')", "list")
    assert need > floor + 8 * MiB, (floor, need)
    # every 2 MiB at most for `list` (where the kernel maps each library decides which import
    # fails: a fine sweep meets more of them), a few for `--version`
    steps = max(5, (need - floor) // (2 * MiB))
    fine = [floor + (need - floor) * step // steps for step in range(steps)] + [need + 16 * MiB]
    coarse = [floor + (need - floor) * step // 4 for step in range(4)] + [need + 16 * MiB]
    ends = {}
    for args, limits in ((["list"], fine), (["--version"], coarse)):
        for limit in limits:
            done = mdl_under(tmp_path, limit, *args)
            ends[args[0], limit >> 20] = done.returncode
            assert ended_well(done.returncode, done.stderr) or (
                done.returncode == ExitCode.LOCAL == 7 and OUT_OF_MEMORY.fullmatch(done.stderr)
            ), (args, limit >> 20, done.returncode, done.stderr)
    # the range reaches both ends: memory ran out at the floor, and was enough above the need
    assert ends["list", floor >> 20] == 7 and ends["list", (need >> 20) + 16] == 0, ends
    assert ends["--version", (need >> 20) + 16] == 0, ends


# A child in which the named modules cannot be loaded as the loader fails with no room to map a
# library: CI's runs met `random` losing `_sha512`, then hashlib losing `_hashlib` and `_md5`
# (each hash it then lacked logged with a traceback), or the parser of a module with no room left.
FAILING = (
    "import runpy, sys\n"
    "failing = dict(arg.split('=', 1) for arg in sys.argv[1].split(','))\n"
    "class Failing:\n"
    "    def find_spec(self, name, path=None, target=None):\n"
    "        if failing.get(name) == 'map':\n"
    "            raise ImportError(name + '.so: failed to map segment from shared object')\n"
    "        if failing.get(name) == 'parse':\n"
    "            spec = next(f.find_spec(name, path, target) for f in sys.meta_path[sys.meta_path.index(self) + 1 :]"
    " if f.find_spec(name, path, target))\n"
    "            raise SyntaxError(\"expected ':'\", (spec.origin, 3, 1, ''))\n"
    "sys.meta_path.insert(0, Failing())\n"
    "del sys.argv[1]\n"
    "runpy.run_module('mdl', run_name='__main__', alter_sys=True)\n"
)


def mdl_failing(folder: Path, failing: dict[str, str], *args: str) -> tuple[int, str]:
    """``mdl ARGS`` in ``folder`` with each module of ``failing`` failing to load ("map": no room
    to map its library; "parse": its source not parsed, as when the parser has no room); its exit
    code and stderr."""
    env = {**os.environ, "MDL_LOG_FILE": str(folder / "mdl.log")}
    env.update({"MDL_CATALOG": str(folder / "catalog.toml"), "MDL_DEST": str(folder / "models")})
    env.pop("MDL_DEBUG", None)
    shown = ",".join(f"{name}={how}" for name, how in failing.items())
    done = subprocess.run(
        [sys.executable, "-c", FAILING, shown, *args],
        cwd=folder,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        timeout=SAFETY_NET,
        check=False,
    )
    return done.returncode, done.stderr


def libraries_loaded(folder: Path, code: str, *args: str) -> set[str]:
    """The extension modules (shared libraries) ``python -c CODE ARGS`` loaded."""
    dump = (
        "import atexit, sys\n"
        "atexit.register(lambda: open(sys.argv[0] + '.so', 'w').write(' '.join("
        "n for n, m in list(sys.modules.items())"
        " if (getattr(m, '__file__', None) or '').endswith(('.so', '.pyd')))))\n"
    )
    env = {**os.environ, "MDL_CATALOG": str(folder / "catalog.toml")}
    env.update({"MDL_DEST": str(folder / "models"), "MDL_LOG_FILE": str(folder / "mdl.log")})
    done = subprocess.run(
        [sys.executable, "-c", dump + code, *args],
        cwd=folder,
        capture_output=True,
        text=True,
        env=env,
        timeout=SAFETY_NET,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return set((folder / "-c.so").read_text().split())


def said_out_of_memory(ended: tuple[int, str]) -> bool:
    """Whether a child ended 0 saying nothing (but list's total), or 7 "out of memory" in its two
    lines only."""
    code, stderr = ended
    return ended_well(code, stderr) or (code == 7 and bool(OUT_OF_MEMORY.fullmatch(stderr)))


@pytest.mark.slow
def test_a_library_not_mapped_for_memory_is_mdls_two_lines_and_nothing_else(tmp_path: Path) -> None:
    """Whichever shared library the kernel had no room to map (which one depends on where it maps
    them: the machine), `mdl list` ends 0 saying nothing (a library's fallback did the work) or 7
    in mdl's two lines: never the standard library's logging (hashlib's "code for hash md5 was not
    found" with a traceback for each), never exit 1 for a module missing what memory took."""
    locked_catalog(tmp_path, 2)
    run = "import runpy; runpy.run_module('mdl', run_name='__main__', alter_sys=True)"
    loaded = libraries_loaded(tmp_path, run, "list")
    before = libraries_loaded(tmp_path, "import mdl.__main__")  # before mdl can say anything
    assert loaded - before, (loaded, before)
    ends = {}
    for library in sorted(loaded - before):
        ends[library] = mdl_failing(tmp_path, {library: "map"}, "list")
    # the CI run's: random without _sha512, then hashlib without OpenSSL's or its own md5, sha256
    # (Python 3.12 names its sha modules _sha2: a name this Python never imports fails nothing)
    sha512, md5, sha256 = (
        ("_sha512", "_sha2", "_hashlib", "_md5"),
        ("_hashlib", "_md5"),
        ("_hashlib", "_sha256", "_sha2"),
    )
    for lost in (sha512, md5, sha256):
        ends[",".join(lost)] = mdl_failing(tmp_path, dict.fromkeys(lost, "map"), "list")
    assert {name: end for name, end in ends.items() if not said_out_of_memory(end)} == {}
    # random and mdl need the hashes hashlib then lacks: memory's, exit 7 (never a name missing)
    assert ends[",".join(sha512)][0] == 7 and ends[",".join(sha256)][0] == 7, ends


@pytest.mark.parametrize("module", ["mdl.store.inventory", "typer", "hashlib"])
def test_a_module_the_parser_had_no_room_for_is_out_of_memory(tmp_path: Path, module: str) -> None:
    """A SyntaxError in a module's file that compiles ("expected ':'" from a parser with no room)
    is memory's: exit 7 in two lines, not an internal error."""
    locked_catalog(tmp_path, 2)
    code, stderr = mdl_failing(tmp_path, {module: "parse"}, "list")
    assert code == 7 and OUT_OF_MEMORY.fullmatch(stderr), (code, stderr)


def _wrapped(outer: BaseException) -> BaseException:
    try:
        raise MemoryError
    except MemoryError as exc:
        outer.__context__ = exc
    return outer


@pytest.mark.parametrize(
    "raised",
    [
        MemoryError(),
        _wrapped(ValueError("a C extension's words")),
        ImportError("libx.so: failed to map segment from shared object"),
        SystemError("<function f> returned NULL without setting an exception"),
        ValueError("field 'target' is required for AnnAssign"),
        OSError(12, "Cannot allocate memory"),
        SyntaxError("expected ':'", (INVENTORY, 361, 5, "")),
    ],
    ids=["MemoryError", "wrapped", "map-segment", "lost", "compile", "ENOMEM", "parser"],
)
def test_a_memory_error_anywhere_in_a_command_is_exit_7(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, raised: BaseException
) -> None:
    use_catalog(tmp_path, monkeypatch, '[models.a]\nrepo = "org/a"\n')
    from mdl.store import inventory

    def exhausted(*args: object, **kwargs: object) -> object:
        raise raised

    monkeypatch.setattr(inventory, "list_models", exhausted)  # where the list's local state is read
    result = mdl("list", "--json")
    assert result.exit_code == 7, result.output
    assert '"kind": "out_of_memory"' in result.stdout and "out of memory" in result.stderr
    assert "internal error" not in result.stderr


def test_a_module_that_does_not_compile_is_an_internal_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A SyntaxError is memory's only when its file compiles now: a file that does not is a bug."""
    use_catalog(tmp_path, monkeypatch, '[models.a]\nrepo = "org/a"\n')
    broken = tmp_path / "broken.py"
    broken.write_text("def f(:\n")

    def exhausted(*args: object, **kwargs: object) -> object:
        raise SyntaxError("invalid syntax", (str(broken), 1, 7, "def f(:"))

    monkeypatch.setattr(inventory, "list_models", exhausted)
    result = mdl("list")
    assert result.exit_code == 1, result.output
    assert "internal error: SyntaxError" in result.stderr and "out of memory" not in result.stderr


# A Ctrl-C while the CLI's modules load: the finder below is asked for mdl.__main__ first and
# sends this process SIGINT right then, as a Ctrl-C in the console script's first milliseconds does.
_CTRL_C_AS_MAIN_LOADS = """
import os, signal, sys
class CtrlC:
    def find_spec(self, name, path=None, target=None):
        if name == "mdl.__main__":
            os.kill(os.getpid(), signal.SIGINT)
        return None
sys.meta_path.insert(0, CtrlC())
from mdl.{entry} import main
main()
"""


@pytest.mark.parametrize("ignored", [False, True])
def test_a_ctrl_c_while_the_cli_loads_is_a_line_and_130_never_a_traceback(ignored: bool) -> None:
    """The console script's entry (mdl/_start.py) hears Ctrl-C from its first line: one line and
    exit 130 (mdl/__main__.py's own handling is not in place while it loads: a KeyboardInterrupt
    traceback out of an import, as the second run shows). A Ctrl-C the parent ignores stays
    ignored: the command runs (its help)."""
    script = ("import signal; signal.signal(signal.SIGINT, signal.SIG_IGN)\n" * ignored) + (
        _CTRL_C_AS_MAIN_LOADS
    )
    env = {**os.environ, "NO_COLOR": "1"}
    started = [sys.executable, "-c", script.format(entry="_start"), "--help"]
    done = subprocess.run(started, capture_output=True, text=True, env=env, timeout=SAFETY_NET)
    if ignored:
        assert (done.returncode, done.stderr) == (0, "")
        assert "Usage" in done.stdout
        return
    assert (done.returncode, done.stdout) == (130, "")
    assert done.stderr == "mdl: error: interrupted while starting\n"
    unguarded = [sys.executable, "-c", _CTRL_C_AS_MAIN_LOADS.format(entry="__main__"), "--help"]
    before = subprocess.run(unguarded, capture_output=True, text=True, env=env, timeout=SAFETY_NET)
    assert "Traceback" in before.stderr
    assert "KeyboardInterrupt" in before.stderr
