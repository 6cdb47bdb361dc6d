"""A real ``mdl serve`` process on loopback for the serve tests: started with ``--port 0`` and an
env file, its loader environment read back, its real S3 clients (boto3, the AWS CLI) made from that
environment alone, stopped by a signal; every wait bounded by HANG."""

from __future__ import annotations

import _thread
import contextlib
import os
import shlex
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from runfixtures import HANG, mdl_as_child, wait_for
from zygote import Forked, shared

# what every AWS library in these tests sees besides the run's key: no metadata endpoint, no
# profile of the developer's, nothing but 127.0.0.1
AWS_ISOLATION = {
    "AWS_EC2_METADATA_DISABLED": "true",
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
}


def aws_cli() -> str:
    """The AWS CLI beside this Python (the test extra installs it), else on PATH; a test that
    needs it skips, saying why, when there is none."""
    found = shutil.which("aws", path=str(Path(sys.executable).parent)) or shutil.which("aws")
    if found is None:
        pytest.skip("the AWS CLI is not installed (pip install '.[test]' installs it)")
    return found


class ServeProcess:
    """``mdl serve ARGS`` as a child process (stdout and stderr to files), forked from the
    worker's zygote (tests/zygote.py); ``real``: ``python -m mdl`` itself, for a test of the
    process's own memory (a forked child's resident set holds the zygote's preloads)."""

    def __init__(
        self, folder: Path, *args: str, env: Mapping[str, str] | None = None, real: bool = False
    ) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.env_file = folder / "loader.env"
        self.env_file.unlink(missing_ok=True)
        self.stdout_path, self.stderr_path = folder / "serve.out", folder / "serve.err"
        argv = ["serve", "--port", "0", "--no-progress", "--env-file", str(self.env_file), *args]
        environ = {**os.environ, **(env or {})}
        self.env = environ
        self.process: subprocess.Popen[bytes] | Forked
        if not real:
            self.process = shared().spawn(
                argv, env=environ, cwd=Path.cwd(), stdout=self.stdout_path, stderr=self.stderr_path
            )
            return
        with self.stdout_path.open("wb") as out, self.stderr_path.open("wb") as err:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "mdl", *argv],
                stdout=out, stderr=err, stdin=subprocess.DEVNULL, env=environ,
            )  # fmt: skip

    def ready(self) -> ServeProcess:
        """Wait until it listens (its env file is written: the name is taken empty first, then the
        whole text renamed over it), or fail naming what it said."""
        wait_for(lambda: self._written() or self.process.poll() is not None,
                 what="mdl serve to listen")  # fmt: skip
        assert self._written(), f"mdl serve ended {self.process.returncode}: {self.stderr}"
        return self

    def _written(self) -> bool:
        try:
            return self.env_file.stat().st_size > 0
        except FileNotFoundError:
            return False

    @property
    def environment(self) -> dict[str, str]:
        """The loader's environment as the env file says it (``export NAME=value`` lines)."""
        found = {}
        for line in self.env_file.read_text().splitlines():
            (word,) = shlex.split(line.removeprefix("export "))
            name, _, value = word.partition("=")
            found[name] = value
        return found

    @property
    def url(self) -> str:
        return self.environment["AWS_ENDPOINT_URL"]

    @property
    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    @property
    def stdout(self) -> str:
        return self.stdout_path.read_text(errors="replace")

    def client_env(self, **more: str) -> dict[str, str]:
        """What a loader process gets: ours, the printed environment, nothing of AWS besides."""
        base = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        return {**base, **AWS_ISOLATION, **self.environment, **more}

    def boto3(self, *, attempts: int = 2, **config: Any) -> Any:
        """A boto3 S3 client made from the printed environment alone (as a loader's would be),
        making ``attempts`` at most per call (botocore's standard retries)."""
        return loader_client(self.environment, attempts=attempts, **config)

    def aws(self, *args: str, timeout: float = HANG) -> subprocess.CompletedProcess[str]:
        """The AWS CLI with the printed environment (the test skips, saying why, without it)."""
        command: Sequence[str] = [aws_cli(), *args]
        return subprocess.run(
            command, env=self.client_env(), capture_output=True, text=True, timeout=timeout
        )

    def pulled(self) -> ServeProcess:
        """Wait until its ``--pull`` ended (its log says so), or fail naming what it said."""
        log = Path(self.env["MDL_LOG_FILE"])
        wait_for(
            lambda: (
                (log.exists() and "pull done (" in log.read_text(errors="replace"))
                or self.process.poll() is not None
            ),
            what="mdl serve's pull to end",
        )
        assert self.process.poll() is None, (
            f"mdl serve ended {self.process.returncode}: {self.stderr}"
        )
        return self

    def stop(self, sig: int = signal.SIGTERM) -> int:
        """Send ``sig`` and wait for the exit code (bounded)."""
        if self.process.poll() is None:
            self.process.send_signal(sig)
        return self.wait()

    def wait(self, timeout: float = HANG) -> int:
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError(f"mdl serve did not end within {timeout} s: {self.stderr}")

    def __enter__(self) -> ServeProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=HANG)


def serve_in_process(*args: str, env: Mapping[str, str], env_file: Path) -> tuple[int | None, str]:
    """``mdl serve --port 0 --no-progress --env-file ENV_FILE ARGS`` run in this process with
    exactly ``env``: (exit code, stderr) when it ends by itself; (None, stderr) when it started
    serving instead (it wrote ``env_file``), then stopped by a Ctrl-C (after HANG at the latest).
    For what a start refuses (a bad flag, a port in use, an env file it did not write), with no
    process of its own."""

    def seen() -> tuple[int, int, int] | None:
        with contextlib.suppress(FileNotFoundError):
            st = env_file.stat()
            return st.st_ino, st.st_mtime_ns, st.st_size
        return None

    before, ended, served = seen(), threading.Event(), threading.Event()

    def stop_once_serving() -> None:  # as a person's Ctrl-C: the main thread's KeyboardInterrupt
        waited = 0.0
        while not ended.wait(0.02):
            waited += 0.02
            now = seen()
            if (now != before and now is not None and now[2] > 0) or waited > HANG:
                served.set()
                _thread.interrupt_main()
                return

    watcher = threading.Thread(target=stop_once_serving, daemon=True)
    watcher.start()
    try:
        command = ["serve", "--port", "0", "--no-progress", "--env-file", str(env_file), *args]
        result = mdl_as_child(command, env=env)
    finally:
        ended.set()
        watcher.join(HANG)
    return (None if served.is_set() else result.exit_code), result.stderr


def loader_client(env: Mapping[str, str], *, attempts: int = 2, **config: Any) -> Any:
    """A boto3 S3 client made from an endpoint's loader environment ``env`` alone, making
    ``attempts`` at most per call (botocore's standard retries)."""
    import boto3
    from botocore.config import Config

    return boto3.session.Session(
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        region_name=env["AWS_REGION"],
    ).client(
        "s3",
        endpoint_url=env["AWS_ENDPOINT_URL"],
        config=Config(retries={"total_max_attempts": attempts, "mode": "standard"}, **config),
    )


def model_catalog(
    folder: Path, files: Mapping[str, tuple[str, bytes]], *, model: str = "m"
) -> Path:
    """A catalog of one model whose files are ``as → (url, bytes)`` with their sha256 and size."""
    import hashlib

    lines = [f"[models.{model}]", "files = ["]
    for name, (url, data) in files.items():
        digest = hashlib.sha256(data).hexdigest()
        lines.append(
            f'  {{ url = "{url}", as = "{name}", sha256 = "{digest}", size = {len(data)} }},'
        )
    lines.append("]")
    catalog = folder / "catalog.toml"
    catalog.write_text("\n".join(lines) + "\n")
    return catalog


def lock_with_parts(
    env: Mapping[str, str], files: Mapping[str, bytes], *, part: int | None = None
) -> Path:
    """``mdl lock`` of the catalog ``env`` names (catalog.lock beside it), then the part hashes of
    ``files`` (each file's true bytes, by its sha256) beside the lock, at ``part`` bytes a range
    (mdl's own part size for each file when None), as ``mdl lock`` writes them on a machine that
    installed them: a pull that uses the lock (``serve --pull`` where it is fresh) checks each
    range of those files as it lands. Returns the parts file."""
    import hashlib

    from mdl.catalog.load import lock_beside
    from mdl.lockfile.parts import PartHashes, parts_beside, write_parts
    from mdl.partsize import part_size
    from mdl.transfer.ranges import digest

    done = mdl_as_child(["lock", "--all", "-q"], env=env)
    assert done.exit_code == 0, done.stderr
    parts = {}
    for data in files.values():
        each = part or part_size(len(data))
        digests = tuple(digest(data[s : s + each]) for s in range(0, len(data), each))
        parts[hashlib.sha256(data).hexdigest()] = PartHashes(len(data), each, digests)
    written = parts_beside(lock_beside(Path(env["MDL_CATALOG"])))
    write_parts(written, parts)
    return written


def isolated(folder: Path, catalog: Path) -> dict[str, str]:
    """A child's environment: its own HOME and XDG folders, the catalog, dest and log in
    ``folder``, nothing of the developer's mdl, Hub or AWS setup."""
    keep = {k: v for k, v in os.environ.items()
            if not k.startswith(("MDL_", "HF_", "XDG_", "AWS_")) and not k.lower().endswith("_proxy")}  # fmt: skip
    home = folder / "home"
    return {
        **keep,
        **AWS_ISOLATION,
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "XDG_DATA_HOME": str(home / ".local/share"),
        "XDG_CACHE_HOME": str(home / ".cache"),
        "XDG_STATE_HOME": str(home / ".local/state"),
        "HF_HOME": str(home / ".cache/huggingface"),
        "MDL_CATALOG": str(catalog),
        "MDL_DEST": str(folder / "models"),
        "MDL_LOG_FILE": str(folder / "mdl.log"),
        "TERM": "dumb",
    }


# The other local user of issue 68: COUNT connections to the endpoint, each sending an unsigned
# ``HEAD /`` EVERY seconds after it opened, opened again (after a pause) whenever the endpoint
# closes it. Prints "open" once all are open; on stdin's end prints "answers N closes M" and exits.
_FLOOD = r"""
import os, selectors, socket, sys, time
host, port, count, every = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
head = f"HEAD / HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode()
chosen = selectors.DefaultSelector()
chosen.register(0, selectors.EVENT_READ)
due, reopen, answers, closes = {}, [], 0, 0

def open_one():
    sock = socket.create_connection((host, port), timeout=120)
    sock.setblocking(False)
    chosen.register(sock, selectors.EVENT_READ)
    due[sock] = time.monotonic() + every

for _ in range(count):
    open_one()
print("open", flush=True)
while True:
    now = time.monotonic()
    for sock, when in list(due.items()):
        if when <= now:
            due[sock] = float("inf")
            try:
                sock.send(head)
            except OSError:
                pass
    while reopen and reopen[0] <= now:
        reopen.pop(0)
        open_one()
    for key, _ in chosen.select(timeout=0.05):
        if key.fileobj == 0:
            if not os.read(0, 100):
                print(f"answers {answers} closes {closes}", flush=True)
                sys.exit(0)
            continue
        sock = key.fileobj
        try:
            data = sock.recv(65536)
        except OSError:
            data = b""
        answers += data.count(b"HTTP/1.1 403 ")
        if not data:
            closes += 1
            chosen.unregister(sock)
            sock.close()
            del due[sock]
            reopen.append(time.monotonic() + 0.5)
"""


class UnsignedFlood:
    """``count`` unsigned connections from another process (see _FLOOD), until the block ends;
    ``answers`` and ``closes``: what it got, once ended."""

    def __init__(self, url: str, *, count: int, every: float) -> None:
        host, port = url.removeprefix("http://").rsplit(":", 1)
        self.process = subprocess.Popen(
            [sys.executable, "-c", _FLOOD, host, port, str(count), str(every)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        self.answers = self.closes = 0

    def __enter__(self) -> UnsignedFlood:
        assert self.process.stdout is not None
        assert self.process.stdout.readline() == "open\n", "the flood did not open its connections"
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            out, _ = self.process.communicate(timeout=HANG)  # (closes its stdin: it ends)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise
        words = out.split()
        self.answers, self.closes = int(words[1]), int(words[3])
