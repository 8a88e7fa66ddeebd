"""Fiscal years (年度) and their 令和 labels."""

from __future__ import annotations

import datetime as dt

import pytest

from dxtalent_contracts.fiscal import (
    both_labels,
    fiscal_year_end,
    fiscal_year_of,
    fiscal_year_start,
    reiwa_label,
)


@pytest.mark.parametrize(
    ("day", "fiscal_year"),
    [
        (dt.date(2026, 3, 31), 2025),
        (dt.date(2026, 4, 1), 2026),
        (dt.date(2025, 4, 1), 2025),
        (dt.date(2025, 1, 15), 2024),
        (dt.date(2025, 12, 31), 2025),
    ],
)
def test_a_date_belongs_to_the_fiscal_year_that_began_on_the_april_before_it(
    day: dt.date, fiscal_year: int
) -> None:
    """March 31 closes a fiscal year and April 1 opens the next."""
    assert fiscal_year_of(day) == fiscal_year


def test_fiscal_year_runs_from_april_first_to_march_thirty_first() -> None:
    """FY2025 = 2025-04-01 … 2026-03-31."""
    assert fiscal_year_start(2025) == dt.date(2025, 4, 1)
    assert fiscal_year_end(2025) == dt.date(2026, 3, 31)


@pytest.mark.parametrize(
    ("fiscal_year", "label"),
    [(2019, "令和元年度"), (2020, "令和2年度"), (2025, "令和7年度"), (2027, "令和9年度")],
)
def test_reiwa_labels(fiscal_year: int, label: str) -> None:
    """The first year of an era is 元年, the others are numbered."""
    assert reiwa_label(fiscal_year) == label


def test_reports_show_both_forms() -> None:
    """Reports carry the Western and the Japanese form."""
    assert both_labels(2025) == "FY2025 (令和7年度)"


def test_years_before_reiwa_are_refused() -> None:
    """There is no 令和 label for FY2018."""
    with pytest.raises(ValueError, match="before the Reiwa era"):
        reiwa_label(2018)
