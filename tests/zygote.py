"""Real ``mdl`` processes without an interpreter's start each: a zygote process loads every module
of mdl (and what ``preload`` names) once, then forks a child per command, which runs the console
script's own ``main`` with its own argv, environment, folder, stdout and stderr. Each child is a
process of its own (its own pid, file locks, signals and exit), at the CPU of its work alone (a
start of ``python -m mdl`` and its imports is 0.4-1.5 CPU-s). Only modules that read no
environment at import may be preloaded (mdl's rule; not huggingface_hub's): a child's environment
is its own."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path

from runfixtures import HANG

# The zygote: preload, then one child per request line (JSON) on stdin; it answers on stdout
# "forked ID PID" at once and "exit PID CODE" once the child ended (CODE as Popen's returncode).
_ZYGOTE = r"""
import gc, importlib, io, json, os, pkgutil, select, signal, sys
import mdl, mdl.__main__
for found in [*pkgutil.walk_packages(mdl.__path__, "mdl."), *sys.argv[1:]]:
    importlib.import_module(getattr(found, "name", found))
assert "huggingface_hub" not in sys.modules, "a preload read the environment at import"
replies = os.dup(1)
os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
wake_r, wake_w = os.pipe()
os.set_blocking(wake_w, False)
signal.signal(signal.SIGCHLD, lambda *_: None)
signal.set_wakeup_fd(wake_w)
gc.collect()
gc.freeze()

def child(request):
    signal.set_wakeup_fd(-1)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    for fd in (wake_r, wake_w, replies):
        os.close(fd)
    for fd, path, flags in ((0, os.devnull, os.O_RDONLY),
                            (1, request["stdout"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC),
                            (2, request["stderr"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC)):
        opened = os.open(path, flags, 0o644)
        os.dup2(opened, fd)
        os.close(opened)
    # stdio as an interpreter starting on these makes it: stdout line-buffered on a terminal only
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

pending = b""
while True:
    ready, _, _ = select.select([0, wake_r], [], [])
    if wake_r in ready:
        os.read(wake_r, 4096)
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            break
        if pid == 0:
            break
        os.write(replies, f"exit {pid} {os.waitstatus_to_exitcode(status)}\n".encode())
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
            os.kill(self.pid, sig)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


class Zygote:
    """The zygote process (a context manager: it ends with the block, after its children)."""

    def __init__(self, *, preload: Sequence[str] = (), cwd: Path | None = None) -> None:
        root = Path(__file__).resolve().parents[1]  # this tree's mdl, as the suite imports it
        self.process = subprocess.Popen(
            [sys.executable, "-c", _ZYGOTE, *preload],
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
                else:
                    self._exits[int(first)] = int(second)
                self.changed.notify_all()
        with self.changed:  # the zygote is gone: so is any word of its children
            self.changed.notify_all()

    def exit_code(self, pid: int) -> int | None:
        with self.changed:
            return self._exits.get(pid)

    def spawn(
        self, argv: Sequence[str], *, env: Mapping[str, str], cwd: Path, stdout: Path, stderr: Path
    ) -> Forked:
        """``mdl ARGV`` as a child with exactly ``env``, in ``cwd``, its stdout and stderr written
        to those files."""
        with self.changed:
            ident, self._next = self._next, self._next + 1
            request = {"id": ident, "argv": list(argv), "env": dict(env), "cwd": str(cwd),
                       "stdout": str(stdout), "stderr": str(stderr)}  # fmt: skip
            assert self.process.stdin is not None
            self.process.stdin.write(json.dumps(request).encode() + b"\n")
            self.process.stdin.flush()
            if not self.changed.wait_for(lambda: ident in self._forked, HANG):
                raise AssertionError(f"the zygote forked no child within {HANG}s")
            return Forked(self, self._forked.pop(ident), stdout, stderr)

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
