"""Each rule is judged with the facts about its own day: records in force, departures, periods."""

from __future__ import annotations

from dxtalent_certification.domain.categories import staff_member
from dxtalent_certification.domain.evaluate import evaluate
from dxtalent_contracts.catalog import load_catalog
from tests.unit.certification.builders import (
    DUTY_COURSES,
    EQUIVALENCE_COURSES,
    L1_COURSES,
    L2_COURSES,
    L3_COURSES,
    Given,
    d,
)

CATALOG = load_catalog()
NC_BUILD = DUTY_COURSES["nocode-build"]


def level_three_leader(duty_then: tuple[str, ...] = ()) -> Given:
    """Recorded 2023 with `duty_then`, nominated FY2025, levels 1-3 completed in FY2025."""
    given = Given()
    given.record(effective="2023-04-01", duty=duty_then)
    given.nomination(2025)
    given.completions(L1_COURSES, "2025-05-01")
    given.completions(L2_COURSES, "2025-08-01")
    given.completions(L3_COURSES, "2025-11-01")
    return given


def test_a_record_effective_years_later_never_revokes_an_earned_level() -> None:
    """Level 3 on 2025-11-01; a record effective 2027-04-01 asks ★ nocode-build: level 3 stays."""
    given = level_three_leader()
    before = given.state(CATALOG)
    given.record(effective="2027-04-01", duty=("nocode-build",))
    after = given.state(CATALOG)
    assert after == before
    assert after.levels[3].certified_on == d("2025-11-01")


def test_a_new_duty_asks_for_its_star_skill_for_a_level_not_yet_certified() -> None:
    """Level 2 in FY2025; ★ nocode-build from 2026-04-01; level 3 waits for NC-BUILD."""
    given = Given()
    given.record(effective="2023-04-01")
    given.record(effective="2026-04-01", duty=("nocode-build",))
    given.nomination(2025)
    given.completions([*L1_COURSES, *L2_COURSES], "2025-06-01")
    given.completions(L3_COURSES, "2026-06-01")
    assert list(given.state(CATALOG).levels) == [1, 2]
    given.completion(NC_BUILD, "2026-09-01")
    level = given.state(CATALOG).levels[3]
    assert level.certified_on == d("2026-09-01")
    assert "nocode-build" in {e.skill for e in level.evidence}


def test_the_star_skill_asked_is_that_of_the_record_in_force_when_the_rest_is_done() -> None:
    """L3 skills done 2025-11-01 while a record in force asks ★; it is dropped 2026-04-01."""
    given = level_three_leader(duty_then=("nocode-build",))
    assert list(given.state(CATALOG).levels) == [1, 2]
    given.record(effective="2026-04-01")  # the new duties no longer call for it
    level = given.state(CATALOG).levels[3]
    assert level.certified_on == d("2026-04-01")
    assert {e.skill for e in level.evidence} == CATALOG.skills_added_at(3)


def test_a_late_record_effective_earlier_is_a_fact_about_the_past() -> None:
    """Learnt after level 3: a record effective 2025-10-01 asked ★ nocode-build, done 12-01."""
    given = level_three_leader()
    given.completion(NC_BUILD, "2025-12-01")
    assert given.state(CATALOG).levels[3].certified_on == d("2025-11-01")
    given.record(effective="2025-10-01", duty=("nocode-build",))
    level = given.state(CATALOG).levels[3]
    assert level.certified_on == d("2025-12-01")
    assert "nocode-build" in {e.skill for e in level.evidence}


def test_without_a_record_in_force_there_are_no_duty_skills() -> None:
    """The only record (★ nocode-build) takes effect after level 3's day: it asks nothing."""
    given = Given()
    given.nomination(2025)
    given.completions([*L1_COURSES, *L2_COURSES, *L3_COURSES], "2025-06-01")
    given.record(effective="2025-07-01", duty=("nocode-build",))
    assert given.state(CATALOG).levels[3].certified_on == d("2025-06-01")


def test_a_record_not_yet_in_force_changes_no_category_today() -> None:
    """Today a section chief; a record effective next April makes them an executive: not yet."""
    given = Given()
    given.record(effective="2024-04-01", categories=("section-chief",))
    given.record(effective="2026-04-01", categories=("executive",))
    facts, state = given.employee_facts, given.state(CATALOG)
    assert staff_member(facts, state, d("2026-03-31")).categories == {"section-chief"}
    assert staff_member(facts, state, d("2026-04-01")).categories == {"executive"}


def test_a_skill_counts_for_a_category_from_the_day_it_was_acquired() -> None:
    """MGT-DX completed 2025-10-01: not yet held on 09-30, held on 10-01."""
    given = Given()
    given.record(effective="2024-04-01", categories=("executive",))
    given.completion("MGT-DX", "2025-10-01")
    facts, state = given.employee_facts, given.state(CATALOG)
    assert staff_member(facts, state, d("2025-09-30")).skills == frozenset()
    assert staff_member(facts, state, d("2025-10-01")).skills == {"municipal-dx-basics"}


def test_no_level_is_certified_on_or_after_left_on() -> None:
    """Left on 2025-08-01 (first day no longer employed): level-1 courses that day count not."""
    given = Given()
    given.record()
    given.nomination(2025)
    given.completions(L1_COURSES, "2025-08-01")
    given.departure("2025-08-01")
    assert given.state(CATALOG).levels == {}


def test_a_completion_after_leaving_certifies_nothing_above_the_levels_before() -> None:
    """Level 1 on 2025-06-01, left 2025-09-01, level-2 courses done 2025-10-01: level 1 only."""
    given = Given()
    given.record()
    given.nomination(2025)
    given.completions(L1_COURSES, "2025-06-01")
    given.departure("2025-09-01")
    given.completions([*L2_COURSES, *L3_COURSES], "2025-10-01")
    state = given.state(CATALOG)
    assert list(state.levels) == [1]
    assert state.levels[1].certified_on == d("2025-06-01")
    assert "bpr-basic" in state.skills  # skills are facts: the departure removes none


def test_the_day_before_left_on_still_counts() -> None:
    """Left on 2025-08-01: the last level-1 course on 07-31 certifies level 1 that day."""
    given = Given()
    given.record()
    given.nomination(2025)
    given.completions(L1_COURSES, "2025-07-31")
    given.departure("2025-08-01")
    assert given.state(CATALOG).levels[1].certified_on == d("2025-07-31")


def test_the_nomination_floor_on_or_after_left_on_gives_no_level() -> None:
    """Skills from FY2024, nominated FY2025, left 2025-04-01: the floor is too late."""
    given = Given()
    given.record()
    given.completions(L1_COURSES, "2024-10-01")
    given.nomination(2025)
    given.departure("2025-04-01")
    assert given.state(CATALOG).levels == {}


def test_fy2024_courses_completed_outside_fy2024_grant_nothing() -> None:
    """R6-DX, R6-DSGN, R6-DATA dated in FY2026: no skill, no level-1 equivalence."""
    given = Given()
    given.record()
    given.nomination(2026)
    given.completions(EQUIVALENCE_COURSES, "2026-06-01")
    state = given.state(CATALOG)
    assert (dict(state.skills), dict(state.levels)) == ({}, {})


def test_fy2024_courses_on_the_last_day_of_fy2024_still_count() -> None:
    """The offering period includes its last day: completed 2025-03-31, level 1 via them."""
    given = Given()
    given.nomination(2024)
    given.completions(EQUIVALENCE_COURSES, "2025-03-31")
    level = evaluate(CATALOG, given.employee_facts).levels[1]
    assert (level.certified_on, level.via_equivalence) == (d("2025-03-31"), True)
