"""The 職員 page: one employee's section, categories, levels and evidence, skills, what the
next level lacks, and the history of facts and corrections that led there."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence

import asyncpg

from dxtalent_contracts.catalog import Catalog
from dxtalent_reporting.dashboard.pages_people import granting, skill_name
from dxtalent_reporting.dashboard.tables import Table
from dxtalent_reporting.dashboard.view import PageView, fy_label, wareki_date

Rows = Sequence[asyncpg.Record]


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
