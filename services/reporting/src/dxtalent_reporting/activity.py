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

Every write is one idempotent statement: the same event twice changes nothing, and a rebuild
from the log (a fresh schema) reaches the same rows.
"""

from __future__ import annotations

import datetime as dt

import asyncpg

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
from dxtalent_infra.migrations import Migration, Privilege, quote_ident
from dxtalent_reporting.placements import PendingCounts, PlacementWriter, returning

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

#: The service role's rights on these tables: counted once (INSERT .. DO NOTHING) or upserted.
PRIVILEGES: tuple[Privilege, ...] = (
    Privilege("enrollments", ("SELECT", "INSERT")),
    Privilege("intake", ("SELECT", "INSERT")),
    *(
        Privilege(table, ("SELECT", "INSERT", "UPDATE"))
        for table in ("completions", "skills", "improvement_cases")
    ),
)


class ActivityWriter:
    """Applies one dashboard event (or counts one intake event) in the caller's transaction."""

    def __init__(self, schema: str, counts: PlacementWriter) -> None:
        q = quote_ident(schema)
        self._counts = counts
        self._enrolled = (
            f"INSERT INTO {q}.enrollments (employee_id, course_id, fiscal_year, enrolled_on)"
            " VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING"
        )
        self._completed = (
            f"INSERT INTO {q}.completions"
            " (fact_id, employee_id, course_id, completed_on, fiscal_year)"
            " VALUES ($1, $2, $3, $4, $5) ON CONFLICT (fact_id) DO UPDATE"
            " SET completed_on = EXCLUDED.completed_on, fiscal_year = EXCLUDED.fiscal_year"
        )
        self._voided = (
            f"INSERT INTO {q}.completions (fact_id, employee_id, course_id, voided, void_reason)"
            " VALUES ($1, $2, $3, true, $4) ON CONFLICT (fact_id) DO UPDATE"
            " SET voided = true, void_reason = EXCLUDED.void_reason"
        )
        self._skill = (
            f"INSERT INTO {q}.skills AS s"
            " (employee_id, skill, course_id, acquired_on, revoked, stream_sequence)"
            " VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (employee_id, skill) DO UPDATE"
            " SET course_id = EXCLUDED.course_id, acquired_on = EXCLUDED.acquired_on,"
            " revoked = EXCLUDED.revoked, stream_sequence = EXCLUDED.stream_sequence"
            " WHERE EXCLUDED.stream_sequence > s.stream_sequence "
            + returning("s", "s.acquired_on", "s.skill", "NULL", gone="s.revoked")
        )
        self._skill = counts.statement(self._skill)
        self._case = (
            f"INSERT INTO {q}.improvement_cases AS c (case_id, department_code, fiscal_year,"
            " title, leaders, skills, hours_saved, stream_sequence)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (case_id) DO UPDATE"
            " SET department_code = EXCLUDED.department_code,"
            " fiscal_year = EXCLUDED.fiscal_year, title = EXCLUDED.title,"
            " leaders = EXCLUDED.leaders, skills = EXCLUDED.skills,"
            " hours_saved = EXCLUDED.hours_saved, stream_sequence = EXCLUDED.stream_sequence"
            " WHERE EXCLUDED.stream_sequence > c.stream_sequence"
        )
        self._intake = (
            f"INSERT INTO {q}.intake (event_id, day, type) VALUES ($1, $2, $3)"
            " ON CONFLICT DO NOTHING"
        )

    async def count_intake(
        self, conn: asyncpg.Connection, event_id: str, subject: str, time: dt.datetime | None
    ) -> None:
        """Count one recorded fact on its day in Japan (the event's time, else today's)."""
        moment = time or dt.datetime.now(dt.UTC)
        await conn.execute(self._intake, event_id, japan_date(moment), subject)

    async def apply(
        self,
        conn: asyncpg.Connection,
        event: ActivityEvent,
        sequence: int,
        pending: PendingCounts | None = None,
    ) -> None:
        """Apply `event`, read at stream `sequence` (`pending`: see `PlacementWriter.write`)."""
        match event:
            case CourseEnrolledRecordedEvent(data=d):
                await conn.execute(
                    self._enrolled, d.employee_id, d.course_id, d.fiscal_year, d.enrolled_on
                )
            case CourseCompletedRecordedEvent(data=d):
                await conn.execute(
                    self._completed,
                    d.fact_id,
                    d.employee_id,
                    d.course_id,
                    d.completed_on,
                    d.fiscal_year,
                )
            case CompletionVoidedRecordedEvent(data=d):
                await conn.execute(
                    self._voided, d.voided_event_id, d.employee_id, d.course_id, d.reason
                )
            case SkillAcquiredEvent(data=d):
                await self._counts.write(
                    conn,
                    self._skill,
                    d.employee_id,
                    d.skill,
                    d.course_id,
                    d.acquired_on,
                    False,
                    sequence,
                    pending=pending,
                )
            case SkillRevokedEvent(data=d):
                await self._counts.write(
                    conn,
                    self._skill,
                    d.employee_id,
                    d.skill,
                    None,
                    None,
                    True,
                    sequence,
                    pending=pending,
                )
            case ImprovementCaseRecordedEvent(data=d):
                await conn.execute(
                    self._case,
                    d.case_id,
                    d.department_code,
                    d.fiscal_year,
                    d.title,
                    d.leader_employee_ids,
                    d.skills_applied,
                    d.hours_saved_per_year,
                    sequence,
                )
