"""One employee's facts: a set, and the look-ups the rules make on it."""

from __future__ import annotations

import pytest

from dxtalent_certification.domain.facts import Completion, EmployeeFacts, Nomination
from tests.unit.certification.builders import Given, d


def test_a_duplicate_fact_changes_nothing() -> None:
    """Adding a fact already known returns the very same facts."""
    given = Given()
    completion = given.completion("DX-101", "2025-05-01")
    facts = given.employee_facts
    assert facts.with_fact(completion) is facts
    assert EmployeeFacts.of(given.employee_id, [completion, completion]) == facts


def test_each_kind_of_fact_lands_in_its_own_set() -> None:
    """Records, nominations, completions, voids and departures are kept apart."""
    given = Given()
    given.record()
    given.nomination()
    completion = given.completion("DX-101", "2025-05-01")
    given.void(completion)
    given.departure("2026-03-31")
    facts = given.employee_facts
    sizes = [len(s) for s in (facts.records, facts.nominations, facts.completions)]
    assert sizes == [1, 1, 1]
    assert (len(facts.voids), len(facts.departures)) == (1, 1)


def test_a_fact_about_another_employee_is_refused() -> None:
    """Facts of one employee never mix with another's."""
    stranger = Completion("c-1", "E999", "DX-101", d("2025-05-01"))
    with pytest.raises(ValueError, match="E999"):
        EmployeeFacts("E000123").with_fact(stranger)


def test_the_record_in_force_breaks_a_same_day_tie_by_fact_id() -> None:
    """Two records effective on one day: the greatest fact_id is in force."""
    given = Given()
    given.record("D-A", "2025-04-01", fact_id="rec-b")
    given.record("D-B", "2025-04-01", fact_id="rec-a")
    in_force = given.employee_facts.record_on(d("2025-04-01"))
    assert in_force is not None
    assert in_force.department_code == "D-A"


def test_duties_and_categories_of_a_day_come_from_the_record_in_force_then() -> None:
    """A record effective later changes nothing before its day; before any record, none."""
    given = Given()
    given.record("D-A", "2024-04-01", duty=("nocode-build",), categories=("dx-leader",))
    given.record("D-A", "2026-04-01", duty=(), categories=("section-chief",))
    facts = given.employee_facts
    assert facts.duty_skills_on(d("2026-03-31")) == {"nocode-build"}
    assert facts.duty_skills_on(d("2026-04-01")) == frozenset()
    assert facts.categories_on(d("2026-03-31")) == {"dx-leader"}
    assert facts.categories_on(d("2026-04-01")) == {"section-chief"}
    assert facts.duty_skills_on(d("2024-03-31")) == frozenset()
    assert facts.categories_on(d("2024-03-31")) == frozenset()


def test_the_department_on_a_day_comes_from_the_record_effective_then() -> None:
    """Effective-dated records: the latest on or before the day applies."""
    given = Given()
    given.record("D-A", "2023-04-01")
    given.record("D-B", "2025-10-01")
    facts = given.employee_facts
    assert facts.department_on(d("2025-09-30")) == "D-A"
    assert facts.department_on(d("2025-10-01")) == "D-B"
    assert facts.department_on(d("2022-01-01")) == "D-A"  # before any record: the earliest


def test_without_records_the_department_comes_from_the_nominations() -> None:
    """No record: the nomination in force (from April 1 of its year), else the earliest."""
    given = Given()
    given.nomination(2024, "D-OLD")
    given.nomination(2026, "D-NEW")
    facts = given.employee_facts
    assert facts.department_on(d("2023-06-01")) == "D-OLD"
    assert facts.department_on(d("2025-06-01")) == "D-OLD"  # FY2026's is not in force yet
    assert facts.department_on(d("2026-04-01")) == "D-NEW"
    assert EmployeeFacts("E000123").department_on(d("2025-06-01")) is None


def test_the_earliest_departure_is_when_the_employee_left() -> None:
    """Departures are facts too; the first one is the leaving date."""
    given = Given()
    assert given.employee_facts.left_on() is None
    given.departure("2026-06-30")
    given.departure("2026-03-31")
    assert given.employee_facts.left_on() == d("2026-03-31")


def test_first_nomination_year_is_the_smallest_fiscal_year() -> None:
    """Nominations arrive in any order; the first is the earliest fiscal year."""
    facts = EmployeeFacts.of(
        "E1", [Nomination("n2", "E1", 2026, "D"), Nomination("n1", "E1", 2024, "D")]
    )
    assert facts.first_nomination_year() == 2024
