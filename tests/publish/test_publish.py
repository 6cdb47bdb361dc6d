"""`mdl publish` to a real S3 server on loopback (moto, tests/s3server.py), and a fleet node pulling
from it.

Machine A pulls from the Hub stand-in and publishes; machine B pulls with the mirror
``s3://bucket/prefix/{model}/{sha256}`` (each file stored once, by its content) and, on the lock,
must get every byte from the bucket, verified against the lock's hashes.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from pathlib import Path
from typing import Any

import pytest
from runfixtures import HANG, mdl, wait_for
from s3server import ACCESS_KEY, S3, SECRET_KEY, endless
from servers import HubServer, closed_port, make_data
from typer.testing import Result

from mdl.buckets import versions
from mdl.errors import ExitCode

pytestmark = pytest.mark.slow  # every test publishes a 34 MiB multipart body

MiB = 1024 * 1024
BIG = make_data(34 * MiB, seed=71)  # above the 16 MiB part size: a multipart upload of 3 parts
WEIGHTS = make_data(300_003, seed=72)
CONFIG = b'{"model_type": "bert", "hidden_size": 8}\n'
VOCAB = b"[PAD]\n[UNK]\n" * 50
FILES = {
    "config.json": CONFIG,
    "model.safetensors": WEIGHTS,
    "vocab.txt": VOCAB,
    "nested/big.safetensors": BIG,
}
BUCKET = "team-models"
MIRROR = f"s3://{BUCKET}/hub/{{model}}/{{sha256}}"
# the Hub lists an LFS file's sha256, a small git file's only its git blob id
LFS = {"model.safetensors", "nested/big.safetensors"}


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def key(data: bytes, model: str = "tiny") -> str:
    """Where publish stores these bytes: by content."""
    return f"hub/{model}/{sha(data)}"


def manifest_key(result: Result) -> str:
    """The key of the one version manifest a --json publish names."""
    (uri,) = json.loads(result.stdout)["manifests"]
    assert uri.startswith(f"s3://{BUCKET}/hub/.mdl/versions/tiny/"), uri
    return str(uri).removeprefix(f"s3://{BUCKET}/")


def files_of(result: Result) -> dict[str, dict[str, Any]]:
    return {f["path"]: f for f in json.loads(result.stdout)["files"] if f["path"] is not None}


@pytest.fixture
def hub_repo(hub: HubServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> HubServer:
    hub.tiny_commit = hub.add_repo("org/tiny", FILES).sha  # type: ignore[attr-defined]
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    monkeypatch.setenv("MDL_LOG_FILE", str(tmp_path / "mdl.log"))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "catalog.toml").write_text(
        '[models.tiny]\nrepo = "org/tiny"\n\n[models.other]\nrepo = "org/tiny"\n'
    )
    return hub


@pytest.fixture
def seeded(hub_repo: HubServer, s3: S3, tmp_path: Path) -> Path:
    """Machine A has pulled `tiny` from the Hub; the bucket exists, empty."""
    s3.client().create_bucket(Bucket=BUCKET)
    pulled = mdl("pull", "tiny", "--dest", str(tmp_path / "a"))
    assert pulled.exit_code == 0, pulled.stderr
    s3.cutter.writes.clear()
    return tmp_path / "a"


def uploads(s3: S3, key_part: str) -> int:
    """Writes that carried a file's bytes to the key (a PUT, or a multipart's parts)."""
    return sum(
        1 for method, path, _ in s3.cutter.writes if method == "PUT" and path.endswith(key_part)
    )


def test_publish_then_a_fresh_node_pulls_from_the_bucket_with_zero_hub_bytes(
    seeded: Path, s3: S3, hub_repo: HubServer, tmp_path: Path
) -> None:
    published = mdl(
        "publish", "tiny", "--to", f"s3://{BUCKET}/hub/", "--dest", str(seeded), "--json"
    )
    assert published.exit_code == 0, published.stderr
    doc = json.loads(published.stdout)
    assert doc["ok"] and doc["to"] == f"s3://{BUCKET}/hub" and doc["template"] == MIRROR
    (version,) = doc["versions"]
    vid = version["id"]
    assert version == {
        "model": "tiny",
        "id": vid,
        "manifest": f"s3://{BUCKET}/hub/.mdl/versions/tiny/{vid}.json",
        "action": "uploaded",
        "warning": None,
    }
    assert doc["manifests"] == [version["manifest"]]
    assert {
        p: (f["action"], f["size"], f["sha256"], f["dest"]) for p, f in files_of(published).items()
    } == {p: ("uploaded", len(d), sha(d), f"s3://{BUCKET}/{key(d)}") for p, d in FILES.items()}
    client = s3.client()
    listed = client.list_objects_v2(Bucket=BUCKET)["Contents"]
    assert {o["Key"] for o in listed} == {
        *(key(d) for d in FILES.values()),
        f"hub/.mdl/versions/tiny/{vid}.json",
    }, "by content and one version manifest: no object by name, no per-model manifest"
    for data in FILES.values():
        obj = client.get_object(Bucket=BUCKET, Key=key(data), ChecksumMode="ENABLED")
        assert obj["Body"].read() == data
        assert obj["Metadata"]["sha256"] == sha(data)
        assert "ChecksumSHA256" in obj, (
            "uploaded with S3's SHA-256 checksum: the store checks every part"
        )
    head = client.head_object(Bucket=BUCKET, Key=key(CONFIG), ChecksumMode="ENABLED")
    assert base64.b64decode(head["ChecksumSHA256"]).hex() == sha(CONFIG)
    assert sum(1 for _, _, q in s3.cutter.writes if "partNumber=" in q) == 3, (
        "the 34 MiB file went up in 3 parts"
    )
    manifest_doc = client.get_object(Bucket=BUCKET, Key=f"hub/.mdl/versions/tiny/{vid}.json")
    manifest = json.loads(manifest_doc["Body"].read())
    assert manifest["model"] == "tiny" and manifest["commit"] == hub_repo.tiny_commit  # type: ignore[attr-defined]
    assert manifest["id"] == vid and manifest["signature"] is None
    assert {f["path"]: (f["size"], f["sha256"]) for f in manifest["files"]} == {
        p: (len(d), sha(d)) for p, d in FILES.items()
    }
    assert "tiny → s3://team-models/hub/tiny/" not in published.stderr, "--json: the document says"
    human = mdl("publish", "tiny", "--to", MIRROR, "--dest", str(seeded))  # the nodes' template
    assert human.exit_code == 0, human.stderr
    assert f"version {vid[:12]}, manifest s3://{BUCKET}/hub/.mdl/versions/tiny/{vid}.json" in (
        human.stderr
    )
    assert f"nodes: --mirror '{MIRROR}'" in human.stderr

    # Node C without a lock (as an mdl 0.9 node pulls): a file whose sha256 the Hub lists comes
    # from the bucket, a small git file (only its git blob id listed) from the origin.
    unlocked = mdl("pull", "tiny", "--dest", str(tmp_path / "c"), "--mirror", MIRROR, "--json")
    assert unlocked.exit_code == 0, unlocked.stderr
    mirrors = {p: f.get("mirror") for p, f in files_of(unlocked).items()}
    assert mirrors == {p: f"s3://{BUCKET}/{key(d)}" if p in LFS else None for p, d in FILES.items()}

    # Node B on the lock: a fresh destination, the bucket as its mirror; the Hub is asked nothing.
    assert mdl("lock", "tiny").exit_code == 0
    hub_repo.log.clear()
    hub_repo.cdn.log.clear()
    pulled = mdl(
        "pull", "tiny", "--locked", "--dest", str(tmp_path / "b"), "--mirror", MIRROR, "--json"
    )
    assert pulled.exit_code == 0, pulled.stderr
    assert hub_repo.cdn.log.body_bytes() == 0 and hub_repo.cdn.log.records() == []
    assert not [r for r in hub_repo.log.records(method="GET") if "/resolve/" in r.url_path]
    for path, data in FILES.items():
        assert (tmp_path / "b" / "tiny" / path).read_bytes() == data
    mirrors = {p: f.get("mirror") for p, f in files_of(pulled).items()}
    assert mirrors == {p: f"s3://{BUCKET}/{key(d)}" for p, d in FILES.items()}

    assert (
        "X-Amz-Signature" not in pulled.stdout + pulled.stderr + (tmp_path / "mdl.log").read_text()
    )


def test_a_rerun_skips_what_is_there_and_an_interrupted_publish_resumes(
    seeded: Path, s3: S3, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    s3.cutter.fail_writes_after = 2  # two small files get up, then the store fails every write
    first = mdl("publish", "tiny", "--to", f"s3://{BUCKET}/hub", "--dest", str(seeded), "--json")
    assert first.exit_code == ExitCode.NETWORK, first.output
    done = {p for p, f in files_of(first).items() if f["action"] == "uploaded"}
    assert 1 <= len(done) < len(FILES)
    assert json.loads(first.stdout)["manifests"] == []
    assert "Contents" not in s3.client().list_objects_v2(Bucket=BUCKET, Prefix="hub/.mdl/"), (
        "no manifest yet"
    )
    assert s3.client().list_multipart_uploads(Bucket=BUCKET).get("Uploads", []) == []

    s3.cutter.fail_writes_after = None
    s3.cutter.writes.clear()
    second = mdl("publish", "tiny", "--to", f"s3://{BUCKET}/hub", "--dest", str(seeded), "--json")
    assert second.exit_code == 0, second.output
    actions = {p: f["action"] for p, f in files_of(second).items()}
    assert {p for p, a in actions.items() if a == "skipped"} == done
    for path in done:
        assert uploads(s3, f"/tiny/{sha(FILES[path])}") == 0, f"{path} was sent again"
    for path in set(FILES) - done:
        assert uploads(s3, f"/tiny/{sha(FILES[path])}") >= 1

    s3.cutter.writes.clear()
    third = mdl("publish", "tiny", "--to", f"s3://{BUCKET}/hub", "--dest", str(seeded))
    assert third.exit_code == 0, third.output
    assert s3.cutter.writes == [], "nothing changed: no object and no manifest is written again"
    assert "4 skipped" in third.stderr


def test_an_object_that_changed_in_the_bucket_is_uploaded_again(seeded: Path, s3: S3) -> None:
    assert (
        mdl("publish", "tiny", "--to", f"s3://{BUCKET}/hub", "--dest", str(seeded)).exit_code == 0
    )
    # same size, other bytes, no sha256 of ours
    s3.put(BUCKET, key(VOCAB), b"X" * len(VOCAB))
    again = mdl("publish", "tiny", "--to", f"s3://{BUCKET}/hub", "--dest", str(seeded), "--json")
    assert again.exit_code == 0, again.output
    assert files_of(again)["vocab.txt"]["action"] == "uploaded"
    assert s3.client().get_object(Bucket=BUCKET, Key=key(VOCAB))["Body"].read() == VOCAB


def test_a_tampered_object_is_caught_and_the_origin_serves_that_file(
    seeded: Path, s3: S3, hub_repo: HubServer, tmp_path: Path
) -> None:
    assert (
        mdl("publish", "tiny", "--to", f"s3://{BUCKET}/hub", "--dest", str(seeded)).exit_code == 0
    )
    evil = bytearray(WEIGHTS)
    evil[1000] ^= 0xFF
    s3.put(BUCKET, key(WEIGHTS), bytes(evil))
    hub_repo.cdn.log.clear()
    pulled = mdl("pull", "tiny", "--dest", str(tmp_path / "b"), "--mirror", MIRROR, "--json")
    assert pulled.exit_code == 0, pulled.stderr
    assert (tmp_path / "b" / "tiny" / "model.safetensors").read_bytes() == WEIGHTS
    got = files_of(pulled)
    assert "mirror" not in got["model.safetensors"], "the tampered file came from the origin"
    assert got["nested/big.safetensors"]["mirror"] == f"s3://{BUCKET}/{key(BIG)}"
    assert hub_repo.cdn.log.body_bytes() == len(WEIGHTS)
    assert pulled.stderr.count("mirror") == 1, pulled.stderr
    # which object, and the one command that repairs it (stderr and --json)
    command = f"mdl publish tiny --to s3://{BUCKET}/hub"
    said = f"tiny/model.safetensors: mirror s3://{BUCKET}/{key(WEIGHTS)} holds bad bytes"
    assert said in pulled.stderr and f"repair it: {command}\n" in pulled.stderr, pulled.stderr
    warning = got["model.safetensors"]["warning"]
    assert warning.startswith(said) and warning.endswith(f"repair it: {command}"), warning
    # run where the file was just verified, it replaces the object; the next node reads it
    repaired = mdl(*command.split()[1:], "--dest", str(tmp_path / "b"), "--json")
    assert repaired.exit_code == 0, repaired.stderr
    assert files_of(repaired)["model.safetensors"]["action"] == "uploaded"
    body = s3.client().get_object(Bucket=BUCKET, Key=key(WEIGHTS))["Body"].read()
    assert body == WEIGHTS
    hub_repo.cdn.log.clear()
    healed = mdl("pull", "tiny", "--dest", str(tmp_path / "c"), "--mirror", MIRROR, "--json")
    assert healed.exit_code == 0 and "mirror" not in healed.stderr, healed.stderr
    assert hub_repo.cdn.log.body_bytes() == 0


def test_a_bucket_that_is_stale_or_gone_falls_back_to_the_origin(
    seeded: Path, s3: S3, hub_repo: HubServer, tmp_path: Path
) -> None:
    # Stale: the bucket holds only model.safetensors; the rest comes from the origin, one warning
    # per missing file.
    s3.put(BUCKET, key(WEIGHTS), WEIGHTS)
    stale = mdl("pull", "tiny", "--dest", str(tmp_path / "b"), "--mirror", MIRROR, "--json")
    assert stale.exit_code == 0, stale.stderr
    assert files_of(stale)["model.safetensors"]["mirror"] == f"s3://{BUCKET}/{key(WEIGHTS)}"
    assert all("mirror" not in f for p, f in files_of(stale).items() if p != "model.safetensors")
    assert (
        f"tiny/nested/big.safetensors: mirror s3://{BUCKET}/{key(BIG)} failed (not in the bucket)"
        in stale.stderr
    )
    # Gone: no such bucket. One warning for the run, every file from the origin.
    gone = mdl(
        "pull",
        "tiny",
        "--dest",
        str(tmp_path / "c"),
        "--mirror",
        "s3://no-such-bucket/hub/{model}/{sha256}",
    )
    assert gone.exit_code == 0, gone.stderr
    assert gone.stderr.count("no-such-bucket") == 1, gone.stderr
    assert "is not usable (no such bucket); using the next source" in gone.stderr
    for path, data in FILES.items():
        assert (tmp_path / "c" / "tiny" / path).read_bytes() == data


def test_a_mirror_with_its_own_endpoint_in_the_catalog(
    seeded: Path, s3: S3, hub_repo: HubServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert (
        mdl("publish", "tiny", "--to", f"s3://{BUCKET}/hub", "--dest", str(seeded)).exit_code == 0
    )
    monkeypatch.delenv("AWS_ENDPOINT_URL")  # only the catalog says where the store is
    catalog = tmp_path / "node.toml"
    catalog.write_text(
        f'[settings]\nmirrors = [{{ url = "{MIRROR}", endpoint = "{s3.endpoint}" }}]\n\n'
        '[models.tiny]\nrepo = "org/tiny"\n'
    )
    hub_repo.cdn.log.clear()
    pulled = mdl("pull", "tiny", "--catalog", str(catalog), "--dest", str(tmp_path / "b"), "--json")
    assert pulled.exit_code == 0, pulled.stderr
    assert hub_repo.cdn.log.body_bytes() == 0
    assert all(f.get("mirror") for p, f in files_of(pulled).items() if p in LFS)


def test_publish_of_a_locked_model_names_the_version_its_lock_pins(
    seeded: Path, s3: S3, hub_repo: HubServer, tmp_path: Path
) -> None:
    """The manifest is named by the version id a lock finds it by (its pinned files' paths, sizes
    and sha256), and carries the lock's commit."""
    assert mdl("lock", "tiny").exit_code == 0
    published = mdl(
        "publish", "tiny", "--to", f"s3://{BUCKET}/hub", "--dest", str(seeded), "--locked", "--json"
    )
    assert published.exit_code == 0, published.output
    vid = versions.version_id([(p, len(d), sha(d)) for p, d in FILES.items()])
    assert manifest_key(published) == f"hub/.mdl/versions/tiny/{vid}.json"
    manifest = json.loads(
        s3.client().get_object(Bucket=BUCKET, Key=manifest_key(published))["Body"].read()
    )
    assert manifest["commit"] == hub_repo.tiny_commit  # type: ignore[attr-defined]
    assert {f["path"]: f["sha256"] for f in manifest["files"]} == {
        p: sha(d) for p, d in FILES.items()
    }


def test_a_file_changed_on_disk_is_re_hashed_and_never_published(seeded: Path, s3: S3) -> None:
    touched = seeded / "tiny" / "config.json"
    # record stale, same bytes
    os.utime(touched, ns=(touched.stat().st_atime_ns, touched.stat().st_mtime_ns + 10**9))
    corrupt = seeded / "tiny" / "vocab.txt"
    corrupt.write_bytes(b"Y" * len(VOCAB))
    result = mdl("publish", "tiny", "--to", f"s3://{BUCKET}/hub", "--dest", str(seeded), "--json")
    assert result.exit_code == ExitCode.INTEGRITY, result.output
    got = files_of(result)
    assert got["config.json"]["action"] == "uploaded", (
        "a stale record is re-hashed, and the same bytes go up"
    )
    assert got["vocab.txt"]["action"] == "failed" and "sha256 mismatch" in got["vocab.txt"]["error"]
    keys = [o["Key"] for o in s3.client().list_objects_v2(Bucket=BUCKET).get("Contents", [])]
    assert key(VOCAB) not in keys and key(b"Y" * len(VOCAB)) not in keys
    assert not [k for k in keys if k.startswith("hub/.mdl/")], (
        "an incomplete model gets no manifest"
    )
    assert "tiny/vocab.txt" in result.stderr


def test_a_model_never_pulled_is_exit_4(seeded: Path, s3: S3) -> None:
    result = mdl("publish", "other", "--to", f"s3://{BUCKET}/hub", "--dest", str(seeded))
    assert result.exit_code == ExitCode.NOT_FOUND, result.output
    assert "other: not on this disk" in result.stderr
    assert "mdl pull other" in result.stderr


def test_a_listing_of_the_models_folder_that_never_ends_is_exit_5(seeded: Path, s3: S3) -> None:
    """Every page says more follow, with a new token, and names the same objects again: publish
    stops at the second page, naming the folder (no wait for ever, nothing uploaded)."""
    to = ("--to", f"s3://{BUCKET}/hub", "--dest", str(seeded))
    assert mdl("publish", "tiny", *to).exit_code == 0
    s3.cutter.writes.clear()
    told = iter(range(200))  # then the store's honest first page (the old code ends)
    s3.cutter.listings = lambda query, body: endless(query, body) if next(told, -1) >= 0 else body
    result = mdl("publish", "tiny", *to)
    assert result.exit_code == ExitCode.NETWORK, result.output
    assert f"s3://{BUCKET}/hub/tiny/: a hostile listing names" in result.stderr
    assert s3.cutter.writes == []


def test_a_missing_bucket_is_exit_4_and_denied_is_exit_3(
    seeded: Path, s3: S3, monkeypatch: pytest.MonkeyPatch
) -> None:
    missing = mdl("publish", "tiny", "--to", "s3://absent-bucket/hub", "--dest", str(seeded))
    assert missing.exit_code == ExitCode.NOT_FOUND, missing.output
    assert "no such bucket 'absent-bucket'" in missing.stderr
    assert "Traceback" not in missing.output

    from moto.core.authorization import enable_iam_authentication

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAUNKNOWNUSER00000")
    with enable_iam_authentication():
        denied = mdl(
            "publish", "tiny", "--to", f"s3://{BUCKET}/hub", "--dest", str(seeded), "--json"
        )
    assert denied.exit_code == ExitCode.AUTH, denied.output
    assert "access denied" in denied.stderr
    assert json.loads(denied.stdout)["error"]["code"] == ExitCode.AUTH
    assert "Contents" not in s3.client().list_objects_v2(Bucket=BUCKET)


@pytest.mark.parametrize(
    "to",
    [
        "",
        "https://example.com/x",
        "s3://",
        "s3://a/../b",
        "s3://bad_bucket!/x",
        "s3://b//x",
        "s3://bkt-1/hub/{model}/{path}",
        "s3://bkt-1/hub/{model}/{commit}/{sha256}",
        "s3://bkt-1/hub/{sha256}",
    ],
)
def test_a_bad_target_is_exit_2_naming_it(to: str, seeded: Path) -> None:
    args = ["publish", "tiny", "--dest", str(seeded)] + (["--to", to] if to else [])
    result = mdl(*args)
    assert result.exit_code == ExitCode.USAGE, result.output
    assert "--to" in result.stderr


def test_secrets_never_shown(seeded: Path, s3: S3, tmp_path: Path) -> None:
    result = mdl(
        "publish", "tiny", "--to", f"s3://{BUCKET}/hub", "--dest", str(seeded), "--json", "-v"
    )
    assert result.exit_code == 0, result.output
    pulled = mdl("pull", "tiny", "--dest", str(tmp_path / "b"), "--mirror", MIRROR, "--json", "-v")
    assert pulled.exit_code == 0, pulled.output
    log = (tmp_path / "mdl.log").read_text()
    for text in (result.stdout, result.stderr, pulled.stdout, pulled.stderr, log):
        assert SECRET_KEY not in text and ACCESS_KEY not in text
        assert "X-Amz-Signature" not in text and "Signature=" not in text
    record = (tmp_path / "b" / ".mdl").rglob("*.json")
    assert all(ACCESS_KEY not in p.read_text() and "X-Amz" not in p.read_text() for p in record)


def test_ctrl_c_mid_publish_exits_130_leaves_no_open_upload_and_the_rerun_finishes(
    seeded: Path, s3: S3, tmp_path: Path
) -> None:
    import signal
    import subprocess
    import sys
    import threading

    # every part held until the SIGINT was sent: the publish is mid-upload however fast it runs
    s3.cutter.hold_parts = sent = threading.Event()
    command = [
        sys.executable,
        "-m",
        "mdl",
        "publish",
        "tiny",
        "--to",
        f"s3://{BUCKET}/hub",
        "--dest",
        str(seeded),
    ]
    proc = subprocess.Popen(command, cwd=tmp_path, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(
            lambda: (
                any("partNumber=" in q for _, _, q in s3.cutter.writes) or proc.poll() is not None
            ),
            what="the big file's parts",
        )
        proc.send_signal(signal.SIGINT)
        sent.set()
        _, stderr = proc.communicate(timeout=HANG)
    finally:
        sent.set()
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == ExitCode.INTERRUPTED, stderr
    assert "interrupted" in stderr and "Traceback" not in stderr
    client = s3.client()
    assert client.list_multipart_uploads(Bucket=BUCKET).get("Uploads", []) == [], (
        "the cut multipart was aborted"
    )
    keys = {o["Key"] for o in client.list_objects_v2(Bucket=BUCKET).get("Contents", [])}
    assert key(BIG) not in keys and not [k for k in keys if k.startswith("hub/.mdl/")]

    s3.cutter.hold_parts = None
    again = mdl("publish", "tiny", "--to", f"s3://{BUCKET}/hub", "--dest", str(seeded), "--json")
    assert again.exit_code == 0, again.output
    assert client.get_object(Bucket=BUCKET, Key=key(BIG))["Body"].read() == BIG
    done_before = {p for p, d in FILES.items() if key(d) in keys}
    assert {p for p, f in files_of(again).items() if f["action"] == "skipped"} == done_before


def test_a_ctrl_c_that_wakes_no_wait_is_heard_before_the_multipart_is_completed(
    s3: S3, tmp_path: Path
) -> None:
    """A SIGINT is taken by whichever thread the kernel gives it (another one, when the main
    thread had it blocked for a moment, as in creating a thread): Python's handler is then due in
    the main thread, but its wait is not woken. Heard only when an upload ends, the big file's
    multipart upload would be completed after the Ctrl-C; heard before it completes, it is aborted.
    ``_thread.interrupt_main`` is such a signal: the handler due, no wait woken."""
    import _thread
    import threading

    from mdl.errors import InterruptedByUserError
    from mdl.progress import NullProgress
    from mdl.upload._bucket import Bucket, ReadyFile

    big = tmp_path / "big.safetensors"
    big.write_bytes(BIG)
    client = s3.client()
    client.create_bucket(Bucket=BUCKET)
    s3.cutter.hold_parts = held = threading.Event()

    def interrupt() -> None:
        wait_for(lambda: any("partNumber=" in q for _, _, q in s3.cutter.writes), what="a part")
        _thread.interrupt_main()  # (the main thread waits on the upload: it is not woken)
        held.set()

    threading.Thread(target=interrupt, daemon=True).start()
    ready = ReadyFile("tiny", "nested/big.safetensors", big, len(BIG), sha(BIG), "hf://org/tiny")
    with pytest.raises(InterruptedByUserError):
        Bucket(f"s3://{BUCKET}/hub").send([ready], progress=NullProgress())
    assert client.list_multipart_uploads(Bucket=BUCKET).get("Uploads", []) == []
    keys = {o["Key"] for o in client.list_objects_v2(Bucket=BUCKET).get("Contents", [])}
    assert key(BIG) not in keys, "completed after the Ctrl-C"


def test_an_upload_s_own_error_ends_the_send_and_the_others_are_made_whole(tmp_path: Path) -> None:
    """An upload that fails with an error of its own (not mdl's: a bug) ends ``send`` with it; an
    upload about to be made whole once this thread waits no more goes on without its leave, as
    before it asked (none waits for a leave nobody gives: the send returns)."""
    import sys
    import threading

    from mdl.progress import NullProgress
    from mdl.upload._bucket import Bucket, ReadyFile

    (tmp_path / "bucket").mkdir()
    bucket = Bucket(f"file://{tmp_path}/bucket")
    writer, failed = bucket.writer, threading.Event()
    sending: list[int] = []

    def shutting_down() -> bool:  # the sending thread left its loop: in the pool's shutdown
        frame = sys._current_frames().get(sending[0])
        while frame is not None and frame.f_code.co_name != "shutdown":
            frame = frame.f_back
        return frame is not None

    class Writer:
        def __getattr__(self, name: str) -> Any:
            return getattr(writer, name)

        def upload(self, uri: str, path: Path, **kw: Any) -> Any:
            if path.name == "bad":
                failed.set()
                raise RuntimeError("a bug in one upload")
            failed.wait(HANG)
            wait_for(shutting_down, what="the send to wait no more")
            return writer.upload(uri, path, **kw)

    bucket.writer = Writer()  # type: ignore[assignment]
    files = []
    for name in ("good", "bad"):
        (tmp_path / name).write_bytes(name.encode() * 1000)
        data = (tmp_path / name).read_bytes()
        files.append(ReadyFile("m", name, tmp_path / name, len(data), sha(data), "hf://o/m"))
    ended: list[BaseException] = []

    def send() -> None:
        sending.append(threading.get_ident())
        try:
            bucket.send(files, progress=NullProgress())
        except BaseException as exc:  # (what it ended with, asserted below)
            ended.append(exc)

    thread = threading.Thread(target=send, daemon=True)
    thread.start()
    thread.join(HANG)
    assert not thread.is_alive(), "the send waits for a leave nobody gives"
    assert [repr(e) for e in ended] == ["RuntimeError('a bug in one upload')"]
    good = b"good" * 1000  # (content-addressed: the object is named by its sha256)
    assert (tmp_path / "bucket" / "m" / sha(good)).read_bytes() == good


def test_a_mirror_endpoint_nothing_listens_on_is_warned_about_once(
    hub_repo: HubServer, s3: S3, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dead = f"http://127.0.0.1:{closed_port()}"
    catalog = tmp_path / "dead.toml"
    catalog.write_text(
        f'[settings]\nmirrors = [{{ url = "{MIRROR}", endpoint = "{dead}"'
        ' }]\n\n[models.tiny]\nrepo = "org/tiny"\n'
    )
    pulled = mdl("pull", "tiny", "--catalog", str(catalog), "--dest", str(tmp_path / "b"), "--json")
    assert pulled.exit_code == 0, pulled.stderr
    assert pulled.stderr.count("is not usable") == 1, pulled.stderr
    assert all("mirror" not in f for f in files_of(pulled).values())
    assert (tmp_path / "b" / "tiny" / "nested" / "big.safetensors").read_bytes() == BIG


def test_an_unusable_endpoint_is_exit_2_for_publish_and_the_origin_for_pull(
    seeded: Path, s3: S3, hub_repo: HubServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    flag = mdl(
        "publish",
        "tiny",
        "--to",
        f"s3://{BUCKET}/hub",
        "--dest",
        str(seeded),
        "--endpoint-url",
        "http://",
    )
    assert flag.exit_code == ExitCode.USAGE, flag.output
    assert "--endpoint-url" in flag.stderr
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://")
    env = mdl("publish", "tiny", "--to", f"s3://{BUCKET}/hub", "--dest", str(seeded))
    assert env.exit_code == ExitCode.USAGE, env.output
    assert "Traceback" not in env.output and "internal error" not in env.stderr
    pulled = mdl("pull", "tiny", "--dest", str(tmp_path / "b"), "--mirror", MIRROR)
    assert pulled.exit_code == 0, pulled.stderr
    assert pulled.stderr.count("is not usable") == 1, pulled.stderr
    assert (tmp_path / "b" / "tiny" / "config.json").read_bytes() == CONFIG
