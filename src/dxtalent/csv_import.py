"""Files HR integrators hand to `dxtalent publish`: a CSV of completions, or JSON lines.

CSV (UTF-8, a leading BOM accepted, as Excel writes it), one completion per row:

    employee_id,course_id,completed_on[,event_id][,source]

`completed_on` is a Japan calendar date, YYYY-MM-DD (YYYY/M/D, as Excel shows dates, is
accepted too). Without `event_id`, the event id is a uuid5 of the row's source, employee,
course and date, so importing the same file twice publishes the same facts (idempotent).
Rows that cannot be read are returned with their line number and reason; the others still
import. Blank rows are skipped. Whether a fact is acceptable (a course in the catalog, ...) is
not decided here: `dxtalent publish` checks every fact with enrollment's own check.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
import uuid
from dataclasses import dataclass, field

from pydantic import ValidationError

from dxtalent_contracts.fiscal import JST
from dxtalent_contracts.inbound import CourseCompleted, CourseCompletedEvent
from dxtalent_contracts.registry import build_event

REQUIRED_COLUMNS = ("employee_id", "course_id", "completed_on")
OPTIONAL_COLUMNS = ("event_id", "source")
NAMESPACE = uuid.UUID("3b8f0a61-6a0e-5d0c-8f4e-5c7e2a9b1d47")
_DATE = re.compile(r"^(\d{4})[-/](\d{1,2})[-/](\d{1,2})$")


@dataclass(frozen=True)
class RowError:
    """A row that was not imported: its line in the file (the header is line 1) and why."""

    row: int
    reason: str


@dataclass(frozen=True)
class CsvImport:
    """The completions read from a file with their line numbers, and the rows that could not
    be read."""

    numbered: list[tuple[int, CourseCompletedEvent]] = field(default_factory=list)
    errors: list[RowError] = field(default_factory=list)

    @property
    def events(self) -> list[CourseCompletedEvent]:
        return [event for _, event in self.numbered]


def row_event_id(source: str, employee_id: str, course_id: str, completed_on: dt.date) -> str:
    """The id a row gets when it names none: the same content always gives the same id."""
    name = "\x1f".join((source, employee_id, course_id, completed_on.isoformat()))
    return str(uuid.uuid5(NAMESPACE, name))


def _date(text: str) -> dt.date:
    match = _DATE.match(text)
    if not match:
        raise ValueError(f"completed_on {text!r} is not a date (YYYY-MM-DD)")
    year, month, day = (int(g) for g in match.groups())
    try:
        return dt.date(year, month, day)
    except ValueError as exc:
        raise ValueError(f"completed_on {text!r} is not a calendar date: {exc}") from exc


def _header_problem(header: list[str]) -> str | None:
    expected = ",".join(REQUIRED_COLUMNS) + "[,event_id][,source]"
    if not any(header):
        return f"the file has no header; expected {expected}"
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    unknown = [c for c in header if c not in REQUIRED_COLUMNS + OPTIONAL_COLUMNS]
    repeated = sorted({c for c in header if header.count(c) > 1})
    problems = [
        f"{what} column(s) {', '.join(names)}"
        for what, names in (("missing", missing), ("unknown", unknown), ("repeated", repeated))
        if names
    ]
    return f"header: {'; '.join(problems)} (expected {expected})" if problems else None


def _validation_reason(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in err['loc'] if p != 'data')}: {err['msg']}"
        for err in exc.errors(include_url=False)
    )


def _row_event(row: dict[str, str], default_source: str) -> CourseCompletedEvent:
    """One row as a completion event; raises ValueError with a readable reason."""
    employee_id, course_id = row["employee_id"], row["course_id"]
    completed_on = _date(row["completed_on"])
    source = row.get("source") or default_source
    event_id = row.get("event_id") or row_event_id(source, employee_id, course_id, completed_on)
    try:
        return build_event(
            CourseCompletedEvent,
            event_id=event_id,
            source=source,
            subject=employee_id,
            time=dt.datetime.combine(completed_on, dt.time(0), JST),
            data=CourseCompleted(
                employee_id=employee_id, course_id=course_id, completed_on=completed_on
            ),
        )
    except ValidationError as exc:
        raise ValueError(_validation_reason(exc)) from exc


def parse_completions_csv(text: str, source: str) -> CsvImport:
    """Read a completions CSV; `source` is the CloudEvents source of rows that name none."""
    reader = csv.reader(io.StringIO(text.removeprefix("\ufeff"), newline=""))
    header = [h.strip() for h in next(reader, [])]
    problem = _header_problem(header)
    if problem is not None:
        return CsvImport(errors=[RowError(1, problem)])
    result = CsvImport()
    for raw in reader:
        cells = [c.strip() for c in raw]
        if not any(cells):
            continue
        if len(cells) != len(header):
            reason = f"{len(cells)} values for {len(header)} columns ({','.join(header)})"
            result.errors.append(RowError(reader.line_num, reason))
            continue
        try:
            row = dict(zip(header, cells, strict=True))
            result.numbered.append((reader.line_num, _row_event(row, source)))
        except ValueError as exc:
            result.errors.append(RowError(reader.line_num, str(exc)))
    return result


def numbered_json_lines(text: str) -> list[tuple[int, bytes]]:
    """One CloudEvent per line with its line number (from 1), as raw bytes for
    `parse_inbound`; blank lines are skipped."""
    lines = text.removeprefix("\ufeff").splitlines()
    return [(n, line.strip().encode()) for n, line in enumerate(lines, 1) if line.strip()]


def read_json_lines(text: str) -> list[bytes]:
    """One CloudEvent per line, as raw bytes for `parse_inbound`; blank lines are skipped."""
    return [raw for _, raw in numbered_json_lines(text)]
