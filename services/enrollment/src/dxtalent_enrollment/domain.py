"""Enrollment rules, pure: is an inbound fact acceptable under the catalog, and what it records.

No I/O and no clock: the time a message was received is passed in.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Container
from dataclasses import dataclass
from typing import Any, NamedTuple

from dxtalent_contracts.catalog import Catalog
from dxtalent_contracts.envelope import Model
from dxtalent_contracts.events import (
    CompletionVoidedRecordedEvent,
    CourseCompletedRecordedEvent,
    CourseEnrolledRecordedEvent,
    CourseEnrollmentRecorded,
    EmployeeLeftRecordedEvent,
    EmployeeUpdatedEvent,
    FieldError,
    ImprovementCaseRecordedEvent,
    LeaderNominatedRecordedEvent,
    LeaderNominationRecorded,
)
from dxtalent_contracts.fiscal import fiscal_year_of
from dxtalent_contracts.ids import uuid5_text
from dxtalent_contracts.inbound import (
    CompletionVoidedEvent,
    CourseCompletedEvent,
    CourseEnrolledEvent,
    EmployeeLeftEvent,
    EmployeeUpsertedEvent,
    ImprovementCaseReportedEvent,
    InboundEvent,
    LeaderNominatedEvent,
)
from dxtalent_contracts.registry import Rejection, parse_inbound, type_name

#: Namespace of the ids enrollment gives the facts it records: uuid5(source + id), so the
#: same (source, id) twice is the same recorded event (the contract's idempotency key).
FACT_NAMESPACE = uuid.UUID("6f1d2c1e-5a0b-4c1f-9d8e-2b7c4e0a9f31")
_FACT_NAMESPACE_BYTES = FACT_NAMESPACE.bytes

# the recorded types' CloudEvents names, worked out once (`type_name` reads pydantic's fields)
_EMPLOYEE_UPDATED = type_name(EmployeeUpdatedEvent)
_EMPLOYEE_LEFT = type_name(EmployeeLeftRecordedEvent)
_LEADER_NOMINATED = type_name(LeaderNominatedRecordedEvent)
_COURSE_ENROLLED = type_name(CourseEnrolledRecordedEvent)
_COURSE_COMPLETED = type_name(CourseCompletedRecordedEvent)
_COMPLETION_VOIDED = type_name(CompletionVoidedRecordedEvent)
_IMPROVEMENT_CASE = type_name(ImprovementCaseRecordedEvent)


class RecordedFact(NamedTuple):
    """What enrollment appends for one accepted inbound fact (a named tuple: built once per
    fact, at a third of a frozen dataclass's cost)."""

    stream_id: str
    event_id: str
    event_type: str
    data: dict[str, Any]
    subject: str | None
    occurred_at: dt.datetime
    causation_id: str
    correlation_id: str


def fact_event_id(source: str, event_id: str) -> str:
    """The recorded event's id for an inbound (source, id)."""
    return uuid5_text(_FACT_NAMESPACE_BYTES, f"{source}\x00{event_id}")


def _unknown(known: Container[str], values: list[str], path: str, what: str) -> list[FieldError]:
    return [
        FieldError(field=f"{path}.{i}", problem=f"unknown {what} {v!r}: not in the catalog")
        for i, v in enumerate(values)
        if v not in known
    ]


def _course_problems(catalog: Catalog, event: InboundEvent, course_id: str) -> list[FieldError]:
    """An unknown course, or a completion dated outside the course's offering period."""
    course = catalog.course_by_id.get(course_id)
    if course is None:
        return [
            FieldError(
                field="data.course_id",
                problem=f"unknown course {course_id!r}: not in the catalog "
                f"{catalog.policy_version}",
            )
        ]
    if isinstance(event, CourseCompletedEvent) and course.offered is not None:
        day = event.data.completed_on
        if not course.offered_on(day):
            return [
                FieldError(
                    field="data.completed_on",
                    problem=f"course {course_id!r} ran only in {course.offered.describe()} "
                    f"(catalog {catalog.policy_version}); a completion dated {day} is outside "
                    "its offering period",
                )
            ]
    return []


def catalog_problems(catalog: Catalog, event: InboundEvent) -> list[FieldError]:
    """Field errors of a well-formed fact that the catalog does not allow: unknown codes, and
    completions dated outside their course's offering period."""
    skills = catalog.skill_by_code  # a mapping: no set built per fact
    match event:
        case CourseCompletedEvent() | CourseEnrolledEvent() | CompletionVoidedEvent():
            return _course_problems(catalog, event, event.data.course_id)
        case EmployeeUpsertedEvent():
            return _unknown(
                catalog.category_by_code,
                event.data.categories,
                "data.categories",
                "staff category",
            ) + _unknown(skills, event.data.duty_skills, "data.duty_skills", "skill")
        case ImprovementCaseReportedEvent():
            return _unknown(skills, event.data.skills_applied, "data.skills_applied", "skill")
        case _:
            return []


@dataclass(frozen=True)
class InboundProblem:
    """Why a well-formed inbound fact cannot be accepted: one sentence, and the field errors."""

    reason: str
    errors: list[FieldError]


def inbound_problem(
    catalog: Catalog, event: InboundEvent, subject: str | None = None
) -> InboundProblem | None:
    """Everything enrollment checks of a parsed fact, beyond its schema: the subject it came on
    (when given) and the catalog (`catalog_problems`). None: the fact is accepted.

    The one check for every publisher: the enrollment service dead-letters a fact with this
    reason, and a client can refuse it before publishing.
    """
    if subject is not None:
        wrong_subject = subject_problem(event, subject)
        if wrong_subject is not None:
            return InboundProblem(wrong_subject, [])
    problems = catalog_problems(catalog, event)
    if not problems:
        return None
    shown = "; ".join(f"{p.field}: {p.problem}" for p in problems[:3])
    return InboundProblem(f"Event {event.type!r} {event.id!r} is not valid: {shown}.", problems)


def check_inbound(
    catalog: Catalog, raw: bytes, subject: str | None = None
) -> InboundEvent | InboundProblem:
    """The one check of an inbound fact's bytes, whichever door they came through (NATS,
    `dxtalent publish`, HTTP): the contract (`parse_inbound`), then `inbound_problem`. Returns
    the typed fact, or why it cannot be accepted."""
    parsed = parse_inbound(raw)
    if isinstance(parsed, Rejection):
        return InboundProblem(parsed.reason, parsed.errors)
    return inbound_problem(catalog, parsed, subject) or parsed


def subject_problem(event: InboundEvent, subject: str) -> str | None:
    """Each inbound type has one subject; a fact on another subject is refused."""
    if subject != event.nats_subject:
        return (
            f"Event type {event.type!r} belongs on subject {event.nats_subject!r} "
            f"but arrived on {subject!r}."
        )
    return None


def _on_employee(employee_id: str, event_type: str, data: Model) -> tuple[str, str, dict[str, Any]]:
    return f"employee-{employee_id}", event_type, data.model_dump(mode="json")


def _completion_data(catalog: Catalog, event: CourseCompletedEvent) -> dict[str, Any]:
    """`CourseCompletionRecorded(...).model_dump(mode="json")` for a completion, written out:
    every value comes from the validated fact or the catalog, so validating them again as a
    new model and dumping it (half of this function's cost before, on half of all facts)
    checked nothing. A property test holds it to the model's dump, keys' order included."""
    d = event.data
    return {
        "employee_id": d.employee_id,
        "course_id": d.course_id,
        "completed_on": d.completed_on.isoformat(),
        "fiscal_year": fiscal_year_of(d.completed_on),
        "skills": list(catalog.course_by_id[d.course_id].grants),
        "fact_id": event.id,
    }


def _stream_and_record(catalog: Catalog, event: InboundEvent) -> tuple[str, str, dict[str, Any]]:
    """The stream it belongs to, the recorded event's type and its data."""
    match event:
        case CourseCompletedEvent(data=d):
            stream = f"employee-{d.employee_id}"
            return stream, _COURSE_COMPLETED, _completion_data(catalog, event)
        case EmployeeUpsertedEvent(data=d):
            return _on_employee(d.employee_id, _EMPLOYEE_UPDATED, d)
        case EmployeeLeftEvent(data=d):
            return _on_employee(d.employee_id, _EMPLOYEE_LEFT, d)
        case LeaderNominatedEvent(data=d):
            nomination = LeaderNominationRecorded(**d.model_dump())
            return _on_employee(d.employee_id, _LEADER_NOMINATED, nomination)
        case CourseEnrolledEvent(data=d):
            enrolment = CourseEnrollmentRecorded(
                employee_id=d.employee_id,
                course_id=d.course_id,
                enrolled_on=d.enrolled_on,
                fiscal_year=fiscal_year_of(d.enrolled_on),
            )
            return _on_employee(d.employee_id, _COURSE_ENROLLED, enrolment)
        case CompletionVoidedEvent(data=d):
            return _on_employee(d.employee_id, _COMPLETION_VOIDED, d)
        case ImprovementCaseReportedEvent(data=d):
            return f"case-{d.case_id}", _IMPROVEMENT_CASE, d.model_dump(mode="json")


def record(catalog: Catalog, event: InboundEvent, received_at: dt.datetime) -> RecordedFact:
    """The domain event enrollment records for an accepted inbound fact."""
    stream_id, event_type, data = _stream_and_record(catalog, event)
    return RecordedFact(
        stream_id=stream_id,
        event_id=fact_event_id(event.source, event.id),
        event_type=event_type,
        data=data,
        subject=event.subject,
        occurred_at=event.time or received_at,
        causation_id=event.id,
        correlation_id=event.correlationid or event.id,
    )
