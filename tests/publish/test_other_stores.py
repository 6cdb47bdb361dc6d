"""Stores the field uses that are not S3 (issue 86, E). s3rver does not implement a listing of
unfinished uploads: prune says so and exits 0. A store that answers as rclone's ``serve s3`` does:
metadata names in another case (``X-Amz-Meta-Mdl``: field names compare without case, RFC 9110
§5.1), no checksum kept, a part's HEAD not implemented. A re-publish writes nothing (the ETag, the store's MD5 of the bytes, proves
them) and ``prune --mirror`` frees what it should (mdl's mark is read whatever its case)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from releases import store_clock_past, writer_of
from runfixtures import mdl
from s3proxy import Proxy, s3_proxy
from s3server import S3
from servers import HubServer, make_data

from mdl.buckets import _s3upload, versions

MiB = 1 << 20
V1 = {
    "config.json": b'{"layers": 2}\n',
    "model.safetensors": make_data(11 * MiB + 7, seed=1),  # 5 + 5 + 1 MiB parts
    "tokenizer.json": make_data(3000, seed=2),
}
V2 = {**V1, "model.safetensors": make_data(11 * MiB + 9, seed=3)}
TO = "s3://team/hub"


@pytest.fixture
def rclone(s3: S3, monkeypatch: pytest.MonkeyPatch) -> Iterator[Proxy]:
    monkeypatch.setattr(_s3upload, "MULTIPART_THRESHOLD", MiB)
    monkeypatch.setattr(_s3upload, "PART_MINIMUM", 5 * MiB)  # S3's smallest part
    s3.client().create_bucket(Bucket="team")
    with s3_proxy(s3.endpoint) as proxy:
        proxy.like_rclone = True
        monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.endpoint)
        yield proxy


def writes(proxy: Proxy) -> list[tuple[str, str]]:
    return [(m, p) for m, p, _ in proxy.requests if m in ("PUT", "POST", "DELETE")]


def test_a_republish_writes_nothing_and_prune_frees_the_old_version(
    rclone: Proxy, hub: HubServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hub.add_repo("org/llm", V1)
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "catalog.toml").write_text('[models.llm]\nrepo = "org/llm"\n')
    dest = str(tmp_path / "a")
    assert mdl("pull", "llm", "--dest", dest).exit_code == 0
    first = mdl("publish", "llm", "--to", TO, "--dest", dest, "--json")
    assert first.exit_code == 0, first.stderr
    before = len(writes(rclone))
    again = mdl("publish", "llm", "--to", TO, "--dest", dest, "--json")
    assert again.exit_code == 0, again.stderr
    done = json.loads(again.stdout)
    assert {f["action"] for f in done["files"] if f["path"]} == {"skipped"}, again.stdout
    assert writes(rclone)[before:] == [], "a re-run writes nothing"

    # (v2 newer than v1 by the store's clock, which says seconds: a tie is kept, never ordered)
    store_clock_past(writer_of(TO), f"{TO}/.mdl/versions/llm/{vid(V1)}.json")
    hub.commit("org/llm", V2)
    assert mdl("pull", "llm", "--dest", dest).exit_code == 0
    assert mdl("publish", "llm", "--to", TO, "--dest", dest).exit_code == 0
    # (catalog.lock pins v2: the proof that counts it among the newest, docs/mirrors.md)
    assert mdl("lock", "llm").exit_code == 0
    template = versions.template_of(TO)
    pruned = mdl(
        "prune", "--mirror", template, "--keep-versions", "1", "--keep-days", "0", "--json"
    )
    assert pruned.exit_code == 0, pruned.stderr
    doc = json.loads(pruned.stdout)
    # v1's manifest and its own shard, marked as mdl's (its mark read as `Mdl`), go: v2 is the one
    # newest kept
    assert {e["uri"] for e in doc["removed"]} == freed_v1()
    assert not [e for e in doc["kept"] if "not written by mdl" in e["reason"]], pruned.stdout


def freed_v1() -> set[str]:
    """What prune frees of v1 once v2 is the one newest: its manifest and the shard v2 changed."""
    shard = hashlib.sha256(V1["model.safetensors"]).hexdigest()
    return {f"{TO}/.mdl/versions/llm/{vid(V1)}.json", f"{TO}/llm/{shard}"}


def vid(files: dict[str, bytes]) -> str:
    return versions.version_id(
        [(p, len(d), hashlib.sha256(d).hexdigest()) for p, d in files.items()]
    )


def test_a_store_without_a_listing_of_uploads_prunes_and_says_so(
    s3: S3, hub: HubServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """s3rver answers ListMultipartUploads 501 NotImplemented: prune removes what it should and
    says that unfinished uploads were not looked for (exit 0, not 5)."""
    hub.add_repo("org/llm", V1)
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "catalog.toml").write_text('[models.llm]\nrepo = "org/llm"\n')
    s3.client().create_bucket(Bucket="team")
    dest = str(tmp_path / "a")
    assert mdl("pull", "llm", "--dest", dest).exit_code == 0
    assert mdl("publish", "llm", "--to", TO, "--dest", dest).exit_code == 0
    # (v2 newer than v1 by the store's clock, which says seconds: a tie is kept, never ordered)
    store_clock_past(writer_of(TO), f"{TO}/.mdl/versions/llm/{vid(V1)}.json")
    hub.commit("org/llm", V2)
    assert mdl("pull", "llm", "--dest", dest).exit_code == 0
    assert mdl("publish", "llm", "--to", TO, "--dest", dest).exit_code == 0
    assert mdl("lock", "llm").exit_code == 0  # (catalog.lock pins v2: counted among the newest)
    with s3_proxy(s3.endpoint) as proxy:
        proxy.unimplemented = ("uploads",)
        monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.endpoint)
        pruned = mdl(
            "prune", "--mirror", versions.template_of(TO), "--keep-versions", "1",
            "--keep-days", "0", "--json",
        )  # fmt: skip
    assert pruned.exit_code == 0, pruned.stderr
    doc = json.loads(pruned.stdout)
    assert {e["uri"] for e in doc["removed"]} == freed_v1()
    (said,) = [w for w in doc["warnings"] if "unfinished uploads were not looked for" in w]
    assert "not implemented" in said.lower() and said in pruned.stderr
    assert ("GET", True) in {(m, "uploads" in p) for m, p, _ in proxy.requests}
