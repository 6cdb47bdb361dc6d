"""``--lock PATH`` (issue 76's rollback): the commands that read catalog.lock read that lock (and the
part hashes beside it) instead, the catalog still giving the settings, the mirrors and the signer.
``mdl pull --frozen --lock releases/v1.lock`` deploys v1 from the bucket or folder alone, the origin
down; a lock that is not there is exit 2 naming it."""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path

import pytest
from releases import CATALOG, RELEASES, publish, write_locks
from runfixtures import mdl, use_catalog
from s3server import S3, s3, s3_server  # noqa: F401

from mdl import api
from mdl.buckets import versions
from mdl.endpoint.serving import ServeReport
from mdl.lockfile.parts import parts_beside

DOWN = "http://127.0.0.1:9"  # the origin: nothing listens


@pytest.fixture
def node(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, prefix: str) -> Path:
    """A node of the fleet: the team's catalog (at v3, its mirror the published prefix) and the
    kept locks in releases/, every release published, the origin down. Its model folder."""
    project = tmp_path / "project"
    project.mkdir()
    use_catalog(project, monkeypatch, None, endpoint=DOWN)
    monkeypatch.chdir(project)
    write_locks(project)
    mirror = versions.template_of(prefix)
    (project / "catalog.toml").write_text(f'[settings]\nmirrors = ["{mirror}"]\n\n{CATALOG}')
    publish(prefix, tmp_path / "scratch", "v1", "v2", "v3")
    return project / "models" / "llm"


def tree(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and ".mdl" not in p.relative_to(folder).parts
    }


def sums(release: str) -> dict[str, str]:
    return {path: hashlib.sha256(data).hexdigest() for path, data in RELEASES[release].items()}


@pytest.mark.parametrize("mode", ["--frozen", "--locked"])
def test_a_rollback_is_one_command_from_the_mirror_alone(node: Path, mode: str) -> None:
    """v3 deployed by catalog.lock, then v1 by its kept lock: exit 0, v1's bytes, the origin
    (down) never needed; verify holds the files to the lock given, not to catalog.lock."""
    current = mdl("pull", "--frozen", "--all")
    assert current.exit_code == 0, current.stderr
    assert tree(node) == sums("v3")
    # v2's lock pins a shard v3 changed (v3's is on disk, under the same name): not v2
    other = mdl("verify", "--frozen", "--lock", "releases/v2.lock", "--all")
    assert other.exit_code == 4, other.stderr
    assert "outdated: v2.lock pins sha256" in other.stderr
    back = mdl("pull", mode, "--lock", "releases/v1.lock", "--all")
    assert back.exit_code == 0, back.stderr
    assert tree(node) == sums("v1"), "v1 alone: none of v3's shards beside it"
    assert mdl("verify", mode, "--lock", "releases/v1.lock", "--all").exit_code == 0


def test_a_fresh_machine_deploys_each_kept_version(node: Path, tmp_path: Path) -> None:
    for release in RELEASES:
        dest = tmp_path / f"machine-{release}"
        lock = f"releases/{release}.lock"
        result = mdl("pull", "--frozen", "--lock", lock, "--all", "--dest", str(dest))
        assert result.exit_code == 0, result.stderr
        assert tree(dest / "llm") == sums(release)


def test_the_part_hashes_beside_the_lock_given_are_read(node: Path) -> None:
    """Bad ones beside releases/v1.lock are said, named by their file (catalog.lock's are not
    looked at), and each file is checked whole."""
    beside = parts_beside(Path("releases/v1.lock"))
    beside.write_text("not part hashes\n")
    result = mdl("pull", "--frozen", "--lock", "releases/v1.lock", "--all")
    assert result.exit_code == 0, result.stderr
    assert str(beside.name) in result.stderr and "checked whole" in result.stderr


def test_the_lock_may_come_from_the_environment(
    node: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MDL_LOCK_FILE", "releases/v2.lock")
    result = mdl("pull", "--frozen", "--all")
    assert result.exit_code == 0, result.stderr
    assert tree(node) == sums("v2")


@pytest.mark.parametrize(
    ("lock", "words"),
    [
        ("releases/nope.lock", "--lock: releases/nope.lock: no such file"),
        ("releases", "--lock: releases: not a file"),
        ("catalog.toml", "catalog.toml"),
    ],
)
@pytest.mark.parametrize("command", ["pull", "verify", "show", "publish"])
def test_a_lock_that_is_not_there_is_exit_2_naming_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, lock: str, words: str, command: str
) -> None:
    project = tmp_path / "project"
    project.mkdir()
    use_catalog(project, monkeypatch, None, endpoint=DOWN)
    monkeypatch.chdir(project)
    write_locks(project)
    args = {"show": ["llm"], "publish": ["--all", "--to", f"file://{tmp_path}/out"]}
    for mode in ("--frozen", "--locked"):
        result = mdl(command, mode, "--lock", lock, *args.get(command, ["--all"]))
        assert result.exit_code == 2, (mode, result.stdout, result.stderr)
        assert words in result.stderr
    assert not (project / "models").exists()


def test_serve_pull_deploys_the_kept_lock_given(node: Path) -> None:
    """``serve --pull --frozen --lock releases/v1.lock``: the endpoint fills from the mirror alone,
    v1's bytes, then stops when told."""
    stop, pulled = threading.Event(), []

    def heard(report: ServeReport) -> None:
        pulled.append(report.pulled)
        stop.set()

    served: list[ServeReport] = []
    runner = threading.Thread(
        target=lambda: served.append(
            api.serve(
                all=True,
                pull=True,
                port=0,
                frozen=True,
                lock_file="releases/v1.lock",
                on_pulled=heard,
                stop=stop,
            )
        )
    )
    runner.start()
    finished = stop.wait(120)
    stop.set()  # (a pull that never ended: the serve stops all the same)
    runner.join(60)
    assert finished and not runner.is_alive()
    assert pulled[0] is not None and pulled[0].ok, pulled[0]
    assert tree(node) == sums("v1")
