"""The reporting service: read models of target progress, by level, department and date.

Consumes `DX_EVENTS` with one durable consumer filtered on exactly the subjects the read model
uses (`readmodel.SUBJECTS`, several filter subjects: nats-server 2.10+, decision 0201), so
the server never delivers the others; the edge parser still skips, by subject and before
parsing, anything else (`edge.domain_events`). The events it does use are applied a segment at
a time inside the consumer's batch transaction: the rows of every table in one statement
(`readmodel`, `segment`), the count changes of the segment in one more (`placements`). A
message that fails is then applied alone, and a malformed one is dead-lettered on
`dx.deadletter.reporting`. Queries are served over HTTP (`http`).
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
from dxtalent_reporting.readmodel import (
    MIGRATIONS,
    PRIVILEGES,
    SUBJECTS,
    ProjectedEvent,
    ReadModelWriter,
)

log = structlog.get_logger(__name__)


class ProjectionHandler:
    """Projects domain events into the reporting read model: a whole segment at once, or one
    message (the consumer's fallback) as a segment of one (`readmodel.ReadModelWriter`)."""

    def __init__(self, schema: str) -> None:
        self._writer = ReadModelWriter(schema)

    async def __call__(self, conn: asyncpg.Connection, delivery: Delivery) -> None:
        await self.handle_many(conn, [delivery])

    async def handle_many(self, conn: asyncpg.Connection, deliveries: Sequence[Delivery]) -> None:
        """A segment in stream order; when it fails, the consumer goes one message at a time."""
        # the edge parsed only the subjects the read model projects; others arrive as None
        projected: list[tuple[ProjectedEvent, int]] = [
            (d.event, d.stream_sequence) for d in deliveries if d.event is not None
        ]
        if not projected:
            return
        await self._writer.apply(conn, projected)
        log.debug("reporting.applied", events=len(projected))


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
            # a read model, off the path to LevelCertified: fewer, larger batches under a
            # steady load (decisions 0290, 0335: 200 ms)
            min_batch_interval_s=0.2,
        ),
    ),
    migrations=(("readmodel", MIGRATIONS),),
    privileges=PRIVILEGES,
    routers=(routes,),
)
