"""What the system must end up showing, computed by the pure core straight from inbound facts.

The demo prints whether the running services agree with it, and the end-to-end tests assert
that they do: the oracle shares the domain core but none of the adapters, stores or brokers.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable, Mapping

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
from dxtalent_reporting.domain.progress import Progress, Standing, target_progress


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
    out = []
    for emp, f in facts.items():
        records = tuple(sorted((r.effective_date, r.department_code) for r in f.records))
        levels = {n: lv.certified_on for n, lv in states[emp].levels.items()}
        out.append(Standing(employee_id=emp, records=records, left_on=f.left_on(), levels=levels))
    return out


def expected_progress(
    catalog: Catalog,
    events: Iterable[InboundEvent],
    fiscal_years: Iterable[int],
    as_of: dt.date | None = None,
) -> dict[int, Progress]:
    """Target progress per fiscal year as the pure core computes it from the facts."""
    facts = employee_facts(events)
    states = {emp: evaluate(catalog, f) for emp, f in facts.items()}
    table = standings(facts, states)
    return {fy: target_progress(catalog, fy, table, as_of=as_of) for fy in fiscal_years}
