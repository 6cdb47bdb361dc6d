"""model_signing imported on a thread while a signature downloads (issue 53): only when a
verification is coming, joined before use, its failure the same error as without, Ctrl-C never
held up by it. Checked on real processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from runfixtures import wait_for
from servers import HubServer
from signkeys import key_pair, official_sign, write_files

ROOT = Path(__file__).resolve().parents[2]
FILES = {"config.json": b'{"model_type": "bert"}\n', "w.bin": b"weights" * 1000}

# Runs `mdl ARGV` as the console script does, then writes the thread model_signing's modules were
# first imported on (null: none were; importlib.import_module audits only the modules below it).
PROBE = """\
import atexit, json, sys, threading
out, seen = sys.argv[1], []
sys.addaudithook(
    lambda event, args: event == "import" and args[0].partition(".")[0] == "model_signing"
    and seen.append(threading.current_thread().name)
)
atexit.register(lambda: open(out, "w").write(json.dumps(seen[0] if seen else None)))
sys.argv = ["mdl", *sys.argv[2:]]
from mdl.__main__ import main
main()
"""


def imported_on(tmp_path: Path, *args: str) -> str | None:
    """The thread a successful `mdl ARGS` process imported model_signing on, or None."""
    out = tmp_path / "imported.json"
    out.unlink(missing_ok=True)
    done = subprocess.run(
        [sys.executable, "-c", PROBE, str(out), *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=dict(os.environ),
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    found: str | None = json.loads(out.read_text())
    return found


@pytest.mark.slow
@pytest.mark.parametrize("where", ["repo", "url"])
def test_a_key_signed_pull_never_imports_the_library(
    world: Path, hub: HubServer, tmp_path: Path, where: str
) -> None:
    """A key's signature is checked with `cryptography` alone (mdl.signing.keyed): neither the
    first pull nor a re-pull imports model_signing, ahead or not (a certificate chain's or an
    identity's signature is, ahead: ``import_ahead``, below)."""
    private, public = key_pair(tmp_path / "keys")
    signature = official_sign(write_files(tmp_path / "upstream", FILES), private)
    if where == "repo":
        hub.add_repo("org/tiny", {**FILES, "model.sig": signature})
        model, file = 'repo = "org/tiny"', ""
    else:  # a URL: no version listed, so only the installed copy's record says it is unchanged
        for name, data in {**FILES, "model.sig": signature}.items():
            hub.cdn.add_file(f"/f/{name}", data)
        urls = ", ".join(f'{{ url = "{hub.cdn.url}/f/{name}" }}' for name in FILES)
        model, file = f"files = [{urls}]", f'file = "{hub.cdn.url}/f/model.sig"\n'
    world.write_text(f'[models.tiny]\n{model}\n\n[models.tiny.signature]\nkey = "{public}"\n{file}')
    assert imported_on(tmp_path, "pull", "tiny") is None
    assert (tmp_path / "models" / "tiny" / "model.sig").read_bytes() == signature
    # cron: the signature is as verified before
    assert imported_on(tmp_path, "pull", "tiny") is None


def fake_library(tmp_path: Path, body: str) -> Path:
    """A folder holding a ``model_signing`` whose import runs ``body``."""
    (tmp_path / "fake" / "model_signing").mkdir(parents=True)
    (tmp_path / "fake" / "model_signing" / "__init__.py").write_text(body)
    return tmp_path / "fake"


CALLER = """\
import sys, threading
from pathlib import Path
sys.path.insert(0, sys.argv[1])
from mdl.errors import UsageError
from mdl.signing.library import import_ahead, verify_signature
from mdl.signing.statement import Trust
import_ahead()
print("importing", flush=True)
try:
    print("waiting", flush=True)  # (a signal before the wait begins ends the run the same way)
    if sys.argv[2] == "verify":
        verify_signature(b"{}", Trust(key=Path("k.pub")), what="m/model.sig")
    else:  # the signature still downloading
        threading.Event().wait()
except UsageError as exc:
    print(exc.message)
except KeyboardInterrupt:  # as mdl's main does: a clean exit, which waits for non-daemon threads
    sys.exit(130)
"""


def test_a_failed_import_ahead_is_today_s_error_and_prints_nothing(tmp_path: Path) -> None:
    fake = fake_library(tmp_path, "raise ImportError(\"No module named 'sigstore'\")\n")
    done = subprocess.run(
        [sys.executable, "-c", CALLER, str(fake), "verify"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[2] == (
        "signed models need model_signing, which is not installed: pip install 'mdl[sign]'"
    )
    assert done.stderr == ""  # the thread's failure printed no traceback


@pytest.mark.slow
@pytest.mark.parametrize("during", ["verify", "download"])
def test_ctrl_c_while_the_library_is_imported_ahead_ends_the_run(
    tmp_path: Path, during: str
) -> None:
    """Ctrl-C while verify_signature waits for the import, or while the signature still downloads:
    the run ends (the import's thread neither holds up the wait nor the exit)."""
    started = tmp_path / "started"
    fake = fake_library(
        tmp_path, f"import time\nopen({str(started)!r}, 'w').close()\ntime.sleep(3600)\n"
    )
    child = subprocess.Popen(
        [sys.executable, "-c", CALLER, str(fake), during],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline() == "importing\n"
        wait_for(started.exists, what="the import ahead")
        assert started.exists(), "the import ahead never began"
        assert child.stdout.readline() == "waiting\n"  # the caller at its wait
        child.send_signal(signal.SIGINT)
        _, stderr = child.communicate(timeout=60)  # the fake import sleeps an hour
    finally:
        child.kill()
        child.wait()
    assert child.returncode == 130, stderr
