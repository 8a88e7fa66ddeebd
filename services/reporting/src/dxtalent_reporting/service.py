"""The reporting service: read models of target progress, by level, department and date.

Consumes all of `DX_EVENTS` with one durable consumer on `dx.events.>` (nats-server 2.9
takes one filter subject per consumer) and skips, by subject and before parsing, every event
the read model does not use (`edge.domain_events`). Events it does use are applied with one idempotent statement
each inside the consumer's batch transaction (`readmodel`); a malformed one is dead-lettered
on `dx.deadletter.reporting`. Queries are served over HTTP (`http`).
"""

from __future__ import annotations

import asyncpg
import structlog

from dxtalent_contracts import subjects
from dxtalent_infra.delivery import Delivery, Handler
from dxtalent_infra.edge import domain_events
from dxtalent_infra.runtime import ConsumerSpec, ServiceContext, ServiceSpec
from dxtalent_reporting.http import routes
from dxtalent_reporting.readmodel import MIGRATIONS, SUBJECTS, ProjectedEvent, ReadModelWriter

log = structlog.get_logger(__name__)


def projection_handler(ctx: ServiceContext) -> Handler:
    """Build the handler that projects one domain event into the reporting read model."""
    return read_model_handler(ctx.schema)


def read_model_handler(schema: str) -> Handler:
    """The handler that projects one domain event into the read model of `schema`."""
    writer = ReadModelWriter(schema)

    async def handle(conn: asyncpg.Connection, delivery: Delivery) -> None:
        # the edge parsed only the subjects the read model projects; others arrive as None
        projected: ProjectedEvent | None = delivery.event
        if projected is None:
            return
        await writer.apply(conn, projected, delivery.stream_sequence)
        log.debug("reporting.applied", event_id=projected.id, type=projected.type)

    return handle


SPEC = ServiceSpec(
    name="reporting",
    default_port=8083,
    publishes=False,
    consumers=(
        ConsumerSpec(
            stream="DX_EVENTS",
            durable="reporting",
            filter_subjects=(subjects.EVENTS_ALL,),
            deadletter_subject=subjects.DEADLETTER_REPORTING,
            handler=projection_handler,
            parser=domain_events(only=SUBJECTS),
        ),
    ),
    migrations=(("readmodel", MIGRATIONS),),
    routers=(routes,),
)
