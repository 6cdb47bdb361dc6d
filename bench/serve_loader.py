"""The loader of bench/serve.py: run:ai's model streamer (``runai-model-streamer``, with
``runai-model-streamer-s3`` for s3://) loading every tensor of a safetensors model into CPU memory,
as vLLM's ``--load-format runai_streamer`` does. Run by the bench with its own venv's Python (torch
and the streamer are not mdl's dependencies).

    python bench/serve_loader.py --mode files|file [--env-file F] [--s3-prefix s3://mdl/m/ | PATH...]

- ``--env-file F``: wait (at most ``--env-timeout`` s) for the file mdl serve writes once it
  listens, then take its ``export NAME=value`` lines into the environment before the streamer is
  imported. torch is imported first, so a loader started beside ``mdl serve`` overlaps its own
  start-up with the server's, as a real one would.
- ``--s3-prefix``: list the ``*.safetensors`` under it with the streamer's own helper
  (``list_safetensors``, a ListObjectsV2 through boto3), as vLLM does; else PATHs (local or s3://).
- ``--mode files``: one ``SafetensorsStreamer.stream_files(all paths)`` (vLLM's way today: every
  shard's header is read before any tensor); ``file``: ``stream_file`` per shard, in order.
- ``--check JSON``: ``{name: sha256}`` of some tensors; each loaded tensor of that name is hashed
  after the clock stopped and compared.

Prints one JSON document on stdout: wall-clock stamps (``time.time()``) of the start, torch
imported, the environment read, the first and the last tensor, tensors and bytes loaded, the
checks, and the error (its type and text) when the load failed.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shlex
import sys
import time
import traceback
from pathlib import Path


def read_env_file(path: Path, timeout: float) -> dict[str, str]:
    deadline = time.monotonic() + timeout
    while True:
        try:
            text = path.read_text()
        except FileNotFoundError:
            text = ""
        if text.strip():
            break
        if time.monotonic() > deadline:
            raise TimeoutError(f"no environment in {path} after {timeout:g} s")
        time.sleep(0.01)
    found: dict[str, str] = {}
    for line in text.splitlines():
        words = shlex.split(line)
        if len(words) == 2 and words[0] == "export" and "=" in words[1]:
            name, _, value = words[1].partition("=")
            found[name] = value
    return found


def main() -> int:
    out: dict = {"start": time.time(), "pid": os.getpid()}
    parser = argparse.ArgumentParser()
    parser.add_argument("paths", nargs="*")
    parser.add_argument("--mode", choices=("files", "file"), default="files")
    parser.add_argument("--env-file", type=Path)
    parser.add_argument("--env-timeout", type=float, default=60.0)
    parser.add_argument("--s3-prefix")
    parser.add_argument("--check", type=Path)
    parser.add_argument("--set", action="append", default=[], help="NAME=VALUE, after the env file")
    args = parser.parse_args()
    import torch

    out["torch"] = time.time()
    try:
        if args.env_file is not None:
            env = read_env_file(args.env_file, args.env_timeout)
            os.environ.update(env)
            out["env_names"] = sorted(env)
        for item in args.set:
            name, _, value = item.partition("=")
            os.environ[name] = value
        out["env"] = time.time()
        from runai_model_streamer import SafetensorsStreamer, list_safetensors

        paths = list(args.paths)
        if args.s3_prefix:
            paths = sorted(list_safetensors(args.s3_prefix))
            out["listed"] = time.time()
        out["paths"] = paths
        tensors: dict[str, torch.Tensor] = {}
        first = None
        total = 0
        with SafetensorsStreamer() as streamer:
            groups = [paths] if args.mode == "files" else [[p] for p in paths]
            for group in groups:
                streamer.stream_files(group)
                for name, tensor in streamer.get_tensors():
                    if first is None:
                        first = time.time()
                    tensors[name] = tensor  # owned (the default): kept, as a model's weights are
                    total += tensor.numel() * tensor.element_size()
        out["first"], out["last"] = first, time.time()
        out["tensors"], out["bytes"] = len(tensors), total
        if args.check is not None:
            expected = json.loads(args.check.read_text())
            bad = []
            for name, digest in expected.items():
                tensor = tensors.get(name)
                got = None
                if tensor is not None:
                    got = hashlib.sha256(tensor.contiguous().view(torch.uint8).numpy()).hexdigest()
                if got != digest:
                    bad.append(name)
            out["checked"], out["mismatched"] = len(expected), bad
        out["ok"] = True
    except BaseException as exc:
        out["ok"] = False
        out["error"] = f"{type(exc).__name__}: {exc}"
        out["traceback"] = traceback.format_exc()[-4000:]
    out["end"] = time.time()
    sys.stdout.write(json.dumps(out) + "\n")
    sys.stdout.flush()
    return 0 if out["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
