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

Every write is an idempotent upsert in the consumer's transaction: the same event twice changes
nothing. A segment's rows of every table (these and `activity`'s) are written by one statement
(`segment`, decision 0230). The writes of these four tables also keep the placement counts the
progress reports read (`placements`, decision 0205).

Meaning of `as_of`: the state on that date *as known now*. Records are effective-dated and
levels carry `certified_on`, so any past date can be answered from the current tables; a
revoked level (a voided completion was an error) is gone from every `as_of`, and a level
re-certified with a new date counts from its new date only.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import asyncpg

from dxtalent_contracts.events import (
    EmployeeLeftRecordedEvent,
    EmployeeUpdatedEvent,
    LeaderNominatedRecordedEvent,
    LevelCertifiedEvent,
    LevelRevokedEvent,
)
from dxtalent_infra.migrations import Migration, Privilege
from dxtalent_reporting import activity, placements
from dxtalent_reporting.activity import ActivityEvent
from dxtalent_reporting.placements import PlacementWriter
from dxtalent_reporting.segment import RowsOf, SegmentRows, SegmentStatement, Table, rows_of

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
    activity.UNREAD_INDEXES,
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


RECORDS = Table(
    "employee_records",
    "r",
    (
        ("employee_id", "text"),
        ("effective_date", "date"),
        ("fact_id", "text"),
        ("department_code", "text"),
        ("department_name", "text"),
        ("categories", "text[]"),
        ("duty_skills", "text[]"),
    ),
    "ON CONFLICT (employee_id, effective_date) DO UPDATE"
    " SET fact_id = EXCLUDED.fact_id, department_code = EXCLUDED.department_code,"
    " department_name = EXCLUDED.department_name, categories = EXCLUDED.categories,"
    " duty_skills = EXCLUDED.duty_skills WHERE EXCLUDED.fact_id > r.fact_id",
    key=2,
    returning=True,
)
DEPARTURES = Table(
    "departures",
    "d",
    (("employee_id", "text"), ("left_on", "date"), ("fact_id", "text")),
    "ON CONFLICT (employee_id) DO UPDATE"
    " SET left_on = EXCLUDED.left_on, fact_id = EXCLUDED.fact_id"
    " WHERE (EXCLUDED.left_on, EXCLUDED.fact_id) < (d.left_on, d.fact_id)",
    key=1,
    returning=True,
)
NOMINATIONS = Table(
    "nominations",
    "n",
    (
        ("employee_id", "text"),
        ("fiscal_year", "int"),
        ("department_code", "text"),
        ("fact_id", "text"),
    ),
    "ON CONFLICT (employee_id, fiscal_year, department_code) DO UPDATE"
    " SET fact_id = EXCLUDED.fact_id WHERE EXCLUDED.fact_id < n.fact_id",
    key=3,
    returning=True,
)
#: a certification and a revocation share the row: the revocation (a tombstone) keeps what
#: the certification wrote, or leaves it empty when read first
LEVELS = Table(
    "levels",
    "l",
    (
        ("employee_id", "text"),
        ("level", "int"),
        ("certified_on", "date"),
        ("fiscal_year", "int"),
        ("department_code", "text"),
        ("revoked", "bool"),
        ("event_id", "text"),
        ("stream_sequence", "bigint"),
        ("via_equivalence", "bool"),
    ),
    "ON CONFLICT (employee_id, level) DO UPDATE SET "
    + ", ".join(
        f"{c} = CASE WHEN EXCLUDED.revoked THEN l.{c} ELSE EXCLUDED.{c} END"
        for c in ("certified_on", "fiscal_year", "department_code", "via_equivalence")
    )
    + ", revoked = EXCLUDED.revoked, event_id = EXCLUDED.event_id,"
    " stream_sequence = EXCLUDED.stream_sequence"
    " WHERE EXCLUDED.stream_sequence > l.stream_sequence",
    key=2,
    returning=True,
)


def _record(rows: SegmentRows, event: EmployeeUpdatedEvent, sequence: int) -> None:
    d = event.data
    rows.add(
        RECORDS,
        d.employee_id,
        d.effective_date,
        event.id,
        d.department_code,
        d.department_name,
        d.categories,
        d.duty_skills,
        counted=d.employee_id,
    )


def _departure(rows: SegmentRows, event: EmployeeLeftRecordedEvent, sequence: int) -> None:
    d = event.data
    rows.add(DEPARTURES, d.employee_id, d.left_on, event.id, counted=d.employee_id)


def _nomination(rows: SegmentRows, event: LeaderNominatedRecordedEvent, sequence: int) -> None:
    d = event.data
    rows.add(
        NOMINATIONS,
        d.employee_id,
        d.fiscal_year,
        d.department_code,
        event.id,
        counted=d.employee_id,
    )


def _certified(rows: SegmentRows, event: LevelCertifiedEvent, sequence: int) -> None:
    d = event.data
    rows.add(
        LEVELS,
        d.employee_id,
        d.level,
        d.certified_on,
        d.fiscal_year,
        d.department_code,
        False,
        event.id,
        sequence,
        d.via_equivalence,
        counted=d.employee_id,
    )


def _revoked(rows: SegmentRows, event: LevelRevokedEvent, sequence: int) -> None:
    d = event.data
    rows.add(
        LEVELS,
        d.employee_id,
        d.level,
        None,
        None,
        None,
        True,
        event.id,
        sequence,
        False,
        counted=d.employee_id,
    )


#: the rows each projected event type writes (`add_rows`), with `activity`'s
ROWS_OF: dict[type[Any], RowsOf] = {
    EmployeeUpdatedEvent: _record,
    EmployeeLeftRecordedEvent: _departure,
    LeaderNominatedRecordedEvent: _nomination,
    LevelCertifiedEvent: _certified,
    LevelRevokedEvent: _revoked,
    **activity.ROWS_OF,
}


def add_rows(rows: SegmentRows, event: ProjectedEvent, sequence: int) -> None:
    """The rows `event`, read at stream `sequence`, writes (none for a type the read model
    does not project)."""
    if event.nats_subject in activity.INTAKE_TYPES:
        activity.add_intake(rows, event.id, event.type, event.time)
    # on the exact type: a `match` on the classes made an `isinstance` through `ABCMeta` per
    # case tried, up to nine per event (decision 0335)
    write = rows_of(ROWS_OF, type(event))
    if write is not None:
        write(rows, event, sequence)


class ReadModelWriter:
    """Applies a segment of projected events to the read model of `schema`."""

    def __init__(self, schema: str) -> None:
        self.counts = PlacementWriter(schema)
        self._write = SegmentStatement(
            schema,
            (RECORDS, DEPARTURES, NOMINATIONS, LEVELS, *activity.TABLES),
            self.counts.segment_sql,
        )

    async def apply(
        self, conn: asyncpg.Connection, projected: Sequence[tuple[ProjectedEvent, int]]
    ) -> None:
        """Apply each event, read at its stream sequence, in the caller's transaction: the
        rows in one statement (more when a key repeats), which also returns the counted
        employees' rows before it and the rows it wrote, and the count changes they make
        (`placements`) in one more, under the read model's turn."""
        rows = SegmentRows()
        for event, sequence in projected:
            add_rows(rows, event, sequence)
        # replicas take turns with the whole segment, so they never wait on each other's rows
        await self.counts.lock(conn)
        found = await self._write.write(conn, rows.rows, sorted(rows.counted))
        if rows.counted:
            await self.counts.apply(conn, self.counts.changes(found))
