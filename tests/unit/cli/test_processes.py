"""`processes`: the CPU and memory figures the benchmarks print, read from /proc."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from dxtalent.processes import cpu_seconds, cpu_seconds_with_own, rss_mb

#: a child that starts a grandchild burning about 0.3 s of CPU, waits for it, then sleeps
_TREE = (
    "import subprocess, sys, time;"
    "subprocess.run([sys.executable, '-c',"
    " 'import time\\nt = time.process_time()\\nwhile time.process_time() - t < 0.3: pass']);"
    "print('burnt', flush=True); time.sleep(30)"
)


def test_cpu_of_a_tree_counts_descendants_that_ended() -> None:
    child = subprocess.Popen([sys.executable, "-c", _TREE], stdout=subprocess.PIPE)
    try:
        assert child.stdout is not None
        assert child.stdout.readline() == b"burnt\n"
        # the grandchild has ended: its 0.3 s are the child's reaped children's time now
        assert cpu_seconds({"child": child.pid})["child"] >= 0.3
    finally:
        child.kill()
        child.wait()


def test_a_process_that_is_gone_counts_nothing() -> None:
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    time.sleep(0.05)
    assert cpu_seconds({"gone": gone.pid}) == {"gone": 0.0}
    assert rss_mb(gone.pid) == 0.0


def test_own_figures() -> None:
    assert cpu_seconds({"me": os.getpid()})["me"] > 0
    assert rss_mb(os.getpid()) > 1


def test_with_own_adds_this_process_beside_the_trees() -> None:
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    start = time.process_time()
    while time.process_time() - start < 0.05:
        pass
    seconds = cpu_seconds_with_own({"gone": gone.pid}, own="load")
    assert seconds["gone"] == 0.0
    assert seconds["load"] >= 0.05
