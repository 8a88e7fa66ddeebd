"""The demo's oracle places employees in departments exactly as the reporting service does."""

from __future__ import annotations

import datetime as dt

from dxtalent.expected import department_counts, standings
from dxtalent_certification.domain.evaluate import evaluate
from dxtalent_certification.domain.facts import EmployeeFacts, EmployeeRecord, Fact, Nomination
from dxtalent_contracts.catalog import load_catalog
from dxtalent_reporting.domain.progress import progress_by_department
from dxtalent_reporting.domain.standings import assemble_standings
from tests.unit.certification.builders import L1_COURSES, Given

CATALOG = load_catalog()
YEAR_END = dt.date(2026, 3, 31)


def leader(employee_id: str, *records: tuple[str, str, str]) -> EmployeeFacts:
    """Nominated FY2025 in D-NOM, level 1 in June 2025, with (fact_id, effective, department)."""
    given = Given(employee_id)
    given.nomination(2025, "D-NOM")
    given.completions(L1_COURSES, "2025-06-01")
    for fact_id, effective, department in records:
        given.record(department, effective, fact_id=fact_id)
    return given.employee_facts


def test_a_nominated_leader_without_a_record_counts_in_the_nomination_s_department() -> None:
    """No HR record: the oracle, like reporting, places the leader in D-NOM, not 'unknown'."""
    facts = {"E1": leader("E1")}
    states = {e: evaluate(CATALOG, f) for e, f in facts.items()}
    [standing] = standings(facts, states)
    assert standing.department_on(YEAR_END) == "D-NOM"
    served = assemble_standings([], [], [("E1", 1, dt.date(2025, 6, 1), "D-NOM")], [])
    assert served[0].department_on(YEAR_END) == "D-NOM"
    by_department = progress_by_department(CATALOG, 2025, standings(facts, states))
    assert list(department_counts(by_department)) == ["D-NOM"]


def test_the_oracle_keeps_the_record_reporting_keeps_for_a_day() -> None:
    """Two records effective the same day: the greatest fact id, as the read model keeps it."""
    facts = {"E1": leader("E1", ("rec-b", "2025-04-01", "D-A"), ("rec-a", "2025-04-01", "D-Z"))}
    states = {e: evaluate(CATALOG, f) for e, f in facts.items()}
    [standing] = standings(facts, states)
    assert standing.records == ((dt.date(2025, 4, 1), "D-A"),)
    assert standing.department_on(YEAR_END) == "D-A"


def test_only_employees_the_read_model_knows_have_a_standing() -> None:
    """Completions alone leave no row in reporting's read model, so no standing either."""
    only_skills: list[Fact] = []
    given = Given("E2")
    given.completions(L1_COURSES, "2025-06-01")
    only_skills += given.facts
    recorded = EmployeeRecord("r1", "E3", "D-B", frozenset(), frozenset(), dt.date(2025, 4, 1))
    facts = {
        "E2": EmployeeFacts.of("E2", only_skills),
        "E3": EmployeeFacts.of("E3", [recorded, Nomination("n1", "E3", 2025, "D-B")]),
    }
    states = {e: evaluate(CATALOG, f) for e, f in facts.items()}
    assert [s.employee_id for s in standings(facts, states)] == ["E3"]
