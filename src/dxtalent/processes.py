"""Resource figures of running processes, read from `/proc` (Linux): what the benchmarks print
about memory and about where the CPU time of a run went."""

from __future__ import annotations

import os
import resource
from collections.abc import Mapping
from pathlib import Path

_TICKS = os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    """Resident memory of process `pid` in MB (0 when it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def _stat(pid: str) -> tuple[int, float, float] | None:
    """(parent pid, own CPU seconds, CPU seconds of its reaped children) of a process."""
    try:
        # the command name may hold spaces and parentheses: the fields follow the last ")"
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    own = (int(fields[11]) + int(fields[12])) / _TICKS  # utime, stime
    reaped = (int(fields[13]) + int(fields[14])) / _TICKS  # cutime, cstime
    return int(fields[1]), own, reaped


def cpu_seconds(roots: Mapping[str, int]) -> dict[str, float]:
    """CPU seconds (user + system) used so far by each named process *and its descendants*,
    those that ended included (PostgreSQL's backends are children of the postmaster). Take it
    before and after a run: the difference is what the run cost each of them."""
    stats = {int(p): s for p in os.listdir("/proc") if p.isdigit() if (s := _stat(p)) is not None}
    children: dict[int, list[int]] = {}
    for pid, (parent, _, _) in stats.items():
        children.setdefault(parent, []).append(pid)
    out: dict[str, float] = {}
    for name, root in roots.items():
        total, todo = 0.0, [root]
        while todo:
            pid = todo.pop()
            if pid in stats:
                _, own, reaped = stats[pid]
                total += own + reaped
                todo.extend(children.get(pid, ()))
        out[name] = total
    return out


def cpu_seconds_with_own(roots: Mapping[str, int], own: str = "bench") -> dict[str, float]:
    """`cpu_seconds(roots)` plus this process's own CPU seconds under `own` (a benchmark's load
    generator runs in it, on the cores it measures)."""
    seconds = cpu_seconds(roots)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    seconds[own] = usage.ru_utime + usage.ru_stime
    return seconds
