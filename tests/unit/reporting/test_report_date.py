"""The date a report is on: `as_of` inside the fiscal year, by default the year's last day."""

from __future__ import annotations

import datetime as dt

import pytest

from dxtalent_reporting.queries import report_date


def test_without_as_of_the_report_is_on_the_fiscal_years_last_day() -> None:
    """FY2025 ends on 2026-03-31."""
    assert report_date(2025, None) == dt.date(2026, 3, 31)


@pytest.mark.parametrize("day", ["2025-04-01", "2025-12-31", "2026-03-31"])
def test_a_date_inside_the_fiscal_year_is_the_report_date(day: str) -> None:
    """Both ends of the year count as inside it."""
    assert report_date(2025, dt.date.fromisoformat(day)) == dt.date.fromisoformat(day)


@pytest.mark.parametrize("day", ["2025-03-31", "2026-04-01", "2019-06-01"])
def test_a_date_outside_the_fiscal_year_names_its_first_and_last_day(day: str) -> None:
    """The error says the year in both forms and its first and last day."""
    with pytest.raises(ValueError, match="outside") as raised:
        report_date(2025, dt.date.fromisoformat(day))
    assert (
        str(raised.value) == f"as_of {day} is outside 令和7年度 (FY2025): 2025-04-01 … 2026-03-31"
    )
