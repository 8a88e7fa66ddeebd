"""SQL of the employee and staff-category pages: one employee's rows, or category aggregates.

A category's members are the employed staff whose record in force on the report date names it
(every employed person for an implicit category such as 全職員); compliance and the missing
knowledge are counted by PostgreSQL, so no page loads the city's staff into Python.
"""

from __future__ import annotations

import datetime as dt

import asyncpg

from dxtalent_infra.migrations import quote_ident


class PeopleReader:
    """The employee page's and the category page's queries on the read model of `schema`."""

    def __init__(self, schema: str) -> None:
        q = quote_ident(schema)
        self._members = f"""
            WITH cur AS (
              SELECT DISTINCT ON (employee_id) employee_id, categories FROM {q}.employee_records
              WHERE effective_date <= $1 ORDER BY employee_id, effective_date DESC, fact_id DESC),
            members AS (
              SELECT cur.employee_id FROM cur LEFT JOIN {q}.departures d USING (employee_id)
              WHERE (d.left_on IS NULL OR d.left_on > $1) AND ($2 = ANY(cur.categories) OR $3)),
            missing AS (
              SELECT m.employee_id, req.skill FROM members m CROSS JOIN unnest($4::text[]) req(skill)
              WHERE NOT EXISTS (SELECT 1 FROM {q}.skills s WHERE s.employee_id = m.employee_id
                AND s.skill = req.skill AND NOT s.revoked AND s.acquired_on <= $1))
            SELECT (SELECT count(*) FROM members) AS members,
                   (SELECT count(DISTINCT employee_id) FROM missing) AS lacking,
                   ARRAY(SELECT skill || ':' || count(*) FROM missing GROUP BY skill
                         ORDER BY count(*) DESC, skill) AS missing"""
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

    async def category(
        self,
        conn: asyncpg.Connection,
        as_of: dt.date,
        code: str,
        implicit: bool,
        required: list[str],
    ) -> tuple[int, int, list[tuple[str, int]]]:
        """(members, members lacking something, [(skill, members lacking it)] most first)."""
        row = await conn.fetchrow(self._members, as_of, code, implicit, required)
        assert row is not None
        missing = [(s.rsplit(":", 1)[0], int(s.rsplit(":", 1)[1])) for s in row["missing"]]
        return row["members"], row["lacking"], missing
