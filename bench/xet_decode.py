"""Xet chunk decoding on 1, 2 and all cores: how fast mdl turns xorb bytes into verified chunks, and
whether more threads make it faster (issue 53: the GIL).

    python bench/xet_decode.py [--size-mib 64] [--reps 5] [--threads 1,2,N] [--frames linked]
                               [--stage all] [--ungroup both] [--json FILE]

A xorb range of ``--size-mib`` of weights-like bytes (float32s whose sign/exponent byte takes a few
values, one 4 MiB block in eight random, as bench/xet.py makes) is cut into chunks of 8 to 128 KiB
(64 KiB on average, as Xet's chunker gives) and encoded as the CAS stores them: 7 in 8 byte-grouped
+ LZ4 (BG4), 1 in 8 LZ4 alone. ``--frames linked`` makes LZ4 frames as python-lz4 does by default
(the stand-in's xorbs); ``independent`` with blocks that do not refer to the ones before.

Each thread decodes its own copy of the range exactly as a stream does (``mdl.xet._streams._Chunks``
fed 64 KiB network blocks, every chunk's BLAKE3 taken as ``_Terms.place`` takes it); the threads run
at once and the wall time of the slowest is the run's. Stages, each alone: ``ungroup`` (BG4's
un-grouping of already inflated chunks), ``lz4`` (inflating), ``blake3`` (the chunk hashes), and
``all`` (the stream's whole decode). ``--ungroup`` runs the numpy un-grouping, the pure-Python
reference one, or both. Decoded GB/s (10^9 bytes of chunks per second, all threads together) is the
best of ``--reps``; the speed-up is over 1 thread; cores is the process's CPU seconds over the
wall seconds of that best run (about 1.0 when the GIL lets one thread run at a time).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import lz4.frame

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from runner import wait_for_quiet

from mdl.xet import _xorb as xorb  # the tree this script sits in, not an installed mdl
from mdl.xet._hashing import chunk_hash
from mdl.xet._streams import _Chunks

MiB = 1 << 20
BLOCK = 4 * MiB
NET_BLOCK = 64 * 1024  # what one read of the response body hands a stream
SEED = 20261126


def _sign_exponent_table() -> bytes:
    """A random byte -> the high byte of a float32 of N(0, 0.02) (as bench/xet.py)."""
    weights = {0x3C: 30, 0x3B: 12, 0x3D: 4, 0x3A: 2}
    values = [v | s for v, w in weights.items() for s in (0x00, 0x80) for _ in range(w)]
    return bytes(values[i * len(values) // 256] for i in range(256))


def weights(size: int, rng: random.Random) -> bytes:
    table, out = _sign_exponent_table(), bytearray()
    for n, at in enumerate(range(0, size, BLOCK)):
        buf = bytearray(rng.randbytes(min(BLOCK, size - at)))
        if n % 8 != 7:
            buf[3::4] = bytes(buf[3::4]).translate(table)
        out += buf
    return bytes(out)


def cuts(size: int, rng: random.Random) -> Iterator[tuple[int, int]]:
    at = 0
    while at < size:
        step = min(size - at, rng.randint(8 * 1024, 120 * 1024))
        yield at, at + step
        at += step


def group4(data: bytes) -> bytes:
    return b"".join(data[g::4] for g in range(4))


def encode(data: bytes, scheme: int, *, linked: bool) -> bytes:
    """One chunk as a xorb holds it: the 8-byte header, then its stored, LZ4 or BG4 + LZ4 bytes."""
    if scheme == xorb.STORED:
        payload = data
    else:
        body = group4(data) if scheme == xorb.GROUPED_LZ4 else data
        payload = lz4.frame.compress(body, block_linked=linked)
    head = len(payload) << 8, scheme | len(data) << 8
    return head[0].to_bytes(4, "little") + head[1].to_bytes(4, "little") + payload


def make_range(size: int, *, linked: bool) -> tuple[bytes, list[bytes], list[bytes]]:
    """The encoded range, its chunks and their grouped forms (what LZ4 inflates BG4 chunks to)."""
    rng = random.Random(SEED)
    data = weights(size, rng)
    parts, chunks, grouped = [], [], []
    for n, (lo, hi) in enumerate(cuts(size, rng)):
        chunk = data[lo:hi]
        scheme = xorb.LZ4 if n % 8 == 7 else xorb.GROUPED_LZ4
        parts.append(encode(chunk, scheme, linked=linked))
        chunks.append(chunk)
        if scheme == xorb.GROUPED_LZ4:
            grouped.append(group4(chunk))
    return b"".join(parts), chunks, grouped


def stage_work(
    stage: str, blob: bytes, chunks: list[bytes], grouped: list[bytes]
) -> tuple[Callable[[], None], int]:
    """The work one thread does for ``stage`` and the decoded bytes it stands for."""
    total = sum(len(c) for c in chunks)
    if stage == "ungroup":

        def ungroup() -> None:
            for g in grouped:  # each output dropped at once, as a stream's is once written
                xorb.ungroup(g)

        return ungroup, sum(map(len, grouped))
    if stage == "blake3":

        def hashes() -> None:
            for c in chunks:
                chunk_hash(c)

        return hashes, total
    if stage == "lz4":
        frames = [_payload(blob, at) for at in _offsets(blob)]

        def inflate() -> None:
            for n, (payload, length) in enumerate(frames):
                xorb._inflate(n, payload, length)

        return inflate, total

    def stream() -> None:
        feeder, view = _Chunks(len(chunks)), memoryview(blob)
        for at in range(0, len(blob), NET_BLOCK):
            for data in feeder.feed(view[at : at + NET_BLOCK]):
                chunk_hash(data)
        feeder.close()

    return stream, total


def _offsets(blob: bytes) -> Iterator[int]:
    at = 0
    while at < len(blob):
        yield at
        need = xorb.chunk_size(blob, at)
        assert need is not None
        at += need


def _payload(blob: bytes, at: int) -> tuple[memoryview, int]:
    first, second = xorb._HEADER.unpack_from(blob, at)
    start = at + xorb.HEADER_BYTES
    return memoryview(blob)[start : start + (first >> 8)], second >> 8


def timed(work: Callable[[], None], threads: int) -> tuple[float, float]:
    """Wall seconds for ``threads`` threads each doing ``work`` at once, and the process's CPU
    seconds over them (the cores it kept busy: about 1 when the GIL serialises the threads)."""
    ready = threading.Barrier(threads + 1)

    def run() -> None:
        ready.wait()
        work()

    pool = [threading.Thread(target=run) for _ in range(threads)]
    for t in pool:
        t.start()
    ready.wait()
    started, cpu = time.perf_counter(), time.process_time()
    for t in pool:
        t.join()
    wall = time.perf_counter() - started
    return wall, (time.process_time() - cpu) / wall


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    cores = len(os.sched_getaffinity(0))
    parser.add_argument("--size-mib", type=int, default=64)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--threads", default=",".join(map(str, sorted({1, 2, cores}))))
    parser.add_argument("--frames", choices=["linked", "independent"], default="linked")
    parser.add_argument(
        "--stage", choices=["all", "ungroup", "lz4", "blake3", "each"], default="each"
    )
    parser.add_argument("--ungroup", choices=["numpy", "python", "both"], default="both")
    parser.add_argument("--json", type=Path)
    parser.add_argument(
        "--quiet-cpu", type=float, default=0.3, help="start a run once others use under this share"
    )
    parser.add_argument("--quiet-wait", type=float, default=10.0, help="wait at most this long")
    args = parser.parse_args()
    counts = [int(n) for n in args.threads.split(",")]
    blob, chunks, grouped = make_range(args.size_mib * MiB, linked=args.frames == "linked")
    decoded = b"".join(d for d in _Chunks(len(chunks)).feed(blob))
    if decoded != b"".join(chunks):
        raise SystemExit("xet_decode: the decoder does not give back the chunks")
    stages = ["ungroup", "lz4", "blake3", "all"] if args.stage == "each" else [args.stage]
    kinds = ["numpy", "python"] if args.ungroup == "both" else [args.ungroup]
    print(
        f"{args.size_mib} MiB in {len(chunks)} chunks ({len(grouped)} BG4), {len(blob) / MiB:.1f}"
        f" MiB encoded, {args.frames} LZ4 frames; {cores} cores; numpy: {xorb.numpy_version()}"
    )
    print(
        f"{'stage':8s} {'ungroup':7s} " + "  ".join(f"{n:>2d} thr GB/s    ×  cores" for n in counts)
    )
    rows = []
    for kind in kinds:
        xorb.use_numpy(kind == "numpy")
        for stage in stages:
            if stage in ("lz4", "blake3") and kind != kinds[0]:
                continue  # the un-grouping plays no part
            work, size = stage_work(stage, blob, chunks, grouped)
            work()  # warm: imports, allocator
            rates, busy = {}, {}
            for n in counts:
                runs = []
                for _ in range(args.reps):
                    wait_for_quiet(args.quiet_cpu, args.quiet_wait)
                    runs.append(timed(work, n))
                best, busy[n] = min(runs)
                rates[n] = n * size / best / 1e9
            base = rates[counts[0]]
            shown = "  ".join(
                f"{rates[n]:12.2f} {rates[n] / base:4.2f} {busy[n]:6.2f}" for n in counts
            )
            label = kind if stage in ("ungroup", "all") else "-"
            print(f"{stage:8s} {label:7s} {shown}", flush=True)
            rows.append({"stage": stage, "ungroup": label, "gb_s": rates, "cores": busy})
    xorb.use_numpy(True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
