"""The dashboard's pure parts: table downloads, SVG charts, session cookies, Japanese dates."""

from __future__ import annotations

import datetime as dt
import io

from fastapi import Response
from openpyxl import load_workbook  # type: ignore[import-untyped]
from pydantic import SecretStr
from starlette.requests import Request

from dxtalent_reporting.dashboard import svg
from dxtalent_reporting.dashboard.auth import COOKIE, Sessions, safe_next
from dxtalent_reporting.dashboard.tables import Table, table_csv, table_xlsx
from dxtalent_reporting.dashboard.view import fy_label, wareki_date

TABLE = Table(
    "t", "表", ("所属", "人数"), [("総務課", 3), ("人事課", None)], numeric=frozenset({1})
)


def test_csv_has_bom_crlf_and_empty_cells_for_none() -> None:
    """The CSV opens in Excel: BOM, CRLF, Japanese header, None as an empty cell."""
    body = table_csv(TABLE)
    assert body.startswith(b"\xef\xbb\xbf")
    assert body.decode("utf-8-sig") == "所属,人数\r\n総務課,3\r\n人事課,\r\n"


def test_xlsx_reads_back_with_numbers_as_numbers() -> None:
    """The workbook has the header and rows; counts stay numbers."""
    sheet = load_workbook(io.BytesIO(table_xlsx(TABLE, "表"))).active
    assert list(sheet.iter_rows(values_only=True)) == [
        ("所属", "人数"),
        ("総務課", 3),
        ("人事課", None),
    ]
    assert sheet.title == "表"


def test_charts_escape_labels_and_carry_a_title() -> None:
    """Labels are escaped text, each chart is one <svg role="img"> with a <title>."""
    chart = svg.bar_chart("到達<人数>", [svg.Bar("<b>", 3, 10)])
    assert chart.startswith("<svg")
    assert 'role="img"' in chart
    assert "<title>到達&lt;人数&gt;</title>" in chart
    assert "<b>" not in chart.replace("<title>", "")
    assert "3 / 10（30.0%）" in chart


def test_funnel_shares_are_of_the_first_step() -> None:
    """Each step shows its count and its share of the first step."""
    chart = svg.funnel("f", [("指名", 40), ("認定", 10)])
    assert "40人（100%）" in chart
    assert "10人（25%）" in chart


def _request(cookie: str | None) -> Request:
    headers = [(b"cookie", f"{COOKIE}={cookie}".encode())] if cookie else []
    return Request({"type": "http", "headers": headers, "path": "/", "query_string": b""})


def test_session_cookie_is_signed_httponly_strict() -> None:
    """A session opened by one token is valid for it, not for another token or when tampered."""
    sessions = Sessions(SecretStr("s3cret"))
    response = Response()
    sessions.open(response)
    header = response.headers["set-cookie"]
    assert "HttpOnly" in header
    assert "SameSite=strict" in header
    value = header.split(";")[0].split("=", 1)[1]
    assert sessions.valid(_request(value))
    assert not sessions.valid(_request(value[:-2] + "xx"))
    assert not Sessions(SecretStr("other")).valid(_request(value))
    assert not sessions.valid(_request(None))


def test_no_token_means_open_pages_and_next_stays_on_the_dashboard() -> None:
    """Without a token nothing is asked; `next` never leaves the dashboard."""
    assert Sessions(None).valid(_request(None))
    assert safe_next("/dashboard/leaders?fiscal_year=2025") == "/dashboard/leaders?fiscal_year=2025"
    assert safe_next("https://evil.example/") == "/dashboard/progress"
    assert safe_next("//evil.example/dashboard/") == "/dashboard/progress"


def test_dates_and_years_read_the_japanese_way() -> None:
    """2026年3月31日; 令和7年度（2025年度）."""
    assert wareki_date(dt.date(2026, 3, 31)) == "2026年3月31日"
    assert fy_label(2025) == "令和7年度（2025年度）"
