"""The 職員, 改善事例 and データ連携 pages."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Mapping, Sequence

import asyncpg

from dxtalent_contracts.catalog import Catalog
from dxtalent_reporting.dashboard import svg
from dxtalent_reporting.dashboard.deadletters import DeadLetter
from dxtalent_reporting.dashboard.pages_people import granting, skill_name
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


def _d(day: dt.date | None) -> str:
    return wareki_date(day) if day else ""


def employee_page(
    catalog: Catalog, employee_id: str, as_of: dt.date, found: Mapping[str, Rows]
) -> PageView:
    """One employee: records, levels and evidence, skills, what the next level lacks, history."""
    view = PageView("employee", lead=f"職員番号 {employee_id}　基準日 {wareki_date(as_of)}")
    if not any(found.values()):
        view.notes.append(f"職員番号 {employee_id} の記録はありません。")
        return view
    records = found["records"]
    current = [r for r in records if r["effective_date"] <= as_of] or list(records)
    if current:
        rec = current[-1]
        view.cards.append(("所属", f"{rec['department_name'] or ''}（{rec['department_code']}）"))
        names = [
            catalog.category_by_code[c].name if c in catalog.category_by_code else c
            for c in rec["categories"]
        ]
        view.cards.append(("職員区分", "、".join(names) or "—"))
    if found["departure"]:
        view.cards.append(("退職日", _d(found["departure"][0]["left_on"])))
    held = {
        s["skill"]: s for s in found["skills"] if not s["revoked"] and s["acquired_on"] <= as_of
    }
    levels = [lv for lv in found["levels"] if not lv["revoked"] and lv["certified_on"] <= as_of]
    top = max((lv["level"] for lv in levels), default=0)
    view.cards.append(("レベル", f"レベル{top}" if top else "未認定"))
    view.tables.append(
        Table(
            "skills",
            "保有している知識",
            ("知識", "講座", "取得日"),
            [
                (skill_name(catalog, k), s["course_id"], _d(s["acquired_on"]))
                for k, s in held.items()
            ],
        )
    )
    if top < catalog.top_level:
        lacking = [s for s in catalog.level_rule(top + 1).required if s not in held]
        view.tables.append(
            Table(
                "next",
                f"レベル{top + 1}に不足している知識",
                ("知識", "取得できる講座"),
                [(skill_name(catalog, s), granting(catalog, s)) for s in lacking],
            )
        )
        view.cards.append((f"レベル{top + 1}まで不足", f"{len(lacking)}件"))
    view.tables.append(_levels_table(catalog, levels, held))
    view.tables.append(_history(found))
    # what is still missing first: it is what the office acts on
    view.tables.sort(key=lambda t: {"next": 0, "levels": 1}.get(t.key, 2))
    return view


def _levels_table(catalog: Catalog, levels: Rows, held: Mapping[str, asyncpg.Record]) -> Table:
    rows = []
    for lv in levels:
        evidence = "、".join(
            f"{skill_name(catalog, s)}（{held[s]['course_id']} {_d(held[s]['acquired_on'])}）"
            for s in catalog.level_rule(lv["level"]).required
            if s in held
        )
        route = "令和6年度研修（レベル１相当）" if lv["via_equivalence"] else evidence
        rows.append(
            (f"レベル{lv['level']}", _d(lv["certified_on"]), fy_label(lv["fiscal_year"]), route)
        )
    return Table("levels", "認定されたレベルと根拠", ("レベル", "認定日", "年度", "根拠"), rows)


def _history(found: Mapping[str, Rows]) -> Table:
    events: list[tuple[dt.date, str, str]] = []
    for r in found["records"]:
        events.append((r["effective_date"], "職員情報", f"所属 {r['department_code']}"))
    for n in found["nominations"]:
        events.append(
            (dt.date(n["fiscal_year"], 4, 1), "推進リーダー指名", fy_label(n["fiscal_year"]))
        )
    for e in found["enrollments"]:
        events.append((e["enrolled_on"], "受講登録", e["course_id"]))
    for c in found["completions"]:
        if c["completed_on"] is not None:
            note = f"{c['course_id']}" + (f"（取消: {c['void_reason']}）" if c["voided"] else "")
            events.append((c["completed_on"], "修了" + ("（取消済）" if c["voided"] else ""), note))
    for lv in found["levels"]:
        if lv["certified_on"] is not None:
            state = "（取消済）" if lv["revoked"] else ""
            events.append((lv["certified_on"], f"レベル{lv['level']}認定{state}", lv["event_id"]))
    for d in found["departure"]:
        events.append((d["left_on"], "退職", ""))
    events.sort(key=lambda e: e[0])
    return Table(
        "history",
        "事実と訂正の履歴",
        ("日付", "事実", "内容"),
        [(_d(a), b, c) for a, b, c in events],
    )


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
