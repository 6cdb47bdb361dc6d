"""Every name mdl writes in a mirror (a bucket, a shared folder), each kind with its writer (the
kind's ``uri``, made from typed fields) and its parser (``parse``: a name → its kind, or None for
anything that is not exactly such a name). No other module spells one: leases, parts, prune and
the stores ask here. docs/mirrors.md's table of them is held to ``KINDS`` by
tests/buckets/test_names.py.

mdl's own objects lie under its namespace ``<folder>/.mdl/``, ``<folder>`` being the folder of the
mirror template's fixed part (``folder_of``): no model file can be named there (``namespace``).
A ``folder`` field below is such a folder, ending with ``/``; a ``path`` is an object's path below
it."""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass

from mdl.buckets._parts import fill_part
from mdl.errors import UsageError

NAMESPACE = ".mdl/"
_SPACE = "/" + NAMESPACE  # where a name enters mdl's namespace (the first such segment)
LEASES, PARTS, MARKS, PROBE = "leases/", "parts/", "marks/", "probe-"
CLOCK = ".mdl-clock"  # a shared folder's clock, in mdl's namespace
OLD_LEASE = ".mdl-lease"  # mdl 0.3's lease, beside its object (0.4 on: ``.mdl/leases/…``)
GENERATION_DIGITS = 30  # a longer name of digits is no generation
PART_DIGITS = 8
TOKEN = re.compile(r"[0-9a-f]{32}")  # a lease generation's token: where its holder's parts go
_PROBE_TOKEN = re.compile(r"[0-9a-f]{12}")  # a run's (``PullSession``'s)
_PART_SET = re.compile(
    r"(?s)(.+)/([0-9a-f]{40}|[0-9a-f]{64})-([1-9][0-9]*)/(?:([0-9a-f]{32})/)?([0-9]+)"
)
_TEMP = re.compile(r"(?s)\.(.+)\.([0-9a-f]{16})\.mdl-tmp")


def folder_of(template: str) -> str:
    """The folder of a mirror template's fixed part (its text before the first placeholder), up to
    its last ``/``: where mdl's namespace lies (``<it>.mdl/``)."""
    return template.partition("{")[0].rpartition("/")[0] + "/"


def namespace(template: str) -> str | None:
    """mdl's namespace in a mirror: ``<the folder of the template's fixed part>/.mdl/``; None when
    a filled name could be ``.mdl`` there (the first thing after that folder is ``{path}`` or
    ``{revision}``, or literal text ``.``, ``.m``…): such a mirror is not filled. ``{model}``
    (catalog names never start with '.'), ``{repo}`` (nor Hub ids), ``{sha256}`` and ``{commit}``
    (hex) cannot."""
    folder = folder_of(template)
    tail, _, after = template[len(folder) :].partition("{")
    if tail and NAMESPACE.rstrip("/").startswith(tail):
        return None
    if not tail and not f"{{{after}".startswith(("{model}", "{repo}", "{sha256}", "{commit}")):
        return None
    return f"{folder}{NAMESPACE}"


def in_namespace(uri: str) -> bool:
    """Whether ``uri`` lies in mdl's namespace of a mirror (a lease, a part, a probe, a mark)."""
    return _SPACE in uri


def own_entry(name: str) -> bool:
    """Whether an entry of a shared folder is mdl's own, never an object: its namespace
    (``.mdl``) or a ``.mdl-…`` file (temp files aside: ``Temp``)."""
    return name == NAMESPACE.rstrip("/") or name.startswith(".mdl-")


def _own(uri: str, below: str) -> tuple[str, str] | None:
    """(the folder, the rest) of a name under ``<folder>/.mdl/<below>``; None: not one."""
    folder, found, rest = uri.partition(_SPACE)
    if not found or not rest.startswith(below) or len(rest) == len(below):
        return None
    return folder + "/", rest[len(below) :]


def _number(text: str, digits: int, width: int = 1) -> int | None:
    """``text`` as the number mdl writes (``width`` digits at least, no other leading zero)."""
    if not (text.isascii() and text.isdigit() and len(text) <= digits):
        return None
    number = int(text)
    return number if number > 0 and text == f"{number:0{width}d}" else None


def generation_number(name: str) -> int | None:
    """A lease generation's number from its last segment (None: not a generation's)."""
    return _number(name, GENERATION_DIGITS)


def part_number(name: str) -> int | None:
    """A part's number from its last segment (None: not a part's)."""
    return _number(name, PART_DIGITS, 5)


# --- prefixes: the kinds below are made of them ------------------------------------------------


def within(folder: str, what: str) -> str:
    """Where every name of one kind lies in ``folder``'s namespace (``what``: ``LEASES``,
    ``PARTS``, ``MARKS``)."""
    return f"{folder}{NAMESPACE}{what}"


def lease_prefix(root: str, object_uri: str) -> str:
    """Where the generations of ``object_uri``'s lease live (``root``: its mirror's namespace)."""
    folder = root.removesuffix(NAMESPACE)
    if not object_uri.startswith(folder):
        raise ValueError(f"{object_uri!r} is not under {folder!r}")
    return f"{root}{LEASES}{object_uri[len(folder) :]}/"


def generation(prefix: str, number: int) -> str:
    """Generation ``number`` of the lease whose generations live under ``prefix``."""
    return f"{prefix}{number}"


def parts_prefix(root: str, object_uri: str) -> str:
    """Where the parts a fill publishes of ``object_uri`` live (``root``: its mirror's namespace);
    one set per version and part size below it."""
    return lease_prefix(root, object_uri).replace(f"{root}{LEASES}", f"{root}{PARTS}", 1)


def part_set(root: str, object_uri: str, *, pin: str, size: int) -> tuple[str, int]:
    """The prefix of one version's parts (``pin``: its hash; ``size``: the file's) and the bytes
    of each but the last: ``<parts_prefix>/<pin>-<part size>/``; each holder's below it, under its
    generation's token (``<token>/00001``…)."""
    part = fill_part(size)
    return f"{parts_prefix(root, object_uri)}{pin}-{part}/", part


def holder_prefix(prefix: str, token: str) -> str:
    """The parts of a set (``prefix``) the holder of the generation ``token`` publishes."""
    return f"{prefix}{token}/"


def part_uri(prefix: str, number: int) -> str:
    """Part ``number`` (1-based) under a holder's (or, before 0.7, a set's) ``prefix``."""
    return f"{prefix}{number:05d}"


def mark_uri(uri: str, *, root: str) -> str:
    """Where a store without metadata keeps the mark of ``uri``, an object of the mirror whose
    fixed part is ``root``: ``<root's folder>/.mdl/marks/<the object's path below it>``."""
    folder = folder_of(root)
    if not uri.startswith(folder):
        raise UsageError(f"{uri} is not in the mirror {root}")
    return Mark(folder, uri[len(folder) :]).uri


def object_of(lease: str) -> str:
    """The mirror object a name under a lease's folder is for (its last segment dropped)."""
    folder, _, rest = lease.partition(f"{_SPACE}{LEASES}")
    return f"{folder}/{rest.rpartition('/')[0]}"


def own_folder(uri: str) -> str | None:
    """The mirror folder of a name in mdl's namespace (None: not in one)."""
    folder, found, _ = uri.partition(_SPACE)
    return folder + "/" if found else None


def emptied_up_to(uri: str) -> str | None:
    """Up to which folder a removed part of a fill (or its mark) leaves its emptied folders to be
    removed: ``<folder>.mdl/parts/`` (``.mdl/marks/``); None: neither."""
    mark = Mark.parse(uri)
    if mark is not None and Part.parse(mark.object) is not None:
        return Mark(mark.folder, "").uri
    part = Part.parse(uri)
    return None if part is None else f"{part.folder}{NAMESPACE}{PARTS}"


# --- the kinds -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Generation:
    """A lease generation: ``<folder>.mdl/leases/<path>/<number>`` (the highest is the lease)."""

    folder: str
    path: str
    number: int

    @property
    def uri(self) -> str:
        return generation(f"{self.folder}{NAMESPACE}{LEASES}{self.path}/", self.number)

    @classmethod
    def parse(cls, uri: str) -> Generation | None:
        own = _own(uri, LEASES)
        path, _, last = own[1].rpartition("/") if own else ("", "", "")
        number = generation_number(last)
        return cls(own[0], path, number) if own and path and number else None


@dataclass(frozen=True)
class OldLease:
    """mdl 0.3's lease of ``object``: ``<object>.mdl-lease`` beside it (recognised, never
    written)."""

    object: str

    @property
    def uri(self) -> str:
        return self.object + OLD_LEASE

    @classmethod
    def parse(cls, uri: str) -> OldLease | None:
        thing = uri.removesuffix(OLD_LEASE)
        if thing == uri or in_namespace(uri) or not thing.rpartition("/")[2]:
            return None
        return cls(thing)


@dataclass(frozen=True)
class Part:
    """A part of a fill: ``<folder>.mdl/parts/<path>/<pin>-<size>/<token>/<number>``, ``pin`` the
    file's SHA-256 (else its git blob id), ``size`` each part's bytes, ``token`` its holder's
    generation's (None: an mdl before 0.7's), ``number`` five digits at least."""

    folder: str
    path: str
    pin: str
    size: int
    token: str | None
    number: int

    @property
    def uri(self) -> str:
        prefix = f"{self.folder}{NAMESPACE}{PARTS}{self.path}/{self.pin}-{self.size}/"
        return part_uri(holder_prefix(prefix, self.token) if self.token else prefix, self.number)

    @property
    def object(self) -> str:
        return self.folder + self.path

    @classmethod
    def parse(cls, uri: str) -> Part | None:
        own = _own(uri, PARTS)
        found = _PART_SET.fullmatch(own[1]) if own else None
        number = part_number(found[5]) if found else None
        if own is None or found is None or number is None:
            return None
        return cls(own[0], found[1], found[2], int(found[3]), found[4], number)


@dataclass(frozen=True)
class Probe:
    """A run's scratch object, written and removed by its once-per-run probe of conditional
    writes: ``<folder>.mdl/probe-<the run's token, 12 hex>``."""

    folder: str
    token: str

    @property
    def uri(self) -> str:
        return f"{self.folder}{NAMESPACE}{PROBE}{self.token}"

    @classmethod
    def parse(cls, uri: str) -> Probe | None:
        own = _own(uri, PROBE)
        return cls(*own) if own and _PROBE_TOKEN.fullmatch(own[1]) else None


@dataclass(frozen=True)
class Clock:
    """A shared folder's clock: ``<space>.mdl-clock``, touched and read for its mtime; ``space``
    a folder in mdl's namespace (``of``: the one of any folder)."""

    space: str

    @classmethod
    def of(cls, folder: str) -> Clock:
        """The clock of ``folder`` (ending with ``/``): its own if in mdl's namespace, else in
        ``<folder>.mdl/``."""
        return cls(folder if in_namespace(folder) else folder + NAMESPACE)

    @property
    def uri(self) -> str:
        return self.space + CLOCK

    @classmethod
    def parse(cls, uri: str) -> Clock | None:
        space = uri.removesuffix(CLOCK)
        return cls(space) if space != uri and space.endswith("/") and in_namespace(space) else None


@dataclass(frozen=True)
class Mark:
    """mdl's mark of the object ``<folder><path>`` where the store keeps no metadata (a shared
    folder): ``<folder>.mdl/marks/<path>``."""

    folder: str
    path: str

    @property
    def uri(self) -> str:
        return f"{self.folder}{NAMESPACE}{MARKS}{self.path}"

    @property
    def object(self) -> str:
        return self.folder + self.path

    @classmethod
    def parse(cls, uri: str) -> Mark | None:
        own = _own(uri, MARKS)
        return cls(*own) if own and not own[1].endswith("/") else None


@dataclass(frozen=True)
class Manifest:
    """A model's manifest, written by ``publish``: ``<folder>.mdl/<model>.json``."""

    folder: str
    model: str

    @property
    def uri(self) -> str:
        return f"{self.folder}{NAMESPACE}{self.model}.json"

    @classmethod
    def parse(cls, uri: str) -> Manifest | None:
        own = _own(uri, "")
        model = own[1].removesuffix(".json") if own else ""
        if own is None or not model or model == own[1] or "/" in model or model[0] == ".":
            return None
        return cls(own[0], model)


@dataclass(frozen=True)
class Temp:
    """A shared folder's write under way, beside its target ``beside``:
    ``.<its name>.<16 hex>.mdl-tmp``, linked or renamed into place (one a killed write left is an
    abandoned upload)."""

    beside: str
    nonce: str

    @classmethod
    def fresh(cls, beside: str) -> Temp:
        return cls(beside, secrets.token_hex(8))

    @property
    def uri(self) -> str:
        head, sep, name = self.beside.rpartition("/")
        return f"{head}{sep}.{name}.{self.nonce}.mdl-tmp"

    @classmethod
    def parse(cls, uri: str) -> Temp | None:
        head, sep, name = uri.rpartition("/")
        found = _TEMP.fullmatch(name)
        return cls(f"{head}{sep}{found[1]}", found[2]) if found else None


Name = Generation | OldLease | Part | Probe | Clock | Mark | Manifest | Temp
# the parser tries them in this order: a temp file or a clock may lie in any folder of the
# namespace, and the rest cannot be taken for one another
KINDS: tuple[type[Name], ...] = (Temp, Clock, Generation, Part, Probe, Mark, Manifest, OldLease)


def parse(uri: str) -> Name | None:
    """What ``uri`` is among the names mdl writes in a mirror; None: none of them."""
    for kind in KINDS:
        if (found := kind.parse(uri)) is not None:
            return found
    return None
