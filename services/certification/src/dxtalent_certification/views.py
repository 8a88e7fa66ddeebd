"""Response bodies of the certification HTTP API, and how they are built from a stored row.

Pydantic models, so FastAPI's `/openapi.json` documents every field.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from pydantic import BaseModel, ConfigDict, Field

from dxtalent_certification.domain.categories import CategoryStatus
from dxtalent_certification.domain.next_level import next_level
from dxtalent_certification.domain.state import CertifiedLevel, HeldSkill
from dxtalent_certification.projection import EmployeeRow
from dxtalent_contracts.catalog import Catalog, Course
from dxtalent_contracts.events import Evidence
from dxtalent_contracts.fiscal import reiwa_label
from dxtalent_contracts.memberships import CategoryCounts


class _View(BaseModel):
    model_config = ConfigDict(frozen=True)


class LevelView(_View):
    """A certified DX-leader level and the completions that date it."""

    level: int
    certified_on: dt.date
    fiscal_year: int
    fiscal_year_label: str | None = Field(description="令和 label; null before 2019")
    department_code: str | None
    via_equivalence: bool
    evidence: list[Evidence]


class SkillView(_View):
    """A skill held, with the completion that first granted it."""

    skill: str
    name: str
    area: str
    course_id: str
    acquired_on: dt.date
    evidence_event_id: str = Field(description="id of the inbound CourseCompleted event")


class CourseView(_View):
    """A catalog course that grants a missing skill."""

    course_id: str
    name: str
    track: str


class MissingSkillView(_View):
    """A skill the next level asks for and the courses that grant it."""

    skill: str
    name: str
    courses: list[CourseView]


class NextLevelView(_View):
    """What stands between the employee and the level above their highest."""

    level: int
    name: str
    missing: list[MissingSkillView]
    nomination_missing: bool


class EmployeeView(_View):
    """One employee's certification: levels, skills and what the next level needs."""

    employee_id: str
    as_of: dt.date = Field(description="the day department, categories and duties are read on")
    department_code: str | None = Field(
        description="from the employee record in force on as_of (else the earliest record, "
        "else the nominations)"
    )
    categories: list[str] = Field(description="of the employee record in force on as_of")
    current_level: int = Field(description="highest certified level, 0 when none")
    levels: list[LevelView]
    skills: list[SkillView]
    next_level: NextLevelView | None = Field(description="null at the top of the ladder")
    left_on: dt.date | None
    policy_version: str


class CategoryView(_View):
    """One staff category: active members and how many hold all it requires."""

    code: str
    name: str
    required: list[str]
    members: int
    compliant: int
    percent: float | None = Field(description="compliant / members × 100, null when empty")
    missing_by_skill: dict[str, int] = Field(description="members lacking each skill")


class CategoriesView(_View):
    """Category compliance of the employees active on `as_of` (today), by the skills held now."""

    as_of: dt.date
    policy_version: str
    categories: list[CategoryView]


def fiscal_label(fiscal_year: int) -> str | None:
    """令和 label of a fiscal year; None before the era began."""
    return reiwa_label(fiscal_year) if fiscal_year >= 2019 else None


def employee_view(catalog: Catalog, row: EmployeeRow, on: dt.date) -> EmployeeView:
    """The response body for one stored employee, as of `on` (the caller's today)."""
    facts, state = row.facts, row.state
    nxt = next_level(catalog, facts, state, on)
    return EmployeeView(
        employee_id=facts.employee_id,
        as_of=on,
        department_code=facts.department_on(on),
        categories=sorted(facts.categories_on(on)),
        current_level=state.highest_level,
        levels=[_level(lv) for lv in state.levels.values()],
        skills=[_skill(catalog, s) for s in state.skills.values()],
        next_level=None
        if nxt is None
        else NextLevelView(
            level=nxt.level,
            name=catalog.level_rule(nxt.level).name,
            missing=[
                MissingSkillView(
                    skill=m.skill, name=_skill_name(catalog, m.skill), courses=_courses(m.courses)
                )
                for m in nxt.missing
            ],
            nomination_missing=nxt.nomination_missing,
        ),
        left_on=facts.left_on(),
        policy_version=catalog.policy_version,
    )


def category_view(status: CategoryStatus) -> CategoryView:
    """One category's compliance summary."""
    members, compliant = len(status.members), len(status.compliant)
    lacking: dict[str, int] = {}
    for skills in status.missing_by_employee.values():
        for skill in skills:
            lacking[skill] = lacking.get(skill, 0) + 1
    return CategoryView(
        code=status.code,
        name=status.name,
        required=sorted(status.required),
        members=members,
        compliant=compliant,
        percent=round(compliant / members * 100, 1) if members else None,
        missing_by_skill=dict(sorted(lacking.items())),
    )


def counted_category_view(catalog: Catalog, code: str, counts: CategoryCounts) -> CategoryView:
    """One category's compliance summary from its counts (`dxtalent_contracts.memberships`):
    the same body `category_view` gives from its members."""
    members, compliant = counts.members, counts.members - counts.lacking
    return CategoryView(
        code=code,
        name=catalog.category_by_code[code].name,
        required=sorted(catalog.category_requirements(code)),
        members=members,
        compliant=compliant,
        percent=round(compliant / members * 100, 1) if members else None,
        missing_by_skill=dict(sorted(counts.missing)),
    )


def _level(level: CertifiedLevel) -> LevelView:
    return LevelView(
        level=level.level,
        certified_on=level.certified_on,
        fiscal_year=level.fiscal_year,
        fiscal_year_label=fiscal_label(level.fiscal_year),
        department_code=level.department_code,
        via_equivalence=level.via_equivalence,
        evidence=list(level.evidence),
    )


def _skill(catalog: Catalog, held: HeldSkill) -> SkillView:
    known = catalog.skill_by_code.get(held.skill)
    return SkillView(
        skill=held.skill,
        name=known.name if known else held.skill,
        area=known.area if known else "",
        course_id=held.course_id,
        acquired_on=held.acquired_on,
        evidence_event_id=held.evidence_fact_id,
    )


def _skill_name(catalog: Catalog, code: str) -> str:
    known = catalog.skill_by_code.get(code)
    return known.name if known else code


def _courses(courses: Sequence[Course]) -> list[CourseView]:
    return [CourseView(course_id=c.id, name=c.name, track=c.track) for c in courses]
