"""HTTP queries of the reporting service (docs/contract.md, "Queries"), behind the bearer token.

- `GET /v1/progress` — progress against the headcount targets, city-wide or one department.
- `GET /v1/progress.csv` — the same table as CSV for Excel.
- `GET /v1/progress/departments` — the same levels per department, and the departments
  that nominated no DX leader in the fiscal year.

Parameters: `fiscal_year` 2019–2100 (the label is in the 令和 era, which began in FY2019); a
year the catalog sets no target for is answered with `target`/`percent` null. `as_of`
(YYYY-MM-DD; default today while the year runs, else its last day) is the state on that date as known now
(see `readmodel`); it must lie inside the fiscal year (`queries.report_date`). Bad parameters
get 422 naming the parameter (`dxtalent_infra.http_api`); a database that does not answer
gets 503.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, TypeVar, cast

import asyncpg
import structlog
from fastapi import APIRouter, Depends, HTTPException, Query, Response
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from dxtalent_contracts.fiscal import japan_date, reiwa_label
from dxtalent_contracts.types import ID_PATTERN
from dxtalent_infra.http_api import INVALID, ErrorBody, invalid_parameter, v1_router
from dxtalent_infra.runtime import ServiceContext
from dxtalent_reporting.csv_export import MEDIA_TYPE, csv_filename, progress_csv
from dxtalent_reporting.domain.placements import Tally
from dxtalent_reporting.domain.progress import UNKNOWN_DEPARTMENT, Progress, progress_from_tally
from dxtalent_reporting.queries import ReportData, ReportReader, by_department, report_date

log = structlog.get_logger(__name__)
T = TypeVar("T")
_ISO_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


class LevelProgressOut(BaseModel):
    """One level: reached = certified at this level or higher and still employed."""

    model_config = ConfigDict(frozen=True)

    level: int = Field(examples=[1])
    target: int | None = Field(
        description="headcount target of the catalog (city-wide); null when none is set",
        examples=[100],
    )
    reached: int = Field(description="employed staff at this level or higher", examples=[73])
    exactly: int = Field(description="employed staff whose highest level is this", examples=[60])
    percent: float | None = Field(
        description="reached / target × 100, one decimal; null when the target is 0 or unset",
        examples=[73.0],
    )
    left: int = Field(description="staff at this level or higher who had left by as_of")


class ProgressReport(BaseModel):
    """Progress of one fiscal year on one date, city-wide or for one department."""

    model_config = ConfigDict(frozen=True)

    fiscal_year: int = Field(examples=[2025])
    fiscal_year_label: str = Field(examples=["令和7年度"])
    as_of: dt.date = Field(examples=["2026-03-31"])
    department: str | None = Field(default=None, description="null for the city-wide report")
    levels: list[LevelProgressOut]
    left: int = Field(description="staff holding any level who had left by as_of")


class DepartmentProgressOut(BaseModel):
    """One department's levels; `target` is the city-wide target, shown for reference."""

    model_config = ConfigDict(frozen=True)

    department: str
    department_name: str | None = None
    nominated_leader: bool = Field(description="a DX leader was nominated for this fiscal year")
    levels: list[LevelProgressOut]
    left: int


class DepartmentsReport(BaseModel):
    """Per department: where the employee records place staff on as_of."""

    model_config = ConfigDict(frozen=True)

    fiscal_year: int
    fiscal_year_label: str
    as_of: dt.date
    departments: list[DepartmentProgressOut]
    without_nominated_leader: list[str] = Field(
        description="departments on the report without a nominated leader in the fiscal year"
    )


FiscalYearParam = Annotated[
    int,
    Query(ge=2019, le=2100, description="fiscal year (年度) by its starting year", examples=[2025]),
]
DepartmentParam = Annotated[
    str | None,
    Query(pattern=ID_PATTERN, description="department code; omit for city-wide", examples=["D-A"]),
]


def _calendar_date(value: object) -> object:
    """Only a real `YYYY-MM-DD` date: pydantic alone would also read `0` or a datetime as a
    date, and its message for 2025-02-30 does not say what to send."""
    if not isinstance(value, str):
        return value
    if not _ISO_DATE.fullmatch(value):
        raise ValueError("as_of must be a calendar date YYYY-MM-DD")
    try:
        return dt.date.fromisoformat(value)
    except ValueError as exc:
        raise ValueError(f"as_of must be a calendar date YYYY-MM-DD: {exc}") from None


AsOfParam = Annotated[
    dt.date | None,
    BeforeValidator(_calendar_date),
    Query(
        description="report date (YYYY-MM-DD) inside the fiscal year; default: today (Japan) while the year runs, else its last day",
        examples=["2025-09-30"],
    ),
]


@dataclass(frozen=True)
class ReportPeriod:
    """The fiscal year a report is of, and the date it is on."""

    fiscal_year: int
    as_of: dt.date


async def report_period(fiscal_year: FiscalYearParam, as_of: AsOfParam = None) -> ReportPeriod:
    """The request's fiscal year and report date; 422 naming the year's days when `as_of` is
    outside the year. A coroutine, though it awaits nothing: FastAPI runs a plain function
    dependency in its thread pool, a hand-over to a thread and back on every request."""
    try:
        today = japan_date(dt.datetime.now(dt.UTC))
        return ReportPeriod(fiscal_year, report_date(fiscal_year, as_of, today))
    except ValueError as exc:
        raise invalid_parameter("query", "as_of", str(exc), str(as_of)) from exc


Period = Annotated[ReportPeriod, Depends(report_period)]


def _levels(progress: Progress) -> list[dict[str, object]]:
    """The levels of a report as the fields of `LevelProgressOut`."""
    return [
        {
            "level": p.level,
            "target": p.target,
            "reached": p.reached,
            "exactly": p.exactly,
            "percent": None if p.percent is None else float(p.percent),
            "left": p.left,
        }
        for p in progress.levels
    ]


def progress_report(progress: Progress) -> ProgressReport:
    """The JSON body of a `Progress`."""
    return ProgressReport.model_validate(
        {
            "fiscal_year": progress.fiscal_year,
            "fiscal_year_label": progress.fiscal_year_label,
            "as_of": progress.as_of,
            "department": progress.department,
            "levels": _levels(progress),
            "left": progress.left,
        }
    )


def departments_report(
    ctx: ServiceContext, fiscal_year: int, as_of: dt.date, data: ReportData
) -> DepartmentsReport:
    """Every department the report date places someone in, or that nominated a leader.

    The body is validated once, as plain data (pydantic-core walks it): constructing each
    level's and department's model in Python cost as much as computing the reports."""
    reports = by_department(ctx.catalog, fiscal_year, data, as_of)
    rows = [
        {
            "department": code,
            "department_name": data.department_names.get(code),
            "nominated_leader": code in data.nominated_departments,
            "levels": _levels(reports[code]),
            "left": reports[code].left,
        }
        for code in sorted(reports)
    ]
    return DepartmentsReport.model_validate(
        {
            "fiscal_year": fiscal_year,
            "fiscal_year_label": reiwa_label(fiscal_year),
            "as_of": as_of,
            "departments": rows,
            "without_nominated_leader": [
                r["department"]
                for r in rows
                if not r["nominated_leader"] and r["department"] != UNKNOWN_DEPARTMENT
            ],
        }
    )


def routes(ctx: ServiceContext) -> APIRouter:
    """The `/v1` routes of the reporting service."""
    reader = ReportReader(ctx.schema)
    router = v1_router(ctx.settings, tags=["progress"])
    responses = {
        **INVALID,
        503: {"model": ErrorBody, "description": "the database does not answer"},
    }

    async def read(query: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
        try:
            async with ctx.pool.acquire(timeout=5) as conn:
                return await query(cast(asyncpg.Connection, conn))
        except (OSError, TimeoutError, asyncpg.PostgresError) as exc:
            log.warning("report.database_unavailable", error=repr(exc))
            raise HTTPException(503, "the database does not answer; try again") from exc

    async def city_or_department(period: ReportPeriod, department: str | None) -> Progress:
        async def query(conn: asyncpg.Connection) -> Tally:
            return await reader.tally(conn, period.fiscal_year, period.as_of, department)

        tally = await read(query)
        return progress_from_tally(ctx.catalog, period.fiscal_year, period.as_of, department, tally)

    @router.get(
        "/progress",
        response_model=ProgressReport,
        summary="Progress against targets",
        responses=responses,
    )
    async def progress(period: Period, department: DepartmentParam = None) -> ProgressReport:
        """Reached / exactly / percent per level of `fiscal_year` on `as_of`."""
        return progress_report(await city_or_department(period, department))

    @router.get(
        "/progress.csv",
        response_class=Response,
        summary="Progress against targets as CSV (UTF-8 with BOM)",
        responses={
            200: {"content": {"text/csv": {}}, "description": "the report as CSV"},
            **responses,
        },
    )
    async def progress_csv_export(period: Period, department: DepartmentParam = None) -> Response:
        """The `/v1/progress` table as a CSV download."""
        body = progress_csv(await city_or_department(period, department))
        filename = csv_filename(period.fiscal_year, department)
        return Response(
            body,
            media_type=MEDIA_TYPE,
            headers={"Content-Disposition": f'attachment; filename="{filename}"'},
        )

    @router.get(
        "/progress/departments",
        response_model=DepartmentsReport,
        summary="Progress by department",
        responses=responses,
    )
    async def progress_departments(period: Period) -> DepartmentsReport:
        """Per department the same levels, and the departments without a nominated leader."""

        async def query(conn: asyncpg.Connection) -> ReportData:
            return await reader.departments(conn, period.fiscal_year, period.as_of)

        return departments_report(ctx, period.fiscal_year, period.as_of, await read(query))

    # the HTML dashboard (its own session login) beside the JSON API
    from dxtalent_reporting.dashboard.routes import dashboard_routes

    both = APIRouter()
    both.include_router(router)
    both.include_router(dashboard_routes(ctx))
    return both
