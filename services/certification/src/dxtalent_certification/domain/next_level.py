"""What stands between an employee and their next DX-leader level (for the HTTP API)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from dxtalent_certification.domain.evaluate import required_skills
from dxtalent_certification.domain.facts import EmployeeFacts
from dxtalent_certification.domain.state import CertificationState
from dxtalent_contracts.catalog import Catalog, Course


@dataclass(frozen=True, slots=True)
class MissingSkill:
    """A skill the next level asks for, and every catalog course that grants it."""

    skill: str
    courses: tuple[Course, ...]


@dataclass(frozen=True, slots=True)
class NextLevel:
    """The level above the current highest: what is missing, skills by code."""

    level: int
    missing: tuple[MissingSkill, ...]
    nomination_missing: bool

    @property
    def missing_skills(self) -> tuple[str, ...]:
        """The codes of the missing skills, sorted."""
        return tuple(m.skill for m in self.missing)


def next_level(
    catalog: Catalog, facts: EmployeeFacts, state: CertificationState, on: dt.date
) -> NextLevel | None:
    """The next level above `state`'s highest, as seen on `on` (the caller's today), or None
    at the top of the ladder.

    Missing skills are what that level adds (● skills added, ★ skills among the duty skills of
    the record in force on `on`) and are not held. Courses come from `catalog.courses_granting`
    minus those whose offering period ended before `on` (the FY2024 track, for one), so the
    equivalence path is never offered. `nomination_missing` is set when the catalog requires a
    nomination and the employee has none.
    """
    level = state.highest_level + 1
    if level > catalog.top_level:
        return None
    held = state.skill_codes
    missing = sorted(required_skills(catalog, level, facts.duty_skills_on(on)) - held)
    return NextLevel(
        level=level,
        missing=tuple(MissingSkill(s, _still_offered(catalog, s, on)) for s in missing),
        nomination_missing=catalog.policy.nomination_required and not facts.nominations,
    )


def _still_offered(catalog: Catalog, skill: str, on: dt.date) -> tuple[Course, ...]:
    """The courses granting `skill` whose offering period has not ended before `on`."""
    return tuple(
        c
        for c in catalog.courses_granting(skill)
        if c.offered is None or c.offered.last_day is None or c.offered.last_day >= on
    )
