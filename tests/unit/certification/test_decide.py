"""decide / changes / evolve: given facts, when a fact arrives, then these domain events."""

from __future__ import annotations

import pytest

from dxtalent_certification.domain.decide import changes, decide, evolve
from dxtalent_certification.domain.facts import Completion
from dxtalent_certification.domain.state import CertificationState
from dxtalent_contracts.catalog import load_catalog
from dxtalent_contracts.events import (
    Evidence,
    LevelCertified,
    LevelRevoked,
    SkillAcquired,
    SkillRevoked,
)
from tests.unit.certification.builders import (
    EQUIVALENCE_COURSES,
    L1_COURSES,
    L2_COURSES,
    L3_COURSES,
    Given,
    d,
    replay,
)

CATALOG = load_catalog()


def leader_at_level_three() -> tuple[Given, dict[str, Completion]]:
    """Nominated FY2025, levels 1-3 completed; returns the completions by course."""
    given = Given()
    given.record()
    given.nomination(2025)
    done = given.completions(L1_COURSES, "2025-05-01")
    done += given.completions(L2_COURSES, "2025-08-01")
    done += given.completions(L3_COURSES, "2025-11-01")
    return given, {c.course_id: c for c in done}


def test_a_first_completion_acquires_its_skill() -> None:
    """Given nothing, when ICT-101 is completed, then SkillAcquired(ict-basics)."""
    given = Given()
    completion = given.completion("ICT-101", "2025-05-01")
    _, _, [emitted] = replay(CATALOG, given.facts)
    assert emitted == [
        SkillAcquired(
            employee_id=given.employee_id,
            skill="ict-basics",
            course_id="ICT-101",
            acquired_on=d("2025-05-01"),
            evidence_event_id=completion.fact_id,
        )
    ]


def test_level_certified_carries_evidence_department_and_policy_version() -> None:
    """The completion that completes level 1 emits the skill, then LevelCertified in full."""
    given = Given()
    given.record("D-SOUMU")
    given.nomination(2025)
    given.completions(L1_COURSES[:-1], "2025-05-01")
    last = given.completion(L1_COURSES[-1], "2025-06-01")
    _, state, steps = replay(CATALOG, given.facts)
    acquired, certified = steps[-1]
    assert isinstance(acquired, SkillAcquired)
    assert isinstance(certified, LevelCertified)
    assert (certified.level, certified.certified_on, certified.fiscal_year) == (
        1,
        d("2025-06-01"),
        2025,
    )
    assert certified.department_code == "D-SOUMU"
    assert certified.policy_version == CATALOG.policy_version == "hirakata-2025.2"
    assert (
        Evidence(
            skill="leadership",
            course_id="WS-101",
            completed_on=d("2025-06-01"),
            event_id=last.fact_id,
        )
        in certified.evidence
    )
    assert tuple(certified.evidence) == state.levels[1].evidence


def test_a_void_revokes_the_skill_the_level_and_every_level_above() -> None:
    """Void the only ICT-101: SkillRevoked, then LevelRevoked 3, 2, 1 with reasons."""
    given, done = leader_at_level_three()
    facts, state, _ = replay(CATALOG, given.facts)
    void = given.void(done["ICT-101"])
    _, after, emitted = decide(CATALOG, facts, state, void)
    assert after.levels == {}
    skill_revoked, *levels_revoked = emitted
    assert isinstance(skill_revoked, SkillRevoked)
    assert skill_revoked.skill == "ict-basics"
    assert done["ICT-101"].fact_id in skill_revoked.reason
    assert "ICT-101" in skill_revoked.reason
    revoked = [c for c in levels_revoked if isinstance(c, LevelRevoked)]
    assert revoked == levels_revoked
    assert [c.level for c in revoked] == [3, 2, 1]
    assert {c.caused_by for c in revoked} == {void.fact_id}
    assert all("ict-basics" in c.reason for c in revoked)
    assert revoked[0].reason.startswith("level 3 rests on level 1")
    assert revoked[2].reason == "level 1: missing skill(s) ict-basics"
    assert skill_revoked.reason.endswith("(recorded in error)")  # the void's own reason
    [bare, *_] = changes(CATALOG, state, after, void.fact_id)
    assert isinstance(bare, SkillRevoked)
    assert "recorded in error" not in bare.reason


def test_voiding_one_of_two_completions_re_dates_the_skill_and_the_level() -> None:
    """A second ICT-101 later: voiding the first re-evidences ict-basics and re-dates level 1."""
    given = Given()
    given.nomination(2025)
    completions = given.completions(L1_COURSES, "2025-05-01")
    later = given.completion("ICT-101", "2025-07-01")
    facts, state, _ = replay(CATALOG, given.facts)
    _, _, emitted = decide(CATALOG, facts, state, given.void(completions[1]))
    acquired, certified = emitted
    assert isinstance(acquired, SkillAcquired)
    assert acquired.evidence_event_id == later.fact_id
    assert isinstance(certified, LevelCertified)
    assert certified.certified_on == d("2025-07-01")


def test_one_fact_certifies_several_levels_lowest_first() -> None:
    """The last level-1 course when level-2 skills are already held: skill, level 1, level 2."""
    given = Given()
    given.nomination(2025)
    given.completions(L2_COURSES, "2025-05-01")
    given.completions(L1_COURSES[:-1], "2025-05-01")
    given.completion(L1_COURSES[-1], "2025-09-01")
    _, _, steps = replay(CATALOG, given.facts)
    assert [type(c).__name__ for c in steps[-1]] == [
        "SkillAcquired",
        "LevelCertified",
        "LevelCertified",
    ]
    levels = [c for c in steps[-1] if isinstance(c, LevelCertified)]
    assert [(c.level, c.certified_on) for c in levels] == [
        (1, d("2025-09-01")),
        (2, d("2025-09-01")),
    ]


def test_a_duplicate_fact_decides_nothing() -> None:
    """The same completion twice: the second changes neither facts nor state, and emits none."""
    given = Given()
    completion = given.completion("DX-101", "2025-05-01")
    facts, state, _ = replay(CATALOG, given.facts)
    again_facts, again_state, emitted = decide(CATALOG, facts, state, completion)
    assert (again_facts, again_state, emitted) == (facts, state, [])


def test_a_new_record_moving_the_level_s_department_re_sends_the_level() -> None:
    """An earlier-effective record arrives later: LevelCertified again, new department."""
    given = Given()
    given.record("D-NEW", "2025-10-01")
    given.nomination(2025)
    given.completions(L1_COURSES, "2025-06-01")
    facts, state, _ = replay(CATALOG, given.facts)
    assert state.levels[1].department_code == "D-NEW"
    _, _, emitted = decide(CATALOG, facts, state, given.record("D-OLD", "2023-04-01"))
    assert [(type(c), getattr(c, "department_code", None)) for c in emitted] == [
        (LevelCertified, "D-OLD")
    ]


def test_a_record_effective_later_adding_a_duty_skill_revokes_nothing() -> None:
    """Level 3 on 2025-11-01; a record effective 2026-04-01 adds ★ nocode-build: no change."""
    given, _ = leader_at_level_three()
    facts, state, _ = replay(CATALOG, given.facts)
    record = given.record(effective="2026-04-01", duty=("nocode-build",))
    new_facts, after, emitted = decide(CATALOG, facts, state, record)
    assert (emitted, after) == ([], state)
    assert new_facts.duty_skills_on(d("2026-04-01")) == {"nocode-build"}


def test_a_late_record_effective_before_the_level_revokes_it_naming_the_duty_skill() -> None:
    """A record effective before level 3's date, learnt late, asks ★ nocode-build: revoked."""
    given, _ = leader_at_level_three()
    facts, state, _ = replay(CATALOG, given.facts)
    record = given.record(effective="2025-10-01", duty=("nocode-build",))
    _, after, emitted = decide(CATALOG, facts, state, record)
    assert len(emitted) == 1
    revoked = emitted[0]
    assert isinstance(revoked, LevelRevoked)
    assert (revoked.level, revoked.caused_by) == (3, record.fact_id)
    assert revoked.reason == "level 3: missing skill(s) nocode-build"
    without_facts = changes(CATALOG, state, after, record.fact_id)
    assert isinstance(without_facts[0], LevelRevoked)
    assert "no longer holds" in without_facts[0].reason


def test_a_departure_learnt_late_revokes_levels_dated_on_or_after_it() -> None:
    """Levels 2, 3 on 2025-08-01, 11-01; then left_on 2025-08-01 arrives: 3, 2 revoked."""
    given, _ = leader_at_level_three()
    facts, state, _ = replay(CATALOG, given.facts)
    departure = given.departure("2025-08-01")
    _, after, emitted = decide(CATALOG, facts, state, departure)
    assert list(after.levels) == [1]
    assert [(type(c), getattr(c, "level", None)) for c in emitted] == [
        (LevelRevoked, 3),
        (LevelRevoked, 2),
    ]
    assert emitted[1] == LevelRevoked(
        employee_id=given.employee_id,
        level=2,
        reason="level 2: the employee left on 2025-08-01, before its rule held",
        caused_by=departure.fact_id,
    )


def test_losing_the_equivalence_says_so() -> None:
    """Void an FY2024 course of an equivalence-only level 1: the reason names the equivalence."""
    given = Given()
    given.nomination(2024)
    completions = given.completions(EQUIVALENCE_COURSES, "2024-10-01")
    facts, state, _ = replay(CATALOG, given.facts)
    _, _, emitted = decide(CATALOG, facts, state, given.void(completions[0]))
    revoked = [c for c in emitted if isinstance(c, LevelRevoked)]
    assert len(revoked) == 1
    assert "equivalence" in revoked[0].reason
    assert "dx-basics" in revoked[0].reason


def test_evolve_folds_each_kind_of_change() -> None:
    """Folding a history's changes with evolve gives the evaluated state."""
    given, done = leader_at_level_three()
    given.void(done["SEC-301"])
    _, state, steps = replay(CATALOG, given.facts)
    folded = CertificationState.empty(given.employee_id)
    for step in steps:
        for change in step:
            folded = evolve(folded, change)
    assert folded == state == given.state(CATALOG)
    assert list(folded.levels) == [1, 2]


def test_states_and_changes_of_different_employees_do_not_mix() -> None:
    """changes and evolve refuse another employee's state or event."""
    mine, theirs = CertificationState.empty("E1"), CertificationState.empty("E2")
    with pytest.raises(ValueError, match="E2"):
        changes(CATALOG, mine, theirs, "fact-1")
    revoked = SkillRevoked(employee_id="E2", skill="dx-basics", reason="test")
    with pytest.raises(ValueError, match="E2"):
        evolve(mine, revoked)
