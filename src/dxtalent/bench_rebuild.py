"""`make bench-rebuild`: how fast `dxtalent rebuild` reads the event log, for the demo city and
a city ten times its size.

For each size the whole system runs on embedded servers, is fed the generated city and
catches up; then certification's `employees` and reporting's read models are rebuilt and
swapped while the services run. Printed: events read, seconds, events/s per projection.
"""

from __future__ import annotations

import asyncio

from rich.console import Console
from rich.table import Table

from dxtalent.bench_dashboard import city_stack
from dxtalent.rebuild_cli import REBUILDABLE, rebuild_service, summary
from dxtalent_contracts.catalog import load_catalog
from dxtalent_infra.rebuild import RebuildReport
from dxtalent_infra.settings import Settings


def bench_sizes(console: Console, sizes: list[int]) -> dict[int, list[RebuildReport]]:
    """Rebuild every projection of a running city of each size."""
    catalog = load_catalog()
    results: dict[int, list[RebuildReport]] = {}
    for staff in sizes:
        with city_stack(console, staff) as stack:
            settings = Settings(nats_url=stack.nats_url, database_url=stack.database_url)
            results[staff] = []
            for service in REBUILDABLE:
                report = asyncio.run(rebuild_service(service, settings, catalog, console=console))
                console.print(summary(report))
                results[staff].append(report)
    return results


def run_rebuild_bench(console: Console, sizes: list[int]) -> None:
    """Print one table of rebuild rates."""
    results = bench_sizes(console, sizes)
    table = Table(title="dxtalent rebuild: events read from DX_EVENTS, rebuilt and swapped")
    for column in ("staff", "projection", "events", "seconds", "events/s", "lock s"):
        table.add_column(column, justify="left" if column == "projection" else "right")
    for staff, reports in results.items():
        for r in reports:
            table.add_row(
                f"{staff:,}",
                r.service,
                f"{r.read:,}",
                f"{r.seconds:.1f}",
                f"{r.rate:,.0f}",
                f"{r.locked_seconds:.2f}",
            )
    console.print(table)
