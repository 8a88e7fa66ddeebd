"""Membership counts give exactly the category page of the per-employee path (hypothesis).

Random staff (effective-dated records naming categories, departures, skills acquired on a day)
are counted on random days both ways: from each employee's `Member.membership_on` and from the
count changes the reporting and certification read models keep (`dxtalent_contracts.memberships`).
"""

from __future__ import annotations

import datetime as dt
import itertools
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
    timeline,
)

FIRST, LAST = dt.date(2023, 1, 1), dt.date(2028, 6, 30)
days = st.dates(FIRST, LAST)
SOME_DAYS = [dt.date(2023, 4, 1), dt.date(2024, 4, 1), dt.date(2024, 10, 1), dt.date(2025, 4, 1)]
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
    assert membership_changes_of(member) == _walked(member)


def _walked(member: Member | None) -> Counter[MembershipChange]:
    """The count changes of `member` by `membership_on` day by day (the reference)."""
    walked: Counter[MembershipChange] = Counter()
    if member is None:
        return walked
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
    return walked


#: records as any publisher may give them: several on one day, categories unsorted and repeated
loose_members = st.builds(
    Member,
    employee_id=employees,
    records=st.lists(
        st.tuples(st.sampled_from([BEGINNING, *SOME_DAYS]), category_lists.map(tuple))
    ).map(tuple),
    left_on=st.none() | st.sampled_from([BEGINNING, *SOME_DAYS]),
    skills=st.dictionaries(skill_names, st.sampled_from([BEGINNING, *SOME_DAYS]), max_size=4),
)


@st.composite
def member_pairs(draw: st.DrawFn) -> tuple[Member | None, Member | None]:
    """A member before and after a write: often the same with a skill, a record or a
    departure more (timelines that share their first steps), or unrelated, or absent."""
    before = draw(st.none() | members | loose_members)
    if before is None or draw(st.booleans()):
        return before, draw(st.none() | members | loose_members)
    skills = dict(before.skills)
    records = list(before.records)
    left_on = before.left_on
    match draw(st.integers(0, 2)):
        case 0:
            skills[draw(skill_names)] = draw(days)
        case 1:
            records.append((draw(days), draw(category_lists.map(tuple))))
        case _:
            left_on = draw(days)
    return before, Member(before.employee_id, tuple(records), left_on, skills)


@settings(max_examples=500, deadline=None)
@given(st.one_of(members, loose_members))
def test_the_timeline_steps_where_membership_on_does(member: Member) -> None:
    """The sweep's steps give the walk's count changes, loose records included; each step
    changes the membership."""
    assert membership_changes_of(member) == _walked(member)
    steps = timeline(member)
    assert all(a[1] != b[1] and a[0] < b[0] for a, b in itertools.pairwise(steps))
    for day, membership in steps:
        assert member.membership_on(day) == membership


@settings(max_examples=500, deadline=None)
@given(member_pairs())
def test_membership_changes_are_the_difference_of_the_walks(
    pair: tuple[Member | None, Member | None],
) -> None:
    """`membership_changes` (equal timelines skipped, common first steps cancelled) is the
    walk of `after` minus the walk of `before`, zeros dropped, in key order."""
    before, after = pair
    expected = _walked(after)
    expected.subtract(_walked(before))
    assert membership_changes(before, after) == {k: n for k, n in sorted(expected.items()) if n}
    assert list(membership_changes(before, after)) == sorted(membership_changes(before, after))
