"""Signed pulls: what checking a model.sig costs on top of the same pull unsigned, and against the way users check
one today (pull, then ``model_signing verify key``, which hashes the whole model again).

    python bench/bench_signed.py [--reps N] [--mib 200] [--workdir DIR]

A loopback nginx serves a 3-file model (``--mib`` in all, incompressible) behind the Hub stand-in; the repo
carries a ``model.sig`` made by ``model_signing sign key``. Each rep, alternating the order, runs in a fresh
destination: ``mdl pull`` with the catalog naming the signer's key, ``mdl pull`` without it, and
``model_signing verify key`` on the unsigned pull's folder. It reports the median CPU seconds (user + sys of the
process and its children, GNU time) and wall seconds of each, and the ratios the issue asks for (a signed pull at
most 1.1x the CPU of an unsigned one), a re-pull of the unchanged model (what a cron run pays), and ``mdl verify``
signed and unsigned (each file hashed once either way).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))

from hubstub import NginxCdn, file_content, start_hub  # noqa: E402
from nginx import Nginx, ensure_tools  # noqa: E402
from signkeys import key_pair, official_sign  # noqa: E402

MiB = 1 << 20
SPLIT = (0.70, 0.29, 0.01)  # one big shard, one smaller, one config-sized file


def timed(command: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(CPU seconds, wall seconds) of ``command`` and its children, via GNU time."""
    out = Path(tempfile.mktemp(prefix="mdl-time-"))
    subprocess.run(
        ["/usr/bin/time", "-f", "%U %S %e", "-o", str(out), *command],
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    user, system, wall = (float(x) for x in out.read_text().split()[-3:])
    out.unlink()
    return user + system, wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--mib", type=int, default=200)
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()
    nginx_binary = ensure_tools(("nginx", "time"))["nginx"]
    work = args.workdir or Path(tempfile.mkdtemp(prefix="mdl-bench-signed-"))
    data = work / "data" / "model"
    data.mkdir(parents=True, exist_ok=True)
    names = ("model-00001.safetensors", "model-00002.safetensors", "config.json")
    for name, share in zip(names, SPLIT, strict=True):
        target = data / name
        size = max(1, int(args.mib * MiB * share))
        if not target.exists() or target.stat().st_size != size:
            target.write_bytes(os.urandom(size))
    private, public = key_pair(work / "keys")
    (data / "model.sig").unlink(missing_ok=True)
    signature = official_sign(data, private)
    sig_file = work / "data" / "model.sig"
    sig_file.write_bytes(signature)
    (data / "model.sig").unlink()
    mdl = shutil.which("mdl", path=str(Path(sys.executable).parent)) or "mdl"
    with Nginx(nginx_binary, data=work / "data", prefix=work / "nginx") as server:
        cdn = NginxCdn(server.url, work / "data")
        files = {name: file_content(data / name) for name in names}
        hub = start_hub(cdn, {"org/signed": {**files, "model.sig": file_content(sig_file)}})
        try:
            catalogs = {}
            for kind, table in (("signed", f'\n[models.m.signature]\nkey = "{public}"\n'), ("unsigned", "")):
                catalogs[kind] = work / f"{kind}.toml"
                catalogs[kind].write_text(f'[models.m]\nrepo = "org/signed"\n{table}')
            env = {**os.environ, "HF_ENDPOINT": hub.url, "HF_HUB_DISABLE_TELEMETRY": "1"}
            runs: dict[str, list[tuple[float, float]]] = {}
            for rep in range(args.reps):
                order = ["signed", "unsigned"] if rep % 2 == 0 else ["unsigned", "signed"]
                for kind in order:
                    dest = work / f"dest-{kind}"
                    shutil.rmtree(dest, ignore_errors=True)
                    command = [mdl, "pull", "m", "--catalog", str(catalogs[kind]), "--dest", str(dest), "-q"]
                    runs.setdefault(f"pull {kind}", []).append(timed(command, env))
                for kind in order:  # nothing changed: what a cron run pays
                    command = [mdl, "pull", "m", "--catalog", str(catalogs[kind]), "--dest", str(work / f"dest-{kind}")]
                    runs.setdefault(f"re-pull {kind}", []).append(timed([*command, "-q"], env))
                folder = work / "dest-unsigned" / "m"
                (folder / "model.sig").write_bytes(signature)  # as the unsigned pull has it (it fetched it too)
                judge = [sys.executable, "-m", "model_signing", "verify", "key", str(folder)]
                judge += ["--public_key", str(public), "--signature", str(folder / "model.sig")]
                runs.setdefault("model_signing verify key", []).append(timed(judge, env))
                for kind in ("signed", "unsigned"):
                    command = [
                        mdl,
                        "verify",
                        "m",
                        "--catalog",
                        str(catalogs[kind]),
                        "--dest",
                        str(work / f"dest-{kind}"),
                    ]
                    runs.setdefault(f"verify {kind}", []).append(timed([*command, "-q"], env))
        finally:
            hub.stop()
    median = {
        name: (statistics.median(c for c, _ in got), statistics.median(w for _, w in got)) for name, got in runs.items()
    }
    print(f"{args.mib} MiB in 3 files, {args.reps} reps, medians")
    print(f"{'run':<28} {'CPU s':>8} {'wall s':>8}")
    for name, (cpu, wall) in median.items():
        print(f"{name:<28} {cpu:>8.2f} {wall:>8.2f}")
    signed, unsigned = median["pull signed"][0], median["pull unsigned"][0]
    today = unsigned + median["model_signing verify key"][0]
    print(f"signed/unsigned pull CPU: {signed / unsigned:.3f}x (target <= 1.1x)")
    print(f"signed pull vs unsigned pull + model_signing verify: {signed / today:.3f}x CPU")
    print(f"re-pull signed/unsigned CPU: {median['re-pull signed'][0] / median['re-pull unsigned'][0]:.3f}x")
    print(f"verify signed/unsigned CPU: {median['verify signed'][0] / median['verify unsigned'][0]:.3f}x")


if __name__ == "__main__":
    main()
