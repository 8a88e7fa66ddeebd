"""The 改善事例 and データ連携 pages."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Mapping, Sequence

import asyncpg

from dxtalent_contracts.catalog import Catalog
from dxtalent_reporting.dashboard import svg
from dxtalent_reporting.dashboard.deadletters import DeadLetter
from dxtalent_reporting.dashboard.pages_people import skill_name
from dxtalent_reporting.dashboard.tables import Table
from dxtalent_reporting.dashboard.view import PageView, fy_label, wareki_date

Rows = Sequence[asyncpg.Record]

#: Japanese names of the recorded fact types counted on the intake page.
FACT_TYPES = {
    "dxtalent.enrollment.EmployeeUpdated.v1": "職員情報",
    "dxtalent.enrollment.EmployeeLeft.v1": "退職",
    "dxtalent.enrollment.LeaderNominated.v1": "推進リーダー指名",
    "dxtalent.enrollment.CourseEnrolled.v1": "受講登録",
    "dxtalent.enrollment.CourseCompleted.v1": "修了",
    "dxtalent.enrollment.CompletionVoided.v1": "修了取消",
    "dxtalent.enrollment.ImprovementCaseReported.v1": "改善事例",
}


def cases_page(
    catalog: Catalog, fiscal_year: int, rows: Rows, names: Mapping[str, str]
) -> PageView:
    """Improvement cases of the plan's years, and totals per year (for 共有・報告会)."""
    view = PageView("cases", lead="業務改善事例（横展開）")
    totals: dict[int, list[float]] = defaultdict(lambda: [0, 0.0])
    table = []
    for r in rows:
        totals[r["fiscal_year"]][0] += 1
        totals[r["fiscal_year"]][1] += r["hours_saved"] or 0.0
        table.append(
            (
                fy_label(r["fiscal_year"]),
                names.get(r["department_code"], r["department_code"]),
                r["title"],
                "、".join(r["leaders"]),
                "、".join(skill_name(catalog, k) for k in r["skills"]),
                r["hours_saved"],
            )
        )
    summary = [(fy_label(y), int(t[0]), round(t[1], 1)) for y, t in sorted(totals.items())]
    view.tables.append(
        Table(
            "totals",
            "年度別の合計",
            ("年度", "事例数", "削減時間（時間/年）"),
            summary,
            numeric=frozenset({1, 2}),
        )
    )
    view.tables.append(
        Table(
            "cases",
            "改善事例の一覧",
            ("年度", "所属", "件名", "推進リーダー", "活用した知識", "削減時間（時間/年）"),
            table,
            numeric=frozenset({5}),
        )
    )
    if fiscal_year in totals:
        view.cards.append((f"{fy_label(fiscal_year)}の事例", f"{int(totals[fiscal_year][0])}件"))
        view.cards.append(("削減時間", f"{totals[fiscal_year][1]:.0f}時間/年"))
    return view


def intake_page(
    first: dt.date, last: dt.date, rows: Rows, letters: Sequence[DeadLetter]
) -> PageView:
    """Facts recorded per day and type, and the newest dead letters with their reasons."""
    view = PageView("intake", lead=f"受信期間 {wareki_date(first)}〜{wareki_date(last)}")
    per_day: dict[dt.date, int] = defaultdict(int)
    for r in rows:
        per_day[r["day"]] += r["facts"]
    days = [first + dt.timedelta(days=i) for i in range((last - first).days + 1)]
    view.cards.append(("受信件数（期間計）", f"{sum(per_day.values())}件"))
    view.cards.append(("エラー（dead letter）", f"{len(letters)}件"))
    view.charts.append(
        (
            "日別の受信件数",
            svg.column_chart(
                "日別の受信件数", [f"{d.month}/{d.day}" for d in days], [per_day[d] for d in days]
            ),
        )
    )
    view.tables.append(
        Table(
            "facts",
            "日別・種類別の受信件数",
            ("受信日", "種類", "件数"),
            [
                (wareki_date(r["day"]), FACT_TYPES.get(r["type"], r["type"]), r["facts"])
                for r in rows
            ],
            numeric=frozenset({2}),
        )
    )
    view.tables.append(
        Table(
            "deadletters",
            "エラーになったメッセージ（新しい順）",
            ("番号", "受付日時", "発生元", "元の件名", "理由", "詳細"),
            [
                (
                    d.sequence,
                    d.received_at.strftime("%Y年%-m月%-d日 %H:%M") if d.received_at else "",
                    d.service_subject.removeprefix("dx.deadletter."),
                    d.original_subject,
                    d.reason,
                    d.problems,
                )
                for d in letters
            ],
        )
    )
    return view
