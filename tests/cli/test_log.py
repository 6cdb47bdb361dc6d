"""The log file tells the story: one parseable line per file, retries with their causes, a server's
status and text for a failure (sanitised), and two processes rotating one log lose no line."""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest
from runfixtures import mdl, parse_file_line, use_catalog
from servers import CdnServer, Fault, make_data

from mdl.report import FileOutcome, file_line

DATA = make_data(200_000, seed=21)
ROOT = Path(__file__).resolve().parents[2]


def file_lines(log: Path) -> list[dict[str, str]]:
    return [
        parse_file_line(line)
        for line in log.read_text(encoding="utf-8").splitlines()
        if " file " in line
    ]


@pytest.fixture
def setup(cdn: CdnServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, object]:
    """A catalog of direct URLs on the loopback CDN: a plain file, a flaky one, a refused one, a
    broken one.
    """
    urls = {
        name: cdn.add_file(f"/files/{name}.bin", DATA)
        for name in ("plain", "flaky", "refused", "broken")
    }
    sha = hashlib.sha256(DATA).hexdigest()
    entries = (
        f'[models.{name}]\nfiles = [{{ url = "{url}", sha256 = "{sha}" }}]\n\n'
        for name, url in urls.items()
    )
    use_catalog(tmp_path, monkeypatch, "".join(entries))
    monkeypatch.setenv("MDL_RETRIES", "3")
    return {"cdn": cdn, "log": tmp_path / "mdl.log", "urls": urls}


def test_downloaded_then_skipped_lines_carry_every_field(setup: dict[str, object]) -> None:
    log = setup["log"]
    assert isinstance(log, Path)
    assert mdl("pull", "plain", "--no-progress").exit_code == 0
    assert mdl("pull", "plain", "--no-progress").exit_code == 0
    first, second = file_lines(log)
    assert first["model"] == "plain" and first["path"] == "plain.bin"
    assert first["action"] == "downloaded"
    assert first["source"] == setup["urls"]["plain"]  # type: ignore[index]
    assert first["size"] == str(len(DATA))
    assert first["sha256"] == hashlib.sha256(DATA).hexdigest()
    assert first["fetched"] == str(len(DATA))
    assert float(first["seconds"]) >= 0
    assert first["retries"] == "0"
    assert first["dest"].endswith("plain/plain.bin")
    assert second["action"] == "skipped"
    assert second["sha256"] == first["sha256"] and second["size"] == first["size"]
    assert "fetched" not in second


def test_retries_are_counted_with_their_causes(setup: dict[str, object]) -> None:
    cdn = setup["cdn"]
    assert isinstance(cdn, CdnServer)
    cdn.faults.add(
        Fault.http_error(503, body="busy, try later", retry_after=0, path_prefix="/files/flaky.bin")
    )
    cdn.faults.add(Fault.reset(after_bytes=50_000, path_prefix="/files/flaky.bin"))
    result = mdl("pull", "flaky", "--no-progress")
    assert result.exit_code == 0, result.stderr
    (line,) = file_lines(setup["log"])  # type: ignore[arg-type]
    assert line["action"] == "downloaded"
    assert line["retries"] == "2"
    causes = line["causes"].split(" | ")
    assert "HTTP 503" in causes[0] and "busy, try later" in causes[0]
    assert "127.0.0.1" in causes[1]  # the connection cut: names the host it came from


def test_a_failure_keeps_status_and_sanitised_server_text(setup: dict[str, object]) -> None:
    cdn = setup["cdn"]
    assert isinstance(cdn, CdnServer)
    hostile = "denied\x1b]0;owned\x07\x1b[2J\nFAKE 2026-01-01 INFO forged line\r" + "x" * 9000
    cdn.faults.add(
        Fault.http_error(403, body=hostile, path_prefix="/files/refused.bin", times=None)
    )
    cdn.faults.add(
        Fault.http_error(
            500, body="kaput", retry_after=0, path_prefix="/files/broken.bin", times=None
        )
    )
    result = mdl("pull", "refused", "broken", "plain", "--no-progress")
    assert result.exit_code == 3  # 403 (3) and a server error (5): the lowest above 1
    text = setup["log"].read_text(encoding="utf-8")  # type: ignore[union-attr]
    assert "\x1b" not in text and "\x07" not in text and "\r" not in text
    assert not any(line.startswith("FAKE") for line in text.splitlines())  # no forged line
    lines = {line["model"]: line for line in file_lines(setup["log"])}  # type: ignore[arg-type]
    refused = lines["refused"]
    assert refused["action"] == "failed"
    assert refused["status"] == "403"
    assert refused["exit"] == "3"
    # Escapes shown as text; line breaks (\n, \r) folded into spaces, so the forged line stays
    # inside this one.
    assert refused["server_text"].startswith(
        "denied\\x1b]0;owned\\x07\\x1b[2J FAKE 2026-01-01 INFO forged line xxx"
    )
    # the first 500 characters, and a mark where it was cut
    assert len(refused["server_text"]) <= 501
    assert refused["server_text"].endswith("…")
    assert "HTTP 403" in refused["error"]
    broken = lines["broken"]
    assert broken["status"] == "500" and broken["server_text"] == "kaput" and broken["exit"] == "5"
    assert broken["retries"] == "3" and broken["causes"].count("HTTP 500") == 3
    assert lines["plain"]["action"] == "downloaded"


@pytest.mark.slow
def test_a_failed_file_says_how_many_bytes_it_fetched_before_it_failed(
    setup: dict[str, object],
) -> None:
    cdn = setup["cdn"]
    assert isinstance(cdn, CdnServer)
    cdn.faults.add(Fault.reset(after_bytes=20_000, path_prefix="/files/broken.bin", times=None))
    result = mdl("pull", "broken", "--no-progress")
    assert result.exit_code == 5, result.stderr
    (line,) = file_lines(setup["log"])  # type: ignore[arg-type]
    assert line["action"] == "failed" and line["retries"] == "3"
    # Four answers cut after 20,000 bytes each, each resumed where the last stopped: every byte kept
    # is counted.
    assert int(line["fetched"]) == 4 * 20_000


def test_file_line_round_trips_awkward_values() -> None:
    outcome = FileOutcome(
        model="m",
        path='dir with space/"quoted" = x.bin',
        dest=None,
        size=None,
        sha256=None,
        action="failed",
        error='m/x: HTTP 500: "oops" \\ back',
        exit_code=5,
        retries=("a | b", "c"),
        status=500,
        server_text="",
    )
    fields = parse_file_line(
        "2026-01-01T00:00:00.000Z ERROR pid=1 [t] mdl.files: " + file_line(outcome)
    )
    assert fields["path"] == 'dir with space/"quoted" = x.bin'
    assert fields["error"] == 'm/x: HTTP 500: "oops" \\ back'
    assert fields["status"] == "500" and fields["retries"] == "2"
    assert "server_text" not in fields and "size" not in fields


WRITER = textwrap.dedent("""
    import logging, sys, time
    from pathlib import Path
    from mdl.cli.render.log import setup_logging

    log_file, go, name = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
    setup_logging(log_file=log_file, verbose=False, max_bytes=1500, backups=1000)
    while not go.exists():
        time.sleep(0.005)
    log = logging.getLogger("mdl.test")
    for i in range(400):
        log.info("writer=%s line=%d %s", name, i, "y" * 40)
    """)


def test_two_processes_rotating_one_log_lose_no_line(tmp_path: Path) -> None:
    log_file, go = tmp_path / "logs" / "mdl.log", tmp_path / "go"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    writers = [
        subprocess.Popen([sys.executable, "-c", WRITER, str(log_file), str(go), name], env=env)
        for name in "AB"
    ]
    go.touch()
    for writer in writers:
        assert writer.wait(timeout=120) == 0
    seen: list[str] = []
    files = sorted(log_file.parent.iterdir())
    for path in files:
        seen.extend(
            line for line in path.read_text(encoding="utf-8").splitlines() if "writer=" in line
        )
    assert len(files) > 10  # it really rotated, many times, while both wrote
    got = [re.search(r"writer=(\w) line=(\d+) ", line).groups() for line in seen]  # type: ignore[union-attr]
    # none lost, none twice
    assert sorted(got) == sorted((name, str(i)) for name in "AB" for i in range(400))
    assert all(path.stat().st_size <= 1500 for path in files)


def test_a_huge_error_body_is_read_only_to_its_first_kilobytes(setup: dict[str, object]) -> None:
    cdn = setup["cdn"]
    assert isinstance(cdn, CdnServer)
    body = b"quota exceeded " + b"z" * (16 * 1024 * 1024)  # far more than any socket buffer holds
    cdn.faults.add(Fault.http_error(403, body=body, path_prefix="/files/refused.bin", times=None))
    result = mdl("pull", "refused", "--no-progress")
    assert result.exit_code == 3
    (line,) = file_lines(setup["log"])  # type: ignore[arg-type]
    assert line["server_text"].startswith("quota exceeded zzz")
    (answer,) = [r for r in cdn.log if r.method == "GET" and r.status == 403]
    assert not answer.complete  # mdl hung up after its 8 KiB instead of draining 16 MiB


def test_a_kept_file_says_why_in_its_line() -> None:
    outcome = FileOutcome(
        model="big",
        path="w.bin",
        dest="/m/big/w.bin",
        size=3,
        sha256="a" * 64,
        action="skipped",
        warning="could not check big for updates: the Hub did not answer; keeping 0123456789ab",
    )
    fields = parse_file_line(file_line(outcome))
    assert fields["action"] == "skipped"
    assert fields["warning"].startswith("could not check big for updates")


def test_the_log_is_this_users_alone_under_any_umask(tmp_path: Path) -> None:
    """Fixed defect (issue 68 D), as found: the log was created as the umask said (0644 under
    022), and ``mdl -v serve`` writes request targets in it: another local user read it. Every
    log file mdl writes (a new one, one an older mdl left 0644, each rotated one) is 0600."""
    log_file = tmp_path / "logs" / "mdl.log"
    log_file.parent.mkdir()
    log_file.write_text("an older mdl's line\n")
    log_file.chmod(0o644)
    script = textwrap.dedent(
        """
        import logging, os, sys
        from pathlib import Path
        from mdl.cli.render.log import setup_logging
        os.umask(0o022)
        setup_logging(log_file=Path(sys.argv[1]), verbose=True, max_bytes=300, backups=3)
        for i in range(20):
            logging.getLogger("mdl.test").info("line %d %s", i, "x" * 40)
        """
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", script, str(log_file)], env=env, timeout=120, check=False
    )
    assert done.returncode == 0
    files = sorted(log_file.parent.iterdir())
    assert len(files) == 4  # the log and 3 rotated ones
    assert {oct(path.stat().st_mode & 0o777) for path in files} == {oct(0o600)}


def test_a_log_file_that_is_a_fifo_nobody_reads_never_hangs_the_run(tmp_path: Path) -> None:
    """Found by a hostile user (round 33): ``--log-file`` (or MDL_LOG_FILE, or the default path)
    naming a FIFO with no reader blocked every command in ``open`` for ever, saying nothing. It now
    goes on without a log and says so, as for any log it cannot write."""
    fifo = tmp_path / "log.fifo"
    os.mkfifo(fifo)
    (tmp_path / "catalog.toml").write_text('[models.a]\nfiles = [{url = "http://127.0.0.1:9/a"}]\n')
    results: list[object] = []
    run = threading.Thread(
        target=lambda: results.append(
            mdl("list", "--catalog", str(tmp_path / "catalog.toml"), "--log-file", str(fifo))
        ),
        daemon=True,
    )
    run.start()
    run.join(30)
    if run.is_alive():  # hung in open(): a reader lets it go, the test fails
        os.close(os.open(fifo, os.O_RDONLY | os.O_NONBLOCK))
        run.join(10)
        pytest.fail("the run waited for a reader of its log file")
    [result] = results
    assert result.exit_code == 0, result.stderr  # type: ignore[attr-defined]
    assert f"cannot write the log file {fifo}" in result.stderr  # type: ignore[attr-defined]


def test_a_log_file_that_is_a_fifo_being_read_gets_the_lines(tmp_path: Path) -> None:
    fifo = tmp_path / "log.fifo"
    os.mkfifo(fifo)
    (tmp_path / "catalog.toml").write_text('[models.a]\nfiles = [{url = "http://127.0.0.1:9/a"}]\n')
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    try:
        result = mdl("list", "--catalog", str(tmp_path / "catalog.toml"), "--log-file", str(fifo))
        got = os.read(reader, 1 << 16)
    finally:
        os.close(reader)
    assert result.exit_code == 0, result.stderr
    assert b"mdl.cli: mdl " in got and b"mdl.cli: done in" in got
