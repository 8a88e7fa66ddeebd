"""`make bench-dashboard`: how long each dashboard page takes for the demo city and a large one.

For each city size the whole system runs on embedded servers (as in `make demo`), is fed the
generated city, and once every service has caught up each page is requested `rounds` times in
a row (FY2025 on its last day; the intake page on today). Printed: median and p99 in ms.
"""

from __future__ import annotations

import shutil
import statistics
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from rich.console import Console
from rich.table import Table

from dxtalent.citygen import generate_city
from dxtalent.demo import DEMO_SEED, _publish
from dxtalent.figures import percentile
from dxtalent.stack import LocalStack, running_stack
from dxtalent_contracts.catalog import load_catalog

PAGES = ("progress", "departments", "leaders", "employee", "categories", "cases", "intake")
QUERY = "fiscal_year=2025&as_of=2026-03-31"


def _get(url: str) -> float:
    """Milliseconds to fetch `url` completely (it must answer 200)."""
    started = time.perf_counter()
    with urllib.request.urlopen(url, timeout=120) as response:
        response.read()
        if response.status != 200:
            raise RuntimeError(f"{url} answered {response.status}")
    return (time.perf_counter() - started) * 1000


def time_pages(base: str, rounds: int, employee_id: str) -> dict[str, list[float]]:
    """`rounds` timings of every page of the dashboard at `base` (after one warm-up each)."""
    timings: dict[str, list[float]] = {}
    for key in PAGES:
        query = "" if key == "intake" else QUERY
        if key == "employee":
            query += f"&employee_id={employee_id}"
        url = f"{base}/dashboard/{key}?{query}"
        _get(url)
        timings[key] = [_get(url) for _ in range(rounds)]
    return timings


@contextmanager
def city_stack(console: Console, staff: int) -> Iterator[LocalStack]:
    """The system on embedded servers, fed a generated city of `staff`, every service caught
    up; everything stopped and deleted afterwards (also used by `bench_queries`, `bench_rebuild`)."""
    catalog = load_catalog()
    city = generate_city(catalog, seed=DEMO_SEED, staff=staff)
    messages = [e.to_json_bytes() for e in city.events]
    console.print(f"city of {staff} staff: {len(messages)} facts")
    data_dir = Path(tempfile.mkdtemp(prefix="dxtalent-bench-"))
    try:
        with running_stack(LocalStack(data_dir)) as stack:
            stack.wait_ready(timeout=180, settle_checks=1)
            _publish(console, stack, messages)
            with console.status("processing…"):
                stack.wait_ready(timeout=3600, settle_checks=3)
            yield stack
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


def bench_city(console: Console, staff: int, rounds: int) -> dict[str, list[float]]:
    """Run the system with a generated city of `staff` and time its pages."""
    with city_stack(console, staff) as stack:
        base = stack.services["reporting"].base_url
        return time_pages(base, rounds, employee_id="E000001")


def run_dashboard_bench(console: Console, sizes: list[int], rounds: int) -> None:
    """Time every page for each city size and print one table."""
    results = {staff: bench_city(console, staff, rounds) for staff in sizes}
    table = Table(title=f"dashboard pages: ms over {rounds} requests each (median / p99)")
    table.add_column("page")
    for staff in sizes:
        table.add_column(f"{staff:,} staff", justify="right")
    for key in PAGES:
        cells = [
            f"{statistics.median(results[s][key]):.0f} / {percentile(results[s][key], 0.99):.0f}"
            for s in sizes
        ]
        table.add_row(key, *cells)
    console.print(table)
