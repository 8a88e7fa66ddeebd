"""Domain events the services publish on `dx.events.>` (stream DX_EVENTS) and the dead letter.

Types are `dxtalent.<service>.<EventName>.v1`, subjects `dx.events.<service>.<event-name>`.
Fields beyond the contract's minimum are additive and documented on each model.
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import Field

from dxtalent_contracts.envelope import CloudEvent, EventId, Model
from dxtalent_contracts.inbound import (
    CompletionVoided,
    EmployeeLeft,
    EmployeeUpserted,
    ImprovementCaseReported,
)
from dxtalent_contracts.subjects import DEADLETTER_INBOUND
from dxtalent_contracts.types import CalendarDate, Code, Date, FiscalYear, Identifier, Timestamp

Level = Annotated[int, Field(ge=1, le=3)]

SUPERSEDES = (
    "The id of the event this one corrects: the last one sent for the same employee and level"
    " (LevelCertified) or skill (SkillAcquired). null for a new certification or skill,"
    " including one certified again after a LevelRevoked / SkillRevoked. Absent in events"
    " recorded before the field existed. An event whose data, apart from `supersedes`, equals"
    " the last one sent for its key is never sent."
)


# --- enrollment -------------------------------------------------------------------------------


class LeaderNominationRecorded(Model):
    """A nomination as recorded (the inbound fact, `nominated_by` kept when given)."""

    employee_id: Identifier
    fiscal_year: FiscalYear
    department_code: Identifier
    nominated_by: Identifier | None = None


class CourseEnrollmentRecorded(Model):
    employee_id: Identifier
    course_id: Code
    enrolled_on: CalendarDate
    fiscal_year: FiscalYear


class CourseCompletionRecorded(Model):
    """A completion as recorded. `fact_id` is the inbound CloudEvent id (what voids refer to)."""

    employee_id: Identifier
    course_id: Code
    completed_on: CalendarDate
    fiscal_year: FiscalYear
    skills: list[Code]
    fact_id: EventId


class EmployeeUpdatedEvent(CloudEvent):
    nats_subject: ClassVar[str] = "dx.events.enrollment.employee-updated"
    type: Literal["dxtalent.enrollment.EmployeeUpdated.v1"]
    data: EmployeeUpserted


class EmployeeLeftRecordedEvent(CloudEvent):
    nats_subject: ClassVar[str] = "dx.events.enrollment.employee-left"
    type: Literal["dxtalent.enrollment.EmployeeLeft.v1"]
    data: EmployeeLeft


class LeaderNominatedRecordedEvent(CloudEvent):
    nats_subject: ClassVar[str] = "dx.events.enrollment.leader-nominated"
    type: Literal["dxtalent.enrollment.LeaderNominated.v1"]
    data: LeaderNominationRecorded


class CourseEnrolledRecordedEvent(CloudEvent):
    nats_subject: ClassVar[str] = "dx.events.enrollment.course-enrolled"
    type: Literal["dxtalent.enrollment.CourseEnrolled.v1"]
    data: CourseEnrollmentRecorded


class CourseCompletedRecordedEvent(CloudEvent):
    nats_subject: ClassVar[str] = "dx.events.enrollment.course-completed"
    type: Literal["dxtalent.enrollment.CourseCompleted.v1"]
    data: CourseCompletionRecorded


class CompletionVoidedRecordedEvent(CloudEvent):
    nats_subject: ClassVar[str] = "dx.events.enrollment.completion-voided"
    type: Literal["dxtalent.enrollment.CompletionVoided.v1"]
    data: CompletionVoided


class ImprovementCaseRecordedEvent(CloudEvent):
    nats_subject: ClassVar[str] = "dx.events.enrollment.improvement-case-reported"
    type: Literal["dxtalent.enrollment.ImprovementCaseReported.v1"]
    data: ImprovementCaseReported


# --- certification ----------------------------------------------------------------------------


class SkillAcquired(Model):
    """The employee holds `skill`, evidenced by its earliest non-voided completion.

    Sent again with other evidence when that earliest completion changes (upsert by skill);
    `supersedes` then says which event it corrects (see `LevelCertified`).
    """

    employee_id: Identifier
    skill: Code
    course_id: Code
    acquired_on: CalendarDate
    evidence_event_id: EventId
    supersedes: EventId | None = Field(default=None, description=SUPERSEDES)


class SkillRevoked(Model):
    employee_id: Identifier
    skill: Code
    reason: str


class Evidence(Model):
    """One required skill behind a level: the completion that first granted it."""

    skill: Code
    course_id: Code
    completed_on: Date
    event_id: EventId


class LevelCertified(Model):
    """DX-leader level certified. Sent again, as a correction, when its date, evidence,
    route or department changes after a late or voided fact (consumers upsert by employee and
    level); `supersedes` tells a correction from a new certification."""

    employee_id: Identifier
    level: Level
    fiscal_year: FiscalYear
    certified_on: CalendarDate
    department_code: Identifier | None
    evidence: list[Evidence]
    policy_version: str
    via_equivalence: bool = False
    supersedes: EventId | None = Field(default=None, description=SUPERSEDES)


class LevelRevoked(Model):
    employee_id: Identifier
    level: Level
    reason: str
    caused_by: EventId


class SkillAcquiredEvent(CloudEvent):
    nats_subject: ClassVar[str] = "dx.events.certification.skill-acquired"
    type: Literal["dxtalent.certification.SkillAcquired.v1"]
    data: SkillAcquired


class SkillRevokedEvent(CloudEvent):
    nats_subject: ClassVar[str] = "dx.events.certification.skill-revoked"
    type: Literal["dxtalent.certification.SkillRevoked.v1"]
    data: SkillRevoked


class LevelCertifiedEvent(CloudEvent):
    nats_subject: ClassVar[str] = "dx.events.certification.level-certified"
    type: Literal["dxtalent.certification.LevelCertified.v1"]
    data: LevelCertified


class LevelRevokedEvent(CloudEvent):
    nats_subject: ClassVar[str] = "dx.events.certification.level-revoked"
    type: Literal["dxtalent.certification.LevelRevoked.v1"]
    data: LevelRevoked


# --- dead letters -----------------------------------------------------------------------------


class FieldError(Model):
    """One validation problem: where (dotted path) and what."""

    field: str
    problem: str


class MessageRejected(Model):
    """A message that could not be accepted, kept with its original bytes for re-drive."""

    subject: str
    reason: str
    errors: list[FieldError]
    original_base64: str
    original_headers: dict[str, str]
    received_at: Timestamp


class MessageRejectedEvent(CloudEvent):
    nats_subject: ClassVar[str] = DEADLETTER_INBOUND
    type: Literal["dxtalent.enrollment.MessageRejected.v1"]
    data: MessageRejected


ENROLLMENT_EVENT_CLASSES: tuple[type[CloudEvent], ...] = (
    EmployeeUpdatedEvent,
    EmployeeLeftRecordedEvent,
    LeaderNominatedRecordedEvent,
    CourseEnrolledRecordedEvent,
    CourseCompletedRecordedEvent,
    CompletionVoidedRecordedEvent,
    ImprovementCaseRecordedEvent,
)
CERTIFICATION_EVENT_CLASSES: tuple[type[CloudEvent], ...] = (
    SkillAcquiredEvent,
    SkillRevokedEvent,
    LevelCertifiedEvent,
    LevelRevokedEvent,
)
