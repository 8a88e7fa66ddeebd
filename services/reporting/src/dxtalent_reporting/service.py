"""The reporting service: read models of target progress, by level, department and date.

Consumes `DX_EVENTS` with one durable consumer filtered on exactly the subjects the read model
uses (`readmodel.SUBJECTS`, several filter subjects: nats-server 2.10+, decision 0201), so
the server never delivers the others; the edge parser still skips, by subject and before
parsing, anything else (`edge.domain_events`). Events it does use are applied with one idempotent statement
each inside the consumer's batch transaction (`readmodel`), a savepoint segment at a time, with
the count changes of the segment applied once (`placements`); a malformed one is dead-lettered
on `dx.deadletter.reporting`. Queries are served over HTTP (`http`).
"""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg
import structlog

from dxtalent_contracts import subjects
from dxtalent_infra.delivery import Delivery, Handler
from dxtalent_infra.edge import domain_events
from dxtalent_infra.runtime import ConsumerSpec, ServiceContext, ServiceSpec
from dxtalent_reporting.http import routes
from dxtalent_reporting.placements import PendingCounts
from dxtalent_reporting.readmodel import (
    MIGRATIONS,
    PRIVILEGES,
    SUBJECTS,
    ProjectedEvent,
    ReadModelWriter,
)

log = structlog.get_logger(__name__)


class ProjectionHandler:
    """Projects domain events into the reporting read model: one message (the consumer's
    fallback) or a whole savepoint segment, whose count changes are summed and applied once,
    under one turn of the read model's lock (`placements`)."""

    def __init__(self, schema: str) -> None:
        self._writer = ReadModelWriter(schema)

    async def __call__(self, conn: asyncpg.Connection, delivery: Delivery) -> None:
        # the edge parsed only the subjects the read model projects; others arrive as None
        projected: ProjectedEvent | None = delivery.event
        if projected is None:
            return
        await self._writer.apply(conn, projected, delivery.stream_sequence)
        log.debug("reporting.applied", event_id=projected.id, type=projected.type)

    async def handle_many(self, conn: asyncpg.Connection, deliveries: Sequence[Delivery]) -> None:
        """A segment in stream order; a message that fails raises, and the consumer goes one
        message at a time."""
        projected = [(d.event, d.stream_sequence) for d in deliveries if d.event is not None]
        if not projected:
            return
        pending = PendingCounts()
        await self._writer.counts.lock(conn)
        for event, sequence in projected:
            await self._writer.apply(conn, event, sequence, pending)
        await self._writer.counts.apply(conn, pending)


def projection_handler(ctx: ServiceContext) -> Handler:
    """Build the handler that projects domain events into the reporting read model."""
    return read_model_handler(ctx.schema)


def read_model_handler(schema: str) -> Handler:
    """The handler that projects domain events into the read model of `schema` (the live
    one, or a rebuild's new schema: `rebuild`)."""
    return ProjectionHandler(schema)


SPEC = ServiceSpec(
    name="reporting",
    default_port=8083,
    publishes=False,
    consumers=(
        ConsumerSpec(
            stream="DX_EVENTS",
            durable="reporting",
            filter_subjects=tuple(sorted(SUBJECTS)),
            deadletter_subject=subjects.DEADLETTER_REPORTING,
            handler=projection_handler,
            parser=domain_events(only=SUBJECTS),
        ),
    ),
    migrations=(("readmodel", MIGRATIONS),),
    privileges=PRIVILEGES,
    routers=(routes,),
)
