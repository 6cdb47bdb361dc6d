"""Xet pulls: mdl's Xet path against its plain path and huggingface_hub + hf_xet, first pull and
upgrade, on loopback.

    python bench/xet.py [--reps 3] [--quick] [--size-mib 512] [--scheme bg4] [--edits-per-mib 1.5]
                        [--only first,upgrade] [--workdir DIR] [--json FILE] [--write-results]
                        [--variant DIR]... [--serve]

Issue 42's targets, side by side in one run (the tools alternate, the first rotating; medians of
``--reps``):

- **first**: a first pull of one Xet-backed file (``--size-mib``, default 512; ``--quick`` 64),
  weights-like (float32 values whose sign/exponent byte takes few values, so byte grouping + LZ4
  compresses it a little, and one block in eight random), by ``mdl pull`` (the Xet path), ``mdl pull
  --no-xet`` (the plain resolve path: the Hub's redirect to nginx) and ``hf_hub_download`` with
  hf_xet. Target: the Xet pull no slower than the plain one (wall).
- **upgrade**: revision A installed (untimed), then revision B, where ``--edits-per-mib`` random
  50-byte spans per MiB changed (about 10 % of the chunks: the share is measured and printed),
  pulled into the same folder (mdl) or cache (hf). Target: mdl's Xet path fetches at most 1.1 × the
  new xorb bytes (``XetStore.new_bytes(B, A)``).

Servers: the Xet Hub + CAS stand-in of tests/xetserver.py for the API, tokens and reconstructions;
every byte of a file comes from the runner's private nginx: xorbs are written under its root and the
CAS presigns URLs there (nginx ignores the query and answers the exact Range with 206), and the
plain path's resolve redirects there too. Bytes fetched are the body bytes nginx logged during the
timed run (xorbs and whole files alike).
"""

from __future__ import annotations

import argparse
import array
import contextlib
import dataclasses
import hashlib
import json
import random
import re
import shutil
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import blake3
import runner as r
from runner import DataFile, Tool
from xetserver import MAX_CHUNK, CasServer, XetFile, XetHubServer, XetStore, chunk

REPO, NAME = "bench/xet", "model.safetensors"
SIZES = {False: 512, True: 64}  # MiB
SEED = 20261125
DATA_VERSION = 1  # bump when the generator changes: cached files are made again
BLOCK = 4 * r.MiB
EDIT = 50  # bytes of one edit
UPGRADE_TARGET = 1.1  # mdl's fetched / new xorb bytes
FIRST_TARGET = 1.0  # mdl Xet wall / mdl --no-xet wall

# hf_hub_download of each revision named after the destination, with its own HF_HOME (hf_xet's chunk
# cache, if on, lives there: a first pull starts cold) and the cache in the destination.
HF_CODE = (
    "import os, sys; d = sys.argv[1]; os.environ['HF_HOME'] = d + '/hf-home'\nfrom huggingface_hub"
    f" import hf_hub_download\nfor rev in sys.argv[2:]: hf_hub_download({REPO!r}, {NAME!r},"
    " revision=rev, cache_dir=d + '/hub', token=False)\n"
)


# -- data
# -------------------------------------------------------------------------------------------------------


def _sign_exponent_table() -> bytes:
    """A random byte -> the high byte of a float32 of N(0, 0.02) (sign and the exponent's top 7
    bits).
    """
    weights = {0x3C: 30, 0x3B: 12, 0x3D: 4, 0x3A: 2}  # per sign: |x| in about 2^-8 .. 2^-4
    values = [v | s for v, w in weights.items() for s in (0x00, 0x80) for _ in range(w)]
    return bytes(values[i * len(values) // 256] for i in range(256))


def _meta_ok(meta: Path, **expect: object) -> dict[str, Any] | None:
    with contextlib.suppress(ValueError, OSError):
        info = json.loads(meta.read_text())
        if all(info.get(k) == v for k, v in expect.items()):
            return info
    return None


def weights_file(path: Path, size: int) -> DataFile:
    """Revision A: ``size`` bytes of float32-like data, every eighth 4 MiB block random; cached
    with its sha256.
    """
    meta = path.with_name(path.name + ".meta.json")
    info = _meta_ok(meta, version=DATA_VERSION, size=size, seed=SEED)
    if info is not None and path.is_file() and path.stat().st_size == size:
        return DataFile(path, size, info["sha256"])
    path.parent.mkdir(parents=True, exist_ok=True)
    rng, table, digest = random.Random(SEED), _sign_exponent_table(), hashlib.sha256()
    with path.open("wb") as out:
        for n, at in enumerate(range(0, size, BLOCK)):
            buf = bytearray(rng.randbytes(min(BLOCK, size - at)))
            if n % 8 != 7:
                buf[3::4] = bytes(buf[3::4]).translate(table)
            digest.update(buf)
            out.write(buf)
    meta.write_text(
        json.dumps(
            {"version": DATA_VERSION, "size": size, "seed": SEED, "sha256": digest.hexdigest()}
        )
    )
    return DataFile(path, size, digest.hexdigest())


def edited_file(a: DataFile, path: Path, per_mib: float) -> tuple[DataFile, list[tuple[int, int]]]:
    """Revision B: A with ``per_mib`` random 50-byte spans per MiB overwritten; the spans, sorted
    and merged.
    """
    meta = path.with_name(path.name + ".meta.json")
    count = max(1, round(a.size / r.MiB * per_mib))
    info = _meta_ok(meta, version=DATA_VERSION, base=a.sha256, edits=count)
    if info is not None and path.is_file() and path.stat().st_size == a.size:
        return DataFile(path, a.size, info["sha256"]), [tuple(s) for s in info["dirty"]]  # type: ignore[misc]
    rng = random.Random(SEED + 1)
    data = bytearray(a.path.read_bytes())
    starts = sorted(rng.randrange(0, a.size - EDIT) for _ in range(count))
    dirty: list[tuple[int, int]] = []
    for s in starts:
        data[s : s + EDIT] = rng.randbytes(EDIT)
        if dirty and s <= dirty[-1][1]:
            dirty[-1] = (dirty[-1][0], s + EDIT)
        else:
            dirty.append((s, s + EDIT))
    path.write_bytes(data)
    sha = hashlib.sha256(data).hexdigest()
    meta.write_text(
        json.dumps(
            {
                "version": DATA_VERSION,
                "base": a.sha256,
                "edits": count,
                "sha256": sha,
                "dirty": dirty,
            }
        )
    )
    return DataFile(path, a.size, sha), dirty


def rechunk(
    view: memoryview, old: Sequence[tuple[int, int]], dirty: Sequence[tuple[int, int]]
) -> list[tuple[int, int]]:
    """``chunk(view)`` for data that differs from the data of spans ``old`` only in ``dirty`` (same
    length): an old chunk that starts where the new chunking stands and holds no dirty byte is kept
    (the cut that ends it depends on its own bytes only); elsewhere the spec's chunker runs until it
    lands on an old boundary again."""
    ends = dict(old)
    out: list[tuple[int, int]] = []
    pos, di, n = 0, 0, len(view)
    while pos < n:
        while di < len(dirty) and dirty[di][1] <= pos:
            di += 1
        end = ends.get(pos)
        if end is not None and (di == len(dirty) or end <= dirty[di][0]):
            out.append((pos, end))
            pos = end
            continue
        window = chunk(view[pos : pos + MAX_CHUNK])
        if pos + MAX_CHUNK < n and len(window) > 1:
            window = window[:-1]  # cut by the window's end, not by the data
        for s, e in window:
            out.append((pos + s, pos + e))
            if pos + e in ends:
                break
        pos = out[-1][1]
    return out


def spans_of(
    f: DataFile, make: Callable[[memoryview], list[tuple[int, int]]]
) -> list[tuple[int, int]]:
    """The file's chunk spans, cached beside it (pure-Python chunking runs about 10 MB/s)."""
    cache, meta = (
        f.path.with_name(f.path.name + ".spans"),
        f.path.with_name(f.path.name + ".spans.json"),
    )
    if _meta_ok(meta, sha256=f.sha256) is not None and cache.is_file():
        ends = array.array("Q")
        ends.frombytes(cache.read_bytes())
        return list(zip([0, *ends[:-1]], ends, strict=True))
    started = time.monotonic()
    sys.stderr.write(f"bench: chunking {f.path.name} (once; cached)\n")
    spans = make(memoryview(f.path.read_bytes()))
    cache.write_bytes(array.array("Q", [e for _, e in spans]).tobytes())
    meta.write_text(json.dumps({"sha256": f.sha256}))
    sys.stderr.write(f"bench: {len(spans)} chunks in {time.monotonic() - started:.0f} s\n")
    return spans


# -- the stand-in, serving xorb bytes from nginx
# -----------------------------------------------------------------


class NginxStore(XetStore):
    """A XetStore that takes known chunk spans (by the data's BLAKE3) instead of chunking again, and
    writes each new xorb to a folder nginx serves, keeping only its offsets in memory."""

    def __init__(self, folder: Path, spans: dict[str, list[tuple[int, int]]]) -> None:
        super().__init__()
        self.folder, self.known = folder, spans
        folder.mkdir(parents=True, exist_ok=True)

    def add(
        self, data: Any, scheme: Any = "none", *, spans: Sequence[tuple[int, int]] | None = None
    ) -> XetFile:
        if spans is None and not isinstance(data, Path):
            spans = self.known.get(blake3.blake3(data, max_threads=blake3.blake3.AUTO).hexdigest())
        xf = super().add(data, scheme, spans=spans)
        for name, x in list(self.xorbs.items()):
            if x.data:
                path = self.folder / name
                if not path.is_file() or path.stat().st_size != len(x.data):
                    path.write_bytes(x.data)
                self.xorbs[name] = dataclasses.replace(x, data=b"")
        return xf


class NginxCas(CasServer):
    """The CAS stand-in whose presigned xorb URLs name nginx (the same path and query shape)."""

    base = ""  # e.g. http://127.0.0.1:PORT/fast/xorbs-bg4

    def presign(
        self, xorb: str, ranges: Sequence[tuple[int, int]], *, lifetime: float | None = None
    ) -> str:
        url = super().presign(xorb, ranges, lifetime=lifetime)
        return url.replace(f"{self.url}/xorb/default/", f"{self.base}/", 1)


# -- runs
# -------------------------------------------------------------------------------------------------------

CDN_LINE = re.compile(r'^cdn \S+ \S+ \S+ (\d+) (\d+) \S+ "\S+ (\S+)')


def nginx_bodies(lines: Sequence[str]) -> tuple[int, int]:
    """(xorb body bytes, other body bytes) nginx sent, from RequestCounter lines."""
    xorbs = other = 0
    for line in lines:
        if (m := CDN_LINE.match(line)) is not None:
            if "/xorbs-" in m[3]:
                xorbs += int(m[2])
            else:
                other += int(m[2])
    return xorbs, other


@dataclasses.dataclass(frozen=True)
class Pull:
    """A tool's timed pull; ``setup`` (untimed, same destination) installs what an upgrade starts
    from.
    """

    tool: Tool
    setup: Callable[[Path], list[str]] | None = None


def rounds(
    pulls: Sequence[Pull],
    *,
    reps: int,
    work: Path,
    env: dict[str, str],
    counter: r.RequestCounter,
    quiet: tuple[float, float],
    sources: Sequence[Path],
    label: str,
) -> tuple[r.Runs, dict[str, list[int]]]:
    """``reps`` alternating rounds (the first rotating), as runner.measure, with an untimed setup in
    the same fresh destination before each timed run; each run's nginx body bytes too."""
    runs: r.Runs = {p.tool.name: [] for p in pulls}
    fetched: dict[str, list[int]] = {p.tool.name: [] for p in pulls}
    dest, log = work / "out" / "dest", work / "logs" / "runs.log"
    for rep, pull in r.rotations(pulls, reps):
        tool = pull.tool
        shutil.rmtree(dest, ignore_errors=True)
        dest.mkdir(parents=True)
        if pull.setup is not None:
            r.warm(sources)
            setup = r.run_measured(pull.setup(dest), env={**env, **tool.env}, log=log, cwd=tool.cwd)
            if not setup.ok:
                sys.stderr.write(f"bench: {tool.name}: the setup pull failed; see {log}\n")
        r.warm(sources)
        mark = counter.mark()
        m = r.run_measured(
            tool.argv(dest), env={**env, **tool.env}, log=log, cwd=tool.cwd, quiet=quiet
        )
        problem = r.check_outputs(tool, dest, hash_them=rep == 0) if m.ok else None
        if problem:
            m.ok = False
            sys.stderr.write(f"bench: {problem}\n")
        counter.settle(0.1, 2.0)
        m.requests, m.connections, lines, _, m.sent = counter.since(mark)
        xorbs, other = nginx_bodies(lines)
        if rep == 0:
            slug = re.sub(r"[^A-Za-z0-9]+", "-", f"{label}__{tool.name}").strip("-")
            (work / "logs" / "requests").mkdir(parents=True, exist_ok=True)
            (work / "logs" / "requests" / f"{slug}.log").write_text("\n".join(lines) + "\n")
        runs[tool.name].append(m)
        fetched[tool.name].append(xorbs + other)
        sys.stderr.write(
            f"  rep {rep + 1}/{reps}  {tool.name:28} {m.wall:7.2f} s  +sync {m.sync:5.2f} s  cpu"
            f" {m.cpu:6.2f} s  rss {m.rss_mb:5.0f} MB  {m.requests} req / {m.connections} conn "
            f" fetched {(xorbs + other) / r.MiB:7.1f} MiB (xorbs {xorbs / r.MiB:.1f})  (others busy"
            f" {m.busy:.0%}){'' if m.ok else '  FAILED'}\n"
        )
    shutil.rmtree(dest, ignore_errors=True)
    return runs, fetched


COLUMNS = [
    ("tool", "tool"),
    ("median", "median s"),
    ("range", "min–max s"),
    ("durable", "+sync s"),
    ("rate", "MiB/s"),
    ("cpu", "CPU s"),
    ("cpu_gb", "CPU s/GB"),
    ("rss", "peak RSS MB"),
    ("requests", "requests / conns"),
    ("fetched", "fetched MiB"),
    ("of_new", "fetched / new xorb bytes"),
    ("ratio", "wall ratio"),
    ("busy", "others busy"),
]


def scenario_rows(
    runs: r.Runs,
    fetched: dict[str, list[int]],
    *,
    nbytes: int,
    baseline: str,
    new_bytes: int | None,
) -> list[dict[str, str]]:
    base = r.median(runs[baseline])
    out = []
    for name, ms in runs.items():
        cells = r.row(name, ms, nbytes=nbytes, ratio=r.median(ms) / base)
        got = statistics.median([f for f, m in zip(fetched[name], ms, strict=True) if m.ok] or [0])
        cells["cpu_gb"] = f"{r.median(ms, 'cpu') / (nbytes / 1e9):.2f}"
        cells["fetched"] = f"{got / r.MiB:.1f}"
        cells["of_new"] = f"{got / new_bytes:.2f}" if new_bytes else ""
        out.append(cells)
    return out


# -- main
# -------------------------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    r.add_common(parser, reps=3, workdir=Path("/tmp/mdl-bench-xet"))
    add = parser.add_argument
    add(
        "--quick",
        action="store_true",
        help="64 MiB and 1 repetition: a smoke run (under 3 minutes)",
    )
    add("--size-mib", type=int, default=None, help="the file's size (default 512, --quick 64)")
    add(
        "--scheme",
        default="bg4",
        choices=["none", "lz4", "bg4", "mixed"],
        help="how new chunks are compressed",
    )
    add(
        "--edits-per-mib",
        type=float,
        default=1.5,
        help="random 50-byte edits per MiB from revision A to B",
    )
    add("--only", default="first,upgrade", help="first, upgrade or both")
    add(
        "--quiet-cpu",
        type=float,
        default=0.3,
        help="start a run once others use under this share of the CPUs",
    )
    add(
        "--quiet-wait",
        type=float,
        default=None,
        help="wait at most this many seconds for quiet (30; --quick 10)",
    )
    add("--write-results", action="store_true", help="rewrite the xet block of bench/RESULTS.md")
    add(
        "--serve",
        action="store_true",
        help="start the servers, print the catalogs and wait (profiling)",
    )
    add(
        "--capped",
        metavar="RATE",
        help=(
            "every byte through nginx's /capped/ at RATE per connection (e.g. 20m): the "
            "per-connection cap of many CDNs, where the number of streams decides"
        ),
    )
    args = r.parse(parser)
    only = {s.strip() for s in args.only.split(",") if s.strip()}
    if not only <= {"first", "upgrade"} or not only:
        parser.error("--only takes first, upgrade or both")
    reps = 1 if args.quick and "--reps" not in sys.argv else args.reps
    size = (args.size_mib or SIZES[args.quick]) * r.MiB
    quiet = (
        args.quiet_cpu,
        args.quiet_wait if args.quiet_wait is not None else 10.0 if args.quick else 30.0,
    )
    r.ensure_tools(("nginx", "time"))
    r.interruptible()
    work = args.workdir
    data = work / "data"
    a = weights_file(data / f"a-{size // r.MiB}m.bin", size)
    b, dirty = edited_file(a, data / f"b-{size // r.MiB}m.bin", args.edits_per_mib)
    spans_a = spans_of(a, chunk)
    spans_b = spans_of(b, lambda view: rechunk(view, spans_a, dirty))
    keys = {
        blake3.blake3(f.path.read_bytes(), max_threads=blake3.blake3.AUTO).hexdigest(): s
        for f, s in ((a, spans_a), (b, spans_b))
    }
    xorb_dir = data / f"xorbs-{args.scheme}"
    store = NginxStore(xorb_dir, keys)
    cas = NginxCas(store)
    nginx = r.Nginx(
        data=data,
        prefix=work / "nginx",
        access_log=work / "access.log",
        limit_rate=args.capped or "40m",
    )
    where = "capped" if args.capped else "fast"
    (work / "access.log").unlink(missing_ok=True)
    tables: list[tuple[str, str, list[dict[str, str]], list[str]]] = []
    report: dict[str, Any] = {
        "size": size,
        "scheme": args.scheme,
        "edits_per_mib": args.edits_per_mib,
    }
    with nginx, cas:
        cas.base = f"{nginx.url}/{where}/{xorb_dir.name}"
        capped = {a.path, b.path} if args.capped else None
        hub = XetHubServer(cdn=r.NginxCdn(nginx.url, data, capped=capped), cas=cas)  # type: ignore[arg-type]  # duck-typed CDN
        started = time.monotonic()
        hub.add_repo(REPO, {NAME: r.file_content(a.path, sha256=a.sha256)}, scheme=args.scheme)
        rev_a = hub.repo(REPO).sha
        hub.replace_file(REPO, NAME, r.file_content(b.path, sha256=b.sha256))
        rev_b = hub.repo(REPO).sha
        xa, xb = hub.xet_file(REPO, NAME, rev_a), hub.xet_file(REPO, NAME, rev_b)
        sys.stderr.write(
            f"bench: minted A and B ({args.scheme}) in {time.monotonic() - started:.0f} s\n"
        )
        with hub:
            report |= describe(store, xa, xb, size)
            sys.stderr.write(report["summary"] + "\n")
            catalogs = {}
            for tag, rev in (("a", rev_a), ("b", rev_b)):
                catalogs[tag] = work / f"catalog-{tag}.toml"
                catalogs[tag].write_text(f'[models.m]\nrepo = "{REPO}"\nrevision = "{rev}"\n')
            # the runner turns huggingface_hub's Xet off for every tool; mdl honours that switch
            # too: both on here
            env = r.clean_env(work, HF_ENDPOINT=hub.url, HF_HUB_DISABLE_XET="0")
            if args.serve:
                sys.stderr.write(
                    f"bench: hub {hub.url}, CAS {cas.url}, nginx {nginx.url}; HF_ENDPOINT={hub.url}"
                    f" mdl pull m --catalog {catalogs['a']} (or {catalogs['b']}); Ctrl-C to stop\n"
                )
                with contextlib.suppress(KeyboardInterrupt):
                    time.sleep(1e9)
                return 0
            counter = r.RequestCounter(work / "access.log", [hub, cas])
            sources = [a.path, b.path, *sorted(xorb_dir.iterdir())]
            folders = ["", *args.variant]

            def mdl(tag: str, *extra: str, folder: Path | str = "") -> Tool:
                f = a if tag == "a" else b
                name = (
                    "mdl pull"
                    + "".join(f" {e}" for e in extra)
                    + (f" [{Path(folder).name}]" if folder else "")
                )
                argv = ["pull", "m", "-q", "--catalog", str(catalogs[tag]), *extra, "--dest"]
                tool_env = {"PYTHONPATH": str(Path(folder).resolve())} if folder else {}
                return Tool(
                    name, lambda d: r.mdl(*argv, str(d)), lambda d: [(d / "m" / NAME, f)], tool_env
                )

            def hf(*revs: str) -> Tool:
                f = a if revs[-1] == rev_a else b
                snap = f"models--{REPO.replace('/', '--')}"
                return Tool(
                    "hf_hub_download (hf_xet)",
                    lambda d: [r.PY, "-c", HF_CODE, str(d), *revs],
                    lambda d: [(d / "hub" / snap / "snapshots" / revs[-1] / NAME, f)],
                    {"HF_HUB_DISABLE_XET": "0"},
                )

            if "first" in only:
                sys.stderr.write(f"\n== first: a first pull of {size // r.MiB} MiB, Xet-backed\n")
                pulls = [Pull(mdl("a", folder=x)) for x in folders] + [
                    Pull(mdl("a", "--no-xet")),
                    Pull(hf(rev_a)),
                ]
                runs, fetched = rounds(
                    pulls,
                    reps=reps,
                    work=work,
                    env=env,
                    counter=counter,
                    quiet=quiet,
                    sources=sources,
                    label="first",
                )
                rows = scenario_rows(
                    runs, fetched, nbytes=size, baseline="mdl pull --no-xet", new_bytes=None
                )
                xet, plain, hfx = (
                    r.median(runs[n])
                    for n in ("mdl pull", "mdl pull --no-xet", "hf_hub_download (hf_xet)")
                )
                cpu = {n: r.median(ms, "cpu") for n, ms in runs.items()}
                verdicts = [
                    (
                        f"mdl Xet {xet:.2f} s vs mdl --no-xet {plain:.2f} s → {xet / plain:.2f} (≤"
                        f" {FIRST_TARGET:g}×):"
                        f" {'met' if xet / plain <= FIRST_TARGET else 'MISSED'}; hf_xet {hfx:.2f} s"
                        f" ({hfx / xet:.2f}× mdl Xet)"
                    ),
                    (
                        f"CPU: mdl Xet {cpu['mdl pull']:.2f} s"
                        f" ({cpu['mdl pull'] / (size / 1e9):.2f} CPU-s/GB), mdl --no-xet"
                        f" {cpu['mdl pull --no-xet']:.2f} s, hf_xet"
                        f" {cpu['hf_hub_download (hf_xet)']:.2f} s"
                    ),
                ]
                title = f"first pull, {size // r.MiB} MiB Xet-backed ({args.scheme}), fresh folder"
                tables.append(("first", title, rows, verdicts))
                report["first"] = {"runs": r.as_json(runs), "fetched": fetched}
            if "upgrade" in only:
                share = report["changed"]
                sys.stderr.write(
                    f"\n== upgrade: revision A installed, then B ({share:.1%} of chunks new)\n"
                )
                pulls = [Pull(mdl("b", folder=x), mdl("a", folder=x).argv) for x in folders]
                pulls += [
                    Pull(mdl("b", "--no-xet"), mdl("a", "--no-xet").argv),
                    Pull(hf(rev_b), hf(rev_a).argv),
                ]
                runs, fetched = rounds(
                    pulls,
                    reps=reps,
                    work=work,
                    env=env,
                    counter=counter,
                    quiet=quiet,
                    sources=sources,
                    label="upgrade",
                )
                new = report["new_bytes"]
                rows = scenario_rows(
                    runs, fetched, nbytes=size, baseline="mdl pull --no-xet", new_bytes=new
                )
                verdicts = []
                for name in runs:
                    got = statistics.median(
                        [f for f, m in zip(fetched[name], runs[name], strict=True) if m.ok] or [0]
                    )
                    judged = name.startswith("mdl pull") and "--no-xet" not in name
                    verdict = (
                        f" (≤ {UPGRADE_TARGET:g}×):"
                        f" {'met' if got / new <= UPGRADE_TARGET else 'MISSED'}"
                        if judged
                        else ""
                    )
                    verdicts.append(
                        f"{name}: fetched {got / r.MiB:.1f} MiB = {got / new:.2f}× the new xorb"
                        f" bytes{verdict} ({got / report['xorb_bytes_b']:.0%} of B's xorb bytes);"
                        f" {r.median(runs[name]):.2f} s, {r.median(runs[name], 'cpu'):.2f} CPU-s"
                    )
                title = (
                    f"upgrade A → B, {size // r.MiB} MiB, {report['changed']:.1%} of B's chunks new"
                    f" ({new / r.MiB:.1f} MiB of new xorb bytes)"
                )
                tables.append(("upgrade", title, rows, verdicts))
                report["upgrade"] = {"runs": r.as_json(runs), "fetched": fetched}
    for key, title, rows, verdicts in tables:
        print(
            f"\n{key}: {title}\n{r.table(rows, COLUMNS)}\n" + "\n".join(f"- {v}" for v in verdicts)
        )
    r.save_json(args, **report)
    if args.write_results and tables:
        shown = ("mdl", "nginx", "huggingface_hub", "httpx2")
        versions = {k: v for k, v in r.versions().items() if k in shown} | {
            "hf_xet": _version("hf_xet")
        }
        text = [
            f"Measured {r.now()} with `{args.command}` ({reps} repetitions; tools rotating;"
            " medians; bench/README.md says how). " + report["summary"],
            "",
            "Machine: " + ", ".join(f"{k} {v}" for k, v in r.machine_info(work).items()) + ".",
            "",
            "Versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()) + ".",
        ]
        for key, title, rows, verdicts in tables:
            text += [
                "",
                f"**{key}**: {title}",
                "",
                r.table(rows, COLUMNS, markdown=True),
                "",
                *(f"- {v}" for v in verdicts),
            ]
        r.write_results("xet", "\n".join(text), "Xet pulls (`bench/xet.py`)")
    failed = any(
        not m.ok
        for key in ("first", "upgrade")
        for ms in report.get(key, {}).get("runs", {}).values()
        for m in ms
        if not m["ok"]
    )
    return 1 if failed else 0


def describe(store: XetStore, xa: XetFile, xb: XetFile, size: int) -> dict[str, Any]:
    """What changed from A to B, by the stand-in's own accounting."""
    have = set(xa.chunk_hashes)
    changed = sum(h not in have for h in xb.chunk_hashes)
    new, total_b, total_a = store.new_bytes(xb, xa), store.xorb_bytes(xb), store.xorb_bytes(xa)
    summary = (
        f"A: {len(xa.chunk_hashes)} chunks, {total_a / r.MiB:.1f} MiB of xorb bytes for"
        f" {size / r.MiB:.0f} MiB ({total_a / size:.1%}); B: {changed} of {len(xb.chunk_hashes)}"
        f" chunks new ({changed / len(xb.chunk_hashes):.1%}), {new / r.MiB:.1f} MiB of new xorb"
        f" bytes ({new / total_b:.1%} of B's {total_b / r.MiB:.1f} MiB)."
    )
    return {
        "chunks_a": len(xa.chunk_hashes),
        "chunks_b": len(xb.chunk_hashes),
        "changed_chunks": changed,
        "changed": changed / len(xb.chunk_hashes),
        "new_bytes": new,
        "xorb_bytes_a": total_a,
        "xorb_bytes_b": total_b,
        "summary": summary,
    }


def _version(name: str) -> str:
    from importlib.metadata import version

    try:
        return version(name)
    except Exception:
        return "?"


if __name__ == "__main__":
    sys.exit(main())
