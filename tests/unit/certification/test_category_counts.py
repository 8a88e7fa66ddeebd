"""The membership counts give exactly the category compliance of the per-employee path
(hypothesis), as `tests/unit/contracts/test_memberships.py` checks for the pure rules.

Random staff (records naming catalog and unknown categories, several on one day, none at all,
departures, skills acquired on a day) are judged on random days both ways: each employee's
`staff_member` through `category_statuses` and `category_view` (what `GET /v1/categories` did),
and the count changes the handler adds (`memberships.row_changes`) summed as
`MembershipCounts.on` sums them, through `category_counts` and `counted_category_view`. Rows
written one fact at a time, with facts repeated, leave the counts of the whole row at once.
"""

from __future__ import annotations

import datetime as dt
import random
from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from dxtalent_certification.domain.categories import category_statuses, staff_member
from dxtalent_certification.domain.corrections import SentLedger
from dxtalent_certification.domain.facts import Departure, EmployeeFacts, EmployeeRecord, Fact
from dxtalent_certification.domain.state import CertificationState, HeldSkill
from dxtalent_certification.memberships import row_changes
from dxtalent_certification.projection import EmployeeRow
from dxtalent_certification.views import category_view, counted_category_view
from dxtalent_contracts.catalog import load_catalog
from dxtalent_contracts.fiscal import fiscal_year_of, fiscal_year_start, yearly
from dxtalent_contracts.memberships import MembershipChange, category_counts, category_queries

CATALOG = load_catalog()
FIRST, LAST = dt.date(2024, 1, 1), dt.date(2027, 6, 30)
CODES = [c.code for c in CATALOG.categories] + ["astronaut"]
SKILLS = sorted({s for c in CATALOG.categories for s in CATALOG.category_requirements(c.code)})

days = st.dates(FIRST, LAST)
fact_ids = st.sampled_from(["f1", "f2", "f3", "f4"])


@st.composite
def employee(draw: st.DrawFn, index: int) -> tuple[list[Fact], dict[str, dt.date]]:
    """An employee's facts (records and departures) and the skills they hold."""
    e = f"E{index}"
    facts: list[Fact] = [
        EmployeeRecord(
            fact_id=f"r-{draw(fact_ids)}-{n}",
            employee_id=e,
            department_code="D-A",
            categories=frozenset(draw(st.lists(st.sampled_from(CODES), max_size=3))),
            duty_skills=frozenset(),
            effective_date=draw(days),
        )
        for n in range(draw(st.integers(0, 3)))
    ]
    if draw(st.booleans()):
        facts.append(Departure(f"d-{index}", e, draw(days)))
    skills = draw(st.dictionaries(st.sampled_from(SKILLS), days, max_size=5))
    return facts, skills


def row(employee_id: str, facts: list[Fact], skills: dict[str, dt.date]) -> EmployeeRow:
    held = {s: HeldSkill(s, "C-1", on, f"ev-{s}") for s, on in skills.items()}
    return EmployeeRow(
        EmployeeFacts.of(employee_id, facts),
        CertificationState(employee_id, held, {}),
        SentLedger.empty(),
    )


def served(changes: Counter[MembershipChange], day: dt.date) -> list[object]:
    """The body `get_categories` builds from the counts on `day`, summed as the service sums
    them: the yearly sums of the years before, then the days of `day`'s year."""
    joined = {(d, " ".join(c), " ".join(s)): n for (d, c, s), n in changes.items()}
    year = fiscal_year_of(day)
    summed: Counter[tuple[str, str]] = Counter()
    for (y, c, s), n in yearly(joined).items():
        if y < year:
            summed[(c, s)] += n
    for (d, c, s), n in joined.items():
        if fiscal_year_start(year) <= d <= day:
            summed[(c, s)] += n
    queries = category_queries(CATALOG)
    found = category_counts(
        [(tuple(c.split()), tuple(s.split()), n) for (c, s), n in summed.items()], queries
    )
    return [counted_category_view(CATALOG, q.code, found[q.code]) for q in queries]


@settings(max_examples=200, deadline=None)
@given(
    st.integers(1, 6).flatmap(lambda n: st.tuples(*(employee(i) for i in range(n)))),
    st.lists(days, min_size=1, max_size=4),
    st.randoms(use_true_random=False),
)
def test_counts_give_the_categories_of_the_scan(
    staff: tuple[tuple[list[Fact], dict[str, dt.date]], ...],
    report_days: list[dt.date],
    rng: random.Random,
) -> None:
    rows = [row(f"E{i}", facts, skills) for i, (facts, skills) in enumerate(staff)]
    whole = row_changes((None, r) for r in rows)
    stepwise: Counter[MembershipChange] = Counter()
    for i, (facts, skills) in enumerate(staff):
        written = [*facts, *facts[:1]]  # one fact delivered twice
        rng.shuffle(written)
        before = None
        for n in range(1, len(written) + 1):
            after = row(f"E{i}", written[:n], skills)
            if before is None or after.facts != before.facts:
                stepwise.update(row_changes([(before, after)]))
            before = after
        if before is None:  # no fact: the row exists by its skills alone
            stepwise.update(row_changes([(None, row(f"E{i}", [], skills))]))
    assert {k: n for k, n in stepwise.items() if n} == {k: n for k, n in whole.items() if n}
    for day in report_days:
        scan = category_statuses(CATALOG, [staff_member(r.facts, r.state, day) for r in rows])
        assert served(whole, day) == [category_view(s) for s in scan]
