"""Progress against the headcount targets (到達目標人数), as a pure function of standings.

"Reached level N" = certified at level N or higher on or before the report date and still
employed then (never left, or left after the report date). "Exactly at level N" = the highest
level held on the report date is N. Staff who left are counted apart (`left`).

Decisions where the rules (docs/rules.md) are silent:
- A department's report uses the city-wide target of the catalog, so its percent is the share
  of the city's target that department contributes.
- An employee without any record counts in department "unknown"; an employee whose records
  all start after the report date counts where their earliest record places them. Two records
  effective on the same day: the greatest department code wins (the records carry no fact id;
  the projection should keep one per day).
"""

from __future__ import annotations

import datetime as dt
import functools
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from types import MappingProxyType

from dxtalent_contracts.catalog import Catalog
from dxtalent_contracts.fiscal import fiscal_year_end, reiwa_label

UNKNOWN_DEPARTMENT = "unknown"
_ONE_DECIMAL = Decimal("0.1")


@dataclass(frozen=True, slots=True)
class Standing:
    """One employee as the report reads them: effective-dated departments, departure, levels.

    `records` holds (effective_date, department_code) pairs; `levels` maps each certified level
    to its certified_on.
    """

    employee_id: str
    records: tuple[tuple[dt.date, str], ...] = ()
    left_on: dt.date | None = None
    levels: Mapping[int, dt.date] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "levels", MappingProxyType(dict(self.levels)))

    def department_on(self, day: dt.date) -> str:
        """Where the record effective on `day` places the employee (see the module notes)."""
        effective = [r for r in self.records if r[0] <= day]
        if effective:
            return max(effective)[1]
        return min(self.records)[1] if self.records else UNKNOWN_DEPARTMENT

    def highest_level_on(self, day: dt.date) -> int:
        """The highest level certified on or before `day`, 0 when none."""
        return max((n for n, on in self.levels.items() if on <= day), default=0)

    def employed_on(self, day: dt.date) -> bool:
        """Never left, or left after `day` (left_on is the first day no longer employed)."""
        return self.left_on is None or self.left_on > day


@dataclass(frozen=True, slots=True)
class LevelProgress:
    """One level of the report; `percent` is None when the target is 0 or not set."""

    level: int
    target: int | None
    reached: int
    exactly: int
    percent: Decimal | None
    left: int


@dataclass(frozen=True, slots=True)
class Progress:
    """The target report of one fiscal year on one date, city-wide or for one department."""

    fiscal_year: int
    fiscal_year_label: str
    as_of: dt.date
    department: str | None
    levels: tuple[LevelProgress, ...]
    left: int


@functools.lru_cache(maxsize=4096)
def percent(reached: int, target: int | None) -> Decimal | None:
    """reached / target × 100, rounded half-up to one decimal; None for a target of 0 or None.
    Kept for the pairs last asked (the same few come back with every departments report, and
    the decimal arithmetic cost more than the rest of a level)."""
    if not target:
        return None
    return (Decimal(reached) * 100 / Decimal(target)).quantize(_ONE_DECIMAL, ROUND_HALF_UP)


def target_progress(
    catalog: Catalog,
    fiscal_year: int,
    standings: Iterable[Standing],
    as_of: dt.date | None = None,
    department: str | None = None,
) -> Progress:
    """Progress of `fiscal_year` on `as_of` (default: the fiscal year's last day).

    With `department`, only the employees the report date places there count.
    """
    day = as_of or fiscal_year_end(fiscal_year)
    tally: Counter[tuple[int, bool]] = Counter(
        (s.highest_level_on(day), s.employed_on(day))
        for s in standings
        if department is None or s.department_on(day) == department
    )
    return progress_from_tally(catalog, fiscal_year, day, department, tally)


def progress_from_tally(
    catalog: Catalog,
    fiscal_year: int,
    day: dt.date,
    department: str | None,
    tally: Mapping[tuple[int, bool], int],
) -> Progress:
    """Progress of `fiscal_year` on `day` from how many employees hold each highest level
    (0: none), employed or not on `day`: all a report counts (see `domain.placements`).

    Level N: `reached` counts the employed holding N or higher, `exactly` those holding N,
    `left` the departed holding N or higher; `Progress.left` the departed holding any. One
    pass over the tally, then running sums from the top level down: a departments report
    makes one per department on every request."""
    top = catalog.top_level
    # employees by highest level, employed / departed; none (0) counts nowhere, and a level
    # above the catalog's top (a catalog edited since) reaches every level, exactly none
    employed = [0] * (top + 2)
    departed = [0] * (top + 2)
    for (highest, is_employed), k in tally.items():
        if highest > 0:
            (employed if is_employed else departed)[min(highest, top + 1)] += k
    reached = employed[top + 1]
    gone = departed[top + 1]
    levels: list[LevelProgress] = []
    for level in range(top, 0, -1):
        reached += employed[level]
        gone += departed[level]
        target = catalog.target(fiscal_year, level)
        levels.append(
            LevelProgress(level, target, reached, employed[level], percent(reached, target), gone)
        )
    levels.reverse()
    return Progress(
        fiscal_year=fiscal_year,
        fiscal_year_label=reiwa_label(fiscal_year),
        as_of=day,
        department=department,
        levels=tuple(levels),
        left=gone,
    )


def progress_by_department(
    catalog: Catalog,
    fiscal_year: int,
    standings: Iterable[Standing],
    as_of: dt.date | None = None,
) -> Mapping[str, Progress]:
    """One report per department the report date places someone in, by department code."""
    day = as_of or fiscal_year_end(fiscal_year)
    everyone = list(standings)
    departments = sorted({s.department_on(day) for s in everyone})
    return MappingProxyType(
        {d: target_progress(catalog, fiscal_year, everyone, day, d) for d in departments}
    )
