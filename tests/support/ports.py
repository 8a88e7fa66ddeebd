"""Runs of free TCP ports for tests that start `dxtalent up` on a base port (the services take
the base and the next ports), safe between pytest-xdist workers and between test suites
running at once on one machine.

Each run is reserved by an exclusive, non-blocking `flock` on a file named after its base in
a directory shared by every process of the machine; the lock is held until this process
exits, when the kernel releases it (no stale reservation survives a crash). A base whose lock
another process holds, or one of whose ports something listens on, is skipped. The scan
starts from this worker's own range (fewer collisions to skip) but may use any range.
"""

from __future__ import annotations

import fcntl
import os
import tempfile
from pathlib import Path
from typing import IO

from dxtalent_infra.servers import port_open

#: Where the reservations live: one file per base port.
RESERVATIONS = Path(tempfile.gettempdir()) / "dxtalent-test-ports"
#: The ports scanned: `RANGES` ranges of `RANGE` ports from `FIRST`, a base every `STEP`.
FIRST, RANGE, RANGES, STEP = 20081, 2100, 8, 7

_held: list[IO[bytes]] = []  # open, locked reservation files: released when the process exits


def reserved_port_run(count: int = 3) -> int:
    """A base port with the next `count - 1` free as well, reserved for this process."""
    if not 1 <= count <= STEP:
        raise ValueError(f"a run holds 1 to {STEP} ports, not {count}")
    RESERVATIONS.mkdir(parents=True, exist_ok=True)
    worker = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0)
    bases = list(range(FIRST, FIRST + RANGE * RANGES, STEP))
    first = (worker % RANGES) * (RANGE // STEP)
    for base in bases[first:] + bases[:first]:
        if _reserve(base) and not any(port_open(base + i) for i in range(count)):
            return base
    raise RuntimeError(
        f"no {count} free ports in a row from {FIRST} to {FIRST + RANGE * RANGES} "
        f"(reservations in {RESERVATIONS})"
    )


def _reserve(base: int) -> bool:
    """Lock `base`'s reservation file for this process; False when another process holds it."""
    handle = (RESERVATIONS / str(base)).open("ab")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        return False
    _held.append(handle)
    return True
