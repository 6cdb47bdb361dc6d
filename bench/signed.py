"""Signed pulls: what checking a model.sig costs over the same pull unsigned, and over the way users
check one today (pull, then ``model_signing verify key``, which hashes the whole model again).

    python bench/signed.py [--reps 5] [--mib 200] [--delay MS] [--variant DIR]... [--workdir DIR]
        [--json FILE]

The Hub stand-in serves a 3-file model (``--mib`` in all, via nginx) and a ``model.sig`` made by
``model_signing sign key``. Each round, the order alternating: ``mdl pull`` with the catalog naming
the signer's key and without it, each into a fresh folder; the same pulls again (nothing changed:
what a cron run pays); ``model_signing verify key`` of the unsigned pull's folder; ``mdl verify``
signed and unsigned. Target: a signed pull at most 1.1× the CPU of an unsigned one. ``--delay``
puts the latency proxy (that many ms per request) in front of the servers: what a real network gives
the import of model_signing to hide behind (on loopback, nothing).
"""

from __future__ import annotations

import argparse
import shutil
import sys

import runner as r
from signkeys import key_pair, official_sign  # tests/signkeys.py

SPLIT = {"model-00001.safetensors": 0.70, "model-00002.safetensors": 0.29, "config.json": 0.01}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    r.add_common(parser, reps=5)
    parser.add_argument("--mib", type=int, default=200)
    parser.add_argument("--delay", type=int, default=0, help="ms per request (default 0)")
    args = r.parse(parser)
    work = args.workdir
    model = work / "data" / "model"
    for name, share in SPLIT.items():
        r.write_file(
            model / name, max(1, int(args.mib * r.MiB * share)), meta=work / f"{name}.meta.json"
        )
    signature = official_sign(model, key_pair(work / "keys")[0])
    (work / "data" / "model.sig").write_bytes(signature)
    (model / "model.sig").unlink()
    repo = {name: r.file_content(model / name) for name in SPLIT}
    repo["model.sig"] = r.file_content(work / "data" / "model.sig")
    catalogs = {
        "signed": f'\n[models.m.signature]\nkey = "{work / "keys" / "signer.pub"}"\n',
        "unsigned": "",
    }
    for kind, table in catalogs.items():
        (work / f"{kind}.toml").write_text(f'[models.m]\nrepo = "org/signed"\n{table}')
    runs: dict[str, list[r.Measure]] = {}
    with r.Loopback(work, work / "data", {"org/signed": repo}, delays=[args.delay]) as servers:
        env, log = (
            r.clean_env(work, HF_ENDPOINT=servers.endpoints[args.delay].hub),
            work / "logs" / "runs.log",
        )
        for folder in ["", *args.variant]:  # this tree, then each --variant
            tag, env["PYTHONPATH"] = f" [{folder.name}]" if folder else "", str(folder or r.ROOT)

            def timed(name: str, *argv: str) -> None:
                measured = r.run_measured(argv, env=env, log=log)
                if rep >= 0:  # rep -1: the untimed warm-up round
                    runs.setdefault(name + tag, []).append(measured)

            def mdl(verb: str, kind: str) -> list[str]:
                return r.mdl(
                    verb,
                    "m",
                    "--catalog",
                    str(work / f"{kind}.toml"),
                    "--dest",
                    str(work / kind),
                    "-q",
                )

            for rep, kind in [
                (-1, "signed"),
                (-1, "unsigned"),
                *r.rotations(["signed", "unsigned"], args.reps),
            ]:
                shutil.rmtree(work / kind, ignore_errors=True)
                timed(f"pull {kind}", *mdl("pull", kind))
                timed(f"re-pull {kind}", *mdl("pull", kind))
                timed(f"verify {kind}", *mdl("verify", kind))
                if kind == "unsigned":
                    folder_m = work / "unsigned" / "m"
                    # as the unsigned pull has it (it fetched it too)
                    (folder_m / "model.sig").write_bytes(signature)
                    timed(
                        "model_signing verify key",
                        r.PY,
                        "-m",
                        "model_signing",
                        "verify",
                        "key",
                        str(folder_m),
                        "--public_key",
                        str(work / "keys" / "signer.pub"),
                        "--signature",
                        str(folder_m / "model.sig"),
                    )
    delay = f", {args.delay} ms per request" if args.delay else ""
    print(
        f"\n{args.mib} MiB in 3 files{delay}, {args.reps} rounds; ratio: CPU over the unsigned pull's"
    )
    print(r.side_by_side(runs, baseline="pull unsigned", attr="cpu"))
    cpu = {name: r.median(ms, "cpu") for name, ms in runs.items()}
    for tag in ["", *(f" [{folder.name}]" for folder in args.variant)]:  # each its own ratios
        signed, unsigned = cpu[f"pull signed{tag}"], cpu[f"pull unsigned{tag}"]
        today = unsigned + cpu[f"model_signing verify key{tag}"]
        print(
            f"signed / unsigned pull CPU{tag}: {signed / unsigned:.3f}× (target ≤ 1.1×); signed"
            f" pull / (unsigned pull + model_signing verify): {signed / today:.3f}×"
        )
    r.save_json(args, runs=runs)


if __name__ == "__main__":
    sys.exit(main())
