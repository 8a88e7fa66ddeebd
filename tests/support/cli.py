"""The `dxtalent` command as a process of its own, as an operator runs it."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Mapping


def run_dxtalent(
    *args: str, env: Mapping[str, str], timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """`python -m dxtalent ARGS` with exactly `env`; its output captured as text, never raising
    on a non-zero exit (the tests read the exit code and the one-line errors)."""
    return subprocess.run(
        [sys.executable, "-m", "dxtalent", *args],
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
