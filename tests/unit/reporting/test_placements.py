"""The placement counts give exactly the reports of the per-employee path (hypothesis).

Random cities of rows (effective-dated records, departures, levels, nominations, the fallbacks
of an employee without records included) are reported on random days both ways: from each
employee's `Standing` (`target_progress`, the pure core) and from the count changes the read
model keeps (`domain.placements`), added up as the service adds them (the yearly sums of the
years before, then the days of the report's year). Facts applied one at a time, in any order
and with duplicates, leave the same counts as the whole city at once.
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from dxtalent_contracts.catalog import load_catalog
from dxtalent_contracts.fiscal import BEGINNING, fiscal_year_of, fiscal_year_start, yearly
from dxtalent_reporting.domain.placements import (
    Change,
    changes_of,
    placement_changes,
    tallies,
    tallies_on,
    timeline,
)
from dxtalent_reporting.domain.progress import Standing, progress_from_tally, target_progress
from dxtalent_reporting.domain.standings import assemble_standings

CATALOG = load_catalog()
FIRST, LAST = dt.date(2023, 1, 1), dt.date(2028, 6, 30)
EMPLOYEES = [f"E{i}" for i in range(6)]
DEPARTMENTS = ["D-A", "D-B", "D-C"]

days = st.dates(FIRST, LAST)
employees = st.sampled_from(EMPLOYEES)
departments = st.sampled_from(DEPARTMENTS)
Fact = tuple[str, tuple[object, ...]]
facts: st.SearchStrategy[Fact] = st.one_of(
    st.tuples(st.just("record"), st.tuples(employees, days, departments)),
    st.tuples(st.just("departure"), st.tuples(employees, days)),
    st.tuples(
        st.just("level"),
        st.tuples(employees, st.integers(1, 3), days, st.none() | departments),
    ),
    st.tuples(st.just("revoke"), st.tuples(employees, st.integers(1, 3))),
    st.tuples(st.just("nomination"), st.tuples(employees, st.integers(2023, 2027), departments)),
)


class Rows:
    """The read model's rows, written as its idempotent statements write them (the order
    rules that decide which fact a row keeps do not matter here: any rows will do)."""

    def __init__(self) -> None:
        self.records: dict[tuple[str, dt.date], str] = {}
        self.departures: dict[str, dt.date] = {}
        self.levels: dict[tuple[str, int], tuple[dt.date, str | None]] = {}
        self.nominations: set[tuple[str, int, str]] = set()

    def apply(self, fact: Fact) -> str:
        """Apply `fact`; the employee it is about."""
        kind, a = fact
        employee = str(a[0])
        if kind == "record":
            self.records[(employee, a[1])] = a[2]  # type: ignore[index,assignment]
        elif kind == "departure":
            left: dt.date = a[1]  # type: ignore[assignment]
            self.departures[employee] = min(left, self.departures.get(employee, left))
        elif kind == "level":
            self.levels[(employee, a[1])] = (a[2], a[3])  # type: ignore[index,assignment]
        elif kind == "revoke":
            self.levels.pop((employee, a[1]), None)  # type: ignore[arg-type]
        else:
            self.nominations.add((employee, a[1], a[2]))  # type: ignore[arg-type]
        return employee

    def standings(self, only: str | None = None) -> list[Standing]:
        """`assemble_standings` of every employee, or of `only`."""

        def mine(employee: str) -> bool:
            return only is None or employee == only

        return assemble_standings(
            [(e, on, dep) for (e, on), dep in self.records.items() if mine(e)],
            [(e, on) for e, on in self.departures.items() if mine(e)],
            [(e, n, on, dep) for (e, n), (on, dep) in self.levels.items() if mine(e)],
            [(e, y, dep) for e, y, dep in self.nominations if mine(e)],
        )

    def standing(self, employee: str) -> Standing | None:
        found = self.standings(employee)
        return found[0] if found else None


def city_changes(standings: list[Standing]) -> Counter[Change]:
    """Every employee's changes, summed as the read model sums them."""
    out: Counter[Change] = Counter()
    for s in standings:
        out.update(changes_of(s))
    return out


def as_served(changes: Counter[Change], day: dt.date) -> dict[str, dict[tuple[int, bool], int]]:
    """The tallies on `day` the way `queries.ReportReader` adds them: the yearly sums of the
    years before `day`'s, then the changes from April 1 of its year to `day`."""
    year = fiscal_year_of(day)
    summed: Counter[tuple[str, int, bool]] = Counter()
    for (y, dep, n, employed), k in yearly(changes).items():
        if y < year:
            summed[(dep, n, employed)] += k
    for (on, dep, n, employed), k in changes.items():
        if fiscal_year_start(year) <= on <= day:
            summed[(dep, n, employed)] += k
    return tallies((d, n, e, k) for (d, n, e), k in sorted(summed.items()))


@settings(max_examples=300, deadline=None)
@given(st.lists(facts, max_size=30), st.lists(days, min_size=1, max_size=4))
def test_counts_give_the_per_employee_report_on_every_day(
    city: list[Fact], report_days: list[dt.date]
) -> None:
    rows = Rows()
    for fact in city:
        rows.apply(fact)
    standings = rows.standings()
    changes = city_changes(standings)
    for day in report_days:
        year = fiscal_year_of(day)
        served = as_served(changes, day)
        assert served == tallies_on(changes, day)
        assert set(served) == {s.department_on(day) for s in standings}
        city_tally: Counter[tuple[int, bool]] = Counter()
        for department, tally in served.items():
            city_tally.update(tally)
            assert progress_from_tally(CATALOG, year, day, department, tally) == (
                target_progress(CATALOG, year, standings, day, department)
            )
        assert progress_from_tally(CATALOG, year, day, None, city_tally) == (
            target_progress(CATALOG, year, standings, day)
        )


@settings(max_examples=300, deadline=None)
@given(st.lists(facts, max_size=30), st.randoms(use_true_random=False))
def test_facts_one_at_a_time_in_any_order_with_duplicates_leave_the_city_counts(
    city: list[Fact], rnd: object
) -> None:
    shuffled = list(city) + list(city[: len(city) // 3])
    rnd.shuffle(shuffled)  # type: ignore[attr-defined]
    rows = Rows()
    kept: Counter[Change] = Counter()
    for fact in shuffled:
        employee = str(fact[1][0])
        before = rows.standing(employee)
        rows.apply(fact)
        kept.update(placement_changes(before, rows.standing(employee)))
    # (which row a fact keeps may depend on the order here; the service's statements decide
    # it by fact id and stream sequence) the counts kept are those of the rows reached
    assert {k: n for k, n in kept.items() if n} == {
        k: n for k, n in city_changes(rows.standings()).items() if n
    }


@given(st.lists(facts, max_size=20), employees)
def test_a_timeline_starts_at_the_beginning_and_never_repeats_a_placement(
    city: list[Fact], employee: str
) -> None:
    rows = Rows()
    for fact in city:
        rows.apply(fact)
    standing = rows.standing(employee)
    if standing is None:
        assert changes_of(standing) == Counter()
        return
    steps = timeline(standing)
    assert steps[0][0] == BEGINNING
    assert all(a[1] != b[1] for a, b in itertools.pairwise(steps))
    assert all(a[0] < b[0] for a, b in itertools.pairwise(steps))
