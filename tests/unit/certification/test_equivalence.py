"""Level-1 equivalence: the FY2024 training (R6-DX, R6-DSGN, R6-DATA) certifies level 1."""

from __future__ import annotations

from dxtalent_contracts.catalog import load_catalog
from tests.unit.certification.builders import (
    EQUIVALENCE_COURSES,
    L1_BEYOND_EQUIVALENCE,
    L1_COURSES,
    L2_COURSES,
    Given,
    d,
)

CATALOG = load_catalog()


def fy2024_trainee() -> Given:
    """Nominated in FY2024, took the three FY2024 courses on three dates."""
    given = Given()
    given.record()
    given.nomination(2024)
    for course, on in zip(
        EQUIVALENCE_COURSES, ("2024-07-01", "2024-09-01", "2024-11-15"), strict=True
    ):
        given.completion(course, on)
    return given


def test_the_three_fy2024_courses_certify_level_one() -> None:
    """All three FY2024 courses: level 1 via the equivalence, on the last of them."""
    level = fy2024_trainee().state(CATALOG).levels[1]
    assert level.via_equivalence
    assert (level.certified_on, level.fiscal_year) == (d("2024-11-15"), 2024)
    assert sorted(e.course_id for e in level.evidence) == sorted(EQUIVALENCE_COURSES)


def test_each_fy2024_course_also_grants_its_one_skill() -> None:
    """R6-DX, R6-DSGN, R6-DATA grant dx-basics, design-basic, data-basic."""
    skills = fy2024_trainee().state(CATALOG).skill_codes
    assert skills == {"dx-basics", "design-basic", "data-basic"}


def test_an_incomplete_equivalence_certifies_nothing() -> None:
    """Two of the three FY2024 courses: no level."""
    given = Given()
    given.nomination(2024)
    given.completions(EQUIVALENCE_COURSES[:2], "2024-07-01")
    assert given.state(CATALOG).levels == {}


def test_after_the_equivalence_level_two_asks_only_for_what_it_adds() -> None:
    """FY2024 trainee + the level-2 courses: level 2, without retaking level-1 material."""
    given = fy2024_trainee()
    given.completions(L2_COURSES, "2025-09-01")
    state = given.state(CATALOG)
    assert list(state.levels) == [1, 2]
    assert (state.levels[2].certified_on, state.levels[2].fiscal_year) == (d("2025-09-01"), 2025)
    assert "leadership" not in state.skill_codes


def test_fy2024_trainees_nominated_in_fy2025_are_certified_in_fy2025() -> None:
    """The nomination floor applies to the equivalence too: first nomination FY2025."""
    given = Given()
    given.nomination(2025)
    given.completions(EQUIVALENCE_COURSES, "2024-10-01")
    level = given.state(CATALOG).levels[1]
    assert (level.certified_on, level.fiscal_year) == (d("2025-04-01"), 2025)


def test_when_both_paths_hold_the_earlier_one_dates_level_one() -> None:
    """Skills complete before the equivalence: the skills path dates level 1."""
    given = Given()
    given.nomination(2024)
    given.completions(L1_COURSES, "2024-06-01")
    given.completions(EQUIVALENCE_COURSES, "2024-10-01")
    level = given.state(CATALOG).levels[1]
    assert (level.certified_on, level.via_equivalence) == (d("2024-06-01"), False)


def test_a_tie_between_the_paths_goes_to_the_skills() -> None:
    """Both paths hold on the same date: the skills path is the one recorded."""
    given = Given()
    given.nomination(2024)
    given.completions(EQUIVALENCE_COURSES, "2024-06-01")
    given.completions(L1_BEYOND_EQUIVALENCE, "2024-06-01")
    assert not given.state(CATALOG).levels[1].via_equivalence


def test_the_equivalence_uses_each_course_s_earliest_completion() -> None:
    """R6-DX completed twice: the earlier completion is the evidence."""
    given = fy2024_trainee()
    given.completion("R6-DX", "2024-12-01")
    level = given.state(CATALOG).levels[1]
    dates = {e.course_id: e.completed_on for e in level.evidence}
    assert dates["R6-DX"] == d("2024-07-01")
    assert level.certified_on == d("2024-11-15")
