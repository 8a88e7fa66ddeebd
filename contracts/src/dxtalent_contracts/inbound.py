"""Inbound facts published by HR and LMS systems on `dx.inbound.>` (stream DX_INBOUND)."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from dxtalent_contracts.envelope import CloudEvent, EventId, Model
from dxtalent_contracts.types import (
    CalendarDate,
    Code,
    FiscalYear,
    Identifier,
    NonEmptyText,
)


class EmployeeUpserted(Model):
    """An effective-dated employee record; the latest record on or before a date applies then."""

    employee_id: Identifier
    department_code: Identifier
    department_name: NonEmptyText | None = None
    categories: list[Code] = Field(max_length=20)
    it_qualified_hire: bool = False
    duty_skills: list[Code] = Field(default_factory=list, max_length=50)
    effective_date: CalendarDate


class EmployeeLeft(Model):
    """The employee left the city's employment on `left_on`: the first day they are no longer employed."""

    employee_id: Identifier
    left_on: CalendarDate


class LeaderNominated(Model):
    """A head of section nominated the employee as DX promotion leader for a fiscal year."""

    employee_id: Identifier
    fiscal_year: FiscalYear
    department_code: Identifier
    nominated_by: Identifier | None = None


class CourseEnrolled(Model):
    """The employee enrolled in a catalog course."""

    employee_id: Identifier
    course_id: Code
    enrolled_on: CalendarDate


class CourseCompleted(Model):
    """The employee completed a catalog course; the course grants its skills."""

    employee_id: Identifier
    course_id: Code
    completed_on: CalendarDate


class CompletionVoided(Model):
    """A completion recorded in error; `voided_event_id` is the id of that CourseCompleted event."""

    employee_id: Identifier
    course_id: Code
    voided_event_id: EventId
    reason: NonEmptyText


class ImprovementCaseReported(Model):
    """An improvement case (業務改善事例) a department reports for the yearly sharing session."""

    case_id: Identifier
    department_code: Identifier
    fiscal_year: FiscalYear
    title: NonEmptyText
    leader_employee_ids: list[Identifier] = Field(max_length=100)
    skills_applied: list[Code] = Field(max_length=50)
    hours_saved_per_year: float | None = Field(default=None, ge=0)


class EmployeeUpsertedEvent(CloudEvent):
    nats_subject: ClassVar[str] = "dx.inbound.employee"
    type: Literal["dxtalent.hr.EmployeeUpserted.v1"]
    data: EmployeeUpserted


class EmployeeLeftEvent(CloudEvent):
    nats_subject: ClassVar[str] = "dx.inbound.employee-left"
    type: Literal["dxtalent.hr.EmployeeLeft.v1"]
    data: EmployeeLeft


class LeaderNominatedEvent(CloudEvent):
    nats_subject: ClassVar[str] = "dx.inbound.nomination"
    type: Literal["dxtalent.hr.LeaderNominated.v1"]
    data: LeaderNominated


class CourseEnrolledEvent(CloudEvent):
    nats_subject: ClassVar[str] = "dx.inbound.enrollment"
    type: Literal["dxtalent.lms.CourseEnrolled.v1"]
    data: CourseEnrolled


class CourseCompletedEvent(CloudEvent):
    nats_subject: ClassVar[str] = "dx.inbound.completion"
    type: Literal["dxtalent.lms.CourseCompleted.v1"]
    data: CourseCompleted


class CompletionVoidedEvent(CloudEvent):
    nats_subject: ClassVar[str] = "dx.inbound.completion-voided"
    type: Literal["dxtalent.lms.CompletionVoided.v1"]
    data: CompletionVoided


class ImprovementCaseReportedEvent(CloudEvent):
    nats_subject: ClassVar[str] = "dx.inbound.improvement-case"
    type: Literal["dxtalent.hr.ImprovementCaseReported.v1"]
    data: ImprovementCaseReported


InboundEvent = (
    EmployeeUpsertedEvent
    | EmployeeLeftEvent
    | LeaderNominatedEvent
    | CourseEnrolledEvent
    | CourseCompletedEvent
    | CompletionVoidedEvent
    | ImprovementCaseReportedEvent
)

INBOUND_EVENT_CLASSES: tuple[type[CloudEvent], ...] = (
    EmployeeUpsertedEvent,
    EmployeeLeftEvent,
    LeaderNominatedEvent,
    CourseEnrolledEvent,
    CourseCompletedEvent,
    CompletionVoidedEvent,
    ImprovementCaseReportedEvent,
)
