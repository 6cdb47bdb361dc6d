"""Resume benchmark: a download interrupted (Ctrl-C or kill -9) at set moments, then run again to
the end.

    python bench/resume.py [--reps 3] [--quick] [--size-mib 48] [--limit-rate 2m] [--at 1.1,1.5,1.9]
                           [--signals int,kill] [--tools mdl,aria2c] [--variant DIR]... [--json
                           FILE] [--write-results]

Issue 38's interrupt row: ``mdl get URL -o FILE`` and ``aria2c -x16 -s16 -c`` fetch 48 MiB from
nginx's ``/capped/`` (2 MB/s per connection), are interrupted ``--at`` seconds after their spawn,
then run again in the same folder. The measure is the bytes nginx sent in both runs
(``$bytes_sent``) over the file's size: 1.00× means nothing was fetched twice; the target is ≤ 1.05×
at every moment, for both signals. The file's sha256 is checked.
"""

from __future__ import annotations

import argparse
import shutil
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import runner as r

TARGET = 1.05
SIGNALS = {"int": (signal.SIGINT, "Ctrl-C (SIGINT)"), "kill": (signal.SIGKILL, "kill -9")}
COLUMNS = [
    ("tool", "tool"),
    ("signal", "interrupt"),
    ("at", "at s"),
    ("ratio", "fetched / size"),
    ("range", "min–max"),
    ("stopped", "sent before the interrupt"),
    ("requests", "requests"),
    ("runs", "verified runs"),
    ("met", f"≤ {TARGET:g}×"),
]


def one_pair(
    tool: r.Tool,
    sig: str,
    at: float,
    *,
    url: str,
    data: r.DataFile,
    counter: r.RequestCounter,
    work: Path,
) -> dict:
    """Interrupt ``tool`` ``at`` s after its spawn with ``sig``, then run it again in the same
    folder.
    """
    run_dir = work / "run"
    shutil.rmtree(run_dir, ignore_errors=True)
    (run_dir / "out").mkdir(parents=True)
    argv, env = tool.argv(run_dir / "out"), r.clean_env(run_dir, **tool.env)
    with (work / "runs.log").open("ab") as err:
        err.write(f"\n$ {' '.join(argv)}  # {sig} at {at:g} s\n".encode())
        err.flush()
        mark = counter.mark()
        started = time.perf_counter()
        # Its own session (our Ctrl-C is not its interrupt), SIGINT at its default even when a
        # background shell started this bench with SIGINT ignored: a Python child would never hear
        # the interrupt it is measured on.
        default_int = lambda: signal.signal(signal.SIGINT, signal.SIG_DFL)  # noqa: E731
        first = subprocess.Popen(
            argv,
            env=env,
            cwd=run_dir,
            stdout=subprocess.DEVNULL,
            stderr=err,
            start_new_session=True,
            preexec_fn=default_int,
        )
        time.sleep(max(0.0, at - (time.perf_counter() - started)))
        early = first.poll() is not None
        if not early:
            first.send_signal(SIGNALS[sig][0])
        try:
            first.wait(timeout=30)
        except subprocess.TimeoutExpired:
            r.kill_group(first.pid)
            first.wait()
        counter.settle()
        before = counter.since(mark)[4]
        second = subprocess.run(
            argv, env=env, cwd=run_dir, stdout=subprocess.DEVNULL, stderr=err, check=False
        )
        counter.settle()
    requests, _, _, _, total = counter.since(mark)
    out = run_dir / "out" / data.path.name
    ok = second.returncode == 0 and out.is_file() and r.sha256_file(out) == data.sha256
    # it finished all the same: the interrupt measured nothing
    early = early or first.returncode == 0
    return {
        "tool": tool.name,
        "signal": sig,
        "at": at,
        "before": before,
        "total": total,
        "requests": requests,
        "ratio": total / data.size,
        "early": early,
        "ok": ok,
    }


def summarize(runs: list[dict], size: int) -> tuple[list[dict[str, str]], list[str]]:
    """Table rows (per tool, signal and moment) and a verdict per judged tool and signal (its
    worst median).
    """
    rows, worst = [], {}
    for key in dict.fromkeys((x["tool"], x["signal"], x["at"]) for x in runs):
        group = [x for x in runs if (x["tool"], x["signal"], x["at"]) == key]
        ratios = [x["ratio"] for x in group if x["ok"]]
        med = statistics.median(ratios) if ratios else float("nan")
        judged = not key[0].startswith("aria2c")
        if judged:
            name = f"{key[0]} {SIGNALS[key[1]][1]}"
            worst[name] = max(worst.get(name, 0.0), med)
        early = sum(x["early"] for x in group)
        rows.append(
            {
                "tool": key[0],
                "signal": SIGNALS[key[1]][1],
                "at": f"{key[2]:g}",
                "ratio": f"{med:.3f}",
                "range": f"{min(ratios):.3f}–{max(ratios):.3f}" if ratios else "-",
                "stopped": f"{statistics.median(x['before'] for x in group) / size:.0%}",
                "requests": f"{statistics.median(x['requests'] for x in group):.0f}",
                "runs": f"{len(ratios)}/{len(group)}" + (f" ({early} early)" if early else ""),
                "met": ("yes" if med <= TARGET else "NO") if judged else "",
            }
        )
    return rows, [
        f"{n}: worst median {v:.3f}× the file (≤ {TARGET:g}×: {'met' if v <= TARGET else 'MISSED'})"
        for n, v in worst.items()
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    r.add_common(parser, reps=3)
    parser.add_argument("--quick", action="store_true", help="1 repetition: a smoke run")
    parser.add_argument("--size-mib", type=int, default=48)
    parser.add_argument(
        "--limit-rate", default="2m", help="nginx limit_rate per connection (default 2m)"
    )
    parser.add_argument(
        "--at", default="1.1,1.5,1.9", help="seconds after the spawn to interrupt (comma-separated)"
    )
    parser.add_argument(
        "--signals", default="int,kill", help="int (Ctrl-C), kill (kill -9), or both"
    )
    parser.add_argument("--tools", default="mdl,aria2c", help="mdl, aria2c, or both")
    parser.add_argument(
        "--write-results", action="store_true", help="rewrite the resume block of bench/RESULTS.md"
    )
    args = r.parse(parser)
    reps = 1 if args.quick and "--reps" not in sys.argv else args.reps
    moments, sigs = (
        [float(s) for s in args.at.split(",") if s],
        [s for s in args.signals.split(",") if s],
    )
    names = [t for t in args.tools.split(",") if t]
    if not set(sigs) <= set(SIGNALS) or not set(names) <= {"mdl", "aria2c"}:
        parser.error("--signals takes int and kill, --tools mdl and aria2c")
    r.ensure_tools(("nginx", "aria2c") if "aria2c" in names else ("nginx",))
    r.interruptible()
    data = r.write_file(args.workdir / "data" / "big.bin", args.size_mib * r.MiB)
    runs: list[dict] = []
    with r.Nginx(
        data=data.path.parent,
        prefix=args.workdir / "nginx",
        limit_rate=args.limit_rate,
        access_log=args.workdir / "access.log",
    ) as nginx:
        url = f"{nginx.url}/capped/{data.path.name}"
        mdl = r.Tool("mdl", lambda d: r.mdl("get", url, "-o", str(d / data.path.name), "-q"))
        # resumes from its .aria2 control file
        flags = ["-x16", "-s16", "-c", "-q", "--auto-file-renaming=false"]
        aria = r.Tool(
            "aria2c -x16 -s16 -c",
            lambda d: ["aria2c", *flags, "-d", str(d), "-o", data.path.name, url],
        )
        tools = [t for t in (mdl, aria) if t.name.split()[0] in names] + r.variants_of(
            [mdl], args.variant
        )
        counter = r.RequestCounter(nginx.access_log or args.workdir / "access.log")
        try:
            for _, (at, sig, tool) in r.rotations(
                [(a, s, t) for a in moments for s in sigs for t in tools], reps
            ):
                runs.append(
                    one_pair(tool, sig, at, url=url, data=data, counter=counter, work=args.workdir)
                )
                x = runs[-1]
                sys.stderr.write(
                    f"  {tool.name:24} {SIGNALS[sig][1]:16} at {at:g} s: {x['before'] / r.MiB:5.1f}"
                    f" MiB before, {x['total'] / r.MiB:5.1f} MiB in all = {x['ratio']:.3f}× in"
                    f" {x['requests']}"
                    f" requests{'' if x['ok'] else '  FAILED'}{'  (early)' if x['early'] else ''}\n"
                )
        except KeyboardInterrupt:
            sys.stderr.write("bench: interrupted; showing what was measured\n")
    if not runs:
        return 1
    rows, verdicts = summarize(runs, data.size)
    print("\n" + r.table(rows, COLUMNS) + "\n\n" + "\n".join(verdicts))
    r.save_json(args, pairs=runs)
    if args.write_results:
        what = (
            f"Measured {r.now()} with `{args.command}`: {args.size_mib} MiB on `/capped/` (nginx"
            f" `limit_rate {args.limit_rate}` per connection), interrupted at each moment, then run"
            f" again to the end; medians of {reps} runs. `fetched / size` = nginx's `$bytes_sent`"
            " over both runs / the file's size."
        )
        body = "\n".join(
            [what, "", r.table(rows, COLUMNS, markdown=True), "", *(f"- {v}" for v in verdicts)]
        )
        r.write_results("resume", body, "Resume (`bench/resume.py`)")
    return 0 if all(x["ok"] for x in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
