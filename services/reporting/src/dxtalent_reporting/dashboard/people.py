"""SQL of the employee and staff-category pages: one employee's rows, or category aggregates.

A category's members are the employed staff whose record in force on the report date names it
(every employed person for an implicit category such as 全職員); compliance and the missing
knowledge are counted by PostgreSQL, so no page loads the city's staff into Python.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field

import asyncpg

from dxtalent_infra.migrations import quote_ident


class PeopleReader:
    """The employee page's and the category page's queries on the read model of `schema`."""

    def __init__(self, schema: str) -> None:
        q = quote_ident(schema)
        self._categories = f"""
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
        self.records = (
            f"SELECT effective_date, department_code, department_name, categories, duty_skills,"
            f" fact_id FROM {q}.employee_records WHERE employee_id = $1 ORDER BY effective_date"
        )
        self.departure = f"SELECT left_on FROM {q}.departures WHERE employee_id = $1"
        self.levels = (
            f"SELECT level, certified_on, fiscal_year, revoked, via_equivalence, event_id"
            f" FROM {q}.levels WHERE employee_id = $1 ORDER BY level"
        )
        self.skills = (
            f"SELECT skill, course_id, acquired_on, revoked FROM {q}.skills"
            " WHERE employee_id = $1 ORDER BY skill"
        )
        self.completions = (
            f"SELECT fact_id, course_id, completed_on, fiscal_year, voided, void_reason"
            f" FROM {q}.completions WHERE employee_id = $1 ORDER BY completed_on NULLS LAST"
        )
        self.enrollments = (
            f"SELECT course_id, fiscal_year, enrolled_on FROM {q}.enrollments"
            " WHERE employee_id = $1 ORDER BY enrolled_on"
        )
        self.nominations = (
            f"SELECT fiscal_year, department_code FROM {q}.nominations"
            " WHERE employee_id = $1 ORDER BY fiscal_year"
        )

    async def categories(
        self, conn: asyncpg.Connection, as_of: dt.date, categories: Sequence[CategoryQuery]
    ) -> dict[str, CategoryCounts]:
        """Per category code: members, members lacking something, and (skill, members lacking
        it) most first, in one scan of the records in force on `as_of`."""
        codes = [c.code for c in categories]
        pairs = [f"{c.code} {skill}" for c in categories for skill in c.required]
        rows = await conn.fetch(
            self._categories, as_of, codes, [c.implicit for c in categories], pairs
        )
        counts = {code: CategoryCounts() for code in codes}
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


@dataclass(frozen=True)
class CategoryQuery:
    """A staff category as the query needs it: code, implicit (everyone), required skills."""

    code: str
    implicit: bool
    required: tuple[str, ...]


@dataclass
class CategoryCounts:
    """Members of a category, how many lack something, and what they lack most."""

    members: int = 0
    lacking: int = 0
    missing: list[tuple[str, int]] = field(default_factory=list)
