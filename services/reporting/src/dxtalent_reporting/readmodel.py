"""The reporting read model: what the progress reports read, projected from `dx.events.>`.

Tables (in the service's own schema):
- `employee_records`: effective-dated department of each employee, one row per
  (employee, effective_date). Two records effective on the same day: the greatest event id
  wins (the tie rule of the certification service), so the row kept does not depend on the
  order in which the facts arrived.
- `departures`: when an employee left; the earliest `left_on` wins (a rehire is not modelled).
- `nominations`: (employee, fiscal year, department) of every nomination; a department with
  none in a fiscal year is shown as a section without a nominated leader.
- `levels`: each certified DX-leader level with its `certified_on`. A revocation leaves a
  tombstone (`revoked`), and a row only changes for an event later in the stream than the one
  that wrote it, so a retried (nak'ed) older message cannot undo a newer one.

Every write is one idempotent statement in the consumer's transaction: the same event twice
changes nothing. The writes of these four tables also keep the placement counts the progress
reports read (`placements`, decision 0205).

Meaning of `as_of`: the state on that date *as known now*. Records are effective-dated and
levels carry `certified_on`, so any past date can be answered from the current tables; a
revoked level (a voided completion was an error) is gone from every `as_of`, and a level
re-certified with a new date counts from its new date only.
"""

from __future__ import annotations

import asyncpg

from dxtalent_contracts.events import (
    EmployeeLeftRecordedEvent,
    EmployeeUpdatedEvent,
    LeaderNominatedRecordedEvent,
    LevelCertifiedEvent,
    LevelRevokedEvent,
)
from dxtalent_infra.migrations import Migration, Privilege, quote_ident
from dxtalent_reporting import activity, placements
from dxtalent_reporting.activity import ActivityEvent, ActivityWriter
from dxtalent_reporting.placements import PendingCounts, PlacementWriter, returning

ProjectedEvent = (
    EmployeeUpdatedEvent
    | EmployeeLeftRecordedEvent
    | LeaderNominatedRecordedEvent
    | LevelCertifiedEvent
    | LevelRevokedEvent
    | ActivityEvent
)

#: The contract subjects the projection reads; every other subject is skipped unparsed.
SUBJECTS: frozenset[str] = frozenset(
    cls.nats_subject
    for cls in (
        EmployeeUpdatedEvent,
        EmployeeLeftRecordedEvent,
        LeaderNominatedRecordedEvent,
        LevelCertifiedEvent,
        LevelRevokedEvent,
        *activity.ACTIVITY_CLASSES,
        *activity.INTAKE_CLASSES,
    )
)

MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "reporting read model: employee records, departures, nominations, levels",
        """
        CREATE TABLE {schema}.employee_records (
            employee_id text NOT NULL,
            effective_date date NOT NULL,
            fact_id text NOT NULL,
            department_code text NOT NULL,
            department_name text,
            PRIMARY KEY (employee_id, effective_date)
        );
        CREATE TABLE {schema}.departures (
            employee_id text PRIMARY KEY,
            left_on date NOT NULL,
            fact_id text NOT NULL
        );
        CREATE TABLE {schema}.nominations (
            employee_id text NOT NULL,
            fiscal_year int NOT NULL,
            department_code text NOT NULL,
            fact_id text NOT NULL,
            PRIMARY KEY (employee_id, fiscal_year, department_code)
        );
        CREATE INDEX nominations_by_year ON {schema}.nominations (fiscal_year);
        CREATE TABLE {schema}.levels (
            employee_id text NOT NULL,
            level int NOT NULL,
            certified_on date,
            fiscal_year int,
            department_code text,
            revoked boolean NOT NULL DEFAULT false,
            event_id text NOT NULL,
            stream_sequence bigint NOT NULL,
            PRIMARY KEY (employee_id, level)
        );
        """,
    ),
    activity.MIGRATION,
    placements.MIGRATION,
)

#: The service role's rights on these tables and on those of `activity` (one component):
#: upserts (INSERT .. ON CONFLICT DO UPDATE) and reads; nothing is deleted.
PRIVILEGES: tuple[Privilege, ...] = (
    *(
        Privilege(table, ("SELECT", "INSERT", "UPDATE"))
        for table in ("employee_records", "departures", "nominations", "levels")
    ),
    *activity.PRIVILEGES,
    *placements.PRIVILEGES,
)


class ReadModelWriter:
    """Applies one projected event to the read model of `schema`: one statement each."""

    def __init__(self, schema: str) -> None:
        q = quote_ident(schema)
        self.counts = counts = PlacementWriter(schema)
        self._activity = ActivityWriter(schema, counts)
        self._record = (
            f"INSERT INTO {q}.employee_records AS r"
            " (employee_id, effective_date, fact_id, department_code, department_name,"
            " categories, duty_skills) VALUES ($1, $2, $3, $4, $5, $6, $7)"
            " ON CONFLICT (employee_id, effective_date) DO UPDATE"
            " SET fact_id = EXCLUDED.fact_id, department_code = EXCLUDED.department_code,"
            " department_name = EXCLUDED.department_name, categories = EXCLUDED.categories,"
            " duty_skills = EXCLUDED.duty_skills WHERE EXCLUDED.fact_id > r.fact_id "
            + returning("r", "r.effective_date", "r.department_code", "NULL", "r.categories")
        )
        self._departure = (
            f"INSERT INTO {q}.departures AS d (employee_id, left_on, fact_id)"
            " VALUES ($1, $2, $3) ON CONFLICT (employee_id) DO UPDATE"
            " SET left_on = EXCLUDED.left_on, fact_id = EXCLUDED.fact_id"
            " WHERE (EXCLUDED.left_on, EXCLUDED.fact_id) < (d.left_on, d.fact_id) "
            + returning("d", "d.left_on", "NULL", "NULL")
        )
        self._nomination = (
            f"INSERT INTO {q}.nominations AS n"
            " (employee_id, fiscal_year, department_code, fact_id) VALUES ($1, $2, $3, $4)"
            " ON CONFLICT (employee_id, fiscal_year, department_code) DO UPDATE"
            " SET fact_id = EXCLUDED.fact_id WHERE EXCLUDED.fact_id < n.fact_id "
            + returning("n", "NULL", "n.department_code", "n.fiscal_year")
        )
        self._certified = (
            f"INSERT INTO {q}.levels AS l (employee_id, level, certified_on, fiscal_year,"
            " department_code, revoked, event_id, stream_sequence, via_equivalence)"
            " VALUES ($1, $2, $3, $4, $5, false, $6, $7, $8) ON CONFLICT (employee_id, level)"
            " DO UPDATE SET certified_on = EXCLUDED.certified_on,"
            " via_equivalence = EXCLUDED.via_equivalence,"
            " fiscal_year = EXCLUDED.fiscal_year, department_code = EXCLUDED.department_code,"
            " revoked = false, event_id = EXCLUDED.event_id,"
            " stream_sequence = EXCLUDED.stream_sequence"
            " WHERE EXCLUDED.stream_sequence > l.stream_sequence "
            + returning("l", "l.certified_on", "l.department_code", "l.level")
        )
        self._revoked = (
            f"INSERT INTO {q}.levels AS l (employee_id, level, revoked, event_id, stream_sequence)"
            " VALUES ($1, $2, true, $3, $4) ON CONFLICT (employee_id, level)"
            " DO UPDATE SET revoked = true, event_id = EXCLUDED.event_id,"
            " stream_sequence = EXCLUDED.stream_sequence"
            " WHERE EXCLUDED.stream_sequence > l.stream_sequence "
            + returning("l", "NULL", "NULL", "l.level", gone="true")
        )
        self._record, self._departure, self._nomination, self._certified, self._revoked = (
            counts.statement(w)
            for w in (
                self._record,
                self._departure,
                self._nomination,
                self._certified,
                self._revoked,
            )
        )

    async def apply(
        self,
        conn: asyncpg.Connection,
        event: ProjectedEvent,
        sequence: int,
        pending: PendingCounts | None = None,
    ) -> None:
        """Apply `event`, read at stream `sequence`, in the caller's transaction; with
        `pending`, its count changes are added there (see `placements.PlacementWriter`)."""
        if event.nats_subject in activity.INTAKE_TYPES:
            await self._activity.count_intake(conn, event.id, event.type, event.time)
        match event:
            case EmployeeUpdatedEvent(data=d):
                await self.counts.write(
                    conn,
                    self._record,
                    d.employee_id,
                    d.effective_date,
                    event.id,
                    d.department_code,
                    d.department_name,
                    d.categories,
                    d.duty_skills,
                    pending=pending,
                )
            case EmployeeLeftRecordedEvent(data=d):
                await self.counts.write(
                    conn, self._departure, d.employee_id, d.left_on, event.id, pending=pending
                )
            case LeaderNominatedRecordedEvent(data=d):
                await self.counts.write(
                    conn,
                    self._nomination,
                    d.employee_id,
                    d.fiscal_year,
                    d.department_code,
                    event.id,
                    pending=pending,
                )
            case LevelCertifiedEvent(data=d):
                await self.counts.write(
                    conn,
                    self._certified,
                    d.employee_id,
                    d.level,
                    d.certified_on,
                    d.fiscal_year,
                    d.department_code,
                    event.id,
                    sequence,
                    d.via_equivalence,
                    pending=pending,
                )
            case LevelRevokedEvent(data=d):
                await self.counts.write(
                    conn, self._revoked, d.employee_id, d.level, event.id, sequence, pending=pending
                )
            case _:
                await self._activity.apply(conn, event, sequence, pending)
