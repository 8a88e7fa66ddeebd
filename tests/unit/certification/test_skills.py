"""A skill is held when a course granting it was completed and that completion was not voided."""

from __future__ import annotations

from dxtalent_certification.domain.facts import Completion, Void
from dxtalent_certification.domain.state import HeldSkill
from dxtalent_contracts.catalog import load_catalog
from tests.unit.certification.builders import L1_COURSES, Given, d

CATALOG = load_catalog()


def test_a_completed_course_grants_its_skill_with_that_completion_as_evidence() -> None:
    """Completing DX-101 gives dx-basics and municipal-dx-basics, evidenced by it."""
    given = Given()
    completion = given.completion("DX-101", "2025-05-01")
    state = given.state(CATALOG)
    assert state.skills == {
        skill: HeldSkill(skill, "DX-101", d("2025-05-01"), completion.fact_id)
        for skill in ("dx-basics", "municipal-dx-basics")
    }


def test_an_unknown_course_grants_nothing() -> None:
    """A course id the catalog does not know gives no skill."""
    given = Given()
    given.completion("NOT-A-COURSE", "2025-05-01")
    assert given.state(CATALOG).skills == {}


def test_a_voided_completion_grants_nothing() -> None:
    """The only completion of a course, voided: the skill is not held."""
    given = Given()
    given.void(given.completion("DX-101", "2025-05-01"))
    assert given.state(CATALOG).skills == {}


def test_the_evidence_is_the_earliest_non_voided_completion() -> None:
    """Two completions granting one skill: the earlier one evidences it."""
    given = Given()
    given.completion("DX-101", "2025-07-01")
    earlier = given.completion("R6-DX", "2024-10-01")
    held = given.state(CATALOG).skills["dx-basics"]
    assert (held.course_id, held.evidence_fact_id) == ("R6-DX", earlier.fact_id)


def test_a_same_day_tie_is_broken_by_fact_id() -> None:
    """Two completions on one day: the smaller fact_id evidences the skill."""
    given = Given()
    first = given.completion("R6-DX", "2024-10-01")
    given.completion("DX-101", "2024-10-01")
    assert given.state(CATALOG).skills["dx-basics"].evidence_fact_id == first.fact_id


def test_voiding_one_of_two_completions_keeps_the_skill_with_the_other() -> None:
    """Void the earlier completion of DX-101: the later one evidences dx-basics."""
    given = Given()
    earlier = given.completion("DX-101", "2025-05-01")
    later = given.completion("DX-101", "2025-07-01")
    given.void(earlier)
    held = given.state(CATALOG).skills["dx-basics"]
    assert (held.acquired_on, held.evidence_fact_id) == (d("2025-07-01"), later.fact_id)


def test_a_void_matches_the_completion_by_its_fact_id_only() -> None:
    """The void's course_id is informative; the fact id decides what is voided."""
    given = Given()
    completion = given.completion("DX-101", "2025-05-01")
    given.facts.append(
        Void("void-x", given.employee_id, "OTHER-COURSE", completion.fact_id, "typo")
    )
    assert given.state(CATALOG).skills == {}


def test_a_void_of_an_unknown_completion_changes_nothing() -> None:
    """A void naming no known completion leaves every skill in place."""
    given = Given()
    given.completion("DX-101", "2025-05-01")
    before = given.state(CATALOG)
    given.void(Completion("never-seen", given.employee_id, "DX-101", d("2025-05-01")))
    assert given.state(CATALOG) == before


def test_leaving_removes_neither_skills_nor_levels() -> None:
    """Departures are for reports: what was earned stays earned."""
    given = Given()
    given.record()
    given.nomination(2025)
    given.completions(L1_COURSES, "2025-06-01")
    before = given.state(CATALOG)
    given.departure("2025-12-31")
    after = given.state(CATALOG)
    assert after == before
    assert list(after.levels) == [1]
