"""What the system must end up showing, computed by the pure core straight from inbound facts.

The demo prints whether the running services agree with it, and the end-to-end tests assert
that they do: the oracle shares the domain core but none of the adapters, stores or brokers.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any

from dxtalent_certification.domain.evaluate import evaluate
from dxtalent_certification.domain.facts import (
    Completion,
    Departure,
    EmployeeFacts,
    EmployeeRecord,
    Fact,
    Nomination,
    Void,
)
from dxtalent_certification.domain.state import CertificationState
from dxtalent_contracts.catalog import Catalog
from dxtalent_contracts.inbound import (
    CompletionVoidedEvent,
    CourseCompletedEvent,
    EmployeeLeftEvent,
    EmployeeUpsertedEvent,
    InboundEvent,
    LeaderNominatedEvent,
)
from dxtalent_enrollment.domain import fact_event_id
from dxtalent_reporting.domain.progress import (
    Progress,
    Standing,
    progress_by_department,
    target_progress,
)
from dxtalent_reporting.domain.standings import assemble_standings


def to_fact(event: InboundEvent) -> Fact | None:
    """The certification fact an inbound event becomes (None: no bearing on certification)."""
    recorded_id = fact_event_id(event.source, event.id)
    match event:
        case EmployeeUpsertedEvent(data=d):
            return EmployeeRecord(
                fact_id=recorded_id,
                employee_id=d.employee_id,
                department_code=d.department_code,
                categories=frozenset(d.categories),
                duty_skills=frozenset(d.duty_skills),
                effective_date=d.effective_date,
                it_qualified_hire=d.it_qualified_hire,
            )
        case LeaderNominatedEvent(data=d):
            return Nomination(recorded_id, d.employee_id, d.fiscal_year, d.department_code)
        case CourseCompletedEvent(data=d):
            return Completion(event.id, d.employee_id, d.course_id, d.completed_on)
        case CompletionVoidedEvent(data=d):
            return Void(recorded_id, d.employee_id, d.course_id, d.voided_event_id, d.reason)
        case EmployeeLeftEvent(data=d):
            return Departure(recorded_id, d.employee_id, d.left_on)
        case _:
            return None


def employee_facts(events: Iterable[InboundEvent]) -> dict[str, EmployeeFacts]:
    by_employee: dict[str, list[Fact]] = defaultdict(list)
    for event in events:
        fact = to_fact(event)
        if fact is not None:
            by_employee[fact.employee_id].append(fact)
    return {emp: EmployeeFacts.of(emp, facts) for emp, facts in by_employee.items()}


def expected_states(
    catalog: Catalog, events: Iterable[InboundEvent]
) -> dict[str, CertificationState]:
    """Every employee's final certification state."""
    return {emp: evaluate(catalog, facts) for emp, facts in employee_facts(events).items()}


def standings(
    facts: Mapping[str, EmployeeFacts], states: Mapping[str, CertificationState]
) -> list[Standing]:
    """The standings reporting assembles, from the rows its read model would hold: the record
    in force on each effective date, the earliest departure, the levels, every nomination."""
    return assemble_standings(
        records=[
            (emp, day, record.department_code)
            for emp, f in facts.items()
            for day in sorted(f.record_dates())
            if (record := f.record_on(day)) is not None
        ],
        departures=[(emp, left) for emp, f in facts.items() if (left := f.left_on()) is not None],
        levels=[
            (emp, n, level.certified_on, level.department_code)
            for emp, state in states.items()
            for n, level in state.levels.items()
        ],
        nominations=[
            (emp, n.fiscal_year, n.department_code)
            for emp, f in facts.items()
            for n in sorted(f.nominations, key=lambda n: (n.fiscal_year, n.fact_id))
        ],
    )


def _standings(catalog: Catalog, events: Iterable[InboundEvent]) -> list[Standing]:
    facts = employee_facts(events)
    return standings(facts, {emp: evaluate(catalog, f) for emp, f in facts.items()})


def expected_progress(
    catalog: Catalog,
    events: Iterable[InboundEvent],
    fiscal_years: Iterable[int],
    as_of: dt.date | None = None,
) -> dict[int, Progress]:
    """Target progress per fiscal year as the pure core computes it from the facts."""
    table = _standings(catalog, events)
    return {fy: target_progress(catalog, fy, table, as_of=as_of) for fy in fiscal_years}


def expected_departments(
    catalog: Catalog, events: Iterable[InboundEvent], fiscal_year: int, as_of: dt.date
) -> dict[str, Progress]:
    """One fiscal year's progress per department the report date places someone in."""
    return dict(progress_by_department(catalog, fiscal_year, _standings(catalog, events), as_of))


DepartmentCounts = tuple[tuple[tuple[int, int, int], ...], int]


def department_counts(reports: Mapping[str, Progress]) -> dict[str, DepartmentCounts]:
    """Per department: (level, reached, exactly) for each level and the staff who left; a
    department where nobody counts is left out (the service lists departments that only
    nominated someone, too)."""
    counts = {
        code: (tuple((lv.level, lv.reached, lv.exactly) for lv in r.levels), r.left)
        for code, r in reports.items()
    }
    return {code: c for code, c in sorted(counts.items()) if c != _nobody(c)}


def served_department_counts(body: Mapping[str, Any]) -> dict[str, DepartmentCounts]:
    """`department_counts` of a `/v1/progress/departments` response body."""
    counts = {
        str(d["department"]): (
            tuple((int(r["level"]), int(r["reached"]), int(r["exactly"])) for r in d["levels"]),
            int(d["left"]),
        )
        for d in body["departments"]
    }
    return {code: c for code, c in sorted(counts.items()) if c != _nobody(c)}


def _nobody(counts: DepartmentCounts) -> DepartmentCounts:
    return tuple((level, 0, 0) for level, _, _ in counts[0]), 0
