"""decide(state, fact) -> changes and evolve(state, change) -> state.

`changes` diffs two states into the domain events of the contract. Its output is in a fixed
order, so the same diff always gives the same list:

1. `SkillRevoked`, by skill code;
2. `LevelRevoked`, highest level first: a revocation removes the top of the ladder, so folding
   the events one at a time never leaves a level certified above a revoked one;
3. `SkillAcquired`, by skill code (new skills, and held skills whose evidence changed);
4. `LevelCertified`, lowest level first (new levels, and levels whose certified_on, fiscal
   year, evidence, department or path changed: consumers upsert by employee and level).
"""

from __future__ import annotations

from dxtalent_certification.domain.evaluate import evaluate, required_skills
from dxtalent_certification.domain.facts import EmployeeFacts, Fact
from dxtalent_certification.domain.state import CertificationState, CertifiedLevel, HeldSkill
from dxtalent_contracts.catalog import Catalog
from dxtalent_contracts.events import LevelCertified, LevelRevoked, SkillAcquired, SkillRevoked

DomainChange = SkillAcquired | SkillRevoked | LevelCertified | LevelRevoked


def decide(
    catalog: Catalog, facts: EmployeeFacts, previous: CertificationState, fact: Fact
) -> tuple[EmployeeFacts, CertificationState, list[DomainChange]]:
    """Add `fact`, re-evaluate, and return the new facts, the new state and what changed.

    `previous` must be the state of `facts`; a fact already known changes nothing. When
    nothing changed, the state returned is `previous` itself (equal to the new one: an empty
    diff means equal states), so a caller can tell an unchanged state by identity.
    """
    new_facts = facts.with_fact(fact)
    current = evaluate(catalog, new_facts)
    found = changes(catalog, previous, current, fact.fact_id, new_facts)
    return new_facts, current if found else previous, found


def changes(
    catalog: Catalog,
    previous: CertificationState,
    current: CertificationState,
    caused_by: str,
    facts: EmployeeFacts | None = None,
) -> list[DomainChange]:
    """The domain events that turn `previous` into `current`, in the module's fixed order.

    `facts` (the facts `current` was evaluated from) only sharpens the reasons: with them, a
    skill revocation quotes the void's reason, and a level revocation also names a ★ skill that
    the duties in force on its certified_on now require, or a departure before that day.
    """
    if previous.employee_id != current.employee_id:
        raise ValueError(f"cannot diff {previous.employee_id} against {current.employee_id}")
    employee_id = current.employee_id
    result: list[DomainChange] = [
        SkillRevoked(employee_id=employee_id, skill=s, reason=_skill_reason(held, facts))
        for s, held in previous.skills.items()
        if s not in current.skills
    ]
    result += _levels_revoked(catalog, previous, current, caused_by, facts)
    result += [
        _skill_acquired(employee_id, held)
        for s, held in current.skills.items()
        if previous.skills.get(s) != held
    ]
    result += [
        _level_certified(catalog, employee_id, level)
        for n, level in current.levels.items()
        if previous.levels.get(n) != level
    ]
    return result


def evolve(state: CertificationState, change: DomainChange) -> CertificationState:
    """`state` with one domain event applied (the inverse of `changes`, one event at a time)."""
    if change.employee_id != state.employee_id:
        raise ValueError(f"event for {change.employee_id} applied to {state.employee_id}")
    skills, levels = dict(state.skills), dict(state.levels)
    match change:
        case SkillAcquired():
            skills[change.skill] = HeldSkill(
                change.skill, change.course_id, change.acquired_on, change.evidence_event_id
            )
        case SkillRevoked():
            skills.pop(change.skill, None)
        case LevelCertified():
            levels[change.level] = CertifiedLevel(
                level=change.level,
                certified_on=change.certified_on,
                fiscal_year=change.fiscal_year,
                department_code=change.department_code,
                evidence=tuple(change.evidence),
                via_equivalence=change.via_equivalence,
            )
        case LevelRevoked():
            levels.pop(change.level, None)
    return CertificationState(state.employee_id, skills, levels)


def _skill_reason(held: HeldSkill, facts: EmployeeFacts | None) -> str:
    # Facts only grow, so a skill disappears only when every completion granting it was
    # voided, the one that evidenced it among them.
    reason = (
        f"completion {held.evidence_fact_id} of course {held.course_id} was voided "
        f"and no other completion grants {held.skill}"
    )
    voids = facts.voids if facts is not None else frozenset()
    said = sorted({v.reason for v in voids if v.voided_fact_id == held.evidence_fact_id})
    return f"{reason} ({'; '.join(said)})" if said else reason


def _skill_acquired(employee_id: str, held: HeldSkill) -> SkillAcquired:
    return SkillAcquired(
        employee_id=employee_id,
        skill=held.skill,
        course_id=held.course_id,
        acquired_on=held.acquired_on,
        evidence_event_id=held.evidence_fact_id,
    )


def _level_certified(catalog: Catalog, employee_id: str, level: CertifiedLevel) -> LevelCertified:
    return LevelCertified(
        employee_id=employee_id,
        level=level.level,
        fiscal_year=level.fiscal_year,
        certified_on=level.certified_on,
        department_code=level.department_code,
        evidence=list(level.evidence),
        policy_version=catalog.policy_version,
        via_equivalence=level.via_equivalence,
    )


def _levels_revoked(
    catalog: Catalog,
    previous: CertificationState,
    current: CertificationState,
    caused_by: str,
    facts: EmployeeFacts | None,
) -> list[LevelRevoked]:
    if not previous.levels:  # most employees: nothing certified, nothing to lose
        return []
    lost = sorted((n for n in previous.levels if n not in current.levels), reverse=True)
    if not lost:
        return []
    lowest = lost[-1]
    why = _why_lost(catalog, previous.levels[lowest], current, facts)
    return [
        LevelRevoked(
            employee_id=current.employee_id,
            level=n,
            reason=f"level {n}: {why}"
            if n == lowest
            else f"level {n} rests on level {lowest}, which no longer holds: {why}",
            caused_by=caused_by,
        )
        for n in lost
    ]


def _why_lost(
    catalog: Catalog, lost: CertifiedLevel, current: CertificationState, facts: EmployeeFacts | None
) -> str:
    """Name the missing skills: what the level asked for on the day it was certified (with the
    duties in force then, as now known), plus what evidenced it; else a departure before it."""
    duty = facts.duty_skills_on(lost.certified_on) if facts is not None else frozenset()
    asked = required_skills(catalog, lost.level, duty) | {e.skill for e in lost.evidence}
    missing = sorted(asked - current.skill_codes)
    left_on = facts.left_on() if facts is not None else None
    if missing:
        why = f"missing skill(s) {', '.join(missing)}"
    elif left_on is not None:  # every skill is held: the rule now first holds too late
        why = f"the employee left on {left_on}, before its rule held"
    else:
        why = "its rule no longer holds"
    if lost.via_equivalence:
        why += f"; the level-{lost.level} equivalence courses are no longer all completed"
    return why
