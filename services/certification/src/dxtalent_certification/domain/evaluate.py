"""The certification rules (domain.md, "Level rules"): facts in, state out, nothing else.

`evaluate` is a pure function of the catalog and the *set* of one employee's facts; arrival
order and duplicates cannot change its answer, and every tie is broken by fact id.

Decisions where domain.md is silent (each documented where it is applied):
- A level's evidence is what that level asks for beyond the level below: for level 1 every ●
  of level 1, for level N the ● skills level N adds plus its ★ skills among the employee's duty
  skills. The level below's certified_on is the lower bound of the date instead.
- An equivalence for level N counts only once level N-1 is certified (levels are climbed in
  order); when both an equivalence and the skills hold, the path that held first wins (tie: the
  skills path), since certified_on is the date on which the rule first held.
- A level whose requirements name no skill and that has no lower bound (no level below, no
  nomination floor) has no date on which it first held, and is not certified.
- Departures remove nothing: a level, once earned, stays; reporting decides who is "still
  employed" on a report date.
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
    """One way a level's own rule holds: since when, on what evidence, via an equivalence?"""

    held_on: dt.date | None  # None: the rule names no skill, so only the lower bound dates it
    evidence: tuple[Evidence, ...]
    via_equivalence: bool


def evaluate(catalog: Catalog, facts: EmployeeFacts) -> CertificationState:
    """The skills and levels `facts` earn under `catalog`.

    Departures are deliberately ignored: they remove neither skills nor levels.
    """
    valid = valid_completions(catalog, facts)
    skills = held_skills(catalog, valid)
    levels = _certified_levels(catalog, facts, valid, skills)
    return CertificationState(facts.employee_id, skills, levels)


def valid_completions(catalog: Catalog, facts: EmployeeFacts) -> list[Completion]:
    """Completions of catalog courses that no void matches, earliest first (tie: fact_id).

    A void matches by `voided_fact_id` alone. Unknown course ids grant nothing.
    """
    voided = {v.voided_fact_id for v in facts.voids}
    valid = (
        c
        for c in facts.completions
        if c.fact_id not in voided and c.course_id in catalog.course_by_id
    )
    return sorted(valid, key=lambda c: (c.completed_on, c.fact_id, c.course_id))


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
    duty = facts.duty_skills()
    first_of_course: dict[str, Completion] = {}
    for completion in valid:
        first_of_course.setdefault(completion.course_id, completion)
    levels: dict[int, CertifiedLevel] = {}
    for rule in catalog.levels:  # in order: a level is reached only from the one below
        paths = [_by_skills(catalog, rule.level, duty, skills)]
        paths += _by_equivalence(catalog, rule.level, first_of_course)
        first = _first_held([p for p in paths if p is not None], lower)
        if first is None:
            break
        levels[rule.level] = _certified(facts, rule.level, *first)
        lower = levels[rule.level].certified_on
    return levels


def _nomination_floor(catalog: Catalog, facts: EmployeeFacts) -> dt.date | None:
    """April 1 of the first nomination's fiscal year, when the policy sets that floor."""
    first_year = facts.first_nomination_year()
    if catalog.policy.nomination_floor and first_year is not None:
        return fiscal_year_start(first_year)
    return None


def _certified(
    facts: EmployeeFacts, level: int, certified_on: dt.date, path: _Path
) -> CertifiedLevel:
    return CertifiedLevel(
        level=level,
        certified_on=certified_on,
        fiscal_year=fiscal_year_of(certified_on),
        department_code=facts.department_on(certified_on),
        evidence=path.evidence,
        via_equivalence=path.via_equivalence,
    )


def _first_held(paths: list[_Path], lower: dt.date | None) -> tuple[dt.date, _Path] | None:
    """The path that held first, with its date raised to `lower` (tie: the skills path)."""
    dated: list[tuple[dt.date, _Path]] = []
    for path in paths:
        dates = [d for d in (path.held_on, lower) if d is not None]
        if dates:
            dated.append((max(dates), path))
    return min(dated, key=lambda dp: (dp[0], dp[1].via_equivalence), default=None)


def _by_skills(
    catalog: Catalog, level: int, duty: frozenset[str], skills: Mapping[str, HeldSkill]
) -> _Path | None:
    required = sorted(required_skills(catalog, level, duty))
    if any(s not in skills for s in required):
        return None
    evidence = tuple(
        Evidence(
            skill=s,
            course_id=skills[s].course_id,
            completed_on=skills[s].acquired_on,
            event_id=skills[s].evidence_fact_id,
        )
        for s in required
    )
    return _Path(max((e.completed_on for e in evidence), default=None), evidence, False)


def _by_equivalence(
    catalog: Catalog, level: int, first_of_course: Mapping[str, Completion]
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
        paths.append(_Path(max(c.completed_on for c in completions), evidence, True))
    return paths
