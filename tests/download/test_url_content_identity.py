"""A URL carries a content identity before it is locked when its server states one (issue 86): a
model of direct URLs whose week's folder moves (``/llm/v1/`` → ``/llm/v2/``) re-downloads only the
files whose bytes changed, when the server says each file's sha256 (RFC 9530 ``Repr-Digest``, RFC
3230 ``Digest``, S3's full-object ``x-amz-checksum-sha256``), read from the probe a pull makes of a
URL anyway (no request more). A stated sha256 is a claim: the bytes fetched are held to it. A server
that states none is judged as before (another URL is another file)."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path

import httpx2
import pytest
from runfixtures import mdl, use_catalog
from servers import HubServer, make_data
from typer.testing import Result

from mdl.errors import ExitCode
from mdl.transfer._headers import served_sha256

CONFIG = b'{"model_type": "llm"}\n'
V1 = {"config.json": CONFIG, "model.safetensors": make_data(40_000, "uci-1")}
V2 = {"config.json": CONFIG, "model.safetensors": make_data(40_000, "uci-2")}


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def b64(data: bytes) -> str:
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


def repr_digest(data: bytes) -> dict[str, str]:
    return {"Repr-Digest": f"sha-256=:{b64(data)}:"}


def serve(hub: HubServer, week: str, files: dict[str, bytes], *, stated: bool) -> list[str]:
    return [
        hub.cdn.add_file(f"/llm/{week}/{p}", d, headers=repr_digest(d) if stated else None)
        for p, d in files.items()
    ]


def catalog_of(urls: list[str]) -> str:
    rows = "".join(f'  {{ url = "{url}" }},\n' for url in urls)
    return f"[models.llm]\nfiles = [\n{rows}]\n"


def actions(result: Result) -> dict[str, str]:
    return {f["path"]: f["action"] for f in json.loads(result.stdout)["files"] if f["path"]}


@pytest.mark.parametrize("stated", [True, False])
def test_a_weeks_new_urls_refetch_only_the_changed_shard_when_the_server_states_sha256(
    hub: HubServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stated: bool
) -> None:
    catalog = use_catalog(tmp_path, monkeypatch, catalog_of(serve(hub, "v1", V1, stated=stated)))
    first = mdl("pull", "llm", "--json")
    assert first.exit_code == 0, first.stderr
    assert mdl("lock", "llm").exit_code == 0
    catalog.write_text(catalog_of(serve(hub, "v2", V2, stated=stated)))
    second = mdl("pull", "llm", "--json")
    assert second.exit_code == 0, second.stderr
    done = actions(second)
    assert done["model.safetensors"] == "downloaded"
    # stated: the same bytes at a new URL are the file already here; not stated: as before
    assert done["config.json"] == ("skipped" if stated else "downloaded")
    folder = tmp_path / "models" / "llm"
    assert {p: (folder / p).read_bytes() for p in V2} == V2

    locked = mdl("lock", "--upgrade", "llm", "--json")
    assert locked.exit_code == 0, locked.stderr
    (model,) = json.loads(locked.stdout)["models"]
    assert [f["path"] for f in model["changed"]] == ["model.safetensors"], "only its bytes moved"
    assert [f["path"] for f in model["repinned"]] == ["config.json"]


def test_a_stated_sha256_the_bytes_do_not_have_is_refused(
    hub: HubServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = hub.cdn.add_file(
        "/llm/x/model.safetensors", V1["model.safetensors"], headers=repr_digest(b"other")
    )
    use_catalog(tmp_path, monkeypatch, catalog_of([url]))
    pulled = mdl("pull", "llm")
    assert pulled.exit_code == ExitCode.INTEGRITY, pulled.stderr
    assert not (tmp_path / "models" / "llm" / "model.safetensors").exists()


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"Repr-Digest": f"sha-256=:{b64(b'a')}:"}, sha(b"a")),
        ({"Repr-Digest": f"sha-512=:AAAA:, sha-256=:{b64(b'a')}:"}, sha(b"a")),
        ({"Digest": f"SHA-256={b64(b'a')}"}, sha(b"a")),
        ({"Digest": f"md5=xyz, sha-256={b64(b'a')}"}, sha(b"a")),
        ({"x-amz-checksum-sha256": b64(b"a")}, sha(b"a")),
        ({"x-amz-checksum-sha256": b64(b"a"), "x-amz-checksum-type": "COMPOSITE"}, None),
        ({"x-amz-checksum-sha256": b64(b"a")[:-1] + "-3"}, None),
        ({"Repr-Digest": f"sha-256=:{b64(b'a')}:", "Digest": f"sha-256={b64(b'b')}"}, None),
        ({"Repr-Digest": "sha-256=:not base64:"}, None),
        ({"Content-Digest": f"sha-256=:{b64(b'a')}:"}, None),  # of the part carried, not the file
        ({}, None),
    ],
)
def test_the_stated_sha256_is_read_strictly(headers: dict[str, str], expected: str | None) -> None:
    assert served_sha256(httpx2.Headers(headers)) == expected
