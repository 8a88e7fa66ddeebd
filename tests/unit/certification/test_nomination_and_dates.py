"""Nomination, certification dates, fiscal years and the department a level is recorded in."""

from __future__ import annotations

from dxtalent_certification.domain.evaluate import evaluate
from dxtalent_contracts.catalog import Policy, load_catalog
from dxtalent_contracts.events import LevelCertified
from tests.unit.certification.builders import L1_COURSES, L2_COURSES, Given, d, replay

CATALOG = load_catalog()


def test_never_nominated_staff_hold_skills_but_no_level() -> None:
    """Completions without any nomination: every skill, no level."""
    given = Given()
    given.record()
    given.completions([*L1_COURSES, *L2_COURSES], "2025-06-01")
    state = given.state(CATALOG)
    granted = {s for c in [*L1_COURSES, *L2_COURSES] for s in CATALOG.course_by_id[c].grants}
    assert set(state.skills) == granted
    assert state.levels == {}


def test_a_level_is_never_dated_before_the_first_nomination_year() -> None:
    """FY2024 completions, first nomination FY2025: certified on 2025-04-01, FY2025."""
    given = Given()
    given.record()
    given.completions(L1_COURSES, "2024-10-01")
    given.nomination(2025)
    level = given.state(CATALOG).levels[1]
    assert (level.certified_on, level.fiscal_year) == (d("2025-04-01"), 2025)


def test_the_floor_is_the_first_nomination_not_the_latest() -> None:
    """Nominated FY2024 and FY2026: the floor is 2024-04-01."""
    given = Given()
    given.nomination(2026)
    given.nomination(2024)
    given.completions(L1_COURSES, "2024-10-01")
    assert given.state(CATALOG).levels[1].certified_on == d("2024-10-01")


def test_a_completion_before_the_record_and_nomination_takes_effect_when_they_arrive() -> None:
    """Completions first, then the record, then the nomination: level 1 at the nomination."""
    given = Given()
    given.completions(L1_COURSES, "2025-06-01")
    given.record(department="D-KIKAKU")
    given.nomination(2025)
    _, state, steps = replay(CATALOG, given.facts)
    certified_at = [
        i for i, step in enumerate(steps) if any(isinstance(c, LevelCertified) for c in step)
    ]
    assert certified_at == [len(steps) - 1]
    assert state.levels[1].certified_on == d("2025-06-01")
    assert state.levels[1].department_code == "D-KIKAKU"
    assert state == given.state(CATALOG)


def test_the_level_records_the_department_effective_on_its_date() -> None:
    """Moved departments in October: level 1 (June) in D-A, level 2 (November) in D-B."""
    given = Given()
    given.record("D-A", "2023-04-01")
    given.record("D-B", "2025-10-01")
    given.nomination(2025, "D-A")
    given.completions(L1_COURSES, "2025-06-20")
    given.completions(L2_COURSES, "2025-11-01")
    levels = given.state(CATALOG).levels
    assert (levels[1].department_code, levels[2].department_code) == ("D-A", "D-B")


def test_a_record_effective_only_later_still_names_the_department() -> None:
    """The only record starts after the level's date: its department is used."""
    given = Given()
    given.record("D-LATE", "2026-04-01")
    given.nomination(2025, "D-NOMINATED")
    given.completions(L1_COURSES, "2025-06-20")
    assert given.state(CATALOG).levels[1].department_code == "D-LATE"


def test_without_a_record_the_nomination_names_the_department() -> None:
    """No record: the department of the nomination of that fiscal year, else the latest."""
    given = Given()
    given.nomination(2024, "D-2024")
    given.nomination(2025, "D-2025")
    given.completions(L1_COURSES, "2025-06-20")
    assert given.state(CATALOG).levels[1].department_code == "D-2025"
    given = Given()
    given.nomination(2024, "D-2024")
    given.completions(L1_COURSES, "2025-06-20")
    assert given.state(CATALOG).levels[1].department_code == "D-2024"


def test_with_no_record_and_no_nomination_the_department_is_unknown() -> None:
    """Nomination not required, nothing known about the employee: department None."""
    given = Given()
    given.completions(L1_COURSES, "2025-06-20")
    catalog = CATALOG.model_copy(update={"policy": Policy(nomination_required=False)})
    assert evaluate(catalog, given.employee_facts).levels[1].department_code is None


def test_march_thirty_first_closes_the_fiscal_year() -> None:
    """Certified on 2026-03-31: FY2025; on 2026-04-01: FY2026."""
    for on, fiscal_year in (("2026-03-31", 2025), ("2026-04-01", 2026)):
        given = Given()
        given.nomination(2025)
        given.completions(L1_COURSES, on)
        assert given.state(CATALOG).levels[1].fiscal_year == fiscal_year
