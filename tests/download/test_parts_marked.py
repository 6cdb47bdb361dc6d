"""A fill's published parts carry mdl's mark as every upload does (S3: its metadata; a shared
folder: a mark file), bound to the part's name and bytes: a copy elsewhere is not mdl's, and
``prune --mirror`` judges an abandoned part by its mark like any object (a part of mdl 0.7, which
marked none, by its name and age as then). On moto (a real S3 server on loopback) and a real
folder."""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from runfixtures import transfer_job, wait_for
from s3proxy import s3_proxy
from s3server import S3, s3, s3_server  # noqa: F401

from mdl import partsize
from mdl.buckets import names
from mdl.buckets.protocol import Writer, authorship
from mdl.buckets.registry import STORES
from mdl.buckets.s3 import MARK_META
from mdl.download._parts import PartSet, Publisher
from mdl.upload.mirrorprune import ABANDONED, THEIRS, Named, prune_mirror

MiB = 1 << 20
DATA = hashlib.sha256(b"weights").digest() * (5 * MiB // 64)  # 2.5 MiB: three parts of 1 MiB
SIDE = "0123456789abcdef"  # whose (``side_of`` its model's origin)
OTHER_SIDE = "fedcba9876543210"  # another catalog's model of the same name
TOKEN = "ab" * 16
DAY = 86_400.0


@pytest.fixture(autouse=True)
def small_parts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(partsize, "PART", MiB)


@pytest.fixture(params=["s3", "file"])
def mirror(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Writer, str]]:
    """A writer of each store and its mirror's folder (where mdl's namespace lies)."""
    if request.param == "file":
        yield STORES["file"].writer(endpoint=None, secrets=None), f"file://{tmp_path}/mirror/"
        return
    server: S3 = request.getfixturevalue("s3")
    server.client().create_bucket(Bucket="fleet")
    yield STORES["s3"].writer(endpoint=server.endpoint, secrets=None), "s3://fleet/hub/"


def published(writer: Writer, folder: str, tmp_path: Path, *, side: str, path: str) -> list[str]:
    """Every part of ``DATA`` at ``<folder><path>``, published as a fill's holder publishes them
    (``side``: whose): their URIs."""
    job = transfer_job(tmp_path / side, "http://127.0.0.1:9/f.bin", DATA)
    job.final_path.parent.mkdir(parents=True)
    job.final_path.write_bytes(DATA)
    parts = PartSet.of(writer, folder + names.NAMESPACE, folder + path, job, side)
    assert parts is not None and parts.count == 3
    uris = Publisher(parts.under(TOKEN), job).finish()
    assert len(uris) == 3
    return uris


def test_a_published_part_carries_mdls_mark_for_its_name_and_bytes(
    mirror: tuple[Writer, str], tmp_path: Path
) -> None:
    writer, folder = mirror
    uris = published(writer, folder, tmp_path, side=SIDE, path="tiny/model.bin")
    for number, uri in enumerate(uris):
        data = DATA[number * MiB : (number + 1) * MiB]
        seen = writer.owned(uri, root=folder)
        assert seen is not None and seen.marked and seen.mark is not None
        assert (seen.mark.side, seen.mark.sha256) == (SIDE, hashlib.sha256(data).hexdigest())
        assert isinstance(names.parse(uri), names.Part)


def test_a_parts_mark_binds_it_to_its_name_in_s3_metadata(s3: S3, tmp_path: Path) -> None:  # noqa: F811
    """The metadata ``authorship`` reads: accepted for the part's own name and bytes, refused for
    any other name or size."""
    s3.client().create_bucket(Bucket="fleet")
    writer = STORES["s3"].writer(endpoint=s3.endpoint, secrets=None)
    uri = published(writer, "s3://fleet/hub/", tmp_path, side=SIDE, path="tiny/model.bin")[0]
    key = uri.removeprefix("s3://fleet/")
    said = s3.client().head_object(Bucket="fleet", Key=key)["Metadata"][MARK_META]
    assert authorship(said, where=uri, size=MiB) is not None
    assert authorship(said, where=uri.replace("00001", "00002"), size=MiB) is None
    assert authorship(said, where=uri, size=MiB - 1) is None


def test_a_copy_of_a_part_under_another_name_is_not_mdls(
    mirror: tuple[Writer, str], tmp_path: Path
) -> None:
    """A server-side copy (S3 CopyObject keeps the metadata) or a copy of the tree with its marks
    (``cp -a``): its mark was made for another name or another file, so no one's."""
    writer, folder = mirror
    uri = published(writer, folder, tmp_path, side=SIDE, path="tiny/model.bin")[0]
    copy = uri.replace(TOKEN, "cd" * 16)
    if folder.startswith("s3://"):
        client = writer.client()  # type: ignore[attr-defined]
        source = {"Bucket": "fleet", "Key": uri.removeprefix("s3://fleet/")}
        client.copy_object(CopySource=source, Bucket="fleet", Key=copy.removeprefix("s3://fleet/"))
    else:
        marks = (names.Mark.of(uri, root=folder).uri, names.Mark.of(copy, root=folder).uri)
        for one, other in ((uri, copy), marks):
            Path(other[7:]).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(one[7:], other[7:])
    seen = writer.owned(copy, root=folder)
    assert seen is not None and not seen.marked and seen.mark is None
    assert writer.owned(uri, root=folder).marked  # type: ignore[union-attr]


def test_prune_judges_an_abandoned_part_by_its_mark(s3: S3, tmp_path: Path) -> None:  # noqa: F811
    """Two days later by the store's clock (a proxy moves its Date): this catalog's marked parts go,
    as does a part of mdl 0.7 (no mark: judged by its name and age as then); parts marked by
    another catalog's model of the name stay, and so does an object under ``.mdl/parts/`` that is
    shaped as no part."""
    s3.client().create_bucket(Bucket="fleet")
    folder, template = "s3://fleet/hub/", "s3://fleet/hub/{model}/{path}"
    with s3_proxy(s3.endpoint) as proxy:
        writer = STORES["s3"].writer(endpoint=proxy.endpoint, secrets=None)
        ours = published(writer, folder, tmp_path, side=SIDE, path="tiny/model.bin")
        theirs = published(writer, folder, tmp_path, side=OTHER_SIDE, path="tiny/other.bin")
        old = ours[0].replace("tiny/model.bin", "tiny/old.bin")  # mdl 0.7's: unmarked
        planted = ours[0].rpartition("/")[0] + "/notes.txt"
        for uri in (old, planted):
            s3.put("fleet", uri.removeprefix("s3://fleet/"), b"x" * 10)
        s3.put("fleet", "hub/tiny/config.json", b"{}")  # an object: the mirror is there
        named = Named({}, models=(f"{folder}tiny/",), sides={f"{folder}tiny/": frozenset({SIDE})})
        proxy.date_offset = 2 * DAY
        report = prune_mirror(writer, template, named)
        assert not report.errors
        removed = {(entry.uri, entry.reason) for entry in report.removed}
        sets = {uri.rpartition("/")[0] + "/" for uri in (ours[0], old)}
        assert removed == {(uri, ABANDONED) for uri in sets}
        assert all(writer.head(uri) is None for uri in (*ours, old))
        assert {e.uri for e in report.kept if e.reason == THEIRS} == set(theirs)
        assert all(writer.head(uri) is not None for uri in (*theirs, planted))
        assert not any(entry.uri == planted for entry in (*report.removed, *report.kept))


def test_a_removed_part_takes_its_mark_and_empty_folders_with_it(tmp_path: Path) -> None:
    """A shared folder: the parts removed once the object is there leave no mark file and no empty
    folder behind (neither under ``.mdl/parts/`` nor under ``.mdl/marks/``)."""
    writer = STORES["file"].writer(endpoint=None, secrets=None)
    folder = f"file://{tmp_path}/mirror/"
    uris = published(writer, folder, tmp_path, side=SIDE, path="tiny/model.bin")
    for uri in uris:
        assert writer.delete(uri)
    space = tmp_path / "mirror" / ".mdl"
    assert os.listdir(space / "parts") == [] and os.listdir(space / "marks") == []


def test_a_part_whose_bytes_were_taken_back_is_never_sent_with_other_bytes(
    mirror: tuple[Writer, str], tmp_path: Path
) -> None:
    """The sender reads what was told in order: a range told landed, then taken back (the file
    started over: zeros on disk), then landed again only in part, sends only the part whose bytes
    landed again, never the one of zeros; the rest goes from the verified file at the end."""
    writer, folder = mirror
    job = transfer_job(tmp_path / "holder", "http://127.0.0.1:9/f.bin", DATA)
    job.part_path.parent.mkdir(parents=True)
    parts = PartSet.of(writer, folder + names.NAMESPACE, folder + "m/f.bin", job, SIDE)
    assert parts is not None and parts.count == 3
    publisher = Publisher(parts.under(TOKEN), job)
    job.part_path.write_bytes(DATA)
    publisher.landed(0, 2 * MiB)  # parts 1 and 2 whole (told before the sender reads them)
    publisher.taken_back(0, 2 * MiB)
    job.part_path.write_bytes(bytes(len(DATA)))  # started over: nothing of the old bytes kept
    with job.part_path.open("r+b") as part:
        part.write(DATA[:MiB])
    publisher.landed(0, MiB)  # part 1 landed again; part 2 did not
    holder = parts.under(TOKEN)
    with publisher:  # the sender reads every telling at once (all told before it started)
        wait_for(lambda: writer.read(holder.uri(1), limit=MiB) is not None, what="part 1 sent")
    sent = {number: writer.read(holder.uri(number), limit=MiB) for number in (1, 2)}
    assert sent[2] is None, "part 2 was sent though its bytes were taken back"
    assert sent[1] is not None and sent[1][0] == DATA[:MiB]
    job.final_path.parent.mkdir(parents=True, exist_ok=True)
    job.final_path.write_bytes(DATA)  # verified: the rest from it
    uris = publisher.finish()
    for number, uri in enumerate(uris):
        found = writer.read(uri, limit=MiB)
        assert found is not None and found[0] == DATA[number * MiB : (number + 1) * MiB]


def test_prune_forgets_the_mark_of_a_part_removed_without_it(tmp_path: Path) -> None:
    """A part removed by an mdl before 0.8 (or a kill between a part and its mark) leaves its mark
    file under ``.mdl/marks/.mdl/parts/``: prune removes a part's mark once its part is gone, and
    keeps the marks of the parts that are there."""
    writer = STORES["file"].writer(endpoint=None, secrets=None)
    folder, template = f"file://{tmp_path}/mirror/", f"file://{tmp_path}/mirror/{{model}}/{{path}}"
    gone, kept, _ = published(writer, folder, tmp_path, side=SIDE, path="tiny/model.bin")
    Path(gone[7:]).unlink()  # as 0.7's holder removes parts: the part, not its mark
    marks = [Path(names.Mark.of(uri, root=folder).uri[7:]) for uri in (gone, kept)]
    assert all(mark.is_file() for mark in marks)
    Path(tmp_path / "mirror" / "tiny").mkdir(exist_ok=True)
    (tmp_path / "mirror" / "tiny" / "config.json").write_text("{}")
    named = Named({}, models=(f"{folder}tiny/",), sides={f"{folder}tiny/": frozenset({SIDE})})
    report = prune_mirror(writer, template, named)
    assert not report.errors
    assert not marks[0].exists(), "the mark of a part that is gone was left"
    assert marks[1].is_file(), "the mark of a part that is there was removed"
