"""The date a report is on: `as_of` inside the fiscal year; by default today while the year
runs, else its last day."""

from __future__ import annotations

import datetime as dt

import pytest

from dxtalent_reporting.queries import report_date

TODAY = dt.date(2026, 11, 30)  # inside FY2026


@pytest.mark.parametrize("fiscal_year", [2025, 2027])
def test_without_as_of_a_past_or_coming_year_is_reported_on_its_last_day(
    fiscal_year: int,
) -> None:
    """A year that ended, or has not begun, is shown at its end (outcome, or plan)."""
    assert report_date(fiscal_year, None, TODAY) == dt.date(fiscal_year + 1, 3, 31)


@pytest.mark.parametrize("today", ["2026-04-01", "2026-11-30", "2027-03-31"])
def test_without_as_of_the_running_year_is_reported_on_today(today: str) -> None:
    """While the fiscal year runs, the default report date is today (Japan date)."""
    day = dt.date.fromisoformat(today)
    assert report_date(2026, None, day) == day


@pytest.mark.parametrize("day", ["2025-04-01", "2025-12-31", "2026-03-31"])
def test_a_date_inside_the_fiscal_year_is_the_report_date(day: str) -> None:
    """Both ends of the year count as inside it."""
    assert report_date(2025, dt.date.fromisoformat(day), TODAY) == dt.date.fromisoformat(day)


@pytest.mark.parametrize("day", ["2025-03-31", "2026-04-01", "2019-06-01"])
def test_a_date_outside_the_fiscal_year_names_its_first_and_last_day(day: str) -> None:
    """The error says the year in both forms and its first and last day."""
    with pytest.raises(ValueError, match="outside") as raised:
        report_date(2025, dt.date.fromisoformat(day), TODAY)
    assert (
        str(raised.value) == f"as_of {day} is outside 令和7年度 (FY2025): 2025-04-01 … 2026-03-31"
    )
