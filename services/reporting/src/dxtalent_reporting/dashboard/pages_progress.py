"""The 進捗 and 所属別 pages: the JSON API's own reports, shown with charts.

Both pages build their numbers with the functions behind `/v1/progress` and
`/v1/progress/departments` (`http.progress_report`, `http.departments_report`), so the page
and the API cannot disagree.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping

from markupsafe import Markup

from dxtalent_contracts.catalog import Catalog
from dxtalent_contracts.fiscal import fiscal_year_end, fiscal_year_start
from dxtalent_reporting.dashboard import svg
from dxtalent_reporting.dashboard.tables import Table
from dxtalent_reporting.dashboard.view import PageView, fy_label, pct, wareki_date
from dxtalent_reporting.http import DepartmentsReport, ProgressReport

LEVELS_HEADERS = ("レベル", "目標人数", "到達人数", "うち当該レベル", "達成率", "退職者（到達済）")


def progress_page(
    report: ProgressReport,
    trainees: int,
    monthly: dict[tuple[dt.date, int], int],
    catalog: Catalog,
) -> PageView:
    """Per level target/reached/exactly/percent, the bar chart, the monthly lines."""
    rows = [
        (f"レベル{lv.level}", lv.target, lv.reached, lv.exactly, pct(lv.percent), lv.left)
        for lv in report.levels
    ]
    view = PageView(
        "progress", lead=f"{fy_label(report.fiscal_year)}　基準日 {wareki_date(report.as_of)}"
    )
    level1 = report.levels[0] if report.levels else None
    if level1 is not None:
        view.cards.append(("レベル1 到達人数", f"{level1.reached}人"))
        view.cards.append(("達成率", pct(level1.percent)))
    if report.fiscal_year == 2025:
        view.cards.append(("うち令和6年度研修修了者", f"{trainees}人"))
    view.cards.append(("退職者（別計上）", f"{report.left}人"))
    bars = [svg.Bar(f"レベル{lv.level}", lv.reached, lv.target) for lv in report.levels]
    view.charts.append(("レベル別 到達人数と目標", svg.bar_chart("レベル別 到達人数と目標", bars)))
    view.charts.append(("月別の到達人数と各年度の目標", _monthly_chart(monthly, catalog)))
    view.tables.append(
        Table("levels", "レベル別の進捗", LEVELS_HEADERS, rows, numeric=frozenset({1, 2, 3, 4, 5}))
    )
    if report.fiscal_year == 2025 and level1 is not None:
        view.notes.append(
            f"レベル1の到達人数 {level1.reached}人のうち令和6年度研修修了者（レベル１相当）は {trainees}人です。"
        )
    view.notes.append(
        "到達人数は基準日に在職している職員のみ。退職した職員は「退職者」として別に数えます。"
    )
    return view


def plan_months(catalog: Catalog) -> tuple[dt.date, dt.date]:
    """First and last day of the plan's fiscal years (FY2025–FY2027)."""
    return (
        fiscal_year_start(catalog.plan.first_fiscal_year),
        fiscal_year_end(catalog.plan.last_fiscal_year),
    )


def _monthly_chart(monthly: dict[tuple[dt.date, int], int], catalog: Catalog) -> Markup:
    months = sorted({m for m, _ in monthly})
    labels = [f"令和{m.year - 2018}年{m.month}月" for m in months]
    series = []
    for n in range(1, catalog.top_level + 1):
        series.append(
            svg.Series(
                f"レベル{n} 到達",
                [monthly.get((m, n), 0) for m in months],
                colour=svg.colour(n - 1),
            )
        )
        series.append(
            svg.Series(
                f"レベル{n} 目標",
                [catalog.target(_fy(m), n) for m in months],
                dashed=True,
                step=True,
                colour=svg.colour(n - 1),
            )
        )
    return svg.line_chart("月別の到達人数（実線）と各年度の目標（破線）", labels, series)


def _fy(day: dt.date) -> int:
    return day.year if day.month >= 4 else day.year - 1


def departments_page(
    report: DepartmentsReport, nominees: Mapping[str, int], top_level: int
) -> PageView:
    """One row per department with its leaders nominated this year; a flag where none is."""
    headers = (
        "所属コード",
        "所属名",
        "推進リーダー指名（今年度）",
        *(f"レベル{n} 到達" for n in range(1, top_level + 1)),
        "退職者",
    )
    rows = []
    for d in report.departments:
        reached = [lv.reached for lv in d.levels]
        rows.append(
            (
                d.department,
                d.department_name,
                f"{nominees.get(d.department, 0)}人" if d.nominated_leader else "未指名",
                *reached,
                d.left,
            )
        )
    view = PageView(
        "departments", lead=f"{fy_label(report.fiscal_year)}　基準日 {wareki_date(report.as_of)}"
    )
    view.cards.append(("所属数", f"{len(rows)}"))
    view.cards.append(("推進リーダー未指名の所属", f"{len(report.without_nominated_leader)}"))
    level_cols = frozenset(range(3, 3 + top_level))
    view.tables.append(
        Table(
            "departments",
            "所属別の到達人数",
            headers,
            rows,
            numeric=level_cols | {3 + top_level},
            heat=level_cols,
            flags=[
                not d.nominated_leader and d.department != "unknown" for d in report.departments
            ],
        )
    )
    view.notes.append(
        "計画では各所属に1名以上のDX推進リーダーを置きます。「未指名」の行は今年度の指名がない所属です。"
    )
    return view
