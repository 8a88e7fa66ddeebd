"""Builds each page's view from the read model, inside the caller's read transaction."""

from __future__ import annotations

import datetime as dt

import asyncpg

from dxtalent_contracts.fiscal import fiscal_year_end, fiscal_year_start
from dxtalent_contracts.memberships import category_queries
from dxtalent_infra.runtime import ServiceContext
from dxtalent_reporting.dashboard import pages_people as people_pages
from dxtalent_reporting.dashboard import pages_records as record_pages
from dxtalent_reporting.dashboard.deadletters import newest_dead_letters
from dxtalent_reporting.dashboard.pages_employee import employee_page
from dxtalent_reporting.dashboard.pages_progress import departments_page, plan_months, progress_page
from dxtalent_reporting.dashboard.people import PeopleReader
from dxtalent_reporting.dashboard.reads import DashboardReader
from dxtalent_reporting.dashboard.view import PageView
from dxtalent_reporting.domain.progress import progress_from_tally
from dxtalent_reporting.http import ReportPeriod, departments_report, progress_report
from dxtalent_reporting.queries import ReportReader

INTAKE_DAYS = 31


class PageBuilder:
    """One method per page; `build` picks it by key."""

    def __init__(self, ctx: ServiceContext) -> None:
        self.ctx = ctx
        self.reports = ReportReader(ctx.schema)
        self.reads = DashboardReader(ctx.schema)
        self.people = PeopleReader(ctx.schema)

    async def build(
        self, key: str, conn: asyncpg.Connection, p: ReportPeriod, employee_id: str | None
    ) -> PageView:
        if key == "employee":
            return await self.employee(conn, p, employee_id)
        method = getattr(self, key)
        view: PageView = await method(conn, p)
        return view

    async def progress(self, conn: asyncpg.Connection, p: ReportPeriod) -> PageView:
        catalog = self.ctx.catalog
        tally = await self.reports.tally(conn, p.fiscal_year, p.as_of, None)
        report = progress_report(progress_from_tally(catalog, p.fiscal_year, p.as_of, None, tally))
        first, last = plan_months(catalog)
        monthly = await self.reads.monthly_reached(conn, first, last, catalog.top_level)
        trainees = await self.reads.trainees_reached(conn, p.as_of)
        return progress_page(report, trainees, monthly, catalog)

    async def departments(self, conn: asyncpg.Connection, p: ReportPeriod) -> PageView:
        data = await self.reports.departments(conn, p.fiscal_year, p.as_of)
        report = departments_report(self.ctx, p.fiscal_year, p.as_of, data)
        nominees = await self.reads.nominees(conn, p.fiscal_year)
        return departments_page(report, nominees, self.ctx.catalog.top_level)

    async def leaders(self, conn: asyncpg.Connection, p: ReportPeriod) -> PageView:
        rows = await self.reads.pipeline(conn, p.fiscal_year, p.as_of)
        return people_pages.leaders_page(self.ctx.catalog, p.fiscal_year, p.as_of, rows)

    async def categories(self, conn: asyncpg.Connection, p: ReportPeriod) -> PageView:
        catalog = self.ctx.catalog
        counts = await self.people.categories(conn, p.as_of, category_queries(catalog))
        return people_pages.categories_page(catalog, p.as_of, p.fiscal_year, counts)

    async def employee(
        self, conn: asyncpg.Connection, p: ReportPeriod, employee_id: str | None
    ) -> PageView:
        if not employee_id:
            return PageView("employee", lead="職員番号を入力して検索してください。")
        q = self.people
        found = {
            name: await conn.fetch(sql, employee_id)
            for name, sql in (
                ("records", q.records),
                ("departure", q.departure),
                ("levels", q.levels),
                ("skills", q.skills),
                ("completions", q.completions),
                ("enrollments", q.enrollments),
                ("nominations", q.nominations),
            )
        }
        return employee_page(self.ctx.catalog, employee_id, p.as_of, found)

    async def cases(self, conn: asyncpg.Connection, p: ReportPeriod) -> PageView:
        plan = self.ctx.catalog.plan
        rows = await self.reads.cases(
            conn,
            min(plan.first_fiscal_year, p.fiscal_year),
            max(plan.last_fiscal_year, p.fiscal_year),
        )
        names = await self.reads.department_names(conn)
        return record_pages.cases_page(self.ctx.catalog, p.fiscal_year, rows, names)

    async def intake(self, conn: asyncpg.Connection, p: ReportPeriod) -> PageView:
        last = p.as_of
        first = max(last - dt.timedelta(days=INTAKE_DAYS - 1), fiscal_year_start(p.fiscal_year))
        rows = await self.reads.intake(conn, first, min(last, fiscal_year_end(p.fiscal_year)))
        letters = await newest_dead_letters(self.ctx.js, self.ctx.topology)
        return record_pages.intake_page(first, last, rows, letters)
