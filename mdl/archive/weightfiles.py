"""Reading untrusted run files while choosing a checkpoint: small JSON files and safetensors headers."""

from __future__ import annotations

import json
import math
import os
import stat
from pathlib import Path
from typing import Any

from mdl.errors import UsageError

_SAFETENSORS_MAX_HEADER = 100_000_000  # the limit the safetensors library itself enforces
_JSON_MAX = 64 << 20  # trainer_state.json and shard indexes are small; refuse to slurp anything huge


def _parse_int(text: str) -> int:
    value = int(text)
    if abs(value) >= 1 << 1024:  # past float range: no step, size or metric is this large
        raise ValueError(f"number {text[:20]}... is out of range")
    return value


def _parse_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e400: a number that overflows is not a value anyone wrote on purpose
        raise ValueError(f"number {text[:40]} is out of range")
    return value


def parse_json(raw: bytes) -> Any:
    """``json.loads`` for untrusted input: numbers out of float range and nesting too deep are ValueError."""
    try:
        return json.loads(raw, parse_int=_parse_int, parse_float=_parse_float)
    except RecursionError:
        raise ValueError("nested too deeply") from None


def read_small_json(path: Path, shown: str) -> Any:
    """Parse a small JSON file opened without following a final symlink; every failure is exit 2 naming ``shown``."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise UsageError(f"cannot read '{shown}': {exc.strerror}") from exc
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise UsageError(f"'{shown}' is not a regular file")
        with os.fdopen(os.dup(fd), "rb") as fh:
            raw = fh.read(_JSON_MAX + 1)
    except OSError as exc:
        raise UsageError(f"cannot read '{shown}': {exc.strerror}") from exc
    finally:
        os.close(fd)
    if len(raw) > _JSON_MAX:
        raise UsageError(f"'{shown}' is too large to be a JSON index")
    try:
        return parse_json(raw)
    except ValueError as exc:  # UnicodeDecodeError is a ValueError
        raise UsageError(f"'{shown}' is not valid JSON: {str(exc)[:200]}") from exc


def safetensors_problem(path: Path, shown: str | None = None) -> str | None:
    """Why a safetensors file is inconsistent (header length, JSON, data extent vs file size), or None."""
    shown = path.name if shown is None else shown
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise UsageError(f"cannot read '{shown}': {exc.strerror}") from exc
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return "not a regular file"
        head = os.pread(fd, 8, 0)
        if len(head) < 8:
            return f"truncated: {st.st_size} bytes, no header"
        header_len = int.from_bytes(head, "little")
        if header_len > _SAFETENSORS_MAX_HEADER or 8 + header_len > st.st_size:
            return f"header length {header_len} does not fit in {st.st_size} bytes"
        raw = os.pread(fd, header_len, 8)
    except OSError as exc:
        raise UsageError(f"cannot read '{shown}': {exc.strerror}") from exc
    finally:
        os.close(fd)
    try:
        header = parse_json(raw)
    except ValueError:
        return "header is not JSON"
    if not isinstance(header, dict):
        return "header is not a JSON object"
    end = 0
    for key, tensor in header.items():
        if key == "__metadata__":
            continue
        offsets = tensor.get("data_offsets") if isinstance(tensor, dict) else None
        if (
            not isinstance(offsets, list)
            or len(offsets) != 2
            or not all(type(o) is int and o >= 0 for o in offsets)
            or offsets[0] > offsets[1]
        ):
            return f"tensor {key!r} has bad data_offsets"
        end = max(end, offsets[1])
    expected = 8 + header_len + end
    if expected != st.st_size:
        return f"data should end at byte {expected} but the file has {st.st_size} (truncated or still being written)"
    return None
