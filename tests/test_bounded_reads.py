"""Every read of bytes from outside mdl is bounded (issue 59, B): a whole file mdl did not write is
read through ``mdl.paths.read_small_file`` (a byte limit, never a FIFO waited on, never a device
read, a link refused where asked), a stream through ``read_bounded`` or a read of a stated size.

The walk below finds any other: a read with no size (``.read()``, ``.read(-1)``, ``readline()``),
a whole file at once (``Path.read_bytes``/``read_text``, ``readlines``), a parse of a whole stream
(``json.load``, ``tomllib.load``, ``pickle.load``), a loop over a file's lines, a reply body or a
child's output taken whole. A call that must stay is named in ALLOWED with its reason."""

from __future__ import annotations

import ast
import errno
import os
import socket
import stat
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from profiles import examples
from runfixtures import mdl, use_catalog

from mdl.errors import ExitCode
from mdl.lockfile.io import read_lock, write_lock
from mdl.lockfile.model import Lock
from mdl.paths import read_small_file

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "mdl"

# ``module:function``: a whole read that stays, each for its reason.
ALLOWED = {
    # mdl's own package data (importlib.resources, perhaps in a zip): not outside bytes
    "mdl.catalog.edit:starter_catalog": "the starter catalog mdl ships",
    # the kernel's 37-byte file for this boot (/proc/sys/kernel/random/boot_id): not outside bytes
    "mdl.transfer.resume:boot_id": "this boot's id, from the kernel",
}

# A whole file or stream in one call, whatever its arguments (a ``limit=`` keyword names mdl's own
# bounded readers: ``confined.read_bytes(root, path, limit=…)``).
WHOLE = {"read_bytes", "read_text", "readlines", "readall"}
# ``read(n)``-like methods, unbounded without a size (or with -1 or None)
SIZED = {"read", "read1", "readline"}
# a parser of a whole stream
LOADERS = {"json", "tomllib", "pickle", "marshal", "yaml", "plistlib"}
# a child's whole output
CHILD_OUTPUT = {"check_output", "communicate", "getoutput", "getstatusoutput"}
OPENERS = {"open", "fdopen"}


def _unbounded(node: ast.Call) -> str | None:
    """What is unbounded about one call, or None."""
    func = node.func
    name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
    keywords = {k.arg for k in node.keywords}
    # (a bare name is a function of mdl's own: ``read_text`` as a job output's bounded reader)
    if isinstance(func, ast.Attribute) and name in WHOLE and "limit" not in keywords:
        return f".{name}() reads it whole"
    if isinstance(func, ast.Attribute) and name in SIZED:
        if isinstance(func.value, ast.Name) and func.value.id == "os":
            return None  # os.read(fd, n): a size is required
        size = (
            node.args[0]
            if node.args
            else next(
                (k.value for k in node.keywords if k.arg in ("size", "n", "amt", "limit")), None
            )
        )
        if size is None:
            return f".{name}() with no size"
        if isinstance(size, ast.Constant) and size.value in (None, -1):
            return f".{name}({size.value}) reads to the end"
        if isinstance(size, ast.UnaryOp) and isinstance(size.op, ast.USub):
            return f".{name}(-…) reads to the end"
    if (
        isinstance(func, ast.Attribute)
        and name == "load"
        and isinstance(func.value, ast.Name)
        and func.value.id in LOADERS
    ):
        return f"{func.value.id}.load() parses a whole stream"
    if isinstance(func, ast.Attribute) and name in CHILD_OUTPUT:
        return f".{name}() takes a child's whole output"
    if isinstance(func, ast.Attribute) and name == "json" and not node.args:
        return ".json() parses a whole reply body"
    if any(k.arg == "capture_output" for k in node.keywords):
        return "capture_output= takes a child's whole output"
    return None


def _opened(node: ast.AST) -> bool:
    """``open(…)``, ``os.fdopen(…)``, ``path.open(…)``: a file object."""
    if not isinstance(node, ast.Call):
        return False
    func = node.func
    return (isinstance(func, ast.Name) and func.id in OPENERS) or (
        isinstance(func, ast.Attribute) and func.attr in OPENERS
    )


class _Finder(ast.NodeVisitor):
    """Unbounded reads of one module, each as ``(module:function, line, why)``."""

    def __init__(self, module: str) -> None:
        self.module = module
        self.scope: list[str] = []
        self.found: list[tuple[str, int, str]] = []
        self.files: set[str] = set()  # names bound to a file object (``with open(…) as f``)

    def _say(self, node: ast.AST, why: str) -> None:
        where = f"{self.module}:{'.'.join(self.scope) or '<module>'}"
        self.found.append((where, getattr(node, "lineno", 0), why))

    def _nested(self, node: ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) -> None:
        self.scope.append(node.name)
        self.generic_visit(node)
        self.scope.pop()

    visit_FunctionDef = visit_AsyncFunctionDef = visit_ClassDef = _nested

    def visit_withitem(self, node: ast.withitem) -> None:
        if _opened(node.context_expr) and isinstance(node.optional_vars, ast.Name):
            self.files.add(node.optional_vars.id)
        self.generic_visit(node)

    def visit_Call(self, node: ast.Call) -> None:
        if (why := _unbounded(node)) is not None:
            self._say(node, why)
        self.generic_visit(node)

    def _loop(self, target: ast.AST) -> None:
        if _opened(target) or (isinstance(target, ast.Name) and target.id in self.files):
            self._say(target, "a loop over a file's lines (a line has no bound)")

    def visit_For(self, node: ast.For) -> None:
        self._loop(node.iter)
        self.generic_visit(node)

    def visit_comprehension(self, node: ast.comprehension) -> None:
        self._loop(node.iter)
        self.generic_visit(node)


def unbounded_reads(source: str, module: str) -> list[tuple[str, int, str]]:
    """Every unbounded read of ``source`` (the module ``module``)."""
    finder = _Finder(module)
    finder.visit(ast.parse(source))
    return finder.found


def _modules() -> Iterator[tuple[str, Path]]:
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        yield ".".join(parts[:-1] if parts[-1] == "__init__" else parts), path


@pytest.mark.slow
def test_every_read_of_outside_bytes_is_bounded() -> None:
    found = [
        hit
        for module, path in _modules()
        for hit in unbounded_reads(path.read_text(encoding="utf-8"), module)
    ]
    allowed = ALLOWED
    stray = [f"{where} (line {line}): {why}" for where, line, why in found if where not in allowed]
    assert not stray, "unbounded reads; use mdl.paths.read_small_file or a size:\n" + "\n".join(
        stray
    )
    stale = sorted(set(allowed) - {where for where, _, _ in found})
    assert not stale, f"allowed but no longer there, remove them: {stale}"


@pytest.mark.parametrize(
    "code",
    [
        "def f(reply): return bytes(reply['Body'].read())",  # the old lease read
        "def f(handle): return handle.read(-1)",
        "def f(handle): return handle.read(size=None)",
        "def f(handle): return handle.readline()",
        "def f(p): return p.read_bytes()",
        "def f(p): return p.read_text(encoding='utf-8')",
        "def f(h): return h.readlines()",
        "def f(h): import json; return json.load(h)",
        "def f(h): import tomllib; return tomllib.load(h)",
        "def f(h): import pickle; return pickle.load(h)",
        "def f(p): return open(p).read()",
        "def f(p):\n with p.open('rb') as h:\n  return h.read()",
        "def f(p):\n with open(p) as h:\n  return [line for line in h]",
        "def f(p):\n for line in open(p):\n  pass",
        "def f(r): return r.json()",
        "def f(s): return s.check_output(['x'])",
        "def f(s): return s.run(['x'], capture_output=True)",
    ],
)
def test_the_walk_finds_each_kind_of_unbounded_read(code: str) -> None:
    assert [where for where, _, _ in unbounded_reads(code, "m")] == ["m:f"]


@pytest.mark.parametrize(
    "code",
    [
        "def f(h, n): return h.read(n + 1)",
        "def f(fd): import os; return os.read(fd, 10)",
        "def f(p): from mdl.paths import read_small_file; return read_small_file(p, limit=9)",
        "def f(root, p): return confined.read_bytes(root, p, limit=256)",
        "def f(h): import hashlib; return hashlib.file_digest(h, 'sha256')",
        "def f(w, uri): return w.read(uri)",  # a store's read of one object, by its name
        "def f(h): import json; return json.loads(h.read(100))",
    ],
)
def test_the_walk_lets_bounded_reads_be(code: str) -> None:
    assert unbounded_reads(code, "m") == []


# --- the reader itself ----------------------------------------------------------------------------


def _fifo(at: Path) -> Path:
    os.mkfifo(at)
    return at


def _folder(at: Path) -> Path:
    at.mkdir()
    return at


def _link(at: Path) -> Path:
    at.with_name("target").write_bytes(b"[models]\n")
    at.symlink_to("target")
    return at


def _socket(at: Path) -> Path:
    listening = socket.socket(socket.AF_UNIX)
    cwd = Path.cwd()
    os.chdir(at.parent)  # a socket's path is short
    try:
        listening.bind(at.name)
    finally:
        os.chdir(cwd)
    return at


REFUSED: dict[str, tuple[Callable[[Path], Path], int, str]] = {
    "fifo": (_fifo, errno.EINVAL, "it is a FIFO, not a regular file"),
    "folder": (_folder, errno.EISDIR, "it is a folder, not a regular file"),
    "socket": (_socket, errno.ENXIO, "it is a socket, not a regular file"),
    "link": (_link, errno.ELOOP, "it is a symbolic link, which mdl does not follow for this file"),
}


@pytest.mark.parametrize("kind", REFUSED)
def test_what_is_not_a_regular_file_is_refused_without_waiting_naming_it(
    tmp_path: Path, kind: str
) -> None:
    make, code, why = REFUSED[kind]
    at = make(tmp_path / "x.toml")
    with pytest.raises(OSError) as info:  # a FIFO with no writer: the open returns at once
        read_small_file(at, limit=100, follow_links=False)
    assert (info.value.errno, info.value.strerror, info.value.filename) == (code, why, str(at))
    assert str(at) in str(info.value)


def test_a_link_is_followed_unless_refused(tmp_path: Path) -> None:
    at = _link(tmp_path / "x.toml")
    assert read_small_file(at, limit=100) == b"[models]\n"
    (tmp_path / "loop").symlink_to("loop")
    with pytest.raises(OSError) as info:  # a loop is the kernel's own ELOOP, not "a link"
        read_small_file(tmp_path / "loop", limit=100)
    assert info.value.errno == errno.ELOOP


@settings(max_examples=examples(60), deadline=None)
@given(data=st.binary(max_size=3000), limit=st.integers(min_value=0, max_value=3000))
def test_a_file_is_read_whole_up_to_its_limit_and_refused_past_it(
    tmp_path_factory: pytest.TempPathFactory, data: bytes, limit: int
) -> None:
    path = tmp_path_factory.mktemp("r") / "f"
    path.write_bytes(data)
    if len(data) <= limit:
        assert read_small_file(path, limit=limit, follow_links=False) == data
        return
    with pytest.raises(OSError) as info:
        read_small_file(path, limit=limit)
    assert info.value.errno == errno.EFBIG and info.value.filename == str(path)
    assert "such a file may have" in str(info.value)


def test_a_device_is_never_read(tmp_path: Path) -> None:
    with pytest.raises(OSError, match="it is a device, not a regular file"):
        read_small_file("/dev/zero", limit=10)


def test_a_file_that_grows_past_the_limit_is_read_one_byte_past_it_then_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """fstat says 10 bytes, the file holds a MiB (it grew, or /proc says 0): never read past
    limit + 1."""
    path = tmp_path / "f"
    path.write_bytes(b"x" * (1 << 20))
    real_fstat, asked = os.fstat, []

    def small_fstat(fd: int) -> os.stat_result:
        found = real_fstat(fd)
        if not stat.S_ISREG(found.st_mode):
            return found
        return os.stat_result((*found[:6], 10, *found[7:]))

    real_read = os.read

    def counted(fd: int, n: int) -> bytes:
        asked.append(n)
        return real_read(fd, n)

    monkeypatch.setattr(os, "fstat", small_fstat)
    monkeypatch.setattr(os, "read", counted)
    with pytest.raises(OSError) as info:
        read_small_file(path, limit=1000)
    assert info.value.errno == errno.EFBIG
    assert sum(asked) <= 1001


# --- through the commands: each refusal is a short error naming the file and its exit code --------


@pytest.mark.parametrize("kind", REFUSED)
def test_a_catalog_lock_that_is_not_a_file_is_exit_2_naming_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    """A lock mdl wrote is a file: a link (a pull request can commit one to any file of the machine
    that reads it), a FIFO, a socket or a folder at its name is refused at once, named."""
    use_catalog(tmp_path, monkeypatch, '[models.tiny]\nrepo = "org/tiny"\n')
    make, _, why = REFUSED[kind]
    lock = make(tmp_path / "catalog.lock")
    result = mdl("list")
    assert result.exit_code == ExitCode.USAGE, result.output
    assert f"{lock}: cannot read the lock: {why}" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("kind", ["fifo", "folder", "socket"])
def test_a_catalog_that_is_not_a_file_is_exit_2_naming_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    make = REFUSED[kind][0]
    catalog = make(tmp_path / "c.toml")
    use_catalog(tmp_path, monkeypatch, None)
    result = mdl("list", "--catalog", str(catalog))
    assert result.exit_code == ExitCode.USAGE, result.output
    assert str(catalog) in result.stderr and "Traceback" not in result.stderr


def test_writing_the_lock_replaces_a_link_never_writing_through_it(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    target.write_text("[default]\naws_access_key_id = AKIA\n")
    (tmp_path / "catalog.lock").symlink_to(target)
    assert write_lock(tmp_path / "catalog.lock", Lock())
    assert not (tmp_path / "catalog.lock").is_symlink()
    assert read_lock(tmp_path / "catalog.lock") == Lock()
    assert target.read_text() == "[default]\naws_access_key_id = AKIA\n"
