"""The 推進リーダー, 職員 and 区分別の必須知識 pages."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence

import asyncpg

from dxtalent_contracts.catalog import Catalog
from dxtalent_contracts.memberships import CategoryCounts
from dxtalent_reporting.dashboard import svg
from dxtalent_reporting.dashboard.tables import Table
from dxtalent_reporting.dashboard.view import PageView, fy_label, wareki_date


def skill_name(catalog: Catalog, code: str) -> str:
    skill = catalog.skill_by_code.get(code)
    return skill.name if skill else code


def granting(catalog: Catalog, skill: str) -> str:
    """The courses that grant `skill`, by id and name."""
    return "、".join(f"{c.id} {c.name}" for c in catalog.courses_granting(skill)) or "（講座なし）"


def leaders_page(
    catalog: Catalog, fiscal_year: int, as_of: dt.date, rows: Sequence[asyncpg.Record]
) -> PageView:
    """Nominated → started (enrolled, or completed without a recorded enrollment) → completed
    → certified, and why the rest are not at level 1 yet."""
    staying = [r for r in rows if not r["left_city"]]
    steps = [
        ("指名", len(staying)),
        ("受講開始", sum(r["enrolled"] or r["completed"] for r in staying)),
        ("修了あり", sum(r["completed"] for r in staying)),
        ("レベル認定", sum(r["certified"] for r in staying)),
    ]
    view = PageView("leaders", lead=f"{fy_label(fiscal_year)}　基準日 {wareki_date(as_of)}")
    view.cards.extend((label, f"{n}人") for label, n in steps)
    view.charts.append(("推進リーダーの育成状況", svg.funnel("推進リーダーの育成状況", steps)))
    required = catalog.level_rule(1).required
    pending = []
    for r in staying:
        if r["certified"]:
            continue
        missing = [s for s in required if s not in set(r["skills"])]
        pending.append(
            (
                r["employee_id"],
                r["department_code"],
                "、".join(skill_name(catalog, s) for s in missing),
                " ／ ".join(granting(catalog, s) for s in missing),
            )
        )
    view.tables.append(
        Table(
            "pending",
            "レベル1未到達の推進リーダー（なぜまだか）",
            ("職員番号", "所属コード", "不足している知識", "取得できる講座"),
            pending,
            links={0: "/dashboard/employee?employee_id="},
        )
    )
    view.tables.append(
        Table("funnel", "段階別の人数", ("段階", "人数"), steps, numeric=frozenset({1}))
    )
    left = len(rows) - len(staying)
    if left:
        view.notes.append(f"基準日までに退職した指名者 {left}人は数えていません。")
    return view


def categories_page(
    catalog: Catalog, as_of: dt.date, fiscal_year: int, counts: Mapping[str, CategoryCounts]
) -> PageView:
    """Per category: members, compliant, and the most common missing knowledge."""
    view = PageView("categories", lead=f"{fy_label(fiscal_year)}　基準日 {wareki_date(as_of)}")
    summary, missing_rows = [], []
    for code, found in counts.items():
        name, members, missing = catalog.category_by_code[code].name, found.members, found.missing
        compliant = members - found.lacking
        rate = f"{compliant * 100 / members:.1f}%" if members else "—"
        summary.append((name, members, compliant, rate))
        for skill, n in missing[:5]:
            missing_rows.append((name, skill_name(catalog, skill), n, granting(catalog, skill)))
    view.tables.append(
        Table(
            "summary",
            "区分別の充足状況",
            ("区分", "対象者", "充足者", "充足率"),
            summary,
            numeric=frozenset({1, 2, 3}),
        )
    )
    view.tables.append(
        Table(
            "missing",
            "不足が多い知識（区分ごとに上位5件）",
            ("区分", "知識", "不足している人数", "取得できる講座"),
            missing_rows,
            numeric=frozenset({2}),
        )
    )
    view.notes.append(
        "区分は基準日に有効な職員情報（人事）によります。全職員は基準日に在職している職員全員です。"
        "充足者は区分の必須知識をすべて保有している職員です。"
    )
    return view
