"""Real ``mdl`` processes without an interpreter's start each: a zygote process loads every module
of mdl (and what ``preload`` names) once, then forks a child per command, which runs the console
script's own ``main`` with its own argv, environment, folder, stdout and stderr. Each child is a
process of its own (its own pid, file locks, signals and exit), at the CPU of its work alone (a
start of ``python -m mdl`` and its imports is 0.4-1.5 CPU-s). Only modules that read no
environment at import may be preloaded (mdl's rule; not huggingface_hub's): a child's environment
is its own."""

from __future__ import annotations

import atexit
import contextlib
import functools
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path

from runfixtures import HANG, wait_for

# The zygote: preload, then one child per request line (JSON) on stdin; it answers on stdout
# "forked ID PID" at once and "exit PID CODE" once the child ended (CODE as Popen's returncode).
# A shim's request (``Zygote.shim``: an ``mdl`` on PATH) comes on the socket at argv[1], with the
# shim's stdin, stdout and stderr: the child runs on them, and "forked PID", then "exit CODE", go
# back on the shim's connection.
_ZYGOTE = r"""
import gc, importlib, io, json, os, pkgutil, select, signal, socket, sys
import mdl, mdl.__main__
for found in [*pkgutil.walk_packages(mdl.__path__, "mdl."), *sys.argv[2:]]:
    importlib.import_module(getattr(found, "name", found))
assert "huggingface_hub" not in sys.modules, "a preload read the environment at import"
shims = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
shims.bind(sys.argv[1] + ".binding")
shims.listen(64)
os.rename(sys.argv[1] + ".binding", sys.argv[1])  # there once it listens
asking = {}  # pid -> the shim's connection
replies = os.dup(1)
null = os.open(os.devnull, os.O_WRONLY)
os.dup2(null, 1)
os.close(null)
wake_r, wake_w = os.pipe()
os.set_blocking(wake_w, False)
signal.signal(signal.SIGCHLD, lambda *_: None)
signal.set_wakeup_fd(wake_w)
gc.collect()
gc.freeze()

def child(request, fds=()):
    signal.set_wakeup_fd(-1)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    for fd in (wake_r, wake_w, replies, shims.detach(), *(c.detach() for c in asking.values())):
        os.close(fd)
    for fd, path, flags in ((0, os.devnull, os.O_RDONLY),
                            (1, request.get("stdout"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC),
                            (2, request.get("stderr"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC)):
        opened = fds[fd] if fds else os.open(path, flags, 0o644)
        os.dup2(opened, fd)
        os.close(opened)
    # stdio as an interpreter starting on these makes it: stdout line-buffered on a terminal only
    sys.stdin = sys.__stdin__ = io.TextIOWrapper(io.open(0, "rb", closefd=False),
        encoding=sys.stdin.encoding, errors=sys.stdin.errors)
    sys.stdout = sys.__stdout__ = io.TextIOWrapper(io.open(1, "wb", closefd=False),
        encoding=sys.stdout.encoding, errors=sys.stdout.errors, line_buffering=os.isatty(1))
    sys.stderr = sys.__stderr__ = io.TextIOWrapper(io.open(2, "wb", closefd=False),
        encoding=sys.stderr.encoding, errors=sys.stderr.errors, line_buffering=True)
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    sys.argv[:] = [sys.argv[0], *request["argv"]]
    mdl.__main__.main()  # ends the process: SystemExit, the interpreter's own exit
    raise SystemExit(0)

def told(pid, code):
    shim = asking.pop(pid, None)
    if shim is None:
        os.write(replies, f"exit {pid} {code}\n".encode())
        return
    try:
        shim.send(f"exit {code}".encode())
    except OSError:  # the shim is gone (killed): its child ran on all the same
        pass
    shim.close()

def shim_asks():
    conn, _ = shims.accept()
    data, fds, _, _ = socket.recv_fds(conn, 1 << 20, 3)
    pid = os.fork()
    if pid == 0:
        conn.close()
        child(json.loads(data), fds)
    for fd in fds:
        os.close(fd)
    asking[pid] = conn
    conn.send(f"forked {pid}".encode())

pending = b""
while True:
    ready, _, _ = select.select([0, wake_r, shims, *asking.values()], [], [])
    if wake_r in ready:
        os.read(wake_r, 4096)
    if shims in ready:
        shim_asks()
    for pid, shim in list(asking.items()):
        if shim in ready:  # the shim ended (a kill -9): so does its child, as it would have
            os.kill(pid, signal.SIGKILL)
            asking.pop(pid).close()
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            break
        if pid == 0:
            break
        told(pid, os.waitstatus_to_exitcode(status))
    if 0 in ready:
        data = os.read(0, 1 << 20)
        if not data:
            break
        pending += data
        while b"\n" in pending:
            line, pending = pending.split(b"\n", 1)
            request = json.loads(line)
            pid = os.fork()
            if pid == 0:
                child(request)
            os.write(replies, f"forked {request['id']} {pid}\n".encode())
"""

# A shim: its request, with its own stdio, to the zygote's socket; passes on the signals a caller
# sends, and exits with the child's code (a signal's end as that signal).
_SHIM = r"""#!EXECUTABLE -IS
import json, os, signal, socket, sys
passed = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1)
signal.pthread_sigmask(signal.SIG_BLOCK, passed)  # one sent before the pid is known waits for it
ask = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
ask.connect("SOCKET")
request = {"argv": sys.argv[1:], "env": dict(os.environ), "cwd": os.getcwd()}
socket.send_fds(ask, [json.dumps(request).encode()], [0, 1, 2])
pid = int(ask.recv(64).split()[1])
def passing(number, _):
    try:
        os.kill(pid, number)
    except ProcessLookupError:  # it ended: its exit is on its way
        pass
for sig in passed:
    signal.signal(sig, passing)
signal.pthread_sigmask(signal.SIG_UNBLOCK, passed)
told = ask.recv(64).split()
code = int(told[1]) if told else 1
if code < 0:
    if -code not in (signal.SIGKILL, signal.SIGSTOP):  # neither can be set (EINVAL)
        signal.signal(-code, signal.SIG_DFL)
    os.kill(os.getpid(), -code)
sys.exit(code)
"""


class Forked:
    """A child of the zygote, as much of ``subprocess.Popen`` as the tests use."""

    def __init__(self, zygote: Zygote, pid: int, stdout: Path, stderr: Path) -> None:
        self._zygote, self.pid = zygote, pid
        self.stdout_path, self.stderr_path = stdout, stderr
        self.returncode: int | None = None

    def communicate(self, timeout: float = HANG) -> tuple[bytes, bytes]:
        """Once it ended (``wait``): what it wrote on stdout and on stderr."""
        self.wait(timeout)
        return self.stdout_path.read_bytes(), self.stderr_path.read_bytes()

    def poll(self) -> int | None:
        self.returncode = self._zygote.exit_code(self.pid)
        return self.returncode

    def wait(self, timeout: float = HANG) -> int:
        with self._zygote.changed:
            if not self._zygote.changed.wait_for(lambda: self.poll() is not None, timeout):
                raise subprocess.TimeoutExpired(f"mdl (pid {self.pid})", timeout)
        assert self.returncode is not None
        return self.returncode

    def send_signal(self, sig: int) -> None:
        if self.poll() is None:
            with contextlib.suppress(ProcessLookupError):  # reaped, its exit not read yet
                os.kill(self.pid, sig)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


class Zygote:
    """The zygote process (a context manager: it ends with the block, after its children)."""

    def __init__(self, *, preload: Sequence[str] = (), cwd: Path | None = None) -> None:
        root = Path(__file__).resolve().parents[1]  # this tree's mdl, as the suite imports it
        self._folder = Path(tempfile.mkdtemp(prefix="zygote"))  # short: a socket's path is
        self.socket = self._folder / "shims"
        self.process = subprocess.Popen(
            [sys.executable, "-c", _ZYGOTE, str(self.socket), *preload],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            cwd=cwd or root,
            env={**os.environ, "PYTHONPATH": str(root)},
        )
        self.changed = threading.Condition()
        self._forked: dict[int, int] = {}  # request id -> pid
        self._exits: dict[int, int] = {}  # pid -> exit code
        self._next = 0
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            kind, first, second = line.decode().split()
            with self.changed:
                if kind == "forked":
                    self._forked[int(first)] = int(second)
                    # a pid used again (pid_max 32768 on a long run): the earlier child's exit is
                    # not this one's (its "forked" line always comes before its "exit")
                    self._exits.pop(int(second), None)
                else:
                    self._exits[int(first)] = int(second)
                self.changed.notify_all()
        with self.changed:  # the zygote is gone: so is any word of its children
            self.changed.notify_all()

    def exit_code(self, pid: int) -> int | None:
        with self.changed:
            return self._exits.get(pid)

    def spawn(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str],
        cwd: Path,
        stdout: Path | None = None,
        stderr: Path | None = None,
    ) -> Forked:
        """``mdl ARGV`` as a child with exactly ``env``, in ``cwd``, its stdout and stderr written
        to those files (None: files of the zygote's own, gone with it)."""
        with self.changed:
            ident, self._next = self._next, self._next + 1
            stdout = stdout or self._folder / f"{ident}.out"
            stderr = stderr or self._folder / f"{ident}.err"
            request = {"id": ident, "argv": list(argv), "env": dict(env), "cwd": str(cwd),
                       "stdout": str(stdout), "stderr": str(stderr)}  # fmt: skip
            assert self.process.stdin is not None
            self.process.stdin.write(json.dumps(request).encode() + b"\n")
            self.process.stdin.flush()
            if not self.changed.wait_for(lambda: ident in self._forked, HANG):
                raise AssertionError(f"the zygote forked no child within {HANG}s")
            return Forked(self, self._forked.pop(ident), stdout, stderr)

    def shim(self, folder: Path) -> Path:
        """``folder/mdl``: a command that runs ``mdl ARGS`` as a child of this zygote on its own
        stdin, stdout and stderr, with its environment and folder, and exits as that child did (a
        signal it gets is passed on; a kill -9 of the shim is one of the child). For ``PATH`` and
        ``subprocess``: a real process of mdl's at the CPU of a small script's start."""
        wait_for(self.socket.exists, what="the zygote's socket")
        shim = folder / "mdl"
        shim.write_text(
            _SHIM.replace("EXECUTABLE", sys.executable).replace("SOCKET", str(self.socket))
        )
        shim.chmod(0o755)
        return shim

    def __enter__(self) -> Zygote:
        return self

    def __exit__(self, *_: object) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()  # it ends once it reads the end
        try:
            self.process.wait(timeout=HANG)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._reader.join(HANG)
        shutil.rmtree(self._folder, ignore_errors=True)


@functools.cache
def shared() -> Zygote:
    """This process's zygote (boto3 preloaded: publish's client), made at the first call and
    ended at exit: one interpreter's start and imports for every mdl run a worker forks."""
    zygote = Zygote(preload=["boto3"])
    atexit.register(zygote.__exit__)
    return zygote


@functools.cache
def forked_mdl() -> Path:
    """An ``mdl`` command (for PATH, a shell's script, ``subprocess``) whose every run is a real
    process forked from this process's zygote (``shared``): a process of its own (pid, stdio,
    exit, Ctrl-C passed on) without an interpreter's start and imports each (0.4-1.5 CPU-s). A
    test of the interpreter's start or of its environment at start (PYTHON*, a blocked import), or
    that needs the pid of mdl itself, runs ``python -m mdl``."""
    zygote = shared()
    return zygote.shim(zygote._folder)
