"""mdl/buckets/names.py: every name mdl writes in a mirror, each kind's constructors, writer and
parser. A round trip for every kind (``parse(x.uri) == x``, made by its fields or by its
constructors from what callers hold), nothing else parsed (arbitrary text and near misses:
None, or exactly the name it writes), docs/mirrors.md's table held to the module, and the names the
stores really write on disk read back as their kinds."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mdl import partsize
from mdl.buckets import names
from mdl.buckets.folder import FolderWriter
from mdl.buckets.names import (
    KINDS,
    Claim,
    Clock,
    Generation,
    Manifest,
    Mark,
    OldLease,
    Part,
    Probe,
    Temp,
    Version,
    parse,
)
from mdl.errors import UsageError

MIRRORS_MD = Path(__file__).parents[2] / "docs" / "mirrors.md"

# a name's segment as a model file's or a template's: anything but "/", never starting with "."
# (mdl's own names start with one), control characters and other scripts included
segment = st.text(
    st.characters(blacklist_characters="/", blacklist_categories=("Cs",)), min_size=1, max_size=12
).filter(lambda text: not text.startswith("."))
path = st.lists(segment, min_size=1, max_size=4).map("/".join)
folder = st.builds(
    lambda scheme, below: scheme + "".join(f"{s}/" for s in below),
    st.sampled_from(["s3://bucket/", "file:///srv/models/", "file:///"]),
    st.lists(segment, max_size=3),
)


def hex_(size: int) -> st.SearchStrategy[str]:
    return st.text("0123456789abcdef", min_size=size, max_size=size)


pin = hex_(40) | hex_(64)  # a version's hash: its SHA-256, else its git blob id
NAMES: dict[type, st.SearchStrategy[names.Name]] = {
    Generation: st.builds(Generation, folder, path, st.integers(1, names.GENERATIONS)),
    # a claim on one part of one version (<path>/<pin>-<part size>/<part>), a generation of it
    Claim: st.builds(
        lambda f, p, version, size, part, number: Claim(
            f, f"{p}/{version}-{size}/{part:05d}", number
        ),
        folder,
        path,
        pin,
        st.integers(1, 1 << 40),
        st.integers(1, 10**8 - 1),
        st.integers(1, names.GENERATIONS),
    ),
    OldLease: st.builds(lambda f, p: OldLease(f + p), folder, path),
    Part: st.builds(
        Part,
        folder,
        path,
        pin,
        st.integers(1, 1 << 40),
        st.none() | hex_(32),
        st.integers(1, 10**8 - 1),
    ),
    Probe: st.builds(Probe, folder, hex_(12)),
    Clock: st.builds(
        lambda f, below: Clock(f + names.NAMESPACE + "".join(f"{s}/" for s in below)),
        folder,
        st.lists(segment, max_size=3),
    ),
    Mark: st.builds(Mark, folder, path),
    Manifest: st.builds(
        Manifest, folder, st.from_regex(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,20}", fullmatch=True)
    ),
    Version: st.builds(
        Version,
        folder,
        st.from_regex(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,20}", fullmatch=True),
        hex_(64),
    ),
    Temp: st.builds(
        Temp,
        st.just("") | folder | st.builds(lambda f, p: f"{f}{p}/", folder, path),
        st.text(st.characters(blacklist_characters="/", blacklist_categories=("Cs",)), min_size=1),
        hex_(16),
    ),
}
any_name = st.one_of(*NAMES.values())


def test_every_kind_has_a_round_trip() -> None:
    assert set(NAMES) == set(KINDS)


@given(any_name)
def test_a_name_parses_back_to_itself_and_its_kind(name: names.Name) -> None:
    assert parse(name.uri) == name
    assert type(name).parse(name.uri) == name


# a temp file or a clock may lie in any folder of the namespace (the parser tries them first)
_ANYWHERE = (Temp, Clock)


@given(any_name)
def test_no_kind_takes_another_kinds_name(name: names.Name) -> None:
    """Each name is read by its own kind alone (a temp file's and a clock's aside, which may lie in
    any kind's folder): a claim is never a lease generation, a part or a mark, nor one of those a
    claim."""
    readers = [kind for kind in KINDS if kind not in _ANYWHERE and kind.parse(name.uri)]
    assert readers == ([] if isinstance(name, _ANYWHERE) else [type(name)])


@given(NAMES[Claim], st.data())
def test_a_claim_is_read_only_as_a_claim_on_a_part_mdl_names(
    claim: names.Name, data: st.DataObject
) -> None:
    """A claim names the part it claims, as ``Claim.on`` makes it; a name in the claims folder
    whose part is no part mdl names (any digit of its part changed or put in) is no claim."""
    assert isinstance(claim, Claim) and claim.part is not None
    assert Claim.on(claim.part).at(claim.number) == claim
    run, _, number = claim.uri.rpartition("/")
    digits = run.rpartition("/")[2]
    at = data.draw(st.integers(0, len(digits)))
    digit = data.draw(st.sampled_from("0123456789"))
    put = digits[:at] + digit + digits[at:]
    found = parse(f"{run[: -len(digits)]}{put}/{number}")
    written = len(put) <= 8 and int(put) > 0 and f"{int(put):05d}" == put  # as a Part writes it
    assert (found is not None) == written
    assert found is None or (isinstance(found, Claim) and found.part is not None)


@given(st.text())
def test_arbitrary_text_is_no_name_unless_it_is_exactly_one(text: str) -> None:
    found = parse(text)
    assert found is None or found.uri == text
    if ".mdl" not in text:
        assert found is None


@given(any_name, st.data())
def test_a_near_miss_is_no_name_unless_it_is_exactly_another(
    name: names.Name, data: st.DataObject
) -> None:
    """One character dropped, changed or put in anywhere: None, or a name that writes exactly that
    text (a model path's character changed is another model path)."""
    uri = name.uri
    at = data.draw(st.integers(0, len(uri)))
    char = data.draw(st.characters(blacklist_categories=("Cs",)))
    for miss in (
        uri[:at] + uri[at + 1 :],
        uri[:at] + char + uri[at + 1 :],
        uri[:at] + char + uri[at:],
    ):
        found = parse(miss)
        assert found is None or found.uri == miss


PART = Part("s3://b/", "tiny/model.bin", "a" * 64, 16 << 20, "b" * 32, 1)
CLAIM = Claim.on(replace(PART, token=None))


@pytest.mark.parametrize(
    "miss",
    [
        "s3://b/.mdl/leases/tiny/model.bin/007",  # a number not as mdl writes it
        "s3://b/.mdl/leases/tiny/model.bin/0",
        "s3://b/.mdl/leases/tiny/model.bin/",
        "s3://b/.mdl/leases/7",  # no object
        "s3://b/.mdl/leases/x/" + "1" * 31,  # longer than a generation
        PART.uri.replace("00001", "0001"),
        PART.uri.replace("00001", "000001"),
        PART.uri.replace("00001", "00000"),
        PART.uri.replace("b" * 32, "b" * 31),
        PART.uri.replace("a" * 64, "a" * 63),
        PART.uri.replace("a" * 64, "A" * 64),
        PART.uri.replace("-16777216/", "-016777216/"),
        PART.uri.replace("-16777216/", "-0/"),
        PART.uri.replace("/.mdl/", "/.mdl2/"),
        # a claim on no part mdl names: part 0, a size with a leading zero or 0, a token's set
        CLAIM.uri.replace("/00001/1", "/00000/1"),
        CLAIM.uri.replace("-16777216/", "-016777216/"),
        CLAIM.uri.replace("-16777216/", "-0/"),
        CLAIM.uri.replace("-16777216/", f"-16777216/{'b' * 32}/"),
        CLAIM.uri.replace("/00001/1", "/0001/1"),
        CLAIM.uri.replace("/00001/1", "/00001/01"),
        CLAIM.uri.replace("/00001/1", "/00001/100"),
        CLAIM.uri.replace("/claims/", "/claim/"),
        "s3://b/.mdl/probe-0123456789a",
        "s3://b/.mdl/probe-0123456789abc",
        "s3://b/.mdl/marks/",
        "s3://b/.mdl/marks/tiny/",
        "s3://b/.mdl/.tiny.json",
        "s3://b/.mdl/a/b.json",
        "s3://b/tiny/.mdl-clock",  # a clock outside the namespace
        "s3://b/.mdl/.mdl-clockx",
        "s3://b/tiny/.config.json.0123456789abcde.mdl-tmp",
        "s3://b/tiny/config.json.0123456789abcdef.mdl-tmp",
        "s3://b/.mdl-lease",
        "s3://b/.mdl/leases/x.mdl-lease",  # in the namespace: not 0.3's
        "s3://b/tiny/config.json",
        "",
    ],
)
def test_names_mdl_does_not_write_are_none(miss: str) -> None:
    assert parse(miss) is None


def test_a_folders_clock_is_in_its_namespace() -> None:
    assert Clock.of("file:///srv/m/tiny/").uri == "file:///srv/m/tiny/.mdl/.mdl-clock"
    lease = "file:///srv/m/.mdl/leases/tiny/x/"
    assert Clock.of(lease).uri == lease + ".mdl-clock"


def test_the_constructors_make_the_kinds_names() -> None:
    root = "s3://b/hub/.mdl/"
    lease = Generation.of(root, "s3://b/hub/tiny/model.bin", 3)
    assert lease.uri == "s3://b/hub/.mdl/leases/tiny/model.bin/3"
    assert parse(lease.uri) == Generation("s3://b/hub/", "tiny/model.bin", 3)
    first = Part.of(root, "s3://b/hub/tiny/model.bin", pin="c" * 40, size=1 << 30)
    assert first.prefix == f"s3://b/hub/.mdl/parts/tiny/model.bin/{'c' * 40}-{16 << 20}/"
    part = replace(first, token="d" * 32, number=12)
    assert (
        part.uri == f"{first.prefix}{'d' * 32}/00012"
        and part.prefix == f"{first.prefix}{'d' * 32}/"
    )
    assert parse(part.uri) == Part(
        "s3://b/hub/", "tiny/model.bin", "c" * 40, 16 << 20, "d" * 32, 12
    )
    assert Mark.of("s3://b/hub/tiny/x", root="s3://b/hub/{model}/{path}").uri == (
        "s3://b/hub/.mdl/marks/tiny/x"
    )
    assert names.object_of(lease.uri) == "s3://b/hub/tiny/model.bin"
    with pytest.raises(ValueError, match="is not under"):
        Generation.of(root, "s3://b/other/model.bin")
    with pytest.raises(ValueError, match="is not under"):
        Part.of(root, "s3://c/hub/model.bin", pin="c" * 40, size=1)
    with pytest.raises(UsageError, match="is not in the mirror"):
        Mark.of("s3://b/other/x", root="s3://b/hub/{model}/{path}")


# the kinds as their constructors make them, from what their callers hold: a mirror's namespace
# (or fixed part) and one of its objects
mirror_object = st.tuples(folder, path)


@given(
    mirror_object,
    pin,
    st.integers(1, 1 << 50),
    st.integers(1, 10**8 - 1),
    st.integers(1, names.GENERATIONS),
)
def test_a_claim_made_on_a_part_parses_back_to_its_fields(
    made: tuple[str, str], version: str, size: int, number: int, generation: int
) -> None:
    """``Claim.on`` a part of the version's own set (no token): the claim's run lies in the
    claims folder, named by the part's object, version, part size and number; every generation
    of it parses back as a claim of that part (never as a file's lease)."""
    base, below = made
    part = replace(
        Part.of(base + names.NAMESPACE, base + below, pin=version, size=size), number=number
    )
    claim = Claim.on(part)
    run = f"{names.within(base, names.CLAIMS)}{below}/{version}-{part.size}/{number:05d}/"
    assert claim == Claim(base, f"{below}/{version}-{part.size}/{number:05d}", 1)
    assert claim.uri == run + "1"
    later = claim.at(generation)
    assert type(later) is Claim and later.uri == f"{run}{generation}"
    assert parse(later.uri) == later and Generation.parse(later.uri) is None
    assert later.part == part
    # a claim removed (or its folder's clock) leaves its emptied folders up to the claims folder
    claims = names.within(base, names.CLAIMS)
    assert names.emptied_up_to(later.uri) == claims
    assert names.emptied_up_to(names.Clock.of(run).uri) == claims
    assert names.emptied_up_to(names.Clock.of(names.within(base, names.LEASES)).uri) is None
    with pytest.raises(ValueError):
        claim.at(names.GENERATIONS + 1)


@given(mirror_object, st.integers(1, names.GENERATIONS))
def test_a_generation_made_parses_back_to_its_fields(made: tuple[str, str], number: int) -> None:
    base, below = made
    lease = Generation.of(base + names.NAMESPACE, base + below, number)
    assert parse(lease.uri) == lease == Generation(base, below, number)
    assert names.object_of(lease.uri) == base + below
    assert parse(lease.at(1).uri) == replace(lease, number=1)


@given(
    mirror_object, hex_(40) | hex_(64), st.integers(1, 1 << 50), hex_(32), st.integers(1, 10**8 - 1)
)
def test_a_part_made_parses_back_to_its_fields(
    made: tuple[str, str], pin: str, size: int, token: str, number: int
) -> None:
    base, below = made
    first = Part.of(base + names.NAMESPACE, base + below, pin=pin, size=size)
    assert first == Part(base, below, pin, partsize.part_size(size), None, 1)
    held = Part.of(base + names.NAMESPACE, base + below, pin=pin, size=size, token=token)
    assert held == replace(first, token=token)
    for part in (first, replace(first, number=number), held, replace(held, number=number)):
        assert parse(part.uri) == part and part.uri.startswith(part.prefix)
        assert part.object == base + below


@given(
    mirror_object.filter(lambda made: "{" not in made[0]),  # a template's fixed part
    st.sampled_from(["{model}/{path}", "{path}", "m-{sha256}"]),
)
def test_a_mark_made_parses_back_to_its_fields(made: tuple[str, str], tail: str) -> None:
    base, below = made
    mark = Mark.of(base + below, root=base + tail)
    assert parse(mark.uri) == mark == Mark(base, below)
    assert mark.object == base + below


# --- docs/mirrors.md's table --------------------------------------------------------------------

ROW = re.compile(r"^\s*\| `([^`]+)` \(`(\w+)`\) \|(?: [^|]+ \|){4}\s*$", re.MULTILINE)


def table_rows() -> list[tuple[str, str]]:
    text = MIRRORS_MD.read_text()
    table = text.split("| object (kind) | written by | condition | read by | removed by and when |")
    assert len(table) == 2, "docs/mirrors.md has one table of mdl's names"
    body = table[1].split("\n\n", 1)[0]
    lines = body.splitlines()[2:]
    rows = ROW.findall(body)
    assert len(rows) == len(lines), "every row: `example` (`Kind`) and four columns"
    return rows


def test_the_docs_table_has_a_row_per_kind_and_no_other() -> None:
    """Every kind has a row and every row is of a kind; a kind has more than one row only where
    its writers differ (a part: a lease holder's set and the version's own, a swarm's)."""
    rows = table_rows()
    kinds = [kind for _, kind in rows]
    assert set(kinds) == {kind.__name__ for kind in KINDS}
    assert len({example for example, _ in rows}) == len(rows)
    several = {kind for kind in kinds if kinds.count(kind) > 1}
    assert several <= {"Part"}
    parts = [parse(example) for example, kind in rows if kind == "Part"]
    tokens = [part.token for part in parts if isinstance(part, Part)]
    assert len(set(tokens)) == len(tokens) == len(parts) and None in tokens


@pytest.mark.parametrize(("example", "kind"), table_rows())
def test_each_rows_example_parses_to_its_kind(example: str, kind: str) -> None:
    found = parse(example)
    assert found is not None and type(found).__name__ == kind and found.uri == example


# --- the names the stores write ------------------------------------------------------------------


def test_a_folders_writes_leave_names_of_their_kinds(tmp_path: Path) -> None:
    """A real shared folder: a lease generation, its clock (read when it is judged) and a marked
    part, written by the folder store, are on disk under the names the module parses as theirs."""
    writer = FolderWriter()
    base = f"file://{tmp_path}/"
    lease = Generation(base, "tiny/model.bin", 1)
    assert writer.create(lease.uri, b"{}") is not None
    assert writer.read(lease.uri, limit=10) is not None  # judged: the folder's clock touched
    part = replace(PART, folder=base)
    assert writer.create(part.uri, b"part", side="0123456789abcdef") is not None
    found = {type(parse(f"file://{p}")) for p in tmp_path.rglob("*") if p.is_file()}
    assert found == {Generation, Clock, Part, Mark}


def test_a_mirror_whose_folder_is_in_a_namespace_is_not_filled() -> None:
    """Every name there would be read as in mdl's namespace of the folder above: not filled."""
    assert names.namespace("file:///srv/.mdl/models/{model}/{path}") is None
    assert names.namespace("file:///srv/models/{model}/{path}") == "file:///srv/models/.mdl/"


@given(
    st.integers(0, 10**40).map(str)
    | st.text("0123456789", min_size=1, max_size=40)
    | st.text(min_size=1, max_size=40)
)
def test_a_generation_is_a_number_every_machine_reads_alike(last: str) -> None:
    """Issue 75, C: a file named with 30 nines was a generation; the first machine took 10^30,
    which no machine parsed back, and every machine went to the origin. A generation is 1 to
    ``GENERATIONS`` written without a leading zero, on every machine alike: any other last
    segment is no generation (ignored, never stepped over)."""
    uri = f"s3://bucket/.mdl/leases/m/w.bin/{last}"
    found = Generation.parse(uri)
    number = int(last) if last.isascii() and last.isdigit() else None
    expected = number is not None and str(number) == last and 0 < number <= names.GENERATIONS
    assert (found is not None) is expected
    assert found is None or (found.number == number and found.uri == uri)
    if number is not None and not 0 < number <= names.GENERATIONS:
        with pytest.raises(ValueError):
            Generation.of("s3://bucket/.mdl/", "s3://bucket/m/w.bin", number)
