"""Shared fixtures: every test runs with an isolated HOME, XDG dirs and no MDL_/HF_ variables."""

from __future__ import annotations

import gc
import logging
import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import scratch
from hypothesis import settings
from profiles import DEV_EXAMPLES, GATE_SHARE, HYPOTHESIS_DEFAULT
from rewrites import rewrite_my_share
from runfixtures import HANG, use_catalog
from seaweed import seaweed_server  # noqa: F401 (one SeaweedFS per worker, whichever module asks first)
from servers import CdnServer, HubServer

# No test may depend on wall-clock speed: Hypothesis' default 200 ms deadline per example fails a
# property on a busy machine (the examples are not slow, the machine is), so it is off for all.
# Three profiles (tests/profiles.py): "gate", the README's command, a tenth of each property's
# examples; "soak", all of them (MDL_HYPOTHESIS=soak); "dev", the inner loop's few
# (``--hypothesis-profile=dev`` or MDL_TESTS=fast).
# (each from Hypothesis' own defaults, never from the profile loaded when this module is imported again)
for name, count in {
    "gate": HYPOTHESIS_DEFAULT // GATE_SHARE,
    "soak": HYPOTHESIS_DEFAULT,
    "dev": DEV_EXAMPLES,
}.items():
    settings.register_profile(
        name, settings.get_profile("default"), deadline=None, max_examples=count
    )
settings.load_profile(
    "soak"
    if os.environ.get("MDL_HYPOTHESIS") == "soak"
    else "dev"
    if os.environ.get("MDL_TESTS") == "fast"
    else "gate"
)

# The caller may turn bytecode caching off (``PYTHONDONTWRITEBYTECODE=1``, as CI images do): then
# every interpreter the suite starts (each worker, its zygote, every exec'd ``mdl`` and Python child,
# some 300 a run) compiled all it imported from source again, since the install compiles nothing
# (README: ``--no-compile``): an ``mdl`` start took 0.64 CPU-s instead of 0.27. The suite writes
# the caches for itself and its children (atomically, as Python always does); set here, in the
# process that starts the workers, before it starts them.
os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
sys.dont_write_bytecode = False

# before xdist starts the workers: they, and every process they start, inherit its TMPDIR
SCRATCH = scratch.in_memory()

NETWORK_TRUST = {"REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE", "SSL_CERT_DIR"}


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """`-n auto` runs two workers per core, and one more: many tests wait on a subprocess, a server
    or the clock, and the extra workers keep the cores busy meanwhile. Measured on 2 cores, clean-clone
    `.ci/run`: 3 workers 9:47 of pytest (cores 153 % busy), 4 workers 9:12 (170 %, 5 % more CPU),
    5 workers 8:51 (177 %, no more CPU), 6 workers 9:07 (180 %, 4 % more CPU). No more than one
    per 2 GiB of memory: a worker peaks at 1.3-1.7 GB (the modules' test data, moto's objects)."""
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return max(1, min(2 * (os.cpu_count() or 1) + 1, memory // (2 << 30)))


class SayFailures:
    """A failure named on the terminal as it happens, not only in the summary at the end: a run cut
    short (``timeout``, a CI limit) still says what failed, even under ``-q``."""

    def __init__(self, terminal: Any) -> None:
        self.terminal = terminal

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.failed:
            word = "FAILED" if report.when == "call" else "ERROR"
            self.terminal.write_line(f"{word} {report.nodeid}", red=True, bold=True)


def hear_ctrl_c() -> bool:
    """Give Ctrl-C (SIGINT) back its default in this process, when the run began with it ignored
    (``nohup … &``, a background job of a script) or blocked; whether it had to. The Ctrl-C tests
    send real SIGINTs to this process and its children, which inherit an ignored or blocked SIGINT
    (a handler is reset to the default across exec: the children hear it again)."""
    ignored = signal.getsignal(signal.SIGINT) == signal.SIG_IGN
    blocked = signal.SIGINT in signal.pthread_sigmask(signal.SIG_BLOCK, [])
    if ignored:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    if blocked:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, [signal.SIGINT])
    return ignored or blocked


@pytest.hookimpl(trylast=True)  # after the terminal reporter is made
def pytest_configure(config: pytest.Config) -> None:
    restored = hear_ctrl_c()  # before xdist starts its workers, which inherit the disposition
    terminal = config.pluginmanager.get_plugin("terminalreporter")
    # under xdist, in the controller only: it hears each worker's reports
    if terminal is not None and not hasattr(config, "workerinput"):
        config.pluginmanager.register(SayFailures(terminal), "mdl-say-failures")
        if restored:
            terminal.write_line(
                "mdl tests: this run began with Ctrl-C (SIGINT) ignored or blocked (nohup … &, a"
                " background job): restored to its default for the run, which its Ctrl-C tests"
                " need (a Ctrl-C here now stops the run)",
                yellow=True,
            )


# The files that take longest, started first: under `--dist loadfile` a file runs on one worker,
# and a long one handed out last is the run's tail (tests/xet/ is collected last: xet/test_resume.py,
# left out once, ran last alone for its final 67 s). In the order of their measured wall, each
# file's share of two whole `-n 2` runs timed per test (the larger of the two: 5 % of the run down
# to ~1 %); every other file took less, and runs in collection order after these. The README's
# command keeps this order (`--no-loadscope-reorder`; tests/test_gate.py holds xdist's scheduler
# to it). Moved down to their places by `-n 1` wall: xet/test_resume.py once its stalled
# connections stopped holding the next request (35 → 17 s), test_command_pairs.py once its resumed
# get stopped waiting out the stall timeout (43 → 16 s).
FIRST = (
    "tests/buckets/test_s3write.py",
    "tests/publish/test_releases_doc.py",
    "tests/download/test_swarm_liveness.py",
    "tests/endpoint/test_hostile.py",
    "tests/xet/test_hostile_xet.py",
    "tests/publish/test_publish.py",
    "tests/publish/test_prune_versions.py",
    "tests/publish/test_versions.py",
    "tests/publish/test_versions_flow.py",
    "tests/transfer/test_one_version.py",
    "tests/download/test_fill_fleet_trust.py",
    "tests/endpoint/test_endpoint.py",
    "tests/xet/test_resume.py",
    "tests/transfer/test_one_version_properties.py",
    "tests/endpoint/test_range_release.py",
    "tests/publish/test_prune_planted.py",
    "tests/download/test_swarm_hostile.py",
    "tests/test_command_pairs.py",
    "tests/endpoint/test_serve_pull_at_once.py",
    "tests/store/test_expected_state.py",
    "tests/publish/test_publish_trust.py",
    "tests/xet/test_replies.py",
    "tests/xet/test_pull.py",
)


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """The run's scratch removed unless tests failed, else named (their folders are there)."""
    if hasattr(session.config, "workerinput"):
        return
    kept = scratch.done(SCRATCH, failed=exitstatus == pytest.ExitCode.TESTS_FAILED)
    terminal = session.config.pluginmanager.get_plugin("terminalreporter")
    if kept is not None and terminal is not None:
        terminal.write("\n")  # (after the progress line, which has not ended)
        terminal.write_line(
            f"mdl tests: the failed tests' folders are kept in {kept} (in memory: remove it when done)"
        )


def pytest_sessionstart(session: pytest.Session) -> None:
    """A worker rewrites its share of the test modules' asserts before it collects (tests/rewrites.py)."""
    rewrite_my_share(session.config)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The files of ``FIRST`` first, in its order (each worker sorts alike: one collection)."""
    rank = {name: place for place, name in enumerate(FIRST)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::")[0], len(FIRST)))


def pytest_collection_finish(session: pytest.Session) -> None:
    """What collecting made lives as long as the worker (the modules, their test data, ~6,000
    items: a GB and more), so it is frozen out of the cyclic collector (``gc.freeze``), which
    walked it again at every full collection: about 6 % of the suite's CPU, measured."""
    gc.collect()
    gc.freeze()


@pytest.fixture(autouse=True)
def logging_lock_left_free() -> Iterator[None]:
    """A Ctrl-C that a test sends this process (the in-process runs of interrupts: a real SIGINT to
    the main thread) lands between two bytecodes, and can land inside logging's module lock, after
    it is taken and before the ``try`` that releases it. A process would then exit; this worker
    would hang its next test on the first log line of a second thread (a clean-clone run did, in a
    pull's crew). A lock the main thread still holds after a test is freed here."""
    yield
    lock = logging._lock  # what logging._acquireLock takes
    while lock._is_owned():
        lock.release()


@pytest.fixture(autouse=True)
def isolated_env(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point HOME and XDG_* at a fresh folder and drop MDL_*/HF_*, proxies and CA variables so no
    test sees the developer's setup."""
    home = tmp_path_factory.mktemp("home")
    for name in list(os.environ):
        if name.startswith(("MDL_", "HF_", "XDG_", "HUGGINGFACE_")) or name in {
            "NO_COLOR",
            "SOURCE_DATE_EPOCH",
            "NETRC",
            "DOCKER_CONFIG",
            "REGISTRY_AUTH_FILE",
        }:
            monkeypatch.delenv(name, raising=False)
        # no test may go through the developer's proxy
        if name.lower().endswith("_proxy") or name in NETWORK_TRUST:
            monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(home))
    for var, sub in {
        "XDG_CONFIG_HOME": ".config",
        "XDG_DATA_HOME": ".local/share",
        "XDG_CACHE_HOME": ".cache",
        "XDG_STATE_HOME": ".local/state",
    }.items():
        monkeypatch.setenv(var, str(home / sub))
    monkeypatch.setenv("HF_HOME", str(home / ".cache" / "huggingface"))
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    monkeypatch.setenv("TERM", "dumb")
    return home


# --- loopback servers (tests/servers.py): stand-ins for the Hub and its CDN; nothing reaches the
# internet ---


@pytest.fixture
def fresh_early(monkeypatch: pytest.MonkeyPatch) -> None:
    """mdl.transfer.early's connections the test's own (none left for the next), fresh however long
    a busy machine takes from the send to the download's ask."""
    from mdl.transfer import early

    monkeypatch.setattr(early, "_pending", [])
    monkeypatch.setattr(early, "FRESH_SECONDS", HANG)


@pytest.fixture
def hub() -> Iterator[HubServer]:
    """A started Hub stand-in with its own CDN (`hub.cdn`); stopped after the test, which must not
    have made the servers crash."""
    server = HubServer().start()
    try:
        yield server
    finally:
        server.stop()
    assert not server.errors, server.errors
    assert not server.cdn.errors, server.cdn.errors


@pytest.fixture
def catalog(hub: HubServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Where the test writes its catalog (tmp_path/catalog.toml), with the CLI pointed at it and
    the loopback Hub.
    """
    return use_catalog(tmp_path, monkeypatch, None, endpoint=hub.url)


@pytest.fixture
def cdn() -> Iterator[CdnServer]:
    """A started standalone CDN / direct-URL server; stopped after the test."""
    server = CdnServer().start()
    try:
        yield server
    finally:
        server.stop()
    assert not server.errors, server.errors
