"""Membership counts give exactly the category page of the per-employee path (hypothesis).

Random staff (effective-dated records naming categories, departures, skills acquired on a day)
are counted on random days both ways: from each employee's `Member.membership_on` and from the
count changes the reporting and certification read models keep (`dxtalent_contracts.memberships`).
"""

from __future__ import annotations

import datetime as dt
from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from dxtalent_contracts.fiscal import BEGINNING
from dxtalent_contracts.memberships import (
    CategoryQuery,
    Member,
    MembershipChange,
    category_counts,
    membership_changes,
    membership_changes_of,
)

FIRST, LAST = dt.date(2023, 1, 1), dt.date(2028, 6, 30)
days = st.dates(FIRST, LAST)
employees = st.sampled_from([f"E{i}" for i in range(6)])

CATEGORIES = [
    CategoryQuery("all-staff", True, ("sec", "basics")),
    CategoryQuery("section-chief", False, ("basics", "data", "sec")),
    CategoryQuery("it-department", False, ("build",)),
]
category_lists = st.lists(st.sampled_from(["section-chief", "it-department", "other"]), max_size=3)
skill_names = st.sampled_from(["sec", "basics", "data", "build"])
members = st.builds(
    Member,
    employee_id=employees,
    records=st.dictionaries(days, category_lists.map(tuple), max_size=3).map(
        lambda r: tuple(sorted(r.items()))
    ),
    left_on=st.none() | days,
    skills=st.dictionaries(skill_names, days, max_size=4),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(members, max_size=8), st.lists(days, min_size=1, max_size=4))
def test_membership_counts_give_the_category_page_of_every_employee(
    staff: list[Member], report_days: list[dt.date]
) -> None:
    changes: Counter[MembershipChange] = Counter()
    for member in staff:
        changes.update(membership_changes(None, member))
    for day in report_days:
        summed: Counter[tuple[tuple[str, ...], tuple[str, ...]]] = Counter()
        for (on, named, skills), n in changes.items():
            if on <= day:
                summed[(named, skills)] += n
        from_counts = category_counts(
            [(named, skills, n) for (named, skills), n in summed.items()], CATEGORIES
        )
        direct: list[tuple[tuple[str, ...], tuple[str, ...], int]] = []
        for member in staff:
            found = member.membership_on(day)
            if found is not None:
                direct.append((*found, 1))
        assert from_counts == category_counts(direct, CATEGORIES)
        for c in CATEGORIES:
            in_it = [
                m
                for m in staff
                if (found := m.membership_on(day)) is not None
                and (c.implicit or c.code in found[0])
            ]
            assert from_counts[c.code].members == len(in_it)
            lacking = [
                m for m in in_it if set(c.required) - {s for s, on in m.skills.items() if on <= day}
            ]
            assert from_counts[c.code].lacking == len(lacking)


@settings(max_examples=300, deadline=None)
@given(members)
def test_the_timeline_sweep_steps_where_membership_on_does(member: Member) -> None:
    """`membership_changes_of` (one sweep) equals the walk of `membership_on` day by day
    over every day a step can happen on."""
    walked: Counter[MembershipChange] = Counter()
    steps = {BEGINNING, *(d for d, _ in member.records), *member.skills.values()}
    previous = None
    for day in sorted(steps | ({member.left_on} if member.left_on else set())):
        current = member.membership_on(day)
        if current != previous:
            if current is not None:
                walked[(day, *current)] += 1
            if previous is not None:
                walked[(day, *previous)] -= 1
        previous = current
    assert membership_changes_of(member) == walked
