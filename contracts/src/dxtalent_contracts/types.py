"""Constrained scalar types shared by every event model."""

from __future__ import annotations

import datetime as dt
import json
from typing import Annotated, Any

from pydantic import AfterValidator, AwareDatetime, Field, GetCoreSchemaHandler, StringConstraints
from pydantic_core import SchemaValidator, core_schema

ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"

#: Employee, department and case ids: they end up in subject tokens and database keys.
Identifier = Annotated[str, StringConstraints(pattern=ID_PATTERN)]

#: Skill and course codes of the catalog (checked against the catalog by the enrollment service).
Code = Annotated[str, StringConstraints(pattern=ID_PATTERN)]

EARLIEST_DATE = dt.date(2000, 1, 1)
LATEST_DATE = dt.date(2100, 12, 31)


class _ReadAsOnTheWire:
    """Marks a date or time type: from Python, its ISO text is read exactly as JSON would be.

    The models are strict, so from Python they refuse `"2025-06-12"` for a date, while decoded
    JSON (what FastStream hands a typed handler) has only text for dates and times. From Python,
    a string is read by the strict JSON validator of the same type, so decoded JSON is accepted
    or refused exactly as the bytes it came from; JSON input takes the unchanged strict path
    (docs/decisions/0120-decoded-json-reads-as-the-wire.md).
    """

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        strict = handler(source)
        wire = SchemaValidator(strict)

        def read(value: Any) -> Any:
            if isinstance(value, str):
                return wire.validate_json(json.dumps(value), strict=True)
            return value

        return core_schema.json_or_python_schema(
            json_schema=strict,
            python_schema=core_schema.no_info_before_validator_function(read, strict),
        )


#: A date; from Python, a `date` or its ISO text as JSON carries it.
Date = Annotated[dt.date, _ReadAsOnTheWire()]

#: A moment; from Python, a `datetime` or its ISO text as JSON carries it.
Timestamp = Annotated[dt.datetime, _ReadAsOnTheWire()]

#: A moment with its zone; from Python, an aware `datetime` or its ISO text with a zone.
ZonedTimestamp = Annotated[AwareDatetime, _ReadAsOnTheWire()]


def _plausible(day: dt.date) -> dt.date:
    if not EARLIEST_DATE <= day <= LATEST_DATE:
        raise ValueError(f"date {day.isoformat()} is outside {EARLIEST_DATE} .. {LATEST_DATE}")
    return day


#: A Japan calendar date; dates outside 2000..2100 are refused as impossible.
CalendarDate = Annotated[Date, AfterValidator(_plausible)]

#: A fiscal year (年度) by its starting calendar year.
FiscalYear = Annotated[int, Field(ge=2000, le=2100)]

NonEmptyText = Annotated[
    str, StringConstraints(min_length=1, max_length=500, strip_whitespace=True)
]
