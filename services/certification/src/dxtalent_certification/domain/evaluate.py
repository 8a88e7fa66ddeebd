"""The certification rules (docs/rules.md, "Level rules"): facts in, state out, nothing else.

`evaluate` is a pure function of the catalog and the *set* of one employee's facts; arrival
order and duplicates cannot change its answer, and every tie is broken by fact id.

Each rule is judged with the facts about the day it is judged for: the ★ duty skills of a day
come from the employee record in force on that day (none in force: no duty skills). A level is
certified on the first day its rule holds, so a record taking effect later never revokes it
and a record not yet in force changes nothing; a level is never certified on or after left_on.

Decisions where the rules are silent (each documented where it is applied):
- A level's evidence is what that level asks for beyond the level below on the day it first
  held: for level 1 every ● of level 1, for level N the ● skills level N adds plus its ★ skills
  among that day's duty skills. The level below's certified_on is the lower bound of the date.
- The days on which a rule can start to hold are its lower bound, the days its skills were
  acquired and the days records take effect; the first of them on which it holds dates it.
- An equivalence for level N counts only once level N-1 is certified (levels are climbed in
  order); when both an equivalence and the skills hold, the path that held first wins (tie: the
  skills path), since certified_on is the date on which the rule first held.
- A level whose requirements name no skill and that has no lower bound (no level below, no
  nomination floor) has no date on which it first held, and is not certified.
- A completion dated outside its course's offering period grants nothing (enrollment refuses
  it; this keeps the core right for facts recorded under an older catalog).
- A departure removes no skill; a level whose rule first holds on or after left_on is not
  certified, nor is any level above it (so a departure learnt late revokes such levels).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from typing import NamedTuple

from dxtalent_certification.domain.facts import Completion, EmployeeFacts
from dxtalent_certification.domain.state import CertificationState, CertifiedLevel, HeldSkill
from dxtalent_contracts.catalog import Catalog
from dxtalent_contracts.events import Evidence
from dxtalent_contracts.fiscal import fiscal_year_of, fiscal_year_start


class _Path(NamedTuple):
    """One way a level's rule holds: from which day (its lower bound included), on what
    evidence, via an equivalence?"""

    held_on: dt.date
    evidence: tuple[Evidence, ...]
    via_equivalence: bool


def evaluate(catalog: Catalog, facts: EmployeeFacts) -> CertificationState:
    """The skills and levels `facts` earn under `catalog`."""
    valid = valid_completions(catalog, facts)
    skills = held_skills(catalog, valid)
    levels = _certified_levels(catalog, facts, valid, skills)
    return CertificationState(facts.employee_id, skills, levels)


def valid_completions(catalog: Catalog, facts: EmployeeFacts) -> list[Completion]:
    """Completions of catalog courses, dated inside the course's offering period, that no void
    matches, earliest first (tie: fact_id).

    A void matches by `voided_fact_id` alone. Unknown course ids grant nothing.
    """
    voided = {v.voided_fact_id for v in facts.voids}
    courses = catalog.course_by_id
    valid = [  # a list, not a generator: once per fact decided
        c
        for c in facts.completions
        if c.fact_id not in voided
        and (course := courses.get(c.course_id)) is not None
        and course.offered_on(c.completed_on)
    ]
    return sorted(valid, key=_completion_order)


def _completion_order(c: Completion) -> tuple[dt.date, str, str]:
    return c.completed_on, c.fact_id, c.course_id


def held_skills(catalog: Catalog, valid: Iterable[Completion]) -> dict[str, HeldSkill]:
    """Each granted skill with its first completion (`valid` must be earliest first)."""
    skills: dict[str, HeldSkill] = {}
    for completion in valid:
        for skill in catalog.course_by_id[completion.course_id].grants:
            if skill not in skills:
                skills[skill] = HeldSkill(
                    skill, completion.course_id, completion.completed_on, completion.fact_id
                )
    return skills


def required_skills(catalog: Catalog, level: int, duty_skills: frozenset[str]) -> frozenset[str]:
    """What `level` asks for beyond the level below: its added ● skills, plus its ★ skills
    that are among `duty_skills` when the catalog's policy requires duty skills."""
    duty = frozenset(catalog.level_rule(level).duty) & duty_skills
    if not catalog.policy.duty_skills_required:
        duty = frozenset()
    return catalog.skills_added_at(level) | duty


def _certified_levels(
    catalog: Catalog,
    facts: EmployeeFacts,
    valid: list[Completion],
    skills: Mapping[str, HeldSkill],
) -> dict[int, CertifiedLevel]:
    if catalog.policy.nomination_required and not facts.nominations:
        return {}
    lower = _nomination_floor(catalog, facts)  # no level is dated before this
    left_on = facts.left_on()
    first_of_course: dict[str, Completion] = {}
    for completion in valid:
        first_of_course.setdefault(completion.course_id, completion)
    levels: dict[int, CertifiedLevel] = {}
    for rule in catalog.levels:  # in order: a level is reached only from the one below
        paths = [_by_skills(catalog, rule.level, facts, skills, lower)]
        paths += _by_equivalence(catalog, rule.level, first_of_course, lower)
        first = min(
            (p for p in paths if p is not None),
            key=lambda p: (p.held_on, p.via_equivalence),
            default=None,
        )
        if first is None or (left_on is not None and first.held_on >= left_on):
            break
        levels[rule.level] = _certified(facts, rule.level, first)
        lower = first.held_on
    return levels


def _nomination_floor(catalog: Catalog, facts: EmployeeFacts) -> dt.date | None:
    """April 1 of the first nomination's fiscal year, when the policy sets that floor."""
    first_year = facts.first_nomination_year()
    if catalog.policy.nomination_floor and first_year is not None:
        return fiscal_year_start(first_year)
    return None


def _certified(facts: EmployeeFacts, level: int, path: _Path) -> CertifiedLevel:
    return CertifiedLevel(
        level=level,
        certified_on=path.held_on,
        fiscal_year=fiscal_year_of(path.held_on),
        department_code=facts.department_on(path.held_on),
        evidence=path.evidence,
        via_equivalence=path.via_equivalence,
    )


def _by_skills(
    catalog: Catalog,
    level: int,
    facts: EmployeeFacts,
    skills: Mapping[str, HeldSkill],
    lower: dt.date | None,
) -> _Path | None:
    """The first day on which the level's own rule holds by skills, with that day's evidence."""
    for day in _days_to_judge(catalog, level, facts, skills, lower):
        duty = facts.duty_skills_on(day)
        required = sorted(required_skills(catalog, level, duty))
        if not required and lower is None:
            continue  # nothing dates the rule: see the module notes
        if all(s in skills and skills[s].acquired_on <= day for s in required):
            return _Path(day, tuple(_evidence(skills[s]) for s in required), False)
    return None


def _days_to_judge(
    catalog: Catalog,
    level: int,
    facts: EmployeeFacts,
    skills: Mapping[str, HeldSkill],
    lower: dt.date | None,
) -> list[dt.date]:
    """The days on which the level's rule can start to hold, from `lower` on, in order."""
    asked = catalog.skills_added_at(level) | set(catalog.level_rule(level).duty)
    days = {skills[s].acquired_on for s in asked if s in skills} | facts.record_dates()
    if lower is not None:
        days = {d for d in days if d >= lower} | {lower}
    return sorted(days)


def _evidence(held: HeldSkill) -> Evidence:
    return Evidence(
        skill=held.skill,
        course_id=held.course_id,
        completed_on=held.acquired_on,
        event_id=held.evidence_fact_id,
    )


def _by_equivalence(
    catalog: Catalog,
    level: int,
    first_of_course: Mapping[str, Completion],
    lower: dt.date | None,
) -> list[_Path]:
    paths: list[_Path] = []
    for equivalence in (e for e in catalog.equivalences if e.level == level):
        if any(c not in first_of_course for c in equivalence.courses):
            continue
        completions = [first_of_course[c] for c in sorted(set(equivalence.courses))]
        evidence = tuple(
            Evidence(
                skill=s, course_id=c.course_id, completed_on=c.completed_on, event_id=c.fact_id
            )
            for c in completions
            for s in catalog.course_by_id[c.course_id].grants
        )
        held_on = max(c.completed_on for c in completions)
        paths.append(_Path(max(held_on, lower or held_on), evidence, True))
    return paths
