"""Enrollment domain events as the certification facts they record (pure)."""

from __future__ import annotations

from dxtalent_certification.domain.facts import (
    Completion,
    Departure,
    EmployeeRecord,
    Fact,
    Nomination,
    Void,
)
from dxtalent_contracts.envelope import CloudEvent
from dxtalent_contracts.events import (
    CompletionVoidedRecordedEvent,
    CourseCompletedRecordedEvent,
    CourseEnrolledRecordedEvent,
    EmployeeLeftRecordedEvent,
    EmployeeUpdatedEvent,
    ImprovementCaseRecordedEvent,
    LeaderNominatedRecordedEvent,
)
from dxtalent_contracts.registry import AnyEvent

#: The enrollment events that record a certification fact (`fact_of`), in the contract's order.
FACT_EVENTS: tuple[type[CloudEvent], ...] = (
    EmployeeUpdatedEvent,
    EmployeeLeftRecordedEvent,
    LeaderNominatedRecordedEvent,
    CourseCompletedRecordedEvent,
    CompletionVoidedRecordedEvent,
)

#: What the certification consumer filters on: the subjects of `FACT_EVENTS` only. The other
#: enrollment events (`CourseEnrolled`, `ImprovementCaseReported`) change no certification, so
#: they are neither fetched nor claimed in the inbox (decision 0295).
SUBJECTS: tuple[str, ...] = tuple(cls.nats_subject for cls in FACT_EVENTS)


class UnexpectedEventError(ValueError):
    """An event the certification consumer has no use for and should never receive."""


def fact_of(event: AnyEvent) -> Fact | None:
    """The fact an enrollment event records; None for events that change no certification.

    A completion's fact id is the inbound CloudEvent id (`data.fact_id`), the id voids refer
    to; every other fact is identified by the enrollment event's own id. Raises
    `UnexpectedEventError` for any event that is not an enrollment event.
    """
    match event:
        case EmployeeUpdatedEvent(id=fact_id, data=d):
            return EmployeeRecord(
                fact_id=fact_id,
                employee_id=d.employee_id,
                department_code=d.department_code,
                categories=frozenset(d.categories),
                duty_skills=frozenset(d.duty_skills),
                effective_date=d.effective_date,
                it_qualified_hire=d.it_qualified_hire,
            )
        case LeaderNominatedRecordedEvent(id=fact_id, data=d):
            return Nomination(fact_id, d.employee_id, d.fiscal_year, d.department_code)
        case CourseCompletedRecordedEvent(data=d):
            return Completion(d.fact_id, d.employee_id, d.course_id, d.completed_on)
        case CompletionVoidedRecordedEvent(id=fact_id, data=d):
            return Void(fact_id, d.employee_id, d.course_id, d.voided_event_id, d.reason)
        case EmployeeLeftRecordedEvent(id=fact_id, data=d):
            return Departure(fact_id, d.employee_id, d.left_on)
        case CourseEnrolledRecordedEvent() | ImprovementCaseRecordedEvent():
            return None
    raise UnexpectedEventError(
        f"Event type {event.type!r} is not an enrollment event; the certification service "
        "reads only dx.events.enrollment.* events."
    )
