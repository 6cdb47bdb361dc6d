from __future__ import annotations
import json, subprocess, sys, os
from pathlib import Path
from runfixtures import mdl
from servers import HubServer, make_data
from signing.test_signed_pull import signed_repo, world, write_catalog, FILES  # noqa: F401


def show(*cmd, env=None):
    r = mdl(*cmd, env=env)
    print(cmd, "EXIT", r.exit_code, r.stdout[-2500:], r.stderr[-1500:], repr(r.exception))
    return r


def test_probe_unsigned_then_signed(world: Path, hub: HubServer, tmp_path: Path) -> None:
    _, public, _ = signed_repo(hub, tmp_path)
    hub.commit("org/tiny", {"extra.bin": b"not signed"})
    world.write_text('[models.tiny]\nrepo = "org/tiny"\n')
    show("pull", "tiny")
    write_catalog(world, public)
    show("pull", "tiny")
    show("show", "tiny")
    show("verify", "tiny")
    hub.delete_file("org/tiny", "extra.bin")
    show("pull", "tiny")
    show("show", "tiny")
    show("verify", "tiny")
    print(sorted(str(p.relative_to(tmp_path / "models")) for p in (tmp_path / "models" / "tiny").rglob("*")))


def test_probe_two_models_one_repo_hfcache(world: Path, hub: HubServer, tmp_path: Path, monkeypatch) -> None:
    _, public, _ = signed_repo(hub, tmp_path)
    hub.commit("org/tiny", {"extra.bin": b"not signed"})
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    world.write_text(f'[models.plain]\nrepo = "org/tiny"\n\n[models.tiny]\nrepo = "org/tiny"\n[models.tiny.signature]\nkey = "{public}"\n')
    show("pull", "plain", "tiny", "--layout", "hf-cache")
    show("list", "--layout", "hf-cache")
    show("verify", "tiny", "--layout", "hf-cache")
    show("pull", "tiny", "--layout", "hf-cache")


def test_probe_concurrent(world: Path, hub: HubServer, tmp_path: Path) -> None:
    _, public, _ = signed_repo(hub, tmp_path)
    write_catalog(world, public)
    env = dict(os.environ)
    procs = [subprocess.Popen([sys.executable, "-m", "mdl", "pull", "tiny"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(4)]
    for p in procs:
        out, err = p.communicate(timeout=120)
        print("RC", p.returncode, err[-800:])
