"""Benchmark the pipe writer of ``mdl pack -o -`` against the ``stream-zip`` package, same run, same pipe.

Usage: python bench/bench_zipstream.py [FOLDER] [--size-mib 384] [--reps 3] [--no-check]
FOLDER defaults to /tmp/mdl-bench-zipstream; the run is built once and reused while its sizes match.

Both writers go through ``pack_run`` (same selection, same manifest, same hashing pass); only the writer after
the hashing pass differs: ``StreamZipWriter`` (mdl/archive/zipwriter.py) or ``stream_zip.stream_zip`` (the
adapter below, what adopting it would look like). Each child writes into a real pipe read by ``cat >
/dev/null``; the writers alternate, rotating who goes first. Wall time from the parent, CPU (user + system,
all threads) from ``os.wait4``, peak RSS from GNU ``time -f %M``. Afterwards (unless ``--no-check``) one
archive of each is checked: determinism (two runs, same bytes), stored entries' local headers, and every
zip reader on this machine.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import os
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, BinaryIO

ROOT = Path(__file__).resolve().parent.parent
CHECKPOINT = "checkpoint-1000"
SHARDS = 3
ZIP64_EXTRA, ZIP64_END = b"\x01\x00", b"PK\x06\x06"
JAVA_READER = """import java.io.*; import java.util.zip.*;
public class ReadZip { public static void main(String[] a) throws Exception {
    try (ZipInputStream z = new ZipInputStream(new BufferedInputStream(System.in, 1 << 20))) {
        byte[] b = new byte[1 << 16]; ZipEntry e;
        while ((e = z.getNextEntry()) != null) { System.out.println(e.getName()); while (z.read(b) > 0) {} }
    } } }
"""
WRITERS = ("mdl StreamZipWriter", "stream-zip 0.0.84")


def build_run(folder: Path, size_mib: int) -> Path:
    """run/checkpoint-1000: SHARDS random shards (stored), tokenizer/config/merges/README (deflated), two empty
    folders (directory entries)."""
    ckpt = folder / "run" / CHECKPOINT
    shard_size = (size_mib // SHARDS << 20) + 4096  # 4 KiB of header, then whole MiBs
    shards = [ckpt / f"model-{i:05d}-of-{SHARDS:05d}.safetensors" for i in range(1, SHARDS + 1)]
    if all(s.is_file() and s.stat().st_size == shard_size for s in shards):
        return folder / "run"
    shutil.rmtree(folder / "run", ignore_errors=True)
    ckpt.mkdir(parents=True)
    data_size = shard_size - 4096
    for shard in shards:  # an 8-byte length, a JSON header padded to 4 KiB, whole MiBs of random data
        header = json.dumps({"w": {"dtype": "U8", "shape": [data_size], "data_offsets": [0, data_size]}}).encode()
        with shard.open("wb") as fh:
            fh.write(struct.pack("<Q", 4088) + header.ljust(4088))
            for _ in range(data_size >> 20):
                fh.write(os.urandom(1 << 20))
    index = {"weight_map": {f"w{i}": s.name for i, s in enumerate(shards)}}
    (ckpt / "model.safetensors.index.json").write_text(json.dumps(index, indent=2))
    vocab = {f"tok{i}": i for i in range(120_000)}
    (ckpt / "tokenizer.json").write_text(json.dumps({"model": {"vocab": vocab}}, indent=1))
    (ckpt / "merges.txt").write_text("".join(f"tok{i} tok{i + 1}\n" for i in range(60_000)))
    (ckpt / "config.json").write_text(json.dumps({"model_type": "llama", "hidden_size": 4096}, indent=2))
    (ckpt / "README.md").write_text("# bench run\n" * 2000)
    (ckpt / "samples" / "none-yet").mkdir(parents=True)
    (ckpt / "assets").mkdir()
    return folder / "run"


def _stream_zip_pipe(out: BinaryIO, contents: Any, progress: Any) -> tuple[int, str, dict[str, str]]:
    """``zipwriter._write_pipe`` with stream-zip as the writer: the hashing pass is mdl's, unchanged."""
    import stat
    import zlib
    from concurrent.futures import Future, ThreadPoolExecutor
    from datetime import datetime

    from stream_zip import NO_COMPRESSION_32, NO_COMPRESSION_64, ZIP_AUTO, stream_zip

    from mdl.archive.zipread import MANIFEST_NAME
    from mdl.archive.zipwriter import CHUNK_SIZE, HashingCopier, _CrcSink, open_unchanged, zip_date_time

    stem, files, folders, stamp = contents.stem, contents.files, contents.folders, zip_date_time(contents.epoch)

    size, archive_digest = 0, hashlib.sha256()
    sums: dict[str, tuple[str, int]] = {}
    with HashingCopier() as copier:
        progress.begin(total_bytes=sum(f.size for f in files), files=len(files))
        for src in files:  # the hashing pass of zipwriter._write_pipe
            sink = _CrcSink()
            sums[src.arcname] = (copier.copy(src, sink, progress, "hash:" + src.arcname), sink.crc)
    hashes = {name: sha for name, (sha, _) in sums.items()}
    manifest = contents.manifest(hashes)
    when = datetime(*stamp)
    pool = ThreadPoolExecutor(max_workers=1)
    seen: dict[str, str] = {}

    def chunks(src: Any) -> Any:
        # Fresh bytes per chunk: stream-zip keeps slices of a chunk across yields (its re-blocking), so the
        # two reused buffers of HashingCopier cannot be handed to it. sha256 overlaps in a thread as in mdl.
        fd = open_unchanged(src)
        digest = hashlib.sha256()
        pending: Future[None] | None = None
        try:
            while data := os.read(fd, CHUNK_SIZE):
                job = pool.submit(digest.update, data)
                if pending is not None:
                    pending.result()
                pending = job
                yield data
        finally:
            if pending is not None:
                pending.result()
            os.close(fd)
        seen[src.arcname] = digest.hexdigest()

    reach = 0  # the most the archive can have grown to: stream-zip's NO_COMPRESSION_32 refuses to start past 4 GiB

    def stored(size: int, crc: int) -> Any:
        nonlocal reach
        reach += 30 + 255 + size
        return (NO_COMPRESSION_64 if size >= 0xFFFFFFFF or reach >= 0xFFFFFFFF else NO_COMPRESSION_32)(size, crc)

    def members() -> Any:
        nonlocal reach
        yield (
            f"{stem}/{MANIFEST_NAME}",
            when,
            stat.S_IFREG | 0o644,
            stored(len(manifest), zlib.crc32(manifest)),
            (manifest,),
        )
        for src in files:
            if src.deflate:  # ZIP_AUTO: ZIP64 from the deflate bound, or when the entry starts past 4 GiB
                method, reach = ZIP_AUTO(src.size, level=6), reach + 30 + 255 + 24 + src.size + (src.size >> 11) + 13
            else:
                method = stored(src.size, sums[src.arcname][1])
            yield f"{stem}/{src.arcname}", when, stat.S_IFREG | 0o644, method, chunks(src)
        for name in folders:
            yield f"{stem}/{name}", when, stat.S_IFDIR | 0o755, NO_COMPRESSION_32(0, 0), ()

    try:
        for block in stream_zip(members(), chunk_size=CHUNK_SIZE, extended_timestamps=False):
            out.write(block)
            archive_digest.update(block)
            size += len(block)
    finally:
        pool.shutdown()
    if seen != hashes:
        raise SystemExit("a file changed between hashing and packing")
    out.flush()
    return size, archive_digest.hexdigest(), hashes


def child(writer: str, run: Path) -> None:
    """Pack ``run``'s checkpoint to stdout (a pipe) with ``writer``."""
    from mdl.archive import zipwriter
    from mdl.archive.packer import PackOptions, pack_run
    from mdl.progress import NullProgress

    if writer == "stream-zip":
        zipwriter._write_pipe = _stream_zip_pipe  # type: ignore[assignment]  # the only difference
    options = PackOptions(run_dir=run, output=Path("-"), checkpoint=CHECKPOINT, source_date_epoch=1_700_000_000)
    pack_run(options, progress=NullProgress(), stdout=sys.stdout.buffer)


def timed(writer: str, run: Path, keep: Path | None = None) -> tuple[float, float, int]:
    """Wall s, CPU s, peak RSS KiB of one child packing into a pipe read by ``cat`` (into ``keep`` or /dev/null)."""
    command = [sys.executable, __file__, "--child", writer, str(run)]
    report = Path(tempfile.gettempdir()) / f"mdl-bench-zipstream-{os.getpid()}"
    command = ["/usr/bin/time", "-f", "%M", "-o", str(report), *command]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    with open(keep or os.devnull, "wb") as target:
        started = time.monotonic()
        packer = subprocess.Popen(command, env=env, stdout=subprocess.PIPE)
        cat = subprocess.Popen(["cat"], stdin=packer.stdout, stdout=target)
        assert packer.stdout is not None
        packer.stdout.close()
        _, status, usage = os.wait4(packer.pid, 0)
        elapsed = time.monotonic() - started
        cat.wait()
    if os.waitstatus_to_exitcode(status) != 0 or cat.returncode != 0:
        raise SystemExit(f"{writer} failed: exit {os.waitstatus_to_exitcode(status)}")
    rss = int(report.read_text().split()[-1])
    report.unlink()
    return elapsed, usage.ru_utime + usage.ru_stime, rss


def local_headers(data: bytes) -> list[tuple[str, int, int, int, int, int, bytes]]:
    """(name, version, flags, method, crc, size, extra) of each local header, read front to back via the
    central directory's offsets (so deflated entries with descriptors are found too)."""
    import zipfile
    from io import BytesIO

    found = []
    with zipfile.ZipFile(BytesIO(data)) as zf:
        for info in zf.infolist():
            pos = info.header_offset
            version, flags, method, _, _, crc, _, usize, nlen, elen = struct.unpack_from("<HHHHHLLLHH", data, pos + 4)
            extra = data[pos + 30 + nlen : pos + 30 + nlen + elen]
            found.append((info.filename, version, flags, method, crc, usize, extra))
    return found


def check(folder: Path, run: Path) -> None:
    """Determinism, local headers, readers."""
    java = None
    if shutil.which("java"):
        java = folder / "ReadZip.java"
        java.write_text(JAVA_READER)
    archives = {}
    for writer in ("mdl", "stream-zip"):
        first, second = folder / f"{writer}-1.zip", folder / f"{writer}-2.zip"
        timed(writer, run, first)
        timed(writer, run, second)
        data = first.read_bytes()
        archives[writer] = data
        print(f"\n{writer}: {len(data)} bytes, sha256 {hashlib.sha256(data).hexdigest()[:16]}")
        print(f"  deterministic (two runs, same bytes): {data == second.read_bytes()}")
        heads = local_headers(data)
        stored = [h for h in heads if h[3] == 0]
        print(
            f"  stored entries: {len(stored)}, all with sizes+CRC in the local header and no descriptor: "
            f"{all(h[2] & 8 == 0 and (h[5] or h[0].endswith('/')) for h in stored)}"
        )
        print(f"  flags used: {sorted({h[2] for h in heads})}, versions: {sorted({h[1] for h in heads})}")
        zip64 = any(h[6][:2] == ZIP64_EXTRA for h in heads)
        print(f"  ZIP64 extra in a local header: {zip64}, ZIP64 end record: {ZIP64_END in data}")
        readers: dict[str, list[str]] = {
            "python zipfile": [
                sys.executable,
                "-c",
                "import zipfile,sys; assert zipfile.ZipFile(sys.argv[1]).testzip() is None",
            ],
            "unzip -t": ["unzip", "-tq"],
            "7z t": ["7z", "t"],
            "bsdtar (stream)": ["sh", "-c", 'bsdtar -xOf - < "$0" > /dev/null'],
            "java ZipInputStream (stream)": ["sh", "-c", f'java {java} < "$0"'],
            "mdl unpack": [sys.executable, "-m", "mdl", "unpack", "-q", "-d", str(folder / f"{writer}-out")],
        }
        for name, command in readers.items():
            tool = command[0] if command[0] != "sh" else command[2].split()[0]
            if shutil.which(tool) is None or (tool == "java" and java is None):
                print(f"  {name}: not installed")
                continue
            shutil.rmtree(folder / f"{writer}-out", ignore_errors=True)
            done = subprocess.run(
                [*command, str(first)], capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=str(ROOT))
            )
            print(f"  {name}: {'ok' if done.returncode == 0 else 'FAILED ' + (done.stderr or done.stdout)[-200:]}")
    mine, theirs = archives["mdl"], archives["stream-zip"]
    same = next((i for i, (a, b) in enumerate(zip(mine, theirs, strict=False)) if a != b), None)
    print(f"\nsame bytes from both writers: {mine == theirs} (first difference at byte {same})")
    for a, b in zip(local_headers(mine), local_headers(theirs), strict=True):
        if a != b:
            print(f"  {a[0]}: mdl (version, flags) {a[1:3]} vs stream-zip {b[1:3]}")
            break
    import zipfile
    from io import BytesIO

    with zipfile.ZipFile(BytesIO(mine)) as a, zipfile.ZipFile(BytesIO(theirs)) as b:
        same_entries = [i.filename for i in a.infolist()] == [i.filename for i in b.infolist()] and all(
            a.read(i) == b.read(i) for i in a.infolist()
        )
    print(f"  same entries, same contents: {same_entries}")


def past_4gib(folder: Path) -> None:
    """A 4.1 GiB shard (sparse: no disk, no random bytes needed) followed by a small shard and deflated text, as
    a Hugging Face checkpoint sorts: each writer's stream goes straight into Java's ZipInputStream (no file)."""
    ckpt = folder / "big" / CHECKPOINT
    ckpt.mkdir(parents=True, exist_ok=True)
    big_data = (4 << 30) + (100 << 20)
    for name, data_size, sparse in (("model-00001-of-00002", big_data, True), ("model-00002-of-00002", 1 << 20, False)):
        header = json.dumps({"w": {"dtype": "U8", "shape": [data_size], "data_offsets": [0, data_size]}}).encode()
        with (ckpt / f"{name}.safetensors").open("wb") as fh:
            fh.write(struct.pack("<Q", 4088) + header.ljust(4088))
            if sparse:
                fh.truncate(4096 + data_size)
            else:
                fh.write(os.urandom(data_size))
    weights = {"w1": "model-00001-of-00002.safetensors", "w2": "model-00002-of-00002.safetensors"}
    (ckpt / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weights}))
    (ckpt / "tokenizer.json").write_text(json.dumps({"vocab": {f"t{i}": i for i in range(5000)}}))
    (ckpt / "special_tokens_map.json").write_text('{"eos_token": "</s>"}')
    java = folder / "ReadZip.java"
    java.write_text(JAVA_READER)
    print(
        f"\npast 4 GiB ({big_data / (1 << 30):.1f} GiB shard, then a 1 MiB shard and deflated text), "
        "piped into Java ZipInputStream:"
    )
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    for writer in ("mdl", "stream-zip"):
        packer = subprocess.Popen(
            [sys.executable, __file__, "--child", writer, str(folder / "big")], env=env, stdout=subprocess.PIPE
        )
        reader = subprocess.run(["java", str(java)], stdin=packer.stdout, capture_output=True, text=True)
        assert packer.stdout is not None
        packer.stdout.close()
        packer.wait()
        entries = reader.stdout.split()
        print(f"  {writer}: pack exit {packer.returncode}, Java exit {reader.returncode}, {len(entries)} entries read")
        if reader.returncode:
            error = (reader.stderr.strip().splitlines() or [""])[0]
            print(f"    failed reading {entries[-1] if entries else '-'}: {error}")
    shutil.rmtree(folder / "big")


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "--child":
        child(sys.argv[2], Path(sys.argv[3]))
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", nargs="?", default="/tmp/mdl-bench-zipstream", type=Path)
    parser.add_argument("--size-mib", type=int, default=384)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--no-check", action="store_true", help="skip the determinism and reader checks")
    parser.add_argument("--past-4gib", action="store_true", help="only the > 4 GiB stream into Java (needs java)")
    args = parser.parse_args()
    if importlib.util.find_spec("stream_zip") is None:
        raise SystemExit("stream-zip is not installed: pip install stream-zip==0.0.84 (not a dependency of mdl)")
    if args.past_4gib:
        past_4gib(args.folder)
        return
    run = build_run(args.folder, args.size_mib)
    total = sum(f.stat().st_size for f in (run / CHECKPOINT).iterdir() if f.is_file())
    results: dict[str, list[tuple[float, float, int]]] = {w: [] for w in ("mdl", "stream-zip")}
    names = list(results)
    for rep in range(args.reps):
        for writer in names[rep % 2 :] + names[: rep % 2]:
            measured = timed(writer, run)
            results[writer].append(measured)
            print(
                f"rep {rep + 1} {writer:10s} {measured[0]:6.2f}s wall {measured[1]:6.2f}s cpu "
                f"peak RSS {measured[2] / 1024:6.1f} MiB",
                file=sys.stderr,
            )
    print(
        f"\nrun: {total / (1 << 20):.0f} MiB ({SHARDS} stored shards + deflated text), into a pipe to cat, "
        f"{args.reps} alternating runs, median (min-max)\n"
    )
    print("| writer | median wall s | min-max wall s | median CPU s | peak RSS MiB |")
    print("|---|---|---|---|---|")
    for (writer, runs), label in zip(results.items(), WRITERS, strict=True):
        walls = [w for w, _, _ in runs]
        print(
            f"| {label} | {statistics.median(walls):.2f} | {min(walls):.2f}-{max(walls):.2f} "
            f"| {statistics.median(c for _, c, _ in runs):.2f} | {max(r for _, _, r in runs) / 1024:.1f} |"
        )
    mine, theirs = results["mdl"], results["stream-zip"]
    ratio = [statistics.median(x[i] for x in theirs) / statistics.median(x[i] for x in mine) for i in range(3)]
    print(f"\nstream-zip / mdl: wall {ratio[0]:.2f}, CPU {ratio[1]:.2f}, peak RSS (median) {ratio[2]:.2f}")
    if not args.no_check:
        check(args.folder, run)


if __name__ == "__main__":
    main()
