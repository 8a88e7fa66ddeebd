"""What one dashboard page shows, independent of HTML: cards, charts, tables, notes."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from markupsafe import Markup

from dxtalent_contracts.fiscal import reiwa_label
from dxtalent_reporting.dashboard.tables import Table

#: The pages in menu order: key, title.
PAGES: tuple[tuple[str, str], ...] = (
    ("progress", "進捗"),
    ("departments", "所属別"),
    ("leaders", "推進リーダー"),
    ("employee", "職員"),
    ("categories", "区分別の必須知識"),
    ("cases", "改善事例"),
    ("intake", "データ連携"),
)
TITLES = dict(PAGES)


@dataclass
class PageView:
    """One page: big numbers (`cards`), charts (SVG), tables (each downloadable), notes."""

    key: str
    lead: str = ""
    cards: list[tuple[str, str]] = field(default_factory=list)
    charts: list[tuple[str, Markup]] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def title(self) -> str:
        return TITLES[self.key]

    def table(self, key: str) -> Table | None:
        """The table named `key`, for a download."""
        return next((t for t in self.tables if t.key == key), None)


def wareki_date(day: dt.date) -> str:
    """`2026年3月31日`: how dates are written where people read them."""
    return f"{day.year}年{day.month}月{day.day}日"


def fy_label(fiscal_year: int) -> str:
    """`令和7年度（2025年度）`."""
    return f"{reiwa_label(fiscal_year)}（{fiscal_year}年度）"


def pct(value: float | None) -> str:
    """`73.0%`, or `—` when undefined."""
    return "—" if value is None else f"{value:.1f}%"
