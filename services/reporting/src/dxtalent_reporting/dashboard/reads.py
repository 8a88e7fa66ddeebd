"""The dashboard's reads: aggregates and indexed look-ups, never every employee of the city.

Counts are computed by PostgreSQL over the rows that can contribute (certified levels,
nominations of one year, one employee's rows, intake of a date range), so a page's cost grows
with what it shows, not with the city's headcount. "Reached level N on day d" is read exactly
as `domain.progress` defines it: certified at N or higher by d and not left by d.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

import asyncpg

from dxtalent_infra.migrations import quote_ident

Rows = Sequence[asyncpg.Record]


class DashboardReader:
    """The SQL of the dashboard's pages against the read model of `schema`."""

    def __init__(self, schema: str) -> None:
        q = quote_ident(schema)
        self.q = q
        self._monthly = f"""
            WITH months AS (
              SELECT (date_trunc('month', d) + interval '1 month - 1 day')::date AS m
              FROM generate_series($1::date, $2::date, interval '1 month') d),
            lv AS (
              SELECT l.employee_id, l.level, l.certified_on, dep.left_on
              FROM {q}.levels l LEFT JOIN {q}.departures dep USING (employee_id)
              WHERE NOT l.revoked)
            SELECT months.m, t.n, count(DISTINCT lv.employee_id) AS reached
            FROM months CROSS JOIN generate_series(1, $3) t(n)
            LEFT JOIN lv ON lv.level >= t.n AND lv.certified_on <= months.m
              AND (lv.left_on IS NULL OR lv.left_on > months.m)
            GROUP BY months.m, t.n ORDER BY months.m, t.n"""
        self._trainees = f"""
            SELECT count(*) FROM {q}.levels l LEFT JOIN {q}.departures dep USING (employee_id)
            WHERE NOT l.revoked AND l.level = 1 AND l.via_equivalence AND l.certified_on <= $1
              AND (dep.left_on IS NULL OR dep.left_on > $1)"""
        self._pipeline = f"""
            WITH nominated AS (
              SELECT employee_id, min(department_code) AS department_code
              FROM {q}.nominations WHERE fiscal_year = $1 GROUP BY employee_id)
            SELECT n.employee_id, n.department_code,
              EXISTS (SELECT 1 FROM {q}.enrollments e WHERE e.employee_id = n.employee_id
                      AND e.enrolled_on <= $2) AS enrolled,
              EXISTS (SELECT 1 FROM {q}.completions c WHERE c.employee_id = n.employee_id
                      AND NOT c.voided AND c.completed_on <= $2) AS completed,
              EXISTS (SELECT 1 FROM {q}.levels l WHERE l.employee_id = n.employee_id
                      AND NOT l.revoked AND l.level >= 1 AND l.certified_on <= $2) AS certified,
              EXISTS (SELECT 1 FROM {q}.departures d WHERE d.employee_id = n.employee_id
                      AND d.left_on <= $2) AS left_city,
              ARRAY(SELECT s.skill FROM {q}.skills s WHERE s.employee_id = n.employee_id
                    AND NOT s.revoked AND s.acquired_on <= $2) AS skills
            FROM nominated n ORDER BY n.department_code, n.employee_id"""
        self._cases = f"""
            SELECT case_id, department_code, fiscal_year, title, leaders, skills, hours_saved
            FROM {q}.improvement_cases WHERE fiscal_year BETWEEN $1 AND $2
            ORDER BY fiscal_year DESC, department_code, case_id"""
        self._intake = f"""
            SELECT day, type, count(*) AS facts FROM {q}.intake
            WHERE day BETWEEN $1 AND $2 GROUP BY day, type ORDER BY day DESC, type"""
        self._nominees = f"""
            SELECT department_code, count(DISTINCT employee_id) FROM {q}.nominations
            WHERE fiscal_year = $1 GROUP BY department_code"""
        self._names = f"""
            SELECT DISTINCT ON (department_code) department_code, department_name
            FROM {q}.employee_records WHERE department_name IS NOT NULL
            ORDER BY department_code, effective_date DESC, fact_id DESC"""

    async def monthly_reached(
        self, conn: asyncpg.Connection, first: dt.date, last: dt.date, top_level: int
    ) -> dict[tuple[dt.date, int], int]:
        """Reached per (month end, level) for every month from `first` to `last`."""
        rows = await conn.fetch(self._monthly, first, last, top_level)
        return {(r["m"], r["n"]): r["reached"] for r in rows}

    async def trainees_reached(self, conn: asyncpg.Connection, as_of: dt.date) -> int:
        """Employed staff at level 1 by the FY2024 equivalence on `as_of`."""
        count: int = await conn.fetchval(self._trainees, as_of)
        return count

    async def pipeline(self, conn: asyncpg.Connection, fiscal_year: int, as_of: dt.date) -> Rows:
        """One row per leader nominated for `fiscal_year`, with how far they got by `as_of`."""
        return await conn.fetch(self._pipeline, fiscal_year, as_of)

    async def cases(self, conn: asyncpg.Connection, first_year: int, last_year: int) -> Rows:
        """Improvement cases of the fiscal years `first_year`…`last_year`."""
        return await conn.fetch(self._cases, first_year, last_year)

    async def intake(self, conn: asyncpg.Connection, first: dt.date, last: dt.date) -> Rows:
        """Facts recorded per day (in Japan) and type between `first` and `last`."""
        return await conn.fetch(self._intake, first, last)

    async def nominees(self, conn: asyncpg.Connection, fiscal_year: int) -> dict[str, int]:
        """How many leaders each department nominated for `fiscal_year`."""
        return {r[0]: r[1] for r in await conn.fetch(self._nominees, fiscal_year)}

    async def department_names(self, conn: asyncpg.Connection) -> dict[str, str]:
        """The latest name known of each department code."""
        return {r[0]: r[1] for r in await conn.fetch(self._names)}

    async def fetch(self, conn: asyncpg.Connection, sql: str, *args: Any) -> Rows:
        """Run one of the employee/category queries (`people`)."""
        return await conn.fetch(sql, *args)
