"""What stands between an employee and their next DX-leader level (for the HTTP API)."""

from __future__ import annotations

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
    catalog: Catalog, facts: EmployeeFacts, state: CertificationState
) -> NextLevel | None:
    """The next level above `state`'s highest, or None at the top of the ladder.

    Missing skills are what that level adds (● skills added, ★ skills among the employee's duty
    skills) and are not held. Courses come from `catalog.courses_granting`, so historical
    courses (the FY2024 track) are listed too; the caller may filter by track. The equivalence
    path is not offered: its courses are a past year's training. `nomination_missing` is set
    when the catalog requires a nomination and the employee has none.
    """
    level = state.highest_level + 1
    if level > catalog.top_level:
        return None
    held = state.skill_codes
    missing = sorted(required_skills(catalog, level, facts.duty_skills()) - held)
    return NextLevel(
        level=level,
        missing=tuple(MissingSkill(s, tuple(catalog.courses_granting(s))) for s in missing),
        nomination_missing=catalog.policy.nomination_required and not facts.nominations,
    )
