"""The inbound handler's segment path against a real event store: duplicates (recorded before,
or twice in one segment) are counted and change nothing, in one append statement."""

from __future__ import annotations

import datetime as dt
import types
from typing import cast

import asyncpg
import pytest

from dxtalent.citygen import generate_city
from dxtalent_contracts.catalog import load_catalog
from dxtalent_contracts.registry import parse_inbound
from dxtalent_enrollment.domain import fact_event_id
from dxtalent_enrollment.service import InboundHandler
from dxtalent_infra.delivery import Delivery, RejectMessage
from dxtalent_infra.eventstore import PostgresEventStore
from dxtalent_infra.records import RecordedEvent
from dxtalent_infra.runtime import ServiceContext
from tests.support.polling import eventually

CATALOG = load_catalog()


def deliveries(n: int) -> list[Delivery]:
    city = generate_city(CATALOG, seed=7, staff=20)
    out = []
    for i, event in enumerate(city.events[:n]):
        raw = event.to_json_bytes()
        parsed = parse_inbound(raw)
        out.append(
            Delivery(
                subject=event.nats_subject,
                data=raw,
                headers={},
                stream_sequence=i + 1,
                num_delivered=1,
                message_key=event.id,
                received_at=dt.datetime.now(dt.UTC),
                event=parsed,
            )
        )
    return out


async def test_segments_record_each_fact_once_and_count_the_duplicates(
    pool: asyncpg.Pool, db_schema: str
) -> None:
    """Two segments with facts repeated inside them and across them: each fact is recorded
    once, with contiguous stream versions, and every repeat counts as a duplicate."""
    store = PostgresEventStore(pool, db_schema)
    await store.migrate()
    ctx = types.SimpleNamespace(name=f"enrollment-{db_schema}", catalog=CATALOG, store=store)
    handler = InboundHandler(cast(ServiceContext, ctx))
    facts = deliveries(12)
    async with pool.acquire() as proxy:
        conn = cast(asyncpg.Connection, proxy)
        async with conn.transaction():
            await handler.handle_many(conn, [*facts[:8], facts[0], facts[3]])
        async with conn.transaction():
            await handler.handle_many(conn, [facts[2], *facts[8:], facts[9], facts[5]])
    assert handler._duplicates._value.get() == 2 + 3
    ids = {fact_event_id(d.event.source, d.event.id) for d in facts}
    assert await store.existing_event_ids(list(ids)) == ids
    # read_all returns events once no open transaction can still join them, and that horizon
    # is the whole server's: tests running meanwhile on the same server hold it back a moment
    recorded: list[RecordedEvent] = []

    async def all_readable() -> bool:
        recorded[:] = await store.read_all(0, limit=100)
        return len(recorded) >= len(ids)

    await eventually(all_readable, "every recorded fact readable")
    assert sorted(e.event_id for e in recorded) == sorted(ids)
    for stream in {e.stream_id for e in recorded}:
        versions = [e.stream_version for e in await store.read_stream(stream)]
        assert versions == list(range(1, len(versions) + 1))


def test_check_refuses_before_the_batch_what_the_catalog_refuses() -> None:
    """A completion of a course the catalog does not know is refused by `check`, without the
    database, so the consumer dead-letters it and applies the rest of its batch at once."""
    handler = InboundHandler(cast(ServiceContext, types.SimpleNamespace(name="e", catalog=CATALOG)))
    facts = deliveries(40)
    completion = next(d for d in facts if d.subject.endswith("completion"))
    handler.check(completion)  # accepted
    event = completion.event
    unknown = event.model_copy(
        update={"data": event.data.model_copy(update={"course_id": "NO-SUCH"})}
    )
    with pytest.raises(RejectMessage, match="NO-SUCH"):
        handler.check(completion.with_event(unknown))
