"""`make demo`: the whole system on embedded servers, fed a generated city, then the table.

Starts embedded NATS and PostgreSQL in a fresh data directory, runs the three services as
processes, publishes a realistic city's facts with a progress bar, waits until every service
has caught up, prints target progress for each fiscal year of the plan next to the plan's
targets, checks it against the pure core, and stops everything it started.
"""

from __future__ import annotations

import datetime as dt
import shutil
import signal
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from rich.console import Console

from dxtalent.citygen import generate_city
from dxtalent.expected import (
    department_counts,
    expected_departments,
    expected_progress,
    served_department_counts,
)
from dxtalent.nats_tools import publish_with_progress
from dxtalent.report import fetch_progress, progress_table
from dxtalent.stack import LocalStack, http_json, running_stack
from dxtalent_contracts.catalog import Catalog, load_catalog
from dxtalent_contracts.fiscal import fiscal_year_end
from dxtalent_contracts.inbound import InboundEvent

#: The demo's city; the end-to-end tests replay exactly this scenario, shuffled and duplicated.
DEMO_SEED = 2025
DEMO_STAFF = 3000


def _publish(console: Console, stack: LocalStack, messages: list[bytes]) -> float:
    started = time.monotonic()
    publish_with_progress(console, str(stack.nats_url), messages)
    return time.monotonic() - started


def run_demo(
    console: Console,
    *,
    staff: int,
    seed: int,
    keep_data: bool,
    serve: bool = False,
    then: Callable[[str], None] | None = None,
) -> None:
    """Run the demo end to end; raises when the services disagree with the pure core.

    With `serve`, the system keeps running after the check and the dashboard's URL is printed,
    until Ctrl-C; `then` is called with the reporting service's URL while the system is still up
    (`make screenshots`). Otherwise everything stops at the end.
    """
    catalog = load_catalog()
    city = generate_city(catalog, seed=seed, staff=staff)
    messages = [e.to_json_bytes() for e in city.events]
    s = city.summary
    console.rule(f"dxtalent demo — {catalog.plan.name} ({catalog.municipality.name})")
    console.print(
        f"generated city (seed {seed}): {s.employees} staff in {s.departments} sections, "
        f"{s.leaders} DX leaders ({s.fy2024_trainees} FY2024 trainees), {s.completions} completions, "
        f"{s.voided_completions} voided, {s.departures} departures "
        f"({s.completed_after_leaving} completing a course after leaving), {s.transfers} "
        f"transfers, {s.duty_changes} new duties in a later year, {s.without_record} leaders "
        "without an HR record: "
        f"{len(messages)} facts"
    )
    data_dir = Path(tempfile.mkdtemp(prefix="dxtalent-demo-"))
    started = time.monotonic()
    try:
        with running_stack(LocalStack(data_dir)) as stack:
            with console.status("starting NATS, PostgreSQL and the three services…"):
                stack.wait_ready(timeout=120, settle_checks=1)
            console.print(f"system up in {time.monotonic() - started:.1f}s (data in {data_dir})")
            fed = time.monotonic()
            publish_s = _publish(console, stack, messages)
            with console.status("enrollment → certification → reporting: processing…"):
                stack.wait_ready(timeout=900, settle_checks=3)
            processed_s = time.monotonic() - fed
            reporting = stack.services["reporting"].base_url
            bodies, agree = served_vs_core(catalog, city.events, reporting)
            console.print(progress_table(bodies))
            console.print(
                f"{len(messages)} facts published in {publish_s:.1f}s; all three services caught up "
                f"{processed_s:.1f}s after the first fact ({len(messages) / max(processed_s, 1e-9):.0f} "
                f"facts/s end to end); {time.monotonic() - started:.1f}s in all."
            )
            verdict = "[green]agrees[/green]" if agree else "[red]DISAGREES[/red]"
            console.print(
                "Services vs. the pure certification core on the same facts (city-wide and by "
                f"department): {verdict}."
            )
            if not agree:
                raise SystemExit(1)
            if then is not None:
                then(reporting)
            if serve:
                _serve(console, reporting)
            else:
                console.print("(make demo DEMO_ARGS=--serve keeps the system and its dashboard up)")
    finally:
        if keep_data:
            console.print(f"data kept in {data_dir}")
        else:
            shutil.rmtree(data_dir, ignore_errors=True)


def _serve(console: Console, reporting: str) -> None:
    """Print the dashboard's URL and keep the system up until Ctrl-C (or SIGTERM)."""
    console.print(f"ダッシュボード / dashboard: [bold]{reporting}/dashboard/progress[/bold]")
    console.print("serving until Ctrl-C …")
    # a background job starts with SIGINT ignored (SIGTERM stops it through `running_stack`)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        console.print("stopping …")


def served_vs_core(
    catalog: Catalog, events: Sequence[InboundEvent], reporting: str, token: str | None = None
) -> tuple[list[dict[str, Any]], bool]:
    """Target progress of every fiscal year of the plan as the reporting service at
    `reporting` serves it (each year at its end, city-wide and by department), and whether it
    equals what the pure core computes from `events`."""
    years = range(catalog.plan.first_fiscal_year, catalog.plan.last_fiscal_year + 1)
    ends = {fy: fiscal_year_end(fy).isoformat() for fy in years}
    bodies = [fetch_progress(reporting, fy, as_of=ends[fy], token=token) for fy in years]
    by_department = [
        http_json(
            f"{reporting}/v1/progress/departments?fiscal_year={fy}&as_of={ends[fy]}", token=token
        )[1]
        for fy in years
    ]
    oracle = expected_progress(catalog, events, years)
    agree = all(
        [(lv.level, lv.reached, lv.exactly) for lv in oracle[b["fiscal_year"]].levels]
        == [(r["level"], r["reached"], r["exactly"]) for r in b["levels"]]
        for b in bodies
    ) and all(_departments_agree(catalog, events, body) for body in by_department)
    return bodies, agree


def _departments_agree(catalog: Catalog, events: Sequence[InboundEvent], body: Any) -> bool:
    """The service's per-department report equals the core's on the date the service used."""
    as_of = dt.date.fromisoformat(body["as_of"])
    expected = expected_departments(catalog, events, int(body["fiscal_year"]), as_of)
    return served_department_counts(body) == department_counts(expected)
