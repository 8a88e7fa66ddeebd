"""`dxtalent bench queries`: requests/s and latency of the report queries under load.

For each city size the whole system runs on embedded servers (as in `make demo`), is fed the
generated city and waits until every service has caught up. Then each query is asked by
`clients` concurrent keep-alive connections, back to back, for `seconds`; that is one run,
and each query gets `runs` runs (after one warm-up request). Printed per query and size:
requests/s and the p50 / p99 latency in ms, each as min / median / max over the runs, and
the resident memory (RSS) of every service after the load.
"""

from __future__ import annotations

import http.client
import statistics
import threading
import time
from dataclasses import dataclass

from rich.console import Console

from dxtalent.bench_dashboard import city_stack
from dxtalent.figures import percentile, spread
from dxtalent.processes import rss_mb
from dxtalent.stack import LocalStack

YEAR = "fiscal_year=2025&as_of=2026-03-31"

#: (label, service, path); the paths answer for FY2025 on its last day
QUERIES: tuple[tuple[str, str, str], ...] = (
    ("/v1/progress", "reporting", f"/v1/progress?{YEAR}"),
    ("/v1/progress/departments", "reporting", f"/v1/progress/departments?{YEAR}"),
    ("/v1/categories", "certification", "/v1/categories"),
    ("/dashboard/departments (所属別)", "reporting", f"/dashboard/departments?{YEAR}"),
    ("/dashboard/categories (区分別)", "reporting", f"/dashboard/categories?{YEAR}"),
)


@dataclass(frozen=True)
class Run:
    """One run of one query: requests answered per second and their latencies (ms)."""

    per_second: float
    latencies: tuple[float, ...]

    @property
    def p50(self) -> float:
        return statistics.median(self.latencies)

    @property
    def p99(self) -> float:
        return percentile(self.latencies, 0.99)


def _client(port: int, path: str, until: float, out: list[float]) -> None:
    """Ask `path` back to back on one keep-alive connection until `until` (monotonic)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    try:
        while time.monotonic() < until:
            started = time.perf_counter()
            conn.request("GET", path)
            response = conn.getresponse()
            response.read()
            if response.status != 200:
                raise RuntimeError(f"{path} answered {response.status}")
            out.append((time.perf_counter() - started) * 1000)
    finally:
        conn.close()


def load(port: int, path: str, clients: int, seconds: float) -> Run:
    """One run: `clients` threads asking `path` for `seconds`."""
    samples: list[list[float]] = [[] for _ in range(clients)]
    started = time.monotonic()
    until = started + seconds
    threads = [
        threading.Thread(target=_client, args=(port, path, until, samples[i]), daemon=True)
        for i in range(clients)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - started
    latencies = tuple(x for s in samples for x in s)
    return Run(per_second=len(latencies) / elapsed, latencies=latencies)


def bench_size(
    console: Console, stack: LocalStack, clients: int, seconds: float, runs: int
) -> tuple[dict[str, list[Run]], dict[str, float]]:
    """Every query's runs against a running, caught-up stack, then each service's RSS."""
    results: dict[str, list[Run]] = {}
    for label, service, path in QUERIES:
        port = stack.services[service].port
        load(port, path, 1, 0)  # warm-up: one request
        with console.status(f"{label}…"):
            results[label] = [load(port, path, clients, seconds) for _ in range(runs)]
    memory = {name: rss_mb(svc.proc.pid) for name, svc in stack.services.items()}
    return results, memory


def run_queries_bench(
    console: Console, sizes: list[int], clients: int, seconds: float, runs: int
) -> None:
    """Load every query for each city size and print one table per size."""
    for staff in sizes:
        with city_stack(console, staff) as stack:
            results, memory = bench_size(console, stack, clients, seconds, runs)
        console.print(
            f"{staff:,} staff: {clients} clients × {seconds:g} s, {runs} runs"
            " (each figure min / median / max)",
            highlight=False,
        )
        console.print(
            f"{'query':32} {'requests/s':>22} {'p50 ms':>22} {'p99 ms':>22}", soft_wrap=True
        )
        for label, found in results.items():
            console.print(
                f"{label:32} {spread([r.per_second for r in found], '.1f'):>22}"
                f" {spread([r.p50 for r in found], '.1f'):>22}"
                f" {spread([r.p99 for r in found], '.1f'):>22}",
                highlight=False,
                soft_wrap=True,
            )
        console.print(
            "memory after the load (RSS): "
            + ", ".join(f"{name} {mb:.0f} MB" for name, mb in sorted(memory.items())),
            highlight=False,
            soft_wrap=True,
        )
