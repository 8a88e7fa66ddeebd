"""A segment written at once leaves every table of the read model as one event at a time does.

The events are a generated city's, as the services publish them: each inbound fact recorded by
enrollment (`record`), followed by what certification's core sends for it (`apply_fact`). They
are shuffled, some sent again under a new stream sequence, some redelivered late with their
old one (a nak'ed message: older than what was applied meanwhile). A last block puts what a
segment must get right side by side: two records of one employee on one day and on another, a
level certified then revoked and one revoked before its older certification arrives, a
completion and its void (and a void before its completion), a skill acquired then revoked and
the reverse, a case reported twice, duplicates of a nomination, a departure and an enrollment,
two departures of one employee.

Applied one event per transaction (the reference), then in segments of several sizes and all
in one: every table holds the same rows, the count tables the same non-zero rows (a change
that nets to zero within a segment is never written; a zero row counts nothing). And the count
tables are the employees' own: the changes from nothing to each employee's final rows.
"""

from __future__ import annotations

import datetime as dt
import random
import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from typing import Any

import asyncpg

from dxtalent.citygen import generate_city
from dxtalent_certification.domain.corrections import SentLedger
from dxtalent_certification.domain.facts import EmployeeFacts
from dxtalent_certification.domain.state import CertificationState
from dxtalent_certification.enrollment_facts import fact_of
from dxtalent_certification.handler import EVENT_TYPE_OF, apply_fact
from dxtalent_certification.projection import EmployeeRow
from dxtalent_contracts.catalog import load_catalog
from dxtalent_contracts.envelope import CloudEvent
from dxtalent_contracts.events import (
    CompletionVoidedRecordedEvent,
    CourseCompletedRecordedEvent,
    CourseEnrolledRecordedEvent,
    EmployeeUpdatedEvent,
    ImprovementCaseRecordedEvent,
    LeaderNominatedRecordedEvent,
    SkillAcquiredEvent,
    SkillRevokedEvent,
)
from dxtalent_contracts.fiscal import yearly
from dxtalent_contracts.registry import EVENT_CLASS_BY_TYPE
from dxtalent_enrollment.domain import record
from dxtalent_infra.delivery import Delivery
from dxtalent_infra.migrations import migrate, quote_ident
from dxtalent_reporting.placements import PendingCounts, PlacementWriter
from dxtalent_reporting.readmodel import MIGRATIONS
from dxtalent_reporting.service import ProjectionHandler
from tests.integration.reporting.harness import certified, employee, left, revoked
from tests.support.servers import unique_token

CATALOG = load_catalog()
READ_MODEL = (
    "employee_records",
    "departures",
    "nominations",
    "levels",
    "skills",
    "completions",
    "enrollments",
    "improvement_cases",
    "intake",
)
COUNTS = ("placement_days", "placement_years", "membership_days", "membership_years")

Stream = list[tuple[CloudEvent, int]]  # event, stream sequence


def _event(type_: str, event_id: str, source: str, time: Any, data: Any) -> Any:
    return EVENT_CLASS_BY_TYPE[type_].model_validate(
        {
            "specversion": "1.0",
            "id": event_id,
            "source": source,
            "type": type_,
            "subject": data.get("employee_id"),
            "time": time,
            "data": data,
        }
    )


def city_events(staff: int, seed: int) -> list[CloudEvent]:
    """The events reporting reads for a generated city, in the order the services send them."""
    out: list[CloudEvent] = []
    rows: dict[str, EmployeeRow] = {}
    for inbound in generate_city(CATALOG, seed=seed, staff=staff).events:
        fact = record(CATALOG, inbound, inbound.time or dt.datetime.now(dt.UTC))
        recorded = _event(
            fact.event_type, fact.event_id, "urn:test:enrollment", fact.occurred_at, fact.data
        )
        out.append(recorded)
        certification = fact_of(recorded)
        if certification is None:
            continue
        who = certification.employee_id
        row = rows.get(who) or EmployeeRow(
            EmployeeFacts(who), CertificationState.empty(who), SentLedger.empty()
        )
        rows[who], changes = apply_fact(CATALOG, row, certification, recorded.id)
        out += [
            _event(
                EVENT_TYPE_OF[type(change)],
                event_id,
                "urn:test:certification",
                recorded.time,
                change.model_dump(mode="json"),
            )
            for event_id, change in changes
        ]
    return out


def shuffled(events: list[CloudEvent], rng: random.Random) -> Stream:
    """`events` shuffled, a sixth sent again later (a new sequence), and a twentieth
    redelivered later than younger messages (its old sequence)."""
    order = list(events)
    rng.shuffle(order)
    for event in rng.sample(events, len(events) // 6):
        order.insert(rng.randrange(len(order) + 1), event)
    stream = [(event, n) for n, event in enumerate(order, 1)]
    for _ in range(len(stream) // 20):
        late = stream.pop(rng.randrange(len(stream)))
        stream.insert(rng.randrange(len(stream) + 1), late)
    return stream


def _copy(event: Any, **data: Any) -> Any:
    """`event` as a new fact (a fresh id) with `data` changed."""
    return event.model_copy(
        update={"id": str(uuid.uuid4()), "data": event.data.model_copy(update=data)}
    )


def edge_block(events: Sequence[CloudEvent], first: int) -> Stream:
    """What a segment must get right, side by side, from stream sequence `first` on."""

    def first_of(cls: type[Any]) -> Any:
        return next(e for e in events if isinstance(e, cls))

    x = first_of(EmployeeUpdatedEvent).data.employee_id
    y = next(e.data.employee_id for e in events if isinstance(e, LeaderNominatedRecordedEvent))
    completion = first_of(CourseCompletedRecordedEvent)
    done, undone = str(uuid.uuid4()), str(uuid.uuid4())
    void = CompletionVoidedRecordedEvent.model_validate(
        {
            "specversion": "1.0",
            "id": str(uuid.uuid4()),
            "source": "urn:test:enrollment",
            "type": "dxtalent.enrollment.CompletionVoided.v1",
            "subject": x,
            "time": completion.time,
            "data": {
                "employee_id": x,
                "course_id": completion.data.course_id,
                "voided_event_id": done,
                "reason": "recorded in error",
            },
        }
    )
    skill = first_of(SkillAcquiredEvent)
    unskill = SkillRevokedEvent.model_validate(
        {
            **skill.model_dump(exclude={"data", "type", "id"}),
            "id": str(uuid.uuid4()),
            "type": "dxtalent.certification.SkillRevoked.v1",
            "data": {
                "employee_id": skill.data.employee_id,
                "skill": skill.data.skill,
                "reason": "completion voided",
            },
        }
    )
    case = first_of(ImprovementCaseRecordedEvent)
    nomination = first_of(LeaderNominatedRecordedEvent)
    enrolment = first_of(CourseEnrolledRecordedEvent)
    early, late = left(x, "2026-06-30"), left(x, "2026-05-31")
    block: list[Any] = [
        employee(x, "D-EDGE-1", "2026-04-01", categories=("section-chief",)),
        employee(x, "D-EDGE-2", "2026-04-01"),  # the same day: the greater fact id stays
        employee(x, "D-EDGE-3", "2026-10-01"),
        certified(x, 3, "2026-05-01"),
        revoked(x, 3),
        _copy(completion, fact_id=done),
        void,
        void.model_copy(update={"id": str(uuid.uuid4())}),  # a second void of it
        _copy(skill),
        unskill,
        case,
        _copy(case, title="改善事例 (再報告)"),
        nomination,
        nomination,
        enrolment,
        enrolment,
        early,
        late,
        early,
    ]
    stream: Stream = [(e, n) for n, e in enumerate(block, first)]
    n = first + len(block)
    # read before what they undo, which is older in the stream (a late redelivery)
    older = [
        (certified(y, 2, "2025-09-01"), n),
        (_copy(completion, fact_id=undone), n + 1),
        (_copy(skill, acquired_on=dt.date(2025, 8, 1)), n + 2),
    ]
    stream += [
        (revoked(y, 2), n + 3),
        older[0],
        (
            void.model_copy(
                update={"data": void.data.model_copy(update={"voided_event_id": undone})}
            ),
            n + 4,
        ),
        older[1],
        (unskill.model_copy(update={"id": str(uuid.uuid4())}), n + 5),
        older[2],
    ]
    return stream


def chunks(stream: Stream, size: int) -> Iterator[Stream]:
    for start in range(0, len(stream), size):
        yield stream[start : start + size]


def _delivery(event: CloudEvent, sequence: int) -> Delivery:
    return Delivery(
        subject=event.nats_subject,
        data=b"",
        headers={},
        stream_sequence=sequence,
        num_delivered=1,
        message_key=f"{event.id}/{sequence}",
        received_at=dt.datetime.now(dt.UTC),
        event=event,
    )


Tables = dict[str, Counter[tuple[object, ...]]]


async def project(conn: asyncpg.Connection, schema: str, batches: Sequence[Stream]) -> Tables:
    """Apply each batch in a transaction of its own (one alone as the consumer's fallback does);
    the tables' rows afterwards."""
    await migrate(conn, schema, "readmodel", MIGRATIONS)
    handler = ProjectionHandler(schema)
    for batch in batches:
        deliveries = [_delivery(event, sequence) for event, sequence in batch]
        async with conn.transaction():
            if len(deliveries) == 1:
                await handler(conn, deliveries[0])
            else:
                await handler.handle_many(conn, deliveries)
    q = quote_ident(schema)
    tables: Tables = {}
    for table in (*READ_MODEL, *COUNTS):
        where = " WHERE n <> 0" if table in COUNTS else ""
        rows = await conn.fetch(f"SELECT * FROM {q}.{table}{where}")
        tables[table] = Counter(
            tuple(tuple(v) if isinstance(v, list) else v for v in r.values()) for r in rows
        )
    return tables


async def own_counts(conn: asyncpg.Connection, schema: str) -> Tables:
    """The count tables as the employees' final rows make them, from nothing."""
    q = quote_ident(schema)
    employees = await conn.fetch(
        " UNION ".join(
            f"SELECT employee_id FROM {q}.{table}"
            for table in ("employee_records", "departures", "nominations", "levels", "skills")
        )
    )
    writer = PlacementWriter(schema)
    pending = PendingCounts()
    for who, rows in (await writer.rows(conn, [r[0] for r in employees])).items():
        writer.add(pending, who, [], rows)
    placed = {k: n for k, n in pending.placed.items() if n}
    members = {k: n for k, n in pending.members.items() if n}
    return {
        table: Counter((*key, n) for key, n in items.items())
        for table, items in (
            ("placement_days", placed),
            ("placement_years", yearly(placed)),
            ("membership_days", members),
            ("membership_years", yearly(members)),
        )
    }


async def test_segments_of_any_size_leave_the_tables_as_one_event_at_a_time(
    database_url: str,
) -> None:
    events = city_events(staff=200, seed=11)
    city = shuffled(events, random.Random(11))
    block = edge_block(events, len(city) + 1)
    stream = city + block
    schemas = [unique_token() for _ in range(5)]
    conn = await asyncpg.connect(database_url)
    try:
        reference = await project(conn, schemas[0], [[m] for m in stream])
        assert await own_counts(conn, schemas[0]) == {t: reference[t] for t in COUNTS}
        for schema, size in zip(schemas[1:4], (3, 50, 500), strict=True):
            batched = await project(conn, schema, [*chunks(city, size), block])
            for table in reference:
                assert batched[table] == reference[table], (size, table)
        together = await project(conn, schemas[4], [stream])
        for table in reference:
            assert together[table] == reference[table], table
    finally:
        for schema in schemas:
            await conn.execute(f"DROP SCHEMA IF EXISTS {quote_ident(schema)} CASCADE")
        await conn.close()
