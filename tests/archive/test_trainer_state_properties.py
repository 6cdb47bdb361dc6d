"""trainer_state.json is untrusted input that decides what gets packed. Beyond select_checkpoint
(fuzzed in test_properties.py), the whole ``mdl pack`` is fuzzed here: whatever the file holds and
whatever it is (a folder, a FIFO, a symlink out of the run or to nowhere, deep or huge JSON), pack
ends in a sound archive whose manifest and report are strict JSON (no NaN: issue 11 item 11) or an
MdlError with a documented exit code (issue 11 item 10) — and writes nothing but its archive."""

from __future__ import annotations

import json
import os
import tempfile
import zipfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from profiles import examples
from runfixtures import make_hf_run

from mdl.archive.packer import PackOptions, pack_run
from mdl.archive.zipread import MANIFEST_NAME
from mdl.errors import ExitCode, MdlError
from mdl.progress import NullProgress

FUZZ = settings(
    max_examples=examples(60), deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
DOCUMENTED = {ExitCode.USAGE, ExitCode.INTEGRITY, ExitCode.LOCAL}
NUMBERS = st.one_of(
    st.integers(min_value=-3, max_value=3),
    st.floats(),
    st.sampled_from(
        ["1e400", "-1e400", "NaN", "Infinity", "9" * 5000, "1" + "0" * 400, "true", '"2"']
    ),
).map(lambda v: v if isinstance(v, str) else json.dumps(v))
NAMES = st.sampled_from(
    [
        "checkpoint-1",
        "checkpoint-2",
        "/old/run/checkpoint-2",
        "../../etc",
        "checkpoint-１",
        "",
        "/",
        "c\\checkpoint-1",
    ]
).map(json.dumps)


@st.composite
def state_texts(draw: st.DrawFn) -> str:
    """A trainer_state.json text: fields of any type, numbers JSON cannot hold, or not JSON at
    all.
    """
    kind = draw(st.integers(min_value=0, max_value=5))
    if kind == 0:
        return draw(
            st.sampled_from(
                ["", "{", "[" * 100_000 + "]" * 100_000, "null", "[]", "\ufeff{}", "\xff"]
            )
        )
    fields = {
        "global_step": draw(NUMBERS),
        "best_metric": draw(NUMBERS),
        "best_global_step": draw(NUMBERS),
        "best_model_checkpoint": draw(st.one_of(NAMES, NUMBERS)),
    }
    chosen = draw(st.lists(st.sampled_from(sorted(fields)), unique=True))
    return "{" + ", ".join(f'"{key}": {fields[key]}' for key in chosen) + "}"


KINDS = st.sampled_from(["file", "folder", "fifo", "link-out", "link-dangling", "absent"])


def _place(path: Path, kind: str, text: str, outside: Path) -> None:
    if path.exists() or path.is_symlink():
        path.unlink()
    if kind == "file":
        path.write_text(text, encoding="utf-8", errors="surrogatepass")
    elif kind == "folder":
        path.mkdir()
    elif kind == "fifo":
        os.mkfifo(path)
    elif kind == "link-out":
        outside.write_text(text, encoding="utf-8", errors="surrogatepass")
        path.symlink_to(outside)
    elif kind == "link-dangling":
        path.symlink_to(path.parent / "nowhere.json")


@FUZZ
@given(
    state_texts(),
    KINDS,
    state_texts(),
    KINDS,
    st.sampled_from(["best", "latest", "step:2", "checkpoint-1", None]),
)
def test_pack_with_any_trainer_state(
    top_text: str, top_kind: str, ckpt_text: str, ckpt_kind: str, checkpoint: str | None
) -> None:
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        run = root / "run"
        make_hf_run(run, steps=(1, 2))
        _place(run / "trainer_state.json", top_kind, top_text, root / "outside-top.json")
        _place(
            run / "checkpoint-2" / "trainer_state.json",
            ckpt_kind,
            ckpt_text,
            root / "outside-ckpt.json",
        )
        before = set(root.rglob("*"))
        output = root / "out" / "m.zip"
        try:
            result = pack_run(
                PackOptions(run_dir=run, output=output, checkpoint=checkpoint, cwd=root),
                progress=NullProgress(),
            )
        except MdlError as exc:
            assert exc.exit_code in DOCUMENTED, exc
            assert not output.exists()
        else:
            report: Any = result.to_json()
            json.dumps(report, allow_nan=False)  # --json is strict JSON
            with zipfile.ZipFile(output) as archive:
                assert archive.testzip() is None
                manifests = [
                    name for name in archive.namelist() if name.endswith("/" + MANIFEST_NAME)
                ]
                assert len(manifests) == 1, archive.namelist()
                json.loads(archive.read(manifests[0]), parse_constant=_refuse_constant)
        after = set(root.rglob("*"))
        assert after - before <= {root / "out", output}


def _refuse_constant(name: str) -> None:
    raise AssertionError(f"{name} in a manifest is not JSON")
