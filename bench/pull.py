"""Pull benchmark: mdl against aria2c, curl, dd, huggingface_hub and the ceiling, on loopback, at
set latencies.

    python bench/pull.py [--reps N] [--quick] [--only KEY,...] [--delays 0,50] [--variant DIR]...
    [--workdir DIR]
                         [--write-results] [--label L] [--json FILE] [--from-json FILE] [--clean]
                         [--serve]

``FAMILY@MS`` runs behind bench/latency.py (MS ms before each answer's first byte), ``@0`` straight
to nginx and the Hub. Medians, ratios and verdicts against issue 38's targets (``--only default``);
bench/README.md has more.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import random
import shutil
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import runner as r
from runner import DataFile, MiB, Scenario, Target, Tool
from startup import write_catalog as startup_catalog

T = Target
TARGETS = {
    "capped": T("within", 0.9),
    "hub": T("faster", 11.0),
    "many": T("faster", 2.0, cpu_within=1.0),
    "presigned": T("within", 1.0),
    "durable": T("within", 1.0, cpu_within=1.0, cpu_vs="ceiling (1 conn)"),
    "presigned-sha256": T("within", 1.2),
    "fast": T("within", 0.8, cpu_within=0.8, rss_mb=250.0),
    "tiny-get": T("absolute", 0.3),
    "help": T("within", 0.5),
    "list": T("within", 0.5),
    "fast-curl": T("within", 1.0, rss_mb=250.0),
}
TARGET_AT = {"many@50": T("faster", 3.0, cpu_within=1.0)}
OFFLINE, SUFFIXED = {"help", "list"}, {"capped", "hub", "many", "presigned", "presigned-sha256"}
GROUPS = {
    # issue 38
    "default": ["presigned@300", "capped@50", "hub@50", "many@0", "many@50", "durable", "tiny-get"],
    "issue15": [
        "capped@0",
        "capped@50",
        "hub@50",
        "many@0",
        "many@50",
        "presigned@300",
        "presigned-sha256@300",
        "fast",
        "fast-curl",
        "tiny-get",
        "help",
        "list",
    ],
    "legacy": ["capped@0", "hub@0", "fast-curl", "many@0"],
}
QUERY = (
    "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=BENCHKEY%2F20261122%2Fus-east-1%2Fs3%2Faws4_request"
    "&X-Amz-Date=20261122T000000Z&X-Amz-Expires=3600&X-Amz-SignedHeaders=host&X-Amz-Signature="
    + "5e"
    * 32
)
HF = "import sys, huggingface_hub as h; h."
HF_FILE = HF + "hf_hub_download('bench/big-capped', 'model.safetensors', local_dir=sys.argv[1])"
HF_SNAP = HF + "snapshot_download('bench/many-files', local_dir=sys.argv[1], max_workers=8)"
# capped, fast, presigned MiB; small, medium
SIZES = {False: (512, 2048, 300, 250, 50), True: (64, 256, 48, 40, 8)}


def parse_only(text: str, delays: list[int]) -> list[tuple[str, int]]:
    """``--only`` items (a group, ``FAMILY@MS``, or ``FAMILY`` = at each ``--delays``) ->
    [(family, ms)].
    """
    out: list[tuple[str, int]] = []
    items = [s.strip() for s in text.split(",") if s.strip()]
    while items:
        if (item := items.pop(0)) in GROUPS:
            items[:0] = GROUPS[item]
            continue
        family, at, ms = item.partition("@")
        if (
            family not in TARGETS
            or (at and not ms.isdigit())
            or (at and int(ms) and family in OFFLINE)
        ):
            raise ValueError(
                f"{item!r}: FAMILY[@MS] of {', '.join(TARGETS)} (no @MS for help and list) or a"
                " group"
            )
        usual = 300 if family.startswith("presigned") else 0
        out += [
            (family, d)
            for d in ([0] if family in OFFLINE else [int(ms)] if at else delays or [usual])
        ]
    return list(dict.fromkeys(out))


def make_data(root: Path, quick: bool) -> tuple[dict[str, DataFile], list[DataFile]]:
    """Four big files and a 300-file repo (small json/txt answered by the Hub, medium LFS shards
    by nginx).
    """
    capped, fast, presigned, small, medium = SIZES[quick]
    sizes = {"capped": capped * MiB, "fast": fast * MiB, "presigned": presigned * MiB, "tiny": 42}
    big = {
        k: r.write_file(root / f"{k}.{'txt' if k == 'tiny' else 'bin'}", n)
        for k, n in sizes.items()
    }
    rng, kinds = random.Random(20261101), (("vocab", "txt"), ("configs", "json"))
    plan = [("config.json", 700)] + [
        (f"{kinds[i % 2][0]}/part-{i:04d}.{kinds[i % 2][1]}", rng.randint(1_000, 50_000))
        for i in range(small - 1)
    ]
    plan += [
        (f"shards/model-{i:05d}.safetensors", rng.randint(1_000_000, 8_000_000))
        for i in range(medium)
    ]
    return big, [r.write_file(root / "many" / rel, size) for rel, size in plan]


# One builder per family: (the context, the delay's endpoints, " at …" for the title) -> the
# Scenario's parts.


def parts(title: str, mine: Tool, other: Tool, files: list[DataFile], **extra: object) -> dict:
    return {
        "title": title,
        "mdl": mine,
        "other": other,
        "nbytes": sum(f.size for f in files),
        "sources": [f.path for f in files],
        **extra,
    }


def capped(c: SimpleNamespace, ep: r.Endpoints, at: str) -> dict:
    f, url, model = c.big["capped"], f"{ep.cdn}/capped/capped.bin", f"capped-{ep.delay_ms}ms"
    mine = c.pull(model, f, "--connections", "16", label="mdl --connections 16")
    return parts(
        f"{f.size // MiB} MiB, CDN capped 40 MiB/s per connection, 16 connections{at}",
        mine,
        r.aria2c(url, f, 16),
        [f],
        variants=[c.pull(model, f)],
        yardsticks=[r.ceiling(url, f, 16)],
    )


def hub(c: SimpleNamespace, ep: r.Endpoints, at: str) -> dict:
    f, env = c.big["capped"], {"HF_ENDPOINT": ep.hub}
    hf = r.python(
        "hf_hub_download", HF_FILE, outputs=lambda d: [(d / "model.safetensors", f)], env=env
    )
    title = f"{f.size // MiB} MiB via the Hub, CDN capped 40 MiB/s per connection, defaults{at}"
    return parts(title, c.pull("hub-capped", f, env=env), hf, [f])


def many(c: SimpleNamespace, ep: r.Endpoints, at: str) -> dict:
    env, extra = {"HF_ENDPOINT": ep.hub}, c.args.many_args.split()
    mine = c.pull(
        "many", c.many[0], *extra, label="mdl " + (" ".join(extra) or "(defaults)"), env=env
    )
    hf = r.python("snapshot_download(max_workers=8)", HF_SNAP, outputs=c.got_many, env=env)
    title = (
        f"{len(c.many)} files ({sum(f.size for f in c.many) // MiB} MiB) via the Hub, defaults{at}"
    )
    return parts(title, mine, hf, c.many)


def presigned(c: SimpleNamespace, ep: r.Endpoints, at: str, sha: bool = False) -> dict:
    f = c.big["presigned"]
    url, check = f"{ep.cdn}/fast/presigned.bin?{QUERY}", [f.sha256] * sha
    mine = c.get(url, f, *(f"--sha256={s}" for s in check))
    aria = r.aria2c(url, f, 8, *(f"--checksum=sha-256={s}" for s in check))
    return parts(
        f"{f.size // MiB} MiB presigned-style URL{' with its sha256' * sha}, uncapped{at}",
        mine,
        aria,
        [f],
        yardsticks=[r.ceiling(url, f, 8)] * (not sha),
    )


def fast(c: SimpleNamespace, ep: r.Endpoints, at: str, other: str = "fast") -> dict:
    f, url = c.big["fast"], f"{ep.cdn}/fast/fast.bin"
    verified = r.shell(
        "curl -o && openssl dgst -sha256 && sync",
        'curl -sSf -o "$1" "$2" && openssl dgst -sha256 "$1" && sync',
        url,
        f,
    )
    what, vs = {
        "fast": ("to a verified file on disk", verified),
        "fast-curl": ("to exit", r.curl(url, f)),
        "durable": ("to a verified, durable file", r.dd(f)),
    }[other]
    synced = r.shell("curl -o && sync", 'curl -sSf -o "$1" "$2" && sync "$1"', url, f)
    yard = [r.ceiling(url, f), r.ceiling(url, f, 8), synced] if other == "durable" else []
    title = f"{f.size // MiB} MiB, uncapped CDN, defaults, time {what}{at}"
    return parts(title, c.pull(f"fast-{ep.delay_ms}ms", f), vs, [f], yardsticks=yard)


def tiny_get(c: SimpleNamespace, ep: r.Endpoints, at: str) -> dict:
    f, url = c.big["tiny"], f"{ep.cdn}/fast/tiny.txt"
    title = f"`mdl get` of a {f.size}-byte file{at}"
    return parts(title, c.get(url, f), r.curl(url, f), [f], rep_factor=5, warmup=True)


def startup(c: SimpleNamespace, ep: r.Endpoints | None, at: str, what: str = "help") -> dict:
    argv = ["--help"] if what == "help" else ["list", "--catalog", str(c.list_catalog)]
    offline = {"HF_HUB_OFFLINE": "1"}
    mine = Tool(f"mdl {argv[0]}", lambda d: r.mdl(*argv), env=offline)
    hf = Tool("hf --help", lambda d: [r.which("hf") or "hf", "--help"], env=offline)
    title = f"start-up: `mdl {argv[0]}`{' of 40 models' * (what == 'list')} against `hf --help`"
    return parts(title, mine, hf, [], rep_factor=5, warmup=True)


FAMILIES = {
    "capped": capped,
    "hub": hub,
    "many": many,
    "presigned": presigned,
    "tiny-get": tiny_get,
    "durable": lambda *a: fast(*a, other="durable"),
    "presigned-sha256": lambda *a: presigned(*a, sha=True),
    "fast": fast,
    "fast-curl": lambda *a: fast(*a, other="fast-curl"),
    "help": startup,
    "list": lambda *a: startup(*a, what="list"),
}


def scenarios(
    selected: list[tuple[str, int]],
    big: dict[str, DataFile],
    many_files: list[DataFile],
    servers: r.Loopback,
    args: argparse.Namespace,
) -> list[Scenario]:
    """The comparisons asked for, in order; writes the catalogs mdl uses."""
    work, root = args.workdir, many_files[0].path.parent
    models = [
        (
            '[models.hub-capped]\nfiles = [{ repo = "bench/big-capped", path = "model.safetensors"'
            " }]\n"
        ),
        '[models.many]\nrepo = "bench/many-files"\n',
    ]
    for d, ep in servers.endpoints.items():
        for name in ("capped", "fast"):
            f, url = big[name], f"{ep.cdn}/{name}/{name}.bin"
            entry = f'{{ url = "{url}", sha256 = "{f.sha256}", size = {f.size} }}'
            models.append(f"[models.{name}-{d}ms]\nfiles = [{entry}]\n")
    (work / "catalog.toml").write_text("\n".join(models))
    (work / "startup").mkdir(exist_ok=True)

    def pull(
        model: str, f: DataFile, *extra: str, label: str = "mdl (defaults)", env: dict | None = None
    ) -> Tool:
        saved = "model.safetensors" if model == "hub-capped" else f.path.name
        outputs = (
            (lambda d: c.got_many(d / model))
            if model == "many"
            else (lambda d: [(d / model / saved, f)])
        )
        argv = ["pull", model, "-q", "--catalog", str(work / "catalog.toml"), *extra, "--dest"]
        return Tool(label, lambda d: r.mdl(*argv, str(d)), outputs, env or {})

    def get(url: str, f: DataFile, *extra: str) -> Tool:
        name = "mdl get -o" + (" --sha256" if extra else "")
        return Tool(
            name, lambda d: r.mdl("get", url, "-o", str(d / f.path.name), "-q", *extra), r.flat(f)
        )

    c = SimpleNamespace(
        big=big,
        many=many_files,
        args=args,
        pull=pull,
        get=get,
        list_catalog=startup_catalog(work / "startup"),
        got_many=lambda d: [(d / f.path.relative_to(root), f) for f in many_files],
    )
    made = []
    for family, d in selected:
        key = f"{family}@{d}" if family in SUFFIXED or d else family
        at = f", {d} ms per request" if d else ", loopback"
        declared = FAMILIES[family](c, servers.endpoints.get(d), at)
        sc = Scenario(key, target=TARGET_AT.get(key, TARGETS[family]), **declared)
        sc.variants += r.variants_of([sc.mdl, *sc.variants], args.variant)
        made.append(sc)
    return made


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    r.add_common(parser, reps=3, workdir=Path("/tmp/mdl-bench"))
    r.add_scenario_flags(parser)
    add = parser.add_argument
    add("--quick", action="store_true", help="small sizes and 1 repetition: a smoke run")
    add(
        "--only",
        default="default",
        help=f"FAMILY[@MS] or {', '.join(GROUPS)}; families: {', '.join(TARGETS)}",
    )
    add(
        "--delays",
        default="",
        help="each bare FAMILY in --only runs at each of these ms, e.g. 0,50,150",
    )
    add(
        "--many-args",
        default="",
        help="extra mdl pull flags for the many-files pair, e.g. '--jobs 8'",
    )
    add("--limit-rate", default="40m", help="nginx limit_rate of /capped/ (default 40m = 40 MiB/s)")
    add("--clean", action="store_true", help="delete the generated data at the end")
    add(
        "--serve",
        action="store_true",
        help="start the servers, print the URLs and wait (debugging)",
    )
    args = r.parse(parser)
    shown = {"block": "pull", "heading": "Pull (`bench/pull.py`)"}
    if args.from_json:
        return r.report_scenarios(json.loads(args.from_json.read_text()), args, **shown)
    try:
        selected = parse_only(args.only, [int(s) for s in args.delays.split(",") if s.strip()])
    except ValueError as exc:
        parser.error(f"--only/--delays: {exc}")
    reps, work = 1 if args.quick and "--reps" not in sys.argv else args.reps, args.workdir
    data = work / ("data-quick" if args.quick else "data")
    sys.stderr.write(f"bench: generating data in {data} (cached between runs)\n")
    big, many_files = make_data(data, args.quick)
    repos = {
        "bench/big-capped": {
            "model.safetensors": r.file_content(big["capped"].path, sha256=big["capped"].sha256)
        },
        "bench/many-files": {
            f.path.relative_to(data / "many").as_posix(): r.file_content(f.path, sha256=f.sha256)
            for f in many_files
        },
    }
    r.ensure_tools(("nginx", "aria2c", "curl", "openssl", "time"))
    r.interruptible()
    delays = [d for family, d in selected if family not in OFFLINE]
    capped_file = {big["capped"].path}
    with r.Loopback(
        work, data, repos, delays=delays, limit_rate=args.limit_rate, capped=capped_file
    ) as servers:
        for d, ep in servers.endpoints.items():
            sys.stderr.write(
                f"bench: @{d} ms: cdn {ep.cdn} (/capped/ limit_rate {args.limit_rate}), hub"
                f" {ep.hub}\n"
            )
        made = scenarios(selected, big, many_files, servers, args)
        if args.serve:
            sys.stderr.write(
                f"catalog {work / 'catalog.toml'} (models NAME-<MS>ms); Ctrl-C to stop\n"
            )
            with contextlib.suppress(KeyboardInterrupt):
                time.sleep(1e9)
            return 0
        env = r.clean_env(work, HF_ENDPOINT=servers.endpoints[0].hub)
        head = r.run_scenarios(made, args, reps=reps, env=env, counter=servers.counter)
    if args.clean:
        shutil.rmtree(data, ignore_errors=True)
    r.save_json(args, **head)
    return r.report_scenarios(head, args, **shown)


if __name__ == "__main__":
    sys.exit(main())
