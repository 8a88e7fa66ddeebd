"""The reporting service: read models of target progress, by level, department and date.

Consumes all of `DX_EVENTS` with one durable consumer on `dx.events.>` (nats-server 2.9
takes one filter subject per consumer) and skips, by subject and before parsing, every event
the read model does not use. Events it does use are applied with one idempotent statement
each inside the consumer's batch transaction (`readmodel`); a malformed one is dead-lettered
on `dx.deadletter.reporting`. Queries are served over HTTP (`http`).
"""

from __future__ import annotations

import asyncpg
import structlog

from dxtalent_contracts import subjects
from dxtalent_contracts.registry import Rejection, parse_event
from dxtalent_infra.consumer import Delivery, RejectMessage
from dxtalent_infra.runtime import ConsumerSpec, Handler, ServiceContext, ServiceSpec
from dxtalent_reporting.http import routes
from dxtalent_reporting.readmodel import MIGRATIONS, SUBJECTS, ProjectedEvent, ReadModelWriter

log = structlog.get_logger(__name__)


def projection_handler(ctx: ServiceContext) -> Handler:
    """Build the handler that projects one domain event into the reporting read model."""
    writer = ReadModelWriter(ctx.schema)

    async def handle(conn: asyncpg.Connection, delivery: Delivery) -> None:
        if delivery.subject not in SUBJECTS:
            return
        event = parse_event(delivery.data)
        if isinstance(event, Rejection):
            raise RejectMessage(event.reason, event.errors)
        if event.nats_subject != delivery.subject:
            raise RejectMessage(
                f"Event type {event.type!r} belongs on subject {event.nats_subject!r} "
                f"but arrived on {delivery.subject!r}."
            )
        # the subject check leaves only the types the read model projects
        projected: ProjectedEvent = event  # type: ignore[assignment]
        await writer.apply(conn, projected, delivery.stream_sequence)
        log.debug("reporting.applied", event_id=event.id, type=event.type)

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
        ),
    ),
    migrations=(("readmodel", MIGRATIONS),),
    routes=routes,
)
