"""The raw body read (past the HTTP parser) against the parser path: `mdl get` of one big file from
loopback nginx.

    python bench/raw.py [--file /tmp/mdl-bench/data/fast.bin] [--reps 3] [--strace] [--tree DIR]...
    [--modes on,off]

``mdl get URL --sha256 … -d DEST`` (verified, durable) with the raw reader on (``RAW_LEAST`` as
shipped) and off (``RAW_LEAST`` past any file), alternating: wall, CPU, peak RSS and the requests
and connections nginx saw. ``--strace`` adds one run each under ``strace -c -f`` (the system calls
per byte, and the share of the file the hasher read back: ``-v``'s log line); ``--tree
DIR`` (or ``--variant``) runs another checkout's ``mdl`` beside this one.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
from pathlib import Path

import runner as r

# The CLI with RAW_LEAST set first: "on" keeps the shipped value, "off" reads every body through the
# parser.
RUN = """import sys
import mdl.transfer.body as body
if sys.argv.pop(1) == "off":
    body.RAW_LEAST = 1 << 62
from mdl.__main__ import main
main()
"""
SYSCALLS = (
    "ioctl,mmap,munmap,futex,recvfrom,recvmsg,read,fdatasync,connect,pwrite64,preadv,preadv2,poll"
)
# what the hasher read back, not fed from memory (-v's log line, every attempt's)
READ_BACK = re.compile(r"(\d+) bytes hashed read back")


def strace_counts(path: Path) -> dict[str, int]:
    found = [line.split() for line in path.read_text().splitlines()]
    return {
        p[-1]: int(p[3])
        for p in found
        if len(p) >= 5 and re.fullmatch(r"[\d.]+", p[0]) and p[-1] != "total"
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    r.add_common(parser, reps=3)
    parser.add_argument(
        "--file", type=Path, help="the file to fetch (default: a generated 2 GiB file in --workdir)"
    )
    parser.add_argument(
        "--size-mib", type=int, default=2048, help="size of the generated file (default 2048)"
    )
    parser.add_argument("--strace", action="store_true")
    parser.add_argument(
        "--tree", type=Path, action="append", default=[], help="the same as --variant"
    )
    parser.add_argument("--modes", default="on,off")
    args = r.parse(parser)
    work = args.workdir
    if args.file:
        data = r.DataFile(args.file, args.file.stat().st_size, r.sha256_file(args.file))
    else:
        data = r.write_file(work / "data" / "fast.bin", args.size_mib * r.MiB)
    with r.Nginx(
        data=data.path.parent, prefix=work / "nginx", access_log=work / "access.log"
    ) as nginx:
        url = f"{nginx.url}/fast/{data.path.name}"
        out = r.DataFile(Path(data.path.name), data.size, data.sha256)

        def get(mode: str) -> r.Tool:
            argv = [r.PY, "-c", RUN, mode, "get", url, "--sha256", data.sha256, "-q", "-d"]
            return r.Tool(f"mdl raw {mode}", lambda d: [*argv, str(d)], r.flat(out))

        mine = [get(mode) for mode in args.modes.split(",")]
        tools = mine + r.variants_of(mine, [*args.tree, *args.variant])
        env = r.clean_env(work)
        runs = r.measure(
            tools,
            reps=args.reps,
            work=work,
            env=env,
            sources=[data.path],
            nbytes=data.size,
            counter=r.RequestCounter(work / "access.log"),
        )
        print(r.side_by_side(runs, nbytes=data.size))
        for tool in tools if args.strace else ():
            trace = work / "strace.txt"
            dest = work / "out" / "strace"
            shutil.rmtree(dest, ignore_errors=True)
            dest.mkdir(parents=True)
            argv = [
                "strace",
                "-c",
                "-f",
                "-e",
                f"trace={SYSCALLS}",
                "-o",
                str(trace),
                *tool.argv(dest),
                "-v",
            ]
            logged = work / "strace.log"
            logged.unlink(missing_ok=True)
            run_env = {**env, **tool.env, "MDL_LOG_FILE": str(logged)}
            subprocess.run(argv, env=run_env, cwd=work, stdout=subprocess.DEVNULL, check=True)
            counts = strace_counts(trace)
            print(f"{tool.name} strace: {counts}")
            back = sum(int(n) for n in READ_BACK.findall(logged.read_text()))
            print(f"{tool.name} read back by the hasher: {back} bytes, {back / data.size:.1%}")
    r.save_json(args, runs=runs)


if __name__ == "__main__":
    sys.exit(main())
