"""Shared test helpers: the one way to run a command (`mdl`), the one bounded wait (`wait_for`), and
builders of realistic training-run folders (HF Trainer, PEFT, Lightning, kohya) on disk."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import struct
import subprocess
import sys
import tarfile
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from io import BytesIO
from pathlib import Path
from typing import Any

import httpx2
import pytest
from servers import make_data
from typer.testing import CliRunner, Result

from mdl.cli.app import app
from mdl.progress import Event, Progress
from mdl.transfer.connection import Proxy, route_table
from mdl.transfer.http import Credentials
from mdl.transfer.job import Identity, RetryLog, TransferJob

# the fields of a ``file …`` log line: a value is bare, or a JSON string
_FIELD = re.compile(r'(\w+)=("(?:[^"\\]|\\.)*"|\S+)')


def parse_file_line(line: str) -> dict[str, str]:
    """The fields of a ``file …`` line (anywhere in a log line), JSON strings decoded."""
    start = line.find(" file ") + 6 if not line.startswith("file ") else 5
    return {
        key: json.loads(raw) if raw.startswith('"') else raw
        for key, raw in _FIELD.findall(line[start:])
    }


# The training state a deploy pack must leave out (HF Trainer writes all of these per checkpoint).
TRAINING_STATE = ("optimizer.pt", "scheduler.pt", "scaler.pt", "rng_state.pth", "training_args.bin")


def mdl(*args: str, stdin: str | None = None, env: Mapping[str, str] | None = None) -> Result:
    """``mdl ARGS`` in this process (stdout and stderr kept apart), ``stdin`` as its input,
    ``env`` on top of ours.
    """
    return CliRunner().invoke(app, list(args), input=stdin, env=env)


def mdl_as_child(
    args: Sequence[str],
    *,
    env: Mapping[str, str],
    cwd: Path | None = None,
    stdin: str | None = None,
) -> Result:
    """``mdl ARGS`` as a child given exactly ``env`` (nothing else of ours), ``cwd`` and
    ``sys.argv`` would see it, run in this process: the proof of a test that is not about a
    process, without one (0.4-1.5 CPU-s each). What a child would print as a traceback (an
    exception past the translator) is on its stderr too, so "no traceback" still holds it.
    Everything is put back after the run; the logger's handler is replaced by the next run's."""
    only = {name: None for name in os.environ if name not in env} | dict(env)
    argv = sys.argv[:]
    sys.argv[:] = ["mdl", *args]  # what the log and a lock's holder line name
    try:
        with contextlib.chdir(cwd or Path.cwd()):
            result = CliRunner().invoke(app, list(args), input=stdin, env=only, prog_name="mdl")
    finally:
        sys.argv[:] = argv
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        told = "".join(traceback.format_exception(result.exception))
        result.stderr_bytes = (result.stderr_bytes or b"") + told.encode()
    return result


def use_catalog(
    folder: Path, monkeypatch: pytest.MonkeyPatch, text: str | None, *, endpoint: str | None = None
) -> Path:
    """``text`` as ``folder/catalog.toml`` (None: the test writes it), with the CLI pointed at it,
    at ``folder/models`` (MDL_DEST), at ``folder/mdl.log`` (MDL_LOG_FILE) and, given one, at the Hub
    ``endpoint``."""
    catalog = folder / "catalog.toml"
    if text is not None:
        catalog.write_text(text)
    if endpoint is not None:
        monkeypatch.setenv("HF_ENDPOINT", endpoint)
    monkeypatch.setenv("MDL_CATALOG", str(catalog))
    monkeypatch.setenv("MDL_DEST", str(folder / "models"))
    monkeypatch.setenv("MDL_LOG_FILE", str(folder / "mdl.log"))
    return catalog


def without_modules(folder: Path, *names: str) -> dict[str, str]:
    """``os.environ`` for a child process that cannot import ``names`` (as after installing mdl
    without them): a ``sitecustomize`` first on ``PYTHONPATH`` (mdl stays importable from the rest)
    sets them to None in sys.modules."""
    blocker = folder / "blocked"
    blocker.mkdir()
    (blocker / "sitecustomize.py").write_text(
        "import sys\n" + "".join(f"sys.modules[{n!r}] = None\n" for n in names)
    )
    path = os.pathsep.join(p for p in (str(blocker), os.environ.get("PYTHONPATH")) if p)
    return {**os.environ, "PYTHONPATH": path}


# Seconds: the bound on a wait that only a hang reaches, never a measure of speed (a busy 2-core
# machine can keep a process off the CPU for many seconds). A test whose product deadline must fire
# asserts that it fired; a test that a wait is bounded sets what would be the wrong wait far beyond
# HANG and bounds the right one by HANG.
HANG = 120.0


def mdl_from_history(commit: str, folder: Path) -> Path:
    """``mdl/`` as ``commit`` had it (``git archive`` of this checkout), in ``folder``: an old
    release for PYTHONPATH. tarfile's "data" filter where this Python has it (3.11.4 and later;
    3.11.2, Debian 12's, lacks it): the archive is this repository's own history either way."""
    root = Path(__file__).resolve().parent.parent
    done = subprocess.run(
        ["git", "-C", str(root), "archive", "--format=tar", commit, "mdl"],
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    safe = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
    with tarfile.open(fileobj=BytesIO(done.stdout)) as tar:
        tar.extractall(folder, **safe)
    return folder


def wait_for(predicate: Callable[[], bool], timeout: float = HANG, what: str = "condition") -> None:
    """Poll ``predicate`` every 20 ms until it holds; fail naming ``what`` once ``timeout``
    seconds have passed.
    """
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not reached within {timeout}s")
        time.sleep(0.02)


class Meeting:
    """A server's hold (``Fault.call(meeting)``): each caller waits there until ``parties`` have
    arrived, then all go on (and every later one at once). Two runs are both past their first
    request before either goes further, however the OS schedules them; a party that never comes
    fails the server after HANG."""

    def __init__(self, parties: int = 2) -> None:
        self.parties, self.arrived, self.met = parties, 0, threading.Event()
        self._lock = threading.Lock()

    def __call__(self) -> None:
        with self._lock:
            self.arrived += 1
            if self.arrived >= self.parties:
                self.met.set()
        if not self.met.wait(HANG):
            raise AssertionError(f"{self.arrived} of {self.parties} parties came within {HANG}s")


def recorded(dest: Path, model: str, paths: Iterable[str]) -> bool:
    """Whether the record of ``model`` under ``dest`` names each of ``paths`` as fetched. A run
    writes its records at most once a second and releases a finished file's lock only then: wait on
    this, never on a clock."""
    try:
        doc = json.loads((dest / ".mdl" / "records" / f"{model}.json").read_text())
    except (OSError, ValueError):
        return False
    return set(paths) <= set(doc.get("files") or {})


def safetensors_bytes(
    tensors: dict[str, int], *, seed: str = "x", metadata: dict[str, str] | None = None
) -> bytes:
    """A valid safetensors file: 8-byte LE header length, JSON header with data_offsets, then the
    data.
    """
    header: dict[str, Any] = {}
    if metadata:
        header["__metadata__"] = metadata
    offset = 0
    for name, nbytes in tensors.items():
        header[name] = {"dtype": "U8", "shape": [nbytes], "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)  # the format pads the header to 8 bytes
    return struct.pack("<Q", len(raw)) + raw + make_data(offset, seed)


def safetensors_header(data_size: int) -> bytes:
    """Just the header of a one-tensor file whose data region is ``data_size`` bytes (for sparse
    files).
    """
    raw = json.dumps(
        {"w": {"dtype": "U8", "shape": [data_size], "data_offsets": [0, data_size]}}
    ).encode()
    raw += b" " * (-len(raw) % 8)
    return struct.pack("<Q", len(raw)) + raw


def write(path: Path, data: bytes | str) -> Path:
    """Write ``data`` to ``path``, creating parents."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


def write_json(path: Path, doc: Any) -> Path:
    """Write ``doc`` as JSON to ``path``."""
    return write(path, json.dumps(doc, indent=2))


@dataclass
class Run:
    """A run folder and what was put in it."""

    root: Path
    checkpoints: list[str] = field(default_factory=list)

    def ckpt(self, name: str) -> Path:
        """The path of checkpoint ``name``."""
        return self.root / name


def write_model_files(
    folder: Path, *, seed: str, sharded: bool = False, weights_kib: int = 64
) -> None:
    """Config, tokenizer and weights (single file, or two shards with
    model.safetensors.index.json).
    """
    write_json(folder / "config.json", {"model_type": "bert", "hidden_size": 32})
    write_json(folder / "generation_config.json", {"max_length": 20})
    write_json(folder / "tokenizer.json", {"version": "1.0", "model": {"vocab": {"a": 0, "b": 1}}})
    write_json(folder / "tokenizer_config.json", {"model_max_length": 512})
    write_json(folder / "special_tokens_map.json", {"pad_token": "[PAD]"})
    write(folder / "vocab.txt", "[PAD]\n[UNK]\na\nb\n" * 50)
    if sharded:
        names = ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]
        weight_map: dict[str, str] = {}
        for i, shard in enumerate(names):
            tensors = {f"layer{i}.weight": weights_kib * 512, f"layer{i}.bias": 256}
            write(folder / shard, safetensors_bytes(tensors, seed=f"{seed}-{i}"))
            weight_map.update(dict.fromkeys(tensors, shard))
        index = {"metadata": {"total_size": 0}, "weight_map": weight_map}
        write_json(folder / "model.safetensors.index.json", index)
    else:
        tensors = {"embeddings.weight": weights_kib * 1024, "classifier.bias": 128}
        write(folder / "model.safetensors", safetensors_bytes(tensors, seed=seed))


def make_hf_run(
    root: Path,
    *,
    steps: tuple[int, ...] = (100, 200, 300),
    sharded: tuple[int, ...] = (),
    best_step: int | None = None,
    best_path: str | None = None,
) -> Run:
    """An HF Trainer output folder: checkpoint-N folders with weights, tokenizer, trainer_state and
    training state, a final model at the top, logs, and trainer_state.json recording the best
    checkpoint."""
    root.mkdir(parents=True, exist_ok=True)
    run = Run(root)
    best = best_step if best_step is not None else steps[0]
    recorded = (
        best_path
        if best_path is not None
        else f"/data/old-machine/outputs/{root.name}/checkpoint-{best}"
    )
    for step in steps:
        folder = root / f"checkpoint-{step}"
        write_model_files(folder, seed=f"ckpt-{step}", sharded=step in sharded)
        for name in TRAINING_STATE:
            write(folder / name, make_data(2048, f"{name}-{step}"))
        state = {
            "global_step": step,
            "best_metric": 0.25,
            "best_global_step": best if best <= step else None,
            "best_model_checkpoint": recorded if best <= step else None,
            "log_history": [{"step": step, "loss": 1.0 / step}],
        }
        write_json(folder / "trainer_state.json", state)
        run.checkpoints.append(folder.name)
    write_model_files(root, seed="final")
    write(root / "training_args.bin", make_data(1024, "args"))
    write(root / "training.log", "".join(f"step {s} loss {1.0 / s:.4f}\n" for s in steps))
    write_json(root / "progress.json", {"step": steps[-1], "done": True})
    write_json(root / "all_results.json", {"eval_loss": 0.25})
    write(root / "README.md", "# fine-tuned model\n")
    return run


def make_lightning_run(root: Path) -> Run:
    """A Lightning run as Lightning writes it (``lightning_logs/version_N/``): hparams.yaml, an
    event file, and checkpoints/ with epoch=E-step=S.ckpt files and last.ckpt as a relative
    symlink.
    """
    write(root / "hparams.yaml", "lr: 0.001\n")
    write(root / "events.out.tfevents.1700000000.host.1.0", make_data(256, "pl-events"))
    for epoch, step in ((0, 100), (1, 200)):
        write(
            root / "checkpoints" / f"epoch={epoch}-step={step}.ckpt", make_data(4096, f"pl-{step}")
        )
    os.symlink("epoch=1-step=200.ckpt", root / "checkpoints" / "last.ckpt")
    return Run(root, ["epoch=0-step=100.ckpt", "epoch=1-step=200.ckpt", "last.ckpt"])


def make_kohya_run(root: Path) -> Run:
    """kohya sd-scripts output: name-00000N.safetensors per epoch, final name.safetensors,
    *-state folders.
    """
    root.mkdir(parents=True, exist_ok=True)
    for epoch in (1, 2):
        write(
            root / f"style-{epoch:06d}.safetensors",
            safetensors_bytes({"lora.down": 4096}, seed=f"k{epoch}"),
        )
        write(root / f"style-{epoch:06d}-state" / "optimizer.bin", make_data(1024, f"ks{epoch}"))
    write(root / "style.safetensors", safetensors_bytes({"lora.down": 4096}, seed="kfinal"))
    return Run(root, ["style-000001.safetensors", "style-000002.safetensors"])


class RecordingProgress(Progress):
    """A Progress that keeps what it was told, and can run a hook on each advance (to act
    mid-pack).
    """

    def __init__(self, on_advance: Any = None) -> None:
        self.notes: list[str] = []
        self.started: list[str] = []
        self.names: list[tuple[str | None, str | None]] = []
        self.advanced = 0
        self.begun: tuple[int | None, int] | None = None
        self.batches: list[tuple[int | None, int]] = []
        self.by_key: dict[str, int] = {}
        self._on_advance = on_advance

    def emit(self, event: Event) -> None:
        if event.kind == "begin":
            self.begun = (event.total, event.files)
            self.batches.append(self.begun)
        elif event.kind == "start":
            self.started.append(event.key)
            self.names.append((event.model, event.path))
        elif event.kind == "waiting":
            self.notes.append(f"{event.key}: {event.message}")
        elif event.kind == "note":
            self.notes.append(event.message)
        elif event.kind == "advance":
            self.advanced += event.nbytes
            self.by_key[event.key] = self.by_key.get(event.key, 0) + event.nbytes
            if self._on_advance is not None:
                self._on_advance(event.key, event.nbytes)


def transfer_job(
    folder: Path,
    url: str,
    data: bytes | None = None,
    *,
    size: int | None = None,
    sha: str | None = None,
    git_oid: str | None = None,
    etag: str | None = None,
    credentials: Credentials | None = None,
    **more: Any,
) -> TransferJob:
    """The job transfer tests fetch into ``folder/dest/m/f.bin``, expecting ``data``'s size and
    sha256, if given.
    """
    if data is not None:
        size, sha = len(data), hashlib.sha256(data).hexdigest()
    partial = folder / "dest" / ".mdl" / "partial"
    return TransferJob(
        label="m/f.bin",
        url=url,
        identity=Identity(size, sha, git_oid, etag),
        credentials=credentials or Credentials(),
        final_path=folder / "dest" / "m" / "f.bin",
        part_path=partial / "f.part",
        state_path=partial / "f.part.json",
        source=url,
        **{"retries": RetryLog(), **more},
    )


def proxy_for(url: str, environ: Mapping[str, str]) -> Proxy | None:
    """The proxy ``url`` goes through (None: direct), as httpx2 matches the mounts mdl builds from
    ``environ``: each route answers with the proxy it stands for, so the test asks httpx2 itself,
    not a copy of its rules."""

    def route(proxy: Proxy | None) -> httpx2.MockTransport:
        return httpx2.MockTransport(lambda _: httpx2.Response(204, extensions={"proxy": proxy}))

    mounts = {pattern: route(proxy) for pattern, proxy in route_table(environ).items()}
    with httpx2.Client(transport=route(None), mounts=mounts, trust_env=False) as client:
        chosen: Proxy | None = client.get(url).extensions["proxy"]
    return chosen


def bypasses(host: str, port: int, no_proxy: str) -> bool:
    """Whether ``no_proxy`` sends ``host:port`` direct."""
    shown = f"[{host}]" if ":" in host else host
    environ = {"http_proxy": "http://proxy.invalid", "no_proxy": no_proxy}
    return proxy_for(f"http://{shown}:{port}/", environ) is None
