"""Staff-category membership on every day, as counts the 区分別 page adds up (pure).

The page needs, of each employee on its date: are they a member at all (employed, with a
record in force — one whose effective date is on or before the day), the categories that
record names, and the skills held on the day (acquired on or before it, not revoked). All are
step functions of the day, changing on a record's effective date, `left_on` and an
`acquired_on`; so, as for reporting's placements, an employee's timeline is a few *memberships*
(categories, skills), or none while not a member, and the read model keeps how many employees
enter or leave each membership per day (and per fiscal year). On a day, the counts per
membership give every category's members, those lacking a required skill and how many lack
each one (`category_counts`), with no catalog in the stored counts: a catalog that changes its
requirements reads the same rows.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

from dxtalent_contracts.catalog import Catalog
from dxtalent_contracts.fiscal import BEGINNING

Membership = tuple[tuple[str, ...], tuple[str, ...]]  # categories named, skills held (sorted)
MembershipChange = tuple[dt.date, tuple[str, ...], tuple[str, ...]]


@dataclass(frozen=True, slots=True)
class Member:
    """One employee as the category counts read them: `records` holds (effective_date,
    categories) pairs, one per date; `skills` maps each held skill to its acquired_on."""

    employee_id: str
    records: tuple[tuple[dt.date, tuple[str, ...]], ...] = ()
    left_on: dt.date | None = None
    skills: Mapping[str, dt.date] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "skills", MappingProxyType(dict(self.skills)))

    def membership_on(self, day: dt.date) -> Membership | None:
        """The categories and skills of `day`; None when not employed or no record is in force."""
        in_force = [r for r in self.records if r[0] <= day]
        if not in_force or (self.left_on is not None and self.left_on <= day):
            return None
        categories = max(in_force)[1]
        return (
            tuple(sorted(set(categories))),
            tuple(sorted(s for s, on in self.skills.items() if on <= day)),
        )


def membership_changes_of(member: Member | None) -> Counter[MembershipChange]:
    """The count changes one employee's membership timeline contributes.

    `membership_on` of each day a step can happen on, in one sweep: records and skills are
    taken in date order as the days pass (each handler write walks two timelines, so this is
    hot; tests check the sweep against `membership_on`)."""
    out: Counter[MembershipChange] = Counter()
    if member is None:
        return out
    left_on = member.left_on
    days = {BEGINNING, *(day for day, _ in member.records), *member.skills.values()}
    if left_on is not None:
        days.add(left_on)
    records = sorted(member.records)
    acquired = sorted((on, s) for s, on in member.skills.items())
    r = a = 0
    in_force: tuple[str, ...] | None = None  # the categories of max(records on or before day)
    held: list[str] = []
    previous: Membership | None = None
    for day in sorted(days):
        while r < len(records) and records[r][0] <= day:
            in_force = records[r][1]
            r += 1
        while a < len(acquired) and acquired[a][0] <= day:
            held.append(acquired[a][1])
            a += 1
        current: Membership | None = None
        if in_force is not None and (left_on is None or day < left_on):
            current = (tuple(sorted(set(in_force))), tuple(sorted(held)))
        if current == previous:
            continue
        if current is not None:
            out[(day, *current)] += 1
        if previous is not None:
            out[(day, *previous)] -= 1
        previous = current
    return out


def membership_changes(before: Member | None, after: Member | None) -> dict[MembershipChange, int]:
    """What replacing `before` by `after` does to the counts; only non-zero changes."""
    delta = membership_changes_of(after)
    delta.subtract(membership_changes_of(before))
    return {key: n for key, n in sorted(delta.items()) if n}


@dataclass
class CategoryCounts:
    """Members of a category, how many lack something, and what they lack most."""

    members: int = 0
    lacking: int = 0
    missing: list[tuple[str, int]] = field(default_factory=list)


@dataclass(frozen=True)
class CategoryQuery:
    """A staff category as the counts need it: code, implicit (everyone), required skills."""

    code: str
    implicit: bool
    required: tuple[str, ...]


def category_queries(catalog: Catalog) -> list[CategoryQuery]:
    """Every category of `catalog`, in catalog order, as `category_counts` asks for them."""
    return [
        CategoryQuery(c.code, c.implicit, tuple(sorted(catalog.category_requirements(c.code))))
        for c in catalog.categories
    ]


def category_counts(
    memberships: Iterable[tuple[Sequence[str], Sequence[str], int]],
    categories: Sequence[CategoryQuery],
) -> dict[str, CategoryCounts]:
    """Per category code, from (categories, skills, employees) on one day: members, members
    lacking some required skill, and (skill, members lacking it) most first."""
    counts = {c.code: CategoryCounts() for c in categories}
    missing: dict[str, Counter[str]] = {c.code: Counter() for c in categories}
    for named, skills, n in memberships:
        if n == 0:
            continue
        held = set(skills)
        for c in categories:
            if not (c.implicit or c.code in named):
                continue
            entry = counts[c.code]
            entry.members += n
            lacks = [s for s in c.required if s not in held]
            if lacks:
                entry.lacking += n
                missing[c.code].update(dict.fromkeys(lacks, n))
    for code, entry in counts.items():
        entry.missing = sorted(missing[code].items(), key=lambda m: (-m[1], m[0]))
    return counts
