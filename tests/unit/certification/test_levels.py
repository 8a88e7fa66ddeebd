"""Level rules: ● skills, levels climbed in order, ★ duty skills, several levels on one fact."""

from __future__ import annotations

from dxtalent_certification.domain.evaluate import evaluate
from dxtalent_contracts.catalog import LevelRule, Policy, load_catalog
from dxtalent_contracts.events import LevelCertified
from tests.unit.certification.builders import (
    DUTY_COURSES,
    L1_COURSES,
    L2_COURSES,
    L3_COURSES,
    Given,
    d,
    replay,
)

CATALOG = load_catalog()
NO_POLICY = CATALOG.model_copy(
    update={
        "policy": Policy(
            nomination_required=False, nomination_floor=False, duty_skills_required=False
        )
    }
)


def nominated(fiscal_year: int = 2025, duty: tuple[str, ...] = ()) -> Given:
    """An employee with a record (and duty skills) and a nomination."""
    given = Given()
    given.record(duty=duty)
    given.nomination(fiscal_year)
    return given


def test_every_level_one_skill_certifies_level_one_on_the_last_of_them() -> None:
    """All ● skills of level 1 held: level 1, dated by the latest evidence."""
    given = nominated()
    given.completions(L1_COURSES[:-1], "2025-05-10")
    given.completion(L1_COURSES[-1], "2025-06-20")
    level = given.state(CATALOG).levels[1]
    assert (level.certified_on, level.fiscal_year, level.via_equivalence) == (
        d("2025-06-20"),
        2025,
        False,
    )
    assert {e.skill for e in level.evidence} == set(CATALOG.level_rule(1).required)


def test_one_missing_skill_means_no_level() -> None:
    """Seven of the eight level-1 skills: skills held, no level."""
    given = nominated()
    given.completions(L1_COURSES[1:], "2025-05-10")
    state = given.state(CATALOG)
    assert len(state.skills) == 7
    assert state.levels == {}


def test_levels_are_climbed_in_order() -> None:
    """Every level-2 skill but level 1 incomplete: no level 2."""
    given = nominated()
    given.completions(L1_COURSES[1:], "2025-05-10")
    given.completions(L2_COURSES, "2025-06-10")
    assert given.state(CATALOG).levels == {}


def test_one_fact_certifies_several_levels_in_order_each_on_its_own_date() -> None:
    """A late nomination certifies levels 1, 2, 3 at once, each dated by its own evidence."""
    given = Given()
    given.record()
    given.completions(L1_COURSES, "2025-05-10")
    given.completions(L2_COURSES, "2025-08-10")
    given.completions(L3_COURSES, "2025-11-10")
    nomination = given.nomination(2025)
    _, _, steps = replay(CATALOG, given.facts)
    certified = [c for c in steps[-1] if isinstance(c, LevelCertified)]
    assert [(c.level, c.certified_on) for c in certified] == [
        (1, d("2025-05-10")),
        (2, d("2025-08-10")),
        (3, d("2025-11-10")),
    ]
    assert steps[-1] == certified  # nothing else changed
    assert nomination.fiscal_year == 2025


def test_a_level_is_never_dated_before_the_level_below() -> None:
    """Level-2 skills held first, level 1 completed later: level 2 takes level 1's date."""
    given = nominated()
    given.completions(L2_COURSES, "2025-05-10")
    given.completions(L1_COURSES, "2025-09-01")
    levels = given.state(CATALOG).levels
    assert levels[1].certified_on == levels[2].certified_on == d("2025-09-01")


def test_level_two_evidence_is_what_level_two_adds() -> None:
    """Level 2's evidence lists the ● skills it adds over level 1, not level 1's again."""
    given = nominated()
    given.completions(L1_COURSES, "2025-05-10")
    given.completions(L2_COURSES, "2025-07-10")
    evidence = given.state(CATALOG).levels[2].evidence
    assert {e.skill for e in evidence} == CATALOG.skills_added_at(2)


def test_a_duty_skill_is_required_when_the_duties_call_for_it() -> None:
    """★ nocode-build in duty_skills: no level 3 until NC-BUILD is completed."""
    given = nominated(duty=("nocode-build",))
    given.completions([*L1_COURSES, *L2_COURSES, *L3_COURSES], "2025-06-01")
    assert list(given.state(CATALOG).levels) == [1, 2]
    given.completion(DUTY_COURSES["nocode-build"], "2025-12-01")
    level = given.state(CATALOG).levels[3]
    assert level.certified_on == d("2025-12-01")
    assert "nocode-build" in {e.skill for e in level.evidence}
    assert "rpa-ocr-build" not in {e.skill for e in level.evidence}


def test_level_three_without_duty_skills_needs_only_its_required_skills() -> None:
    """No duty skills: level 3 = level 2 + bpr-applied + security-applied."""
    given = nominated()
    given.completions([*L1_COURSES, *L2_COURSES, *L3_COURSES], "2025-06-01")
    level = given.state(CATALOG).levels[3]
    assert {e.skill for e in level.evidence} == {"bpr-applied", "security-applied"}


def test_duty_skills_come_from_the_record_in_force() -> None:
    """An older record listed nocode-build; the one in force since 2023 none: level 3 without."""
    given = nominated()
    given.record(effective="2022-04-01", duty=("nocode-build",))
    given.completions([*L1_COURSES, *L2_COURSES, *L3_COURSES], "2025-06-01")
    assert 3 in given.state(CATALOG).levels


def test_without_a_record_there_are_no_duty_skills() -> None:
    """No employee record at all: ★ skills are never required."""
    given = Given()
    given.nomination(2025)
    given.completions([*L1_COURSES, *L2_COURSES, *L3_COURSES], "2025-06-01")
    assert list(given.state(CATALOG).levels) == [1, 2, 3]


def test_duty_skills_are_ignored_when_the_policy_says_so() -> None:
    """duty_skills_required: false — ★ skills are never asked for."""
    given = nominated(duty=("nocode-build", "rpa-ocr-build"))
    given.completions([*L1_COURSES, *L2_COURSES, *L3_COURSES], "2025-06-01")
    assert 3 in evaluate(NO_POLICY, given.employee_facts).levels


def test_without_required_nominations_a_level_needs_only_its_skills() -> None:
    """nomination_required: false — level 1 from the skills alone, dated by them."""
    given = Given()
    given.completions(L1_COURSES, "2024-06-01")
    assert given.state(NO_POLICY).levels[1].certified_on == d("2024-06-01")


def test_without_the_floor_a_level_may_predate_the_nomination_year() -> None:
    """nomination_floor: false — FY2024 completions, FY2025 nomination: dated in FY2024."""
    catalog = CATALOG.model_copy(update={"policy": Policy(nomination_floor=False)})
    given = nominated(2025)
    given.completions(L1_COURSES, "2024-06-01")
    assert evaluate(catalog, given.employee_facts).levels[1].certified_on == d("2024-06-01")


def test_a_level_that_adds_nothing_is_certified_with_the_level_below() -> None:
    """A catalog whose level 2 adds no skill: level 2 on level 1's date."""
    rules = [
        r.model_copy(update={"required": CATALOG.level_rule(1).required}) for r in CATALOG.levels
    ]
    catalog = CATALOG.model_copy(update={"levels": rules[:2]})
    given = nominated()
    given.completions(L1_COURSES, "2025-06-01")
    levels = evaluate(catalog, given.employee_facts).levels
    assert levels[2].certified_on == levels[1].certified_on == d("2025-06-01")
    assert levels[2].evidence == ()


def test_a_level_with_no_skill_and_no_floor_has_no_date_and_is_not_certified() -> None:
    """A level-1 rule naming no skill is dated by the nomination floor, else not certified."""
    empty = LevelRule(level=1, name="empty", required=[])
    catalog = CATALOG.model_copy(update={"levels": [empty], "equivalences": []})
    given = nominated(2025)
    assert evaluate(catalog, given.employee_facts).levels[1].certified_on == d("2025-04-01")
    no_floor = catalog.model_copy(update={"policy": Policy(nomination_floor=False)})
    assert evaluate(no_floor, given.employee_facts).levels == {}
