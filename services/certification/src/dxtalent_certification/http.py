"""HTTP queries of the certification service (`/v1`, bearer token when `DXT_API_TOKEN` is set:
`dxtalent_infra.http_api`).

- `GET /v1/employees/{employee_id}`: current level, held skills with evidence, and for the next
  level the missing skills with the catalog courses that grant them. 404 when no enrollment
  fact about the employee has been applied; 422 for an id that is not a valid employee id.
  Department, categories and duties are those of the record in force today (Japan date).
- `GET /v1/categories`: staff-category compliance of the employees active today (Japan date),
  from the skills they hold now: one read of the membership counts the handler keeps
  (`memberships`), not of every employee.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, cast

import asyncpg
from fastapi import APIRouter, HTTPException, Path

from dxtalent_certification.credential_http import credential_routes
from dxtalent_certification.projection import PostgresEmployeeProjection
from dxtalent_certification.views import (
    CategoriesView,
    EmployeeView,
    counted_category_view,
    employee_view,
)
from dxtalent_contracts.fiscal import japan_date
from dxtalent_contracts.memberships import category_counts, category_queries
from dxtalent_contracts.types import ID_PATTERN
from dxtalent_infra.http_api import INVALID, ErrorBody, v1_router
from dxtalent_infra.membership_counts import MembershipCounts
from dxtalent_infra.runtime import ServiceContext

EmployeeId = Annotated[
    str, Path(pattern=ID_PATTERN, description="employee id", examples=["E000123"])
]


def routes(ctx: ServiceContext) -> APIRouter:
    """The service's `/v1` routes, reading the `employees` read model of `ctx.schema`."""
    projection = PostgresEmployeeProjection(ctx.schema)
    counts = MembershipCounts(ctx.schema)
    queries = category_queries(ctx.catalog)
    router = v1_router(ctx.settings, tags=["certification"])
    unknown: dict[int | str, dict[str, Any]] = {
        404: {"model": ErrorBody, "description": "no fact about this employee applied"}
    }

    @router.get("/employees/{employee_id}", responses={**unknown, **INVALID})
    async def get_employee(employee_id: EmployeeId) -> EmployeeView:
        """One employee's levels, skills with evidence, and what the next level needs."""
        async with ctx.pool.acquire() as conn:
            row = await projection.get(cast(asyncpg.Connection, conn), employee_id)
        if row is None:
            raise HTTPException(
                status_code=404,
                detail=f"employee {employee_id!r} is unknown: no enrollment fact about them "
                "has been applied yet",
            )
        return employee_view(ctx.catalog, row, japan_date(dt.datetime.now(dt.UTC)))

    @router.get("/categories")
    async def get_categories() -> CategoriesView:
        """Staff-category compliance: members, compliant members, what the others lack."""
        day = japan_date(dt.datetime.now(dt.UTC))
        async with ctx.pool.acquire() as conn:
            memberships = await counts.on(cast(asyncpg.Connection, conn), day)
        found = category_counts(memberships, queries)
        return CategoriesView(
            as_of=day,
            policy_version=ctx.catalog.policy_version,
            categories=[counted_category_view(ctx.catalog, q.code, found[q.code]) for q in queries],
        )

    return credential_routes(ctx, router)
