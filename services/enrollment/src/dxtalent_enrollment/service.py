"""The enrollment service: validates inbound facts and records the accepted ones.

Consumes `DX_INBOUND`; a message that is not a valid event, or names a course, category or
skill the catalog does not know, is dead-lettered on `dx.deadletter.inbound` with its original
bytes and a readable reason. Accepted facts are appended to the enrollment event store
(idempotent by CloudEvents source and id) and reach `dx.events.enrollment.*` through the outbox.
"""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg
import structlog

from dxtalent_contracts import subjects
from dxtalent_contracts.inbound import InboundEvent
from dxtalent_enrollment.domain import RecordedFact, inbound_problem, record
from dxtalent_enrollment.http import MIGRATIONS, PRIVILEGES, routes
from dxtalent_infra.delivery import Delivery, Handler, RejectMessage
from dxtalent_infra.edge import inbound_facts
from dxtalent_infra.eventstore import Gate
from dxtalent_infra.metrics import DUPLICATES
from dxtalent_infra.records import NewEvent
from dxtalent_infra.runtime import (
    CRITICAL_PATH_BATCH_INTERVAL_S,
    ConsumerSpec,
    ServiceContext,
    ServiceSpec,
)

log = structlog.get_logger(__name__)


def _accepted(ctx: ServiceContext, delivery: Delivery) -> InboundEvent:
    """The typed fact of a message (parsed at the edge), or `RejectMessage` saying why the
    catalog cannot accept it."""
    parsed: InboundEvent = delivery.event
    problem = inbound_problem(ctx.catalog, parsed, delivery.subject)
    if problem is not None:
        raise RejectMessage(problem.reason, problem.errors)
    return parsed


def _new_event(fact: RecordedFact) -> NewEvent:
    return NewEvent(
        event_id=fact.event_id,
        event_type=fact.event_type,
        data=fact.data,
        occurred_at=fact.occurred_at,
        subject=fact.subject,
        causation_id=fact.causation_id,
        correlation_id=fact.correlation_id,
    )


class InboundHandler:
    """Records accepted inbound facts, inside the consumer's batch transaction."""

    def __init__(self, ctx: ServiceContext) -> None:
        self._ctx = ctx
        self._duplicates = DUPLICATES.labels(service=ctx.name)

    async def __call__(self, conn: asyncpg.Connection, delivery: Delivery) -> None:
        """One message (the consumer's fallback): validate, then record it as a segment of one,
        with every log line carrying its correlation id."""
        parsed = _accepted(self._ctx, delivery)
        with structlog.contextvars.bound_contextvars(
            correlation_id=parsed.correlationid or parsed.id
        ):
            await self._record(conn, [record(self._ctx.catalog, parsed, delivery.received_at)])

    def check(self, delivery: Delivery) -> None:
        """`RejectMessage` for a fact the catalog refuses: the consumer dead-letters it before
        the batch and applies the rest at once (`applier`, decision 0250), instead of a
        rolled-back attempt and savepoint segments for every batch holding one."""
        _accepted(self._ctx, delivery)

    async def handle_many(self, conn: asyncpg.Connection, deliveries: Sequence[Delivery]) -> None:
        """A whole segment at once, of messages `check` has passed (the consumer runs it on
        every new message before any handler, `delivery.Check`): no second catalog check."""
        facts = [record(self._ctx.catalog, d.event, d.received_at) for d in deliveries]
        await self._record(conn, facts)

    async def apply_claimed(
        self, conn: asyncpg.Connection, deliveries: Sequence[Delivery], gate: Gate
    ) -> set[str]:
        """A whole batch as one statement with the inbox's claim as its gate (`applier`,
        decision 0325), of messages `check` has passed: the facts of the messages the claim
        takes are appended, those recorded before skipped; returns the keys it took."""
        facts: dict[str, tuple[RecordedFact, str]] = {}
        again: list[tuple[RecordedFact, str]] = []  # the same fact twice in one batch
        for d in deliveries:
            fact = record(self._ctx.catalog, d.event, d.received_at)
            if fact.event_id in facts:
                again.append((fact, d.message_key))
            else:
                facts[fact.event_id] = (fact, d.message_key)
        gated = await self._ctx.store.append_gated(
            [(fact.stream_id, _new_event(fact), key) for fact, key in facts.values()],
            gate,
            conn=conn,
        )
        for event_id in gated.stored:
            self._duplicate(facts[event_id][0])
        for fact, key in again:  # a duplicate fact, counted when its message was new
            if key in gated.passed:
                self._duplicate(fact)
        return gated.passed

    async def _record(self, conn: asyncpg.Connection, facts: Sequence[RecordedFact]) -> None:
        """One statement whatever the count: append the facts the store does not hold yet;
        a fact recorded before (the same source and id again), or twice in this segment, is
        a duplicate and changes nothing."""
        unique: dict[str, RecordedFact] = {}
        for fact in facts:
            if fact.event_id in unique:  # the same fact twice in one segment
                self._duplicate(fact)
            else:
                unique[fact.event_id] = fact
        stored = await self._ctx.store.append_new(
            [(fact.stream_id, _new_event(fact)) for fact in unique.values()], conn=conn
        )
        for event_id in stored:
            self._duplicate(unique[event_id])

    def _duplicate(self, fact: RecordedFact) -> None:
        self._duplicates.inc()
        log.info("inbound.duplicate", fact_id=fact.causation_id)


def inbound_handler(ctx: ServiceContext) -> Handler:
    """Build the handler for inbound messages."""
    return InboundHandler(ctx)


SPEC = ServiceSpec(
    name="enrollment",
    default_port=8081,
    publishes=True,
    routers=(routes,),
    migrations=MIGRATIONS,
    privileges=PRIVILEGES,
    consumers=(
        ConsumerSpec(
            stream="DX_INBOUND",
            durable="enrollment",
            filter_subjects=(subjects.INBOUND_ALL,),
            deadletter_subject=subjects.DEADLETTER_INBOUND,
            handler=inbound_handler,
            parser=inbound_facts,
            # on the path to LevelCertified: batches at most every 20 ms under a steady
            # load, for fewer per-batch costs on the cores the path shares (decision 0345)
            min_batch_interval_s=CRITICAL_PATH_BATCH_INTERVAL_S,
        ),
    ),
)
