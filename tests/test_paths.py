"""Accept/reject tables for safe_relative_path, safe_file_name and url_basename."""

from __future__ import annotations

from pathlib import Path

import pytest

from mdl.errors import ExitCode, UnsafePathError, UsageError
from mdl.paths import home_expanded, parse_hf_uri, safe_file_name, safe_relative_path, url_basename

WHERE = "models.x.files[1].as"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("model.safetensors", "model.safetensors"),
        ("vae/ae.safetensors", "vae/ae.safetensors"),
        ("./config.json", "config.json"),
        ("././a/b", "a/b"),
        ("a/b/c/d.bin", "a/b/c/d.bin"),
        (".gitattributes", ".gitattributes"),
        ("a/.hidden", "a/.hidden"),
        ("..foo", "..foo"),
        ("foo..", "foo.."),
        ("a/...", "a/..."),
        ("name with spaces.txt", "name with spaces.txt"),
        ("دیتا/فایل.json", "دیتا/فایل.json"),
        ("ab:c", "ab:c"),
        ("a/C:x", "a/C:x"),
    ],
)
def test_safe_relative_path_accepts(value: str, expected: str) -> None:
    assert safe_relative_path(value, where=WHERE) == expected


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("", "empty"),
        ("/etc/passwd", "absolute"),
        ("//server/share", "absolute"),
        ("C:x", "drive letter"),
        ("C:/x", "drive letter"),
        ("c:\\x", "backslash"),
        ("a\\b", "backslash"),
        ("..\\..\\x", "backslash"),
        ("..", "'..'"),
        ("../x", "'..'"),
        ("a/../../x", "'..'"),
        ("a/..", "'..'"),
        ("./../x", "'..'"),
        (".", "empty or '.'"),
        ("./", "names no file"),
        ("a/./b", "empty or '.'"),
        ("a//b", "empty or '.'"),
        ("a/", "empty or '.'"),
        ("a/b/.", "empty or '.'"),
        (".git/config", "'.git' component"),  # git status there runs what its config names
        ("sub/.GIT/hooks/post-checkout", "'.git' component"),
        ("\uff0egit/config", "'.git' component"),  # a fullwidth dot: NFKC's '.git'
        (".g\u200cit/config", "'.git' component"),  # HFS+ ignores the joiner
        (".git./config", "'.git' component"),  # NTFS drops trailing dots and spaces
        ("GIT~1/config", "'.git' component"),  # NTFS's short name
        ("a\x00b", "control character"),
        ("a\nb", "control character"),
        ("a\tb", "control character"),
        ("a\x1b[31mb", "control character"),
        ("a\x7fb", "control character"),
        ("a\x85b", "control character"),
    ],
)
def test_safe_relative_path_rejects(value: str, reason: str) -> None:
    with pytest.raises(UnsafePathError) as info:
        safe_relative_path(value, where=WHERE)
    message = str(info.value)
    assert info.value.exit_code == ExitCode.USAGE == 2
    assert message.startswith(f"{WHERE}: ")
    assert repr(value) in message
    assert reason in message
    # One line, whatever the value held.
    assert "\n" not in message


def test_safe_relative_path_shortens_huge_values() -> None:
    with pytest.raises(UnsafePathError) as info:
        safe_relative_path("../" + "a" * 5000, where=WHERE)
    assert len(str(info.value)) < 300


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://cdn.example.com/loras/style.safetensors", "style.safetensors"),
        ("https://cdn.example.com/a/b.bin?X-Amz-Signature=abc#frag", "b.bin"),
        ("http://h:8080/x/model%20v2.gguf", "model v2.gguf"),
        ("https://h/%D9%85%D8%AF%D9%84.bin", "مدل.bin"),
        ("https://h/file", "file"),
    ],
)
def test_url_basename_accepts(url: str, expected: str) -> None:
    assert url_basename(url, where="get") == expected


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("https://x/", "ends without one"),
        ("https://x", "ends without one"),
        ("https://x/a/", "ends without one"),
        ("https://x/..", "'..'"),
        ("https://x/a/%2E%2E", "'..'"),
        ("https://x/.", "empty or '.'"),
        ("https://x/a%2F..%2Fb", "'/'"),
        ("https://x/a%5Cb", "backslash"),
        ("https://x/a%00b", "control character"),
        ("https://x/C%3Ax", "drive letter"),
    ],
)
def test_url_basename_rejects(url: str, reason: str) -> None:
    with pytest.raises(UnsafePathError) as info:
        url_basename(url, where="listing of org/repo")
    assert str(info.value).startswith("listing of org/repo: ")
    assert reason in str(info.value)


def test_url_basename_error_hides_the_query() -> None:
    with pytest.raises(UnsafePathError) as info:
        url_basename("https://user:pw@x/dir/?X-Amz-Signature=secret", where="get")
    message = str(info.value)
    assert "secret" not in message
    assert "pw" not in message
    assert "https://x/dir/" in message


# -- safe_file_name: one plain name, as job outputs must give
# ------------------------------------------------

NAME_WHERE = "job.json.files[1].filename"


@pytest.mark.parametrize(
    "value",
    [
        "lora.safetensors",
        "model-v2.Q8_0.gguf",
        ".gitattributes",
        "name with spaces.txt",
        " leading-space.bin",
        "مدل.bin",
        "console.log",  # only the exact device names are reserved, not names that start with them
        "CONFIG.json",
        "com10.txt",
        "lpt0",
        "nul_plus.bin",
        "a.b.c",
        ".mdlrc",
        "x" * 229,  # NAME_MAX less room for mdl's temporary name (".<name>.<16 hex>.mdl-tmp")
    ],
)
def test_safe_file_name_accepts(value: str) -> None:
    assert safe_file_name(value, where=NAME_WHERE) == value


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("", "empty"),
        (".", "names no file"),
        ("..", "'..'"),
        ("../evil", "path separator"),
        ("..evil", "'..'"),
        ("evil..bin", "'..'"),
        ("a/b", "path separator"),
        ("/etc/passwd", "path separator"),
        ("a\\b", "path separator"),
        ("..\\..\\evil", "path separator"),
        ("C:evil", "':'"),
        ("c:", "':'"),
        ("file.txt:stream", "':'"),
        ("a\x00b", "control character"),
        ("a\nb", "control character"),
        ("\x1b[31mred", "control character"),
        ("a\x85b", "control character"),
        ("a\ud800b", "not valid Unicode"),
        ("x\u202etxt.exe", "invisible formatting character"),
        ("a\u200bb", "invisible formatting character"),
        ("a\u2028b", "control character"),
        ("evil.", "ends with a dot or a space"),
        ("evil ", "ends with a dot or a space"),
        ("CON", "reserved device name"),
        ("con", "reserved device name"),
        ("Nul.txt", "reserved device name"),
        ("aux.tar.gz", "reserved device name"),
        ("PRN .txt", "reserved device name"),
        ("COM1", "reserved device name"),
        ("lpt9.bin", "reserved device name"),
        ("COM\u00b9", "reserved device name"),
        ("conin$", "reserved device name"),
        (".mdl", "reserves for its own state"),
        (".MDL", "reserves for its own state"),
        ("\uff0emdl", "reserves for its own state"),  # a full-width dot: NFKC makes it ".mdl"
        # unpack's staging: get -d DIR must not plant one
        (".mdl-unpack-0123", "reserves for its own state"),
        ("x" * 230, "longer than 229 bytes"),
        ("é" * 115, "longer than 229 bytes"),
    ],
)
def test_safe_file_name_rejects(value: str, reason: str) -> None:
    with pytest.raises(UnsafePathError) as info:
        safe_file_name(value, where=NAME_WHERE)
    message = str(info.value)
    assert info.value.exit_code == ExitCode.USAGE
    assert message.startswith(f"{NAME_WHERE}: must be a plain file name, got ")
    assert reason in message
    assert "\n" not in message and "\x00" not in message and "\x1b" not in message
    if len(value) < 100:
        assert repr(value) in message  # the value is shown, escaped


def test_an_hf_uri_that_is_refused_is_named_on_one_line() -> None:
    """A Hub page URL with %0A in it decodes to a line break: the error names it on one line (no
    forged line).
    """
    with pytest.raises(UsageError) as info:
        parse_hf_uri("hf://org/tiny@main/a\nb.gguf\r\x1b[2J")
    assert (
        "\n" not in info.value.message
        and "\r" not in info.value.message
        and "\x1b" not in info.value.message
    )
    assert info.value.message.startswith("hf://org/tiny@main/a")


def test_a_home_that_cannot_be_found_leaves_the_path_as_written(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``home_expanded``, every path a user writes (a flag, a setting, a catalog's key file): an
    unknown ``~user`` stays as written, as a shell leaves it (``Path.expanduser`` raised
    RuntimeError: `mdl add --signed-by '~0'` was an internal error); ``~`` is HOME."""
    monkeypatch.setenv("HOME", "/home/someone")
    assert home_expanded("~/k.pub") == Path("/home/someone/k.pub")
    assert home_expanded("~0/k.pub") == Path("~0/k.pub")
    assert home_expanded(Path("~no-such-user-here/k")) == Path("~no-such-user-here/k")
    with pytest.raises(RuntimeError):
        Path("~0/k.pub").expanduser()  # what it replaces
