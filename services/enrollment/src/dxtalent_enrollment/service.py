"""The enrollment service: validates inbound facts and records the accepted ones.

Consumes `DX_INBOUND`; a message that is not a valid event, or names a course, category or
skill the catalog does not know, is dead-lettered on `dx.deadletter.inbound` with its original
bytes and a readable reason. Accepted facts are appended to the enrollment event store
(idempotent by CloudEvents source and id) and reach `dx.events.enrollment.*` through the outbox.
"""

from __future__ import annotations

import datetime as dt

import asyncpg
import structlog

from dxtalent_contracts.registry import Rejection, parse_inbound
from dxtalent_enrollment.domain import catalog_problems, record, subject_problem
from dxtalent_infra.consumer import Delivery, RejectMessage
from dxtalent_infra.metrics import DUPLICATES
from dxtalent_infra.records import NewEvent
from dxtalent_infra.runtime import ConsumerSpec, Handler, ServiceContext, ServiceSpec

log = structlog.get_logger(__name__)


def inbound_handler(ctx: ServiceContext) -> Handler:
    """Build the handler for one inbound message, inside the consumer's batch transaction."""

    async def handle(conn: asyncpg.Connection, delivery: Delivery) -> None:
        parsed = parse_inbound(delivery.data)
        if isinstance(parsed, Rejection):
            raise RejectMessage(parsed.reason, parsed.errors)
        wrong_subject = subject_problem(parsed, delivery.subject)
        if wrong_subject is not None:
            raise RejectMessage(wrong_subject, [])
        problems = catalog_problems(ctx.catalog, parsed)
        if problems:
            shown = "; ".join(f"{p.field}: {p.problem}" for p in problems[:3])
            raise RejectMessage(
                f"Event {parsed.type!r} {parsed.id!r} is not valid: {shown}.", problems
            )
        with structlog.contextvars.bound_contextvars(
            correlation_id=parsed.correlationid or parsed.id
        ):
            fact = record(ctx.catalog, parsed, dt.datetime.now(dt.UTC))
            if await ctx.store.event_exists(fact.event_id, conn=conn):
                DUPLICATES.labels(service=ctx.name).inc()
                log.info("inbound.duplicate", event_id=parsed.id, source=parsed.source)
                return
            event = NewEvent(
                event_id=fact.event_id,
                event_type=fact.event_type,
                data=fact.data,
                occurred_at=fact.occurred_at,
                subject=fact.subject,
                causation_id=fact.causation_id,
                correlation_id=fact.correlation_id,
            )
            await ctx.store.append(fact.stream_id, None, [event], conn=conn)

    return handle


SPEC = ServiceSpec(
    name="enrollment",
    default_port=8081,
    publishes=True,
    consumers=(
        ConsumerSpec(
            stream="DX_INBOUND",
            durable="enrollment",
            filter_subjects=("dx.inbound.>",),
            deadletter_subject="dx.deadletter.inbound",
            handler=inbound_handler,
        ),
    ),
)
