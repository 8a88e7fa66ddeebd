"""Japanese fiscal years (年度): April 1 to March 31, labelled in the 令和 era."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Mapping
from typing import Any

_REIWA_FIRST_YEAR = 2019  # 令和元年 began on 2019-05-01; FY2019 is 令和元年度

#: Japan Standard Time. A date without a zone is a Japan calendar date (docs/contract.md).
JST = dt.timezone(dt.timedelta(hours=9), "JST")


def japan_date(moment: dt.datetime) -> dt.date:
    """The Japan calendar date of an aware moment: 2026-03-31T15:00Z is 2026-04-01 in Japan."""
    return moment.astimezone(JST).date()


def fiscal_year_of(day: dt.date) -> int:
    """The fiscal year a date falls in: 2026-03-31 is FY2025, 2026-04-01 is FY2026."""
    return day.year if day.month >= 4 else day.year - 1


def fiscal_year_start(fiscal_year: int) -> dt.date:
    """April 1 of the fiscal year."""
    return dt.date(fiscal_year, 4, 1)


def fiscal_year_end(fiscal_year: int) -> dt.date:
    """March 31 of the following calendar year, the last day of the fiscal year."""
    return dt.date(fiscal_year + 1, 3, 31)


def reiwa_label(fiscal_year: int) -> str:
    """The fiscal year as the DX office writes it: 2025 -> 令和7年度, 2019 -> 令和元年度."""
    if fiscal_year < _REIWA_FIRST_YEAR:
        raise ValueError(f"fiscal year {fiscal_year} is before the Reiwa era (2019)")
    n = fiscal_year - _REIWA_FIRST_YEAR + 1
    return "令和元年度" if n == 1 else f"令和{n}年度"


def both_labels(fiscal_year: int) -> str:
    """Both forms, for reports: 'FY2025 (令和7年度)'."""
    return f"FY{fiscal_year} ({reiwa_label(fiscal_year)})"


#: a day before any date a report can ask for (its fiscal year is 0): where the first entry of
#: an employee's timeline of counts starts (`dxtalent_contracts.memberships`, reporting's
#: placements)
BEGINNING = dt.date.min


def yearly(changes: Mapping[tuple[Any, ...], int]) -> dict[tuple[Any, ...], int]:
    """Count changes (keyed by day first) summed per fiscal year of their day; only non-zero
    sums. A count on day d of fiscal year Y is the yearly sums of the years before Y plus the
    daily changes from April 1 of Y to d."""
    out: Counter[tuple[Any, ...]] = Counter()
    for key, n in changes.items():
        out[(fiscal_year_of(key[0]), *key[1:])] += n
    return {key: n for key, n in sorted(out.items()) if n}
