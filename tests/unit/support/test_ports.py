"""`reserved_port_run`: a base reserved by one process is not handed out again, in this
process or another, until the holder exits."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import ports

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def reservations(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(ports, "RESERVATIONS", tmp_path)
    monkeypatch.setattr(ports, "_held", [])
    return tmp_path


def _other_process_base(reservations: Path) -> int:
    code = (
        "from pathlib import Path; from tests.support import ports; "
        f"ports.RESERVATIONS = Path({str(reservations)!r}); print(ports.reserved_port_run())"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    return int(done.stdout)


def test_one_process_gets_a_new_run_each_time(reservations: Path) -> None:
    first, second = ports.reserved_port_run(), ports.reserved_port_run()
    assert first != second
    assert {first, second} <= {int(p.name) for p in reservations.iterdir()}


def test_a_run_held_here_is_not_given_to_another_process(reservations: Path) -> None:
    mine = ports.reserved_port_run()
    assert _other_process_base(reservations) != mine


def test_a_run_is_free_again_once_its_holder_exited(reservations: Path) -> None:
    # the other process held the first free base and exited: this one gets that base
    theirs = _other_process_base(reservations)
    assert ports.reserved_port_run() == theirs


def test_a_run_of_more_ports_than_a_step_is_refused(reservations: Path) -> None:
    with pytest.raises(ValueError, match="1 to 7 ports"):
        ports.reserved_port_run(8)
