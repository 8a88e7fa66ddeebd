"""Reading the read model for a report: a few queries, then the pure progress functions.

A report reads, in one read-only repeatable-read transaction (the tables seen at one instant
while the consumer writes), the standings of the employees who hold a level: only they change
any count (reached, exactly and left all need a level). The departments where everyone else is
placed on the report date come from one aggregate query (`placed_departments`), so a report's
cost grows with the certified staff, not with the city's headcount.

Standings are assembled by `domain.standings.assemble_standings` (see there for the department
of an employee without an HR record).
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

import asyncpg

from dxtalent_contracts.catalog import Catalog
from dxtalent_contracts.fiscal import fiscal_year_end, fiscal_year_start, reiwa_label
from dxtalent_infra.migrations import quote_ident
from dxtalent_reporting.domain.progress import (
    UNKNOWN_DEPARTMENT,
    Progress,
    Standing,
    target_progress,
)
from dxtalent_reporting.domain.standings import assemble_standings


@dataclass(frozen=True)
class ReportData:
    """Everything a report of one fiscal year needs, read at one instant."""

    standings: tuple[Standing, ...]
    nominated_departments: frozenset[str] = frozenset()
    placed_departments: frozenset[str] = frozenset()
    department_names: Mapping[str, str] = field(default_factory=dict)


def report_date(fiscal_year: int, as_of: dt.date | None, today: dt.date) -> dt.date:
    """The date a report of `fiscal_year` is for: `as_of`; by default `today` while the year
    runs, else the year's last day (a past year's outcome, a coming year's plan).

    A date outside the fiscal year raises `ValueError` naming the year's first and last day.
    """
    first, last = fiscal_year_start(fiscal_year), fiscal_year_end(fiscal_year)
    if as_of is None:
        return today if first <= today <= last else last
    if not first <= as_of <= last:
        raise ValueError(
            f"as_of {as_of} is outside {reiwa_label(fiscal_year)} (FY{fiscal_year}): "
            f"{first} … {last}"
        )
    return as_of


def by_department(
    catalog: Catalog, fiscal_year: int, standings: Iterable[Standing], as_of: dt.date
) -> dict[str, Progress]:
    """`progress_by_department`, grouping first so each employee is placed once (O(n))."""
    groups: dict[str, list[Standing]] = defaultdict(list)
    for standing in standings:
        groups[standing.department_on(as_of)].append(standing)
    return {d: target_progress(catalog, fiscal_year, groups[d], as_of, d) for d in sorted(groups)}


class ReportReader:
    """The reads of one report from the read model of `schema`."""

    def __init__(self, schema: str) -> None:
        q = quote_ident(schema)
        certified = f"employee_id IN (SELECT employee_id FROM {q}.levels WHERE NOT revoked)"
        self._records = (
            f"SELECT employee_id, effective_date, department_code FROM {q}.employee_records"
            f" WHERE {certified}"
        )
        self._departures = f"SELECT employee_id, left_on FROM {q}.departures WHERE {certified}"
        self._levels = (
            f"SELECT employee_id, level, certified_on, department_code FROM {q}.levels"
            " WHERE NOT revoked"
        )
        self._nominations = (
            f"SELECT employee_id, fiscal_year, department_code FROM {q}.nominations"
            f" WHERE {certified}"
        )
        self._placed = _placed_departments(q, certified)
        self._nominated = (
            f"SELECT DISTINCT department_code FROM {q}.nominations WHERE fiscal_year = $1"
        )
        # the name on the record in force on the report date, else the latest one known
        self._names = (
            f"SELECT DISTINCT ON (department_code) department_code, department_name"
            f" FROM {q}.employee_records WHERE department_name IS NOT NULL"
            " ORDER BY department_code, (effective_date <= $1) DESC, effective_date DESC,"
            " fact_id DESC"
        )

    async def standings(self, conn: asyncpg.Connection) -> ReportData:
        """Every employee's standing (for the city-wide or one department's report)."""
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            return await self.read_standings(conn)

    async def read_standings(self, conn: asyncpg.Connection) -> ReportData:
        """`standings` inside the caller's transaction."""
        return ReportData(standings=tuple(await self._standings(conn)))

    async def departments(
        self, conn: asyncpg.Connection, fiscal_year: int, as_of: dt.date
    ) -> ReportData:
        """Standings plus the departments that nominated a leader and the department names."""
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            return await self.read_departments(conn, fiscal_year, as_of)

    async def read_departments(
        self, conn: asyncpg.Connection, fiscal_year: int, as_of: dt.date
    ) -> ReportData:
        """`departments` inside the caller's transaction."""
        standings = await self._standings(conn)
        nominated = await conn.fetch(self._nominated, fiscal_year)
        names = await conn.fetch(self._names, as_of)
        placed = await conn.fetch(self._placed, as_of)
        return ReportData(
            standings=tuple(standings),
            nominated_departments=frozenset(r["department_code"] for r in nominated),
            placed_departments=frozenset(r[0] for r in placed),
            department_names=MappingProxyType(
                {r["department_code"]: r["department_name"] for r in names}
            ),
        )

    async def _standings(self, conn: asyncpg.Connection) -> list[Standing]:
        records = await conn.fetch(self._records)
        departures = await conn.fetch(self._departures)
        levels = await conn.fetch(self._levels)
        nominations = await conn.fetch(self._nominations)
        return assemble_standings(
            ((r[0], r[1], r[2]) for r in records),
            ((r[0], r[1]) for r in departures),
            ((r[0], r[1], r[2], r[3]) for r in levels),
            ((r[0], r[1], r[2]) for r in nominations),
        )


def _placed_departments(q: str, certified: str) -> str:
    """The departments `Standing.department_on($1)` places the employees without a level in:
    the record in force (else the earliest), else the nomination in force (else the earliest),
    else `unknown` for someone known only by a departure."""
    return f"""
        WITH placements AS (
          SELECT employee_id, effective_date AS since, department_code, 1 AS source
          FROM {q}.employee_records WHERE NOT {certified}
          UNION ALL
          SELECT n.employee_id, make_date(n.fiscal_year, 4, 1), n.department_code, 2
          FROM {q}.nominations n WHERE NOT {certified} AND NOT EXISTS (
            SELECT 1 FROM {q}.employee_records r WHERE r.employee_id = n.employee_id)),
        placed AS (
          SELECT DISTINCT ON (employee_id) department_code FROM placements
          ORDER BY employee_id, (since <= $1) DESC,
            CASE WHEN since <= $1 THEN since END DESC NULLS LAST,
            CASE WHEN since <= $1 THEN department_code END DESC NULLS LAST,
            since, department_code)
        SELECT DISTINCT department_code FROM placed
        UNION
        SELECT '{UNKNOWN_DEPARTMENT}' FROM {q}.departures d WHERE NOT {certified.replace("employee_id", "d.employee_id", 1)}
          AND NOT EXISTS (SELECT 1 FROM placements p WHERE p.employee_id = d.employee_id)"""
