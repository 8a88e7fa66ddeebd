"""The dashboard's routes: `/dashboard/<page>`, its downloads, and the login form.

Every page reads at one instant (a read-only repeatable-read transaction) and takes the same
`fiscal_year` / `as_of` as the JSON API (default: the current fiscal year, today in Japan).
`/dashboard/<page>/<table>.csv|.xlsx` downloads a table exactly as the page shows it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, cast
from urllib.parse import parse_qs, quote

import asyncpg
from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.templating import Jinja2Templates

from dxtalent_contracts.fiscal import fiscal_year_of, japan_date
from dxtalent_infra.runtime import ServiceContext
from dxtalent_reporting.dashboard.auth import Sessions, safe_next
from dxtalent_reporting.dashboard.pages import PageBuilder
from dxtalent_reporting.dashboard.tables import (
    CSV_MEDIA_TYPE,
    XLSX_MEDIA_TYPE,
    Table,
    download_name,
    table_csv,
    table_xlsx,
)
from dxtalent_reporting.dashboard.view import PAGES, TITLES, PageView, fy_label, wareki_date
from dxtalent_reporting.http import AsOfParam, ReportPeriod
from dxtalent_reporting.queries import report_date

TEMPLATES = Jinja2Templates(directory=Path(__file__).parent / "templates")


async def page_period(
    fiscal_year: Annotated[int | None, Query(ge=2019, le=2100)] = None, as_of: AsOfParam = None
) -> ReportPeriod:
    """The page's fiscal year and date; without a year, the one `as_of` (default today) is in.
    (A coroutine so that FastAPI runs it on the loop, not in its thread pool: `report_period`.)

    Unlike the API, a date outside the chosen year is not an error: a person who picks another
    year in the form still sends the old date, and gets the new year's default date instead.
    """
    today = japan_date(dt.datetime.now(dt.UTC))
    year = fiscal_year or fiscal_year_of(as_of or today)
    if as_of is not None and fiscal_year_of(as_of) != year:
        as_of = None
    return ReportPeriod(year, report_date(year, as_of, today))


Period = Annotated[ReportPeriod, Depends(page_period)]


def dashboard_routes(ctx: ServiceContext) -> APIRouter:
    """The HTML pages, downloads and login of the reporting service."""
    sessions = Sessions(ctx.settings.api_token)
    router = _login_routes(sessions)
    guarded = APIRouter(
        prefix="/dashboard", dependencies=[Depends(sessions.guard)], include_in_schema=False
    )
    builder = PageBuilder(ctx)

    async def build(key: str, p: ReportPeriod, employee_id: str | None) -> PageView:
        if key not in TITLES:
            raise HTTPException(404, f"no page {key!r}; pages: {', '.join(TITLES)}")
        try:
            async with ctx.pool.acquire(timeout=5) as conn:
                c = cast(asyncpg.Connection, conn)
                async with c.transaction(isolation="repeatable_read", readonly=True):
                    return await builder.build(key, c, p, employee_id)
        except (OSError, TimeoutError, asyncpg.PostgresError) as exc:
            raise HTTPException(503, "the database does not answer; try again") from exc

    @guarded.get("/{key}", response_class=HTMLResponse)
    async def page(
        request: Request, key: str, p: Period, employee_id: str | None = None
    ) -> Response:
        view = await build(key, p, employee_id)
        context = {
            "view": view,
            "pages": PAGES,
            "period": p,
            "years": range(2024, max(2028, p.fiscal_year + 1)),
            "fy_label": fy_label,
            "as_of_label": wareki_date(p.as_of),
            "employee_id": employee_id or "",
            "query": request.url.query,
        }
        return TEMPLATES.TemplateResponse(request, "page.html", context)

    guarded.add_api_route(
        "/{key}/{table}.csv",
        _download(build, "csv", CSV_MEDIA_TYPE, lambda v, t: table_csv(_table(v, t))),
    )
    guarded.add_api_route(
        "/{key}/{table}.xlsx",
        _download(
            build,
            "xlsx",
            XLSX_MEDIA_TYPE,
            lambda v, t: table_xlsx(_table(v, t), _table(v, t).title),
        ),
    )
    router.include_router(guarded)
    return router


Build = Callable[[str, ReportPeriod, str | None], Awaitable[PageView]]


def _login_routes(sessions: Sessions) -> APIRouter:
    """`/` and the login form: the only dashboard routes open without a session."""
    router = APIRouter(include_in_schema=False)

    @router.get("/")
    async def root() -> RedirectResponse:
        return RedirectResponse("/dashboard/progress", status_code=303)

    @router.get("/dashboard/login", response_class=HTMLResponse)
    async def login_form(
        request: Request, next: str | None = None, failed: bool = False
    ) -> Response:
        return TEMPLATES.TemplateResponse(
            request, "login.html", {"next": safe_next(next), "failed": failed, "pages": PAGES}
        )

    @router.post("/dashboard/login")
    async def login(request: Request) -> Response:
        form = parse_qs((await request.body()).decode("utf-8", "replace"))
        target = safe_next((form.get("next") or [""])[0])
        if not sessions.required:
            return RedirectResponse(target, status_code=303)
        if not sessions.token_matches((form.get("token") or [""])[0]):
            again = f"/dashboard/login?failed=true&next={quote(target, safe='')}"
            return RedirectResponse(again, status_code=303)
        response = RedirectResponse(target, status_code=303)
        sessions.open(response)
        return response

    return router


def _download(
    build: Build, ext: str, media: str, render: Callable[[PageView, str], bytes]
) -> Callable[..., Awaitable[Response]]:
    """The route that downloads one table of a page as `ext`."""

    async def handler(key: str, table: str, p: Period, employee_id: str | None = None) -> Response:
        view = await build(key, p, employee_id)
        found = view.table(table)
        if found is None:
            raise HTTPException(404, f"page {key!r} has no table {table!r}")
        name = download_name(key, found, p.fiscal_year, p.as_of, ext)
        return Response(
            render(view, table),
            media_type=media,
            headers={"Content-Disposition": f'attachment; filename="{name}"'},
        )

    return handler


def _table(view: PageView, key: str) -> Table:
    found = view.table(key)
    assert found is not None
    return found
