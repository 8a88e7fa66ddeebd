"""SQL of the employee and staff-category pages: one employee's rows, or category counts.

A category's members are the employed staff whose record in force on the report date names it
(every employed person for an implicit category such as 全職員). The page reads the membership
counts the consumer keeps (`placements`, `dxtalent_contracts.memberships`): per combination of categories
and skills held, how many employees; so no page reads the city's staff.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import asyncpg

from dxtalent_contracts.memberships import CategoryCounts, CategoryQuery, category_counts
from dxtalent_infra.membership_counts import MembershipCounts
from dxtalent_infra.migrations import quote_ident


class PeopleReader:
    """The employee page's and the category page's queries on the read model of `schema`."""

    def __init__(self, schema: str) -> None:
        q = quote_ident(schema)
        self._counts = MembershipCounts(schema)
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
        it) most first, from the membership counts on `as_of` (`dxtalent_contracts.memberships`)."""
        return category_counts(await self._counts.on(conn, as_of), categories)
