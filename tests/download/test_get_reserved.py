"""Issue 37 (rule 14): `get` never saves a file under a name mdl keeps for its own state
(`DIR/.mdl/`, unpack's `DIR/.mdl-unpack-*`), whether the name comes from `-o`, a URL or a listing:
exit 2 naming it, before any byte."""

from __future__ import annotations

from pathlib import Path

import pytest
from runfixtures import mdl
from servers import HubServer


@pytest.mark.parametrize("name", [".mdl", ".MDL", "\uff0emdl", ".mdl-unpack-0123abcd"])
def test_get_o_a_reserved_name_is_exit_2_before_any_byte(
    hub: HubServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    monkeypatch.chdir(tmp_path)
    url = hub.cdn.add_file("/files/w.bin", b"weights")
    result = mdl("get", url, "-o", f"out/{name}")
    assert result.exit_code == 2, result.stderr
    assert "reserves for its own state" in result.stderr
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
    assert [r for r in hub.cdn.log.records() if r.path == "/files/w.bin"] == []
