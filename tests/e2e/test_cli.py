"""The `dxtalent` command line as an operator and an HR integrator use it, in processes."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from dxtalent.stack import http_json
from dxtalent_infra.servers import port_open

CSV = "\ufeffemployee_id,course_id,completed_on\nE1,DX-101,2025/6/1\nE1,ICT-101,2025-06-02\nE1,NOPE,2025-06-02\n"


def _free_port_run() -> int:
    """A base port with the next two free as well."""
    for base in range(20081, 40000, 7):
        if not any(port_open(base + i) for i in range(3)):
            return base
    raise RuntimeError("no three free ports in a row")


def _cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dxtalent", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _wait(url: str, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if http_json(url, timeout=2)[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.3)
    raise TimeoutError(url)


@pytest.fixture
def data_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="dxt-cli-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _up(data_dir: Path, base: int, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "dxtalent", "up", "--port-base", str(base)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _down(proc: subprocess.Popen[str]) -> str:
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=60)
    return out


def test_up_runs_everything_embedded_and_keeps_data_across_restarts(data_dir: Path) -> None:
    """`dxtalent up` with no server URLs starts embedded NATS and PostgreSQL and the three
    services; `publish` (CSV) and `progress` find it; after a stop and a second `up` on the
    same data directory the facts are still there; a stop leaves no process behind."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DXT_")} | {
        "DXT_DATA_DIR": str(data_dir)
    }
    base = _free_port_run()
    certification = f"http://127.0.0.1:{base + 1}"
    up = _up(data_dir, base, env)
    try:
        _wait(f"{certification}/readyz")
        csv_file = data_dir / "completions.csv"
        csv_file.write_text(CSV, encoding="utf-8")
        published = _cli("publish", str(csv_file), env=env)
        assert published.returncode == 0, published.stderr
        assert "published 2" in published.stdout
        assert "row 4" in published.stderr
        assert "NOPE" in published.stderr
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            status, body = http_json(f"{certification}/v1/employees/E1")
            if status == 200 and len(body["skills"]) == 3:
                break
            time.sleep(0.2)
        assert {s["skill"] for s in body["skills"]} == {
            "dx-basics",
            "municipal-dx-basics",
            "ict-basics",
        }
        shown = _cli("progress", "--fiscal-year", "2025", env=env | {"COLUMNS": "200"})
        assert shown.returncode == 0, shown.stderr
        assert "令和7年度" in shown.stdout
    finally:
        _down(up)
    assert not list(data_dir.glob("stack.json"))
    up = _up(data_dir, base, env)
    try:
        _wait(f"{certification}/readyz")
        status, body = http_json(f"{certification}/v1/employees/E1")
        assert status == 200
        assert len(body["skills"]) == 3  # DX-101 grants two
    finally:
        _down(up)
    leftovers = subprocess.run(
        ["pgrep", "-f", str(data_dir)], capture_output=True, text=True, check=False
    )
    assert leftovers.stdout.strip() == ""
