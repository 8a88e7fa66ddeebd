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
from typing import Any

from dxtalent_contracts.catalog import Catalog

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


Step = tuple[dt.date, Membership | None]


def timeline(member: Member) -> list[Step]:
    """The days on which `member`'s membership changes, each with the membership from that day
    on (None: no longer a member), starting from none.

    `membership_on` of each day a step can happen on, in one sweep over the records and
    skills in date order (on a day with two records, the greater, as `max` in
    `membership_on`); the categories and skills are sorted only when they change, and nothing
    is looked at from `left_on` on, when the member is none for good. Each certification
    write walks two timelines, so this is hot; tests hold it to `membership_on`."""
    left_on = member.left_on
    events: list[tuple[dt.date, int, Any]] = [(day, 0, named) for day, named in member.records]
    events += [(on, 1, skill) for skill, on in member.skills.items()]
    events.sort()
    named: tuple[str, ...] | None = None  # the categories of the record in force
    held: list[str] = []
    skills: tuple[str, ...] = ()
    previous: Membership | None = None
    steps: list[Step] = []
    i, n = 0, len(events)
    while i < n:
        day = events[i][0]
        if left_on is not None and day >= left_on:
            break
        record: Sequence[str] | None = None
        acquired = False
        while i < n and events[i][0] == day:
            _, kind, value = events[i]
            if kind:
                held.append(value)
                acquired = True
            else:
                record = value
            i += 1
        if record is not None:
            named = tuple(sorted(set(record)))
        if acquired:
            skills = tuple(sorted(held))
        if named is None:
            continue
        current = (named, skills)
        if current != previous:
            steps.append((day, current))
            previous = current
    if previous is not None and left_on is not None:
        steps.append((left_on, None))
    return steps


def membership_changes_of(member: Member | None) -> Counter[MembershipChange]:
    """The count changes one employee's membership timeline contributes: on each step, one
    more of the membership entered, one less of the one left."""
    out: Counter[MembershipChange] = Counter()
    if member is not None:
        _add_steps(out, timeline(member), 1)
    return out


def membership_changes(before: Member | None, after: Member | None) -> dict[MembershipChange, int]:
    """What replacing `before` by `after` does to the counts; only non-zero changes.

    Equal timelines change nothing; otherwise the steps both timelines begin with cancel out
    and are skipped."""
    old = timeline(before) if before is not None else []
    new = timeline(after) if after is not None else []
    if old == new:
        return {}
    same = 0
    for x, y in zip(old, new, strict=False):
        if x != y:
            break
        same += 1
    delta: dict[MembershipChange, int] = {}
    _add_steps(delta, new, 1, same)
    _add_steps(delta, old, -1, same)
    return {key: n for key, n in sorted(delta.items()) if n}


def _add_steps(
    out: dict[MembershipChange, int], steps: Sequence[Step], sign: int, start: int = 0
) -> None:
    """Add `sign` x the changes of `steps[start:]` (the membership left at `steps[start]` is
    the one entered at the step before it) to `out`."""
    previous = steps[start - 1][1] if start else None
    for i in range(start, len(steps)):
        day, current = steps[i]
        if current is not None:
            key = (day, *current)
            out[key] = out.get(key, 0) + sign
        if previous is not None:
            key = (day, *previous)
            out[key] = out.get(key, 0) - sign
        previous = current


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
