"""The dashboard's read models: enrollments, completions, skills, improvement cases, intake.

Fed by the same consumer as `readmodel` (same transaction, same stream order) from
`dx.events.enrollment.*` and `dx.events.certification.skill-*`, so the dashboard never asks
another service. Tables (in the service's own schema):
- `enrollments`: one row per (employee, course, fiscal year).
- `completions`: one row per completion fact id; a void marks it `voided` (a void read first
  leaves a voided row the completion then cannot revive).
- `skills`: each skill an employee holds with its course and date; a revocation leaves a
  tombstone, and an older message never overwrites a newer one (`stream_sequence`). Its writes
  also keep the membership counts of the 区分別 page (`placements`).
- `improvement_cases`: the latest report of each case id.
- `levels.via_equivalence` (the FY2024 trainees) and `employee_records.categories` /
  `duty_skills` are added to `readmodel`'s tables.
- `intake`: one row per enrollment event (its day in Japan and its type), for the data-intake
  page's counts per day; indexed by day, so a page reads only the days it shows.

Every write is an idempotent upsert: the same event twice changes nothing, and a rebuild from
the log (a fresh schema) reaches the same rows. A segment's rows of every table are written
together (`segment`): `ROWS_OF` says which row an event writes, `TABLES` how.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from dxtalent_contracts.events import (
    CompletionVoidedRecordedEvent,
    CourseCompletedRecordedEvent,
    CourseEnrolledRecordedEvent,
    EmployeeLeftRecordedEvent,
    EmployeeUpdatedEvent,
    ImprovementCaseRecordedEvent,
    LeaderNominatedRecordedEvent,
    SkillAcquiredEvent,
    SkillRevokedEvent,
)
from dxtalent_contracts.fiscal import japan_date
from dxtalent_infra.migrations import Migration, Privilege
from dxtalent_reporting.segment import RowsOf, SegmentRows, Table

ActivityEvent = (
    CourseEnrolledRecordedEvent
    | CourseCompletedRecordedEvent
    | CompletionVoidedRecordedEvent
    | ImprovementCaseRecordedEvent
    | SkillAcquiredEvent
    | SkillRevokedEvent
)

ACTIVITY_CLASSES = (
    CourseEnrolledRecordedEvent,
    CourseCompletedRecordedEvent,
    CompletionVoidedRecordedEvent,
    ImprovementCaseRecordedEvent,
    SkillAcquiredEvent,
    SkillRevokedEvent,
)
#: Enrollment events counted on the data-intake page (every fact the enrollment service records).
INTAKE_CLASSES = (
    EmployeeUpdatedEvent,
    EmployeeLeftRecordedEvent,
    LeaderNominatedRecordedEvent,
    CourseEnrolledRecordedEvent,
    CourseCompletedRecordedEvent,
    CompletionVoidedRecordedEvent,
    ImprovementCaseRecordedEvent,
)
INTAKE_TYPES = frozenset(c.nats_subject for c in INTAKE_CLASSES)

MIGRATION = Migration(
    2,
    "dashboard read models: enrollments, completions, skills, improvement cases, intake",
    """
    CREATE TABLE {schema}.enrollments (
        employee_id text NOT NULL,
        course_id text NOT NULL,
        fiscal_year int NOT NULL,
        enrolled_on date NOT NULL,
        PRIMARY KEY (employee_id, course_id, fiscal_year)
    );
    CREATE INDEX enrollments_by_year ON {schema}.enrollments (fiscal_year);
    CREATE TABLE {schema}.completions (
        fact_id text PRIMARY KEY,
        employee_id text NOT NULL,
        course_id text NOT NULL,
        completed_on date,
        fiscal_year int,
        voided boolean NOT NULL DEFAULT false,
        void_reason text
    );
    CREATE INDEX completions_by_employee ON {schema}.completions (employee_id);
    CREATE INDEX completions_by_year ON {schema}.completions (fiscal_year);
    CREATE TABLE {schema}.skills (
        employee_id text NOT NULL,
        skill text NOT NULL,
        course_id text,
        acquired_on date,
        revoked boolean NOT NULL DEFAULT false,
        stream_sequence bigint NOT NULL,
        PRIMARY KEY (employee_id, skill)
    );
    CREATE TABLE {schema}.improvement_cases (
        case_id text PRIMARY KEY,
        department_code text NOT NULL,
        fiscal_year int NOT NULL,
        title text NOT NULL,
        leaders text[] NOT NULL,
        skills text[] NOT NULL,
        hours_saved double precision,
        stream_sequence bigint NOT NULL
    );
    CREATE TABLE {schema}.intake (
        event_id text PRIMARY KEY,
        day date NOT NULL,
        type text NOT NULL
    );
    CREATE INDEX intake_by_day ON {schema}.intake (day);
    ALTER TABLE {schema}.levels ADD COLUMN via_equivalence boolean NOT NULL DEFAULT false;
    ALTER TABLE {schema}.employee_records
        ADD COLUMN categories text[] NOT NULL DEFAULT '{}',
        ADD COLUMN duty_skills text[] NOT NULL DEFAULT '{}';
    CREATE INDEX levels_by_level ON {schema}.levels (level) WHERE NOT revoked;
    """,
)

#: Indexes no query reads (the person page reads completions by employee, enrollments by their
#: key; nothing reads either by year), yet every insert wrote them: about 4 % of the read
#: model's WAL (decision 0270).
UNREAD_INDEXES = Migration(
    4,
    "drop the indexes no query reads: completions and enrollments by fiscal year",
    """
    DROP INDEX IF EXISTS {schema}.completions_by_year;
    DROP INDEX IF EXISTS {schema}.enrollments_by_year;
    """,
)

#: The service role's rights on these tables: counted once (INSERT .. DO NOTHING) or upserted.
PRIVILEGES: tuple[Privilege, ...] = (
    Privilege("enrollments", ("SELECT", "INSERT")),
    Privilege("intake", ("SELECT", "INSERT")),
    *(
        Privilege(table, ("SELECT", "INSERT", "UPDATE"))
        for table in ("completions", "skills", "improvement_cases")
    ),
)


def _kept_unless(flag: str, alias: str, *columns: str) -> str:
    """`SET` items keeping `columns` of the stored row when the incoming row has `flag` set
    (a revocation or a void leaves what the fact it undoes wrote), else taking the new ones."""
    return ", ".join(
        f"{c} = CASE WHEN EXCLUDED.{flag} THEN {alias}.{c} ELSE EXCLUDED.{c} END" for c in columns
    )


ENROLLMENTS = Table(
    "enrollments",
    "e",
    (
        ("employee_id", "text"),
        ("course_id", "text"),
        ("fiscal_year", "int"),
        ("enrolled_on", "date"),
    ),
    "ON CONFLICT DO NOTHING",
)
#: a completion and its void share the row (the void's `fact_id` is the completion's): a
#: completion sets its date and year, a void (read first: a voided row with neither) marks it
COMPLETIONS = Table(
    "completions",
    "c",
    (
        ("fact_id", "text"),
        ("employee_id", "text"),
        ("course_id", "text"),
        ("completed_on", "date"),
        ("fiscal_year", "int"),
        ("voided", "bool"),
        ("void_reason", "text"),
    ),
    "ON CONFLICT (fact_id) DO UPDATE SET "
    + _kept_unless("voided", "c", "completed_on", "fiscal_year")
    + ", voided = c.voided OR EXCLUDED.voided, void_reason = CASE WHEN EXCLUDED.voided"
    " THEN EXCLUDED.void_reason ELSE c.void_reason END",
    key=1,
)
SKILLS = Table(
    "skills",
    "s",
    (
        ("employee_id", "text"),
        ("skill", "text"),
        ("course_id", "text"),
        ("acquired_on", "date"),
        ("revoked", "bool"),
        ("stream_sequence", "bigint"),
    ),
    "ON CONFLICT (employee_id, skill) DO UPDATE"
    " SET course_id = EXCLUDED.course_id, acquired_on = EXCLUDED.acquired_on,"
    " revoked = EXCLUDED.revoked, stream_sequence = EXCLUDED.stream_sequence"
    " WHERE EXCLUDED.stream_sequence > s.stream_sequence",
    key=2,
    returning=True,
)
CASES = Table(
    "improvement_cases",
    "c",
    (
        ("case_id", "text"),
        ("department_code", "text"),
        ("fiscal_year", "int"),
        ("title", "text"),
        ("leaders", "text[]"),
        ("skills", "text[]"),
        ("hours_saved", "float8"),
        ("stream_sequence", "bigint"),
    ),
    "ON CONFLICT (case_id) DO UPDATE"
    " SET department_code = EXCLUDED.department_code,"
    " fiscal_year = EXCLUDED.fiscal_year, title = EXCLUDED.title,"
    " leaders = EXCLUDED.leaders, skills = EXCLUDED.skills,"
    " hours_saved = EXCLUDED.hours_saved, stream_sequence = EXCLUDED.stream_sequence"
    " WHERE EXCLUDED.stream_sequence > c.stream_sequence",
    key=1,
)
INTAKE = Table(
    "intake",
    "i",
    (("event_id", "text"), ("day", "date"), ("type", "text")),
    "ON CONFLICT DO NOTHING",
)
TABLES = (ENROLLMENTS, COMPLETIONS, SKILLS, CASES, INTAKE)


def add_intake(rows: SegmentRows, event_id: str, subject: str, time: dt.datetime | None) -> None:
    """Count one recorded fact on its day in Japan (the event's time, else today's)."""
    moment = time or dt.datetime.now(dt.UTC)
    rows.add(INTAKE, event_id, japan_date(moment), subject)


def _enrolled(rows: SegmentRows, event: CourseEnrolledRecordedEvent, sequence: int) -> None:
    d = event.data
    rows.add(ENROLLMENTS, d.employee_id, d.course_id, d.fiscal_year, d.enrolled_on)


def _completed(rows: SegmentRows, event: CourseCompletedRecordedEvent, sequence: int) -> None:
    d = event.data
    rows.add(
        COMPLETIONS,
        d.fact_id,
        d.employee_id,
        d.course_id,
        d.completed_on,
        d.fiscal_year,
        False,
        None,
    )


def _voided(rows: SegmentRows, event: CompletionVoidedRecordedEvent, sequence: int) -> None:
    d = event.data
    rows.add(COMPLETIONS, d.voided_event_id, d.employee_id, d.course_id, None, None, True, d.reason)


def _acquired(rows: SegmentRows, event: SkillAcquiredEvent, sequence: int) -> None:
    d = event.data
    rows.add(
        SKILLS,
        d.employee_id,
        d.skill,
        d.course_id,
        d.acquired_on,
        False,
        sequence,
        counted=d.employee_id,
    )


def _skill_revoked(rows: SegmentRows, event: SkillRevokedEvent, sequence: int) -> None:
    d = event.data
    rows.add(SKILLS, d.employee_id, d.skill, None, None, True, sequence, counted=d.employee_id)


def _case(rows: SegmentRows, event: ImprovementCaseRecordedEvent, sequence: int) -> None:
    d = event.data
    rows.add(
        CASES,
        d.case_id,
        d.department_code,
        d.fiscal_year,
        d.title,
        d.leader_employee_ids,
        d.skills_applied,
        d.hours_saved_per_year,
        sequence,
    )


#: the row each activity event type writes, read at its stream sequence (`add_rows`)
ROWS_OF: dict[type[Any], RowsOf] = {
    CourseEnrolledRecordedEvent: _enrolled,
    CourseCompletedRecordedEvent: _completed,
    CompletionVoidedRecordedEvent: _voided,
    SkillAcquiredEvent: _acquired,
    SkillRevokedEvent: _skill_revoked,
    ImprovementCaseRecordedEvent: _case,
}
