"""The dashboard in Debian's Chromium (Playwright): what an office browser shows and downloads."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from openpyxl import load_workbook  # type: ignore[import-untyped]
from playwright.async_api import async_playwright

from dxtalent.browser import ARGS, chromium_path
from dxtalent_infra.topology import Topology
from tests.integration.reporting.harness import Reporting, run_reporting
from tests.integration.reporting.test_dashboard import PAGES, seed

pytestmark = pytest.mark.skipif(
    chromium_path() is None,
    reason="Chromium is not installed and could not be (make test runs apt-get install chromium)",
)


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    """A headless Chromium page at 1366×768."""
    async with async_playwright() as pw:
        chromium = await pw.chromium.launch(executable_path=chromium_path(), args=list(ARGS))
        page = await chromium.new_page(viewport={"width": 1366, "height": 768})
        yield page
        await chromium.close()


async def test_pages_load_and_show_the_api_numbers(reporting: Reporting, browser: Any) -> None:
    """Every page loads; the 進捗 level-1 row shows /v1/progress's reached and target."""
    await seed(reporting)
    base = str(reporting.http.base_url).rstrip("/")
    for key in PAGES:
        response = await browser.goto(f"{base}/dashboard/{key}?fiscal_year=2025&as_of=2026-03-31")
        assert response.status == 200, key
    api = (await reporting.http.get("/v1/progress", params={"fiscal_year": 2025})).json()
    await browser.goto(f"{base}/dashboard/progress?fiscal_year=2025&as_of=2026-03-31")
    row = browser.locator('table[data-table="levels"] tbody tr').first
    texts = [t.strip() for t in await row.locator("td").all_inner_texts()]
    assert texts[1:3] == [str(api["levels"][0]["target"]), str(api["levels"][0]["reached"])]


async def test_year_and_date_selectors_change_the_report(
    reporting: Reporting, browser: Any
) -> None:
    """Choosing 令和8年度 and a date in the form reloads the page for that year and day."""
    await seed(reporting)
    base = str(reporting.http.base_url).rstrip("/")
    await browser.goto(f"{base}/dashboard/progress?fiscal_year=2025&as_of=2026-03-31")
    await browser.select_option("#fiscal_year", "2026")
    await browser.fill("#as_of", "2026-09-30")
    await browser.click("button[type=submit]")
    await browser.wait_for_url("**fiscal_year=2026**")
    assert "令和8年度" in await browser.locator(".lead").inner_text()
    assert "2026年9月30日" in await browser.locator(".lead").inner_text()


async def test_excel_download_opens(reporting: Reporting, browser: Any) -> None:
    """The Excel link of 所属別 downloads a workbook openpyxl reads, with Japanese headers."""
    await seed(reporting)
    base = str(reporting.http.base_url).rstrip("/")
    await browser.goto(f"{base}/dashboard/departments?fiscal_year=2025&as_of=2026-03-31")
    async with browser.expect_download() as info:
        await browser.click('a[href*="departments.xlsx"]')
    download = await info.value
    body = await asyncio.to_thread(Path(await download.path()).read_bytes)
    sheet = load_workbook(io.BytesIO(body)).active
    assert next(sheet.iter_rows(values_only=True))[0] == "所属コード"


async def test_login_form_opens_the_pages_once(
    nats_url: str, database_url: str, topology: Topology, browser: Any
) -> None:
    """With a token set, the browser lands on the login form, and after typing the token once
    sees the page it asked for, and the next one, without being asked again."""
    async with run_reporting(nats_url, database_url, topology, api_token="s3cret") as service:
        base = str(service.http.base_url).rstrip("/")
        await browser.goto(f"{base}/dashboard/leaders?fiscal_year=2025&as_of=2026-03-31")
        assert "/dashboard/login" in browser.url
        assert await browser.locator("table").count() == 0
        await browser.fill("input[name=token]", "s3cret")
        await browser.click("button[type=submit]")
        await browser.wait_for_url("**/dashboard/leaders**")
        await browser.click("nav >> text=進捗")
        await browser.wait_for_url("**/dashboard/progress**")
        assert await browser.locator('table[data-table="levels"]').count() == 1
