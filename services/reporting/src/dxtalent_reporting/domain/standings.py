"""Each employee's `Standing`, assembled from read-model rows: one function for the reporting
service and for anyone who must reach the same answer from the same facts (the demo's oracle).

Where an employee has no HR record, their department comes from their nominations (a
nomination places them in its department from April 1 of its fiscal year), else from the
department their certified levels name; `Standing.department_on` then applies as for records.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable

from dxtalent_contracts.fiscal import fiscal_year_start
from dxtalent_reporting.domain.progress import Standing

RecordRow = tuple[str, dt.date, str]  # employee_id, effective_date, department_code
DepartureRow = tuple[str, dt.date]  # employee_id, left_on
LevelRow = tuple[str, int, dt.date, str | None]  # employee_id, level, certified_on, department
NominationRow = tuple[str, int, str]  # employee_id, fiscal_year, department_code


def assemble_standings(
    records: Iterable[RecordRow],
    departures: Iterable[DepartureRow],
    levels: Iterable[LevelRow],
    nominations: Iterable[NominationRow],
) -> list[Standing]:
    """One `Standing` per employee found in any of the rows, sorted by employee id.

    `records` holds one row per employee and effective date (the one in force that day);
    `departures` one per employee (the earliest); `levels` only levels still certified.
    """
    by_record: dict[str, list[tuple[dt.date, str]]] = defaultdict(list)
    for employee, effective, department in records:
        by_record[employee].append((effective, department))
    by_nomination: dict[str, list[tuple[dt.date, str]]] = defaultdict(list)
    for employee, year, department in nominations:
        by_nomination[employee].append((fiscal_year_start(year), department))
    by_level_department: dict[str, list[tuple[dt.date, str]]] = defaultdict(list)
    certified: dict[str, dict[int, dt.date]] = defaultdict(dict)
    for employee, level, on, named in levels:
        certified[employee][level] = on
        if named is not None:
            by_level_department[employee].append((on, named))
    left = dict(departures)
    everyone = sorted({*by_record, *by_nomination, *certified, *left})
    return [
        Standing(
            employee_id=e,
            records=tuple(by_record.get(e) or by_nomination.get(e) or by_level_department[e]),
            left_on=left.get(e),
            levels=certified.get(e, {}),
        )
        for e in everyone
    ]
