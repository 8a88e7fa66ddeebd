"""Where each employee stands on every day, as counts a report can add up (pure).

A progress report needs, of each employee on its date, three things only: the department
`Standing.department_on` places them in, the highest level held (`highest_level_on`, 0 for
none) and whether they are still employed (`employed_on`). All three are step functions of the
day: they change only on a record's effective date, a level's `certified_on` and `left_on`.
So an employee's whole timeline is a short list of *placements* — from a day on, (department,
level, employed) — and a report on day d counts, per placement, the employees whose placement
in force on d it is.

The read model keeps those counts as *changes*: on `day`, `n` more (or fewer) employees enter
placement (department, level, employed). The count on d is the sum of the changes dated on or
before d. The first placement of everyone starts on `BEGINNING` (before any date a report can
ask for), so the before-the-first-record fallback of `department_on` is kept too. To keep a
report from adding up every change since the beginning, the changes are also summed per fiscal
year (`dxtalent_contracts.fiscal.yearly`): a report of fiscal year Y on d adds the yearly sums of the years before Y and
the daily changes from April 1 of Y to d.

`placement_changes(before, after)` is what one fact did to the counts: the difference of the
employee's timelines before and after it. A fact that changes nothing (a duplicate, an older
record) changes no count, so applying it twice is the same as once.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Iterable, Mapping

from dxtalent_contracts.fiscal import BEGINNING
from dxtalent_reporting.domain.progress import Standing

Placement = tuple[str, int, bool]  # department, highest level held (0: none), employed
Change = tuple[dt.date, str, int, bool]  # day, department, level, employed
Tally = Mapping[tuple[int, bool], int]  # (highest level, employed) -> employees


def timeline(standing: Standing) -> list[tuple[dt.date, Placement]]:
    """The placements of `standing`, each from its first day, in day order."""
    days = {BEGINNING, *(day for day, _ in standing.records), *standing.levels.values()}
    if standing.left_on is not None:
        days.add(standing.left_on)
    steps: list[tuple[dt.date, Placement]] = []
    for day in sorted(days):
        placement = (
            standing.department_on(day),
            standing.highest_level_on(day),
            standing.employed_on(day),
        )
        if not steps or steps[-1][1] != placement:
            steps.append((day, placement))
    return steps


def changes_of(standing: Standing | None) -> Counter[Change]:
    """The count changes one employee's timeline contributes (none for no employee)."""
    out: Counter[Change] = Counter()
    if standing is None:
        return out
    previous: Placement | None = None
    for day, placement in timeline(standing):
        out[(day, *placement)] += 1
        if previous is not None:
            out[(day, *previous)] -= 1
        previous = placement
    return out


def placement_changes(before: Standing | None, after: Standing | None) -> dict[Change, int]:
    """What replacing `before` by `after` (None: the employee is unknown) does to the counts;
    only non-zero changes."""
    delta = changes_of(after)
    delta.subtract(changes_of(before))
    return {key: n for key, n in sorted(delta.items()) if n}


def tallies(counts: Iterable[tuple[str, int, bool, int]]) -> dict[str, dict[tuple[int, bool], int]]:
    """Per department, the employees per (level, employed) from summed (department, level,
    employed, n) rows; a department nobody is placed in on the day is left out."""
    out: dict[str, dict[tuple[int, bool], int]] = {}
    for department, level, employed, n in counts:
        if n:
            out.setdefault(department, {})[(level, employed)] = n
    return out


def tallies_on(
    changes: Mapping[Change, int], day: dt.date
) -> dict[str, dict[tuple[int, bool], int]]:
    """`tallies` on `day` from every change (what the read model's sums amount to)."""
    summed: Counter[Placement] = Counter()
    for (on, department, level, employed), n in changes.items():
        if on <= day:
            summed[(department, level, employed)] += n
    return tallies((d, h, e, n) for (d, h, e), n in sorted(summed.items()))
