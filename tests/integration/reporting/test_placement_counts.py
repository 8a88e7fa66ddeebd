"""Reports read from the placement counts answer every `as_of` exactly as the per-employee core.

The facts sit on the edges that matter: certifications on the last and the first day of a
fiscal year, a departure and a transfer taking effect on April 1, a level re-dated into the next
year, a revoked level, an employee known only from a nomination, one with only a later record,
and a record arriving late about the past. Each report, on the days around every edge, must be
the body the pure core (`target_progress` over each employee's `Standing`) gives; again after
every fact is sent a second time under a fresh message id.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from typing import Any

from dxtalent_contracts.catalog import load_catalog
from dxtalent_contracts.fiscal import fiscal_year_of
from dxtalent_reporting.domain.progress import (
    Standing,
    progress_by_department,
    target_progress,
)
from dxtalent_reporting.http import progress_report
from tests.integration.reporting.harness import (
    Reporting,
    certified,
    employee,
    left,
    nominated,
    revoked,
)

CATALOG = load_catalog()
D = dt.date.fromisoformat

#: the employees as the facts below leave them (see the module notes)
STANDINGS = (
    Standing(
        "E1", ((D("2023-04-01"), "D-A"), (D("2026-04-01"), "D-B")), None, {1: D("2025-04-01")}
    ),
    Standing(
        "E2",
        ((D("2023-04-01"), "D-A"),),
        D("2026-04-01"),
        {1: D("2025-03-31"), 2: D("2026-03-31")},
    ),
    Standing("E3", ((D("2025-04-01"), "D-C"),), None, {1: D("2026-04-01")}),
    Standing("E4", ((D("2025-10-01"), "D-B"),), D("2025-10-01"), {1: D("2025-07-01")}),
    Standing("E5", ((D("2024-04-01"), "D-A"), (D("2025-04-01"), "D-C")), None, {}),
    Standing("E6", ((D("2023-04-01"), "D-A"),), None, {}),
)

DAYS = (
    "2024-04-01",
    "2025-03-30",
    "2025-03-31",
    "2025-04-01",
    "2025-06-30",
    "2025-07-01",
    "2025-09-30",
    "2025-10-01",
    "2026-03-30",
    "2026-03-31",
    "2026-04-01",
    "2027-03-31",
)


def facts() -> list[Any]:
    """The city, in an order that puts the late record last."""
    return [
        employee("E1", "D-A"),
        employee("E1", "D-B", "2026-04-01"),
        certified("E1", 1, "2025-04-01"),
        employee("E2", "D-A"),
        certified("E2", 1, "2025-03-31"),
        certified("E2", 2, "2026-03-31"),
        left("E2", "2026-04-01"),
        nominated("E3", 2025, "D-C"),
        certified("E3", 1, "2025-10-01", department="D-C"),
        certified("E3", 1, "2026-04-01", department="D-C"),  # re-dated into FY2026
        employee("E4", "D-B", "2025-10-01"),
        certified("E4", 1, "2025-07-01", department=None),
        left("E4", "2025-10-01"),
        employee("E6", "D-A"),
        certified("E6", 1, "2025-05-01"),
        revoked("E6", 1),
        employee("E5", "D-A", "2024-04-01"),
        employee("E5", "D-C", "2025-04-01"),  # late: a fact about the past
    ]


def expected_body(fiscal_year: int, as_of: dt.date, department: str | None) -> Any:
    progress = target_progress(CATALOG, fiscal_year, STANDINGS, as_of, department)
    return json.loads(progress_report(progress).model_dump_json())


async def assert_every_day_as_the_core(reporting: Reporting) -> None:
    for text in DAYS:
        as_of = D(text)
        year = fiscal_year_of(as_of)
        body = await reporting.progress(fiscal_year=year, as_of=text)
        assert body == expected_body(year, as_of, None), text
        for department in ("D-A", "D-B", "D-C", "D-NONE"):
            body = await reporting.progress(fiscal_year=year, as_of=text, department=department)
            assert body == expected_body(year, as_of, department), (text, department)
        served = await reporting.departments(fiscal_year=year, as_of=text)
        placed = progress_by_department(CATALOG, year, STANDINGS, as_of)
        nominated_in = {"D-C"} if year == 2025 else set()
        assert [r["department"] for r in served["departments"]] == sorted(
            placed.keys() | nominated_in
        ), text
        for row in served["departments"]:
            levels = expected_body(year, as_of, row["department"])["levels"]
            assert (row["levels"], row["left"]) == (
                levels,
                sum(
                    1
                    for s in STANDINGS
                    if row["department"] == s.department_on(as_of)
                    and not s.employed_on(as_of)
                    and s.highest_level_on(as_of) >= 1
                ),
            ), (text, row["department"])


async def test_every_as_of_around_every_edge_is_answered_as_the_core(
    reporting: Reporting,
) -> None:
    await reporting.publish(*facts())
    await reporting.settle()
    await assert_every_day_as_the_core(reporting)
    # spot checks of the edges, so the core's answer is not the only witness
    first_day = await reporting.progress(fiscal_year=2025, as_of="2025-04-01")
    assert [r["reached"] for r in first_day["levels"]] == [2, 0, 0]  # E1 from today, E2
    year_end = await reporting.progress(fiscal_year=2025, as_of="2026-03-31")
    assert [r["reached"] for r in year_end["levels"]] == [2, 1, 0]  # E1, E2 (E3 re-dated)
    assert year_end["left"] == 1  # E4
    next_year = await reporting.progress(fiscal_year=2026, as_of="2026-04-01")
    assert [r["reached"] for r in next_year["levels"]] == [2, 0, 0]  # E1, E3; E2 left
    assert next_year["left"] == 2


async def test_facts_sent_twice_change_no_count(reporting: Reporting) -> None:
    city = facts()
    await reporting.publish(*city)
    await reporting.settle()
    for event in city:
        await reporting.publish(event, msg_id=str(uuid.uuid4()))
    await reporting.settle()
    await assert_every_day_as_the_core(reporting)
