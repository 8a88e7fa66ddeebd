"""Constrained scalar types shared by every event model."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from pydantic import AfterValidator, Field, StringConstraints

ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"

#: Employee, department and case ids: they end up in subject tokens and database keys.
Identifier = Annotated[str, StringConstraints(pattern=ID_PATTERN)]

#: Skill and course codes of the catalog (checked against the catalog by the enrollment service).
Code = Annotated[str, StringConstraints(pattern=ID_PATTERN)]

EARLIEST_DATE = dt.date(2000, 1, 1)
LATEST_DATE = dt.date(2100, 12, 31)


def _plausible(day: dt.date) -> dt.date:
    if not EARLIEST_DATE <= day <= LATEST_DATE:
        raise ValueError(f"date {day.isoformat()} is outside {EARLIEST_DATE} .. {LATEST_DATE}")
    return day


#: A Japan calendar date; dates outside 2000..2100 are refused as impossible.
CalendarDate = Annotated[dt.date, AfterValidator(_plausible)]

#: A fiscal year (年度) by its starting calendar year.
FiscalYear = Annotated[int, Field(ge=2000, le=2100)]

NonEmptyText = Annotated[
    str, StringConstraints(min_length=1, max_length=500, strip_whitespace=True)
]
