"""The 区分別 page's membership counts answer every `as_of` as a scan of every employee would.

The reference is the query the page ran before it read counts: the record in force on the day
of every employee, their departure and their skills, joined and counted by PostgreSQL. Both
read the same read model, on the days around each edge: a record naming other categories from
a date, a skill acquired on a day, a skill revoked, a departure, a record that takes effect
only later, and every fact sent twice.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import asyncpg

from dxtalent_contracts.catalog import load_catalog
from dxtalent_contracts.events import (
    SkillAcquired,
    SkillAcquiredEvent,
    SkillRevoked,
    SkillRevokedEvent,
)
from dxtalent_contracts.memberships import CategoryCounts, CategoryQuery
from dxtalent_infra.migrations import quote_ident
from dxtalent_infra.topology import Topology
from dxtalent_reporting.dashboard.people import PeopleReader
from tests.integration.reporting.harness import CERTIFICATION, Reporting, employee, left

CATALOG = load_catalog()
WANTED = [
    CategoryQuery(c.code, c.implicit, tuple(sorted(CATALOG.category_requirements(c.code))))
    for c in CATALOG.categories
]
DAYS = ("2025-04-01", "2025-04-30", "2025-05-01", "2025-09-30", "2025-10-01", "2026-03-31")


def _event(cls: Any, type_: str, subject: str, data: Any) -> Any:
    event_id = str(uuid.uuid4())
    return cls(
        specversion="1.0",
        id=event_id,
        causationid=event_id,
        correlationid=event_id,
        time=dt.datetime.now(dt.UTC),
        source=CERTIFICATION,
        type=type_,
        subject=subject,
        data=data,
    )


def skill(employee_id: str, code: str, on: str) -> SkillAcquiredEvent:
    data = SkillAcquired(
        employee_id=employee_id,
        skill=code,
        course_id="DX-101",
        acquired_on=dt.date.fromisoformat(on),
        evidence_event_id=str(uuid.uuid4()),
    )
    return _event(  # type: ignore[no-any-return]
        SkillAcquiredEvent, "dxtalent.certification.SkillAcquired.v1", employee_id, data
    )


def unskill(employee_id: str, code: str) -> SkillRevokedEvent:
    data = SkillRevoked(employee_id=employee_id, skill=code, reason="completion voided")
    return _event(  # type: ignore[no-any-return]
        SkillRevokedEvent, "dxtalent.certification.SkillRevoked.v1", employee_id, data
    )


def facts() -> list[Any]:
    chief = ("section-chief",)
    return [
        employee("E1", "D-A", "2023-04-01", categories=chief),
        employee("E1", "D-A", "2025-10-01", categories=("section-chief", "it-department")),
        skill("E1", "municipal-dx-basics", "2025-05-01"),
        skill("E1", "infosec-measures", "2025-04-01"),
        skill("E1", "data-utilization", "2025-10-01"),
        employee("E2", "D-B", "2024-04-01", categories=()),
        skill("E2", "municipal-dx-basics", "2025-04-30"),
        skill("E2", "infosec-measures", "2025-05-01"),
        unskill("E2", "infosec-measures"),
        employee("E3", "D-B", "2023-04-01", categories=chief),
        skill("E3", "municipal-dx-basics", "2024-06-01"),
        skill("E3", "infosec-measures", "2024-06-01"),
        left("E3", "2025-05-01"),
        employee("E4", "D-C", "2025-10-01", categories=chief),  # a member from Oct 1 only
        skill("E4", "municipal-dx-basics", "2025-04-01"),
    ]


def scan(q: str) -> str:
    """The page's query before the counts: every employee's record in force, scanned."""
    return f"""
        WITH cur AS (
          SELECT DISTINCT ON (employee_id) employee_id, categories FROM {q}.employee_records
          WHERE effective_date <= $1 ORDER BY employee_id, effective_date DESC, fact_id DESC),
        members AS (
          SELECT cur.employee_id, cur.categories FROM cur
          LEFT JOIN {q}.departures d USING (employee_id)
          WHERE d.left_on IS NULL OR d.left_on > $1),
        cats AS (SELECT * FROM unnest($2::text[], $3::bool[]) AS c(code, implicit)),
        req AS (SELECT split_part(x, ' ', 1) AS code, split_part(x, ' ', 2) AS skill
                FROM unnest($4::text[]) x),
        membership AS (
          SELECT c.code, m.employee_id FROM cats c
          JOIN members m ON c.implicit OR c.code = ANY(m.categories)),
        missing AS (
          SELECT ms.code, ms.employee_id, r.skill FROM membership ms
          JOIN req r ON r.code = ms.code
          WHERE NOT EXISTS (SELECT 1 FROM {q}.skills s WHERE s.employee_id = ms.employee_id
            AND s.skill = r.skill AND NOT s.revoked AND s.acquired_on <= $1))
        SELECT 'members' AS kind, code, '' AS skill, count(*) AS n FROM membership GROUP BY code
        UNION ALL
        SELECT 'lacking', code, '', count(DISTINCT employee_id) FROM missing GROUP BY code
        UNION ALL
        SELECT 'missing', code, skill, count(*) FROM missing GROUP BY code, skill"""


async def scanned(conn: asyncpg.Connection, q: str, as_of: dt.date) -> dict[str, CategoryCounts]:
    pairs = [f"{c.code} {s}" for c in WANTED for s in c.required]
    rows = await conn.fetch(
        scan(q), as_of, [c.code for c in WANTED], [c.implicit for c in WANTED], pairs
    )
    counts = {c.code: CategoryCounts() for c in WANTED}
    for r in rows:
        entry = counts[r["code"]]
        if r["kind"] == "members":
            entry.members = r["n"]
        elif r["kind"] == "lacking":
            entry.lacking = r["n"]
        else:
            entry.missing.append((r["skill"], r["n"]))
    for entry in counts.values():
        entry.missing.sort(key=lambda m: (-m[1], m[0]))
    return counts


async def assert_counts_as_the_scan(database_url: str, schema: str) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        reader = PeopleReader(schema)
        for text in DAYS:
            as_of = dt.date.fromisoformat(text)
            counted = await reader.categories(conn, as_of, WANTED)
            assert counted == await scanned(conn, quote_ident(schema), as_of), text
        chief = await reader.categories(conn, dt.date(2025, 10, 1), WANTED)
        assert (chief["section-chief"].members, chief["section-chief"].lacking) == (2, 1)
        assert chief["all-staff"].members == 3  # E1, E2, E4; E3 left
    finally:
        await conn.close()


async def test_membership_counts_equal_the_scan_on_every_day(
    reporting: Reporting, database_url: str, topology: Topology
) -> None:
    city = facts()
    await reporting.publish(*city)
    await reporting.settle()
    schema = f"{topology.prefix}_reporting"
    await assert_counts_as_the_scan(database_url, schema)
    for event in city:
        await reporting.publish(event, msg_id=str(uuid.uuid4()))
    await reporting.settle()
    await assert_counts_as_the_scan(database_url, schema)
