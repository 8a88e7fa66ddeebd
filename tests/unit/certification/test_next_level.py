"""What the next level still asks for, and which courses grant it."""

from __future__ import annotations

from dxtalent_certification.domain.next_level import next_level
from dxtalent_contracts.catalog import load_catalog
from tests.unit.certification.builders import (
    DUTY_COURSES,
    L1_COURSES,
    L2_COURSES,
    L3_COURSES,
    Given,
    d,
)

CATALOG = load_catalog()
TODAY = d("2026-01-15")


def test_a_newcomer_needs_every_level_one_skill_and_a_nomination() -> None:
    """Nothing done: level 1, all its ● skills with their courses, nomination missing."""
    given = Given()
    upcoming = next_level(CATALOG, given.employee_facts, given.state(CATALOG), TODAY)
    assert upcoming is not None
    assert upcoming.level == 1
    assert set(upcoming.missing_skills) == set(CATALOG.level_rule(1).required)
    assert upcoming.nomination_missing
    by_skill = {m.skill: [c.id for c in m.courses] for m in upcoming.missing}
    assert by_skill["dx-basics"] == ["DX-101"]  # R6-DX ran only in FY2024


def test_after_level_one_the_next_level_lists_what_level_two_adds() -> None:
    """Level 1 certified, one level-2 course done: the four other level-2 skills."""
    given = Given()
    given.nomination(2025)
    given.completions([*L1_COURSES, L2_COURSES[0]], "2025-06-01")
    upcoming = next_level(CATALOG, given.employee_facts, given.state(CATALOG), TODAY)
    assert upcoming is not None
    assert (upcoming.level, upcoming.nomination_missing) == (2, False)
    assert set(upcoming.missing_skills) == CATALOG.skills_added_at(2) - {"bpr-basic"}


def test_the_next_level_includes_duty_skills_of_the_employee() -> None:
    """At level 2 with ★ rpa-ocr-build among the duties: it is missing, with RPA-BUILD."""
    given = Given()
    given.record(duty=("rpa-ocr-build",))
    given.nomination(2025)
    given.completions([*L1_COURSES, *L2_COURSES, *L3_COURSES], "2025-06-01")
    upcoming = next_level(CATALOG, given.employee_facts, given.state(CATALOG), TODAY)
    assert upcoming is not None
    assert upcoming.level == 3
    [missing] = upcoming.missing
    assert (missing.skill, [c.id for c in missing.courses]) == (
        "rpa-ocr-build",
        [DUTY_COURSES["rpa-ocr-build"]],
    )


def test_skills_without_a_nomination_leave_only_the_nomination_missing() -> None:
    """Every level-1 skill held, never nominated: nothing to learn, a nomination to get."""
    given = Given()
    given.completions(L1_COURSES, "2025-06-01")
    upcoming = next_level(CATALOG, given.employee_facts, given.state(CATALOG), TODAY)
    assert upcoming is not None
    assert (upcoming.level, upcoming.missing, upcoming.nomination_missing) == (1, (), True)


def test_at_the_top_level_there_is_no_next_level() -> None:
    """Level 3 certified: None."""
    given = Given()
    given.nomination(2025)
    given.completions([*L1_COURSES, *L2_COURSES, *L3_COURSES], "2025-06-01")
    assert next_level(CATALOG, given.employee_facts, given.state(CATALOG), TODAY) is None


def test_a_course_is_offered_until_its_offering_period_ends() -> None:
    """On 2025-03-31 R6-DX (FY2024 only) still grants dx-basics; on 2025-04-01 it is gone."""
    given = Given()
    facts, state = given.employee_facts, given.state(CATALOG)
    courses = {}
    for day in ("2025-03-31", "2025-04-01"):
        upcoming = next_level(CATALOG, facts, state, d(day))
        assert upcoming is not None
        courses[day] = {m.skill: [c.id for c in m.courses] for m in upcoming.missing}["dx-basics"]
    assert courses == {"2025-03-31": ["DX-101", "R6-DX"], "2025-04-01": ["DX-101"]}


def test_the_duty_skills_asked_for_are_those_of_the_record_in_force_on_the_day() -> None:
    """★ rpa-ocr-build from a record effective 2026-04-01: not asked before, asked from then."""
    given = Given()
    given.record(effective="2023-04-01")
    given.record(effective="2026-04-01", duty=("rpa-ocr-build",))
    given.nomination(2025)
    given.completions([*L1_COURSES, *L2_COURSES], "2025-06-01")
    facts, state = given.employee_facts, given.state(CATALOG)
    before = next_level(CATALOG, facts, state, d("2026-03-31"))
    after = next_level(CATALOG, facts, state, d("2026-04-01"))
    assert before is not None
    assert after is not None
    assert set(after.missing_skills) - set(before.missing_skills) == {"rpa-ocr-build"}
