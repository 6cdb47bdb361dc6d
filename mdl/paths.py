"""Validate untrusted names (relative paths from catalogs, Hub listings and URLs; hf:// URIs;
digests) before use; read untrusted small files and streams, bounded (``read_small_file``,
``read_bounded``: the one way mdl reads bytes from outside itself whole); and walk to a folder one
name at a time (``open_dir``: the one descriptor walk, under a root mdl owns or in a shared folder).
"""

# (annotations here are evaluated, not postponed: typing compiles each string annotation of a
# NamedTuple's fields at every start)
import contextlib
import errno
import ipaddress
import os
import re
import stat as st
import unicodedata
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO, NamedTuple
from urllib.parse import unquote, urlsplit

from mdl.errors import RegistryReplyError, UnsafePathError, UsageError
from mdl.redact import printable

# A digest as mdl writes it, lowercase hex; use fullmatch (Python's '$' also matches before a final
# newline).
SHA256_HEX = re.compile("[0-9a-f]{64}")
GIT_OID_HEX = re.compile("[0-9a-f]{40}")  # a commit, or a git blob's id
# "C:x" is relative to drive C's current folder and "C:/x" is absolute on Windows: either escapes
# the folder.
DRIVE_RE = re.compile(r"^[A-Za-z]:")
MAX_SHOWN = 120  # characters of a name an error shows
# a path in an error is cut to about this: its start and its end say where it is
SHOWN_PATH_CHARS = 160


def shown(value: str) -> str:  # repr escapes control characters; shortened, an error stays one line
    return repr(value[:MAX_SHOWN] + "…" if len(value) > MAX_SHOWN else value)


def shown_path(path: str | os.PathLike[str]) -> str:
    """``path`` as an error names it: whole when short, else its start and end around ``…``."""
    text = os.fspath(path)
    half = SHOWN_PATH_CHARS // 2
    return text if len(text) <= SHOWN_PATH_CHARS else f"{text[:half]}…{text[-half:]}"


def quoted(path: str | os.PathLike[str]) -> str:
    """A name or path as a message quotes it: in quotes, its control and invisible characters
    escaped (``'a\\nb'``: one line, never a forged one), cut in the middle when long."""
    return repr(shown_path(path))


def home_expanded(path: str | os.PathLike[str]) -> Path:
    """``path`` with a leading ``~`` or ``~user`` made that home, as a shell does: left as written
    where there is none (no HOME and no passwd entry, as a container's random uid; an unknown
    user), where ``Path.expanduser`` raises RuntimeError. The one expansion of a path a user
    wrote (a flag, a setting, a catalog's field)."""
    return Path(os.path.expanduser(path))  # noqa: PTH111 (never raises)


def shown_name(name: str | os.PathLike[str]) -> str:
    """A name or path as a line says it: as it is when printable, else :func:`quoted`."""
    text = os.fspath(name)
    return text if text.isprintable() else quoted(text)


def _unsafe(value: str, *, where: str, reason: str) -> UnsafePathError:
    return UnsafePathError(
        f"{where}: must be a relative path inside the folder, got {shown(value)} ({reason})"
    )


NAME_MAX = 255  # bytes of one encoded path component, on Linux and macOS
_ROOM = " less room for mdl's temporary name"
# how mdl's temp names (``temp_name``, unpack -'s stdin spool too) and prune's set-asides end
TEMP_SUFFIX, ASIDE_SUFFIX = ".mdl-tmp", ".mdl-prune"
# Characters that reorder or hide what follows (Trojan Source, CVE-2021-42574): "x\u202etxt.exe"
# shows as "xexe.txt". Overrides, embeddings and isolates, and the invisible direction marks (LRM,
# RLM, ALM) hubreplies refuses too.
_BIDI_CONTROLS = frozenset(
    "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c"
)


def temp_name(name: str) -> str:
    """The hidden, unique name mdl writes ``name`` under before renaming it into place."""
    # (os.urandom, as secrets.token_hex is: that module brings hmac and more to every start)
    return f".{name}.{os.urandom(8).hex()}{TEMP_SUFFIX}"


TEMP_NAME_OVERHEAD = len(temp_name(""))  # a dot before the name and ".<16 hex>.mdl-tmp" after it


# mdl's own state under a destination: records, locks, partials, get.json, unpack's records
STATE_FOLDER = ".mdl"
# unpack's staging folder beside the destination: DEST/.mdl-unpack-<token>/
STAGING_PREFIX = ".mdl-unpack-"
RESERVED_WHY = "a name mdl reserves for its own state (.mdl, .mdl-unpack-*, *.mdl-tmp/-prune)"


def reserved_by_mdl(part: str) -> bool:
    """Whether one path component is, once case-folded and normalised as any filesystem might, a
    name mdl keeps for its own state beside a destination: ``.mdl``, unpack's staging
    ``.mdl-unpack-*``, or a name cleanup removes (``*.mdl-tmp``, ``*.mdl-prune``)."""
    folded = _folded(part)
    cleaned = folded.endswith((TEMP_SUFFIX, ASIDE_SUFFIX))  # what cleanup removes by its name
    return cleaned or folded == STATE_FOLDER or folded.startswith(STAGING_PREFIX)


def names_git(name: str) -> bool:
    """Whether a ``/`` path has a ``.git`` component as a filesystem may read it: any case or
    Unicode form, with characters HFS+ ignores (format characters), or NTFS's trailing dots and
    spaces and its short name ``GIT~1`` (git's ``is_hfs_dotgit``/``is_ntfs_dotgit``)."""
    for part in name.split("/"):
        kept = "".join(c for c in _folded(part) if unicodedata.category(c) != "Cf")
        if kept.rstrip(". ") == ".git" or kept == "git~1":
            return True
    return False


def _folded(part: str) -> str:
    """One path component as any filesystem might compare it: NFKC then case-folded, twice (each
    can undo what the other made stable)."""
    for _ in range(2):
        part = unicodedata.normalize("NFKC", part).casefold()
    return part


def path_problem(name: str, *, room: int = TEMP_NAME_OVERHEAD) -> str | None:
    """The one rule for names mdl did not choose (relative ``/`` paths): why ``name`` is unsafe
    to write, or None. ``room``: the bytes each component leaves for mdl's temporary name (get and
    pull write one beside each file; unpack and pack none: 0)."""
    if not name:
        return "it is empty"
    if (why := character_problem(name)) is not None:
        return why
    parts = name.split("/")
    limit, why_limit = NAME_MAX - room, f"(NAME_MAX {NAME_MAX}{_ROOM if room else ''})"
    size = next((n for n in (len(part.encode("utf-8")) for part in parts) if n > limit), 0)
    refused = (
        # a separator on Windows: 'a\\..\\..\\x' climbs out there
        ("\\" in name, "it contains a backslash; use '/'"),
        (name.startswith("/"), "it is absolute"),
        (DRIVE_RE.match(name) is not None, "it starts with a drive letter"),
        (".." in parts, "it climbs out with '..'"),
        (any(part in ("", ".") for part in parts), "it has an empty or '.' component"),
        (size > 0, f"a component is {size} bytes, longer than {limit} bytes {why_limit}"),
        # a repository's own folder: a command its config names runs at the next `git status`
        # there (git refuses such a name in a tree, as fsck's hasDotgit)
        (names_git(name), "it has a '.git' component"),
    )
    return next((why for bad, why in refused if bad), None)


# why a character of a name is unsafe, by its Unicode category
_CATEGORY_WHY = {
    # JSON can carry a lone surrogate ("\\ud800"); no file system can store it
    "Cs": "it is not valid Unicode (a lone surrogate)",
    # C0, DEL and C1: NUL truncates paths in C APIs, the rest garble terminals and logs
    "Cc": "it contains a control character",
    # U+2028/U+2029 break a log line or a listing in two
    "Zl": "it contains a line or paragraph separator",
    "Zp": "it contains a line or paragraph separator",
}


def character_problem(name: str) -> str | None:
    """Why a character of ``name`` makes it unsafe (its category, or a direction change), or
    None."""
    for ch in name:
        if (why := _CATEGORY_WHY.get(unicodedata.category(ch))) is not None:
            return why
        if ch in _BIDI_CONTROLS:
            return f"it contains a direction-changing character (U+{ord(ch):04X})"
    return None


def path_clash(names: Iterable[str]) -> tuple[str, str] | None:
    """Two names that cannot both be files ('a' and 'a/b'), else None; case is not folded, as the
    Hub does not.
    """
    files = set(names)
    pairs = (
        ("/".join(name.split("/")[:depth]), name)
        for name in sorted(files)
        for depth in range(1, name.count("/") + 1)
    )
    return next((pair for pair in pairs if pair[0] in files), None)


def safe_relative_path(value: str, *, where: str) -> str:
    """Return ``value`` as a normalised relative POSIX path, or raise UnsafePathError naming
    ``where``.
    """
    # a leading "./" is harmless; nothing else odd is guessed at
    normalised = re.sub(r"\A(?:\./)+", "", value)
    if value and not normalised:
        raise _unsafe(value, where=where, reason="it names no file")  # "./" alone
    if (problem := path_problem(normalised)) is not None:
        raise _unsafe(value, where=where, reason=problem)
    return normalised


# Device names Windows opens instead of a file, in any case and with any extension ("nul.txt" is NUL
# too); the superscript digits count as well (learn.microsoft.com: "Naming Files, Paths, and
# Namespaces").
RESERVED_NAMES = frozenset(
    {"CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$"}
    | {f"{dev}{n}" for dev in ("COM", "LPT") for n in (*"123456789", "¹", "²", "³")}
)


def safe_file_name(value: str, *, where: str, room: int = TEMP_NAME_OVERHEAD) -> str:
    """``value`` if it is one plain file name, safe to create in any folder, else
    UnsafePathError.
    """
    categories = {unicodedata.category(ch) for ch in value}
    refused = (
        (not value, "it is empty"),
        (bool(categories & {"Cc", "Zl", "Zp"}), "it contains a control character"),
        # "x\u202etxt.exe" shows as "xexe.txt"
        ("Cf" in categories, "it contains an invisible formatting character"),
        # JSON can carry a lone surrogate; no file system stores it
        ("Cs" in categories, "it is not valid Unicode"),
        ("/" in value or "\\" in value, "it contains a path separator"),
        (value == ".", "it names no file"),
        (".." in value, "it contains '..'"),  # 'a..b' too, rather than reasoned about
        # 'C:x', or an NTFS stream 'a:b'
        (":" in value, "it contains ':' (a drive letter or a stream name)"),
        # Windows drops them: 'a.bin.' is 'a.bin'
        (value.endswith((".", " ")), "it ends with a dot or a space"),
        (
            value.split(".", 1)[0].rstrip(" ").upper() in RESERVED_NAMES,
            "it is a reserved device name on Windows",
        ),
        # mdl's own state beside a destination (get -d DIR keeps DIR/.mdl/, unpack stages in
        # DIR/.mdl-unpack-*): what is there is mdl's only by provenance (engine rule 14), so no
        # listing, job or archive may name it
        (reserved_by_mdl(value), RESERVED_WHY),
    )
    # Then the rule every command shares (length with room for the temp name, ...).
    reason = next((why for bad, why in refused if bad), None) or path_problem(value, room=room)
    if reason is not None:
        raise UnsafePathError(f"{where}: must be a plain file name, got {shown(value)} ({reason})")
    return value


MAX_NAME_BYTES = 1024  # a whole path: well under PATH_MAX once joined to a destination folder


def name_problem(name: str, *, room: int = TEMP_NAME_OVERHEAD) -> str | None:
    """The one rule for a ``/`` path mdl creates below a folder it was given, folders and all (an
    archive's entry, a job output's file name): why ``name`` is unsafe or unportable, or None;
    ``room`` as for :func:`path_problem`."""
    # Then path_problem, the rule pull and get apply (bidi controls, '.'/'..' parts, component
    # length with the temp name), and each component as one file name: names from an archive or a
    # job get no weaker check than a server's.
    problem = _refused_outright(name) or path_problem(name, room=room)
    if problem:
        return problem
    if ":" in name:  # a drive or an NTFS alternate data stream on Windows
        return "colon in name"
    for part in name.split("/"):
        problem = _component_problem(part, room)
        if problem:
            return problem
    if len(name.encode("utf-8")) > MAX_NAME_BYTES:
        return f"name longer than {MAX_NAME_BYTES} bytes"
    return None


def safe_folder_path(value: str, *, where: str) -> str:
    """``value`` if ``name_problem`` finds it safe to create below a folder (its folders too), else
    UnsafePathError naming ``where``."""
    if (problem := name_problem(value)) is not None:
        raise _unsafe(value, where=where, reason=problem)
    return value


def _refused_outright(name: str) -> str | None:
    """An empty name, a control character, a backslash, an absolute path or a drive letter."""
    refused = (
        (not name, "empty name"),
        (
            any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in name),
            "control character (NUL, newline, ...) in name",
        ),
        ("\\" in name, "backslash in name"),
        (name.startswith("/"), "absolute path"),
        (DRIVE_RE.match(name) is not None, "drive letter"),
    )
    return next((why for bad, why in refused if bad), None)


def _component_problem(part: str, room: int) -> str | None:
    """Why one component of a name is unportable (Windows): a trailing dot or space, a device's
    name, a character a file name cannot hold."""
    if part[-1] in ". ":
        return "component ending in a dot or space"
    if part.split(".", 1)[0].rstrip(" ").upper() in RESERVED_NAMES:
        return "reserved device name"
    try:
        safe_file_name(part, where="path component", room=room)
    except UnsafePathError as exc:
        return exc.message
    return None


def url_basename(url: str, *, where: str) -> str:
    """The URL's last path segment, percent-decoded and validated as a file name, or
    UnsafePathError.
    """
    parts = urlsplit(url)
    # Never echo the query (a signature, a token) nor the userinfo.
    visible = (
        f"{parts.scheme}://{parts.netloc.rsplit('@', 1)[-1]}{parts.path}"
        if parts.scheme
        else parts.path
    )
    segment = parts.path.rsplit("/", 1)[-1]
    if not segment:
        raise UnsafePathError(
            f"{where}: cannot take a file name from {shown(visible)}: the URL path ends without one"
        )
    name = unquote(segment)
    if "/" in name:
        # '%2F' would turn one segment into nested folders; a file name is asked for, so refuse.
        raise _unsafe(name, where=where, reason="the URL's last segment decodes to a path with '/'")
    return safe_relative_path(name, where=where)


# What model files are named: pickles and tensor formats (pack stores them as they are), and
# archives of models.
PICKLE_SUFFIXES = frozenset({".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle", ".npz"})
WEIGHT_SUFFIXES = frozenset(
    {".safetensors", ".gguf", ".onnx", ".h5", ".msgpack", ".npy", ".tflite", ".pb"}
)
MODEL_FILE_SUFFIXES = PICKLE_SUFFIXES | WEIGHT_SUFFIXES | {".zip"}


def names_model_file(url: str) -> bool:
    """Whether the URL's last path segment is named as a model file is (``x.gguf``,
    ``model.safetensors``).
    """
    return is_model_file_name(unquote(urlsplit(url).path))


def is_model_file_name(path: str) -> bool:
    """Whether a file name (or the last segment of a save path, ``vae/ae.safetensors``) is a
    model file's.
    """
    name = path.rsplit("/", 1)[-1].lower()
    return "." in name and name[name.rindex(".") :] in MODEL_FILE_SUFFIXES


def is_http_url(value: str) -> bool:
    """True for an absolute http(s) URL with a host and no whitespace or control characters."""
    if any(ch.isspace() or ord(ch) < 0x20 or ord(ch) == 0x7F for ch in value):
        return False
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError for a malformed port
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname)


# hf://[datasets/|spaces/|models/]owner/name[@revision][/path]; refs/pr/N and refs/convert/X may
# hold slashes.
_HF_URI = (
    r"^hf://(?:(?P<type>datasets|spaces|models)/)?(?P<repo>[A-Za-z0-9][\w.-]*/[\w.-]+)"
    r"(?:@(?P<rev>refs/(?:pr|convert)/[\w.-]+|[^/]+))?(?:/(?P<path>.+))?$"
)
# the repo type an hf:// URI's first word names (none: a model)
HF_URI_TYPES = {"datasets": "dataset", "spaces": "space", "models": "model", None: "model"}

# The accepted forms, in words. Never "hf://[datasets/|spaces/]…": the redaction at every sink takes
# a bracket after "://" for a URL it cannot parse (or "x@y" for userinfo) and would print REDACTED
# instead of the help.
HF_URI_FORMS = (
    "hf://owner/name, hf://owner/name@revision or hf://owner/name/path "
    "(hf://datasets/owner/name/... and hf://spaces/owner/name/... for those)"
)


# what a URL path drops or folds (RFC 3986 §5.2.4), as // may be
_DOT_SEGMENTS = frozenset({"", ".", ".."})


def revision_problem(revision: str) -> str | None:
    """Why a Hub revision cannot be asked for as itself, or None. It goes into URL paths (quoted
    whole); a segment that is empty, '.' or '..' (split at '/' or '\\', as written or after any
    number of percent-decodings, in any case: ``%2e%2E``) is folded away on the way by a client, a
    proxy or a mirror, and another revision is asked for (the default branch): refused. No git ref
    has such a segment."""
    text = revision
    for _ in range(len(revision) + 1):  # each decoding shortens it, or changes nothing
        if any(seg in _DOT_SEGMENTS for seg in re.split(r"[/\\]", text)):
            return (
                "cannot be asked for: a URL path drops a '.', '..' or empty segment"
                " (percent-encoded too), and another revision would be fetched"
            )
        decoded = unquote(text)
        if decoded == text:
            return None
        text = decoded
    return None


def check_revision(revision: str | None, *, where: str) -> None:
    """UsageError (exit 2) naming ``where`` for a revision :func:`revision_problem` refuses."""
    if revision is not None and (problem := revision_problem(revision)) is not None:
        raise UsageError(f"{where}: revision {printable(revision, limit=120)!r} {problem}")


class HfUri(NamedTuple):
    """``hf://`` parsed; ``revision`` None is the default branch, ``path`` None the whole repo."""

    given: str
    repo_type: str
    repo: str
    revision: str | None
    path: str | None


def parse_hf_uri(text: str) -> HfUri:
    """``hf://...`` -> HfUri; UsageError naming the accepted forms, or UnsafePathError for an unsafe
    path.
    """
    match = re.match(_HF_URI, text.rstrip("/"))
    if match is None:
        # one line, however it came
        raise UsageError(f"{printable(text, limit=300)}: expected {HF_URI_FORMS}")
    # hf://org/.. would ask for another repo
    if match.group("repo").rsplit("/", 1)[1] in _DOT_SEGMENTS:
        raise UsageError(
            f"{printable(text, limit=300)}: a repo name cannot be '.' or '..'; expected"
            f" {HF_URI_FORMS}"
        )
    check_revision(match.group("rev"), where=printable(text, limit=300))
    path = match.group("path") and safe_relative_path(match.group("path"), where=text)
    return HfUri(
        text, HF_URI_TYPES[match.group("type")], match.group("repo"), match.group("rev"), path
    )


# by st_mode's file type
_KINDS = {st.S_IFDIR: "a folder", st.S_IFIFO: "a FIFO", st.S_IFSOCK: "a socket"}
_KINDS |= dict.fromkeys((st.S_IFCHR, st.S_IFBLK), "a device")


def kind_of(found: os.stat_result) -> str | None:
    """What an ``lstat`` shows where a file should be ("a folder", "a FIFO", ...); None for a
    regular file or a link (an entry of its own, replaced where a file goes, never followed)."""
    kind = st.S_IFMT(found.st_mode)
    return None if kind in (st.S_IFREG, st.S_IFLNK) else _KINDS.get(kind, "not a regular file")


# a folder another run (or machine) removed between our look and our create: look again
FRESH_TRIES = 3


def nearest_folder(path: Path) -> Path:
    """``path`` if it is a folder, else its nearest ancestor that is."""
    while not path.is_dir() and path != path.parent:
        path = path.parent
    return path


def read_bounded(handle: BinaryIO, *, limit: int) -> bytearray | None:
    """Everything a stream holds (a pipe, stdin, an object store's body) if it is at most ``limit``
    bytes, else None (after reading at most one byte more): the bound on the whole of a document mdl
    parses in memory, checked before it is parsed. Memory grows with what is read, never reserved
    for the limit up front."""
    data = bytearray()
    while len(data) <= limit:
        chunk = handle.read(min(1 << 20, limit + 1 - len(data)))
        if not chunk:
            return data
        data += chunk
    return None


@contextlib.contextmanager
def opened(
    path: str | os.PathLike[str], *, dir_fd: int | None = None, follow_links: bool = False
) -> Iterator[tuple[int, os.stat_result]]:
    """``path`` opened to read and its ``fstat``, closed on exit: the one way mdl opens a file it
    must find regular before it reads it. O_NONBLOCK: a FIFO is never waited on (the caller judges
    the ``fstat``, ``S_ISREG``, before any read); a symbolic link at its last component is refused
    (O_NOFOLLOW: ELOOP, EMLINK on the BSDs) unless ``follow_links``. An OSError as ``os.open``
    raises it."""
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
    fd = os.open(path, flags if follow_links else flags | os.O_NOFOLLOW, dir_fd=dir_fd)
    try:
        yield fd, os.fstat(fd)
    finally:
        os.close(fd)


def read_small_file(
    path: str | os.PathLike[str], *, limit: int, follow_links: bool = True
) -> bytes:
    """The bytes of a small file from outside mdl (a catalog, its lock, a signer's key or
    certificate, a netrc), never blocking and never unbounded: the one way mdl reads such a file
    whole. Opened by :func:`opened`, so a FIFO is never waited on and a device (``/dev/zero``)
    never read; ``follow_links=False``: a symbolic link at its last component is refused, for a
    file mdl writes as a file and only a link planted by someone else can be. OSError naming
    ``path``, its ``strerror`` saying why, when it is not a regular file or holds more than
    ``limit`` bytes (checked by size first, then by what is read: it may grow meanwhile; never more
    than ``limit`` + 1 bytes are read)."""
    try:
        with opened(path, follow_links=follow_links) as (fd, found):
            # a folder's errno makes it an IsADirectoryError, as open() would
            if not st.S_ISREG(found.st_mode):
                why = f"it is {kind_of(found) or 'not a regular file'}, not a regular file"
                raise OSError(
                    errno.EISDIR if st.S_ISDIR(found.st_mode) else errno.EINVAL,
                    why,
                    os.fspath(path),
                )
            chunks: list[bytes] = []
            total = 0
            while found.st_size <= limit and total <= limit:
                # as much as fstat said, and one byte more (a file that grew); never a buffer of
                # the whole limit at once
                chunk = os.read(fd, min(limit + 1 - total, max(found.st_size + 1 - total, 1 << 16)))
                if not chunk:
                    break
                chunks.append(chunk)
                total += len(chunk)
            if found.st_size > limit or total > limit:
                raise OSError(
                    errno.EFBIG,
                    f"more than the {_size_limit(limit)} such a file may have",
                    os.fspath(path),
                )
            # one read holds a regular file whole: no copy of it
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)
    except OSError as exc:
        # a socket cannot be opened (ENXIO), O_NOFOLLOW refuses a link (ELOOP; EMLINK on the BSDs)
        raise _not_a_file(path, exc, follow_links=follow_links) from None


def _not_a_file(path: str | os.PathLike[str], exc: OSError, *, follow_links: bool) -> OSError:
    """``exc`` of an open, saying what is at ``path`` when that is why (a socket, a link)."""
    if exc.errno not in (errno.ENXIO, errno.ELOOP, errno.EMLINK):
        return exc
    try:
        found = Path(path).stat(follow_symlinks=follow_links)
    except OSError:
        return exc
    if st.S_ISLNK(found.st_mode):
        why = "it is a symbolic link, which mdl does not follow for this file"
    elif (kind := kind_of(found)) is not None:
        why = f"it is {kind}, not a regular file"
    else:
        return exc
    return OSError(exc.errno, why, os.fspath(path))


def _size_limit(limit: int) -> str:
    return f"{limit >> 20} MiB" if limit >= 1 << 20 and not limit % (1 << 20) else f"{limit} bytes"


# huggingface_hub's rule for a repo id (utils/_validators.py ``validate_repo_id``), written out:
# importing it loads the HTTP stack (~0.1 s), which a readiness probe reading catalog.lock never
# needs. tests/store/test_repo_ids.py holds the two equal.
_REPO_ID = r"(?a)(\b[\w\-.]{1,96}\b/)?\b[\w\-.]{1,96}\b"


def repo_id_problem(repo: str) -> str | None:
    """Why huggingface_hub refuses ``repo`` as a repo id, or None."""
    if repo.count("/") > 1:
        return "it must be 'name' or 'namespace/name'"
    if not re.fullmatch(_REPO_ID, repo):
        return "it must use letters, digits, '-', '_' or '.', 1 to 96 of them, not ending in '-'"
    if "--" in repo or ".." in repo:
        return "it cannot hold '--' or '..'"
    return "it cannot end in '.git'" if repo.endswith(".git") else None


# ``oci://`` names: a registry, a repository in it, a tag or a manifest digest (the distribution
# spec's grammar), and the pinned source a file of such a model is recorded and locked by
# (``oci://REGISTRY/REPOSITORY@sha256:DIGEST/PATH``, as ``hf://owner/name@commit/path``).
_HOST = r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*"
_REGISTRY = rf"(?P<registry>(?:{_HOST}|\[[0-9A-Fa-f:.]+\])(?::[0-9]{{1,5}})?)"
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_REPOSITORY = rf"(?P<repository>{_COMPONENT}(?:/{_COMPONENT})*)"
_TAG = r"(?::(?P<tag>[A-Za-z0-9_][A-Za-z0-9._-]{0,127}))?"
_DIGEST = r"(?:@(?P<digest>[A-Za-z0-9_+.-]+:[A-Za-z0-9=_-]+))?"
_REFERENCE = f"oci://{_REGISTRY}/{_REPOSITORY}{_TAG}{_DIGEST}"
_SOURCE = f"oci://{_REGISTRY}/{_REPOSITORY}@sha256:(?P<hex>[0-9a-f]{{64}})/(?P<path>.+)"
MAX_REFERENCE = 4096  # characters: longer is no reference (distribution caps a name at 255)
OCI_FORM = "oci://REGISTRY/REPOSITORY:TAG or oci://REGISTRY/REPOSITORY@sha256:DIGEST"


def is_loopback(host: str) -> bool:
    """Whether ``host`` is this machine by its name or address alone (localhost, 127.x, ::1)."""
    try:
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:  # a name, not an address
        return False


class OciRef(NamedTuple):
    """An ``oci://`` reference: a registry, a repository in it, and a tag or a manifest digest."""

    registry: str  # host[:port]
    repository: str
    tag: str | None
    digest: str | None  # "sha256:<64 hex>"

    @property
    def reference(self) -> str:
        """What the manifest is asked by: the digest when pinned, else the tag (``latest``)."""
        return self.digest or self.tag or "latest"

    @property
    def given(self) -> str:
        """The reference as mdl writes it (the tag and the digest, when both are known)."""
        tag = f":{self.tag}" if self.tag else ""
        digest = f"@{self.digest}" if self.digest else ""
        return f"oci://{self.registry}/{self.repository}{tag}{digest}"

    @property
    def scheme(self) -> str:
        """https; plain http for a registry on this machine (localhost, 127.x, [::1]), as Docker
        and oras treat one."""
        host = self.registry.rpartition("]")[0].lstrip("[") or self.registry.split(":")[0]
        return "http" if is_loopback(host) else "https"

    @property
    def base(self) -> str:
        """The repository's API URL: ``{scheme}://{registry}/v2/{repository}``."""
        return f"{self.scheme}://{self.registry}/v2/{self.repository}"

    def blob_url(self, digest: str) -> str:
        return f"{self.base}/blobs/{digest}"

    def source(self, path: str) -> str:
        """A file of the model at this (pinned) manifest, as records and locks name it."""
        assert self.digest is not None, "a source names the manifest's digest"
        return f"oci://{self.registry}/{self.repository}@{self.digest}/{path}"


def parse_oci_ref(text: str, *, where: str | None = None) -> OciRef:
    """``oci://REGISTRY/REPOSITORY[:TAG][@sha256:DIGEST]``, or UsageError naming ``where``; a
    digest must be sha256 (the one hash mdl verifies)."""
    where = where or shown(text)
    found = re.fullmatch(_REFERENCE, text) if len(text) <= MAX_REFERENCE else None
    if found is None:
        raise UsageError(f"{where}: not an OCI reference", hint=f"write {OCI_FORM}")
    digest = found["digest"]
    if digest is not None:
        check_digest(digest, what=f"{where}: its digest", error=UsageError)
    return OciRef(found["registry"], found["repository"], found["tag"], digest)


def parse_oci_source(source: str) -> tuple[OciRef, str] | None:
    """A pinned source (``oci://REG/REPO@sha256:HEX/PATH``): the reference and the file's path;
    None for anything else."""
    found = re.fullmatch(_SOURCE, source) if len(source) <= MAX_REFERENCE else None
    if found is None:
        return None
    ref = OciRef(found["registry"], found["repository"], None, f"sha256:{found['hex']}")
    return ref, found["path"]


def oci_source_problem(source: str) -> str | None:
    """Why ``source`` is no pinned oci:// source of a file a model can have, or None."""
    parsed = parse_oci_source(source)
    if parsed is None:
        return "an OCI source must be oci://REGISTRY/REPOSITORY@sha256:<64 hex>/PATH"
    if (problem := path_problem(parsed[1])) is None:
        return None
    return f"unsafe path {printable(parsed[1], limit=120)!r}: {problem}"


def check_digest(
    digest: object, *, what: str, error: type[UsageError | RegistryReplyError] = RegistryReplyError
) -> str:
    """A ``sha256:<64 lowercase hex>`` digest, or ``error`` naming ``what``: another algorithm
    (sha512, blake3) is refused, as mdl checks every byte by sha256."""
    if not isinstance(digest, str):
        raise error(f"{what} is not a digest")
    algorithm, _, value = digest.partition(":")
    if algorithm != "sha256":
        raise error(
            f"{what} is {printable(digest, limit=100)!r}, not a sha256 digest; mdl verifies"
            " sha256 only, so it is refused"
        )
    if SHA256_HEX.fullmatch(value) is None:
        raise error(f"{what}: {printable(digest, limit=100)!r} is not 64 lowercase hex digits")
    return digest
