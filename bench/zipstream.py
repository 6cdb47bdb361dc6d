"""The pipe writer of ``mdl pack -o -`` against the ``stream-zip`` package: same run, same pipe,
then the checks.

    python bench/zipstream.py [FOLDER] [--size-mib 384] [--reps 3] [--no-check] [--past-4gib]

Both writers go through ``pack_run`` (same selection, manifest and hashing pass); only the writer
after the hashing pass differs: ``StreamZipWriter`` or ``stream_zip.stream_zip`` (the adapter below:
what adopting it would take). Each packs into a pipe read by ``cat > /dev/null``. Then (unless
``--no-check``) one archive of each: determinism, stored entries' local headers, every zip reader
here. ``--past-4gib`` streams a 4.1 GiB pack into Java's ``ZipInputStream``. Needs ``pip install
stream-zip==0.0.84`` (not a dependency of mdl); bench/README-pack.md.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import struct
import subprocess
import sys
import zipfile
from io import BytesIO
from pathlib import Path
from typing import Any, BinaryIO

import runner as r

CHECKPOINT, SHARDS, ZIP64_EXTRA = "checkpoint-1000", 3, b"\x01\x00"
JAVA_READER = """import java.io.*; import java.util.zip.*;
public class ReadZip { public static void main(String[] a) throws Exception {
    try (ZipInputStream z = new ZipInputStream(new BufferedInputStream(System.in, 1 << 20))) {
        byte[] b = new byte[1 << 16]; ZipEntry e;
        while ((e = z.getNextEntry()) != null) { System.out.println(e.getName()); while (z.read(b) > 0) {} }
    } } }
"""
READERS = {
    "python zipfile": [
        r.PY,
        "-c",
        "import zipfile,sys; assert zipfile.ZipFile(sys.argv[1]).testzip() is None",
    ],
    "unzip -t": ["unzip", "-tq"],
    "7z t": ["7z", "t"],
    "bsdtar (stream)": ["sh", "-c", 'bsdtar -xOf - < "$0" >/dev/null'],
    "java ZipInputStream (stream)": ["sh", "-c", 'java "$JAVA_READER" < "$0"'],
    "mdl unpack": r.mdl("unpack", "-q", "-d"),
}


def shard(path: Path, data_size: int, *, sparse: bool = False) -> None:
    """A safetensors shard: an 8-byte length, a JSON header padded to 4 KiB, then ``data_size``
    bytes.
    """
    header = json.dumps(
        {"w": {"dtype": "U8", "shape": [data_size], "data_offsets": [0, data_size]}}
    ).encode()
    prefix = struct.pack("<Q", 4088) + header.ljust(4088)
    if not sparse:
        r.write_file(
            path,
            4096 + data_size,
            prefix=prefix,
            meta=path.parent.parent / f"{path.name}.meta.json",
        )
        return
    with path.open("wb") as fh:  # no disk, no random bytes needed
        fh.write(prefix)
        fh.truncate(4096 + data_size)


def build_run(folder: Path, size_mib: int) -> Path:
    """SHARDS random shards (stored), tokenizer/merges/config/README (deflated), two empty
    folders.
    """
    ckpt = folder / "run" / CHECKPOINT
    (ckpt / "samples" / "none-yet").mkdir(parents=True, exist_ok=True)
    (ckpt / "assets").mkdir(exist_ok=True)
    names = [f"model-{i:05d}-of-{SHARDS:05d}.safetensors" for i in range(1, SHARDS + 1)]
    for name in names:
        shard(ckpt / name, size_mib // SHARDS * r.MiB)
    index = {"weight_map": {f"w{i}": n for i, n in enumerate(names)}}
    (ckpt / "model.safetensors.index.json").write_text(json.dumps(index))
    vocab = {f"tok{i}": i for i in range(120_000)}
    (ckpt / "tokenizer.json").write_text(json.dumps({"model": {"vocab": vocab}}, indent=1))
    (ckpt / "merges.txt").write_text("".join(f"tok{i} tok{i + 1}\n" for i in range(60_000)))
    (ckpt / "config.json").write_text(
        json.dumps({"model_type": "llama", "hidden_size": 4096}, indent=2)
    )
    (ckpt / "README.md").write_text("# bench run\n" * 2000)
    return folder / "run"


def _stream_zip_pipe(
    out: BinaryIO, contents: Any, progress: Any
) -> tuple[int, str, dict[str, str]]:
    """``zipwriter._write_pipe`` with stream-zip as the writer: the hashing pass is mdl's,
    unchanged.
    """
    import stat
    import zlib
    from concurrent.futures import Future, ThreadPoolExecutor
    from datetime import datetime

    from stream_zip import NO_COMPRESSION_32, NO_COMPRESSION_64, ZIP_AUTO, stream_zip

    from mdl.archive._zipwriter import (
        CHUNK_SIZE,
        HashingCopier,
        _CrcSink,
        open_unchanged,
        zip_date_time,
    )
    from mdl.archive.zipread import MANIFEST_NAME

    files, when = contents.files, datetime(*zip_date_time(contents.epoch))
    sums: dict[str, tuple[str, int]] = {}
    with HashingCopier() as copier:
        progress.begin(total_bytes=sum(f.size for f in files), files=len(files))
        for src in files:  # the hashing pass of zipwriter._write_pipe
            sink = _CrcSink()
            sums[src.arcname] = (copier.copy(src, sink, progress, "hash:" + src.arcname), sink.crc)
    hashes = {name: sha for name, (sha, _) in sums.items()}
    manifest = contents.manifest(hashes)
    # reach: how far the archive may have grown
    pool, seen, reach = ThreadPoolExecutor(max_workers=1), {}, 0

    def chunks(src: Any) -> Any:  # fresh bytes per chunk: stream-zip keeps slices across yields
        fd, digest, pending = open_unchanged(src), hashlib.sha256(), None
        try:
            while data := os.read(fd, CHUNK_SIZE):
                job: Future[None] = pool.submit(digest.update, data)
                if pending is not None:
                    pending.result()
                pending = job
                yield data
        finally:
            if pending is not None:
                pending.result()
            os.close(fd)
        seen[src.arcname] = digest.hexdigest()

    def stored(size: int, crc: int) -> Any:  # NO_COMPRESSION_32 refuses to start past 4 GiB
        nonlocal reach
        reach += 30 + 255 + size
        return (
            NO_COMPRESSION_64 if size >= 0xFFFFFFFF or reach >= 0xFFFFFFFF else NO_COMPRESSION_32
        )(size, crc)

    def members() -> Any:
        nonlocal reach
        head = stored(len(manifest), zlib.crc32(manifest))
        yield f"{contents.stem}/{MANIFEST_NAME}", when, stat.S_IFREG | 0o644, head, (manifest,)
        for src in files:
            # ZIP_AUTO: ZIP64 from the deflate bound, or when the entry starts past 4 GiB
            if src.deflate:
                method, reach = (
                    ZIP_AUTO(src.size, level=6),
                    reach + 30 + 255 + 24 + src.size + (src.size >> 11) + 13,
                )
            else:
                method = stored(src.size, sums[src.arcname][1])
            yield f"{contents.stem}/{src.arcname}", when, stat.S_IFREG | 0o644, method, chunks(src)
        for name in contents.folders:
            yield f"{contents.stem}/{name}", when, stat.S_IFDIR | 0o755, NO_COMPRESSION_32(0, 0), ()

    size, archive = 0, hashlib.sha256()
    try:
        for block in stream_zip(members(), chunk_size=CHUNK_SIZE, extended_timestamps=False):
            out.write(block)
            archive.update(block)
            size += len(block)
    finally:
        pool.shutdown()
    if seen != hashes:
        raise SystemExit("a file changed between hashing and packing")
    out.flush()
    return size, archive.hexdigest(), hashes


def child(writer: str, run: Path) -> None:
    """Pack ``run``'s checkpoint to stdout with ``writer``."""
    from mdl.archive import _zipwriter as zipwriter
    from mdl.archive.packer import PackOptions, pack_run
    from mdl.progress import NullProgress

    if writer == "stream-zip":
        zipwriter._write_pipe = _stream_zip_pipe  # type: ignore[assignment]  # the only difference
    options = PackOptions(
        run_dir=run, output=Path("-"), checkpoint=CHECKPOINT, source_date_epoch=1_700_000_000
    )
    pack_run(options, progress=NullProgress(), stdout=sys.stdout.buffer)


def pack(writer: str, run: Path, into: str = "/dev/null") -> list[str]:
    """``python zipstream.py --child WRITER RUN | cat > INTO`` (GNU time counts both, and the
    pipe's slowest).
    """
    script = 'set -o pipefail; "$0" "$1" --child "$2" "$3" | cat > "$4"'
    return ["bash", "-c", script, r.PY, __file__, writer, str(run), into]


def local_headers(data: bytes) -> list[tuple[str, int, int, int, int, bytes]]:
    """(name, version, flags, method, size, extra) of each local header, found through the
    central directory.
    """
    found = []
    with zipfile.ZipFile(BytesIO(data)) as zf:
        for info in zf.infolist():
            at = info.header_offset
            version, flags, method, *_, usize, nlen, elen = struct.unpack_from(
                "<HHHHHLLLHH", data, at + 4
            )
            start = at + 30 + nlen
            found.append((info.filename, version, flags, method, usize, data[start : start + elen]))
    return found


def check(folder: Path, run: Path, env: dict[str, str]) -> None:
    """Determinism, stored entries' local headers, and every reader on this machine, for each
    writer.
    """
    (folder / "ReadZip.java").write_text(JAVA_READER)
    env = {**env, "JAVA_READER": str(folder / "ReadZip.java")}
    archives = {}
    for writer in ("mdl", "stream-zip"):
        first, second = folder / f"{writer}-1.zip", folder / f"{writer}-2.zip"
        for path in (first, second):
            subprocess.run(pack(writer, run, str(path)), env=env, check=True)
        data = archives[writer] = first.read_bytes()
        heads = local_headers(data)
        stored = [h for h in heads if h[3] == 0]
        zip64 = any(h[5][:2] == ZIP64_EXTRA for h in heads)
        clean = all(h[2] & 8 == 0 and (h[4] or h[0].endswith("/")) for h in stored)
        print(
            f"\n{writer}: {len(data)} bytes, deterministic: {data == second.read_bytes()}; stored"
            f" entries with sizes and CRC in the local header, no descriptor: {clean}; flags"
            f" {sorted({h[2] for h in heads})}; ZIP64 extra in a local header: {zip64}"
        )
        for name, argv in READERS.items():
            tool = argv[0] if argv[0] != "sh" else argv[2].split()[0]
            if not r.which(tool):
                print(f"  {name}: not installed")
                continue
            shutil.rmtree(folder / "unpacked", ignore_errors=True)
            done = subprocess.run(
                [*argv, *([str(folder / "unpacked")] if name == "mdl unpack" else []), str(first)],
                capture_output=True,
                text=True,
                env=env,
            )
            print(
                f"  {name}:"
                f" {'ok' if done.returncode == 0 else 'FAILED ' + (done.stderr or done.stdout)[-200:]}"
            )
    mine, theirs = archives["mdl"], archives["stream-zip"]
    with zipfile.ZipFile(BytesIO(mine)) as a, zipfile.ZipFile(BytesIO(theirs)) as b:
        names = [i.filename for i in a.infolist()]
        same = names == [i.filename for i in b.infolist()] and all(
            a.read(n) == b.read(n) for n in names
        )
    print(f"\nsame bytes from both writers: {mine == theirs}; same entries, same contents: {same}")


def past_4gib(folder: Path, env: dict[str, str]) -> None:
    """A 4.1 GiB sparse shard, a small shard and deflated text, as a checkpoint sorts, streamed
    into Java.
    """
    ckpt = folder / "big" / CHECKPOINT
    ckpt.mkdir(parents=True, exist_ok=True)
    shard(ckpt / "model-00001-of-00002.safetensors", (4 << 30) + (100 << 20), sparse=True)
    shard(ckpt / "model-00002-of-00002.safetensors", r.MiB)
    index = {"weight_map": {"w1": "model-00001-of-00002.safetensors"}}
    (ckpt / "model.safetensors.index.json").write_text(json.dumps(index))
    (ckpt / "tokenizer.json").write_text(json.dumps({"vocab": {f"t{i}": i for i in range(5000)}}))
    (folder / "ReadZip.java").write_text(JAVA_READER)
    print(
        "\npast 4 GiB (4.1 GiB shard, then a 1 MiB shard and deflated text), piped into Java"
        " ZipInputStream:"
    )
    for writer in ("mdl", "stream-zip"):
        into_java = 'set -o pipefail; "$0" "$1" --child "$2" "$3" | java "$4"'
        argv = [
            "bash",
            "-c",
            into_java,
            r.PY,
            __file__,
            writer,
            str(folder / "big"),
            str(folder / "ReadZip.java"),
        ]
        done = subprocess.run(argv, capture_output=True, text=True, env=env)
        entries = done.stdout.split()
        print(
            f"  {writer}: exit {done.returncode}, {len(entries)} entries read"
            f" {done.stderr.strip()[-200:]}"
        )
    shutil.rmtree(folder / "big")


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "--child":
        return child(sys.argv[2], Path(sys.argv[3]))
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    r.add_common(parser, reps=3)
    parser.add_argument("folder", nargs="?", default=Path("/tmp/mdl-bench-zipstream"), type=Path)
    parser.add_argument("--size-mib", type=int, default=384)
    parser.add_argument(
        "--no-check", action="store_true", help="skip the determinism and reader checks"
    )
    parser.add_argument(
        "--past-4gib", action="store_true", help="only the > 4 GiB stream into Java (needs java)"
    )
    args = r.parse(parser)
    env = r.clean_env(args.workdir)
    if subprocess.run([r.PY, "-c", "import stream_zip"], env=env, capture_output=True).returncode:
        sys.exit(
            "stream-zip is not installed: pip install stream-zip==0.0.84 (not a dependency of mdl)"
        )
    if args.past_4gib:
        return past_4gib(args.folder, env)
    run = build_run(args.folder, args.size_mib)
    tools = [r.Tool(w, lambda d, w=w: pack(w, run)) for w in ("mdl", "stream-zip")]
    runs = r.measure(tools, reps=args.reps, work=args.workdir, env=env)
    print(
        f"\n{args.size_mib} MiB ({SHARDS} stored shards + deflated text) into a pipe to cat; ratio:"
        " over mdl's"
    )
    print(r.side_by_side(runs, nbytes=args.size_mib * r.MiB))
    if not args.no_check:
        check(args.folder, run, env)
    return None


if __name__ == "__main__":
    main()
