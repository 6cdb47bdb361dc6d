"""The per-model record of verified files: its data, its JSON form on disk, and reading it back."""

# (annotations here are evaluated, not postponed: typing compiles each string annotation of a
# NamedTuple's fields at every start)
import functools
import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import MISSING
from datetime import UTC, datetime
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar, get_args, get_type_hints

from mdl.errors import OutsideJSONError, UnsafePathError
from mdl.outsidejson import read_json
from mdl.paths import GIT_OID_HEX, SHA256_HEX, safe_relative_path
from mdl.redact import printable, record_text, unshown

if TYPE_CHECKING:
    # (its own module: a get, which writes no expected files, does not make its class)
    from mdl.store.expected import ExpectedFile

log = logging.getLogger("mdl.store")

RECORD_VERSION = 1
# What the record of a repo ``get`` put in the Hugging Face cache names as its catalog
# (mdl.download.getcache): no catalog file is this, so every catalog's prune keeps it whole.
ONE_OFF_CATALOG = "mdl get"
# a sha256 mdl computed passes unchanged
_SERVER_TEXT = frozenset({"source", "etag", "commit", "git_oid", "sha256", "revision"})
_Entry = TypeVar("_Entry", "FileRecord", "ExpectedFile")
_MAX_INT = 2**63 - 1
# a record's empty section: one for all, read-only (so shared safely)
_EMPTY_SECTION: Mapping[str, Any] = MappingProxyType({})


class FileRecord(NamedTuple):
    """What mdl fetched and verified for one file (no secrets: ``source`` is redacted). (A
    NamedTuple: a frozen dataclass's generated methods were compiled at every start, issue 90.)"""

    path: str
    size: int
    sha256: str
    mtime_ns: int
    source: str = ""
    git_oid: str | None = None
    etag: str | None = None
    commit: str | None = None
    fetched_at: str = ""
    # Checked against a known hash, or fetched whole in one answer (engine rule 15); False: its
    # parts are tied only by the server's validator and a resume's overlap. Records written before
    # this field were taken as verified.
    verified: bool = True
    # Found in place and taken as the file (it matched), never written by mdl: the user's copy,
    # huggingface_hub's own blob or snapshot entry. ``prune`` keeps it. Records written before this
    # field: mdl wrote their files.
    adopted: bool = False
    # The signed digests (mdl.signing.SignedFile.key) the bytes were held to, when the signature's
    # are not the sha256 above (shards, BLAKE2/3): a later pull knows the file is as signed without
    # hashing it again.
    signed: str | None = None
    xet: str | None = None  # its Xet hash (64 hex), when it was fetched or checked as a Xet file
    # ``xet`` checked here with the sha256 over the same bytes (a fetch by chunk): only then is it a
    # root for ranges and the lock's. Records written before this field (mdl <= 0.9 also copied the
    # Hub's word into plain fetches' records): not checked.
    xet_checked: bool = False
    reused: int = 0  # of its bytes, those copied from files already here (Xet chunks), not fetched
    # of its bytes, those that came over the network (None: not known, an older record)
    fetched: int | None = None
    # The branch, tag or commit a Hub file was asked at (its commit is ``commit``): offline, what
    # proves it is the file of that revision (None: not a Hub file, or an older record).
    revision: str | None = None


def adopted_when_found(entry: FileRecord | None) -> bool:
    """Whether a file found in place and matching is adopted rather than mdl's own: unless mdl's
    record says mdl wrote it (then a re-check keeps it mdl's), it was there before mdl, and stays
    adopted across re-checks."""
    return entry is None or entry.adopted


class SignatureRecord(NamedTuple):
    """A model's verified signature: its file in the model, that file's sha256, and who signed it
    (as shown).
    """

    file: str
    sha256: str
    by: str


class ModelRecord(NamedTuple):
    """What the model should be (``expected``; None in older records) and what mdl fetched and
    verified; ``catalog``: the catalog file (absolute) whose pull wrote it last (None: an older
    mdl's record, or no catalog). (A NamedTuple: a frozen dataclass's generated methods were
    compiled at every start.)"""

    name: str
    revision: str | None = None
    commit: str | None = None
    files: Mapping[str, FileRecord] = _EMPTY_SECTION
    updated_at: str = ""
    expected: "Mapping[str, ExpectedFile] | None" = None
    catalog: str | None = None
    # the model.sig its files were held to, when the catalog asks for one
    signature: SignatureRecord | None = None
    # In the Hugging Face cache, the files of other commits mdl wrote (each commit's snapshot entry
    # and blob stay on disk when a pull moves to another): by ``<commit>/<path>`` (their ``path``
    # too), so a pull back to that commit reuses them and prune frees those no model needs.
    earlier: Mapping[str, FileRecord] = _EMPTY_SECTION
    # The files (path → sha256) ``signature`` vouched for when a pull installed them all: the signed
    # version on disk, still ``installed`` when a later pull aims at a newer one upstream and does
    # not finish (None: not known).
    signed_files: dict[str, str] | None = None

    def __repr__(self) -> str:  # (as a dataclass with repr=False: no server's text in a traceback)
        return unshown(self)

    def holds(self, revision: str) -> bool:
        """Whether the record proves it is of ``revision`` (offline, nothing else does): the one
        it was pulled at, or its commit when ``revision`` is a full commit id."""
        return revision in (self.revision, self.commit)

    def entry_for(self, path: str, *, sha256: str | None, git_oid: str | None) -> FileRecord | None:
        """The record of ``path`` for the content named (sha256, else git blob id): the current one,
        or one of an earlier commit with that content (as ``path``'s); else the current one,
        whatever it holds."""
        current = self.files.get(path)
        if (sha256 is None and git_oid is None) or (
            current is not None and _holds(current, sha256, git_oid)
        ):
            return current
        return next(
            (
                entry._replace(path=path)
                for key, entry in sorted(self.earlier.items())
                if key.partition("/")[2] == path and _holds(entry, sha256, git_oid)
            ),
            current,
        )

    def to_json(self) -> dict[str, Any]:
        """The record as stored on disk: server-provided text passes ``record_text`` (printable,
        no secrets).
        """
        signed = self.signed_files
        optional = {
            "expected": None if self.expected is None else _files_json(self.expected, drop="path"),
            "catalog": self.catalog,
            "signature": None if self.signature is None else self.signature._asdict(),
            "earlier": _files_json(self.earlier) if self.earlier else None,
            "signed_files": None if signed is None else dict(sorted(signed.items())),
        }
        return {
            "version": RECORD_VERSION,
            "name": self.name,
            "revision": record_text(self.revision),
            "commit": record_text(self.commit),
            "updated_at": self.updated_at,
            "files": _files_json(self.files),
            **{key: value for key, value in optional.items() if value is not None},
        }


def _holds(entry: FileRecord, sha256: str | None, git_oid: str | None) -> bool:
    return entry.sha256 == sha256 if sha256 is not None else entry.git_oid == git_oid


def earlier_key(entry: FileRecord) -> str | None:
    """Where ``ModelRecord.earlier`` keeps ``entry`` once another commit's file replaces it:
    ``<commit>/<path>``.
    """
    if entry.commit and GIT_OID_HEX.fullmatch(entry.commit):
        return f"{entry.commit}/{entry.path}"
    return None


def _files_json(
    entries: "Mapping[str, FileRecord | ExpectedFile]", *, drop: str = ""
) -> dict[str, Any]:
    """The entries by path; their source URL, ETag and commit came from servers or the catalog.
    (Their fields are text, numbers and flags: read as they are, not deep-copied by ``asdict``; a
    record is written again every second of a pull, each entry's text passing ``record_text``.)"""
    return {
        path: {
            k: _record_text(getattr(one, k)) if k in _SERVER_TEXT else getattr(one, k)
            for k in type(one)._fields
            if k != drop
        }
        for path, one in sorted(entries.items())
    }


# the sections of entries, and what their JSON leaves out (an expected file's key is its path)
_SECTIONS = {"files": "", "expected": "path", "earlier": ""}


def unchanged(record: ModelRecord, before: ModelRecord) -> ModelRecord:
    """The entries of ``record`` that are ``before``'s very objects and whose text its JSON holds as
    it is (``record_text`` keeps it): written, they read back as themselves."""

    def same(
        new: Mapping[str, _Entry] | None, old: Mapping[str, _Entry] | None
    ) -> dict[str, _Entry]:
        old = old or {}
        return {
            path: one
            for path, one in (new or {}).items()
            if old.get(path) is one and _as_written(one)
        }

    return ModelRecord(
        name=record.name,
        files=same(record.files, before.files),
        expected=same(record.expected, before.expected),
        earlier=same(record.earlier, before.earlier),
    )


def _as_written(one: "FileRecord | ExpectedFile") -> bool:
    return all(
        _record_text(text) == text
        for key in _SERVER_TEXT
        if isinstance(text := getattr(one, key, None), str)
    )


def record_json(record: ModelRecord, doc: dict[str, Any]) -> str:
    """``json.dumps(doc, indent=1)`` of ``doc = record.to_json()``, each entry's text made once (a
    pull writes its record every second, its entries mostly unchanged since; the standard encoder
    with an indent runs in Python, value by value)."""
    lines = []
    for key, value in doc.items():
        if (drop := _SECTIONS.get(key)) is None or not isinstance(value, dict):
            text = json.dumps(value, indent=1).replace("\n", "\n ")
        else:
            entries: Mapping[str, FileRecord | ExpectedFile] = getattr(record, key)
            text = _section_json([(path, entries[path]) for path in value], drop=drop)
        lines.append(f" {json.dumps(key)}: {text}")
    return "{\n" + ",\n".join(lines) + "\n}" if lines else "{}"


def _section_json(entries: "list[tuple[str, FileRecord | ExpectedFile]]", *, drop: str) -> str:
    if not entries:
        return "{}"
    body = ",\n".join(f"  {json.dumps(path)}: {_entry_json(one, drop)}" for path, one in entries)
    return "{\n" + body + "\n }"


# (typed: NamedTuples of equal fields compare equal whatever their class)
@functools.lru_cache(maxsize=1 << 14, typed=True)
def _entry_json(one: "FileRecord | ExpectedFile", drop: str) -> str:
    """One entry as ``json.dumps(..., indent=1)`` writes it two levels down (equal entries, equal
    text)."""
    return json.dumps(_files_json({"": one}, drop=drop)[""], indent=1).replace("\n", "\n  ")


# The same few texts (one commit, one source prefix per file) come again in every write of a record:
# ``record_text`` is a function of its text alone.
_record_text = functools.lru_cache(maxsize=4096)(record_text)


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# bytes: a record lists every file of a model; more than this is not one mdl wrote
RECORD_MAX = 256 << 20


def parse_record(
    model: str, path: Path, *, read: Callable[[Path], bytes] = Path.read_bytes
) -> ModelRecord | None:
    """The record stored at ``path``, or None if absent or unreadable (then files are re-checked,
    never trusted). Anything may have edited it: every field is checked (a ``"size": "2"`` must not
    reach ``list``'s arithmetic), and one bad field makes the whole record unreadable rather than
    half-trusted."""
    try:
        return record_of(model, read_json(read(path), source=str(path), limit=RECORD_MAX))
    except FileNotFoundError:
        return None
    # RecordFieldError is a ValueError
    except (OSError, ValueError, OutsideJSONError) as exc:
        log.warning("ignoring unreadable record %s: %s", path, exc)
        return None


def record_of(model: str, raw: object, *, known: ModelRecord | None = None) -> ModelRecord:
    """The record the JSON document ``raw`` holds, every field checked (RecordFieldError, a
    ValueError, names the first bad one). ``known``: entries (by section and path) that ``raw``
    holds as ``to_json`` wrote them from themselves, entries read from a record before (a record
    just written is read back without checking again each entry it kept)."""
    if not isinstance(raw, dict):
        raise RecordFieldError(f"expected an object, got {type(raw).__name__}")
    if raw.get("version", RECORD_VERSION) != RECORD_VERSION:
        raise RecordFieldError(
            f"version: expected {RECORD_VERSION}, got {_shown(raw.get('version'))}"
        )
    kept = known or ModelRecord(name=model)
    return ModelRecord(
        files=_section(raw, "files", FileRecord, known=kept.files) or {},
        expected=_expected(raw, kept),
        name=model,
        revision=_optional_text(raw, "revision", "revision"),
        commit=_optional_text(raw, "commit", "commit"),
        updated_at=_optional_text(raw, "updated_at", "updated_at") or "",
        catalog=_optional_text(raw, "catalog", "catalog"),
        signature=_signature(raw),
        earlier=_section(raw, "earlier", FileRecord, optional=True, known=kept.earlier) or {},
        signed_files=_signed_files(raw),
    )


def _expected(raw: dict[str, Any], kept: ModelRecord) -> "dict[str, ExpectedFile] | None":
    """The ``expected`` section (None when the record has none, as a get's)."""
    if raw.get("expected") is None:
        return None
    from mdl.store.expected import ExpectedFile

    return _section(raw, "expected", ExpectedFile, optional=True, known=kept.expected)


class RecordFieldError(ValueError):
    """A record field of the wrong type or form (names the key path)."""


def _section(
    raw: dict[str, Any],
    name: str,
    cls: type[_Entry],
    *,
    optional: bool = False,
    known: Mapping[str, _Entry] | None = None,
) -> dict[str, _Entry] | None:
    if (value := raw.get(name, None if optional else {})) is None and optional:
        return None
    if not isinstance(value, dict):
        raise RecordFieldError(f"{name}: expected an object, got {type(value).__name__}")
    known = known or {}
    return {
        path: kept if (kept := known.get(path)) is not None else _entry(cls, name, path, one)
        for path, one in value.items()
    }


def _entry(cls: type[_Entry], section: str, path: str, value: object) -> _Entry:
    """One entry of ``files`` or ``expected``: its key a safe relative path, each field of the
    type it declares.
    """
    where = f"{section}.{path}"
    _safe_key(path, where)
    if not isinstance(value, dict):
        raise RecordFieldError(f"{where}: expected an object, got {type(value).__name__}")
    if cls is FileRecord and value.get("path", path) != path:
        raise RecordFieldError(f"{where}.path: {_shown(value.get('path'))} differs from its key")
    given = {
        key: _field(key, kind, default, value, f"{where}.{key}")
        for key, kind, default in _kinds(cls)
    }
    return cls(path, **given)


_KINDS: dict[type, tuple[tuple[str, Any, Any], ...]] = {}  # each entry class's (on first use)


def _kinds(cls: type[Any]) -> tuple[tuple[str, Any, Any], ...]:
    """Each field of the entry class after ``path``: its name, its type, its default (MISSING:
    none)."""
    if cls not in _KINDS:
        hints = get_type_hints(cls)
        defaults = cls._field_defaults
        _KINDS[cls] = tuple((k, hints[k], defaults.get(k, MISSING)) for k in cls._fields[1:])
    return _KINDS[cls]


def _field(key: str, kind: Any, default: Any, value: dict[str, Any], where: str) -> Any:
    """One field of an entry, of the type it declares."""
    got = value.get(key)
    if got is None and type(None) in get_args(kind):
        return None
    if kind is bool:
        return _flag(got, where) if got is not None else default
    # a field newer than the record: its default
    if key not in value and default is not MISSING:
        return default
    if int in (kind, *get_args(kind)):
        return _whole_number(got, where)
    if key in ("sha256", "xet"):
        return _hex64(got, where)
    return _optional_text(value, key, where) or ""


def _safe_key(path: str, where: str) -> None:
    """A key naming a file: a safe relative path."""
    try:
        safe_relative_path(path, where=where)
    except UnsafePathError as exc:
        raise RecordFieldError(exc.message) from None


def _flag(value: object, where: str) -> bool:
    if not isinstance(value, bool):
        raise RecordFieldError(f"{where}: expected true or false, got {_shown(value)}")
    return value


def _whole_number(value: object, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= _MAX_INT:
        raise RecordFieldError(f"{where}: expected a whole number, got {_shown(value)}")
    return value


def _hex64(value: object, where: str) -> str:
    """A sha256 (or Xet hash) as records keep it: 64 lowercase hex digits."""
    if not isinstance(value, str) or not SHA256_HEX.fullmatch(value):
        raise RecordFieldError(f"{where}: expected 64 lowercase hex digits, got {_shown(value)}")
    return value


def _signature(raw: dict[str, Any]) -> SignatureRecord | None:
    if (value := raw.get("signature")) is None:
        return None
    if not isinstance(value, dict) or set(value) != {"file", "sha256", "by"}:
        raise RecordFieldError("signature: expected an object with file, sha256 and by")
    texts = {
        key: _optional_text(value, key, f"signature.{key}") or ""
        for key in ("file", "sha256", "by")
    }
    _hex64(texts["sha256"], "signature.sha256")
    return SignatureRecord(**texts)


def _signed_files(raw: dict[str, Any]) -> dict[str, str] | None:
    if (value := raw.get("signed_files")) is None:
        return None
    if not isinstance(value, dict):
        raise RecordFieldError(f"signed_files: expected an object, got {type(value).__name__}")
    for path, sha256 in value.items():
        _safe_key(path, f"signed_files.{path}")
        _hex64(sha256, f"signed_files.{path}")
    return dict(value)


def _optional_text(rec: dict[str, Any], key: str, where: str) -> str | None:
    if (value := rec.get(key)) is not None and not isinstance(value, str):
        raise RecordFieldError(f"{where}: expected text, got {_shown(value)}")
    return value


def _shown(value: object) -> str:
    return printable(repr(value)[:80])
