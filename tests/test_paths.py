"""Accept/reject tables for safe_relative_path and url_basename."""

from __future__ import annotations

import pytest

from mdl.errors import ExitCode, UnsafePathError
from mdl.paths import safe_relative_path, url_basename

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
