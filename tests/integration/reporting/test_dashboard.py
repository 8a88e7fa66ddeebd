"""The dashboard pages against a running reporting service: numbers, downloads, login."""

from __future__ import annotations

import io
import re
from collections.abc import AsyncIterator

import pytest
from openpyxl import load_workbook  # type: ignore[import-untyped]

from dxtalent_infra.topology import Topology
from tests.integration.reporting.harness import (
    Reporting,
    employee,
    left,
    levels_up_to,
    nominated,
    run_reporting,
)

FY: dict[str, str | int] = {"fiscal_year": 2025, "as_of": "2026-03-31"}
PAGES = ("progress", "departments", "leaders", "employee", "categories", "cases", "intake")


async def seed(reporting: Reporting) -> None:
    """Three staff in two sections, one leader nominated, one who left."""
    await reporting.publish(
        employee("E1", "D-A", name="総務課"),
        *levels_up_to("E1", 2, "2025-06-01"),
        employee("E2", "D-B"),
        *levels_up_to("E2", 1, "2025-07-01", department="D-B"),
        left("E2", "2025-12-31"),
        employee("E3", "D-B"),
        nominated("E1", 2025, "D-A"),
    )
    await reporting.settle()


def cells(html: str, table: str) -> list[list[str]]:
    """The text of each body cell of the table `data-table=table`."""
    body = html.split(f'data-table="{table}"', 1)[1].split("</tbody>", 1)[0]
    rows = re.findall(r"<tr[^>]*>(.*?)</tr>", body.split("<tbody>", 1)[1], re.S)
    return [
        [re.sub(r"<[^>]+>|\s+", "", c) for c in re.findall(r"<td[^>]*>(.*?)</td>", r, re.S)]
        for r in rows
    ]


async def test_every_page_is_japanese_and_served(reporting: Reporting) -> None:
    """Each of the seven pages answers 200 with lang="ja", its title and the 令和 year."""
    await seed(reporting)
    for key in PAGES:
        response = await reporting.http.get(f"/dashboard/{key}", params=FY)
        assert response.status_code == 200, (key, response.text[:300])
        assert '<html lang="ja">' in response.text
        assert "令和7年度" in response.text
        assert "2026年3月31日" in response.text


async def test_progress_page_shows_the_api_numbers(reporting: Reporting) -> None:
    """The level table of 進捗 holds the target, reached and exactly of /v1/progress."""
    await seed(reporting)
    api = (await reporting.http.get("/v1/progress", params=FY)).json()
    html = (await reporting.http.get("/dashboard/progress", params=FY)).text
    shown = cells(html, "levels")
    expected = [[str(lv["target"]), str(lv["reached"]), str(lv["exactly"])] for lv in api["levels"]]
    assert [row[1:4] for row in shown] == expected
    assert api["levels"][0]["reached"] == 1  # E2 left: counted apart


async def test_departments_page_flags_sections_without_a_leader(reporting: Reporting) -> None:
    """D-B nominated nobody this year: its row says 未指名 and is flagged; D-A's does not."""
    await seed(reporting)
    html = (await reporting.http.get("/dashboard/departments", params=FY)).text
    rows = {r[0]: r for r in cells(html, "departments")}
    assert rows["D-A"][2] == "1人"
    assert rows["D-B"][2].startswith("未指名")
    assert html.count('class="flag"') == 1


async def test_downloads_are_excel_ready(reporting: Reporting) -> None:
    """CSV starts with the UTF-8 BOM and Japanese headers; the xlsx reads back with openpyxl."""
    await seed(reporting)
    csv = await reporting.http.get("/dashboard/progress/levels.csv", params=FY)
    assert csv.content.startswith(b"\xef\xbb\xbf")
    assert csv.content.decode("utf-8-sig").splitlines()[0].startswith("レベル,目標人数,到達人数")
    xlsx = await reporting.http.get("/dashboard/departments/departments.xlsx", params=FY)
    sheet = load_workbook(io.BytesIO(xlsx.content)).active
    rows = list(sheet.iter_rows(values_only=True))
    assert rows[0][:3] == ("所属コード", "所属名", "推進リーダー指名（今年度）")
    assert {r[0] for r in rows[1:]} == {"D-A", "D-B"}


async def test_leaders_page_says_what_is_missing(reporting: Reporting) -> None:
    """A nominated leader without level 1 is listed with the skills and courses they lack."""
    await reporting.publish(employee("E9", "D-C"), nominated("E9", 2025, "D-C"))
    await reporting.settle()
    html = (await reporting.http.get("/dashboard/leaders", params=FY)).text
    [row] = cells(html, "pending")
    assert row[0] == "E9"
    assert "DX基礎" in row[2]


@pytest.fixture
async def guarded(nats_url: str, database_url: str, topology: Topology) -> AsyncIterator[Reporting]:
    """The reporting service with DXT_API_TOKEN=s3cret."""
    async with run_reporting(nats_url, database_url, topology, api_token="s3cret") as service:
        yield service


async def test_pages_need_the_token_once(guarded: Reporting) -> None:
    """Without a session a page redirects to the login form; the right token sets a signed,
    HttpOnly, SameSite=Strict cookie that opens the pages; a wrong one does not."""
    http = guarded.http
    http.headers.pop("Authorization")
    first = await http.get("/dashboard/progress", params=FY)
    assert first.status_code == 303
    assert first.headers["location"].startswith("/dashboard/login?next=")
    assert "レベル" not in first.text
    wrong = await http.post(
        "/dashboard/login", data={"token": "nope", "next": "/dashboard/cases?fiscal_year=2025&a=b"}
    )
    assert wrong.headers["location"] == (
        "/dashboard/login?failed=true&next=%2Fdashboard%2Fcases%3Ffiscal_year%3D2025%26a%3Db"
    )
    assert "dxt_session" not in wrong.headers.get("set-cookie", "")
    ok = await http.post("/dashboard/login", data={"token": "s3cret", "next": "/dashboard/leaders"})
    cookie = ok.headers["set-cookie"]
    assert ok.headers["location"] == "/dashboard/leaders"
    assert "HttpOnly" in cookie
    assert "SameSite=strict" in cookie
    assert (await http.get("/dashboard/progress", params=FY)).status_code == 200
    assert (await http.get("/v1/progress", params=FY)).status_code == 401  # API keeps bearer


async def test_departments_of_staff_without_a_level_come_from_one_query(
    reporting: Reporting,
) -> None:
    """Staff without a level are not loaded, yet their departments are listed as before: the
    record in force (a later transfer does not count yet), a nomination where HR sent no record,
    and `unknown` for someone known only by a departure."""
    await reporting.publish(
        employee("E1", "D-A"),
        *levels_up_to("E1", 1, "2025-06-01"),
        employee("E2", "D-B"),
        employee("E2", "D-C", effective="2026-01-01"),
        nominated("E3", 2025, "D-N"),
        left("E4", "2025-05-01"),
    )
    await reporting.settle()
    body = (
        await reporting.http.get(
            "/v1/progress/departments", params={"fiscal_year": 2025, "as_of": "2025-12-31"}
        )
    ).json()
    assert [d["department"] for d in body["departments"]] == ["D-A", "D-B", "D-N", "unknown"]
    assert [lv["reached"] for lv in body["departments"][0]["levels"]] == [1, 0, 0]


async def test_a_new_year_with_the_old_date_shows_the_new_year(reporting: Reporting) -> None:
    """Picking 令和8年度 in the form still sends the old 基準日: the page shows FY2026 on its
    default date instead of an error (the API, in contrast, refuses such a date)."""
    params: dict[str, str | int] = {"fiscal_year": 2026, "as_of": "2026-03-31"}
    page = await reporting.http.get("/dashboard/progress", params=params)
    assert page.status_code == 200
    assert "令和8年度" in page.text
    assert "2026年3月31日" not in page.text.split('class="lead"', 1)[1].split("</div>", 1)[0]
    assert (await reporting.http.get("/v1/progress", params=params)).status_code == 422
