"""Every name mdl writes in a mirror (a bucket, a shared folder), each kind with its constructor
(its fields, or ``of`` from what its callers hold: a mirror's namespace and an object), its writer
(the kind's ``uri``, made from its typed fields) and its parser (``parse``: a name → its kind, or
None for anything that is not exactly such a name). No other module spells one: leases, parts,
prune and the stores ask here. docs/mirrors.md's table of them is held to ``KINDS`` by
tests/buckets/test_names.py.

mdl's own objects lie under its namespace ``<folder>/.mdl/``, ``<folder>`` being the folder of the
mirror template's fixed part (``folder_of``): no model file can be named there (``namespace``).
A ``folder`` field below is such a folder, ending with ``/``; a ``path`` is an object's path below
it."""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, fields, replace
from typing import ClassVar, Self

from mdl.errors import UsageError
from mdl.partsize import part_size

NAMESPACE = ".mdl/"
_SPACE = "/" + NAMESPACE  # where a name enters mdl's namespace (the first such segment)
LEASES, PARTS, MARKS, CLAIMS = "leases/", "parts/", "marks/", "claims/"
TOKEN = re.compile(r"[0-9a-f]{32}")  # a lease generation's token: where its holder's parts go
_FOLDER = r"(?P<folder>(?:(?!/\.mdl/).)*/)\.mdl/"  # a mirror's folder, then its namespace


def folder_of(template: str) -> str:
    """The folder of a mirror template's fixed part (its text before the first placeholder), up to
    its last ``/``: where mdl's namespace lies (``<it>.mdl/``)."""
    return template.partition("{")[0].rpartition("/")[0] + "/"


def namespace(template: str) -> str | None:
    """mdl's namespace in a mirror: ``<the folder of the template's fixed part>/.mdl/``; None when
    a filled name could be ``.mdl`` there (the first thing after that folder is ``{path}`` or
    ``{revision}``, or literal text ``.``, ``.m``…): such a mirror is not filled. ``{model}``
    (catalog names never start with '.'), ``{repo}`` (nor Hub ids), ``{sha256}`` and ``{commit}``
    (hex) cannot; nor when that folder is in a namespace (a ``.mdl`` folder of its own)."""
    folder = folder_of(template)
    tail, _, after = template[len(folder) :].partition("{")
    if (tail and NAMESPACE.rstrip("/").startswith(tail)) or in_namespace(folder):
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


def within(folder: str, what: str) -> str:
    """Where every name of one kind lies in ``folder``'s namespace (``what``: ``LEASES``,
    ``PARTS``, ``MARKS``)."""
    return f"{folder}{NAMESPACE}{what}"


def _below(root: str, object_uri: str) -> tuple[str, str]:
    """The folder and path of ``object_uri``, an object of the mirror whose namespace is ``root``
    (``<folder>.mdl/``): where mdl keeps its leases and parts (``<root><what><path>/``)."""
    folder = root.removesuffix(NAMESPACE)
    if not object_uri.startswith(folder):
        raise ValueError(f"{object_uri!r} is not under {folder!r}")
    return folder, object_uri[len(folder) :]


# a lease's generation numbers run from 1 to this, on every machine alike: a name past it (30
# nines) is no generation, and the last one is taken over in place (``mdl.buckets.lease``)
GENERATIONS = 99


def object_of(lease: str) -> str:
    """The mirror object a name under a lease's folder is for (its last segment dropped)."""
    folder, _, rest = lease.partition(f"{_SPACE}{LEASES}")
    return f"{folder}/{rest.rpartition('/')[0]}"


def emptied_up_to(uri: str) -> str | None:
    """Up to which folder a removed part of a fill (or its mark), or a removed claim (or the clock
    of its folder), leaves its emptied folders to be removed: ``<folder>.mdl/parts/``
    (``.mdl/marks/``, ``.mdl/claims/``); None: none of them."""
    mark = Mark.parse(uri)
    if mark is not None and Part.parse(mark.object) is not None:
        return within(mark.folder, MARKS)
    clock = Clock.parse(uri)
    claim = Claim.parse(uri if clock is None else f"{clock.space}1")
    if claim is not None:
        return within(claim.folder, CLAIMS)
    part = Part.parse(uri)
    return None if part is None else within(part.folder, PARTS)


# --- the kinds: each one's writer is its ``FORMAT`` filled with its fields, its parser the
# ``PATTERN`` that reads them back, and only a name the writer makes again is one -------------


class _Kind:
    FORMAT: ClassVar[str]
    PATTERN: ClassVar[re.Pattern[str]]

    @property
    def uri(self) -> str:
        return self.FORMAT.format(**vars(self))

    @classmethod
    def parse(cls, uri: str) -> Self | None:
        found = cls.PATTERN.fullmatch(uri)
        if found is None:
            return None
        ints = {f.name for f in fields(cls) if f.type == "int"}  # type: ignore[arg-type]
        said = {k: int(v) if k in ints else v for k, v in found.groupdict().items()}
        name = cls(**said)
        return name if name.uri == uri and 0 not in said.values() else None


@dataclass(frozen=True)
class Generation(_Kind):
    """A lease generation: ``<folder>.mdl/leases/<path>/<number>``, ``number`` 1 to
    ``GENERATIONS`` without a leading zero (the last of the run from 1 is the lease)."""

    folder: str
    path: str
    number: int
    FORMAT = "{folder}.mdl/leases/{path}/{number}"
    # 1 to GENERATIONS (99): two digits at most, no leading zero (a name read back is the same)
    PATTERN = re.compile(rf"(?s){_FOLDER}leases/(?P<path>.+)/(?P<number>[0-9]{{1,2}})")

    @classmethod
    def of(cls, root: str, object_uri: str, number: int = 1) -> Generation:
        """Generation ``number`` of ``object_uri``'s lease (``root``: its mirror's namespace)."""
        return cls(*_below(root, object_uri), 1).at(number)

    def at(self, number: int) -> Generation:
        """Generation ``number`` (1 to ``GENERATIONS``) of this lease: looked up by this name,
        never found in a listing."""
        if not 0 < number <= GENERATIONS:
            raise ValueError(f"generation {number} is not between 1 and {GENERATIONS}")
        return replace(self, number=number)


@dataclass(frozen=True)
class Claim(Generation):
    """A swarm's claim on one part of one version of an object (``mdl.download._swarm``): a lease
    of that part alone, ``<folder>.mdl/claims/<path>/<pin>-<size>/<part>/<number>`` (``part``
    five digits at least, ``number`` a generation as a lease's), taken and renewed as a lease is
    (``mdl.buckets.lease``): its holder fetches that part from the origin and publishes it at its
    ``Part`` name (the version's own set, no token)."""

    FORMAT = "{folder}.mdl/claims/{path}/{number}"
    PATTERN = re.compile(
        rf"(?s){_FOLDER}claims/(?P<path>.+/(?:[0-9a-f]{{40}}|[0-9a-f]{{64}})-[0-9]+/[0-9]{{5,8}})"
        r"/(?P<number>[0-9]{1,2})"
    )

    @classmethod
    def on(cls, part: Part) -> Claim:
        """The claim (generation 1) on ``part`` (a version's own, no token)."""
        return cls(part.folder, f"{part.path}/{part.pin}-{part.size}/{part.number:05d}", 1)

    @classmethod
    def parse(cls, uri: str) -> Claim | None:
        """A claim only on a part as ``Part`` names one (a size or number as mdl writes it: no
        part 0, no leading zero in the size), as ``on`` makes it."""
        claim = super().parse(uri)
        return claim if claim is not None and claim.part is not None else None

    @property
    def part(self) -> Part | None:
        """The part claimed (the version's own set: no token); None: the name claims none."""
        return Part.parse(f"{within(self.folder, PARTS)}{self.path}")


@dataclass(frozen=True)
class OldLease(_Kind):
    """mdl 0.3's lease of ``object``, beside it (recognised, never written)."""

    object: str
    FORMAT = "{object}.mdl-lease"
    PATTERN = re.compile(r"(?s)(?P<object>(?:(?!/\.mdl/).)*[^/])\.mdl-lease")


@dataclass(frozen=True)
class Part(_Kind):
    """A part of a fill: ``<folder>.mdl/parts/<path>/<pin>-<size>/<token>/<number>``, ``pin`` the
    file's SHA-256 (else its git blob id), ``size`` each part's bytes, ``token`` its holder's
    generation's (None: an mdl before 0.7's), ``number`` five digits at least."""

    folder: str
    path: str
    pin: str
    size: int
    token: str | None
    number: int
    PATTERN = re.compile(
        rf"(?s){_FOLDER}parts/(?P<path>.+)/(?P<pin>[0-9a-f]{{40}}|[0-9a-f]{{64}})"
        r"-(?P<size>[0-9]+)/(?:(?P<token>[0-9a-f]{32})/)?(?P<number>[0-9]{5,8})"
    )

    @classmethod
    def of(
        cls,
        root: str,
        object_uri: str,
        *,
        pin: str,
        size: int,
        token: str | None = None,
        part: int | None = None,
    ) -> Part:
        """The first part of one version of ``object_uri`` (``root``: its mirror's namespace;
        ``pin``: the version's hash; ``size``: the file's, cut at ``part`` bytes, else at
        ``partsize.part_size``) that the holder of the lease generation ``token`` publishes (None:
        the version's own set)."""
        return cls(*_below(root, object_uri), pin, part or part_size(size), token, 1)

    @property
    def prefix(self) -> str:
        """Where this part's set (a holder's, when it has a ``token``) lies: every part of it
        right under it."""
        held = f"{self.token}/" if self.token else ""
        return f"{within(self.folder, PARTS)}{self.path}/{self.pin}-{self.size}/{held}"

    @property
    def uri(self) -> str:
        return f"{self.prefix}{self.number:05d}"

    @property
    def object(self) -> str:
        return self.folder + self.path


@dataclass(frozen=True)
class Probe(_Kind):
    """A run's scratch object, written and removed by its probe of conditional writes."""

    folder: str
    token: str  # the run's, 12 hex digits
    FORMAT = "{folder}.mdl/probe-{token}"
    PATTERN = re.compile(rf"(?s){_FOLDER}probe-(?P<token>[0-9a-f]{{12}})")


@dataclass(frozen=True)
class Clock(_Kind):
    """A shared folder's clock, touched and read for its mtime; ``space`` a folder in mdl's
    namespace (``of``: the one of any folder)."""

    space: str
    FORMAT = "{space}.mdl-clock"
    PATTERN = re.compile(r"(?s)(?P<space>.*/\.mdl/(?:.*/)?)\.mdl-clock")

    @classmethod
    def of(cls, folder: str) -> Clock:
        """The clock of ``folder`` (ending with ``/``): in its namespace (itself, if in one)."""
        return cls(folder if in_namespace(folder) else folder + NAMESPACE)


@dataclass(frozen=True)
class Mark(_Kind):
    """mdl's mark of the object ``<folder><path>`` where the store keeps no metadata (a shared
    folder)."""

    folder: str
    path: str
    FORMAT = "{folder}.mdl/marks/{path}"
    PATTERN = re.compile(rf"(?s){_FOLDER}marks/(?P<path>.*[^/])")

    @classmethod
    def of(cls, uri: str, *, root: str) -> Mark:
        """The mark of ``uri``, an object of the mirror whose fixed part is ``root``:
        ``<root's folder>/.mdl/marks/<the object's path below it>``."""
        folder = folder_of(root)
        if not uri.startswith(folder):
            raise UsageError(f"{uri} is not in the mirror {root}")
        return cls(folder, uri[len(folder) :])

    @property
    def object(self) -> str:
        return self.folder + self.path


@dataclass(frozen=True)
class Manifest(_Kind):
    """A model's manifest, written by ``publish``."""

    folder: str
    model: str
    FORMAT = "{folder}.mdl/{model}.json"
    PATTERN = re.compile(rf"(?s){_FOLDER}(?P<model>[^./][^/]*)\.json")


@dataclass(frozen=True)
class Version(_Kind):
    """One published version of a model: its manifest (``mdl.buckets.versions``), named by the
    version's id (``version_id``: the SHA-256 of its files' paths, sizes and sha256, the signature
    left out), so no version's manifest is ever written under another's name."""

    folder: str
    model: str
    id: str  # 64 hex
    FORMAT = "{folder}.mdl/versions/{model}/{id}.json"
    PATTERN = re.compile(
        rf"(?s){_FOLDER}versions/(?P<model>[^./][^/]*)/(?P<id>[0-9a-f]{{64}})\.json"
    )


@dataclass(frozen=True)
class Temp(_Kind):
    """A shared folder's write under way, beside its target ``<folder><name>`` (a bare name: in
    the folder open), linked or renamed into place; one a killed write left is abandoned."""

    folder: str
    name: str
    nonce: str
    FORMAT = "{folder}.{name}.{nonce}.mdl-tmp"
    PATTERN = re.compile(
        r"(?s)(?P<folder>(?:.*/)?)\.(?P<name>[^/]+)\.(?P<nonce>[0-9a-f]{16})\.mdl-tmp"
    )

    @classmethod
    def fresh(cls, name: str) -> Temp:
        return cls("", name, secrets.token_hex(8))


Name = Generation | Claim | OldLease | Part | Probe | Clock | Mark | Manifest | Version | Temp
# the parser tries them in this order: a temp file or a clock may lie in any folder of the
# namespace, and the rest cannot be taken for one another
KINDS: tuple[type[Name], ...] = (
    Temp,
    Clock,
    Claim,
    Generation,
    Part,
    Probe,
    Mark,
    Manifest,
    Version,
    OldLease,
)


def parse(uri: str) -> Name | None:
    """What ``uri`` is among the names mdl writes in a mirror; None: none of them."""
    return next((found for kind in KINDS if (found := kind.parse(uri)) is not None), None)
