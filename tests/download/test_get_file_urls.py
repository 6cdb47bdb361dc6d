"""``mdl get file:///…`` (issue 59, I): a file URL is percent-encoded (RFC 8089), as curl and urllib
read it, while a mirror's store URIs keep their paths as they are; and a source that names a FIFO, a
socket, a device or a folder is a short error naming it and what it is (exit 2), never waited on,
never "HTTP 404" named by the output file."""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from profiles import examples
from runfixtures import mdl

from mdl.buckets.folder import parse_file_uri
from mdl.errors import ExitCode, UsageError
from mdl.sources.oneoff import parse_sources
from mdl.transfer.http import make_client

DATA = b"weights\n" * 1000


@pytest.fixture
def here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


def got(source: str) -> tuple[int, str, str]:
    """``mdl get SOURCE -d out``: its exit code, stdout and stderr."""
    result = mdl("get", source, "-d", "out")
    return result.exit_code, result.stdout, result.stderr


def test_a_percent_encoded_file_url_is_the_file_it_encodes(here: Path) -> None:
    (here / "a b").write_bytes(DATA)
    code, stdout, stderr = got(f"file://{here}/a%20b")
    assert code == 0, stderr
    assert stdout == f"{here / 'out' / 'a b'}\n"
    assert (here / "out" / "a b").read_bytes() == DATA
    # Path.as_uri() and the host spelled out: the same file
    assert got(f"file://localhost{quote(str(here))}/a%20b")[0] == 0


@pytest.mark.parametrize(
    ("name", "written"),
    [
        ("a%b", "a%b"),  # no escape: a '%' as it was (what worked before still works)
        ("100%", "100%"),
        ("a%20b", "a%2520b"),  # a file literally named so is written as curl wants it
        ("a b", "a b"),  # a raw space, as before
        ("é.bin", "%C3%A9.bin"),
    ],
)
def test_a_literal_percent_and_raw_names_still_read(here: Path, name: str, written: str) -> None:
    (here / name).write_bytes(DATA)
    code, _, stderr = got(f"file://{here}/{written}")
    assert code == 0, stderr
    assert (here / "out" / name).read_bytes() == DATA


def test_an_escape_cannot_smuggle_a_climb_or_a_nul(here: Path) -> None:
    for source, words in (
        (f"file://{here}/x/%2E%2E/etc", "'..' segment"),
        (f"file://{here}/a%2F%2Fb", "'..' segment"),
        (f"file://{here}/a%00b", "control character"),
    ):
        code, stdout, stderr = got(source)
        assert (code, stdout) == (ExitCode.USAGE, ""), stderr
        assert words in stderr


def test_a_missing_decoded_file_is_exit_4_naming_the_url(here: Path) -> None:
    code, _, stderr = got(f"file://{here}/no%20such")
    assert code == ExitCode.NOT_FOUND
    assert f"file://{here}/no%20such: no such file" in stderr


def test_store_uris_keep_their_paths_as_they_are() -> None:
    # a mirror's values fill its template as they are: a model file named 'a%20b' is that name
    assert parse_file_uri("file:///m/a%20b")[1] == "/m/a%20b"
    assert parse_file_uri("file:///m/a%20b", encoded=True)[1] == "/m/a b"


SEGMENT = st.text(
    st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp"), blacklist_characters="/\x7f"),
    min_size=1,
    max_size=12,
).filter(lambda seg: seg not in (".", ".."))


@settings(max_examples=examples(300), deadline=None)
@given(st.lists(SEGMENT, min_size=1, max_size=4))
def test_every_path_round_trips_through_its_file_url(segments: list[str]) -> None:
    """What ``Path.as_uri()`` writes (and curl and urllib read) is the path it came from."""
    path = "/" + "/".join(segments)
    if any(not ch.isprintable() for ch in path):
        return  # (refused as a control character, encoded or not)
    assert parse_file_uri(Path(path).as_uri(), encoded=True)[1] == path
    assert parse_file_uri("file://" + quote(path), encoded=True)[1] == path


# --- what is not a regular file -------------------------------------------------------------------


def _fifo(at: Path) -> Iterator[Path]:
    os.mkfifo(at)
    yield at


def _socket(at: Path) -> Iterator[Path]:
    with socket.socket(socket.AF_UNIX) as listening:
        listening.bind(at.name)  # (relative: a socket's path is short; the test is in its folder)
        yield at


def _folder(at: Path) -> Iterator[Path]:
    at.mkdir()
    yield at


def _device(at: Path) -> Iterator[Path]:
    yield Path("/dev/null")


def _link_to_fifo(at: Path) -> Iterator[Path]:
    os.mkfifo(at.with_name("target"))
    at.symlink_to("target")
    yield at


KINDS: dict[str, tuple[Callable[[Path], Iterator[Path]], str]] = {
    "fifo": (_fifo, "a FIFO"),
    "socket": (_socket, "a socket"),
    "folder": (_folder, "a folder"),
    "device": (_device, "a device"),
    "link to a fifo": (_link_to_fifo, "a FIFO"),
}


@pytest.mark.parametrize("kind", KINDS)
def test_a_source_that_is_not_a_regular_file_is_exit_2_saying_what_it_is(
    here: Path, kind: str
) -> None:
    make, said = KINDS[kind]
    for at in make(here / "w.bin"):
        source = f"file://{at}"
        with pytest.raises(UsageError) as info:
            parse_sources([source], read_text=str)
        assert str(info.value) == f"{source}: names {said}, not a regular file"
        code, stdout, stderr = got(source)
        assert (code, stdout) == (ExitCode.USAGE, ""), stderr
        assert f"mdl: error: {source}: names {said}, not a regular file" in stderr
        assert "HTTP" not in stderr and "out/" not in stderr
        assert not (here / "out" / at.name).exists()


@pytest.mark.parametrize("kind", ["fifo", "socket", "device", "link to a fifo"])
def test_the_transport_never_reads_what_is_not_a_regular_file(here: Path, kind: str) -> None:
    """A mirror's object replaced by one (after it was listed): a 404 saying what it is, at once
    (opened without waiting, judged by fstat before any read; a link is never followed)."""
    make, said = KINDS[kind]
    said = "a symbolic link, never followed" if kind.startswith("link") else said
    for at in make(here / "w.bin"):
        with make_client(pool_size=2) as client:
            answer = client.get(f"file://localhost{quote(str(at))}")
        assert (answer.status_code, answer.text) == (
            404,
            said if "link" in said else f"{said}, not a file",
        )
