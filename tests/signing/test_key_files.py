"""A signer's key or certificate is a small regular file: a FIFO or a device named as one is refused
at once (exit 2 naming it), never waited on (a FIFO with no writer blocks a plain read for ever) nor
read without end (/dev/zero). Each run is a child process: its timeout is only a safety net, the
assertions are on exit codes and messages."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from profiles import examples
from servers import HubServer
from signing.test_signed_pull import signed_repo, write_catalog
from signkeys import key_pair
from zygote import forked_mdl

from mdl.paths import read_small_file

SAFETY_NET = 300  # seconds: far beyond any run here; only a hang (the bug) reaches it


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """``mdl ARGS`` as a child process, forked from the worker's zygote (tests/zygote.py)."""
    return subprocess.run(
        [forked_mdl(), *args],
        capture_output=True,
        text=True,
        env=dict(os.environ),
        cwd=cwd,
        timeout=SAFETY_NET,
        check=False,
    )


@pytest.fixture(params=["fifo", "/dev/zero"])
def bad_key(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[Path, str]:
    """A FIFO nobody writes to, or /dev/zero; and what the error says it is."""
    if request.param == "fifo":
        fifo = tmp_path / "signer.pub"
        os.mkfifo(fifo)
        return fifo, "a FIFO, not a regular file"
    return Path("/dev/zero"), "a device, not a regular file"


@pytest.mark.slow
def test_a_catalog_signer_key_that_is_a_fifo_or_a_device_is_exit_2_naming_it(
    world: Path, hub: HubServer, tmp_path: Path, bad_key: tuple[Path, str]
) -> None:
    _, public, _ = signed_repo(hub, tmp_path)
    write_catalog(world, public)
    assert run("pull", "tiny").returncode == 0
    key, said = bad_key
    write_catalog(world, key)
    hub.cdn.log.clear()
    done = run("pull", "tiny", "--force")
    assert done.returncode == 2, done.stderr
    assert str(key) in done.stderr and said in done.stderr, done.stderr
    assert hub.cdn.log.body_bytes() == 0
    listed = run("list")  # list asks who signed: the key is refused there too, never read
    assert listed.returncode == 0 and "signature not verified" in listed.stdout, listed.stderr
    verified = run("verify", "tiny")
    assert verified.returncode == 2 and str(key) in verified.stderr and said in verified.stderr, (
        verified.stderr
    )


@pytest.mark.slow
def test_a_certificate_that_is_a_fifo_is_exit_2_naming_it(
    world: Path, hub: HubServer, tmp_path: Path
) -> None:
    signed_repo(hub, tmp_path)
    fifo = tmp_path / "chain.pem"
    os.mkfifo(fifo)
    world.write_text(
        f'[models.tiny]\nrepo = "org/tiny"\n[models.tiny.signature]\ncertificates = ["{fifo}"]\n'
    )
    done = run("pull", "tiny")
    assert done.returncode == 2, done.stderr
    assert str(fifo) in done.stderr and "a FIFO" in done.stderr, done.stderr


@pytest.mark.slow
def test_add_signed_by_a_fifo_or_a_device_is_exit_2_naming_it(
    tmp_path: Path, bad_key: tuple[Path, str]
) -> None:
    key, said = bad_key
    catalog = tmp_path / "catalog.toml"
    done = run("--catalog", str(catalog), "add", "tiny", "hf://org/tiny", "--signed-by", str(key))
    assert done.returncode == 2, done.stderr
    assert str(key) in done.stderr and said in done.stderr, done.stderr
    assert not catalog.exists()


def test_unpack_signed_by_a_fifo_or_a_device_is_exit_2_naming_it(
    tmp_path: Path, bad_key: tuple[Path, str]
) -> None:
    key, said = bad_key
    archive = tmp_path / "model.zip"
    # an empty zip: the key is refused before it is read
    archive.write_bytes(b"PK\x05\x06" + b"\0" * 18)
    done = run("unpack", str(archive), "-d", str(tmp_path / "out"), "--signed-by", str(key))
    assert done.returncode == 2, done.stderr
    assert key.name in done.stderr and said in done.stderr, done.stderr


@pytest.mark.slow
def test_pack_sign_with_a_fifo_or_a_device_is_exit_2_naming_it(
    tmp_path: Path, bad_key: tuple[Path, str]
) -> None:
    key, said = bad_key
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "config.json").write_text("{}")
    done = run("pack", str(run_dir), "--sign", str(key), "-o", str(tmp_path / "out.zip"))
    assert done.returncode == 2, done.stderr
    assert key.name in done.stderr and said in done.stderr, done.stderr
    assert not (tmp_path / "out.zip").exists()


@pytest.mark.slow
def test_a_key_file_bigger_than_any_key_is_exit_2(
    world: Path, hub: HubServer, tmp_path: Path
) -> None:
    signed_repo(hub, tmp_path)
    _, public = key_pair(tmp_path / "big")
    public.write_bytes(public.read_bytes() + b"\n" * (1 << 20))  # a real key, padded past 1 MiB
    write_catalog(world, public)
    done = run("pull", "tiny")
    assert done.returncode == 2, done.stderr
    assert str(public) in done.stderr and "more than the 1 MiB" in done.stderr, done.stderr


@settings(max_examples=examples(40), deadline=None)
@given(size=st.integers(0, 3000), limit=st.integers(0, 3000))
def test_a_small_regular_file_is_read_whole_within_its_limit_and_refused_past_it(
    tmp_path_factory: pytest.TempPathFactory, size: int, limit: int
) -> None:
    path = tmp_path_factory.mktemp("small") / "f"
    data = os.urandom(size)
    path.write_bytes(data)
    if size <= limit:
        assert read_small_file(path, limit=limit) == data
    else:
        with pytest.raises(OSError, match="more than") as caught:
            read_small_file(path, limit=limit)
        assert caught.value.filename == str(path)


@pytest.mark.slow
@pytest.mark.parametrize("command", [("list",), ("add", "tiny", "hf://org/tiny", "--no-check")])
def test_a_catalog_that_is_a_fifo_a_device_or_too_big_is_exit_2_naming_it(
    tmp_path: Path, bad_key: tuple[Path, str], command: tuple[str, ...]
) -> None:
    """The same class: the catalog is a small file the user names (read by ``list``, edited by
    ``add``).
    """
    catalog, _ = bad_key
    done = run("--catalog", str(catalog), *command)
    assert done.returncode == 2 and str(catalog) in done.stderr, done.stderr
    big = tmp_path / "catalog.toml"
    big.write_bytes(b"# a comment line, padded past any catalog\n" * 400_000)  # 17 MiB
    done = run("--catalog", str(big), *command)
    assert done.returncode == 2, done.stderr
    assert str(big) in done.stderr and "more than the 16 MiB" in done.stderr, done.stderr


def test_a_netrc_that_is_a_fifo_or_a_device_is_not_used_and_said(bad_key: tuple[Path, str]) -> None:
    """The same class: $NETRC (or ~/.netrc) is read unasked, so it is a warning, never a hang or
    a stop.
    """
    netrc, said = bad_key
    script = (
        "import sys; from pathlib import Path; from mdl.sources.netrc import read_netrc\n"
        "print(read_netrc(Path(sys.argv[1])).problem)"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(netrc)],
        capture_output=True,
        text=True,
        timeout=SAFETY_NET,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert str(netrc) in done.stdout and said in done.stdout and "not using it" in done.stdout, (
        done.stdout
    )
