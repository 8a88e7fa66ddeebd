"""The consumer handler: one enrollment event in, the employee's row and certification events out.

Runs inside the consumer's batch transaction. A segment of messages is applied at once by
`handle_many`, a single message (the consumer's fallback) as a segment of one: take the
replicas' turn and lock every employee's row (one statement), insert the new rows, append
the emitted events to streams `employee-{id}` of the certification event store with the
update of the rows found and their membership count changes (`memberships`) in the same
statement (decision 0296). The outbox relay then
publishes them on `dx.events.certification.*`. A fact the row already holds
(a re-published event) changes nothing and writes nothing. What `decide` returns passes
`corrections.mark` against the row's sent ledger: a re-sent level or skill names the event it
supersedes, and one whose data was already sent is not sent again.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from typing import Any

import asyncpg
import structlog
from prometheus_client import Counter

from dxtalent_certification.credentials import credential_issuer
from dxtalent_certification.domain.corrections import SentLedger, mark_with_data
from dxtalent_certification.domain.decide import DomainChange, decide
from dxtalent_certification.domain.facts import EmployeeFacts, Fact
from dxtalent_certification.domain.state import CertificationState
from dxtalent_certification.enrollment_facts import UnexpectedEventError, fact_of
from dxtalent_certification.memberships import lock_key, row_changes
from dxtalent_certification.projection import EmployeeRow, PostgresEmployeeProjection
from dxtalent_contracts.catalog import Catalog
from dxtalent_contracts.envelope import CloudEvent
from dxtalent_contracts.events import (
    LevelCertified,
    LevelCertifiedEvent,
    LevelRevoked,
    LevelRevokedEvent,
    SkillAcquired,
    SkillAcquiredEvent,
    SkillRevoked,
    SkillRevokedEvent,
)
from dxtalent_contracts.ids import uuid5_text
from dxtalent_contracts.registry import AnyEvent, type_name
from dxtalent_infra.delivery import Delivery, Handler, RejectMessage
from dxtalent_infra.eventstore import PostgresEventStore
from dxtalent_infra.membership_counts import MembershipCounts
from dxtalent_infra.metrics import DUPLICATES
from dxtalent_infra.records import NewEvent
from dxtalent_infra.runtime import ServiceContext

log = structlog.get_logger(__name__)

#: Namespace of the ids of emitted events: uuid5(causing event id, index in `decide`'s list),
#: so applying one enrollment event twice could only ever produce the same ids.
EMITTED_NAMESPACE = uuid.UUID("3a4c1f0e-7d52-4b8e-a1c9-5e2f8b6d0c47")

#: The CloudEvents type each kind of change is recorded as.
EVENT_TYPE_OF: dict[type[DomainChange], str] = {
    SkillAcquired: type_name(SkillAcquiredEvent),
    SkillRevoked: type_name(SkillRevokedEvent),
    LevelCertified: type_name(LevelCertifiedEvent),
    LevelRevoked: type_name(LevelRevokedEvent),
}

CHANGES = Counter(
    "dxtalent_certification_changes_total",
    "Certification events emitted, by CloudEvents type.",
    ["type"],
)


_NAMESPACE_BYTES = EMITTED_NAMESPACE.bytes


def emitted_event_id(causing_event_id: str, index: int) -> str:
    """The id of the `index`-th event emitted for one enrollment event: the text of
    `uuid.uuid5(EMITTED_NAMESPACE, f"{causing_event_id}\\x00{index}")` (`uuid5_text`, once
    per change emitted)."""
    return uuid5_text(_NAMESPACE_BYTES, f"{causing_event_id}\x00{index}")


def apply_fact(
    catalog: Catalog, row: EmployeeRow, fact: Fact, cause_id: str
) -> tuple[EmployeeRow, list[tuple[str, DomainChange]]]:
    """The row after `fact` (caused by event `cause_id`), and the changes to send with their
    ids. Each id is fixed by `cause_id` and the change's place in `decide`'s list, before
    `mark` drops any: a redelivery of the same event over the same row gives the same ids."""
    after, to_send, _ = apply_fact_with_data(catalog, row, fact, cause_id)
    return after, to_send


def apply_fact_with_data(
    catalog: Catalog, row: EmployeeRow, fact: Fact, cause_id: str
) -> tuple[EmployeeRow, list[tuple[str, DomainChange]], list[dict[str, Any]]]:
    """`apply_fact`, with the JSON data of each change to send (`mark_with_data`)."""
    facts, state, changes = decide(catalog, row.facts, row.state, fact)
    ids = [emitted_event_id(cause_id, i) for i in range(len(changes))]
    to_send, datas, sent = mark_with_data(changes, ids, row.sent)
    return EmployeeRow(facts, state, sent), to_send, datas


def to_new_events(
    changes: list[tuple[str, DomainChange]],
    cause: CloudEvent,
    received_at: dt.datetime,
    datas: Sequence[dict[str, Any]] | None = None,
) -> list[NewEvent]:
    """The changes `cause` produced, with their ids, as events for the certification store.
    `datas`, when given, is each change's `model_dump(mode="json")` (`apply_fact_with_data`)."""
    correlation = cause.correlationid or cause.id
    occurred_at = cause.time or received_at
    if datas is None:
        datas = [change.model_dump(mode="json") for _, change in changes]
    return [
        NewEvent(
            event_id=event_id,
            event_type=EVENT_TYPE_OF[type(change)],
            data=data,
            occurred_at=occurred_at,
            subject=change.employee_id,
            causation_id=cause.id,
            correlation_id=correlation,
        )
        for (event_id, change), data in zip(changes, datas, strict=True)
    ]


class CertificationHandler:
    """Applies one enrollment event to its employee (see the module docstring)."""

    def __init__(self, ctx: ServiceContext) -> None:
        self._catalog = ctx.catalog
        self._store: PostgresEventStore | None = ctx.store
        self._projection = PostgresEmployeeProjection(ctx.schema)
        self._counts = MembershipCounts(ctx.schema)
        self._turn = lock_key(ctx.schema)
        self._duplicates = DUPLICATES.labels(service=ctx.name)
        # portable credentials (None when not configured): see `credentials`
        self._credentials = credential_issuer(ctx.settings, ctx.catalog, ctx.schema)

    @classmethod
    def replaying(cls, catalog: Catalog, schema: str) -> CertificationHandler:
        """The handler of a rebuild (`rebuild`): the same rows in `schema`, and nothing
        appended, published or issued (the live service did that when the facts came)."""
        handler = cls.__new__(cls)
        handler._catalog = catalog
        handler._store = None
        handler._projection = PostgresEmployeeProjection(schema)
        handler._counts = MembershipCounts(schema)
        handler._turn = lock_key(schema)
        handler._duplicates = DUPLICATES.labels(service="certification-rebuild")
        handler._credentials = None
        return handler

    async def __call__(self, conn: asyncpg.Connection, delivery: Delivery) -> None:
        """Handle one message inside the consumer's transaction on `conn`: a segment of one,
        with every log line carrying the event's ids."""
        event = _parse(delivery)
        fact = _fact(event)
        if fact is None:
            return
        with structlog.contextvars.bound_contextvars(
            event_id=event.id,
            correlation_id=event.correlationid or event.id,
            causation_id=event.causationid,
            employee_id=fact.employee_id,
        ):
            await self._apply(conn, [(delivery, event, fact)])

    async def handle_many(self, conn: asyncpg.Connection, deliveries: Sequence[Delivery]) -> None:
        """A whole segment of messages at once. Any problem (a message to reject, a concurrent
        insert) raises; the consumer then rolls the segment back and applies its messages one
        at a time through `__call__`, which handles each case."""
        items = []
        for delivery in deliveries:
            event = _parse(delivery)
            fact = _fact(event)
            if fact is not None:
                items.append((delivery, event, fact))
        if items:
            await self._apply(conn, items)

    async def _apply(
        self, conn: asyncpg.Connection, items: Sequence[tuple[Delivery, AnyEvent, Fact]]
    ) -> None:
        """A few statements whatever the count: take the turn and lock every employee's row
        (one statement), insert the new rows, append all emitted events with the update of
        the rows found and the count changes (one statement, `_write`). Facts a row already
        holds change nothing, counts included.

        The count changes are right without the turn: each is (after − before) of a row this
        transaction holds locked, and additions commute. The turn (a transaction-level
        advisory lock, taken before any row lock and held to COMMIT) keeps two replicas from
        deadlocking: a batch holds the shared count rows it added to until COMMIT, and a
        later segment of it may wait for an employee row another batch locked before waiting
        for those count rows."""
        employees = [f.employee_id for _, _, f in items]
        rows = await self._projection.lock_many(conn, employees, turn=self._turn)
        working = dict(rows)
        emitted: dict[str, list[NewEvent]] = {}
        recorded: list[tuple[list[tuple[str, DomainChange]], list[NewEvent]]] = []
        for delivery, event, fact in items:
            emp = fact.employee_id
            row = working.get(emp) or _new_row(emp)
            if row.facts.knows(fact):
                self._duplicates.inc()
                log.debug("certification.fact_known", fact_id=fact.fact_id)
                continue
            working[emp], changes, datas = apply_fact_with_data(self._catalog, row, fact, event.id)
            if changes:
                events = to_new_events(changes, event, delivery.received_at, datas)
                emitted.setdefault(emp, []).extend(events)
                recorded.append((changes, events))
        changed = sorted(emp for emp, row in working.items() if row is not rows.get(emp))
        await self._write(conn, rows, {emp: working[emp] for emp in changed}, emitted)
        if self._store is None:  # a rebuild: the live service sent these changes already
            return
        if self._credentials is not None and recorded:  # same transaction as the events
            await self._credentials.record(conn, recorded)
        for changes, events in recorded:
            _record(changes, events)

    async def _write(
        self,
        conn: asyncpg.Connection,
        found: dict[str, EmployeeRow],
        changed: dict[str, EmployeeRow],
        emitted: dict[str, list[NewEvent]],
    ) -> None:
        """Write the `changed` rows (by employee, in id order; `found` what `lock_many` read),
        their count changes and the `emitted` events. New rows are inserted first (a row
        created meanwhile raises `ConcurrentInsertError`); the update of the rows found and
        the two count upserts then travel with the append (decision 0296): the rows are
        locked since `lock_many`, the count rows are behind the turn, and all is written or
        nothing. Without events (or in a rebuild), the update and the counts are a statement
        each."""
        await self._projection.insert_many(
            conn, [row for emp, row in changed.items() if emp not in found]
        )
        update = self._projection.update_many(
            [row for emp, row in changed.items() if emp in found], found=found
        )
        counted = row_changes((found.get(emp), row) for emp, row in changed.items())
        if self._store is not None and emitted:
            along = [] if update is None else [update]
            batches = [(f"employee-{emp}", None, events) for emp, events in emitted.items()]
            await self._store.append_many(
                batches, conn=conn, along=[*along, *self._counts.writes(counted)]
            )
            return
        if update is not None:
            await conn.execute(update.sql, *update.args)
        await self._counts.add(conn, counted)


def certification_handler(ctx: ServiceContext) -> Handler:
    """Build the handler of `dx.events.enrollment.*` messages for a running service."""
    return CertificationHandler(ctx)


def _new_row(employee_id: str) -> EmployeeRow:
    return EmployeeRow(
        EmployeeFacts(employee_id), CertificationState.empty(employee_id), SentLedger.empty()
    )


def _record(changes: list[tuple[str, DomainChange]], events: list[NewEvent]) -> None:
    """Count what was emitted; log level changes (rare enough to log each)."""
    for (_, change), new in zip(changes, events, strict=True):
        CHANGES.labels(new.event_type).inc()
        if isinstance(change, LevelCertified | LevelRevoked):
            log.info(
                "certification.level_changed",
                emitted=new.event_type,
                emitted_id=new.event_id,
                level=change.level,
                supersedes=change.supersedes if isinstance(change, LevelCertified) else None,
            )


def _parse(delivery: Delivery) -> AnyEvent:
    """The event the consumer parsed at the edge (`edge.domain_events`)."""
    event: AnyEvent = delivery.event
    return event


def _fact(event: AnyEvent) -> Fact | None:
    try:
        return fact_of(event)
    except UnexpectedEventError as exc:
        raise RejectMessage(str(exc)) from exc
